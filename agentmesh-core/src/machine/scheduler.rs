//! Supersteps: once a step has completed, decide what follows from data alone (skips, branch
//! choices, loop-backs, retries, the end of the run) and schedule the next step, reserving
//! the seqs of its completions in activation order.

use serde_json::{Map, Value};

use super::{ledger, Machine, NodeStatus, Slot};
use crate::error::ErrorKind;
use crate::model::condition::StateView;
use crate::model::event::{BranchDecided, EventData, ItemRef, Scheduled, StepStarted};
use crate::model::limits::{MAX_LOOPS_PER_DECISION, MAX_RUN_OUTPUT_BYTES};
use crate::model::workflow::Compiled;
use crate::model::workflow::{ActivationKind, NodeKind};

fn json_len(v: &Value) -> usize {
    let mut c = crate::model::encode::Count(0);
    serde_json::to_writer(&mut c, v).expect("a JSON value serializes");
    c.0
}

impl Machine {
    /// Decide the next step after the current one completed (or after start).
    pub(crate) fn advance(&mut self) {
        if !self.needs_advance || self.outcome.is_some() {
            return;
        }
        self.needs_advance = false;
        for (node, warning) in std::mem::take(&mut self.warnings) {
            self.emit(
                Some(self.step_seq.max(1)),
                node,
                None,
                EventData::BudgetWarning(warning),
            );
        }
        // Maps whose last items ended with the step: their outputs, then their dependents.
        let mut finished = std::mem::take(&mut self.finished_maps);
        finished.sort_unstable();
        for i in finished {
            let parent = self.nodes[i].map.as_ref().map_or(0, |m| m.last_seq);
            self.complete_map(i, parent);
            let wf = self.wf.clone();
            self.dirty.extend_from_slice(&wf.compiled().children[i]);
        }
        if let Some(err) = self.pending_failure.take() {
            self.finish(crate::model::activation::RunStatus::Failed, None, Some(err));
            return;
        }
        let wf = self.wf.clone();
        let compiled = wf.compiled();
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        // Evaluate only nodes whose dependencies changed, in topological order. A loop-back
        // resets its body; the body is evaluated in a further round, after this one.
        let mut round = std::mem::take(&mut self.round);
        round.start(compiled.nodes.len());
        for i in std::mem::take(&mut self.dirty) {
            round.push(compiled.topo_pos[i]);
        }
        // Loops made of decisions alone (branches, skipped work) would spin here forever:
        // bound them like steps.
        let loop_limit = compiled
            .max_steps
            .unwrap_or(u64::MAX)
            .min(MAX_LOOPS_PER_DECISION);
        let mut loops = 0u64;
        let mut next_round = Vec::new();
        while !round.is_empty() {
            while let Some(pos) = round.pop() {
                let i = compiled.topo[pos];
                if self.nodes[i].status != NodeStatus::Pending || self.nodes[i].retry.is_some() {
                    continue;
                }
                let Some((any_satisfied, trigger)) = self.deps_resolved(i) else {
                    continue;
                };
                if !any_satisfied {
                    self.nodes[i].status = NodeStatus::Skipped;
                    let seq = self.emit(Some(trigger), Some(i), None, EventData::NodeSkipped);
                    self.nodes[i].resolved_seq = seq;
                    round.extend(compiled.children[i].iter().map(|&c| compiled.topo_pos[c]));
                    continue;
                }
                if !self.visit_allowed(i) {
                    self.round = round;
                    return;
                }
                match compiled.nodes[i].act {
                    Some(_) if compiled.nodes[i].map.is_some() => {
                        let items = match self.expand_map(i) {
                            Ok(n) => n,
                            Err((kind, msg)) => {
                                self.fail(kind, msg, Some(i));
                                self.round = round;
                                return;
                            }
                        };
                        let state = &mut self.nodes[i];
                        state.visits += 1;
                        if items == 0 {
                            // Nothing to run: done at once, with an empty output.
                            self.complete_map(i, trigger);
                            round
                                .extend(compiled.children[i].iter().map(|&c| compiled.topo_pos[c]));
                        } else {
                            state.status = NodeStatus::Active;
                            ready.push(i);
                        }
                    }
                    Some(_) => {
                        self.nodes[i].status = NodeStatus::Active;
                        ready.push(i);
                    }
                    // A sub-workflow's entry or exit: the core records it now.
                    None if compiled.nodes[i].sub.is_some() => {
                        self.pass_subflow(i, trigger);
                        round.extend(compiled.children[i].iter().map(|&c| compiled.topo_pos[c]));
                    }
                    // A branch: the core decides it now.
                    None => {
                        if let Some(body) = self.decide_branch(compiled, i, trigger) {
                            loops += 1;
                            if loops > loop_limit {
                                let msg = format!(
                                    "branch '{}' looped back {loop_limit} times between two steps without scheduling any work",
                                    compiled.nodes[i].id
                                );
                                self.fail(ErrorKind::LimitExceeded, msg, Some(i));
                                self.round = round;
                                return;
                            }
                            next_round.extend(body.iter().map(|&n| compiled.topo_pos[n]));
                        }
                        round.extend(compiled.children[i].iter().map(|&c| compiled.topo_pos[c]));
                    }
                }
            }
            round.next_round();
            for pos in next_round.drain(..) {
                round.push(pos);
            }
        }
        self.round = round;
        ready.append(&mut self.retrying);
        if ready.is_empty() {
            self.ready = ready;
            self.complete_run();
            return;
        }
        if let Some(max) = compiled.max_steps {
            if self.step >= max {
                self.fail(
                    ErrorKind::LimitExceeded,
                    format!(
                        "the run would start step {} but maxSteps is {max}",
                        self.step + 1
                    ),
                    None,
                );
                self.ready = ready;
                return;
            }
        }
        ready.sort_unstable();
        ready.dedup();
        self.schedule(&ready);
        self.ready = ready;
    }

