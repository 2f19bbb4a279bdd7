//! Spans derived from a run's events: one trace per run, one span per activation, call, human
//! wait and policy verdict, parented by the events' own links. Pure: the same events give the
//! same spans (ids included), live as events are committed or after the fact from a log file,
//! so exporting a run twice (after a crash, or post hoc) sends the same span ids.
//!
//! Names and attributes follow the OpenTelemetry GenAI semantic conventions pinned in
//! [`crate::SEMCONV_VERSION`] (docs/telemetry.md has the table).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use agentmesh_core::{
    ActivationKind, CallKind, Event, EventData, FailureKind, LogHeader, Usage, Verdict,
};
use serde_json::Value;

/// A span or trace id's bytes; shown as lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

impl SpanId {
    /// The id of the span opened by the event at `(seq, sub)` of run `run_id`: the first 8
    /// bytes of `blake3(runId, seq, sub)`, never all zero (W3C forbids it).
    pub fn of(run_id: &str, seq: u64, sub: Option<u32>) -> SpanId {
        let mut h = blake3::Hasher::new();
        h.update(run_id.as_bytes());
        h.update(&[0]);
        h.update(&seq.to_le_bytes());
        h.update(&sub.map_or(0, |s| u64::from(s) + 1).to_le_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.finalize().as_bytes()[..8]);
        if id == [0; 8] {
            id[7] = 1;
        }
        SpanId(id)
    }

    /// The id of verdict `index` judged at `(seq, sub)`: its own hash domain, so it never
    /// meets an event's id.
    pub fn of_verdict(run_id: &str, seq: u64, sub: Option<u32>, index: usize) -> SpanId {
        let mut h = blake3::Hasher::new();
        h.update(b"verdict\0");
        h.update(&SpanId::of(run_id, seq, sub).0);
        h.update(&(index as u64).to_le_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&h.finalize().as_bytes()[..8]);
        if id == [0; 8] {
            id[7] = 1;
        }
        SpanId(id)
    }

    /// 16 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

/// A trace id: the run's `traceId` (32 hex digits in every event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    /// Parse 32 hex digits; `None` for anything else.
    pub fn parse(text: &str) -> Option<TraceId> {
        if text.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(TraceId(id))
    }

    /// 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a span stands for (names the picture's shapes and the metric families).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// `invoke_workflow`: the run.
    Workflow,
    /// `invoke_agent`: an agent activation.
    Agent,
    /// `execute_tool`: a tool node's activation.
    ToolNode,
    /// `await_human`: a human activation, from request to decision.
    Human,
    /// `chat`: an LLM call inside an activation.
    Chat,
    /// `execute_tool`: a tool call inside an activation.
    ToolCall,
    /// `apply_guardrail`: one policy verdict.
    Guardrail,
}

impl Category {
    /// A short name for pictures (`run`, `agent`, `tool`, `human`, `llm`, `toolCall`,
    /// `policy`).
    pub fn short_name(self) -> &'static str {
        match self {
            Category::Workflow => "run",
            Category::Agent => "agent",
            Category::ToolNode => "tool",
            Category::Human => "human",
            Category::Chat => "llm",
            Category::ToolCall => "toolCall",
            Category::Guardrail => "policy",
        }
    }

    /// The span kind OTLP gets: calls leave the process (CLIENT), the rest is INTERNAL.
    pub fn is_client(self) -> bool {
        matches!(self, Category::Chat | Category::ToolCall)
    }
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A list of strings.
    Strs(Vec<String>),
}

impl AttrValue {
    /// The value as text (pictures and Prometheus labels).
    pub fn text(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Float(f) => f.to_string(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Strs(v) => v.join(","),
        }
    }
}

/// One attribute.
pub type Attr = (&'static str, AttrValue);

/// Something that happened at a point inside a span (budget warnings and refusals).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    /// Event name (`agentmesh.budget.warning`, `agentmesh.budget.exceeded`).
    pub name: &'static str,
    /// Unix time, microseconds.
    pub time_us: u64,
    /// Its attributes.
    pub attrs: Vec<Attr>,
}

/// A span's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Finished without error.
    Ok,
    /// Failed, timed out, was refused or cancelled; the message is the log's (redacted).
    Error(String),
    /// Still running (a live log read before its end).
    Open,
}

