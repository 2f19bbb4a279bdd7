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
#![deny(missing_docs)]

pub mod driver;
pub mod error;
pub mod log;
pub mod model;
pub mod orchestrator;
pub mod replay;

pub use driver::scripted::{Behavior, Script, ScriptError};
pub use driver::{AgentOutput, AgentResult, CancelHandle, Context, Mesh, RunResult};
pub use error::{Error, ErrorDetail, ErrorKind, Result};
pub use log::{
    canonical_log, fingerprint, read_header, read_log, verify_log, FsyncMode, VerifyReport,
};
pub use model::activation::{Activation, Completion, Outcome, RunStatus};
pub use model::event::{Event, EventData, Failure, FailureKind, LogHeader, RunError, Usage};
pub use model::workflow::{
    NodeKind, NodeOptions, RetrySpec, Workflow, WorkflowBuilder, WorkflowSpec,
};
pub use model::MAX_VALUE_DEPTH;
pub use orchestrator::{Run, RunOptions};
pub use replay::{recorded_workflow, replay, state_at, ReplayReport, RunState};
