//! JavaScript values ↔ `serde_json::Value`, directly through Node-API (no JSON text between).
//!
//! **In** ([`from_js`]): every value that enters the core from JavaScript (agent outputs,
//! usage, run input, fork overrides) is checked to be JSON data, and the first offending place
//! is named with a path such as `$.items[2]` or `$["a key"]`. The rule is simple and strict,
//! the same in spirit as the Python binding's (`agentmesh-py/src/pyjson.rs`):
//!
//! - accepted: `null`, booleans, finite numbers, strings, arrays and *plain* objects (prototype
//!   `Object.prototype` or `null`, e.g. literals, `JSON.parse` results, `Object.create(null)`);
//! - an object property whose value is `undefined` is omitted, as `JSON.stringify` does;
//! - refused: `undefined` anywhere else (top level, array element), holes of sparse arrays,
//!   arrays longer than a log record could hold ([`MAX_ARRAY_LEN`], checked before anything
//!   is allocated), functions, symbols,
//!   BigInt, `NaN`/`±Infinity`, strings with a lone surrogate, any other object (`Date`,
//!   `Map`, `Set`, class instances, typed arrays, boxed primitives, objects of another realm),
//!   and nesting deeper than [`MAX_DEPTH`] (a cycle is reported as such). `toJSON` is never
//!   called: a `Date` must be converted by the caller, so nothing implicit enters the log.
//!
//! Only own enumerable string keys are read (symbols are skipped), as `JSON.stringify` does;
//! getters run. A safe integer (`Number.isSafeInteger`, |n| < 2^53) is recorded as an integer
//! (`1.0` → `1`, `-0` → `0`); every other number as a double (`0.5`, `2**53` →
//! `9007199254740992.0`, `2**64` → `1.8446744073709552e+19`): beyond 2^53 a JS number is not
//! known to be the integer its digits suggest, and a double reads back as the same JS number.
//!
//! **Out** ([`write`]): a `Value` becomes what `JSON.parse` of its text gives: objects are
//! created with own data properties (a key `"__proto__"` stays a key), every number is a JS
//! number (an integer beyond 2^53 is rounded to the nearest double, as `JSON.parse` does).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::ptr;

use napi::bindgen_prelude::{FromNapiValue, ToNapiValue, TypeName, ValidateNapiValue};
use napi::{sys, Env, JsValue, Status, Unknown, ValueType};
use serde_json::{Map, Number, Value};

/// Most arrays/objects nested in one value: the core's limit (a log could not read deeper
/// values back), as in the Python binding.
pub use agentmesh_core::MAX_VALUE_DEPTH as MAX_DEPTH;

/// Why a JavaScript value was not taken.
#[derive(Debug)]
pub enum Refused {
    /// Not JSON data; the message names the place (`"function at $.a[2] is not JSON data"`).
    NotJson(String),
    /// A Node-API call failed or JavaScript threw (a getter, a Proxy trap): passed on as is,
    /// so the pending JS exception reaches the caller unchanged.
    Js(napi::Error),
}

/// The value as JSON data, or why it is not.
pub fn from_js(env: &Env, value: &Unknown<'_>) -> Result<Value, Refused> {
    // SAFETY: `env` is the live environment of the current call, `value` one of its values.
    unsafe { from_raw(env.raw(), value.raw()) }
}

/// [`from_js`] for a raw value.
///
/// # Safety
///
/// `env` is the live environment of the current call, on its thread; `value` was made in it.
pub unsafe fn from_raw(env: sys::napi_env, value: sys::napi_value) -> Result<Value, Refused> {
    let to_refused = |fault| match fault {
        Fault::Bad(bad) => Refused::NotJson(bad.describe()),
        Fault::Napi(e) => Refused::Js(e),
    };
    let mut reader = Reader::new(env).map_err(to_refused)?;
    reader.walk(value, 0).map_err(to_refused)
}

/// Most elements an array may have: a log record holds at most 64 MiB (the core's
/// `MAX_EVENT_BYTES`, which it does not export), and each element takes at least two bytes
/// (`0,`). Checked before anything is allocated for an array: a sparse array's `length` can be
/// 2^32-1 while it holds nothing, and allocating by `length` would abort the process.
pub const MAX_ARRAY_LEN: u32 = (64 << 20) / 2;