    /// Nothing is left to run: the run completes with its terminal nodes' outputs.
    fn complete_run(&mut self) {
        let compiled = self.wf.compiled();
        let output: Map<String, Value> = compiled
            .terminal
            .iter()
            .filter(|&&i| self.nodes[i].status == NodeStatus::Completed)
            .filter_map(|&i| {
                Some((
                    compiled.nodes[i].id.to_string(),
                    (**self.nodes[i].output.as_ref()?).clone(),
                ))
            })
            .collect();
        let output = Value::Object(output);
        // `runCompleted` repeats the terminal outputs; keep that record readable.
        let bytes = json_len(&output);
        if bytes > MAX_RUN_OUTPUT_BYTES {
            let names: Vec<&str> = output
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .map(String::as_str)
                .collect();
            let msg = format!(
                "the run output (terminal nodes {}) is {bytes} bytes; the limit is {MAX_RUN_OUTPUT_BYTES}",
                names.join(", ")
            );
            self.fail(ErrorKind::LimitExceeded, msg, None);
            return;
        }
        self.finish(
            crate::model::activation::RunStatus::Completed,
            Some(output),
            None,
        );
    }

    /// `None` while a dependency is unresolved; else (any dependency satisfied, trigger seq).
    ///
    /// A node runs when at least one dependency is satisfied and no branch it is a target of
    /// chose another way: a branch's decision is a veto, so an unchosen target is skipped
    /// even when its other dependencies completed.
    fn deps_resolved(&self, i: usize) -> Option<(bool, u64)> {
        let deps = &self.wf.compiled().nodes[i].deps;
        if deps.is_empty() {
            return Some((true, 1));
        }
        let mut any = false;
        let mut vetoed = false;
        let mut trigger = 0;
        for d in deps {
            let s = &self.nodes[d.from];
            match s.status {
                NodeStatus::Completed if d.conditional && s.chosen != Some(i) => vetoed = true,
                NodeStatus::Completed => any = true,
                NodeStatus::Skipped => {}
                NodeStatus::Pending | NodeStatus::Active | NodeStatus::Failed => return None,
            }
            trigger = trigger.max(s.resolved_seq);
        }
        Some((any && !vetoed, trigger))
    }

    fn visit_allowed(&mut self, i: usize) -> bool {
        let node = &self.wf.compiled().nodes[i];
        match node.max_visits {
            Some(max) if self.nodes[i].visits >= max => {
                let msg = format!(
                    "node '{}' would start visit {} but maxVisits is {max}",
                    node.id,
                    self.nodes[i].visits + 1
                );
                self.fail(ErrorKind::LimitExceeded, msg, Some(i));
                false
            }
            _ => true,
        }
    }

