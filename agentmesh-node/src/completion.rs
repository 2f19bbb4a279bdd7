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
//! records a burst of them in one commit.

use agentmesh_core::{Completion, Error, Failure, Usage};
use napi::bindgen_prelude::Unknown;
use napi::Env;
use napi_derive::napi;
use serde_json::Value;

use crate::activation::NativeActivation;
use crate::args;
use crate::errors::{CoreError, OrThrow};
use crate::json::{from_js, Refused};

/// The completion of one activation, ready to be recorded (once) by `NativeRun.completeAll`.
#[napi]
pub struct NativeCompletion {
    pub(crate) id: u64,
    /// Taken when recorded.
    pub(crate) completion: Option<Completion>,
    /// Why the result could not be recorded as given (`INVALID_OUTPUT`, naming the node).
    pub(crate) refused: Option<Error>,
}

impl NativeCompletion {
    fn new(act: &NativeActivation, completion: Completion) -> NativeCompletion {
        NativeCompletion {
            id: act.inner.id,
            completion: Some(completion),
            refused: None,
        }
    }

    /// The permanent `InvalidOutput` failure for a result that cannot be recorded.
    fn refused(
        act: &NativeActivation,
        error: Error,
        usage: Option<Usage>,
        us: Option<u64>,
    ) -> Self {
        let mut completion = Completion::invalid_output(&error);
        completion.usage = usage;
        completion.duration_us = us;
        NativeCompletion {
            id: act.inner.id,
            completion: Some(completion),
            refused: Some(error),
        }
    }

    fn with_extras(mut self, usage: Option<Usage>, us: Option<u64>) -> NativeCompletion {
        if let Some(c) = self.completion.as_mut() {
            c.usage = usage;
            c.duration_us = us;
        }
        self
    }
}

/// What went wrong with a result's value: not JSON data (`Err(message)`), or a JS exception
/// thrown while reading it (a getter, a Proxy trap: passed on, the driver records it).
type Checked<T> = std::result::Result<T, String>;

fn data(env: &Env, what: &str, value: &Unknown<'_>) -> napi::Result<Checked<Value>> {
    match from_js(env, value) {
        Ok(v) => Ok(Ok(v)),
        Err(Refused::NotJson(why)) => Ok(Err(format!("{what} is not JSON data: {why}"))),
        Err(Refused::Js(e)) => Err(e),
    }
}

/// Usage as a host gives it: absent, `undefined` or `null` is none; anything else goes
/// through the core's strict parser.
fn usage(env: &Env, value: Option<&Unknown<'_>>) -> napi::Result<Checked<Option<Usage>>> {
    let Some(value) = value else {
        return Ok(Ok(None));
    };
    Ok(match data(env, "usage", value)? {
        Ok(Value::Null) => Ok(None),
        Ok(v) => Usage::from_value(&v).map(Some),
        Err(why) => Err(why),
    })
}

fn duration(env: &Env, us: Option<f64>) -> napi::Result<Option<u64>> {
    args::opt_uint("durationUs", us).or_throw(env)
}

#[napi]
impl NativeCompletion {
    /// `output` (JSON data) with optional `usage` (`{inputTokens, outputTokens}`) and
    /// duration. A value that is not JSON data, or bad usage, makes the permanent
    /// `InvalidOutput` failure naming the node and the path (`$.a[2]`); a JS exception thrown
    /// while reading the value is thrown (see `unreadable`). Errors: `INVALID_ARGUMENT`
    /// (`durationUs`).
    #[napi(factory, catch_unwind)]
    pub fn ok(
        env: &Env,
        activation: &NativeActivation,
        #[napi(ts_arg_type = "unknown")] output: Unknown<'_>,
        #[napi(ts_arg_type = "unknown")] usage: Option<Unknown<'_>>,
        duration_us: Option<f64>,
    ) -> napi::Result<NativeCompletion> {
        let us = duration(env, duration_us)?;
        let output = data(env, "output", &output)?;
        let usage = self::usage(env, usage.as_ref())?;
        Ok(finish(activation, output, usage, us, Completion::ok))
    }