/// Values converted before a container loop starts a fresh handle scope. Every `napi_value`
/// lives until its handle scope closes, so a large value converted in the call's one scope
/// would hold millions of handles; with a budget, live handles stay near `BUDGET × depth`.
const BUDGET: usize = 4096;

/// A Node-API handle scope, closed when dropped (early returns close it too; scopes nest as
/// the recursion does, so they close in LIFO order).
struct Scope {
    env: sys::napi_env,
    scope: sys::napi_handle_scope,
}

impl Scope {
    fn open(env: sys::napi_env) -> napi::Result<Scope> {
        let mut scope = ptr::null_mut();
        // SAFETY: `env` is the live environment of the current call, on its own thread.
        ok(unsafe { sys::napi_open_handle_scope(env, &mut scope) })?;
        Ok(Scope { env, scope })
    }

    /// Start a fresh scope in `slot` (closing the one there) once `budget` values were made.
    fn renew(env: sys::napi_env, slot: &mut Option<Scope>, made: &mut usize) -> napi::Result<()> {
        if *made >= BUDGET {
            *slot = None;
            *slot = Some(Scope::open(env)?);
            *made = 0;
        }
        Ok(())
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // SAFETY: opened in `env` by `Scope::open`; nested scopes were closed before this one.
        unsafe { sys::napi_close_handle_scope(self.env, self.scope) };
    }
}

/// A JS number as a JSON value: an integer for a safe integer, else a double; `None` for NaN
/// and the infinities.
pub fn number(f: f64) -> Option<Value> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if f.fract() == 0.0 && (-MAX_SAFE..=MAX_SAFE).contains(&f) {
        // Exact: a safe integer fits i64 (and -0.0 becomes 0).
        return Some(Value::from(f as i64));
    }
    Number::from_f64(f).map(Value::Number)
}

/// Where in the value a problem is, collected while the error unwinds (innermost first).
enum Step {
    Index(u32),
    Key(String),
}

struct Bad {
    steps: Vec<Step>,
    /// Message with `{at}` where the path goes.
    what: String,
    /// Only the first `keep` steps from the root belong to the path (a cycle found deeper).
    keep: Option<usize>,
}

enum Fault {
    Bad(Bad),
    Napi(napi::Error),
}

impl Fault {
    fn bad(what: impl Into<String>) -> Fault {
        Fault::Bad(Bad {
            steps: Vec::new(),
            what: what.into(),
            keep: None,
        })
    }

    fn within(self, step: Step) -> Fault {
        match self {
            Fault::Bad(mut bad) => {
                bad.steps.push(step);
                Fault::Bad(bad)
            }
            napi => napi,
        }
    }
}

impl Bad {
    fn describe(self) -> String {
        let mut path = String::from("$");
        let keep = self.keep.unwrap_or(self.steps.len());
        for step in self.steps.iter().rev().take(keep) {
            match step {
                Step::Index(i) => {
                    path.push('[');
                    path.push_str(&i.to_string());
                    path.push(']');
                }
                Step::Key(k) if is_identifier(k) => {
                    path.push('.');
                    path.push_str(k);
                }
                Step::Key(k) => {
                    path.push('[');
                    path.push_str(&Value::String(k.clone()).to_string());
                    path.push(']');
                }
            }
        }
        self.what.replace("{at}", &path)
    }
}

/// `$.key` for plain ASCII identifiers, `$["..."]` (JSON-quoted) for anything else.
fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

fn js_number_text(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// A failed Node-API call; a pending JS exception is passed on untouched.
fn napi_fault(status: sys::napi_status) -> napi::Error {
    if status == sys::Status::napi_pending_exception {
        napi::Error::new(Status::PendingException, "JavaScript exception".to_owned())
    } else {
        napi::Error::new(Status::from(status), "Node-API call failed".to_owned())
    }
}

fn ok(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi_fault(status))
    }
}

fn call(status: sys::napi_status) -> Result<(), Fault> {
    ok(status).map_err(Fault::Napi)
}

