//! Events: the one table of event types, their bodies, and their encodings.
//!
//! Field order is fixed (`seq`, `type`, `runId`, `traceId`, `parentSeq`, `node`, `attempt`,
//! `data`, then `meta`), written by hand-ordered serde, so the canonical form of a record is
//! its physical form without `meta` (and, in format 1, without the chain fields). Format 2
//! files leave out `runId` and `traceId`, which the header determines; readers put them back.
//!
//! Adding an event family is one line in the [`EventKind`] table plus its body type: every
//! `match` over [`EventKind`] and [`EventData`] is exhaustive inside the crate, so the compiler
//! names each place that must handle it (reader, replay, timeline), and the wire names, the
//! reader's list of known types and replay's byte-compared set all come from the table.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::budget::{BudgetWarning, CallDenied, RunBudget};
use super::call::{CallCompleted, CallFailed, CallStarted};
use super::failure::{Failure, RunError, Usage};
use super::header::Meta;
use super::limits::MAX_EVENT_BYTES;
use super::workflow::{ActivationKind, WorkflowSpec};
use crate::budget::Limits;

/// How the orchestrator and replay treat an event type: which of its fields are decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Decided by the orchestrator from earlier events alone; every field is a decision, so
    /// replay re-derives the record and compares it byte for byte.
    Decision,
    /// An activation, decided like a [`Role::Decision`]; a step's activations follow its
    /// `stepStarted` in order, and each reserves one seq for its completion.
    Scheduled,
    /// A host's report for an activation, written at the seq its scheduling reserved. The
    /// envelope (seq, type's activation kind, `parentSeq`, `node`, `attempt`) is decided;
    /// `data` is what the host reported, fed to the orchestrator on replay.
    Completion,
    /// An activation closed by a cancel, at its reserved seq; decided from the cancel.
    Cancellation,
    /// Given by the host, not decided (the run input and seed, a fork's override, a cancel
    /// reason); replay feeds it to the orchestrator.
    Input,
    /// A call inside an activation or its result (docs/calls.md): written under the
    /// activation's reserved completion seq with a `sub` number, before the completion;
    /// host input like a completion's data.
    Call,
}

impl Role {
    /// Whether events of this role sit at a seq reserved when their step was scheduled (and
    /// so may be written out of seq order while the step is open).
    pub fn fills_reserved_seq(self) -> bool {
        matches!(self, Role::Completion | Role::Cancellation)
    }

    /// Whether every field is decided by the orchestrator (replay compares the whole record).
    pub fn is_decided(self) -> bool {
        match self {
            Role::Decision | Role::Scheduled | Role::Cancellation => true,
            Role::Completion | Role::Input | Role::Call => false,
        }
    }
}

