//! `NativeCompletion`: what an agent's result became, converted the moment the driver got it.
//!
//! The driver turns a result into a `NativeCompletion` as soon as it is available — a
//! synchronous agent's value before any microtask can run, a Promise's in its settlement
//! callback — so nothing done to the JavaScript value afterwards (a microtask the agent
//! queued, code holding a reference) can change what is logged. The value is checked and
//! converted here (JSON data, `json.rs`; usage by the core's one strict parser,
//! `Usage::from_value`); a result that is not JSON data becomes the core's permanent
//! `InvalidOutput` failure (`Completion::invalid_output`) at once, and the `INVALID_OUTPUT`
//! error stays available as `error` (the cause a failed run reports). `NativeRun.completeAll`
//! records a burst of them in one commit. A plain Node-API class (see `raw.rs` for why); its
//! typings are `native-raw.d.ts`.

use agentmesh_core::{Completion, Error, Failure, Usage};
use napi::sys;
use serde_json::Value as Json;

use crate::json::{self, Refused};
use crate::raw::{self, RawEnv, Value, R};

/// The completion of one activation, ready to be recorded (once) by `NativeRun.completeAll`.
pub struct NativeCompletion {
    pub(crate) id: u64,
    /// Taken when recorded.
    pub(crate) completion: Option<Completion>,
    /// Why the result could not be recorded as given (`INVALID_OUTPUT`, naming the node).
    pub(crate) refused: Option<Error>,
}

/// The activation a completion is for: its id, and its node (named by `INVALID_OUTPUT`).
struct For {
    id: u64,
    node: String,
}

/// The activation's id and node, the first two arguments of every factory.
///
/// # Safety
///
/// As for `raw`.
unsafe fn activation(env: RawEnv, id: Value, node: Value) -> R<For> {
    // SAFETY: per this function's contract.
    unsafe {
        let id = raw::napi(
            env,
            <f64 as napi::bindgen_prelude::FromNapiValue>::from_napi_value(env, id),
        )?;
        Ok(For {
            id: raw::core(env, crate::args::uint("id", id))?,
            node: raw::string_arg(env, node)?,
        })
    }
}

impl NativeCompletion {
    fn new(act: &For, completion: Completion) -> NativeCompletion {
        NativeCompletion {
            id: act.id,
            completion: Some(completion),
            refused: None,
        }
    }

    /// The permanent `InvalidOutput` failure for a result that cannot be recorded.
    fn refused(act: &For, error: Error, usage: Option<Usage>, us: Option<u64>) -> Self {
        let mut completion = Completion::invalid_output(&error);
        completion.usage = usage;
        completion.duration_us = us;
        NativeCompletion {
            id: act.id,
            completion: Some(completion),
            refused: Some(error),
        }
    }
}

impl raw::Class for NativeCompletion {
    const NAME: &'static std::ffi::CStr = c"NativeCompletion";
    const SLOT: usize = 0;
    const TAG: sys::napi_type_tag = sys::napi_type_tag {
        lower: 0x3e81_f0a9_27c6_5b1d,
        upper: 0xd40b_96e2_7a35_c18f,
    };
}

/// A value that is not JSON data: `Err(message)`.
type Checked<T> = std::result::Result<T, String>;

/// `value` as JSON data; a JS exception thrown while reading it (a getter, a Proxy trap) is
/// passed on (the driver then records the result as unreadable).
///
/// # Safety
///
/// As for `raw`.
unsafe fn data(env: RawEnv, what: &str, value: Value) -> R<Checked<Json>> {
    // SAFETY: per this function's contract.
    match unsafe { json::from_raw(env, value) } {
        Ok(v) => Ok(Ok(v)),
        Err(Refused::NotJson(why)) => Ok(Err(format!("{what} is not JSON data: {why}"))),
        // SAFETY: as above.
        Err(Refused::Js(e)) => Err(unsafe { raw::throw_napi(env, e) }),
    }
}

/// Usage as a host gives it: `undefined` or `null` is none; anything else goes through the
/// core's strict parser.
///
/// # Safety
///
/// As for `raw`.
unsafe fn usage(env: RawEnv, value: Value) -> R<Checked<Option<Usage>>> {
    // SAFETY: per this function's contract.
    unsafe {
        if raw::is_nullish(env, value)? {
            return Ok(Ok(None));
        }
        Ok(match data(env, "usage", value)? {
            Ok(Json::Null) => Ok(None),
            Ok(v) => Usage::from_value(&v).map(Some),
            Err(why) => Err(why),
        })
    }
}