thread_local! {
    // This environment's `Object.prototype`, kept once (one Node environment per thread), so a
    // conversion does not create an object to find it.
    static OBJECT_PROTO: std::cell::Cell<(usize, sys::napi_ref)> =
        const { std::cell::Cell::new((0, ptr::null_mut())) };
}

/// `Object.prototype` of environment `env`, as a handle of the current scope.
fn object_prototype(env: sys::napi_env) -> Result<sys::napi_value, Fault> {
    let (cached_env, reference) = OBJECT_PROTO.with(std::cell::Cell::get);
    let mut proto = ptr::null_mut();
    if cached_env == env as usize {
        // SAFETY: `reference` was made in `env`, the live environment of the current call.
        call(unsafe { sys::napi_get_reference_value(env, reference, &mut proto) })?;
        return Ok(proto);
    }
    // The prototype of a fresh `{}`: no lookup on the (patchable) global.
    let mut empty = ptr::null_mut();
    // SAFETY: as above; out-pointers are locals.
    call(unsafe { sys::napi_create_object(env, &mut empty) })?;
    call(unsafe { sys::napi_get_prototype(env, empty, &mut proto) })?;
    let mut reference = ptr::null_mut();
    // Kept for the environment's life: one reference per environment.
    call(unsafe { sys::napi_create_reference(env, proto, 1, &mut reference) })?;
    OBJECT_PROTO.with(|c| c.set((env as usize, reference)));
    Ok(proto)
}

struct Reader {
    env: sys::napi_env,
    /// Containers from the root to the current value's parent (for reporting cycles).
    ancestors: Vec<sys::napi_value>,
    /// Reused for reading strings.
    buf: Vec<u8>,
    /// Values read since the innermost container loop last renewed its scope.
    made: usize,
}

// SAFETY (every `unsafe` block in this impl): `self.env` is the live environment of the
// current call on its own thread, every `napi_value` passed was obtained from it during this
// call (handles stay valid for the call's handle scope), and out-pointers point to locals.
impl Reader {
    fn new(env: sys::napi_env) -> Result<Reader, Fault> {
        Ok(Reader {
            env,
            ancestors: Vec::new(),
            buf: Vec::new(),
            made: 0,
        })
    }

    fn renew(&mut self, scope: &mut Option<Scope>) -> Result<(), Fault> {
        Scope::renew(self.env, scope, &mut self.made).map_err(Fault::Napi)
    }

    fn walk(&mut self, v: sys::napi_value, depth: usize) -> Result<Value, Fault> {
        let mut t = 0;
        call(unsafe { sys::napi_typeof(self.env, v, &mut t) })?;
        self.walk_typed(v, t, depth)
    }

    fn walk_typed(
        &mut self,
        v: sys::napi_value,
        t: sys::napi_valuetype,
        depth: usize,
    ) -> Result<Value, Fault> {
        use sys::ValueType as T;
        self.made += 1;
        match t {
            T::napi_null => Ok(Value::Null),
            T::napi_boolean => {
                let mut b = false;
                call(unsafe { sys::napi_get_value_bool(self.env, v, &mut b) })?;
                Ok(Value::Bool(b))
            }
            T::napi_number => {
                let mut f = 0.0;
                call(unsafe { sys::napi_get_value_double(self.env, v, &mut f) })?;
                number(f).ok_or_else(|| {
                    Fault::bad(format!(
                        "{} at {{at}} is not a JSON number",
                        js_number_text(f)
                    ))
                })
            }
            T::napi_string => self.string(v, "string").map(Value::String),
            // `depth` containers enclose this one: it would be the (depth + 1)-th.
            T::napi_object if depth >= MAX_DEPTH => Err(self.too_deep(v)),
            T::napi_object => self.object(v, depth),
            T::napi_undefined => Err(Fault::bad("undefined at {at} is not JSON data")),
            T::napi_symbol => Err(Fault::bad("symbol at {at} is not JSON data")),
            T::napi_function => Err(Fault::bad("function at {at} is not JSON data")),
            T::napi_bigint => Err(Fault::bad(
                "BigInt at {at} is not JSON data (use a number or a string)",
            )),
            _ => Err(Fault::bad("external value at {at} is not JSON data")),
        }
    }