    /// `ok` with the output as JSON text, recorded as the core parses it (`1.0`, `-0`,
    /// integers beyond 2^53 exactly).
    #[napi(factory, catch_unwind)]
    pub fn ok_json(
        env: &Env,
        activation: &NativeActivation,
        output_json: String,
        #[napi(ts_arg_type = "unknown")] usage: Option<Unknown<'_>>,
        duration_us: Option<f64>,
    ) -> napi::Result<NativeCompletion> {
        let us = duration(env, duration_us)?;
        let output = serde_json::from_str::<Value>(&output_json)
            .map_err(|e| format!("output is not valid JSON: {e}"));
        let usage = self::usage(env, usage.as_ref())?;
        Ok(finish(activation, output, usage, us, Completion::ok))
    }

    /// A failure the agent reported (its error type, message, retryable flag), with the
    /// usage of the failed attempt (a failed paid call still spent tokens). Bad usage makes
    /// the `InvalidOutput` failure instead. Errors: `INVALID_ARGUMENT` (`durationUs`).
    #[napi(factory, catch_unwind)]
    pub fn err(
        env: &Env,
        activation: &NativeActivation,
        error_type: String,
        message: String,
        retryable: bool,
        #[napi(ts_arg_type = "unknown")] usage: Option<Unknown<'_>>,
        duration_us: Option<f64>,
    ) -> napi::Result<NativeCompletion> {
        let us = duration(env, duration_us)?;
        let usage = self::usage(env, usage.as_ref())?;
        let failure = Failure {
            retryable,
            ..Failure::error(error_type, message)
        };
        Ok(finish(activation, Ok(()), usage, us, |()| {
            Completion::err(failure)
        }))
    }

    /// The activation's deadline passed first: the core records the one timeout failure
    /// every host records.
    #[napi(factory, catch_unwind)]
    pub fn timed_out(activation: &NativeActivation) -> NativeCompletion {
        NativeCompletion::new(activation, Completion::timed_out())
    }

    /// A result that could not be read (reading it ran code that threw, or it is a Promise
    /// given to a synchronous driver): the `InvalidOutput` failure, `node '<node>': <reason>`.
    /// Errors: `INVALID_ARGUMENT` (`durationUs`).
    #[napi(factory, catch_unwind)]
    pub fn unreadable(
        env: &Env,
        activation: &NativeActivation,
        reason: String,
        duration_us: Option<f64>,
    ) -> napi::Result<NativeCompletion> {
        let us = duration(env, duration_us)?;
        let error = Error::invalid_output(&activation.inner.node, &reason);
        Ok(NativeCompletion::refused(activation, error, None, us))
    }

    /// The activation id it completes.
    #[napi(getter)]
    pub fn id(&self) -> i64 {
        crate::objects::num(self.id)
    }

    /// The `INVALID_OUTPUT` error when the result could not be recorded as given (it is then
    /// recorded as the permanent `InvalidOutput` failure), else `null`.
    #[napi(getter, ts_return_type = "Error | null")]
    pub fn error(&self) -> Option<CoreError> {
        self.refused.clone().map(CoreError)
    }
}

/// The completion `make(value)` with usage and duration, or the `InvalidOutput` failure for
/// the first problem found (the value's, then the usage's).
fn finish<T>(
    act: &NativeActivation,
    value: Checked<T>,
    usage: Checked<Option<Usage>>,
    us: Option<u64>,
    make: impl FnOnce(T) -> Completion,
) -> NativeCompletion {
    let node = &act.inner.node;
    match (value, usage) {
        (Ok(v), Ok(u)) => NativeCompletion::new(act, make(v)).with_extras(u, us),
        (Err(why), u) => {
            NativeCompletion::refused(act, Error::invalid_output(node, &why), u.ok().flatten(), us)
        }
        (Ok(_), Err(why)) => {
            NativeCompletion::refused(act, Error::invalid_output(node, &why), None, us)
        }
    }
}

/// Take the completions out of `items` for one commit; each can be recorded once.
///
/// Errors: `INVALID_ARGUMENT` (a completion recorded already; nothing is taken then).
pub(crate) fn take_all(
    items: &mut [&mut NativeCompletion],
) -> agentmesh_core::Result<Vec<(u64, Completion, Option<Error>)>> {
    if items.iter().any(|c| c.completion.is_none()) {
        return Err(crate::errors::invalid_argument(
            "this completion was recorded already",
        ));
    }
    Ok(items
        .iter_mut()
        .map(|c| {
            let completion = c.completion.take().expect("checked above");
            (c.id, completion, c.refused.clone())
        })
        .collect())
}