/// The completion `make(value)` with usage and duration, or the `InvalidOutput` failure for
/// the first problem found (the value's, then the usage's).
fn finish<T>(
    act: &For,
    value: Checked<T>,
    usage: Checked<Option<Usage>>,
    us: Option<u64>,
    make: impl FnOnce(T) -> Completion,
) -> NativeCompletion {
    let node = &act.node;
    match (value, usage) {
        (Ok(v), Ok(u)) => {
            let mut completion = make(v);
            completion.usage = u;
            completion.duration_us = us;
            NativeCompletion::new(act, completion)
        }
        (Err(why), u) => {
            NativeCompletion::refused(act, Error::invalid_output(node, &why), u.ok().flatten(), us)
        }
        (Ok(_), Err(why)) => {
            NativeCompletion::refused(act, Error::invalid_output(node, &why), None, us)
        }
    }
}

/// A static factory: `make(env, args)` builds the completion.
///
/// Every factory takes one more, optional, argument: `into`, a `NativeCompletion` to reuse
/// (what it held is dropped) instead of making a new object. The driver recycles recorded
/// completions this way: a new wrapped object per result costs about 1 µs of Node-API wrapping
/// and GC finalization, a large part of a step.
macro_rules! factory {
    ($fn:ident, $n:literal, |$env:ident, $argv:ident| $body:expr) => {
        unsafe extern "C" fn $fn(env: RawEnv, info: sys::napi_callback_info) -> Value {
            // SAFETY: Node-API calls this with its environment and call info.
            unsafe {
                raw::callback(env, || {
                    let all = raw::args::<{ $n + 1 }>(env, info)?.argv;
                    let into = all[$n];
                    let $argv = &all[..$n];
                    let $env = env;
                    let completion: NativeCompletion = $body?;
                    if raw::is_nullish(env, into)? {
                        return raw::new_instance(env, completion);
                    }
                    // No JavaScript runs from here: the only reference to it.
                    *unwrap(env, into)? = completion;
                    Ok(into)
                })
            }
        }
    };
}

// `NativeCompletion.ok(id, node, output, usage?, durationUs?)`: `output` (JSON data). A
// value that is not JSON data, or bad usage, makes the permanent InvalidOutput failure naming
// the node and the path (`$.a[2]`); a JS exception thrown while reading the value is thrown.
factory!(ok, 5, |env, argv| {
    let act = activation(env, argv[0], argv[1])?;
    let us = raw::opt_uint(env, "durationUs", argv[4])?;
    let output = data(env, "output", argv[2])?;
    let usage = usage(env, argv[3])?;
    Ok::<_, raw::Thrown>(finish(&act, output, usage, us, Completion::ok))
});

// `NativeCompletion.okJson(id, node, text, usage?, durationUs?)`: the output as JSON text,
// recorded as the core parses it (`1.0`, `-0`, integers beyond 2^53 exactly).
factory!(ok_json, 5, |env, argv| {
    let act = activation(env, argv[0], argv[1])?;
    let text = raw::string_arg(env, argv[2])?;
    let us = raw::opt_uint(env, "durationUs", argv[4])?;
    let output =
        serde_json::from_str::<Json>(&text).map_err(|e| format!("output is not valid JSON: {e}"));
    let usage = usage(env, argv[3])?;
    Ok::<_, raw::Thrown>(finish(&act, output, usage, us, Completion::ok))
});

// `NativeCompletion.err(id, node, errorType, message, retryable, usage?, durationUs?)`: a
// failure the agent reported, with the usage of the failed attempt (a failed paid call still
// spent tokens). Bad usage makes the InvalidOutput failure instead.
factory!(err, 7, |env, argv| {
    let act = activation(env, argv[0], argv[1])?;
    let error_type = raw::string_arg(env, argv[2])?;
    let message = raw::string_arg(env, argv[3])?;
    let retryable = raw::bool_arg(env, argv[4])?;
    let us = raw::opt_uint(env, "durationUs", argv[6])?;
    let usage = usage(env, argv[5])?;
    let failure = Failure {
        retryable,
        ..Failure::error(error_type, message)
    };
    Ok::<_, raw::Thrown>(finish(&act, Ok(()), usage, us, |()| {
        Completion::err(failure)
    }))
});