macro_rules! event_table {
    ($( $(#[$doc:meta])* $kind:ident = $name:literal, $role:ident, ends_run: $ends:literal; )*) => {
        /// Every event type: the one table of wire names and roles.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EventKind {
            $( $(#[$doc])* $kind, )*
        }

        impl EventKind {
            /// Every type, in table order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$kind),*];

            /// The wire `type`.
            pub const fn name(self) -> &'static str {
                match self { $(EventKind::$kind => $name),* }
            }

            /// How the orchestrator and replay treat events of this type.
            pub const fn role(self) -> Role {
                match self { $(EventKind::$kind => Role::$role),* }
            }

            /// Whether an event of this type is the last of a finished run.
            pub const fn ends_run(self) -> bool {
                match self { $(EventKind::$kind => $ends),* }
            }

            /// The type with wire name `name`.
            pub fn from_name(name: &[u8]) -> Option<EventKind> {
                // Slice equality checks the length first: one memcmp at most, usually.
                $( if name == $name.as_bytes() { return Some(EventKind::$kind); } )*
                None
            }
        }
    };
}

event_table! {
    /// The first event: workflow, input and seed.
    RunStarted = "runStarted", Input, ends_run: false;
    /// A superstep begins; its activations follow.
    StepStarted = "stepStarted", Decision, ends_run: false;
    /// An agent activation.
    AgentScheduled = "agentScheduled", Scheduled, ends_run: false;
    /// A tool activation.
    ToolScheduled = "toolScheduled", Scheduled, ends_run: false;
    /// A human activation.
    HumanRequested = "humanRequested", Scheduled, ends_run: false;
    /// An agent's output.
    AgentCompleted = "agentCompleted", Completion, ends_run: false;
    /// A tool's output.
    ToolCompleted = "toolCompleted", Completion, ends_run: false;
    /// A person's decision.
    HumanResolved = "humanResolved", Completion, ends_run: false;
    /// An agent's failure.
    AgentFailed = "agentFailed", Completion, ends_run: false;
    /// A tool's failure.
    ToolFailed = "toolFailed", Completion, ends_run: false;
    /// A human activation that failed.
    HumanFailed = "humanFailed", Completion, ends_run: false;
    /// An activation closed by a cancel.
    ActivationCancelled = "activationCancelled", Cancellation, ends_run: false;
    /// A branch's choice.
    BranchDecided = "branchDecided", Decision, ends_run: false;
    /// A node not on the chosen path.
    NodeSkipped = "nodeSkipped", Decision, ends_run: false;
    /// A node output replaced at a fork point.
    OutputOverridden = "outputOverridden", Input, ends_run: false;
    /// The run completed.
    RunCompleted = "runCompleted", Decision, ends_run: true;
    /// The run failed.
    RunFailed = "runFailed", Decision, ends_run: true;
    /// The run was cancelled.
    RunCancelled = "runCancelled", Input, ends_run: true;
    /// A failed or cancelled run continues: its failed and cancelled nodes run again with a
    /// fresh allowance of attempts (the only event that may follow one that ended the run).
    RunReopened = "runReopened", Input, ends_run: false;
    /// A call an activation makes (an LLM request, a tool call), recorded before it runs.
    CallStarted = "callStarted", Call, ends_run: false;
    /// A call's response.
    CallCompleted = "callCompleted", Call, ends_run: false;
    /// A call's error.
    CallFailed = "callFailed", Call, ends_run: false;
    /// A call a budget refused before anything was sent (it has no result).
    CallDenied = "callDenied", Call, ends_run: false;
    /// A budget's spend reached a warning threshold (decided at a step boundary).
    BudgetWarning = "budgetWarning", Decision, ends_run: false;
    /// Every item of a map node is done: the node's output is the array of their results.
    MapCompleted = "mapCompleted", Decision, ends_run: false;
    /// A workflow node's workflow starts: its first nodes may run.
    WorkflowStarted = "workflowStarted", Decision, ends_run: false;
    /// A workflow node's workflow is done: the node's output is its terminal nodes' outputs.
    WorkflowCompleted = "workflowCompleted", Decision, ends_run: false;
}

/// Every wire `type`, in table order.
pub fn event_type_names() -> impl Iterator<Item = &'static str> {
    EventKind::ALL.iter().map(|k| k.name())
}

fn one_u64() -> u64 {
    1
}
fn is_one_u64(v: &u64) -> bool {
    *v == 1
}
fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// Body of `runStarted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunStarted {
    /// The workflow, in canonical form (shared with the compiled workflow).
    pub workflow: Arc<WorkflowSpec>,
    /// The run input.
    pub input: Arc<Value>,
    /// The run seed.
    pub seed: u64,
    /// The run's budget and price table, when it accounts for spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RunBudget>,
    /// What the run's policy decided about the input (recorded redacted; `null` when blocked) (docs/policy.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::model::verdict::Verdict>,
}

/// Body of `stepStarted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepStarted {
    /// Step number, from 1.
    pub step: u64,
    /// How many activations the step has (their events follow).
    pub activations: u64,
}