    fn object(&mut self, v: sys::napi_value, depth: usize) -> Result<Value, Fault> {
        let mut is_array = false;
        call(unsafe { sys::napi_is_array(self.env, v, &mut is_array) })?;
        if is_array {
            let mut len = 0u32;
            call(unsafe { sys::napi_get_array_length(self.env, v, &mut len) })?;
            if len > MAX_ARRAY_LEN {
                return Err(Fault::bad(format!(
                    "array at {{at}} has {len} elements, more than a log record can hold \
                     (64 MiB)"
                )));
            }
            // Grown as elements are read, never reserved by `length` alone.
            let mut out = Vec::with_capacity((len as usize).min(BUDGET));
            self.ancestors.push(v);
            let mut scope = None;
            for i in 0..len {
                self.renew(&mut scope)?;
                let mut item = ptr::null_mut();
                call(unsafe { sys::napi_get_element(self.env, v, i, &mut item) })?;
                let mut t = 0;
                call(unsafe { sys::napi_typeof(self.env, item, &mut t) })?;
                if t == sys::ValueType::napi_undefined && !self.has_element(v, i)? {
                    return Err(Fault::bad("hole at {at} is not JSON data (a sparse array)")
                        .within(Step::Index(i)));
                }
                out.push(
                    self.walk_typed(item, t, depth + 1)
                        .map_err(|f| f.within(Step::Index(i)))?,
                );
            }
            self.ancestors.pop();
            return Ok(Value::Array(out));
        }
        if !self.is_plain(v)? {
            return Err(Fault::bad(format!(
                "{} at {{at}} is not JSON data (only plain objects and arrays are)",
                self.kind_name(v)
            )));
        }
        let mut keys = ptr::null_mut();
        call(unsafe {
            sys::napi_get_all_property_names(
                self.env,
                v,
                sys::KeyCollectionMode::own_only,
                sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
                sys::KeyConversion::numbers_to_strings,
                &mut keys,
            )
        })?;
        let mut len = 0u32;
        call(unsafe { sys::napi_get_array_length(self.env, keys, &mut len) })?;
        let mut out = Map::new();
        self.ancestors.push(v);
        let mut scope = None;
        for i in 0..len {
            self.renew(&mut scope)?;
            let mut key = ptr::null_mut();
            call(unsafe { sys::napi_get_element(self.env, keys, i, &mut key) })?;
            let key_text = self.string(key, "key")?;
            let mut item = ptr::null_mut();
            call(unsafe { sys::napi_get_property(self.env, v, key, &mut item) })?;
            let mut t = 0;
            call(unsafe { sys::napi_typeof(self.env, item, &mut t) })?;
            if t == sys::ValueType::napi_undefined {
                continue; // as JSON.stringify does
            }
            let value = match self.walk_typed(item, t, depth + 1) {
                Ok(value) => value,
                Err(f) => return Err(f.within(Step::Key(key_text))),
            };
            out.insert(key_text, value);
        }
        self.ancestors.pop();
        Ok(Value::Object(out))
    }

    /// Whether array `v` has an element at `i` (not a hole).
    fn has_element(&mut self, v: sys::napi_value, i: u32) -> Result<bool, Fault> {
        let mut has = false;
        call(unsafe { sys::napi_has_element(self.env, v, i, &mut has) })?;
        Ok(has)
    }

    /// Prototype `Object.prototype` (of this realm) or `null`.
    fn is_plain(&mut self, v: sys::napi_value) -> Result<bool, Fault> {
        let mut proto = ptr::null_mut();
        call(unsafe { sys::napi_get_prototype(self.env, v, &mut proto) })?;
        let mut t = 0;
        call(unsafe { sys::napi_typeof(self.env, proto, &mut t) })?;
        if t == sys::ValueType::napi_null {
            return Ok(true);
        }
        let object_proto = object_prototype(self.env)?;
        let mut same = false;
        call(unsafe { sys::napi_strict_equals(self.env, proto, object_proto, &mut same) })?;
        Ok(same)
    }

