//! `Completion`: what an agent's activation came to, snapshotted the moment it returned.
//!
//! The worker thread that ran the agent builds one while it still holds the GIL: the output
//! becomes the core's JSON value right there, so nothing another thread does to the returned
//! objects afterwards can change what is logged. A result that cannot be recorded (not JSON
//! data, bad usage, bad `RawJson` text) becomes the core's one `InvalidOutput` failure, with
//! the `InvalidOutputError` kept as the cause the driver raises `AgentFailedError` from.

use std::sync::Mutex;

use agentmesh_core::{Completion as CoreCompletion, Error, ErrorKind, Failure, FailureKind, Usage};
use pyo3::prelude::*;
use serde_json::Value;

use crate::activation::Activation;
use crate::errors::to_py;
use crate::pyjson;

/// One activation's result, ready for `NativeRun.complete_all` (used once).
#[pyclass(frozen, module = "agentmesh._agentmesh", name = "Completion")]
pub struct NativeCompletion {
    inner: Mutex<Option<CoreCompletion>>,
    failed: bool,
    /// The Python exception behind a failure (the agent's, or the `InvalidOutputError`).
    cause: Option<Py<PyAny>>,
}

impl NativeCompletion {
    fn new(completion: CoreCompletion, cause: Option<Py<PyAny>>) -> NativeCompletion {
        NativeCompletion {
            failed: completion.result.is_err(),
            inner: Mutex::new(Some(completion)),
            cause,
        }
    }

    /// The core's `InvalidOutput` failure for `error`, with the exception as the cause.
    fn invalid(py: Python<'_>, error: &Error, duration_us: Option<u64>) -> NativeCompletion {
        NativeCompletion::invalid_with_usage(py, error, None, duration_us)
    }

    /// As [`NativeCompletion::invalid`], keeping tokens the attempt spent.
    fn invalid_with_usage(
        py: Python<'_>,
        error: &Error,
        usage: Option<Usage>,
        duration_us: Option<u64>,
    ) -> NativeCompletion {
        let mut completion = with_duration(CoreCompletion::invalid_output(error), duration_us);
        completion.usage = usage;
        NativeCompletion::new(completion, Some(to_py(py, error).into_value(py).into_any()))
    }

    /// The core completion, once: a second use is a driver bug.
    pub fn take(&self) -> agentmesh_core::Result<CoreCompletion> {
        self.inner
            .lock()
            .ok()
            .and_then(|mut c| c.take())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    "this completion was already given to a run",
                )
            })
    }
}

fn with_duration(completion: CoreCompletion, duration_us: Option<u64>) -> CoreCompletion {
    match duration_us {
        Some(us) => completion.with_duration_us(us),
        None => completion,
    }
}

/// Usage as the core reads it (`Usage::from_value`, the one parser of every shape), or why
/// not. An SDK object (the openai or anthropic clients' pydantic models: a usage object or a
/// whole response) is read through its `model_dump(mode="json")`.
pub(crate) fn usage_of(usage: Option<&Bound<'_, PyAny>>) -> Result<Option<Usage>, String> {
    match usage {
        None => Ok(None),
        Some(u) if u.is_none() => Ok(None),
        Some(u) => {
            let dumped;
            let u = if u.hasattr("model_dump").unwrap_or(false)
                && !u.is_instance_of::<pyo3::types::PyDict>()
            {
                let kwargs = pyo3::types::PyDict::new(u.py());
                kwargs
                    .set_item("mode", "json")
                    .map_err(|e| format!("usage: {e}"))?;
                dumped = u
                    .call_method("model_dump", (), Some(&kwargs))
                    .map_err(|e| format!("usage: model_dump() failed: {e}"))?;
                &dumped
            } else {
                u
            };
            let value =
                pyjson::from_py(u).map_err(|why| format!("usage is not JSON data: {why}"))?;
            Usage::from_value(&value).map(Some)
        }
    }
}

#[pymethods]
impl NativeCompletion {
    /// The agent returned `output` (JSON data), with optional `usage`.
    #[staticmethod]
    #[pyo3(signature = (act, output, usage=None, duration_us=None))]
    fn ok(
        py: Python<'_>,
        act: PyRef<'_, Activation>,
        output: &Bound<'_, PyAny>,
        usage: Option<&Bound<'_, PyAny>>,
        duration_us: Option<u64>,
    ) -> NativeCompletion {
        let output =
            pyjson::from_py(output).map_err(|why| format!("output is not JSON data: {why}"));
        ok_value(py, &act, output, usage, duration_us)
    }

