//! Event records: the log's header and events, in their one wire form.
//!
//! Field order is fixed (`seq`, `type`, `runId`, `traceId`, `parentSeq`, `node`, `attempt`,
//! `data`, then `meta`), written by hand-ordered serde so that the canonical form of a record is
//! its physical form without `meta`, `prev` and `hash`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::workflow::WorkflowSpec;

/// Log format name written in every header.
pub const LOG_FORMAT: &str = "agentmesh-log";
/// Log format version.
pub const LOG_VERSION: u32 = 1;
/// Core behaviour flags in effect for new runs. A behaviour change that would alter the events
/// of an existing workflow gets a new number here (never reused), and replay honours the flags
/// recorded in the header. None exist yet.
pub const CORE_FLAGS: &[u32] = &[];

/// Every event `type`, in the order of [`EventData`]'s variants.
pub const EVENT_TYPES: &[&str] = &[
    "runStarted",
    "stepStarted",
    "agentScheduled",
    "toolScheduled",
    "humanRequested",
    "agentCompleted",
    "toolCompleted",
    "humanResolved",
    "agentFailed",
    "toolFailed",
    "humanFailed",
    "activationCancelled",
    "branchDecided",
    "nodeSkipped",
    "outputOverridden",
    "runCompleted",
    "runFailed",
    "runCancelled",
];

/// Token usage an agent may report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: u64,
}

/// Why an activation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// The agent returned or raised an error.
    Error,
    /// The driver's deadline (`timeoutMs`) passed first.
    Timeout,
}

/// A failed activation: what the host reports and what the log records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failure {
    /// Error or timeout.
    pub kind: FailureKind,
    /// Error type name (a Python exception class, a JS error name, a Rust type).
    #[serde(rename = "type")]
    pub error_type: String,
    /// Message.
    pub message: String,
    /// Whether the node's retry policy may retry it.
    pub retryable: bool,
}

impl Failure {
    /// A retryable error of `error_type`.
    pub fn error(error_type: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Error,
            error_type: error_type.into(),
            message: message.into(),
            retryable: true,
        }
    }

    /// Mark as not retryable.
    pub fn permanent(mut self) -> Failure {
        self.retryable = false;
        self
    }

    /// The failure a driver records when `timeout_ms` passed (retryable).
    pub fn timeout(timeout_ms: u64) -> Failure {
        Failure {
            kind: FailureKind::Timeout,
            error_type: "Timeout".to_owned(),
            message: format!("no result within {timeout_ms} ms"),
            retryable: true,
        }
    }
}

/// The error a failed run records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunError {
    /// Stable error code (`AGENT_FAILED`, `TIMEOUT`, `LIMIT_EXCEEDED`, ...).
    pub code: String,
    /// Message.
    pub message: String,
    /// The node that failed the run, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Parent link of a forked run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParentRef {
    /// Run id of the parent.
    pub run_id: String,
    /// Last parent event copied into the fork.
    pub seq: u64,
}

/// Workflow identity in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowRef {
    /// Workflow name.
    pub name: String,
    /// blake3 of the canonical workflow JSON.
    pub hash: String,
}

/// Wall-clock metadata; never part of the canonical log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Meta {
    /// Unix time in milliseconds when the record was appended.
    pub at: u64,
    /// How long the activation ran (completion events), in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dur_us: Option<u64>,
}

/// First line of every log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogHeader {
    /// Always [`LOG_FORMAT`].
    pub format: String,
    /// Format version ([`LOG_VERSION`]).
    pub version: u32,
    /// Core behaviour flags in effect.
    pub flags: Vec<u32>,
    /// Run id.
    pub run_id: String,
    /// Workflow identity.
    pub workflow: WorkflowRef,
    /// Run seed.
    pub seed: u64,
    /// Tenant, when the host set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Parent of a forked run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// Creation time; not canonical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// Body of `agentScheduled`, `toolScheduled` and `humanRequested`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scheduled {
    /// Agent name (agentScheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Tool name (toolScheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Prompt (humanRequested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
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