    /// `v.constructor.name` for the error message (`Date`, `Map`, ...), else `object`.
    fn kind_name(&mut self, v: sys::napi_value) -> String {
        let name = (|| -> Option<String> {
            let mut ctor = ptr::null_mut();
            let status = unsafe {
                sys::napi_get_named_property(self.env, v, c"constructor".as_ptr(), &mut ctor)
            };
            (status == sys::Status::napi_ok).then_some(())?;
            let mut name = ptr::null_mut();
            let status = unsafe {
                sys::napi_get_named_property(self.env, ctor, c"name".as_ptr(), &mut name)
            };
            (status == sys::Status::napi_ok).then_some(())?;
            let mut t = 0;
            unsafe { sys::napi_typeof(self.env, name, &mut t) };
            (t == sys::ValueType::napi_string).then_some(())?;
            self.string(name, "name").ok().filter(|n| !n.is_empty())
        })();
        // A throwing getter must not leave an exception behind the INVALID_OUTPUT error.
        let mut pending = false;
        unsafe { sys::napi_is_exception_pending(self.env, &mut pending) };
        if pending {
            let mut exc = ptr::null_mut();
            unsafe { sys::napi_get_and_clear_last_exception(self.env, &mut exc) };
        }
        name.unwrap_or_else(|| "object".to_owned())
    }

    /// A JS string as Rust text; `what` names it in the lone-surrogate error.
    fn string(&mut self, v: sys::napi_value, what: &str) -> Result<String, Fault> {
        // Small strings in one call through the reused buffer. Node never splits a character,
        // so a copy that may have been cut is one ending within 4 bytes of the buffer's end.
        const SMALL: usize = 1024;
        if self.buf.len() < SMALL {
            self.buf.resize(SMALL, 0);
        }
        let mut len = 0usize;
        call(unsafe {
            sys::napi_get_value_string_utf8(
                self.env,
                v,
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                &mut len,
            )
        })?;
        if len + 8 > self.buf.len() {
            call(unsafe {
                sys::napi_get_value_string_utf8(self.env, v, ptr::null_mut(), 0, &mut len)
            })?;
            self.buf.resize(len + 1, 0);
            call(unsafe {
                sys::napi_get_value_string_utf8(
                    self.env,
                    v,
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    &mut len,
                )
            })?;
        }
        // (std's `from_utf8` and `contains` are optimized even in a debug build of this crate.)
        let text = std::str::from_utf8(&self.buf[..len])
            .map_err(|_| Fault::bad(format!("{what} at {{at}} is not valid UTF-8")))?;
        // Node writes U+FFFD for a lone surrogate: look closer only when one is there.
        if text.contains('\u{FFFD}') && self.has_lone_surrogate(v)? {
            return Err(Fault::bad(format!(
                "{what} at {{at}} contains a lone surrogate (not valid Unicode)"
            )));
        }
        Ok(text.to_owned())
    }

    fn has_lone_surrogate(&self, v: sys::napi_value) -> Result<bool, Fault> {
        let mut len = 0usize;
        call(unsafe {
            sys::napi_get_value_string_utf16(self.env, v, ptr::null_mut(), 0, &mut len)
        })?;
        let mut units = vec![0u16; len + 1];
        call(unsafe {
            sys::napi_get_value_string_utf16(self.env, v, units.as_mut_ptr(), units.len(), &mut len)
        })?;
        Ok(char::decode_utf16(units[..len].iter().copied()).any(|c| c.is_err()))
    }

    /// Nesting beyond [`MAX_DEPTH`]: a cycle if some container repeats on the way down.
    fn too_deep(&self, v: sys::napi_value) -> Fault {
        let mut chain = self.ancestors.clone();
        chain.push(v);
        for j in 1..chain.len() {
            for i in 0..j {
                let mut same = false;
                let status =
                    unsafe { sys::napi_strict_equals(self.env, chain[i], chain[j], &mut same) };
                if status == sys::Status::napi_ok && same {
                    return Fault::Bad(Bad {
                        steps: Vec::new(),
                        what: "cyclic reference at {at} (a value that contains itself is not \
                               JSON data)"
                            .to_owned(),
                        keep: Some(j),
                    });
                }
            }
        }
        Fault::bad(format!(
            "nesting deeper than {MAX_DEPTH} arrays/objects at {{at}}"
        ))
    }
}

