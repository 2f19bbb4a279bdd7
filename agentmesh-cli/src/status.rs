//! What a run is now, in the words `verify` and `runs` use: finished (completed, failed,
//! cancelled), waiting for a person, running (a writer holds the log's lock), or crashed (no
//! writer, work left outstanding).

use std::path::Path;

use agentmesh_core::{log_in_use, Error, RunStatus};
use serde::Serialize;

use crate::progress::Progress;

/// The state of a run as one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    Completed,
    Failed,
    Cancelled,
    Waiting,
    Running,
    Crashed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Completed => "completed",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::Waiting => "waiting",
            State::Running => "running",
            State::Crashed => "crashed",
        }
    }
}

/// What a run is, with the nodes that say why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunVerdict {
    pub status: State,
    /// One sentence: `crashed (no writer holds the lock), 1 activation in flight — resume it`.
    pub summary: String,
    /// Nodes of the agent and tool activations outstanding.
    pub in_flight: Vec<String>,
    /// Human nodes waiting for a decision.
    pub waiting_for: Vec<String>,
}

fn plural(n: usize, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

/// The verdict on the run of `log` whose progress is `p`. Only an unfinished run that is not
/// waiting asks the lock (briefly, see [`log_in_use`]) whether a writer is alive.
///
/// Errors: `IO` (the lock cannot be asked).
pub fn assess(log: &Path, p: &Progress) -> Result<RunVerdict, Error> {
    let in_flight: Vec<String> = p.in_flight().map(|a| a.node.clone()).collect();
    let waiting_for: Vec<String> = p.waiting().map(|a| a.node.clone()).collect();
    let (status, summary) = match p.finished {
        Some(RunStatus::Completed) => (State::Completed, "completed".to_owned()),
        Some(RunStatus::Failed) => (State::Failed, "failed".to_owned()),
        Some(_) => (State::Cancelled, "cancelled".to_owned()),
        None if p.is_waiting() => (
            State::Waiting,
            format!(
                "waiting for a person (node{} {})",
                if waiting_for.len() == 1 { "" } else { "s" },
                waiting_for.join(", ")
            ),
        ),
        None if log_in_use(log)? => (
            State::Running,
            format!(
                "running (a writer holds the lock), {} in flight",
                plural(in_flight.len(), "activation")
            ),
        ),
        None => (
            State::Crashed,
            format!(
                "crashed (no writer holds the lock), {} in flight — resume it",
                plural(in_flight.len(), "activation")
            ),
        ),
    };
    Ok(RunVerdict {
        status,
        summary,
        in_flight,
        waiting_for,
    })
}
