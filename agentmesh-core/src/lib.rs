//! # AgentMesh core
//!
//! A deterministic, durable, replayable runtime for multi-agent workflows. The core is a
//! sans-IO state machine: the host starts a run, polls for activations (work to do), executes
//! them in its own language and completes them. Every decision is an event in an append-only,
//! blake3-chained log, so a run can be resumed after a crash, replayed without calling any
//! agent, inspected at any seq, and forked.
//!
//! ```
//! use agentmesh_core::{Mesh, RunOptions, RunStatus, Workflow};
//! use serde_json::json;
//!
//! let wf = Workflow::from_value(json!({
//!     "name": "hello",
//!     "nodes": [
//!         {"id": "plan", "type": "agent", "agent": "planner"},
//!         {"id": "write", "type": "agent", "agent": "writer", "after": ["plan"]}
//!     ]
//! }))?;
//! let mut mesh = Mesh::new();
//! mesh.agent("planner", |act, _| Ok(json!({"steps": 2, "topic": act.input["topic"]}).into()));
//! mesh.agent("writer", |act, _| Ok(json!(format!("{} steps", act.deps["plan"]["steps"])).into()));
//! let result = mesh.run(&wf, RunOptions { input: json!({"topic": "rust"}), seed: 7, ..Default::default() })?;
//! assert_eq!(result.status, RunStatus::Completed);
//! assert_eq!(result.output.unwrap()["write"], json!("2 steps"));
//! # Ok::<(), agentmesh_core::Error>(())
//! ```
//!
//! The host-facing protocol is [`Run`]: [`Run::start`], [`Run::poll`], [`Run::complete`],
//! [`Run::outcome`]. [`Mesh`] is the Rust driver built on it.
//!
//! Modules are layered: `model` (wire types and limits) → `machine` (the sans-IO state
//! machine) → `log` (files) → `replay` (re-driving a log) → `run` (a machine with its log)
//! → `driver` (the Rust host).
#![deny(missing_docs)]

pub mod budget;
pub mod driver;
pub mod error;
pub mod log;
mod machine;
pub mod model;
pub mod policy;
pub mod replay;
pub mod run;

pub use budget::{
    reserve_llm, split_leases, Amounts, Dimension, Limits, LlmAsk, ModelPrice, Price, PriceTable,
    Reservation, TokenPrices,
};
pub use driver::scripted::{Behavior, Script, ScriptError};
pub use driver::{
    deadline, provider_error, refused_request, replayed_chunk, AgentError, AgentOutput,
    AgentResult, CallExecutor, CallReply, CancelHandle, Context, Mesh, RunResult, ToolAccess,
};
pub use error::{Error, ErrorDetail, ErrorKind, Result};
pub use log::{
    anchor, canonical_log, check_log, fingerprint, log_in_use, read_events, read_header, read_log,
    usage_report, verify_anchor, verify_log, Anchor, AnchorKey, CostLine, FsyncMode, LogEvents,
    Repair, UsageReport, UsageTotals, VerifyReport, ANCHOR_VERSION,
};
pub use machine::{MapProgress, RunState};
pub use model::activation::{Activation, Completion, Item, Outcome, RunStatus};
pub use model::budget::{BudgetRefusal, BudgetWarning, CallDenied, RunBudget, Scope};
pub use model::call::{
    idempotency_key, Attempt, CallAsk, CallError, CallKind, CallMeta, CallOutcome, CallRequest,
    CallTicket, TicketState, MAX_CALLS_PER_ACTIVATION,
};
pub use model::event::{
    trace_id_for, Event, EventData, EventKind, ItemRef, MapCompleted, Repaired, Role,
};
pub use model::failure::{Failure, FailureKind, RunError, Usage};
pub use model::header::{HeaderMeta, LogHeader, PolicyRef, CANONICAL_VERSION, LOG_VERSION};
pub use model::verdict::{Action, Verdict, TOOLS_RULE};
pub use model::workflow::{
    ActivationKind, ItemFailure, MapOptions, NodeKind, NodeOptions, OutputSpec, RetrySpec,
    Workflow, WorkflowBuilder, WorkflowSpec,
};
pub use model::MAX_VALUE_DEPTH;
pub use policy::{
    block_digest, check_policy, check_run_policy, Checked, Policy, PolicyReport, RedactedSpan,
    Redaction, Subject, Syntax,
};
pub use replay::{for_each_state, history, recorded_workflow, replay, state_at, ReplayReport};
pub use run::{
    derive_run_id, ForkOptions, Observer, Recorded, ReexecReport, ResumeOptions, Run, RunOptions,
    REOPEN_REASON,
};

// The Rust examples in the guides are complete programs: `cargo test --doc` compiles and runs
// every ```rust block, so a guide cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/rust.md")]
mod rust_guide {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/concepts.md")]
mod concepts_guide {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/errors.md")]
mod errors_guide {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/durability.md")]
mod durability_guide {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/recovery.md")]
mod recovery_guide {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/usage.md")]
mod usage_guide {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/calls.md")]
mod calls_guide {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/policy.md")]
mod policy_guide {}
