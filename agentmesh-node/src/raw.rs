//! Plain Node-API for the per-step path: `poll`, the activations it hands out, the completions
//! made from them and `completeAll`.
//!
//! Why not napi-rs here: measured on Node 20, a napi-rs method call costs 120–600 ns (its
//! borrow tracking takes a lock and a hash-map entry per call) and a napi-rs class instance
//! about 3 µs, against 20–40 ns for a plain Node-API call and about 0.7 µs for a wrapped object
//! (most of it the GC finalizer). A step makes one activation and one completion and a handful
//! of calls, against a budget of 4 µs. The rest of the addon keeps napi-rs.
//!
//! What this module gives: [`callback`] (a panic becomes an `INTERNAL` error, a core error a
//! thrown JS error), classes defined once per environment ([`define_class`]), instances that
//! own a Rust value ([`new_instance`]) and a checked way back to it ([`unwrap`]: each instance
//! carries its class's Node-API type tag, which JavaScript cannot copy or forge, so any other
//! object — even one given the class's prototype — is a typed error, never a bad pointer), and
//! small value helpers.
//!
//! Safety: every function taking a `napi_env` must be called on that environment's thread
//! during a callback (or module init) of it, with values made in it.

use std::cell::Cell;
use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use agentmesh_core::{Error, ErrorKind};
use napi::sys;

/// A JS value of the current call.
pub type Value = sys::napi_value;
/// The Node-API environment of the current call.
pub type RawEnv = sys::napi_env;
/// A raw callback as Node-API calls it.
pub type Callback = unsafe extern "C" fn(RawEnv, sys::napi_callback_info) -> Value;

/// A JS exception is pending: return to JavaScript at once.
#[derive(Debug)]
pub struct Thrown;

/// Result of raw work: `Err` means an exception is pending.
pub type R<T> = Result<T, Thrown>;

/// A Rust type owned by instances of a class of this module.
pub trait Class: 'static {
    /// The class name in JavaScript.
    const NAME: &'static CStr;
    /// Its slot in the per-thread constructor table (unique per class).
    const SLOT: usize;
    /// Its Node-API type tag (unique per class; random, fixed).
    const TAG: sys::napi_type_tag;
}

const SLOTS: usize = 1;

thread_local! {
    // One Node environment per thread (the main thread, each worker): each class's
    // constructor for it, as (environment, reference).
    static CLASSES: [Cell<(usize, sys::napi_ref)>; SLOTS] =
        const { [const { Cell::new((0, ptr::null_mut())) }; SLOTS] };
    // Set while this module constructs an instance, so `new Class()` from JS is refused.
    static CONSTRUCTING: Cell<bool> = const { Cell::new(false) };
}

/// `Ok` for `napi_ok`; otherwise make sure an exception is pending.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn check(env: RawEnv, status: sys::napi_status) -> R<()> {
    if status == sys::Status::napi_ok {
        return Ok(());
    }
    let mut pending = false;
    // SAFETY: per this function's contract.
    unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    if !pending {
        let e = Error::new(
            ErrorKind::Internal,
            format!("Node-API call failed (status {status})"),
        );
        // SAFETY: as above.
        return Err(unsafe { throw(env, &e) });
    }
    Err(Thrown)
}

/// Throw the JS error of a core error (`code`, `details`, see `errors.rs`).
///
/// # Safety
///
/// See the module docs.
pub unsafe fn throw(env: RawEnv, e: &Error) -> Thrown {
    match crate::errors::build_raw(env, e) {
        // SAFETY: per this function's contract.
        Ok(err) => unsafe { sys::napi_throw(env, err) },
        // SAFETY: as above; the message has no NUL (a fallback when building failed).
        Err(_) => unsafe {
            sys::napi_throw_error(
                env,
                ptr::null(),
                c"agentmesh: could not build an error".as_ptr(),
            )
        },
    };
    Thrown
}