/// One span of a run's trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The run's trace.
    pub trace_id: TraceId,
    /// This span ([`SpanId::of`] the event that opened it).
    pub span_id: SpanId,
    /// The enclosing span; `None` for the run.
    pub parent: Option<SpanId>,
    /// `invoke_agent writer`, `chat smollm2`, ...
    pub name: String,
    /// What it stands for.
    pub category: Category,
    /// Unix time, microseconds.
    pub start_us: u64,
    /// Unix time, microseconds (for an open span: the last time the log knows).
    pub end_us: u64,
    /// Attributes (GenAI conventions plus `agentmesh.*`).
    pub attrs: Vec<Attr>,
    /// Point events inside the span.
    pub events: Vec<SpanEvent>,
    /// Spans this one follows from (a retry links to the attempt whose failure it retries).
    pub links: Vec<SpanId>,
    /// Outcome.
    pub status: Status,
    /// The event that opened the span.
    pub seq: u64,
    /// Its sub, for call spans.
    pub sub: Option<u32>,
    /// The opening event's `parentSeq` (a call's activation, an activation's step).
    pub parent_seq: Option<u64>,
    /// The node, for activation and call spans.
    pub node: Option<Arc<str>>,
    /// The timeline lane: the agent's name, the tool's, or the node's for a human.
    pub lane: Option<Arc<str>>,
    /// What went in and came out, as the log holds it (redacted by the run's policy): the
    /// timeline's details and opt-in content attributes.
    pub input: Option<Arc<Value>>,
    /// See `input`.
    pub output: Option<Arc<Value>>,
}

impl Span {
    /// The attribute `key`, if set.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Duration in microseconds.
    pub fn dur_us(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }
}

/// A step boundary (pictures draw them; spans carry the step as `agentmesh.step`).
#[derive(Debug, Clone, PartialEq)]
pub struct StepMark {
    /// Step number from 1.
    pub step: u64,
    /// Unix time, microseconds.
    pub time_us: u64,
    /// How many activations it scheduled.
    pub activations: u64,
}

/// Turns events into spans, one event at a time; a span is handed out when it ends.
///
/// Times come from each record's `meta` (`at`, `durUs`). A record without `meta` (a canonical
/// log) is placed one millisecond after the previous one, so the shape stays readable.
#[derive(Debug)]
pub struct SpanBuilder {
    run_id: Arc<str>,
    workflow: String,
    policy: Option<(String, String)>,
    trace_id: TraceId,
    root: Option<Span>,
    open: HashMap<u64, Span>,
    calls: HashMap<(u64, u32), Span>,
    /// Failure event seq -> the span of the attempt that failed (for retry links).
    failures: HashMap<u64, SpanId>,
    /// Scheduled seq -> step number.
    step_of_parent: HashMap<u64, u64>,
    steps: Vec<StepMark>,
    /// Time of the last record seen, microseconds.
    last_us: u64,
    cost_micro_usd: u64,
    usage: Usage,
    /// Activations (scheduled seq) whose calls reported usage.
    call_usage: HashSet<u64>,
    /// Per open activation (scheduled seq), its calls' earliest start: the activation span
    /// starts no later (record times are milliseconds, durations microseconds).
    child_start: HashMap<u64, u64>,
    /// Names (nodes, agents, tools) as this builder's own strings: spans share nothing with
    /// the run's thread (a shared `Arc` would bounce its count between the two threads).
    names: HashSet<Arc<str>>,
    /// Whether spans carry the recorded values (`input`, `output`).
    values: bool,
}

impl SpanBuilder {
    /// A builder for the run `header` describes.
    pub fn new(header: &LogHeader) -> SpanBuilder {
        let trace = agentmesh_core::trace_id_for(&header.run_id);
        SpanBuilder {
            run_id: Arc::from(header.run_id.as_str()),
            workflow: header.workflow.name.clone(),
            policy: header
                .policy
                .as_ref()
                .map(|p| (p.name.clone(), p.hash.clone())),
            trace_id: TraceId::parse(&trace).unwrap_or(TraceId([0; 16])),
            root: None,
            open: HashMap::new(),
            calls: HashMap::new(),
            failures: HashMap::new(),
            step_of_parent: HashMap::new(),
            steps: Vec::new(),
            last_us: header
                .meta
                .as_ref()
                .map_or(0, |m| m.at.saturating_mul(1000)),
            cost_micro_usd: 0,
            usage: Usage::default(),
            call_usage: HashSet::new(),
            child_start: HashMap::new(),
            names: HashSet::new(),
            values: true,
        }
    }