/// A JSON value as a new JS value (see the module docs).
///
/// # Safety
///
/// `env` must be the live environment of the current call, on its own thread.
pub unsafe fn write(env: sys::napi_env, value: &Value) -> napi::Result<sys::napi_value> {
    Writer { env, made: 0 }.value(value)
}

/// A plain object with own data properties (writable, enumerable, configurable: what
/// `JSON.parse` makes; a key `"__proto__"` is a key), defined in batches.
///
/// # Safety
///
/// As for [`write`].
pub unsafe fn object<K: AsRef<str>, V: Borrow<Value>>(
    env: sys::napi_env,
    entries: impl ExactSizeIterator<Item = (K, V)>,
) -> napi::Result<sys::napi_value> {
    Writer { env, made: 0 }.object(entries)
}

/// A JS string.
///
/// # Safety
///
/// As for [`write`].
pub unsafe fn string(env: sys::napi_env, s: &str) -> napi::Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    // SAFETY: per this function's contract.
    ok(unsafe {
        sys::napi_create_string_utf8(env, s.as_ptr().cast(), s.len() as isize, &mut out)
    })?;
    Ok(out)
}

struct Writer {
    env: sys::napi_env,
    /// Values made since the innermost container loop last renewed its scope.
    made: usize,
}

// SAFETY (every `unsafe` block in this impl): `self.env` is the live environment of the
// current call (the contract of `write`/`object`), handles passed were made in it and are
// still in an open scope, and out-pointers point to locals.
impl Writer {
    fn value(&mut self, value: &Value) -> napi::Result<sys::napi_value> {
        self.made += 1;
        let env = self.env;
        let mut out = ptr::null_mut();
        match value {
            Value::Null => ok(unsafe { sys::napi_get_null(env, &mut out) })?,
            Value::Bool(b) => ok(unsafe { sys::napi_get_boolean(env, *b, &mut out) })?,
            Value::Number(n) => {
                // serde_json numbers are i64, u64 or finite f64: as_f64 is always Some.
                let f = n.as_f64().unwrap_or(f64::NAN);
                ok(unsafe { sys::napi_create_double(env, f, &mut out) })?
            }
            Value::String(s) => out = unsafe { string(env, s)? },
            Value::Array(items) => {
                ok(unsafe { sys::napi_create_array_with_length(env, items.len(), &mut out) })?;
                let mut scope = None;
                for (i, item) in items.iter().enumerate() {
                    Scope::renew(env, &mut scope, &mut self.made)?;
                    let v = self.value(item)?;
                    ok(unsafe { sys::napi_set_element(env, out, i as u32, v) })?;
                }
            }
            Value::Object(map) => out = self.object(map.iter())?,
        }
        Ok(out)
    }

    fn object<K: AsRef<str>, V: Borrow<Value>>(
        &mut self,
        entries: impl ExactSizeIterator<Item = (K, V)>,
    ) -> napi::Result<sys::napi_value> {
        let env = self.env;
        let mut out = ptr::null_mut();
        ok(unsafe { sys::napi_create_object(env, &mut out) })?;
        let mut props = Vec::with_capacity(entries.len().min(BUDGET));
        let mut scope = None;
        for (k, v) in entries {
            if self.made >= BUDGET {
                // The pending properties' handles belong to the scope about to close.
                define(env, out, &mut props)?;
                Scope::renew(env, &mut scope, &mut self.made)?;
            }
            let name = unsafe { string(env, k.as_ref())? };
            let value = self.value(v.borrow())?;
            props.push(sys::napi_property_descriptor {
                utf8name: ptr::null(),
                name,
                method: None,
                getter: None,
                setter: None,
                value,
                attributes: sys::PropertyAttributes::writable
                    | sys::PropertyAttributes::enumerable
                    | sys::PropertyAttributes::configurable,
                data: ptr::null_mut(),
            });
        }
        define(env, out, &mut props)?;
        Ok(out)
    }
}