/// Throw a napi-rs error (a failed conversion of an argument), as napi-rs would.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn throw_napi(env: RawEnv, e: napi::Error) -> Thrown {
    let mut pending = false;
    // SAFETY: per this function's contract.
    unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    if !pending {
        // SAFETY: as above.
        unsafe { napi::JsError::from(e).throw_into(env) };
    }
    Thrown
}

/// A napi-rs result in raw work.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn napi<T>(env: RawEnv, r: napi::Result<T>) -> R<T> {
    // SAFETY: per this function's contract.
    r.map_err(|e| unsafe { throw_napi(env, e) })
}

/// A core result in raw work.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn core<T>(env: RawEnv, r: agentmesh_core::Result<T>) -> R<T> {
    // SAFETY: per this function's contract.
    r.map_err(|e| unsafe { throw(env, &e) })
}

/// The body of a raw callback: its value, or `NULL` with an exception pending. A panic is
/// caught and thrown as `INTERNAL`: it never unwinds into Node.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn callback(env: RawEnv, body: impl FnOnce() -> R<Value>) -> Value {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(Thrown)) => ptr::null_mut(),
        Err(panic) => {
            // SAFETY: per this function's contract.
            unsafe { throw(env, &crate::errors::panicked(panic)) };
            ptr::null_mut()
        }
    }
}

/// `this` and up to `N` arguments of a call (missing ones are `undefined`).
pub struct Args<const N: usize> {
    pub this: Value,
    pub argv: [Value; N],
}

/// Read the call's `this` and arguments.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn args<const N: usize>(env: RawEnv, info: sys::napi_callback_info) -> R<Args<N>> {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    let mut this = ptr::null_mut();
    // SAFETY: per this function's contract; `argv` has room for `argc` values.
    unsafe {
        check(
            env,
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                &mut this,
                ptr::null_mut(),
            ),
        )?
    };
    if argc < N {
        let undefined = unsafe { undefined(env)? };
        for slot in argv.iter_mut().skip(argc) {
            *slot = undefined;
        }
    }
    Ok(Args { this, argv })
}

/// Define the class of `T` for this environment: `methods` and `getters` on its prototype,
/// `statics` on the constructor. JavaScript cannot construct it (`new` throws): instances come
/// from [`new_instance`].
///
/// # Safety
///
/// See the module docs.
pub unsafe fn define_class<T: Class>(
    env: RawEnv,
    getters: &[(&CStr, Callback)],
    methods: &[(&CStr, Callback)],
    statics: &[(&CStr, Callback)],
) -> R<Value> {
    let prop = |name: &CStr, method: Option<Callback>, getter: Option<Callback>, static_: bool| {
        let mut attributes = sys::PropertyAttributes::configurable;
        if static_ {
            attributes |= sys::PropertyAttributes::static_;
        }
        if method.is_some() {
            attributes |= sys::PropertyAttributes::writable;
        }
        sys::napi_property_descriptor {
            utf8name: name.as_ptr(),
            name: ptr::null_mut(),
            method,
            getter,
            setter: None,
            value: ptr::null_mut(),
            attributes,
            data: ptr::null_mut(),
        }
    };
    let mut props = Vec::new();
    props.extend(getters.iter().map(|&(n, g)| prop(n, None, Some(g), false)));
    props.extend(methods.iter().map(|&(n, m)| prop(n, Some(m), None, false)));
    props.extend(statics.iter().map(|&(n, m)| prop(n, Some(m), None, true)));
    let mut class = ptr::null_mut();
    // SAFETY: per this function's contract; `props` and the name outlive the call.
    unsafe {
        check(
            env,
            sys::napi_define_class(
                env,
                T::NAME.as_ptr(),
                T::NAME.to_bytes().len() as isize,
                Some(construct),
                ptr::null_mut(),
                props.len(),
                props.as_ptr(),
                &mut class,
            ),
        )?
    };
    let mut reference = ptr::null_mut();
    // SAFETY: as above. Kept for the environment's life (one per class).
    unsafe {
        check(
            env,
            sys::napi_create_reference(env, class, 1, &mut reference),
        )?
    };
    CLASSES.with(|c| c[T::SLOT].set((env as usize, reference)));
    Ok(class)
}