/// Body of `agentScheduled`, `toolScheduled` and `humanRequested`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scheduled {
    /// Agent name (agentScheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Arc<str>>,
    /// Tool name (toolScheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<Arc<str>>,
    /// Prompt (humanRequested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Arc<str>>,
    /// Visit number of the node (1-based; omitted when 1).
    #[serde(default = "one_u64", skip_serializing_if = "is_one_u64")]
    pub visit: u64,
    /// Backoff the host waits before starting (omitted when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
    /// Deadline of this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The failure event this attempt retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<u64>,
    /// What this activation's calls may spend: its share of the budgets that apply, decided
    /// when the step was scheduled (omitted when nothing limits it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Limits>,
    /// The item of a map node this activation runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemRef>,
    /// The node's `reads` that had a value when it was scheduled, each with the seq of the
    /// event that value comes from (`runStarted` for the input).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reads: BTreeMap<Arc<str>, u64>,
}

/// Which item of a map an activation runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemRef {
    /// Position in the array, from 0.
    pub index: u64,
    /// The value at the node's `itemKey`, as text (omitted without an `itemKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Arc<str>>,
}

/// Body of `workflowStarted` and `workflowCompleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubWorkflow {
    /// The name of the workflow the node runs.
    pub workflow: Arc<str>,
}

/// Body of `mapCompleted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MapCompleted {
    /// How many items the array held.
    pub items: u64,
    /// How many of them failed (`onItemFailure: collect`; omitted when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: u64,
}

/// Body of a successful completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Completed {
    /// The output (any JSON).
    pub output: Arc<Value>,
    /// Token usage, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What the run's policy decided about the output (recorded and passed on redacted) (docs/policy.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::model::verdict::Verdict>,
    /// The output was text its node's `output.repair` made JSON (docs/workflow.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<Repaired>,
}

/// A repair of an output's almost-JSON text: digests of the text as reported and of the JSON
/// recorded instead, and the rules applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Repaired {
    /// blake3 (hex) of the text the activation reported.
    pub from: String,
    /// blake3 (hex) of the compact JSON of the value recorded.
    pub to: String,
    /// The rules applied (`codeFence`, `singleQuotes`, …; empty when the text only needed
    /// parsing).
    pub fixes: Vec<Arc<str>>,
}

/// Body of a failed completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failed {
    /// What went wrong.
    pub error: Failure,
    /// Tokens the failed attempt spent, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What the run's policy decided about the output it blocked, or the message it redacted (docs/policy.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::model::verdict::Verdict>,
}

/// Body of `activationCancelled` and `runCancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reason {
    /// Why.
    pub reason: String,
}

/// Body of `branchDecided`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BranchDecided {
    /// Index of the case that held; `null` for the default or no choice.
    pub case: Option<u64>,
    /// The chosen node; `null` when none.
    pub goto: Option<Arc<str>>,
    /// Whether the goto jumps back into a loop.
    #[serde(default, rename = "loop", skip_serializing_if = "is_false")]
    pub loop_back: bool,
}

/// Body of `outputOverridden`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Overridden {
    /// The replacement output.
    pub output: Arc<Value>,
    /// What the run's policy decided about it (recorded redacted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::model::verdict::Verdict>,
}

/// Body of `runCompleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunCompleted {
    /// The terminal nodes' outputs, by node id.
    pub output: Value,
}

/// Body of `runFailed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunFailed {
    /// Why the run failed.
    pub error: RunError,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// Event bodies. Activation families carry the [`ActivationKind`] that picks the wire name