/// Define `props` on `obj` in one call and clear them.
fn define(
    env: sys::napi_env,
    obj: sys::napi_value,
    props: &mut Vec<sys::napi_property_descriptor>,
) -> napi::Result<()> {
    if !props.is_empty() {
        // SAFETY: as in `Writer`; `props` outlives the call.
        ok(unsafe { sys::napi_define_properties(env, obj, props.len(), props.as_ptr()) })?;
        props.clear();
    }
    Ok(())
}

/// A string argument exactly as JavaScript holds it: Node-API's UTF-8 conversion turns a lone
/// surrogate (`'\ud800'`, valid in a JS string, not in Unicode text) into U+FFFD silently, so
/// this also finds where the first one is. Non-strings are refused as napi-rs refuses them.
pub struct JsText {
    /// The text (a lone surrogate as U+FFFD).
    pub text: String,
    /// Position of the first lone surrogate, when there is one.
    pub lone_surrogate: Option<TextPosition>,
}

/// A position in a JS string, counted in UTF-16 code units as JavaScript counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPosition {
    /// Index in the string.
    pub index: usize,
    /// Line, from 1.
    pub line: usize,
    /// Column within the line, from 1.
    pub column: usize,
}

impl FromNapiValue for JsText {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        // SAFETY: napi calls this with the live environment and a value of the current call.
        let text = unsafe { String::from_napi_value(env, value)? };
        let lone_surrogate = if text.contains('\u{FFFD}') {
            // SAFETY: as above.
            unsafe { first_lone_surrogate(env, value)? }
        } else {
            None
        };
        Ok(JsText {
            text,
            lone_surrogate,
        })
    }
}

impl TypeName for JsText {
    fn type_name() -> &'static str {
        "string"
    }

    fn value_type() -> ValueType {
        ValueType::String
    }
}

impl ValidateNapiValue for JsText {}

/// Where the first lone surrogate of JS string `value` is.
///
/// # Safety
///
/// `env` is the live environment of the current call and `value` a string made in it.
unsafe fn first_lone_surrogate(
    env: sys::napi_env,
    value: sys::napi_value,
) -> napi::Result<Option<TextPosition>> {
    let mut len = 0usize;
    // SAFETY: per this function's contract; out-pointers are locals.
    ok(unsafe { sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut len) })?;
    let mut units = vec![0u16; len + 1];
    // SAFETY: as above; `units` has room for `len` units and the terminator.
    ok(unsafe {
        sys::napi_get_value_string_utf16(env, value, units.as_mut_ptr(), units.len(), &mut len)
    })?;
    let (mut line, mut line_start, mut index) = (1, 0, 0);
    for c in char::decode_utf16(units[..len].iter().copied()) {
        match c {
            Ok(c) => {
                if c == '\n' {
                    line += 1;
                    line_start = index + 1;
                }
                index += c.len_utf16();
            }
            Err(_) => {
                return Ok(Some(TextPosition {
                    index,
                    line,
                    column: index - line_start + 1,
                }))
            }
        }
    }
    Ok(None)
}

/// Any JSON value for a `#[napi(object)]` field (typed `unknown` there).
pub struct Json<T>(pub T);

impl<T: Borrow<Value>> ToNapiValue for Json<T> {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        // SAFETY: napi calls this with the live environment.
        unsafe { write(env, val.0.borrow()) }
    }
}

impl<T> TypeName for Json<T> {
    fn type_name() -> &'static str {
        "unknown"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

/// A map of JSON values keyed by string (node id → output), as a plain object.
pub struct Record<K, V>(pub BTreeMap<K, V>);

impl<K: AsRef<str>, V: Borrow<Value>> ToNapiValue for Record<K, V> {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        // SAFETY: napi calls this with the live environment.
        unsafe { object(env, val.0.iter().map(|(k, v)| (k.as_ref(), v.borrow()))) }
    }
}

impl<K, V> TypeName for Record<K, V> {
    fn type_name() -> &'static str {
        "Record<string, unknown>"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}