unsafe extern "C" fn construct(env: RawEnv, info: sys::napi_callback_info) -> Value {
    // SAFETY: Node-API calls this with its environment and call info.
    unsafe {
        callback(env, || {
            if !CONSTRUCTING.with(Cell::get) {
                let e = Error::new(
                    ErrorKind::InvalidArgument,
                    "this class is made by the addon (poll, NativeCompletion.ok, ...), not with new",
                );
                return Err(throw(env, &e));
            }
            Ok(args::<0>(env, info)?.this)
        })
    }
}

/// A new instance of the class of `T`, owning `value` (dropped when the object is
/// collected) and tagged with `T::TAG`.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn new_instance<T: Class>(env: RawEnv, value: T) -> R<Value> {
    let (class_env, class_ref) = CLASSES.with(|c| c[T::SLOT].get());
    if class_env != env as usize {
        let e = Error::new(
            ErrorKind::Internal,
            "agentmesh: this environment's classes are not defined (one environment per thread)",
        );
        // SAFETY: per this function's contract.
        return Err(unsafe { throw(env, &e) });
    }
    let mut class = ptr::null_mut();
    // SAFETY: per this function's contract.
    unsafe {
        check(
            env,
            sys::napi_get_reference_value(env, class_ref, &mut class),
        )?
    };
    let mut object = ptr::null_mut();
    CONSTRUCTING.with(|c| c.set(true));
    // SAFETY: as above.
    let status = unsafe { sys::napi_new_instance(env, class, 0, ptr::null(), &mut object) };
    CONSTRUCTING.with(|c| c.set(false));
    // SAFETY: as above.
    unsafe {
        check(env, status)?;
        check(env, sys::napi_type_tag_object(env, object, &T::TAG))?;
    }
    let raw = Box::into_raw(Box::new(value));
    // SAFETY: as above; on success the finalizer owns `raw`.
    let status = unsafe {
        sys::napi_wrap(
            env,
            object,
            raw.cast(),
            Some(finalize::<T>),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: not adopted by the object: ours to drop.
        drop(unsafe { Box::from_raw(raw) });
        // SAFETY: as above.
        unsafe { check(env, status)? };
    }
    Ok(object)
}

unsafe extern "C" fn finalize<T: Class>(_env: RawEnv, data: *mut c_void, _hint: *mut c_void) {
    // A panicking drop must not unwind into Node.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `data` came from `Box::into_raw` in `new_instance::<T>`, finalized once.
        drop(unsafe { Box::from_raw(data.cast::<T>()) });
    }));
}

/// The `T` owned by `object`, when `object` is an instance of `T`'s class (its type tag);
/// otherwise `INVALID_ARGUMENT` naming `what`. A pointer: callers choose a shared reference
/// (while JavaScript may run, which may read the same object) or a unique one (never while
/// JavaScript runs, and never twice for one object).
///
/// # Safety
///
/// See the module docs. The pointer is valid for the current call (`object` is reachable
/// from it, so it is not collected).
pub unsafe fn unwrap<T: Class>(env: RawEnv, object: Value, what: &str) -> R<*mut T> {
    let mut tagged = false;
    // SAFETY: per this function's contract. (Not an object: `napi_object_expected`.)
    let status = unsafe { sys::napi_check_object_type_tag(env, object, &T::TAG, &mut tagged) };
    let mut data = ptr::null_mut();
    if status == sys::Status::napi_ok && tagged {
        // SAFETY: as above; tagged objects are wrapped right after tagging.
        unsafe { check(env, sys::napi_unwrap(env, object, &mut data))? };
        return Ok(data.cast::<T>());
    }
    let e = Error::new(ErrorKind::InvalidArgument, format!("expected a {what}"));
    // SAFETY: as above (a failed check sets no exception).
    Err(unsafe { throw(env, &e) })
}

/// Whether `value` is `undefined` or `null`.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn is_nullish(env: RawEnv, value: Value) -> R<bool> {
    let mut t = 0;
    // SAFETY: per this function's contract.
    unsafe { check(env, sys::napi_typeof(env, value, &mut t))? };
    Ok(t == sys::ValueType::napi_undefined || t == sys::ValueType::napi_null)
}