/// (`agentCompleted`, `toolCompleted`, `humanResolved`, ...).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EventData {
    /// `runStarted`.
    RunStarted(RunStarted),
    /// `stepStarted`.
    StepStarted(StepStarted),
    /// `agentScheduled`, `toolScheduled`, `humanRequested`.
    Scheduled(ActivationKind, Scheduled),
    /// `agentCompleted`, `toolCompleted`, `humanResolved`.
    Completed(ActivationKind, Completed),
    /// `agentFailed`, `toolFailed`, `humanFailed`.
    Failed(ActivationKind, Failed),
    /// `activationCancelled`.
    ActivationCancelled(Reason),
    /// `branchDecided`.
    BranchDecided(BranchDecided),
    /// `nodeSkipped` (body `{}`).
    NodeSkipped,
    /// `outputOverridden`.
    OutputOverridden(Overridden),
    /// `runCompleted`.
    RunCompleted(RunCompleted),
    /// `runFailed`.
    RunFailed(RunFailed),
    /// `runCancelled`.
    RunCancelled(Reason),
    /// `runReopened`.
    RunReopened(Reason),
    /// `callStarted`.
    CallStarted(CallStarted),
    /// `callCompleted`.
    CallCompleted(CallCompleted),
    /// `callFailed`.
    CallFailed(CallFailed),
    /// `callDenied`.
    CallDenied(CallDenied),
    /// `budgetWarning`.
    BudgetWarning(BudgetWarning),
    /// `mapCompleted`.
    MapCompleted(MapCompleted),
    /// `workflowStarted`.
    WorkflowStarted(SubWorkflow),
    /// `workflowCompleted`.
    WorkflowCompleted(SubWorkflow),
}