/// Body of a successful completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Completed {
    /// The output (any JSON).
    pub output: Arc<Value>,
    /// Token usage, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// Event bodies, one variant per event type.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum EventData {
    RunStarted {
        workflow: Box<WorkflowSpec>,
        input: Arc<Value>,
        seed: u64,
    },
    StepStarted {
        step: u64,
        activations: u64,
    },
    AgentScheduled(Scheduled),
    ToolScheduled(Scheduled),
    HumanRequested(Scheduled),
    AgentCompleted(Completed),
    ToolCompleted(Completed),
    HumanResolved(Completed),
    AgentFailed {
        error: Failure,
    },
    ToolFailed {
        error: Failure,
    },
    HumanFailed {
        error: Failure,
    },
    ActivationCancelled {
        reason: String,
    },
    BranchDecided {
        case: Option<u64>,
        goto: Option<String>,
        loop_back: bool,
    },
    NodeSkipped,
    OutputOverridden {
        output: Arc<Value>,
    },
    RunCompleted {
        output: Value,
    },
    RunFailed {
        error: RunError,
    },
    RunCancelled {
        reason: String,
    },
}

// Serde shapes of the small bodies.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunStartedBody {
    workflow: Box<WorkflowSpec>,
    input: Arc<Value>,
    seed: u64,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StepBody {
    step: u64,
    activations: u64,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FailedBody {
    error: Failure,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BranchBody {
    case: Option<u64>,
    goto: Option<String>,
    #[serde(default, rename = "loop", skip_serializing_if = "is_false")]
    loop_back: bool,
}
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OverrideBody {
    output: Arc<Value>,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutputBody {
    output: Value,
}
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunFailedBody {
    error: RunError,
}

impl EventData {
    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventData::RunStarted { .. } => "runStarted",
            EventData::StepStarted { .. } => "stepStarted",
            EventData::AgentScheduled(_) => "agentScheduled",
            EventData::ToolScheduled(_) => "toolScheduled",
            EventData::HumanRequested(_) => "humanRequested",
            EventData::AgentCompleted(_) => "agentCompleted",
            EventData::ToolCompleted(_) => "toolCompleted",
            EventData::HumanResolved(_) => "humanResolved",
            EventData::AgentFailed { .. } => "agentFailed",
            EventData::ToolFailed { .. } => "toolFailed",
            EventData::HumanFailed { .. } => "humanFailed",
            EventData::ActivationCancelled { .. } => "activationCancelled",
            EventData::BranchDecided { .. } => "branchDecided",
            EventData::NodeSkipped => "nodeSkipped",
            EventData::OutputOverridden { .. } => "outputOverridden",
            EventData::RunCompleted { .. } => "runCompleted",
            EventData::RunFailed { .. } => "runFailed",
            EventData::RunCancelled { .. } => "runCancelled",
        }
    }

    /// Whether this is the completion of an activation (written at its reserved seq).
    pub fn is_completion(&self) -> bool {
        matches!(
            self,
            EventData::AgentCompleted(_)
                | EventData::ToolCompleted(_)
                | EventData::HumanResolved(_)
                | EventData::AgentFailed { .. }
                | EventData::ToolFailed { .. }
                | EventData::HumanFailed { .. }
                | EventData::ActivationCancelled { .. }
        )
    }

    fn serialize_body<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        match self {
            EventData::RunStarted {
                workflow,
                input,
                seed,
            } => map.serialize_entry(
                "data",
                &RunStartedBody {
                    workflow: workflow.clone(),
                    input: input.clone(),
                    seed: *seed,
                },
            ),
            EventData::StepStarted { step, activations } => map.serialize_entry(
                "data",
                &StepBody {
                    step: *step,
                    activations: *activations,
                },
            ),
            EventData::AgentScheduled(s)
            | EventData::ToolScheduled(s)
            | EventData::HumanRequested(s) => map.serialize_entry("data", s),
            EventData::AgentCompleted(c)
            | EventData::ToolCompleted(c)
            | EventData::HumanResolved(c) => map.serialize_entry("data", c),
            EventData::AgentFailed { error }
            | EventData::ToolFailed { error }
            | EventData::HumanFailed { error } => {
                map.serialize_entry("data", &FailedBodyRef { error })
            }
            EventData::ActivationCancelled { reason } | EventData::RunCancelled { reason } => {
                map.serialize_entry("data", &ReasonBodyRef { reason })
            }
            EventData::BranchDecided {
                case,
                goto,
                loop_back,
            } => map.serialize_entry(
                "data",
                &BranchBody {
                    case: *case,
                    goto: goto.clone(),
                    loop_back: *loop_back,
                },
            ),
            EventData::NodeSkipped => map.serialize_entry("data", &EmptyBody {}),
            EventData::OutputOverridden { output } => map.serialize_entry(
                "data",
                &OverrideBody {
                    output: output.clone(),
                },
            ),
            EventData::RunCompleted { output } => {
                map.serialize_entry("data", &OutputBodyRef { output })
            }
            EventData::RunFailed { error } => {
                map.serialize_entry("data", &RunFailedBodyRef { error })
            }
        }
    }

    fn parse(kind: &str, raw: &RawValue) -> serde_json::Result<EventData> {
        let text = raw.get();
        Ok(match kind {
            "runStarted" => {
                let b: RunStartedBody = serde_json::from_str(text)?;
                EventData::RunStarted {
                    workflow: b.workflow,
                    input: b.input,
                    seed: b.seed,
                }
            }
            "stepStarted" => {
                let b: StepBody = serde_json::from_str(text)?;
                EventData::StepStarted {
                    step: b.step,
                    activations: b.activations,
                }
            }
            "agentScheduled" => EventData::AgentScheduled(serde_json::from_str(text)?),
            "toolScheduled" => EventData::ToolScheduled(serde_json::from_str(text)?),
            "humanRequested" => EventData::HumanRequested(serde_json::from_str(text)?),
            "agentCompleted" => EventData::AgentCompleted(serde_json::from_str(text)?),
            "toolCompleted" => EventData::ToolCompleted(serde_json::from_str(text)?),
            "humanResolved" => EventData::HumanResolved(serde_json::from_str(text)?),
            "agentFailed" => EventData::AgentFailed {
                error: serde_json::from_str::<FailedBody>(text)?.error,
            },
            "toolFailed" => EventData::ToolFailed {
                error: serde_json::from_str::<FailedBody>(text)?.error,
            },
            "humanFailed" => EventData::HumanFailed {
                error: serde_json::from_str::<FailedBody>(text)?.error,
            },
            "activationCancelled" => EventData::ActivationCancelled {
                reason: serde_json::from_str::<ReasonBody>(text)?.reason,
            },
            "branchDecided" => {
                let b: BranchBody = serde_json::from_str(text)?;
                EventData::BranchDecided {
                    case: b.case,
                    goto: b.goto,
                    loop_back: b.loop_back,
                }
            }
            "nodeSkipped" => {
                let _: EmptyBody = serde_json::from_str(text)?;
                EventData::NodeSkipped
            }
            "outputOverridden" => EventData::OutputOverridden {
                output: serde_json::from_str::<OverrideBody>(text)?.output,
            },
            "runCompleted" => EventData::RunCompleted {
                output: serde_json::from_str::<OutputBody>(text)?.output,
            },
            "runFailed" => EventData::RunFailed {
                error: serde_json::from_str::<RunFailedBody>(text)?.error,
            },
            "runCancelled" => EventData::RunCancelled {
                reason: serde_json::from_str::<ReasonBody>(text)?.reason,
            },
            other => {
                return Err(serde_json::Error::custom(format!(
                    "unknown event type '{other}'"
                )))
            }
        })
    }
}

