//! Policy regression: judge recorded runs by a new policy and report every decision that
//! would change (`agentmesh policy check`, `check_policy` in Python and Node).
//!
//! Each value a log holds is judged as the run would have judged it (the same subjects, the
//! same order) and its verdicts compared with the recorded ones. What a log does not hold
//! cannot be judged again: a redacted span is only its placeholder, a blocked value only its
//! digest. For those, the report compares the rule: a redaction or block whose rule the new
//! policy no longer has, or has with another action or detector, is reported as such.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::{Policy, Subject};
use crate::error::Result;
use crate::model::call::CallKind;
use crate::model::event::{Event, EventData};
use crate::model::header::PolicyRef;
use crate::model::verdict::{Action, Verdict, TOOLS_RULE};
use crate::model::workflow::{ActivationKind, NodeKind, WorkflowSpec};

/// What would change in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    /// A rule would now block the value (or deny the tool call).
    NowBlock,
    /// A rule would now redact part of it.
    NowRedact,
    /// A rule would now warn about it.
    NowWarn,
    /// A recorded block would not happen.
    NoLongerBlock,
    /// A recorded redaction would not happen.
    NoLongerRedact,
    /// A recorded warning would not happen.
    NoLongerWarn,
    /// A recorded verdict's rule changed in a way the log cannot re-check (its content is not
    /// in the log): another detector, or another action.
    RuleChanged,
}

impl ChangeKind {
    fn text(self) -> &'static str {
        match self {
            ChangeKind::NowBlock => "would now BLOCK",
            ChangeKind::NowRedact => "would now REDACT",
            ChangeKind::NowWarn => "would now WARN",
            ChangeKind::NoLongerBlock => "would no longer BLOCK",
            ChangeKind::NoLongerRedact => "would no longer REDACT",
            ChangeKind::NoLongerWarn => "would no longer WARN",
            ChangeKind::RuleChanged => "rule changed",
        }
    }
}

/// One decision that would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The record's seq.
    pub seq: u64,
    /// Its sub (call records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<u32>,
    /// Its node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What was judged (`input`, `output`, `llmRequest`...; `tool` for an allowlist decision,
    /// `workflow` for a tool node).
    pub subject: String,
    /// What would change.
    pub change: ChangeKind,
    /// The rule.
    pub rule: String,
    /// What it finds (a detector name, a custom rule's id, `tool`).
    pub kind: String,
    /// Where in the value (a JSON Pointer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How many matches.
    pub count: u32,
    /// The change in one sentence.
    pub detail: String,
}

/// The changes in one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogCheck {
    /// The log file.
    pub path: String,
    /// Its run.
    pub run_id: String,
    /// The policy it was recorded under, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_policy: Option<PolicyRef>,
    /// Values judged.
    pub values: u64,
    /// Decisions that would change, in log order.
    pub changes: Vec<Change>,
}

/// What a new policy would decide differently on recorded runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    /// The policy checked.
    pub policy: PolicyRef,
    /// One entry per log, in the order given.
    pub logs: Vec<LogCheck>,
}

impl PolicyReport {
    /// Decisions that would change, over every log.
    pub fn changes(&self) -> usize {
        self.logs.iter().map(|l| l.changes.len()).sum()
    }

