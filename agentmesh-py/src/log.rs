//! Free functions over log files: verify, check, anchors, canonical form, read, fingerprint,
//! replay, time travel. Reports come back as Python dicts built natively ([`crate::pyser`]).

use std::path::PathBuf;

use agentmesh_core::{Anchor, AnchorKey, Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyString};

use crate::errors::{detached, to_py};
use crate::pyser;
use crate::run::NativeWorkflow;
use crate::stream::{EventStream, StateStream};

fn invalid_argument(py: Python<'_>, message: String) -> PyErr {
    to_py(py, &Error::new(ErrorKind::InvalidArgument, message))
}

/// A seq argument: an `int` in [0, 2**64), else `InvalidArgumentError` (not `OverflowError`).
pub fn seq_arg(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    let py = obj.py();
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        let ty = crate::pyjson::type_name(obj);
        return Err(invalid_argument(
            py,
            format!("seq must be an int, not {ty}"),
        ));
    }
    obj.extract::<u64>().map_err(|_| {
        let mut shown = obj.repr().map(|r| r.to_string()).unwrap_or_default();
        if shown.len() > 40 {
            shown = format!("{}…", &shown[..40]);
        }
        invalid_argument(py, format!("seq must be in [0, 2**64), not {shown}"))
    })
}

/// Verify a log, repairing a torn tail; the `VerifyReport`.
#[pyfunction]
pub fn verify_log(py: Python<'_>, path: PathBuf) -> PyResult<Py<PyAny>> {
    let report = detached(py, || agentmesh_core::verify_log(&path))?;
    Ok(pyser::to_py(py, &report)?.unbind())
}

/// What the run in a log spent (the `UsageReport`); a fork's inherited events apart.
#[pyfunction]
pub fn usage_report(py: Python<'_>, path: PathBuf) -> PyResult<Py<PyAny>> {
    let report = detached(py, || agentmesh_core::usage_report(&path))?;
    Ok(pyser::to_py(py, &report)?.unbind())
}

/// Verify a log without writing anything; the `VerifyReport` (`tornAt` for a damaged tail).
#[pyfunction]
pub fn check_log(py: Python<'_>, path: PathBuf) -> PyResult<Py<PyAny>> {
    let report = detached(py, || agentmesh_core::check_log(&path))?;
    Ok(pyser::to_py(py, &report)?.unbind())
}

/// Key material (bytes, or str taken as UTF-8) → the core's key. The material never appears
/// in an error.
fn anchor_key(key: Option<&Bound<'_, PyAny>>) -> PyResult<Option<AnchorKey>> {
    let Some(key) = key.filter(|k| !k.is_none()) else {
        return Ok(None);
    };
    let py = key.py();
    let material: Vec<u8> = if let Ok(b) = key.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else if let Ok(s) = key.cast::<PyString>() {
        s.to_cow()
            .map_err(|_| {
                invalid_argument(
                    py,
                    "the anchor key is a str that is not valid UTF-8 (a lone surrogate)".to_owned(),
                )
            })?
            .as_bytes()
            .to_vec()
    } else {
        let ty = crate::pyjson::type_name(key);
        return Err(invalid_argument(
            py,
            format!("an anchor key is bytes or str, not {ty}"),
        ));
    };
    detached(py, || AnchorKey::from_material(&material)).map(Some)
}

/// The anchor of a log as it is now (a dict: `version`, `runId`, `records`, `bytes`, `head`,
/// and `mac` when keyed). Read-only.
#[pyfunction]
#[pyo3(signature = (path, key=None))]
pub fn anchor(
    py: Python<'_>,
    path: PathBuf,
    key: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let key = anchor_key(key)?;
    let a = detached(py, || agentmesh_core::anchor(&path, key.as_ref()))?;
    Ok(pyser::to_py(py, &a)?.unbind())
}

