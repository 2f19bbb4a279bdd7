//! `agentmesh._agentmesh`: the native half of the Python package.
//!
//! Values from Python (outputs, input, approvals) become `serde_json::Value`s directly in
//! [`pyjson`], which accepts only JSON data; the core records them with serde, so the wire
//! format comes only from the core. Activations and completions are native objects
//! ([`activation`], [`completion`]); events, states and reports become Python objects natively
//! through serde ([`pyser`]), streamed where a log can be long ([`stream`]). Every call into
//! the core releases the GIL and catches panics (see [`errors::detached`]). [`cli`] runs the
//! `agentmesh` command itself, for `python -m agentmesh`. [`tools`] holds the rules of the
//! tools agents call (allowlists, rate limits, schemas) and the MCP servers a mesh starts. [`budget`]
//! checks what budgets take from Python: price tables, a run's budget option, a call's ask.
//! [`policy`] loads policies (`agentmesh.Policy`) and offers `redact` and `check_policy`.

mod activation;
mod budget;
mod calls;
mod cli;
mod completion;
mod errors;
mod item;
mod log;
mod policy;
mod pyjson;
mod pyser;
mod run;
mod stream;
mod telemetry;
mod tools;

use pyo3::prelude::*;

#[pymodule]
fn _agentmesh(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<run::NativeWorkflow>()?;
    m.add_class::<run::NativeRun>()?;
    m.add_class::<activation::Activation>()?;
    m.add_class::<item::Item>()?;
    m.add_class::<completion::NativeCompletion>()?;
    m.add_class::<calls::CallTicket>()?;
    m.add_class::<budget::NativePrices>()?;
    m.add_class::<policy::Policy>()?;
    m.add_class::<telemetry::Telemetry>()?;
    m.add_function(wrap_pyfunction!(telemetry::export_log, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::export_otlp, m)?)?;
    m.add_class::<telemetry::NativeLogBuffer>()?;
    let flush = wrap_pyfunction!(telemetry::flush_at_exit, m)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (flush,))?;
    m.add_function(wrap_pyfunction!(telemetry::capture_logs, m)?)?;
    m.add_function(wrap_pyfunction!(policy::redact, m)?)?;
    m.add_function(wrap_pyfunction!(policy::check_policy, m)?)?;
    m.add_class::<calls::NativeProvider>()?;
    m.add_class::<calls::NativeChunks>()?;
    m.add_class::<tools::NativeToolRules>()?;
    m.add_class::<tools::NativeTool>()?;
    m.add_class::<tools::NativeMcp>()?;
    m.add_function(wrap_pyfunction!(calls::provider_error_of, m)?)?;
    m.add_function(wrap_pyfunction!(calls::normalize_usage, m)?)?;
    m.add_function(wrap_pyfunction!(pyjson::to_json_text, m)?)?;
    m.add_class::<stream::EventStream>()?;
    m.add_class::<stream::StateStream>()?;
    m.add_function(wrap_pyfunction!(log::verify_log, m)?)?;
    m.add_function(wrap_pyfunction!(log::check_log, m)?)?;
    m.add_function(wrap_pyfunction!(log::anchor, m)?)?;
    m.add_function(wrap_pyfunction!(log::verify_anchor, m)?)?;
    m.add_function(wrap_pyfunction!(log::history, m)?)?;
    m.add_function(wrap_pyfunction!(log::canonical_log, m)?)?;
    m.add_function(wrap_pyfunction!(log::read_log, m)?)?;
    m.add_function(wrap_pyfunction!(log::read_header, m)?)?;
    m.add_function(wrap_pyfunction!(log::fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(log::usage_report, m)?)?;
    m.add_function(wrap_pyfunction!(log::replay, m)?)?;
    m.add_function(wrap_pyfunction!(log::state_at, m)?)?;
    m.add_function(wrap_pyfunction!(log::recorded_workflow, m)?)?;
    m.add_function(wrap_pyfunction!(log::normalize_json, m)?)?;
    m.add_function(wrap_pyfunction!(errors::error_codes, m)?)?;
    m.add_function(wrap_pyfunction!(cli::cli_main, m)?)?;
    Ok(())
}