#[derive(Serialize)]
struct FailedBodyRef<'a> {
    error: &'a Failure,
}
#[derive(Serialize)]
struct ReasonBodyRef<'a> {
    reason: &'a str,
}
#[derive(Serialize)]
struct OutputBodyRef<'a> {
    output: &'a Value,
}
#[derive(Serialize)]
struct RunFailedBodyRef<'a> {
    error: &'a RunError,
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Sequence number, dense from 1.
    pub seq: u64,
    /// Run id.
    pub run_id: Arc<str>,
    /// W3C trace id derived from the run id.
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

impl Event {
    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        self.data.type_name()
    }

    /// Equality of the canonical form (ignores `meta`).
    pub fn same_canonical(&self, other: &Event) -> bool {
        self.seq == other.seq
            && self.run_id == other.run_id
            && self.trace_id == other.trace_id
            && self.parent_seq == other.parent_seq
            && self.node == other.node
            && self.attempt == other.attempt
            && self.data == other.data
    }

    /// Canonical JSON (no `meta`), one line without the newline.
    pub fn to_canonical_json(&self) -> String {
        serde_json::to_string(&Canonical(self)).expect("events serialize")
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_event(self, self.meta.as_ref(), serializer)
    }
}

/// An event serialized in canonical form (without `meta`).
pub(crate) struct Canonical<'a>(pub &'a Event);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_event(self.0, None, serializer)
    }
}

