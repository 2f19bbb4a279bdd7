//! The state of a run as of one seq: what `state_at`, `history` and `inspect` show.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Machine, NodeStatus, SlotResult};
use crate::model::activation::{Activation, RunStatus};
use crate::model::workflow::{ActivationKind, NodeKind};

/// The state of a run as of one seq (see [`crate::state_at`] and [`crate::history`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    /// The seq this state is as of.
    pub seq: u64,
    /// Status at that seq.
    pub status: RunStatus,
    /// Latest step started.
    pub step: u64,
    /// Outputs of completed nodes (latest visit).
    pub completed: BTreeMap<String, Value>,
    /// Nodes skipped by branch decisions.
    pub skipped: Vec<String>,
    /// Nodes that failed for good.
    pub failed: Vec<String>,
    /// Visit counts.
    pub visits: BTreeMap<String, u64>,
    /// Activations scheduled and not yet completed.
    pub pending: Vec<Activation>,
    /// Whether `seq` is a step end, where [`crate::Run::fork`] may branch off.
    pub fork_point: bool,
}

impl Machine {
    /// The state as of `upto`, the last seq fed to this machine. Completions and pending
    /// activations are exact; inside one decision batch (the branch/skip/schedule events
    /// between two steps) node statuses show the whole batch.
    pub(crate) fn snapshot(&self, upto: u64) -> RunState {
        let compiled = self.wf.compiled();
        let mut completed = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut failed = Vec::new();
        let mut visits = BTreeMap::new();
        for (i, s) in self.nodes.iter().enumerate() {
            let id = compiled.nodes[i].id.to_string();
            if s.visits > 0 {
                visits.insert(id.clone(), s.visits);
            }
            match s.status {
                NodeStatus::Completed => {
                    // A branch "completes" with its decision; only work has an output.
                    if let (Some(o), false) =
                        (&s.output, compiled.nodes[i].kind == NodeKind::Branch)
                    {
                        completed.insert(id, (**o).clone());
                    }
                }
                NodeStatus::Skipped => skipped.push(id),
                NodeStatus::Failed => failed.push(id),
                NodeStatus::Pending | NodeStatus::Active => {}
            }
        }
        for s in &self.slots {
            if let Some(SlotResult::Ok(o)) = &s.result {
                completed.insert(compiled.nodes[s.node].id.to_string(), (**o).clone());
            }
        }
        let pending: Vec<Activation> = (0..self.slots.len())
            .filter(|&i| self.slots[i].result.is_none() && self.slots[i].id <= upto)
            .map(|i| self.activation(i))
            .collect();
        let status = match &self.outcome {
            Some(o) if self.finished_seq <= upto => o.status,
            _ if !pending.is_empty() && pending.iter().all(|a| a.kind == ActivationKind::Human) => {
                RunStatus::Waiting
            }
            _ => RunStatus::Running,
        };
        // Inside a decision batch the next step may already be scheduled past `upto`.
        let step = if self.step_seq > upto {
            self.step.saturating_sub(1)
        } else {
            self.step
        };
        RunState {
            seq: upto,
            status,
            step,
            completed,
            skipped,
            failed,
            visits,
            pending,
            fork_point: self.needs_advance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{chain, complete, machine};
    use crate::model::activation::{Completion, RunStatus};
    use serde_json::json;

    #[test]
    fn snapshots_follow_the_run() {
        let mut m = machine(chain(2));
        let s = m.snapshot(3);
        assert_eq!(
            (s.status, s.step, s.pending.len()),
            (RunStatus::Running, 1, 1)
        );
        assert!(!s.fork_point);
        let act = m.poll().remove(0);
        let staged = m.stage(act.id, Completion::ok(json!("x"))).unwrap();
        m.apply(staged);
        let s = m.snapshot(4);
        assert!(s.fork_point, "a step end");
        assert_eq!(s.completed.get("n0"), Some(&json!("x")));
        assert_eq!(s.visits.get("n0"), Some(&1));
        m.advance();
        let act = m.poll().remove(0);
        complete(&mut m, act.id, Completion::ok(json!("y")));
        let s = m.snapshot(8);
        assert_eq!(s.status, RunStatus::Completed);
        assert_eq!(s.completed.len(), 2);
    }

    #[test]
    fn a_run_waiting_for_a_person_says_so() {
        let m =
            machine(json!({"name": "w", "nodes": [{"id": "h", "type": "human", "prompt": "ok?"}]}));
        let s = m.snapshot(3);
        assert_eq!(s.status, RunStatus::Waiting);
        assert_eq!(s.pending[0].prompt.as_deref(), Some("ok?"));
        assert_eq!(s.seq, 3);
    }
}