/// Check a log against an anchor taken earlier (a dict or its JSON text); the `VerifyReport`.
#[pyfunction]
#[pyo3(signature = (path, anchor, key=None))]
pub fn verify_anchor(
    py: Python<'_>,
    path: PathBuf,
    anchor: &Bound<'_, PyAny>,
    key: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let text = if let Ok(s) = anchor.cast::<PyString>() {
        s.to_cow()
            .map_err(|_| {
                invalid_argument(
                    py,
                    "the anchor text is not valid UTF-8 (a lone surrogate)".to_owned(),
                )
            })?
            .into_owned()
    } else if anchor.is_instance_of::<pyo3::types::PyDict>() {
        crate::pyjson::from_py(anchor)
            .map_err(|why| invalid_argument(py, format!("the anchor is not JSON data: {why}")))?
            .to_string()
    } else {
        let ty = crate::pyjson::type_name(anchor);
        return Err(invalid_argument(
            py,
            format!("an anchor is a dict or its JSON text, not {ty}"),
        ));
    };
    let key = anchor_key(key)?;
    let report = detached(py, || {
        let a = Anchor::from_json(&text)?;
        agentmesh_core::verify_anchor(&path, &a, key.as_ref())
    })?;
    Ok(pyser::to_py(py, &report)?.unbind())
}

/// The canonical log: header, then events sorted by seq, without meta/prev/hash.
#[pyfunction]
pub fn canonical_log<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = detached(py, || {
        let mut out = Vec::new();
        agentmesh_core::canonical_log(&path, &mut out)?;
        Ok(out)
    })?;
    Ok(PyBytes::new(py, &bytes))
}

/// The log header (reads only the first line).
#[pyfunction]
pub fn read_header(py: Python<'_>, path: PathBuf) -> PyResult<Py<PyAny>> {
    let header = detached(py, || agentmesh_core::read_header(&path))?;
    Ok(pyser::to_py(py, &header)?.unbind())
}

/// The events in seq order, streamed: an iterator of dicts (canonical form).
#[pyfunction]
pub fn read_log(py: Python<'_>, path: PathBuf) -> PyResult<EventStream> {
    EventStream::open(py, path)
}

/// The run's state at seq 1, after every step and at the end, streamed in one pass.
#[pyfunction]
pub fn history(py: Python<'_>, path: PathBuf) -> PyResult<StateStream> {
    StateStream::open(py, path)
}

/// blake3 (hex) of the canonical log.
#[pyfunction]
pub fn fingerprint(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    detached(py, || agentmesh_core::fingerprint(&path))
}

/// Re-drive a log without calling agents; the `ReplayReport`.
#[pyfunction]
#[pyo3(signature = (path, workflow=None))]
pub fn replay(
    py: Python<'_>,
    path: PathBuf,
    workflow: Option<PyRef<'_, NativeWorkflow>>,
) -> PyResult<Py<PyAny>> {
    let wf = workflow.map(|w| w.inner.clone());
    let report = detached(py, || agentmesh_core::replay(&path, wf.as_ref()))?;
    Ok(pyser::to_py(py, &report)?.unbind())
}

/// The run's state as of `seq`; the `RunState`.
#[pyfunction]
pub fn state_at(py: Python<'_>, path: PathBuf, seq: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let seq = seq_arg(seq)?;
    let state = detached(py, || agentmesh_core::state_at(&path, seq))?;
    Ok(pyser::to_py(py, &state)?.unbind())
}

/// The workflow recorded in a log.
#[pyfunction]
pub fn recorded_workflow(py: Python<'_>, path: PathBuf) -> PyResult<NativeWorkflow> {
    let inner = detached(py, || agentmesh_core::recorded_workflow(&path))?;
    Ok(NativeWorkflow { inner })
}

/// Parse JSON text as the core does and write it back: numbers become what the core records
/// (`-0` → `-0.0`, integers beyond 64 bits → doubles), keys sorted.
#[pyfunction]
pub fn normalize_json(py: Python<'_>, text: &str) -> PyResult<String> {
    detached(py, || {
        let value = crate::errors::parse_arg("text", text)?;
        crate::errors::to_json(&value)
    })
}
