//! Core errors → Python exceptions, and the one place the GIL is released.
//!
//! The exception classes live in `agentmesh/errors.py` (one table, one class per code); the
//! native side raises by calling `agentmesh.errors._from_native(code, message, details_json)`,
//! so Rust never duplicates the class list.

use std::panic::{catch_unwind, AssertUnwindSafe};

use agentmesh_core::{Error, ErrorKind};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use serde_json::Value;

/// The stable codes of every core error kind, in declaration order.
#[pyfunction]
pub fn error_codes() -> Vec<&'static str> {
    ErrorKind::ALL.iter().map(|k| k.code()).collect()
}

/// Run core work with the GIL released; a core error becomes the matching Python exception and
/// a panic becomes `InternalError` instead of unwinding into the interpreter.
pub fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> agentmesh_core::Result<T> + Send,
    T: Send,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py(py, &e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(raise(
                py,
                ErrorKind::Internal.code(),
                &format!("panic inside agentmesh: {msg}"),
                &Value::Null,
            ))
        }
    }
}

/// The Python exception for a core error, with its structured details.
pub fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    // The core's one JSON form of the details.
    let details = e.detail().map_or(Value::Null, |d| d.to_json());
    raise(py, e.code(), e.message(), &details)
}

/// Build `agentmesh.errors` exception `code`; falls back to `RuntimeError` only if that module
/// cannot be imported (the native module used without its package).
pub fn raise(py: Python<'_>, code: &str, message: &str, details: &Value) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = py.import("agentmesh.errors")?;
        let exc = module
            .getattr("_from_native")?
            .call1((code, message, details.to_string()))?;
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|_| PyRuntimeError::new_err(format!("[{code}] {message}")))
}

/// Serialize a core value to JSON text; failure here is a bug, reported as `INTERNAL`.
pub fn to_json<T: serde::Serialize>(value: &T) -> agentmesh_core::Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("serializing: {e}")))
}

/// Parse JSON text coming from Python as an argument (`input`, overrides).
pub fn parse_arg(what: &str, text: &str) -> agentmesh_core::Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} is not valid JSON: {e}"),
        )
    })
}