    /// Evaluate a branch; when it loops back, resets the loop body and returns it.
    fn decide_branch<'w>(
        &mut self,
        compiled: &'w Compiled,
        i: usize,
        trigger: u64,
    ) -> Option<&'w [usize]> {
        let def = compiled.nodes[i]
            .branch
            .as_ref()
            .expect("branch node has a definition");
        self.nodes[i].visits += 1;
        let view = View { m: self };
        let (case, target) = match def.cases.iter().position(|(c, _)| c.eval(&view)) {
            Some(k) => (Some(k as u64), Some(def.cases[k].1)),
            None => (None, def.default),
        };
        let body = target.and_then(|t| def.loops.get(&t));
        let data = EventData::BranchDecided(BranchDecided {
            case,
            goto: target.map(|t| compiled.nodes[t].id.clone()),
            loop_back: body.is_some(),
        });
        let seq = self.emit(Some(trigger), Some(i), None, data);
        let state = &mut self.nodes[i];
        state.status = NodeStatus::Completed;
        state.chosen = target;
        state.resolved_seq = seq;
        let body = body?;
        for &n in body {
            let s = &mut self.nodes[n];
            s.status = NodeStatus::Pending;
            s.chosen = None;
            s.retry = None;
            s.resolved_seq = seq;
        }
        Some(body)
    }

    /// Start a step: `stepStarted`, one scheduled event per activation (one per item to run
    /// of a map node), then reserve as many seqs for their completions, in the same order.
    fn schedule(&mut self, ready: &[usize]) {
        let wf = self.wf.clone();
        let compiled = wf.compiled();
        // The step's activations: nodes in order, a map's items in index order.
        let mut units: Vec<(usize, Option<u32>)> = Vec::with_capacity(ready.len());
        for &i in ready {
            match self.nodes[i].map.as_mut() {
                Some(m) if compiled.nodes[i].map.is_some() => {
                    let mut todo = std::mem::take(&mut m.todo);
                    todo.sort_unstable();
                    units.extend(todo.into_iter().map(|k| (i, Some(k))));
                }
                _ => units.push((i, None)),
            }
        }
        self.step += 1;
        let n = units.len() as u64;
        let parent = if self.step == 1 { 1 } else { self.step_seq };
        self.step_seq = self.emit(
            Some(parent),
            None,
            None,
            EventData::StepStarted(StepStarted {
                step: self.step,
                activations: n,
            }),
        );
        // Leases for the activations that can make calls (agents and tools), in order.
        let mut accounts = match &self.ledger {
            Some(ledger) => {
                let callers: Vec<usize> = (0..units.len())
                    .filter(|&u| compiled.nodes[units[u].0].kind != NodeKind::Human)
                    .collect();
                let claimants: Vec<ledger::Claimant<'_>> = callers
                    .iter()
                    .map(|&u| ledger::Claimant {
                        node: units[u].0,
                        agent: compiled.nodes[units[u].0].agent(),
                    })
                    .collect();
                callers.into_iter().zip(ledger.leases(&claimants)).collect()
            }
            None => Vec::new(),
        }
        .into_iter()
        .peekable();
        for (u, &(i, item)) in units.iter().enumerate() {
            let node = &compiled.nodes[i];
            let kind = node.act.expect("only activation nodes are scheduled");
            let state = &mut self.nodes[i];
            let mut last_failure = None;
            let (attempt, delay_ms, retry_of, item_ref) = match item {
                Some(k) => {
                    let m = state.map.as_mut().expect("a map node has items");
                    let k = k as usize;
                    let (attempt, delay_ms, retry_of) = match m.retry[k].take() {
                        Some(r) => {
                            last_failure = r.failure;
                            (r.attempt, r.delay_ms, Some(r.retry_of))
                        }
                        None => (1, 0, None),
                    };
                    m.attempt[k] = attempt;
                    let item = ItemRef {
                        index: k as u64,
                        key: m.keys.as_ref().map(|keys| keys[k].clone()),
                    };
                    (attempt, delay_ms, retry_of, Some(item))
                }
                None => {
                    let (attempt, delay_ms, retry_of) = match state.retry.take() {
                        Some(r) => {
                            last_failure = r.failure;
                            (r.attempt, r.delay_ms, Some(r.retry_of))
                        }
                        None => {
                            state.visits += 1;
                            state.attempt_base = 0;
                            (1, 0, None)
                        }
                    };
                    (attempt, delay_ms, retry_of, None)
                }
            };
            state.status = NodeStatus::Active;
            state.attempt = attempt;
            let visit = state.visits;
            let mut body = Scheduled {
                agent: None,
                tool: None,
                prompt: None,
                visit,
                delay_ms,
                timeout_ms: node.timeout_ms,
                retry_of,
                lease: None,
                item: item_ref,
                reads: self.read_record(i),
            };
            let account = match accounts.peek() {
                Some((unit, _)) if *unit == u => accounts.next().expect("peeked").1,
                _ => Default::default(),
            };
            if !account.lease.is_unlimited() {
                body.lease = Some(account.lease);
            }
            match kind {
                ActivationKind::Agent => body.agent = Some(node.name.clone()),
                ActivationKind::Tool => body.tool = Some(node.name.clone()),
                ActivationKind::Human => body.prompt = node.prompt.clone(),
            }
            let id = self.emit(
                Some(self.step_seq),
                Some(i),
                Some(attempt),
                EventData::Scheduled(kind, body),
            );
            self.slots.push(Slot {
                id,
                completion_seq: id + n,
                node: i,
                kind,
                attempt,
                visit,
                delay_ms,
                result: None,
                calls: Default::default(),
                account,
                blocked: None,
                item,
                handed: false,
                last_failure,
            });
        }
        // Reserve the completion seqs.
        self.next_seq += n;
        self.unresolved = self.slots.len();
        self.handed_out = 0;
    }
}