// `NativeCompletion.timedOut(id, node)`: the deadline passed first; the core records the
// one timeout failure every host records.
factory!(timed_out, 2, |env, argv| {
    let act = activation(env, argv[0], argv[1])?;
    Ok::<_, raw::Thrown>(NativeCompletion::new(&act, Completion::timed_out()))
});

// `NativeCompletion.unreadable(id, node, reason, durationUs?)`: a result that could not be
// read (reading it ran code that threw, a Promise given to a synchronous driver): the
// InvalidOutput failure, `node '<node>': <reason>`.
factory!(unreadable, 4, |env, argv| {
    let act = activation(env, argv[0], argv[1])?;
    let reason = raw::string_arg(env, argv[2])?;
    let us = raw::opt_uint(env, "durationUs", argv[3])?;
    let error = Error::invalid_output(&act.node, &reason);
    Ok::<_, raw::Thrown>(NativeCompletion::refused(&act, error, None, us))
});

/// The completion behind JS value `value`, as a pointer (see `raw::unwrap`).
///
/// # Safety
///
/// As for `raw::unwrap`.
pub unsafe fn unwrap(env: RawEnv, value: Value) -> R<*mut NativeCompletion> {
    // SAFETY: per this function's contract.
    unsafe { raw::unwrap(env, value, "NativeCompletion") }
}

unsafe extern "C" fn get_id(env: RawEnv, info: sys::napi_callback_info) -> Value {
    // SAFETY: Node-API calls this with its environment and call info.
    unsafe {
        raw::callback(env, || {
            let c = &*unwrap(env, raw::args::<0>(env, info)?.this)?;
            raw::number(env, c.id)
        })
    }
}

unsafe extern "C" fn get_error(env: RawEnv, info: sys::napi_callback_info) -> Value {
    // SAFETY: Node-API calls this with its environment and call info.
    unsafe {
        raw::callback(env, || {
            let c = &*unwrap(env, raw::args::<0>(env, info)?.this)?;
            match &c.refused {
                Some(e) => raw::napi(env, crate::errors::error_value(env, e)),
                None => raw::null(env),
            }
        })
    }
}

/// Define the class (at module load).
///
/// # Safety
///
/// As for `raw`.
pub unsafe fn define(env: RawEnv) -> R<Value> {
    // SAFETY: per this function's contract.
    unsafe {
        raw::define_class::<NativeCompletion>(
            env,
            &[(c"id", get_id), (c"error", get_error)],
            &[],
            &[
                (c"ok", ok),
                (c"okJson", ok_json),
                (c"err", err),
                (c"timedOut", timed_out),
                (c"unreadable", unreadable),
            ],
        )
    }
}

/// Take the completions out of `items` for one commit; each can be recorded once.
///
/// Errors: `INVALID_ARGUMENT` (a completion recorded already, or given twice; nothing is
/// taken then).
///
/// # Safety
///
/// Each pointer is a live `NativeCompletion` (from [`unwrap`]) and no other reference to any
/// of them is live.
pub(crate) unsafe fn take_all(
    items: &[*mut NativeCompletion],
) -> agentmesh_core::Result<Vec<(u64, Completion, Option<Error>)>> {
    // Most bursts are small: a linear check beats hashing there.
    let mut seen =
        (items.len() > 32).then(|| std::collections::HashSet::with_capacity(items.len()));
    for (i, &p) in items.iter().enumerate() {
        // SAFETY: per this function's contract; read only, one at a time.
        let recorded = unsafe { (*p).completion.is_none() };
        let twice = match seen.as_mut() {
            Some(set) => !set.insert(p),
            None => items[..i].contains(&p),
        };
        if recorded || twice {
            return Err(crate::errors::invalid_argument(if recorded {
                "this completion was recorded already"
            } else {
                "the same completion was given twice"
            }));
        }
    }
    Ok(items
        .iter()
        .map(|&p| {
            // SAFETY: distinct live completions (checked above), no other reference.
            let c = unsafe { &mut *p };
            let completion = c.completion.take().expect("checked above");
            (c.id, completion, c.refused.clone())
        })
        .collect())
}
