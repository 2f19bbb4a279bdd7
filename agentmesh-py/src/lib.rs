//! `agentmesh._agentmesh`: the native half of the Python package.
//!
//! Values cross the boundary as JSON text: Python serializes with `json.dumps`, Rust parses with
//! serde_json, and everything Rust returns (activations, outcomes, reports, events) is serde
//! JSON text that Python parses with `json.loads`. The wire format therefore comes only from the
//! core. Every call into the core releases the GIL and catches panics (see [`errors::detached`]).

mod errors;
mod log;
mod run;

use pyo3::prelude::*;

#[pymodule]
fn _agentmesh(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<run::NativeWorkflow>()?;
    m.add_class::<run::NativeRun>()?;
    m.add_function(wrap_pyfunction!(log::verify_log, m)?)?;
    m.add_function(wrap_pyfunction!(log::canonical_log, m)?)?;
    m.add_function(wrap_pyfunction!(log::read_log, m)?)?;
    m.add_function(wrap_pyfunction!(log::fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(log::replay, m)?)?;
    m.add_function(wrap_pyfunction!(log::state_at, m)?)?;
    m.add_function(wrap_pyfunction!(log::recorded_workflow, m)?)?;
    m.add_function(wrap_pyfunction!(log::normalize_json, m)?)?;
    m.add_function(wrap_pyfunction!(errors::error_codes, m)?)?;
    Ok(())
}