    /// Leave the recorded values off the spans (`input` and `output` stay `None`): live
    /// telemetry without content capture needs none of them.
    pub fn without_values(mut self) -> SpanBuilder {
        self.values = false;
        self
    }

    fn own(&mut self, name: &Option<Arc<str>>) -> Option<Arc<str>> {
        let name = name.as_deref()?;
        if let Some(n) = self.names.get(name) {
            return Some(n.clone());
        }
        let n: Arc<str> = Arc::from(name);
        self.names.insert(n.clone());
        Some(n)
    }

    fn value(&self, v: &Arc<Value>) -> Option<Arc<Value>> {
        self.values.then(|| v.clone())
    }

    /// The run's trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// Step boundaries seen so far.
    pub fn steps(&self) -> &[StepMark] {
        &self.steps
    }

    /// Take in one event; spans it ends are pushed to `out` (children before parents).
    pub fn push(&mut self, e: &Event, out: &mut Vec<Span>) {
        let at = self.time_of(e);
        let dur = e.meta.as_ref().and_then(|m| m.dur_us);
        match &e.data {
            EventData::RunStarted(b) => {
                let mut root = self.span(e, Category::Workflow, None, at);
                root.name = format!("invoke_workflow {}", self.workflow);
                root.attrs
                    .push(("gen_ai.operation.name", s("invoke_workflow")));
                root.attrs.push(("gen_ai.workflow.name", s(&self.workflow)));
                root.attrs.push(("agentmesh.run.id", s(&self.run_id)));
                root.attrs
                    .push(("agentmesh.seed", AttrValue::Int(b.seed as i64)));
                // Phoenix shows a span without a kind as UNKNOWN.
                root.attrs.push(("openinference.span.kind", s("CHAIN")));
                root.input = self.value(&b.input);
                let root_id = root.span_id;
                self.root = Some(root);
                self.guardrails(e, &b.verdicts, root_id, at, out);
            }
            EventData::RunReopened(_) => {
                // A finished run goes on: its next part is a new root in the same trace,
                // linked to the part before.
                let before = self.root.as_ref().map(|r| r.span_id);
                let mut root = self.span(e, Category::Workflow, None, at);
                root.name = format!("invoke_workflow {}", self.workflow);
                root.attrs
                    .push(("gen_ai.operation.name", s("invoke_workflow")));
                root.attrs.push(("gen_ai.workflow.name", s(&self.workflow)));
                root.attrs.push(("agentmesh.run.id", s(&self.run_id)));
                root.attrs
                    .push(("agentmesh.run.reopened", AttrValue::Bool(true)));
                root.attrs.push(("openinference.span.kind", s("CHAIN")));
                root.links.extend(before);
                self.root = Some(root);
            }
            EventData::StepStarted(b) => {
                self.steps.push(StepMark {
                    step: b.step,
                    time_us: at,
                    activations: b.activations,
                });
                self.step_of_parent.insert(e.seq, b.step);
            }
            EventData::Scheduled(kind, b) => {
                let root = self.root_id();
                let (category, name, lane) = match kind {
                    ActivationKind::Agent => {
                        let agent = self.own(&b.agent).or_else(|| self.own(&e.node));
                        (
                            Category::Agent,
                            format!("invoke_agent {}", or_dash(&agent)),
                            agent,
                        )
                    }
                    ActivationKind::Tool => {
                        let tool = self.own(&b.tool).or_else(|| self.own(&e.node));
                        (
                            Category::ToolNode,
                            format!("execute_tool {}", or_dash(&tool)),
                            tool,
                        )
                    }
                    ActivationKind::Human => (
                        Category::Human,
                        format!("await_human {}", or_dash(&e.node)),
                        self.own(&e.node),
                    ),
                };
                let mut span = self.span(e, category, root, at + b.delay_ms * 1000);
                span.name = name;
                span.lane = lane.clone();
                let op = match category {
                    Category::Agent => "invoke_agent",
                    Category::ToolNode => "execute_tool",
                    _ => "await_human",
                };
                span.attrs.push(("gen_ai.operation.name", s(op)));
                match category {
                    Category::Agent => {
                        span.attrs.push(("gen_ai.agent.name", s(or_dash(&lane))));
                        span.attrs.push(("gen_ai.agent.id", s(or_dash(&e.node))));
                        span.attrs.push(("openinference.span.kind", s("AGENT")));
                    }
                    Category::ToolNode => {
                        span.attrs.push(("gen_ai.tool.name", s(or_dash(&lane))));
                        span.attrs.push(("gen_ai.tool.type", s("function")));
                        span.attrs.push(("openinference.span.kind", s("TOOL")));
                    }
                    _ => {
                        if let Some(p) = &b.prompt {
                            span.attrs.push(("agentmesh.human.prompt", s(p)));
                        }
                    }
                }
                span.attrs.push(("agentmesh.node", s(or_dash(&e.node))));
                span.attrs
                    .push(("agentmesh.attempt", int(e.attempt.unwrap_or(1).into())));
                if b.visit > 1 {
                    span.attrs.push(("agentmesh.visit", int(b.visit)));
                }
                if let Some(step) = e.parent_seq.and_then(|p| self.step_of_parent.get(&p)) {
                    span.attrs.push(("agentmesh.step", int(*step)));
                }
                if let Some(t) = b.timeout_ms {
                    span.attrs.push(("agentmesh.timeout_ms", int(t)));
                }
                if let Some(item) = &b.item {
                    span.attrs.push(("agentmesh.item.index", int(item.index)));
                    if let Some(k) = &item.key {
                        span.attrs.push(("agentmesh.item.key", s(k)));
                    }
                }
                if let Some(failed) = b.retry_of.and_then(|f| self.failures.get(&f)) {
                    span.links.push(*failed);
                    span.attrs.push(("agentmesh.retry", AttrValue::Bool(true)));
                }
                self.open.insert(e.seq, span);
            }
            EventData::Completed(_, b) => {
                let Some(mut span) = self.close_activation(e, at, dur, out) else {
                    return;
                };
                span.output = self.value(&b.output);
                self.add_usage(&mut span, b.usage.as_ref());
                if let Some(r) = &b.repaired {
                    let fixes: Vec<&str> = r.fixes.iter().map(|f| &**f).collect();
                    let fixes = if fixes.is_empty() {
                        "parsed".to_owned()
                    } else {
                        fixes.join(",")
                    };
                    span.attrs.push(("agentmesh.output.repaired", s(&fixes)));
                }
                span.status = Status::Ok;
                let id = span.span_id;
                out.push(span);
                self.guardrails(e, &b.verdicts, id, at, out);
            }
            EventData::Failed(_, b) => {
                let Some(mut span) = self.close_activation(e, at, dur, out) else {
                    return;
                };
                self.add_usage(&mut span, b.usage.as_ref());
                span.attrs.push(("error.type", s(&b.error.error_type)));
                if b.error.kind == FailureKind::Timeout {
                    span.attrs
                        .push(("agentmesh.timeout", AttrValue::Bool(true)));
                }
                span.status = Status::Error(b.error.message.clone());
                self.failures.insert(e.seq, span.span_id);
                let id = span.span_id;
                out.push(span);
                self.guardrails(e, &b.verdicts, id, at, out);
            }
            EventData::ActivationCancelled(b) => {
                let Some(mut span) = self.close_activation(e, at, dur, out) else {
                    return;
                };
                span.attrs.push(("error.type", s("cancelled")));
                span.status = Status::Error(b.reason.clone());
                out.push(span);
            }
            EventData::CallStarted(b) => {
                let parent = e.parent_seq.map(|p| SpanId::of(&self.run_id, p, None));
                let mut span = self.span(e, call_category(b.kind), parent, at);
                span.lane = self.lane_of(e.parent_seq);
                self.call_attrs(&mut span, b.kind, &b.name, &b.request, b.max_tokens);
                span.attrs.push(("agentmesh.call", int(b.call.into())));
                span.input = self.value(&b.request);
                let id = span.span_id;
                self.calls.insert((e.seq, b.call), span);
                self.guardrails(e, &b.verdicts, id, at, out);
            }
            EventData::CallCompleted(b) => {
                let Some(mut span) = self.close_call(e, b.call, at, dur) else {
                    return;
                };
                if span.category == Category::Chat {
                    if let Some(reason) = b.response.get("finishReason").and_then(Value::as_str) {
                        span.attrs.push((
                            "gen_ai.response.finish_reasons",
                            AttrValue::Strs(vec![reason.to_owned()]),
                        ));
                    }
                }
                self.add_usage(&mut span, b.usage.as_ref());
                self.add_charge(&mut span, b.charge.as_ref());
                if b.cached {
                    span.attrs
                        .push(("agentmesh.call.cached", AttrValue::Bool(true)));
                }
                span.output = self.value(&b.response);
                span.status = Status::Ok;
                self.call_ended(&span);
                let id = span.span_id;
                out.push(span);
                self.guardrails(e, &b.verdicts, id, at, out);
            }
            EventData::CallFailed(b) => {
                let Some(mut span) = self.close_call(e, b.call, at, dur) else {
                    return;
                };
                self.add_usage(&mut span, b.usage.as_ref());
                self.add_charge(&mut span, b.charge.as_ref());
                span.attrs.push(("error.type", s(&b.error.error_type)));
                if let Some(status) = b.error.status {
                    span.attrs
                        .push(("http.response.status_code", int(status.into())));
                }
                if !b.attempts.is_empty() {
                    span.attrs
                        .push(("agentmesh.call.attempts", int(b.attempts.len() as u64 + 1)));
                }
                span.status = Status::Error(b.error.message.clone());
                self.call_ended(&span);
                let id = span.span_id;
                out.push(span);
                self.guardrails(e, &b.verdicts, id, at, out);
            }
            EventData::CallDenied(b) => {
                // Refused before anything was sent: an error span of no length.
                let parent = e.parent_seq.map(|p| SpanId::of(&self.run_id, p, None));
                let mut span = self.span(e, call_category(b.kind), parent, at);
                span.lane = self.lane_of(e.parent_seq);
                let request = b.request.clone().unwrap_or_else(|| Arc::new(Value::Null));
                self.call_attrs(&mut span, b.kind, &b.name, &request, None);
                span.attrs.push(("agentmesh.call", int(b.call.into())));
                span.input = b.request.as_ref().and_then(|r| self.value(r));
                let (error_type, message) = match &b.budget {
                    Some(refusal) => {
                        span.events.push(budget_exceeded(refusal, at));
                        ("BudgetExceededError", refusal.message())
                    }
                    None => (
                        "PolicyDeniedError",
                        b.verdicts
                            .first()
                            .map(Verdict::message)
                            .unwrap_or_else(|| "denied by the run's policy".to_owned()),
                    ),
                };
                span.attrs.push(("error.type", s(error_type)));
                span.status = Status::Error(message);
                let id = span.span_id;
                out.push(span);
                self.guardrails(e, &b.verdicts, id, at, out);
            }
            EventData::OutputOverridden(b) => {
                let root = self.root_id();
                if let Some(root) = root {
                    self.guardrails(e, &b.verdicts, root, at, out);
                }
            }
            EventData::BudgetWarning(w) => {
                if let Some(root) = self.root.as_mut() {
                    let mut attrs = vec![
                        ("agentmesh.budget.scope", s(w.scope.as_str())),
                        ("agentmesh.budget.dimension", s(w.dimension.as_str())),
                        ("agentmesh.budget.threshold", int(w.threshold)),
                        ("agentmesh.budget.limit", int(w.limit)),
                        ("agentmesh.budget.spent", int(w.spent)),
                    ];
                    if let Some(a) = &w.agent {
                        attrs.push(("gen_ai.agent.name", s(a)));
                    }
                    root.events.push(SpanEvent {
                        name: "agentmesh.budget.warning",
                        time_us: at,
                        attrs,
                    });
                }
            }
            EventData::RunCompleted(b) => {
                if let Some(mut root) = self.take_root(at) {
                    root.status = Status::Ok;
                    root.attrs.push(("agentmesh.run.status", s("completed")));
                    root.output = self.values.then(|| Arc::new(b.output.clone()));
                    out.push(root);
                }
            }
            EventData::RunFailed(b) => {
                if let Some(mut root) = self.take_root(at) {
                    root.attrs.push(("agentmesh.run.status", s("failed")));
                    root.attrs.push(("error.type", s(&b.error.code)));
                    if let Some(refusal) = &b.error.budget {
                        root.events.push(budget_exceeded(refusal, at));
                    }
                    root.status = Status::Error(b.error.message.clone());
                    out.push(root);
                }
            }
            EventData::RunCancelled(b) => {
                if let Some(mut root) = self.take_root(at) {
                    root.attrs.push(("agentmesh.run.status", s("cancelled")));
                    root.attrs.push(("error.type", s("cancelled")));
                    root.status = Status::Error(b.reason.clone());
                    out.push(root);
                }
            }
            EventData::BranchDecided(_) | EventData::NodeSkipped => {}
            _ => {}
        }
    }

