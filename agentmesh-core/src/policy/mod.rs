//! The policy engine: rules that redact or block what flows through a run.
pub mod detect;