impl EventData {
    /// The event type.
    pub fn kind(&self) -> EventKind {
        use ActivationKind as A;
        match self {
            EventData::RunStarted(_) => EventKind::RunStarted,
            EventData::StepStarted(_) => EventKind::StepStarted,
            EventData::Scheduled(k, _) => match k {
                A::Agent => EventKind::AgentScheduled,
                A::Tool => EventKind::ToolScheduled,
                A::Human => EventKind::HumanRequested,
            },
            EventData::Completed(k, _) => match k {
                A::Agent => EventKind::AgentCompleted,
                A::Tool => EventKind::ToolCompleted,
                A::Human => EventKind::HumanResolved,
            },
            EventData::Failed(k, _) => match k {
                A::Agent => EventKind::AgentFailed,
                A::Tool => EventKind::ToolFailed,
                A::Human => EventKind::HumanFailed,
            },
            EventData::ActivationCancelled(_) => EventKind::ActivationCancelled,
            EventData::BranchDecided(_) => EventKind::BranchDecided,
            EventData::NodeSkipped => EventKind::NodeSkipped,
            EventData::OutputOverridden(_) => EventKind::OutputOverridden,
            EventData::RunCompleted(_) => EventKind::RunCompleted,
            EventData::RunFailed(_) => EventKind::RunFailed,
            EventData::RunCancelled(_) => EventKind::RunCancelled,
            EventData::RunReopened(_) => EventKind::RunReopened,
            EventData::CallStarted(_) => EventKind::CallStarted,
            EventData::CallCompleted(_) => EventKind::CallCompleted,
            EventData::CallFailed(_) => EventKind::CallFailed,
            EventData::CallDenied(_) => EventKind::CallDenied,
            EventData::BudgetWarning(_) => EventKind::BudgetWarning,
            EventData::MapCompleted(_) => EventKind::MapCompleted,
            EventData::WorkflowStarted(_) => EventKind::WorkflowStarted,
            EventData::WorkflowCompleted(_) => EventKind::WorkflowCompleted,
        }
    }

    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        self.kind().name()
    }

    /// Whether this is written at a reserved seq (a completion or `activationCancelled`).
    pub fn is_completion(&self) -> bool {
        self.kind().role().fills_reserved_seq()
    }

    fn serialize_body<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        match self {
            EventData::RunStarted(b) => map.serialize_entry("data", b),
            EventData::StepStarted(b) => map.serialize_entry("data", b),
            EventData::Scheduled(_, b) => map.serialize_entry("data", b),
            EventData::Completed(_, b) => map.serialize_entry("data", b),
            EventData::Failed(_, b) => map.serialize_entry("data", b),
            EventData::ActivationCancelled(b)
            | EventData::RunCancelled(b)
            | EventData::RunReopened(b) => map.serialize_entry("data", b),
            EventData::BranchDecided(b) => map.serialize_entry("data", b),
            EventData::NodeSkipped => map.serialize_entry("data", &Empty {}),
            EventData::OutputOverridden(b) => map.serialize_entry("data", b),
            EventData::RunCompleted(b) => map.serialize_entry("data", b),
            EventData::RunFailed(b) => map.serialize_entry("data", b),
            EventData::CallStarted(b) => map.serialize_entry("data", b),
            EventData::CallCompleted(b) => map.serialize_entry("data", b),
            EventData::CallFailed(b) => map.serialize_entry("data", b),
            EventData::CallDenied(b) => map.serialize_entry("data", b),
            EventData::BudgetWarning(b) => map.serialize_entry("data", b),
            EventData::MapCompleted(b) => map.serialize_entry("data", b),
            EventData::WorkflowStarted(b) | EventData::WorkflowCompleted(b) => {
                map.serialize_entry("data", b)
            }
        }
    }

    fn parse(kind: EventKind, raw: &RawValue) -> serde_json::Result<EventData> {
        use ActivationKind as A;
        let text = raw.get();
        fn from<'a, T: Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
            serde_json::from_str(text)
        }
        Ok(match kind {
            EventKind::RunStarted => EventData::RunStarted(from(text)?),
            EventKind::StepStarted => EventData::StepStarted(from(text)?),
            EventKind::AgentScheduled => EventData::Scheduled(A::Agent, from(text)?),
            EventKind::ToolScheduled => EventData::Scheduled(A::Tool, from(text)?),
            EventKind::HumanRequested => EventData::Scheduled(A::Human, from(text)?),
            EventKind::AgentCompleted => EventData::Completed(A::Agent, from(text)?),
            EventKind::ToolCompleted => EventData::Completed(A::Tool, from(text)?),
            EventKind::HumanResolved => EventData::Completed(A::Human, from(text)?),
            EventKind::AgentFailed => EventData::Failed(A::Agent, from(text)?),
            EventKind::ToolFailed => EventData::Failed(A::Tool, from(text)?),
            EventKind::HumanFailed => EventData::Failed(A::Human, from(text)?),
            EventKind::ActivationCancelled => EventData::ActivationCancelled(from(text)?),
            EventKind::BranchDecided => EventData::BranchDecided(from(text)?),
            EventKind::NodeSkipped => {
                let Empty {} = from(text)?;
                EventData::NodeSkipped
            }
            EventKind::OutputOverridden => EventData::OutputOverridden(from(text)?),
            EventKind::RunCompleted => EventData::RunCompleted(from(text)?),
            EventKind::RunFailed => EventData::RunFailed(from(text)?),
            EventKind::RunCancelled => EventData::RunCancelled(from(text)?),
            EventKind::RunReopened => EventData::RunReopened(from(text)?),
            EventKind::CallStarted => EventData::CallStarted(from(text)?),
            EventKind::CallCompleted => EventData::CallCompleted(from(text)?),
            EventKind::CallFailed => EventData::CallFailed(from(text)?),
            EventKind::CallDenied => EventData::CallDenied(from(text)?),
            EventKind::BudgetWarning => EventData::BudgetWarning(from(text)?),
            EventKind::MapCompleted => EventData::MapCompleted(from(text)?),
            EventKind::WorkflowStarted => EventData::WorkflowStarted(from(text)?),
            EventKind::WorkflowCompleted => EventData::WorkflowCompleted(from(text)?),
        })
    }
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Sequence number, dense from 1 (a call record: its activation's completion seq).
    pub seq: u64,
    /// A call record's number under `seq` (`None` for every other event): calls precede
    /// their activation's completion in canonical order.
    pub sub: Option<u32>,
    /// Run id.
    pub run_id: Arc<str>,
    /// W3C trace id derived from the run id ([`trace_id_for`]).
    pub trace_id: Arc<str>,
    /// The event that caused this one.
    pub parent_seq: Option<u64>,
    /// Node, for node events.
    pub node: Option<Arc<str>>,
    /// Attempt (1-based), for activation events.
    pub attempt: Option<u32>,
    /// Typed body.
    pub data: EventData,
    /// Wall-clock metadata (never canonical).
    pub meta: Option<Meta>,
}