    /// The spans still open (a running log): each ends at the last time the log knows,
    /// with status [`Status::Open`]; calls first, then activations, then the run.
    pub fn open_spans(&self) -> Vec<Span> {
        let mut out = Vec::new();
        let mut calls: Vec<&Span> = self.calls.values().collect();
        calls.sort_by_key(|s| (s.seq, s.sub));
        let mut acts: Vec<&Span> = self.open.values().collect();
        acts.sort_by_key(|s| s.seq);
        for span in calls.into_iter().chain(acts).chain(self.root.as_ref()) {
            let mut span = span.clone();
            span.end_us = self.last_us.max(span.start_us);
            span.status = Status::Open;
            if span.category == Category::Workflow {
                self.root_totals(&mut span);
            }
            out.push(span);
        }
        out
    }

    fn time_of(&mut self, e: &Event) -> u64 {
        let at = match &e.meta {
            Some(m) => m.at.saturating_mul(1000),
            None => self.last_us + 1000,
        };
        self.last_us = self.last_us.max(at);
        at
    }

    fn span(&mut self, e: &Event, category: Category, parent: Option<SpanId>, at: u64) -> Span {
        let node = self.own(&e.node);
        Span {
            trace_id: self.trace_id,
            span_id: SpanId::of(&self.run_id, e.seq, e.sub),
            parent,
            name: String::new(),
            category,
            start_us: at,
            end_us: at,
            attrs: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            status: Status::Open,
            seq: e.seq,
            sub: e.sub,
            parent_seq: e.parent_seq,
            node,
            lane: None,
            input: None,
            output: None,
        }
    }