/// The nodes to evaluate in one decision round, by topological position, each once, smallest
/// first; its buffers are kept across steps (a step should cost only what changed).
#[derive(Debug, Clone, Default)]
pub(crate) struct Round {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<usize>>,
    /// `queued[pos] == epoch`: `pos` is queued in this round.
    queued: Vec<u32>,
    epoch: u32,
}

impl Round {
    /// Begin the decisions between two steps, for a workflow of `nodes` nodes.
    fn start(&mut self, nodes: usize) {
        self.heap.clear();
        self.queued.resize(nodes, 0);
        self.next_round();
    }

    /// A further round of the same decisions (after a loop-back): anything may be queued
    /// again.
    fn next_round(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.queued.fill(0);
            self.epoch = 1;
        }
    }

    fn push(&mut self, pos: usize) {
        if self.queued[pos] != self.epoch {
            self.queued[pos] = self.epoch;
            self.heap.push(std::cmp::Reverse(pos));
        }
    }

    fn extend(&mut self, positions: impl Iterator<Item = usize>) {
        for p in positions {
            self.push(p);
        }
    }

    fn pop(&mut self) -> Option<usize> {
        self.heap.pop().map(|std::cmp::Reverse(p)| p)
    }

    fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

pub(super) struct View<'a> {
    pub(super) m: &'a Machine,
}