    /// The report as JSON (`agentmesh policy check --json`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a report serializes")
    }

    /// The report for a person: per log, one line per change, then counts.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let short = |h: &str| h.chars().take(12).collect::<String>();
        let _ = writeln!(
            out,
            "policy '{}' ({}) against {} log{}",
            self.policy.name,
            short(&self.policy.hash),
            self.logs.len(),
            if self.logs.len() == 1 { "" } else { "s" }
        );
        for log in &self.logs {
            let under = match &log.recorded_policy {
                Some(p) if p.hash == self.policy.hash => " (recorded under this policy)".to_owned(),
                Some(p) => format!(" (recorded under '{}' {})", p.name, short(&p.hash)),
                None => " (recorded without a policy)".to_owned(),
            };
            let _ = writeln!(out, "\n{}  run '{}'{under}", log.path, log.run_id);
            for c in &log.changes {
                let at = match (c.sub, &c.node) {
                    (Some(sub), Some(n)) => format!("seq {} sub {sub} node '{n}'", c.seq),
                    (None, Some(n)) => format!("seq {} node '{n}'", c.seq),
                    (Some(sub), None) => format!("seq {} sub {sub}", c.seq),
                    (None, None) => format!("seq {}", c.seq),
                };
                let _ = writeln!(out, "  {at:<28} {:<11} {}", c.subject, c.detail);
            }
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for c in &log.changes {
                *counts.entry(c.change.text()).or_default() += 1;
            }
            let summary = if counts.is_empty() {
                "no decision would change".to_owned()
            } else {
                let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
                format!(
                    "{} decision{} would change: {}",
                    log.changes.len(),
                    if log.changes.len() == 1 { "" } else { "s" },
                    parts.join(", ")
                )
            };
            let _ = writeln!(out, "  {summary}; {} values judged", log.values);
        }
        let n = self.changes();
        let _ = writeln!(
            out,
            "\n{n} change{} in {} log{}",
            if n == 1 { "" } else { "s" },
            self.logs.len(),
            if self.logs.len() == 1 { "" } else { "s" }
        );
        out
    }
}

/// Judge the runs recorded in `logs` by `policy`.
///
/// Errors: `IO`, `LOG_CORRUPT` (naming the log).
pub fn check_policy<P: AsRef<Path>>(policy: &Policy, logs: &[P]) -> Result<PolicyReport> {
    let mut out = Vec::with_capacity(logs.len());
    for path in logs {
        out.push(check_log(policy, path.as_ref())?);
    }
    Ok(PolicyReport {
        policy: PolicyRef {
            name: policy.name().to_owned(),
            hash: policy.hash().to_owned(),
        },
        logs: out,
    })
}

fn check_log(policy: &Policy, path: &Path) -> Result<LogCheck> {
    let mut events = crate::read_events(path)?;
    let header = events.header().clone();
    let mut check = Checker {
        policy,
        agents: BTreeMap::new(),
        starts: BTreeMap::new(),
        log: LogCheck {
            path: path.display().to_string(),
            run_id: header.run_id.clone(),
            recorded_policy: header.policy.clone(),
            values: 0,
            changes: Vec::new(),
        },
    };
    for e in events.by_ref() {
        check.event(&e?);
    }
    Ok(check.log)
}

struct Checker<'p> {
    policy: &'p Policy,
    /// Node id → (kind, agent or tool name), from `runStarted`.
    agents: BTreeMap<String, (NodeKind, String)>,
    /// The kind of each call started: (seq, sub of its start) → kind.
    starts: BTreeMap<(u64, u32), CallKind>,
    log: LogCheck,
}