    /// The open span of call `call` of `e`'s activation, ended at `at`: it started `dur`
    /// before when measured, with the provider facts of the result's `meta`.
    fn close_call(&mut self, e: &Event, call: u32, at: u64, dur: Option<u64>) -> Option<Span> {
        let mut span = self.calls.remove(&(e.seq, call))?;
        span.end_us = at;
        if let Some(d) = dur {
            span.start_us = at.saturating_sub(d).max(span.start_us.min(at));
        }
        self.call_meta(&mut span, e);
        Some(span)
    }

    fn call_ended(&mut self, call: &Span) {
        if let Some(owner) = call.parent_seq {
            let earliest = self.child_start.entry(owner).or_insert(call.start_us);
            *earliest = (*earliest).min(call.start_us);
        }
    }

    fn root_id(&self) -> Option<SpanId> {
        self.root.as_ref().map(|r| r.span_id)
    }

    fn lane_of(&self, scheduled: Option<u64>) -> Option<Arc<str>> {
        scheduled
            .and_then(|p| self.open.get(&p))
            .and_then(|s| s.lane.clone())
    }

    fn take_root(&mut self, at: u64) -> Option<Span> {
        let mut root = self.root.take()?;
        root.end_us = at.max(root.start_us);
        self.root_totals(&mut root);
        Some(root)
    }