/// Trace id (W3C, 32 hex digits) derived from a run id.
pub fn trace_id_for(run_id: &str) -> String {
    blake3::hash(run_id.as_bytes()).to_hex()[..32].to_owned()
}

impl Event {
    /// The event type.
    pub fn kind(&self) -> EventKind {
        self.data.kind()
    }

    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        self.data.type_name()
    }

    /// Where the event sits in canonical order: `(seq, sub)`, a seq's call records before
    /// the event without a sub.
    pub fn canonical_key(&self) -> (u64, u32) {
        (self.seq, self.sub.unwrap_or(u32::MAX))
    }

    /// Equality of the canonical form (ignores `meta`).
    pub fn same_canonical(&self, other: &Event) -> bool {
        self.seq == other.seq
            && self.sub == other.sub
            && self.run_id == other.run_id
            && self.trace_id == other.trace_id
            && self.parent_seq == other.parent_seq
            && self.node == other.node
            && self.attempt == other.attempt
            && self.data == other.data
    }

    /// Canonical JSON (no `meta`), one line without the newline.
    pub fn to_canonical_json(&self) -> String {
        String::from_utf8(Encoded::canonical(self).to_vec()).expect("JSON is UTF-8")
    }

    /// `INVALID_OUTPUT` when this event's canonical form, `canonical_len` bytes, is over
    /// [`MAX_EVENT_BYTES`]: one rule for memory and file logs of every format.
    pub(crate) fn check_size(&self, canonical_len: usize) -> crate::Result<()> {
        if canonical_len <= MAX_EVENT_BYTES {
            return Ok(());
        }
        Err(crate::Error::new(
            crate::ErrorKind::InvalidOutput,
            format!(
                "{} record for node '{}' is {canonical_len} bytes; the limit is {MAX_EVENT_BYTES} bytes",
                self.type_name(),
                self.node.as_deref().unwrap_or("-"),
            ),
        ))
    }

    /// `INVALID_OUTPUT` when the canonical form is over [`MAX_EVENT_BYTES`], serializing
    /// only events whose size bound says they might be.
    pub(crate) fn check_size_bounded(&self) -> crate::Result<()> {
        let bound = self
            .data
            .host_bytes_bound()
            .saturating_add(super::encode::ENVELOPE_BOUND);
        if bound <= MAX_EVENT_BYTES {
            return Ok(());
        }
        self.check_size(Encoded::canonical(self).to_vec().len())
    }

    /// Parse one record in canonical form or as a format-1 physical line (JSON text).
    pub fn from_json(text: &str) -> serde_json::Result<Event> {
        serde_json::from_str(text)
    }
}

/// Which fields a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The canonical form: with `runId` and `traceId`, without `meta`.
    Canonical,
    /// File format 1: `runId`, `traceId`, then `meta` (the chain follows).
    V1,
    /// File format 2: no `runId`/`traceId` (the header has them), then `meta`.
    V2,
}

impl Layout {
    /// The physical layout of file format `version` (checked by the reader before).
    pub(crate) fn of_version(version: u32) -> Layout {
        if version >= 2 {
            Layout::V2
        } else {
            Layout::V1
        }
    }
}

/// An event in one layout, with the `meta` to write (physical layouts).
pub(crate) struct Encoded<'a> {
    pub event: &'a Event,
    pub layout: Layout,
    pub meta: Option<Meta>,
}

