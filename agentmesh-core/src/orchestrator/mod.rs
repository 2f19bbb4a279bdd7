//! The orchestrator: the run state machine ([`Machine`]) and a run with its log ([`Run`]).

pub(crate) mod machine;
pub(crate) mod run;

pub use machine::{trace_id_for, Machine};
pub use run::{derive_run_id, Run, RunOptions};