    fn root_totals(&self, root: &mut Span) {
        let u = &self.usage;
        if u.input_tokens + u.output_tokens > 0 {
            root.attrs
                .push(("gen_ai.usage.input_tokens", int(u.input_tokens)));
            root.attrs
                .push(("gen_ai.usage.output_tokens", int(u.output_tokens)));
        }
        if self.cost_micro_usd > 0 {
            root.attrs
                .push(("agentmesh.cost.micro_usd", int(self.cost_micro_usd)));
        }
    }

    /// Close the activation a completion belongs to (`parentSeq` is its scheduled seq).
    fn close_activation(
        &mut self,
        e: &Event,
        at: u64,
        dur: Option<u64>,
        out: &mut Vec<Span>,
    ) -> Option<Span> {
        let mut span = self.open.remove(&e.parent_seq?)?;
        span.end_us = at.max(span.start_us);
        // The measured run time is the truth; the scheduling time is when it was decided.
        // A human waits from the request to the decision, so it keeps its request time.
        if let (Some(d), false) = (dur, span.category == Category::Human) {
            span.start_us = at.saturating_sub(d).max(span.start_us.min(at));
        }
        if let Some(child) = self.child_start.remove(&span.seq) {
            span.start_us = span.start_us.min(child);
        }
        // Calls still open when their activation ended (cut off) end with it.
        let mut stranded: Vec<(u64, u32)> = self
            .calls
            .keys()
            .filter(|(seq, _)| *seq == e.seq)
            .copied()
            .collect();
        stranded.sort();
        for key in stranded {
            if let Some(mut call) = self.calls.remove(&key) {
                call.end_us = span.end_us.max(call.start_us);
                call.attrs.push(("error.type", s("cancelled")));
                call.status = Status::Error("the activation ended before the call".into());
                out.push(call);
            }
        }
        Some(span)
    }