    /// The agent returned JSON text (`RawJson`): recorded as the core parses it.
    #[staticmethod]
    #[pyo3(signature = (act, text, usage=None, duration_us=None))]
    fn ok_json(
        py: Python<'_>,
        act: PyRef<'_, Activation>,
        text: &str,
        usage: Option<&Bound<'_, PyAny>>,
        duration_us: Option<u64>,
    ) -> NativeCompletion {
        let output = serde_json::from_str::<Value>(text)
            .map_err(|e| format!("output is not valid JSON: {e}"));
        ok_value(py, &act, output, usage, duration_us)
    }

    /// The agent failed: `error_type`, `message`, `retryable`, the tokens it spent anyway,
    /// and the Python exception (`cause`).
    #[staticmethod]
    #[pyo3(signature = (act, error_type, message, retryable=true, usage=None, duration_us=None, cause=None))]
    #[allow(clippy::too_many_arguments)]
    fn err(
        py: Python<'_>,
        act: PyRef<'_, Activation>,
        error_type: String,
        message: String,
        retryable: bool,
        usage: Option<&Bound<'_, PyAny>>,
        duration_us: Option<u64>,
        cause: Option<Py<PyAny>>,
    ) -> NativeCompletion {
        let usage = match usage_of(usage) {
            Ok(u) => u,
            Err(why) => {
                return NativeCompletion::invalid(
                    py,
                    &Error::invalid_output(&act.inner.node, &why),
                    duration_us,
                )
            }
        };
        let mut completion = CoreCompletion::err(Failure {
            kind: FailureKind::Error,
            error_type,
            message,
            retryable,
        });
        if let Some(u) = usage {
            completion = completion.with_usage(u);
        }
        NativeCompletion::new(with_duration(completion, duration_us), cause)
    }

    /// The result cannot be recorded: the core's `InvalidOutput` failure for node
    /// `act.node` with `reason` (`node '<node>': <reason>`).
    #[staticmethod]
    #[pyo3(signature = (act, reason, duration_us=None))]
    fn invalid_output(
        py: Python<'_>,
        act: PyRef<'_, Activation>,
        reason: &str,
        duration_us: Option<u64>,
    ) -> NativeCompletion {
        NativeCompletion::invalid(
            py,
            &Error::invalid_output(&act.inner.node, reason),
            duration_us,
        )
    }

    /// The activation's deadline passed; the core writes the timeout failure.
    #[staticmethod]
    #[pyo3(signature = (duration_us=None))]
    fn timed_out(duration_us: Option<u64>) -> NativeCompletion {
        NativeCompletion::new(
            with_duration(CoreCompletion::timed_out(), duration_us),
            None,
        )
    }

    /// Whether this completion is a failure.
    #[getter]
    fn failed(&self) -> bool {
        self.failed
    }

    /// The Python exception behind a failure, if any.
    #[getter]
    fn cause(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.cause.as_ref().map(|c| c.clone_ref(py))
    }

    fn __repr__(&self) -> String {
        let state = match self.inner.lock().ok().as_deref() {
            Some(Some(c)) => match &c.result {
                Ok(_) => "ok".to_owned(),
                Err(f) => format!("failed: {}", f.error_type),
            },
            _ => "used".to_owned(),
        };
        format!("Completion({state})")
    }
}

fn ok_value(
    py: Python<'_>,
    act: &Activation,
    output: Result<Value, String>,
    usage: Option<&Bound<'_, PyAny>>,
    duration_us: Option<u64>,
) -> NativeCompletion {
    let node = &act.inner.node;
    let usage = match usage_of(usage) {
        Ok(u) => u,
        Err(why) => {
            return NativeCompletion::invalid(py, &Error::invalid_output(node, &why), duration_us)
        }
    };
    match output {
        Ok(value) => {
            let mut completion = CoreCompletion::ok(value);
            if let Some(u) = usage {
                completion = completion.with_usage(u);
            }
            NativeCompletion::new(with_duration(completion, duration_us), None)
        }
        // The tokens were spent even though the output cannot be recorded.
        Err(why) => NativeCompletion::invalid_with_usage(
            py,
            &Error::invalid_output(node, &why),
            usage,
            duration_us,
        ),
    }
}
