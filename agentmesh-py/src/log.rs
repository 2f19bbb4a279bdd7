//! Free functions over log files: verify, canonical form, read, fingerprint, replay, time travel.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{detached, to_json};
use crate::run::NativeWorkflow;

/// Verify a log (repairing a torn tail); the `VerifyReport` as JSON text.
#[pyfunction]
pub fn verify_log(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    detached(py, || to_json(&agentmesh_core::verify_log(&path)?))
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

/// The log header as JSON text (reads only the first line).
#[pyfunction]
pub fn read_header(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    detached(py, || to_json(&agentmesh_core::read_header(&path)?))
}

/// The header and the events (canonical JSON text each, in seq order).
#[pyfunction]
pub fn read_log(py: Python<'_>, path: PathBuf) -> PyResult<(String, Vec<String>)> {
    detached(py, || {
        let (header, events) = agentmesh_core::read_log(&path)?;
        Ok((
            to_json(&header)?,
            events.iter().map(|e| e.to_canonical_json()).collect(),
        ))
    })
}

/// blake3 (hex) of the canonical log.
#[pyfunction]
pub fn fingerprint(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    detached(py, || agentmesh_core::fingerprint(&path))
}

/// Re-drive a log without calling agents; the `ReplayReport` as JSON text.
#[pyfunction]
#[pyo3(signature = (path, workflow=None))]
pub fn replay(
    py: Python<'_>,
    path: PathBuf,
    workflow: Option<PyRef<'_, NativeWorkflow>>,
) -> PyResult<String> {
    let wf = workflow.map(|w| w.inner.clone());
    detached(py, || to_json(&agentmesh_core::replay(&path, wf.as_ref())?))
}

/// The run's state as of `seq`; the `RunState` as JSON text.
#[pyfunction]
pub fn state_at(py: Python<'_>, path: PathBuf, seq: u64) -> PyResult<String> {
    detached(py, || to_json(&agentmesh_core::state_at(&path, seq)?))
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
        to_json(&value)
    })
}