    fn call_attrs(
        &self,
        span: &mut Span,
        kind: CallKind,
        name: &str,
        request: &Value,
        max_tokens: Option<u64>,
    ) {
        match kind {
            CallKind::Llm => {
                let model = request.get("model").and_then(Value::as_str).unwrap_or("-");
                span.name = format!("chat {model}");
                span.attrs.push(("gen_ai.operation.name", s("chat")));
                span.attrs.push(("gen_ai.provider.name", s(name)));
                span.attrs.push(("gen_ai.request.model", s(model)));
                let max = max_tokens.or_else(|| request.get("maxTokens").and_then(Value::as_u64));
                if let Some(m) = max {
                    span.attrs.push(("gen_ai.request.max_tokens", int(m)));
                }
                if let Some(t) = request.get("temperature").and_then(Value::as_f64) {
                    span.attrs
                        .push(("gen_ai.request.temperature", AttrValue::Float(t)));
                }
                if let Some(seed) = request.get("seed").and_then(Value::as_i64) {
                    span.attrs
                        .push(("gen_ai.request.seed", AttrValue::Int(seed)));
                }
                if let Some(p) = request.get("topP").and_then(Value::as_f64) {
                    span.attrs
                        .push(("gen_ai.request.top_p", AttrValue::Float(p)));
                }
                span.attrs.push(("openinference.span.kind", s("LLM")));
            }
            CallKind::Tool => {
                span.name = format!("execute_tool {name}");
                span.attrs
                    .push(("gen_ai.operation.name", s("execute_tool")));
                span.attrs.push(("gen_ai.tool.name", s(name)));
                span.attrs.push(("gen_ai.tool.type", s("function")));
                span.attrs.push(("openinference.span.kind", s("TOOL")));
            }
        }
    }

    fn call_meta(&self, span: &mut Span, e: &Event) {
        let Some(meta) = e.meta.as_ref().and_then(|m| m.call.as_ref()) else {
            return;
        };
        if let Some(p) = &meta.provider {
            // The provider that answered (a fallback chain names which one).
            if let Some(slot) = span
                .attrs
                .iter_mut()
                .find(|(k, _)| *k == "gen_ai.provider.name")
            {
                slot.1 = s(p);
            }
        }
        if let Some(id) = &meta.response_id {
            span.attrs.push(("gen_ai.response.id", s(id)));
        }
        if let Some(ttft) = meta.ttft_us {
            span.attrs.push((
                "agentmesh.time_to_first_chunk_ms",
                AttrValue::Float(ttft as f64 / 1000.0),
            ));
        }
        if let Some(wait) = meta.rate_wait_us {
            span.attrs.push((
                "agentmesh.rate_limit_wait_ms",
                AttrValue::Float(wait as f64 / 1000.0),
            ));
        }
        if let Some(id) = meta.tool_call_ids.first() {
            span.attrs.push(("gen_ai.tool.call.id", s(id)));
        }
    }

    fn add_usage(&mut self, span: &mut Span, usage: Option<&Usage>) {
        let Some(u) = usage else { return };
        span.attrs
            .push(("gen_ai.usage.input_tokens", int(u.input_tokens)));
        span.attrs
            .push(("gen_ai.usage.output_tokens", int(u.output_tokens)));
        if u.cached_input_tokens > 0 {
            span.attrs.push((
                "gen_ai.usage.cache_read.input_tokens",
                int(u.cached_input_tokens),
            ));
        }
        if u.cache_write_tokens > 0 {
            span.attrs.push((
                "gen_ai.usage.cache_creation.input_tokens",
                int(u.cache_write_tokens),
            ));
        }
        if u.reasoning_tokens > 0 {
            span.attrs.push((
                "gen_ai.usage.reasoning.output_tokens",
                int(u.reasoning_tokens),
            ));
        }
        if let (Some(m), true) = (&u.model, span.category == Category::Chat) {
            span.attrs.push(("gen_ai.response.model", s(m)));
        }
        // Run totals: calls' usage, plus what activations report whose calls reported none
        // (an agent that sums its calls' usage would otherwise count twice).
        let counts = match span.category {
            Category::Chat | Category::ToolCall => {
                if let Some(owner) = span.parent_seq {
                    self.call_usage.insert(owner);
                }
                true
            }
            _ => !self.call_usage.contains(&span.seq),
        };
        if counts {
            self.usage.input_tokens += u.input_tokens;
            self.usage.output_tokens += u.output_tokens;
        }
    }