/// An event serialized with the given `meta` in place of its own (what the log writer stores).
pub(crate) struct Stamped<'a>(pub &'a Event, pub Meta);

impl Serialize for Stamped<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_event(self.0, Some(&self.1), serializer)
    }
}

fn serialize_event<S: Serializer>(
    e: &Event,
    meta: Option<&Meta>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(None)?;
    map.serialize_entry("seq", &e.seq)?;
    map.serialize_entry("type", e.type_name())?;
    map.serialize_entry("runId", &*e.run_id)?;
    map.serialize_entry("traceId", &*e.trace_id)?;
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
    if let Some(m) = meta {
        map.serialize_entry("meta", m)?;
    }
    map.end()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEvent<'a> {
    seq: u64,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    run_id: Cow<'a, str>,
    #[serde(borrow)]
    trace_id: Cow<'a, str>,
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
    // Chain fields are accepted so a physical line parses whole; the log layer checks them.
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
        raw.into_event(&mut Interner::uncached())
            .map_err(D::Error::custom)
    }
}

/// Shares the few distinct strings of a log (run id, trace id, node ids) across its events,
/// so reading a long log does not allocate them once per event.
#[derive(Default)]
pub(crate) struct Interner {
    strings: HashSet<Arc<str>>,
    uncached: bool,
}

impl Interner {
    /// An interner that only allocates (for parsing one event on its own).
    fn uncached() -> Interner {
        Interner {
            strings: HashSet::new(),
            uncached: true,
        }
    }

    fn get(&mut self, s: &str) -> Arc<str> {
        if self.uncached {
            return s.into();
        }
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        if self.strings.len() < 100_000 {
            self.strings.insert(a.clone());
        }
        a
    }
}

impl RawEvent<'_> {
    fn into_event(self, interner: &mut Interner) -> serde_json::Result<Event> {
        Ok(Event {
            seq: self.seq,
            run_id: interner.get(&self.run_id),
            trace_id: interner.get(&self.trace_id),
            parent_seq: self.parent_seq,
            node: self.node.map(|n| interner.get(&n)),
            attempt: self.attempt,
            data: EventData::parse(&self.kind, self.data)?,
            meta: self.meta,
        })
    }
}

impl Event {
    /// Parse one record (canonical or physical) from JSON text.
    pub fn from_json(text: &str) -> serde_json::Result<Event> {
        serde_json::from_str(text)
    }

    pub(crate) fn from_json_interned(
        text: &str,
        interner: &mut Interner,
    ) -> serde_json::Result<Event> {
        serde_json::from_str::<RawEvent<'_>>(text)?.into_event(interner)
    }
}
