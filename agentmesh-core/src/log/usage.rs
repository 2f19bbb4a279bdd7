//! What a run spent, from its log: token usage per run, node, agent, tool and model, from
//! what activations reported and what their calls (`callCompleted`, `callFailed`) recorded. A
//! fork's
//! log starts with events copied from its parent (up to `parent.seq`); the parent spent
//! those, so they are reported apart, never counted as the fork's.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::budget::{Amounts, Dimension};
use crate::error::{Error, Result};
use crate::model::event::{Event, EventData};
use crate::model::header::LogHeader;
use crate::model::usage::Usage;
use crate::model::workflow::{ActivationKind, Workflow};

/// Usage summed over activations (their successful and failed attempts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens, reasoning included.
    pub output_tokens: u64,
    /// Prompt tokens read from a prompt cache.
    pub cached_input_tokens: u64,
    /// Prompt tokens written to a prompt cache.
    pub cache_write_tokens: u64,
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// Agent and tool attempts that ended (completed or failed), with or without usage.
    pub attempts: u64,
    /// Of those, the ones that reported usage.
    pub reported: u64,
    /// Calls made inside activations (LLM and tool calls with a result, or cut off).
    #[serde(skip_serializing_if = "is_zero")]
    pub calls: u64,
    /// Calls a budget refused before they were sent.
    #[serde(skip_serializing_if = "is_zero")]
    pub denied: u64,
    /// What the calls were charged, in micro-USD (`None` when the run does not account for
    /// spend: it has no budget and was given no prices). Usage a host reports on a
    /// completion names no price and adds tokens only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub micro_usd: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl UsageTotals {
    fn add(&mut self, usage: Option<&Usage>) {
        self.attempts += 1;
        let Some(u) = usage else { return };
        self.reported += 1;
        self.add_tokens(u);
    }

    /// A call's tokens (not an attempt of its own: its activation's attempt counts).
    fn add_tokens(&mut self, u: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(u.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(u.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(u.cached_input_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(u.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(u.reasoning_tokens);
    }

    /// A call's charge (or, for a call cut off, its reservation), in a run that accounts.
    fn add_charge(&mut self, charge: &Amounts) {
        *self.micro_usd.get_or_insert(0) = self
            .micro_usd
            .unwrap_or(0)
            .saturating_add(charge.get(Dimension::MicroUsd));
    }

    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// What a run spent, by run, node, agent, tool and model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// Run id.
    pub run_id: String,
    /// Everything this run spent.
    pub total: UsageTotals,
    /// By node id.
    pub by_node: BTreeMap<String, UsageTotals>,
    /// By agent name (agent nodes).
    pub by_agent: BTreeMap<String, UsageTotals>,
    /// By tool name (tool nodes).
    pub by_tool: BTreeMap<String, UsageTotals>,
    /// By the model the usage names (attempts that named none are not here).
    pub by_model: BTreeMap<String, UsageTotals>,
    /// A fork: what the events copied from its parent record (the parent spent it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inherited: Option<UsageTotals>,
    /// What the calls spent, a line per node and model (calls only; node order, then
    /// model name): what `agentmesh cost` prints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<CostLine>,
}

/// What the calls of one node spent on one model (or one tool).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostLine {
    /// The node.
    pub node: String,
    /// Its agent or tool name.
    pub name: String,
    /// The model the calls' usage or request named; `None` for tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What they spent (`attempts` and `reported` count calls here).
    pub spent: UsageTotals,
}

impl UsageReport {
    /// Sum the usage of a log's events (in any order).
    ///
    /// Errors: `LOG_CORRUPT` when the first event is not `runStarted` or its workflow is
    /// invalid; whatever `events` yields.
    pub fn of_events(
        header: &LogHeader,
        events: impl IntoIterator<Item = Result<Event>>,
    ) -> Result<UsageReport> {
        let inherited_up_to = header.parent.as_ref().map_or(0, |p| p.seq);
        let mut report = UsageReport {
            run_id: header.run_id.clone(),
            inherited: (inherited_up_to > 0).then(UsageTotals::default),
            ..UsageReport::default()
        };
        let mut workflow: Option<Workflow> = None;
        let mut calls = Calls::default();
        for e in events {
            let e = e?;
            let (kind, usage) = match &e.data {
                EventData::RunStarted(s) => {
                    workflow = Some(Workflow::from_spec((*s.workflow).clone()).map_err(|err| {
                        Error::corrupt(0, format!("the workflow in runStarted is invalid: {err}"))
                    })?);
                    calls.priced = s.budget.is_some();
                    continue;
                }
                EventData::Completed(k, c) => (*k, c.usage.as_ref()),
                EventData::Failed(k, f) => (*k, f.usage.as_ref()),
                EventData::CallStarted(c) => {
                    calls.started(&e, c);
                    continue;
                }
                EventData::CallCompleted(_) | EventData::CallFailed(_) => {
                    let (usage, charge) = match &e.data {
                        EventData::CallCompleted(c) => (c.usage.as_ref(), c.charge.as_ref()),
                        EventData::CallFailed(c) => (c.usage.as_ref(), c.charge.as_ref()),
                        _ => unreachable!("matched above"),
                    };
                    let model = calls.finished(&e, usage);
                    let spend = Spend::of(usage, charge, &calls);
                    report.add_call(&e, spend, model, workflow.as_ref(), inherited_up_to);
                    continue;
                }
                EventData::CallDenied(d) => {
                    let model = (d.kind == crate::model::call::CallKind::Llm)
                        .then(|| d.request.as_ref()?.get("model")?.as_str())
                        .flatten()
                        .map(str::to_owned);
                    report.add_call(
                        &e,
                        Spend::denied(&calls),
                        model,
                        workflow.as_ref(),
                        inherited_up_to,
                    );
                    continue;
                }
                _ => continue,
            };
            if kind == ActivationKind::Human {
                continue;
            }
            if e.seq <= inherited_up_to {
                if let Some(i) = report.inherited.as_mut() {
                    i.add(usage);
                }
                continue;
            }
            report.total.add(usage);
            let Some(node) = e.node.as_deref() else {
                continue;
            };
            report
                .by_node
                .entry(node.to_owned())
                .or_default()
                .add(usage);
            let name = workflow.as_ref().and_then(|w| {
                let c = w.compiled();
                c.index.get(node).map(|&i| c.nodes[i].name.to_string())
            });
            if let Some(name) = name {
                let by = match kind {
                    ActivationKind::Tool => &mut report.by_tool,
                    ActivationKind::Agent | ActivationKind::Human => &mut report.by_agent,
                };
                by.entry(name).or_default().add(usage);
            }
            if let Some(model) = usage.and_then(|u| u.model.clone()) {
                report.by_model.entry(model).or_default().add(usage);
            }
        }
        // Calls cut off (a crash, a timeout) are charged their whole reservation.
        for (e, reserve, model) in calls.unfinished() {
            let spend = Spend {
                usage: None,
                charge: calls.priced.then_some(reserve),
                denied: false,
            };
            report.add_call(&e, spend, model, workflow.as_ref(), inherited_up_to);
        }
        report.lines.sort_by(|a, b| {
            let pos = |n: &str| {
                workflow
                    .as_ref()
                    .and_then(|w| w.compiled().index.get(n).copied())
                    .unwrap_or(usize::MAX)
            };
            (pos(&a.node), &a.model).cmp(&(pos(&b.node), &b.model))
        });
        if calls.priced {
            for t in std::iter::once(&mut report.total)
                .chain(report.by_node.values_mut())
                .chain(report.by_agent.values_mut())
                .chain(report.by_tool.values_mut())
                .chain(report.by_model.values_mut())
            {
                t.micro_usd.get_or_insert(0);
            }
        }
        Ok(report)
    }

    fn add_call(
        &mut self,
        e: &Event,
        spend: Spend<'_>,
        model: Option<String>,
        workflow: Option<&Workflow>,
        inherited_up_to: u64,
    ) {
        if e.seq <= inherited_up_to {
            if let Some(i) = self.inherited.as_mut() {
                spend.add_to(i);
            }
            return;
        }
        spend.add_to(&mut self.total);
        if let Some(node) = e.node.as_deref() {
            spend.add_to(self.by_node.entry(node.to_owned()).or_default());
            let name = workflow.and_then(|w| {
                let c = w.compiled();
                c.index
                    .get(node)
                    .map(|&i| (c.nodes[i].name.to_string(), c.nodes[i].is_tool()))
            });
            if let Some((name, tool)) = name {
                let by = if tool {
                    &mut self.by_tool
                } else {
                    &mut self.by_agent
                };
                spend.add_to(by.entry(name.clone()).or_default());
                let line = match self
                    .lines
                    .iter_mut()
                    .find(|l| l.node == node && l.model == model)
                {
                    Some(l) => l,
                    None => {
                        self.lines.push(CostLine {
                            node: node.to_owned(),
                            name,
                            model: model.clone(),
                            spent: UsageTotals::default(),
                        });
                        self.lines.last_mut().expect("pushed")
                    }
                };
                spend.add_to(&mut line.spent);
            }
        }
        if let Some(model) = model {
            spend.add_to(self.by_model.entry(model).or_default());
        }
    }
}

/// One call's part of a report.
struct Spend<'a> {
    usage: Option<&'a Usage>,
    charge: Option<Amounts>,
    denied: bool,
}

impl<'a> Spend<'a> {
    fn of(usage: Option<&'a Usage>, charge: Option<&Amounts>, calls: &Calls) -> Spend<'a> {
        Spend {
            usage,
            charge: charge.copied().or(calls.priced.then_some(Amounts::ZERO)),
            denied: false,
        }
    }

    fn denied(calls: &Calls) -> Spend<'a> {
        Spend {
            usage: None,
            charge: calls.priced.then_some(Amounts::ZERO),
            denied: true,
        }
    }

    fn add_to(&self, t: &mut UsageTotals) {
        if self.denied {
            t.denied += 1;
            if let Some(c) = &self.charge {
                t.add_charge(c);
            }
            return;
        }
        t.calls += 1;
        if let Some(u) = self.usage {
            t.add_tokens(u);
        }
        if let Some(c) = &self.charge {
            t.add_charge(c);
        }
    }
}

/// The calls started and not yet answered while a report reads a log, with the model each
/// asked for (a call's line is its usage's model, else its request's).
#[derive(Default)]
struct Calls {
    priced: bool,
    open: BTreeMap<(u64, u32), (Event, Amounts, Option<String>)>,
}

impl Calls {
    fn started(&mut self, e: &Event, c: &crate::model::call::CallStarted) {
        let model = (c.kind == crate::model::call::CallKind::Llm)
            .then(|| {
                c.request
                    .get("model")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .flatten();
        let key = (e.seq, e.sub.unwrap_or(0) + 1);
        self.open
            .insert(key, (e.clone(), c.reserve.unwrap_or_default(), model));
    }

    /// The model of the call a result answers.
    fn finished(&mut self, e: &Event, usage: Option<&Usage>) -> Option<String> {
        let asked = self
            .open
            .remove(&(e.seq, e.sub.unwrap_or(0)))
            .and_then(|(_, _, m)| m);
        usage.and_then(|u| u.model.clone()).or(asked)
    }

    fn unfinished(&self) -> Vec<(Event, Amounts, Option<String>)> {
        self.open.values().cloned().collect()
    }
}

/// What the run in `path` spent (see [`UsageReport`]). Read-only; streams the log.
///
/// Errors: `LOG_CORRUPT`, `IO`.
pub fn usage_report(path: impl AsRef<Path>) -> Result<UsageReport> {
    let events = super::read_events(path)?;
    let header = events.header().clone();
    UsageReport::of_events(&header, events)
}