    fn add_charge(&mut self, span: &mut Span, charge: Option<&agentmesh_core::Amounts>) {
        let Some(c) = charge else { return };
        let micro = c.get(agentmesh_core::Dimension::MicroUsd);
        span.attrs.push(("agentmesh.cost.micro_usd", int(micro)));
        self.cost_micro_usd += micro;
    }

    fn guardrails(
        &mut self,
        e: &Event,
        verdicts: &[Verdict],
        parent: SpanId,
        at: u64,
        out: &mut Vec<Span>,
    ) {
        for (i, v) in verdicts.iter().enumerate() {
            let mut span = self.span(e, Category::Guardrail, Some(parent), at);
            // One id per verdict: the judged event's id space, offset past its calls.
            span.span_id = SpanId::of_verdict(&self.run_id, e.seq, e.sub, i);
            span.name = format!("apply_guardrail {}", v.rule);
            span.lane = self.lane_of(e.parent_seq).or_else(|| {
                e.parent_seq
                    .and_then(|_| out.iter().rev().find(|s| s.span_id == parent))
                    .and_then(|s| s.lane.clone())
            });
            span.attrs
                .push(("gen_ai.operation.name", s("apply_guardrail")));
            span.attrs.push(("gen_ai.guardrail.name", s(&v.rule)));
            if let Some((name, hash)) = &self.policy {
                span.attrs.push(("gen_ai.guardrail.policy.id", s(name)));
                span.attrs
                    .push(("gen_ai.guardrail.policy.version", s(hash)));
            }
            span.attrs
                .push(("gen_ai.guardrail.result.type", s(v.action.as_str())));
            span.attrs
                .push(("gen_ai.guardrail.result.value", s(&v.kind)));
            span.attrs
                .push(("gen_ai.guardrail.result.reason", s(&v.message())));
            span.attrs.push(("agentmesh.policy.rule", s(&v.rule)));
            span.attrs
                .push(("agentmesh.policy.action", s(v.action.as_str())));
            span.attrs
                .push(("agentmesh.policy.count", int(v.count.into())));
            if let Some(p) = &v.path {
                span.attrs.push(("agentmesh.policy.path", s(p)));
            }
            span.attrs.push(("openinference.span.kind", s("GUARDRAIL")));
            span.status = Status::Ok;
            out.push(span);
        }
    }
}

/// The `agentmesh.budget.exceeded` event of a budget refusal at `at`.
fn budget_exceeded(refusal: &agentmesh_core::BudgetRefusal, at: u64) -> SpanEvent {
    SpanEvent {
        name: "agentmesh.budget.exceeded",
        time_us: at,
        attrs: vec![
            ("agentmesh.budget.scope", s(refusal.scope.as_str())),
            ("agentmesh.budget.dimension", s(refusal.dimension.as_str())),
            ("agentmesh.budget.limit", int(refusal.limit)),
            ("agentmesh.budget.spent", int(refusal.spent)),
            ("agentmesh.budget.requested", int(refusal.requested)),
        ],
    }
}

fn call_category(kind: CallKind) -> Category {
    match kind {
        CallKind::Llm => Category::Chat,
        CallKind::Tool => Category::ToolCall,
    }
}

fn or_dash(v: &Option<Arc<str>>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn s(v: &str) -> AttrValue {
    AttrValue::Str(v.to_owned())
}

fn int(v: u64) -> AttrValue {
    AttrValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Every span of a finished or running log, in the order they end (open ones last).
pub fn spans(header: &LogHeader, events: &[Event]) -> (Vec<Span>, Vec<StepMark>) {
    let mut b = SpanBuilder::new(header);
    let mut out = Vec::new();
    for e in events {
        b.push(e, &mut out);
    }
    out.extend(b.open_spans());
    let steps = b.steps().to_vec();
    (out, steps)
}
