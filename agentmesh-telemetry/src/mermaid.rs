//! A run's workflow as a Mermaid flowchart: every node with what the run did to it
//! (completed, failed, waiting, skipped, not reached), visit and attempt counts, and the
//! branch edges the run took drawn thick.

use std::collections::HashMap;
use std::fmt::Write;

use agentmesh_core::model::workflow::NodeSpec;
use agentmesh_core::{Event, EventData, NodeKind, WorkflowSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotReached,
    Running,
    Waiting,
    Completed,
    Failed,
    Cancelled,
    Skipped,
    Decided,
}

impl State {
    fn class(self) -> &'static str {
        match self {
            State::NotReached => "notReached",
            State::Running => "running",
            State::Waiting => "waiting",
            State::Completed | State::Decided => "completed",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::Skipped => "skipped",
        }
    }

    fn label(self) -> &'static str {
        match self {
            State::NotReached => "not reached",
            State::Running => "running",
            State::Waiting => "waiting for a person",
            State::Completed => "completed",
            State::Decided => "decided",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Default)]
struct NodeRun {
    state: Option<State>,
    visits: u64,
    attempts: u32,
    /// Branch: the targets it chose, with how often.
    chose: HashMap<String, u64>,
}

/// The Mermaid flowchart of the workflow in `events`' `runStarted`, with the run's statuses.
/// `None` when the events have no `runStarted`.
pub fn mermaid(events: &[Event]) -> Option<String> {
    let workflow = events.iter().find_map(|e| match &e.data {
        EventData::RunStarted(b) => Some(b.workflow.clone()),
        _ => None,
    })?;
    Some(render(&workflow, events))
}

fn render(workflow: &WorkflowSpec, events: &[Event]) -> String {
    let mut runs: HashMap<&str, NodeRun> = HashMap::new();
    let mut scheduled_human: HashMap<u64, &str> = HashMap::new();
    for e in events {
        let Some(node) = e.node.as_deref() else {
            continue;
        };
        let r = runs.entry(node).or_default();
        match &e.data {
            EventData::Scheduled(kind, b) => {
                r.visits = r.visits.max(b.visit);
                r.attempts = r.attempts.max(e.attempt.unwrap_or(1));
                r.state = Some(if *kind == agentmesh_core::ActivationKind::Human {
                    scheduled_human.insert(e.seq, node);
                    State::Waiting
                } else {
                    State::Running
                });
            }
            EventData::Completed(..) => r.state = Some(State::Completed),
            EventData::Failed(..) => r.state = Some(State::Failed),
            EventData::ActivationCancelled(_) => r.state = Some(State::Cancelled),
            EventData::NodeSkipped => r.state = Some(State::Skipped),
            EventData::OutputOverridden(_) => r.state = Some(State::Completed),
            EventData::BranchDecided(b) => {
                r.visits += 1;
                r.state = Some(State::Decided);
                if let Some(goto) = &b.goto {
                    *r.chose.entry(goto.to_string()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    let index: HashMap<&str, usize> = workflow
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut out = String::from("flowchart TD\n");
    for (i, n) in workflow.nodes.iter().enumerate() {
        let r = runs.get(n.id.as_str());
        let state = r.and_then(|r| r.state).unwrap_or(State::NotReached);
        let mut label = escape(&n.id);
        if let Some(who) = who(n) {
            let _ = write!(label, " · {}", escape(who));
        }
        let _ = write!(label, "<br/>{}", state.label());
        if let Some(r) = r {
            if r.visits > 1 {
                let _ = write!(label, " · {} visits", r.visits);
            }
            if r.attempts > 1 {
                let _ = write!(label, " · {} attempts", r.attempts);
            }
        }
        let shape = match n.kind {
            NodeKind::Branch => ("{{\"", "\"}}"),
            NodeKind::Human => ("[/\"", "\"/]"),
            NodeKind::Tool => ("[[\"", "\"]]"),
            NodeKind::Agent => ("[\"", "\"]"),
            // A trapezoid: one node that fans out over items.
            NodeKind::Map => ("[/\"", "\"\\]"),
            // A subroutine-like box: a workflow in a workflow.
            NodeKind::Workflow => ("[(\"", "\")]"),
        };
        let _ = writeln!(
            out,
            "  n{i}{}{label}{}:::{}",
            shape.0,
            shape.1,
            state.class()
        );
    }
    let mut edge = 0usize;
    let mut taken = Vec::new();
    for (i, n) in workflow.nodes.iter().enumerate() {
        for a in &n.after {
            if let Some(j) = index.get(a.as_str()) {
                let _ = writeln!(out, "  n{j} --> n{i}");
                edge += 1;
            }
        }
        if n.kind != NodeKind::Branch {
            continue;
        }
        let chose = runs.get(n.id.as_str()).map(|r| &r.chose);
        let targets = n
            .cases
            .iter()
            .enumerate()
            .map(|(c, case)| (format!("case {}", c + 1), &case.goto))
            .chain(n.default.iter().map(|d| ("default".to_owned(), d)));
        for (label, goto) in targets {
            let Some(j) = index.get(goto.as_str()) else {
                continue;
            };
            let times = chose
                .and_then(|c| c.get(goto.as_str()))
                .copied()
                .unwrap_or(0);
            let label = if times > 1 {
                format!("{label} ×{times}")
            } else {
                label
            };
            if times > 0 {
                let _ = writeln!(out, "  n{i} == \"{label}\" ==> n{j}");
                taken.push(edge);
            } else {
                let _ = writeln!(out, "  n{i} -. \"{label}\" .-> n{j}");
            }
            edge += 1;
        }
    }
    for e in taken {
        let _ = writeln!(out, "  linkStyle {e} stroke:#1a7f37,stroke-width:3px");
    }
    out.push_str(concat!(
        "  classDef completed fill:#dafbe1,stroke:#1a7f37,color:#0b3d1a\n",
        "  classDef failed fill:#ffebe9,stroke:#cf222e,color:#5c0011\n",
        "  classDef cancelled fill:#fff1e5,stroke:#bc4c00,color:#4a1e00\n",
        "  classDef waiting fill:#fff8c5,stroke:#9a6700,color:#3b2300\n",
        "  classDef running fill:#ddf4ff,stroke:#0969da,color:#0a3069\n",
        "  classDef skipped fill:#f6f8fa,stroke:#8c959f,color:#57606a,stroke-dasharray:4 3\n",
        "  classDef notReached fill:#ffffff,stroke:#d0d7de,color:#8c959f\n",
    ));
    out
}

fn who(n: &NodeSpec) -> Option<&str> {
    match n.kind {
        NodeKind::Agent => n.agent.as_deref(),
        NodeKind::Tool => n.tool.as_deref(),
        NodeKind::Human => Some("human"),
        NodeKind::Branch => Some("branch"),
        NodeKind::Map => n.agent.as_deref().or(n.tool.as_deref()),
        NodeKind::Workflow => n.workflow.as_deref().map(|w| w.name.as_str()),
    }
}

/// Mermaid labels in quotes take entity codes for the characters that would end them.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