impl Checker<'_> {
    fn event(&mut self, e: &Event) {
        match &e.data {
            EventData::RunStarted(s) => {
                self.workflow(e, &s.workflow);
                self.value(e, Subject::Input, Some(&s.input), &s.verdicts);
            }
            EventData::Completed(kind, c) => {
                self.value(e, subject_of(*kind), Some(&c.output), &c.verdicts)
            }
            EventData::Failed(kind, f) => {
                // The message of a failure is redacted, never blocked; a blocked output is
                // not in the log.
                let message = Value::String(f.error.message.clone());
                let blocked = f.verdicts.iter().any(|v| v.action == Action::Block);
                self.value(
                    e,
                    subject_of(*kind),
                    (!blocked).then_some(&message),
                    &f.verdicts,
                );
            }
            EventData::OutputOverridden(o) => {
                self.value(e, Subject::Output, Some(&o.output), &o.verdicts)
            }
            EventData::CallStarted(c) => {
                self.tool(e, c.kind, &c.name, None);
                self.value(e, request_subject(c.kind), Some(&c.request), &c.verdicts);
            }
            EventData::CallDenied(d) => {
                let tool_denial = d.verdicts.iter().find(|v| &*v.rule == TOOLS_RULE);
                self.tool(e, d.kind, &d.name, tool_denial);
                if tool_denial.is_none() {
                    let request = d.request.as_deref();
                    self.value(e, request_subject(d.kind), request, &d.verdicts);
                }
            }
            EventData::CallCompleted(c) => {
                let subject = self.response_subject(e);
                self.value(e, subject, Some(&c.response), &c.verdicts);
            }
            EventData::CallFailed(f) => {
                let subject = self.response_subject(e);
                let blocked = f.verdicts.iter().any(|v| v.action == Action::Block);
                let message = Value::String(f.error.message.clone());
                self.value(e, subject, (!blocked).then_some(&message), &f.verdicts);
            }
            _ => {}
        }
    }

    fn workflow(&mut self, e: &Event, wf: &WorkflowSpec) {
        for n in &wf.nodes {
            let name = n
                .agent
                .clone()
                .or_else(|| n.tool.clone())
                .unwrap_or_default();
            self.agents.insert(n.id.clone(), (n.kind, name.clone()));
            if n.tool.is_some() && !self.policy.allowlist().allows_node(&name) {
                self.log.changes.push(Change {
                    seq: e.seq,
                    sub: None,
                    node: Some(n.id.clone()),
                    subject: "workflow".into(),
                    change: ChangeKind::NowBlock,
                    rule: TOOLS_RULE.into(),
                    kind: "tool".into(),
                    path: None,
                    count: 1,
                    detail: format!(
                        "would refuse to start the run: tool node '{}' runs '{name}', which tools.workflow does not list",
                        n.id
                    ),
                });
            }
        }
    }

    /// An LLM response or a tool result, by the kind its `callStarted` (the sub before)
    /// recorded.
    fn response_subject(&self, e: &Event) -> Subject {
        let start = (e.seq, e.sub.unwrap_or(0).saturating_sub(1));
        match self.starts.get(&start) {
            Some(CallKind::Tool) => Subject::ToolResult,
            _ => Subject::LlmResponse,
        }
    }

    /// A tool call's allowlist decision, recorded (`denial`) or not.
    fn tool(&mut self, e: &Event, kind: CallKind, name: &str, denial: Option<&Verdict>) {
        self.starts.insert((e.seq, e.sub.unwrap_or(0)), kind);
        if kind != CallKind::Tool {
            return;
        }
        let agent = e
            .node
            .as_deref()
            .and_then(|n| self.agents.get(n))
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        self.log.values += 1;
        let now = self.policy.allowlist().check_call(&agent, name);
        let change = match (denial.is_some(), now.is_some()) {
            (false, true) => ChangeKind::NowBlock,
            (true, false) => ChangeKind::NoLongerBlock,
            _ => return,
        };
        let detail = match change {
            ChangeKind::NowBlock => {
                format!("would now DENY tool '{name}' to agent '{agent}' (rule 'tools')")
            }
            _ => format!("would now ALLOW tool '{name}' to agent '{agent}' (rule 'tools')"),
        };
        self.push(e, "tool", change, TOOLS_RULE, "tool", None, 1, detail);
    }

    /// Judge one value (absent: not in the log) and compare with what was recorded.
    fn value(&mut self, e: &Event, subject: Subject, value: Option<&Value>, recorded: &[Verdict]) {
        self.log.values += 1;
        let now = match value {
            Some(v) => self.policy.check(subject, v),
            None => Default::default(),
        };
        // Recorded verdicts whose content is gone (redacted or blocked): judged by the rules
        // of the new policy that find the same kind in this subject.
        for old in recorded {
            if now.verdicts.iter().any(|n| same_decision(n, old)) {
                continue;
            }
            let no_longer = match old.action {
                Action::Block => ChangeKind::NoLongerBlock,
                Action::Redact => ChangeKind::NoLongerRedact,
                Action::Warn => ChangeKind::NoLongerWarn,
            };
            if old.action == Action::Warn {
                // The content is there, and no rule warns about it now.
                let why = format!(
                    "recorded: warned about by '{}'; no rule warns now",
                    old.rule
                );
                self.push_verdict(e, subject, no_longer, old, &why);
                continue;
            }
            let finders: Vec<&super::rules::Rule> = self
                .policy
                .rules()
                .iter()
                .filter(|r| r.kind == old.kind && r.applies(subject))
                .collect();
            if finders.iter().any(|r| r.action == old.action) {
                continue;
            }
            let recorded = format!("recorded: {} by '{}'", past(old.action), old.rule);
            let why = match (finders.first(), self.policy.rule(&old.rule)) {
                (Some(r), _) => format!("{recorded}; now rule '{}' {} it", r.id, verb(r.action)),
                (None, Some(r)) => format!(
                    "{recorded}; that rule now finds {} (the content is not in the log to check again)",
                    r.kind
                ),
                (None, None) => format!(
                    "{recorded}; no rule of this policy finds {} in {}",
                    old.kind,
                    subject.as_str()
                ),
            };
            let change = match finders.first().map(|r| r.action) {
                Some(Action::Block) => ChangeKind::NowBlock,
                Some(_) => no_longer,
                None if self.policy.rule(&old.rule).is_some() => ChangeKind::RuleChanged,
                None => no_longer,
            };
            self.push_verdict(e, subject, change, old, why.trim_end());
        }
        for new in &now.verdicts {
            if recorded.iter().any(|o| same_decision(new, o)) {
                continue;
            }
            let change = match new.action {
                Action::Block => ChangeKind::NowBlock,
                Action::Redact => ChangeKind::NowRedact,
                Action::Warn => ChangeKind::NowWarn,
            };
            let why = format!("rule '{}'", new.rule);
            self.push_verdict(e, subject, change, new, &why);
        }
    }

    fn push_verdict(
        &mut self,
        e: &Event,
        subject: Subject,
        change: ChangeKind,
        v: &Verdict,
        why: &str,
    ) {
        let at = match v.path.as_deref() {
            None | Some("") => String::new(),
            Some(p) => format!(" at {p}"),
        };
        let times = if v.count > 1 {
            format!(" ×{}", v.count)
        } else {
            String::new()
        };
        let detail = format!("{}: {}{at}{times} ({why})", change.text(), v.kind);
        self.push(
            e,
            subject.as_str(),
            change,
            &v.rule,
            &v.kind,
            v.path.clone(),
            v.count,
            detail,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        e: &Event,
        subject: &str,
        change: ChangeKind,
        rule: &str,
        kind: &str,
        path: Option<String>,
        count: u32,
        detail: String,
    ) {
        self.log.changes.push(Change {
            seq: e.seq,
            sub: e.sub,
            node: e.node.as_deref().map(str::to_owned),
            subject: subject.to_owned(),
            change,
            rule: rule.to_owned(),
            kind: kind.to_owned(),
            path,
            count,
            detail,
        });
    }
}

/// `blocked`, `redacted`, `warned about`.
fn past(action: Action) -> &'static str {
    match action {
        Action::Block => "blocked",
        Action::Redact => "redacted",
        Action::Warn => "warned about",
    }
}

/// `blocks`, `redacts`, `warns about`.
fn verb(action: Action) -> &'static str {
    match action {
        Action::Block => "blocks",
        Action::Redact => "redacts",
        Action::Warn => "warns about",
    }
}

/// Two verdicts that decide the same: the same action on the same kind at the same place
/// (whatever the rules are called).
fn same_decision(a: &Verdict, b: &Verdict) -> bool {
    a.kind == b.kind && a.action == b.action && a.path == b.path
}

fn subject_of(kind: ActivationKind) -> Subject {
    match kind {
        ActivationKind::Agent => Subject::Output,
        ActivationKind::Tool => Subject::ToolResult,
        ActivationKind::Human => Subject::Human,
    }
}

fn request_subject(kind: CallKind) -> Subject {
    match kind {
        CallKind::Llm => Subject::LlmRequest,
        CallKind::Tool => Subject::ToolArgs,
    }
}