impl StateView for View<'_> {
    fn input(&self) -> &Value {
        &self.m.input
    }
    fn output(&self, node: usize) -> Option<&Value> {
        self.m.nodes[node].output.as_deref()
    }
    fn visits(&self, node: usize) -> u64 {
        self.m.nodes[node].visits
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{chain, complete, machine};
    use crate::model::activation::{Completion, RunStatus};
    use crate::model::failure::Failure;
    use serde_json::json;

    fn kinds(m: &mut super::Machine) -> Vec<(u64, String, Option<String>)> {
        m.take_outbox()
            .into_iter()
            .map(|e| {
                (
                    e.seq,
                    e.type_name().to_owned(),
                    e.node.map(|n| n.to_string()),
                )
            })
            .collect()
    }

    #[test]
    fn a_step_holds_every_ready_node_in_declaration_order() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "b", "type": "agent", "agent": "x"},
            {"id": "a", "type": "tool", "tool": "t"},
            {"id": "j", "type": "agent", "agent": "x", "after": ["a", "b"]}]}));
        let out = kinds(&mut m);
        let nodes: Vec<Option<&str>> = out.iter().map(|(_, _, n)| n.as_deref()).collect();
        assert_eq!(nodes, [None, None, Some("b"), Some("a")]);
        let acts = m.poll();
        // Completions in reverse order land at their reserved seqs (5, 6).
        let e = complete(&mut m, acts[1].id, Completion::ok(json!(1)));
        assert_eq!(e.seq, 6);
        assert!(kinds(&mut m).is_empty(), "the step is still open");
        let e = complete(&mut m, acts[0].id, Completion::ok(json!(2)));
        assert_eq!(e.seq, 5);
        let next = kinds(&mut m);
        assert_eq!(next[0].0, 7, "step 2 starts after every reserved seq");
        assert_eq!(next[1].2.as_deref(), Some("j"));
    }

    #[test]
    fn a_branch_skips_the_targets_it_did_not_choose() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "a", "type": "agent", "agent": "x"},
            {"id": "r", "type": "branch", "after": ["a"],
             "cases": [{"when": {"path": "/outputs/a/go", "eq": true}, "goto": "yes"}], "default": "no"},
            {"id": "yes", "type": "agent", "agent": "x"},
            {"id": "no", "type": "agent", "agent": "x"}]}));
        kinds(&mut m);
        let id = m.poll()[0].id;
        complete(&mut m, id, Completion::ok(json!({"go": true})));
        let out = kinds(&mut m);
        let seen: Vec<(&str, Option<&str>)> = out
            .iter()
            .map(|(_, t, n)| (t.as_str(), n.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("branchDecided", Some("r")),
                ("nodeSkipped", Some("no")),
                ("stepStarted", None),
                ("agentScheduled", Some("yes"))
            ]
        );
    }

    #[test]
    fn retries_follow_the_policy_then_fail_the_run() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "a", "type": "agent", "agent": "x", "retry": {"maxAttempts": 2, "backoffMs": 7}}]}));
        let act = m.poll().remove(0);
        complete(&mut m, act.id, Completion::err(Failure::error("E", "boom")));
        let retry = m.poll().remove(0);
        assert_eq!((retry.attempt, retry.delay_ms), (2, 7));
        complete(
            &mut m,
            retry.id,
            Completion::err(Failure::error("E", "boom")),
        );
        let o = m.outcome();
        assert_eq!(o.status, RunStatus::Failed);
        assert!(o.error.unwrap().message.contains("attempt 2/2"));
    }

    #[test]
    fn loops_reset_their_body_and_respect_max_visits() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "d", "type": "agent", "agent": "x", "maxVisits": 2},
            {"id": "r", "type": "branch", "after": ["d"],
             "cases": [{"when": {"path": "/outputs/d/ok", "eq": false}, "goto": "d"}], "default": "end"},
            {"id": "end", "type": "agent", "agent": "x"}]}));
        for _ in 0..2 {
            let act = m.poll().remove(0);
            assert_eq!(act.node.as_ref(), "d");
            complete(&mut m, act.id, Completion::ok(json!({"ok": false})));
        }
        let o = m.outcome();
        assert_eq!(o.status, RunStatus::Failed);
        assert_eq!(o.error.unwrap().code, "LIMIT_EXCEEDED");
    }

    #[test]
    fn loops_without_work_are_bounded() {
        let mut m = machine(json!({"name": "w", "maxSteps": 3, "nodes": [
            {"id": "a", "type": "agent", "agent": "x"},
            {"id": "r", "type": "branch", "after": ["a"],
             "cases": [{"when": {"path": "/input", "exists": true}, "goto": "s"}]},
            {"id": "s", "type": "branch", "after": ["r"],
             "cases": [{"when": {"path": "/input", "exists": true}, "goto": "r"}]}]}));
        let act = m.poll().remove(0);
        complete(&mut m, act.id, Completion::ok(json!(1)));
        let o = m.outcome();
        assert_eq!(o.error.map(|e| e.code).as_deref(), Some("LIMIT_EXCEEDED"));
    }

    #[test]
    fn the_run_completes_with_its_terminal_outputs() {
        let mut m = machine(chain(3));
        for i in 0..3 {
            let act = m.poll().remove(0);
            complete(&mut m, act.id, Completion::ok(json!(i)));
        }
        let o = m.outcome();
        assert_eq!(o.status, RunStatus::Completed);
        assert_eq!(o.output, Some(json!({"n2": 2})));
    }
}
