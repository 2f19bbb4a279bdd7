//! Activations (work the host must do) and completions (what the host reports back).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::failure::{Failure, FailureKind, RunError, Usage};
use super::workflow::ActivationKind;

/// One unit of work for the host: run an agent or tool, or ask a person.
///
/// `id` is the `seq` of the event that scheduled it; pass it back to `complete`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    /// Activation id (= seq of its scheduling event).
    pub id: u64,
    /// Run id.
    pub run_id: Arc<str>,
    /// Node id.
    pub node: Arc<str>,
    /// `agent`, `tool` or `human`.
    pub kind: ActivationKind,
    /// Agent or tool name; the node id for human activations.
    pub name: Arc<str>,
    /// Attempt within this visit (1-based).
    pub attempt: u32,
    /// Visit of the node (1-based; > 1 inside loops).
    pub visit: u64,
    /// Wait this long before starting (retry backoff).
    pub delay_ms: u64,
    /// Deadline of this attempt. The driver enforces it, counted from the moment the
    /// activation starts running (after `delay_ms`), not from when it was polled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Prompt of a human activation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Deterministic per-activation seed, derived from the run seed (for sampling agents).
    pub seed: u64,
    /// Step (superstep) number.
    pub step: u64,
    /// The run input.
    pub input: Arc<Value>,
    /// Outputs of the node's completed `after` dependencies, by node id.
    pub deps: BTreeMap<Arc<str>, Arc<Value>>,
    /// The item of a map node this activation runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<Item>,
    /// The values of the node's `reads`, by path as written (a path with no value yet is
    /// left out).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub reads: BTreeMap<Arc<str>, Arc<Value>>,
    /// The failure this attempt retries (a retry after a failure; `None` on a first attempt
    /// and after a cancel): what to tell a model asked again, such as an
    /// `OutputSchemaError` naming the path its output got wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
}

/// One item of a map node's array.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// Position in the array, from 0.
    pub index: u64,
    /// The value at the node's `itemKey`, as text (without an `itemKey`: `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Arc<str>>,
    /// The item.
    pub value: Arc<Value>,
}

/// What the host reports for an activation: its output or failure, the tokens it spent
/// (either way), and how long it took.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Completion {
    /// Output or failure.
    pub result: Result<Value, Failure>,
    /// Tokens spent, on success or failure (a failed paid call still spent them).
    pub usage: Option<Usage>,
    /// How long the work took, for `meta.durUs` (not canonical).
    pub duration_us: Option<u64>,
}

impl Completion {
    /// A successful completion.
    pub fn ok(output: Value) -> Completion {
        Completion {
            result: Ok(output),
            usage: None,
            duration_us: None,
        }
    }

    /// A failed completion.
    pub fn err(failure: Failure) -> Completion {
        Completion {
            result: Err(failure),
            usage: None,
            duration_us: None,
        }
    }

    /// The activation's `timeoutMs` passed. The core records the failure every host records:
    /// type `Timeout`, message `no result within <timeoutMs> ms`, retryable.
    pub fn timed_out() -> Completion {
        Completion::err(Failure {
            kind: FailureKind::Timeout,
            error_type: "Timeout".to_owned(),
            message: String::new(),
            retryable: true,
        })
    }

    /// The completion of an activation whose result cannot be recorded (not JSON data, too
    /// deep, too large for the log): a permanent failure of type `InvalidOutput` with the
    /// `INVALID_OUTPUT` error's message. Every host records this one failure for such results.
    pub fn invalid_output(error: &crate::Error) -> Completion {
        Completion::err(Failure::error("InvalidOutput", error.message()).permanent())
    }

    /// Attach token usage.
    pub fn with_usage(mut self, usage: Usage) -> Completion {
        self.usage = Some(usage);
        self
    }

    /// Attach the measured duration.
    pub fn with_duration_us(mut self, us: u64) -> Completion {
        self.duration_us = Some(us);
        self
    }
}

/// Lifecycle status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunStatus {
    /// Work is outstanding.
    Running,
    /// Only human activations are outstanding.
    Waiting,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// The result of a run so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Status.
    pub status: RunStatus,
    /// Outputs of the terminal nodes, by node id (completed runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the run failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
}