/// `undefined`.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn undefined(env: RawEnv) -> R<Value> {
    let mut out = ptr::null_mut();
    // SAFETY: per this function's contract.
    unsafe { check(env, sys::napi_get_undefined(env, &mut out))? };
    Ok(out)
}

/// `null`.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn null(env: RawEnv) -> R<Value> {
    let mut out = ptr::null_mut();
    // SAFETY: per this function's contract.
    unsafe { check(env, sys::napi_get_null(env, &mut out))? };
    Ok(out)
}

/// A counter as a JS number (exact below 2^53).
///
/// # Safety
///
/// See the module docs.
pub unsafe fn number(env: RawEnv, n: u64) -> R<Value> {
    let mut out = ptr::null_mut();
    // SAFETY: per this function's contract.
    unsafe { check(env, sys::napi_create_double(env, n as f64, &mut out))? };
    Ok(out)
}

/// A JS string.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn string(env: RawEnv, s: &str) -> R<Value> {
    // SAFETY: per this function's contract.
    unsafe { napi(env, crate::json::string(env, s)) }
}

/// An optional argument that is a non-negative safe integer (`what` names it).
///
/// # Safety
///
/// See the module docs.
pub unsafe fn opt_uint(env: RawEnv, what: &str, value: Value) -> R<Option<u64>> {
    // SAFETY: per this function's contract.
    unsafe {
        if is_nullish(env, value)? {
            return Ok(None);
        }
        let n = napi(
            env,
            <f64 as napi::bindgen_prelude::FromNapiValue>::from_napi_value(env, value),
        )?;
        core(env, crate::args::uint(what, n)).map(Some)
    }
}

/// A string argument.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn string_arg(env: RawEnv, value: Value) -> R<String> {
    // SAFETY: per this function's contract.
    unsafe {
        napi(
            env,
            <String as napi::bindgen_prelude::FromNapiValue>::from_napi_value(env, value),
        )
    }
}

/// A boolean argument.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn bool_arg(env: RawEnv, value: Value) -> R<bool> {
    // SAFETY: per this function's contract.
    unsafe {
        napi(
            env,
            <bool as napi::bindgen_prelude::FromNapiValue>::from_napi_value(env, value),
        )
    }
}

/// A new array of `items`.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn array(env: RawEnv, items: impl ExactSizeIterator<Item = R<Value>>) -> R<Value> {
    let mut out = ptr::null_mut();
    // SAFETY: per this function's contract.
    unsafe {
        check(
            env,
            sys::napi_create_array_with_length(env, items.len(), &mut out),
        )?
    };
    for (i, item) in items.enumerate() {
        // SAFETY: as above.
        unsafe { check(env, sys::napi_set_element(env, out, i as u32, item?))? };
    }
    Ok(out)
}

/// Set `value` as property `name` of `object`.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn set(env: RawEnv, object: Value, name: &CStr, value: Value) -> R<()> {
    // SAFETY: per this function's contract.
    unsafe {
        check(
            env,
            sys::napi_set_named_property(env, object, name.as_ptr(), value),
        )
    }
}

/// Property `name` of `object`.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn get(env: RawEnv, object: Value, name: &CStr) -> R<Value> {
    let mut out = ptr::null_mut();
    // SAFETY: per this function's contract.
    unsafe {
        check(
            env,
            sys::napi_get_named_property(env, object, name.as_ptr(), &mut out),
        )?
    };
    Ok(out)
}

/// A new function calling `cb`.
///
/// # Safety
///
/// See the module docs.
pub unsafe fn function(env: RawEnv, name: &CStr, cb: Callback) -> R<Value> {
    let mut out = ptr::null_mut();
    // SAFETY: per this function's contract.
    unsafe {
        check(
            env,
            sys::napi_create_function(
                env,
                name.as_ptr(),
                name.to_bytes().len() as isize,
                Some(cb),
                ptr::null_mut(),
                &mut out,
            ),
        )?
    };
    Ok(out)
}
