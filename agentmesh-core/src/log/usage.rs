//! What a run spent, from its log: token usage per run, node, agent, tool and model, from
//! what activations reported and what their calls (`callCompleted`, `callFailed`) recorded. A
//! fork's
//! log starts with events copied from its parent (up to `parent.seq`); the parent spent
//! those, so they are reported apart, never counted as the fork's.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

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
        for e in events {
            let e = e?;
            let (kind, usage) = match &e.data {
                EventData::RunStarted(s) => {
                    workflow = Some(Workflow::from_spec((*s.workflow).clone()).map_err(|err| {
                        Error::corrupt(0, format!("the workflow in runStarted is invalid: {err}"))
                    })?);
                    continue;
                }
                EventData::Completed(k, c) => (*k, c.usage.as_ref()),
                EventData::Failed(k, f) => (*k, f.usage.as_ref()),
                EventData::CallCompleted(c) => {
                    report.add_call(&e, c.usage.as_ref(), workflow.as_ref(), inherited_up_to);
                    continue;
                }
                EventData::CallFailed(c) => {
                    report.add_call(&e, c.usage.as_ref(), workflow.as_ref(), inherited_up_to);
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
        Ok(report)
    }

    fn add_call(
        &mut self,
        e: &Event,
        usage: Option<&Usage>,
        workflow: Option<&Workflow>,
        inherited_up_to: u64,
    ) {
        let Some(u) = usage else { return };
        if e.seq <= inherited_up_to {
            if let Some(i) = self.inherited.as_mut() {
                i.add_tokens(u);
            }
            return;
        }
        self.total.add_tokens(u);
        if let Some(node) = e.node.as_deref() {
            self.by_node
                .entry(node.to_owned())
                .or_default()
                .add_tokens(u);
            let name = workflow.and_then(|w| {
                let c = w.compiled();
                c.index
                    .get(node)
                    .map(|&i| (c.nodes[i].name.to_string(), c.nodes[i].kind))
            });
            if let Some((name, kind)) = name {
                let by = match kind {
                    crate::model::workflow::NodeKind::Tool => &mut self.by_tool,
                    _ => &mut self.by_agent,
                };
                by.entry(name).or_default().add_tokens(u);
            }
        }
        if let Some(model) = &u.model {
            self.by_model
                .entry(model.clone())
                .or_default()
                .add_tokens(u);
        }
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
