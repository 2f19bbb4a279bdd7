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
    /// Map nodes whose items are not all done yet: how far each is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub maps: BTreeMap<String, MapProgress>,
}

/// How far a map node's items are ([`RunState::maps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapProgress {
    /// Items in its array.
    pub items: u64,
    /// Items with an output.
    pub done: u64,
    /// Items that failed for good.
    pub failed: u64,
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
        let mut maps = BTreeMap::new();
        for (i, s) in self.nodes.iter().enumerate() {
            if let (Some(m), NodeStatus::Active | NodeStatus::Failed) = (&s.map, s.status) {
                let mut p = MapProgress {
                    items: m.items.len() as u64,
                    done: 0,
                    failed: 0,
                };
                for r in &m.results {
                    match r {
                        Some(super::map::ItemResult::Ok(_)) => p.done += 1,
                        Some(super::map::ItemResult::Failed(..)) => p.failed += 1,
                        None => {}
                    }
                }
                maps.insert(compiled.nodes[i].id.to_string(), p);
            }
        }
        for s in &self.slots {
            match (&s.result, s.item) {
                (Some(SlotResult::Ok(o)), None) => {
                    completed.insert(compiled.nodes[s.node].id.to_string(), (**o).clone());
                }
                // A map item done in the open step (its node's output is the whole array).
                (Some(SlotResult::Ok(_)), Some(_)) => {
                    if let Some(p) = maps.get_mut(&*compiled.nodes[s.node].id) {
                        p.done += 1;
                    }
                }
                _ => {}
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
            maps,
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
    fn a_map_in_progress_shows_its_items_not_an_item_as_its_output() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "m", "type": "map", "agent": "a", "over": "/input"}]}));
        // `machine` starts with input null: map over a fresh run input instead.
        let wf = m.workflow().clone();
        m = super::super::Machine::new(
            wf,
            "r",
            std::sync::Arc::new(json!([1, 2, 3])),
            1,
            crate::model::header::CoreFlags::current(),
            None,
        );
        m.start(Vec::new());
        m.advance();
        let acts = m.poll();
        let staged = m.stage(acts[1].id, Completion::ok(json!("two"))).unwrap();
        m.apply(staged);
        let s = m.snapshot(8);
        assert!(s.completed.is_empty(), "{:?}", s.completed);
        let p = s.maps["m"];
        assert_eq!((p.items, p.done, p.failed), (3, 1, 0));
        assert_eq!(s.pending.len(), 2);
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