impl<'a> Encoded<'a> {
    pub(crate) fn canonical(event: &'a Event) -> Encoded<'a> {
        Encoded {
            event,
            layout: Layout::Canonical,
            meta: None,
        }
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Encoded {
            event: self,
            layout: Layout::V1,
            meta: self.meta.clone(),
        }
        .serialize(serializer)
    }
}

impl Serialize for Encoded<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("seq", &e.seq)?;
        if let Some(sub) = e.sub {
            map.serialize_entry("sub", &sub)?;
        }
        map.serialize_entry("type", e.type_name())?;
        if self.layout != Layout::V2 {
            map.serialize_entry("runId", &*e.run_id)?;
            map.serialize_entry("traceId", &*e.trace_id)?;
        }
        if let Some(p) = e.parent_seq {
            map.serialize_entry("parentSeq", &p)?;
        }
        if let Some(n) = &e.node {
            map.serialize_entry("node", &**n)?;
        }
        if let Some(a) = e.attempt {
            map.serialize_entry("attempt", &a)?;
        }
        e.data.serialize_body(&mut map)?;
        if self.layout != Layout::Canonical {
            if let Some(m) = &self.meta {
                map.serialize_entry("meta", m)?;
            }
        }
        map.end()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEvent<'a> {
    seq: u64,
    #[serde(default)]
    sub: Option<u32>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    run_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    trace_id: Option<Cow<'a, str>>,
    #[serde(default)]
    parent_seq: Option<u64>,
    #[serde(default, borrow)]
    node: Option<Cow<'a, str>>,
    #[serde(default)]
    attempt: Option<u32>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    meta: Option<Meta>,
    // Format-1 chain fields are accepted so a physical line parses whole; the log layer
    // checks them.
    #[serde(default)]
    #[allow(dead_code)]
    prev: Option<&'a str>,
    #[serde(default)]
    #[allow(dead_code)]
    hash: Option<&'a str>,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Event, D::Error> {
        let raw = RawEvent::deserialize(deserializer)?;
        raw.into_event(&mut Decoder::standalone())
            .map_err(D::Error::custom)
    }
}

/// Turns records of one log into events: shares the few distinct strings of a log (run id,
/// trace id, node ids) across its events, and supplies the run and trace ids that format-2
/// records leave out.
pub(crate) struct Decoder {
    strings: HashSet<Arc<str>>,
    cache: bool,
    /// `(runId, traceId)` of the log, for format-2 records.
    ids: Option<(Arc<str>, Arc<str>)>,
    layout: Layout,
}

impl Decoder {
    /// A decoder for the records of one log in `layout`, whose header names `run_id`.
    pub(crate) fn for_log(run_id: &str, layout: Layout) -> Decoder {
        Decoder {
            strings: HashSet::new(),
            cache: true,
            ids: Some((run_id.into(), trace_id_for(run_id).into())),
            layout,
        }
    }

    /// A decoder for one canonical or format-1 record on its own.
    fn standalone() -> Decoder {
        Decoder {
            strings: HashSet::new(),
            cache: false,
            ids: None,
            layout: Layout::V1,
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if !self.cache {
            return s.into();
        }
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        // Node ids are few; a log with very many distinct strings just stops sharing them.
        if self.strings.len() < 100_000 {
            self.strings.insert(a.clone());
        }
        a
    }

    /// Parse one record (the JSON object, without chain fields of format 1 or 2).
    pub(crate) fn decode(&mut self, text: &str) -> serde_json::Result<Event> {
        serde_json::from_str::<RawEvent<'_>>(text)?.into_event(self)
    }
}

impl RawEvent<'_> {
    fn into_event(self, dec: &mut Decoder) -> serde_json::Result<Event> {
        let kind = EventKind::from_name(self.kind.as_bytes()).ok_or_else(|| {
            serde_json::Error::custom(format!("unknown event type '{}'", self.kind))
        })?;
        let (run_id, trace_id) = match (dec.layout, self.run_id, self.trace_id) {
            (Layout::V2, None, None) => dec
                .ids
                .clone()
                .ok_or_else(|| serde_json::Error::custom("no run id for a format-2 record"))?,
            (Layout::V2, _, _) => {
                return Err(serde_json::Error::custom(
                    "a format-2 record carries runId or traceId",
                ))
            }
            (_, Some(r), Some(t)) => {
                let ids = dec.ids.clone();
                match ids {
                    Some((a, b)) if *a == *r && *b == *t => (a, b),
                    _ => (dec.intern(&r), dec.intern(&t)),
                }
            }
            (_, None, _) => return Err(serde_json::Error::missing_field("runId")),
            (_, _, None) => return Err(serde_json::Error::missing_field("traceId")),
        };
        Ok(Event {
            seq: self.seq,
            sub: self.sub,
            run_id,
            trace_id,
            parent_seq: self.parent_seq,
            node: self.node.map(|n| dec.intern(&n)),
            attempt: self.attempt,
            data: EventData::parse(kind, self.data)?,
            meta: self.meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: EventData) -> Event {
        Event {
            seq: 4,
            sub: None,
            run_id: "r".into(),
            trace_id: trace_id_for("r").into(),
            parent_seq: Some(3),
            node: Some("a".into()),
            attempt: Some(1),
            data,
            meta: Some(Meta {
                at: 9,
                dur_us: Some(12),
                call: None,
            }),
        }
    }

    #[test]
    fn table_names_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for k in EventKind::ALL {
            assert!(seen.insert(k.name()), "duplicate {}", k.name());
            assert_eq!(EventKind::from_name(k.name().as_bytes()), Some(*k));
        }
        assert_eq!(seen.len(), 27);
        assert_eq!(EventKind::from_name(b"agentcompleted"), None);
    }

    #[test]
    fn activation_families_pick_wire_names_by_kind() {
        let failed = EventData::Failed(
            ActivationKind::Tool,
            Failed {
                error: Failure::error("E", "m"),
                usage: None,
                verdicts: Vec::new(),
            },
        );
        assert_eq!(failed.type_name(), "toolFailed");
        assert!(failed.is_completion());
        assert!(!EventData::NodeSkipped.is_completion());
        assert!(EventKind::ActivationCancelled.role().fills_reserved_seq());
        assert!(EventKind::RunCancelled.ends_run());
    }

    #[test]
    fn layouts_differ_only_in_derivable_fields_and_meta() {
        let e = event(EventData::Completed(
            ActivationKind::Agent,
            Completed {
                output: Arc::new(serde_json::json!({"x": 1})),
                usage: Some(Usage::tokens(2, 3)),
                verdicts: Vec::new(),
                repaired: None,
            },
        ));
        let canon = e.to_canonical_json();
        let t = trace_id_for("r");
        assert_eq!(
            canon,
            format!(
                r#"{{"seq":4,"type":"agentCompleted","runId":"r","traceId":"{t}","parentSeq":3,"node":"a","attempt":1,"data":{{"output":{{"x":1}},"usage":{{"inputTokens":2,"outputTokens":3}}}}}}"#
            )
        );
        let v2 = serde_json::to_string(&Encoded {
            event: &e,
            layout: Layout::V2,
            meta: e.meta.clone(),
        })
        .unwrap();
        assert_eq!(
            v2,
            r#"{"seq":4,"type":"agentCompleted","parentSeq":3,"node":"a","attempt":1,"data":{"output":{"x":1},"usage":{"inputTokens":2,"outputTokens":3}},"meta":{"at":9,"durUs":12}}"#
        );
        let mut dec = Decoder::for_log("r", Layout::V2);
        assert!(dec.decode(&v2).unwrap().same_canonical(&e));
        assert!(dec.decode(&canon).is_err(), "v2 records carry no runId");
        assert!(Event::from_json(&canon).unwrap().same_canonical(&e));
    }

    #[test]
    fn failures_may_carry_usage() {
        let e = event(EventData::Failed(
            ActivationKind::Agent,
            Failed {
                error: Failure::timeout(5),
                usage: Some(Usage::tokens(7, 0)),
                verdicts: Vec::new(),
            },
        ));
        let text = e.to_canonical_json();
        assert!(text.ends_with(r#""data":{"error":{"kind":"timeout","type":"Timeout","message":"no result within 5 ms","retryable":true},"usage":{"inputTokens":7,"outputTokens":0}}}"#), "{text}");
        assert_eq!(Event::from_json(&text).unwrap().data, e.data);
    }
}
