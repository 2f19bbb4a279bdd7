//! The run state machine: sans-IO, single writer, deterministic.
//!
//! It advances in supersteps. When a step is scheduled, the `seq`s of its completion events are
//! reserved in activation order, so completions can be committed the moment they arrive while
//! the canonical order (by `seq`) stays independent of timing. Decisions for the next step are
//! made only once every activation of the current step has completed, from data alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::model::activation::{Activation, Completion, Outcome, RunStatus};
use crate::model::condition::StateView;
use crate::model::event::{Completed, Event, EventData, Failure, FailureKind, RunError, Scheduled};
use crate::model::workflow::{NodeKind, Workflow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeStatus {
    Pending,
    Active,
    Completed,
    Skipped,
    Failed,
}

#[derive(Debug, Clone)]
struct Retry {
    attempt: u32,
    delay_ms: u64,
    retry_of: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub status: NodeStatus,
    pub visits: u64,
    pub output: Option<Arc<Value>>,
    /// Branches: the target chosen on the latest visit.
    chosen: Option<usize>,
    retry: Option<Retry>,
    /// Seq of the event that last resolved this node (completion, decision or skip).
    resolved_seq: u64,
}

#[derive(Debug, Clone)]
enum SlotResult {
    Ok(Arc<Value>),
    Failed(Failure, u64),
    Cancelled,
}

#[derive(Debug, Clone)]
struct Slot {
    id: u64,
    completion_seq: u64,
    node: usize,
    attempt: u32,
    visit: u64,
    delay_ms: u64,
    result: Option<SlotResult>,
}

/// The orchestrator of one run. Events it decides go to an outbox the caller drains; completion
/// events are built by [`Machine::completion_event`] and committed by the caller before
/// [`Machine::apply_completion`], so a rejected write never changes the state.
#[derive(Debug, Clone)]
pub struct Machine {
    wf: Workflow,
    run_id: Arc<str>,
    trace_id: Arc<str>,
    input: Arc<Value>,
    seed: u64,
    next_seq: u64,
    step: u64,
    step_seq: u64,
    nodes: Vec<NodeState>,
    slots: Vec<Slot>,
    unresolved: usize,
    handed_out: usize,
    pending_failure: Option<RunError>,
    /// Nodes whose readiness may have changed since the last decisions (keeps a step O(changes)).
    dirty: Vec<usize>,
    /// Nodes whose failed attempt will be retried in the next step.
    retrying: Vec<usize>,
    needs_advance: bool,
    outcome: Option<Outcome>,
    finished_seq: u64,
    outbox: Vec<Event>,
}

/// Most loop-backs in one decision phase (between two steps), or `maxSteps` if smaller.
pub const MAX_LOOPS_PER_DECISION: u64 = 10_000;

/// Largest run output (the terminal nodes' outputs, repeated in `runCompleted`); a larger one
/// fails the run with `LIMIT_EXCEEDED`, deterministically, instead of an unwritable record.
pub const MAX_RUN_OUTPUT_BYTES: usize = crate::log::MAX_RECORD_BYTES / 2;

fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Trace id (W3C, 32 hex digits) derived from a run id.
pub fn trace_id_for(run_id: &str) -> String {
    blake3::hash(run_id.as_bytes()).to_hex()[..32].to_owned()
}

impl Machine {
    /// A machine for a new run; nothing happens until [`Machine::start`].
    pub fn new(wf: Workflow, run_id: &str, input: Arc<Value>, seed: u64) -> Machine {
        let count = wf.compiled().nodes.len();
        Machine {
            trace_id: trace_id_for(run_id).into(),
            run_id: run_id.into(),
            wf,
            input,
            seed,
            next_seq: 1,
            step: 0,
            step_seq: 0,
            nodes: vec![
                NodeState {
                    status: NodeStatus::Pending,
                    visits: 0,
                    output: None,
                    chosen: None,
                    retry: None,
                    resolved_seq: 0
                };
                count
            ],
            slots: Vec::new(),
            unresolved: 0,
            handed_out: 0,
            pending_failure: None,
            dirty: Vec::new(),
            retrying: Vec::new(),
            needs_advance: false,
            outcome: None,
            finished_seq: 0,
            outbox: Vec::new(),
        }
    }

    /// Emit `runStarted`; the first decisions follow with [`Machine::advance`].
    pub fn start(&mut self) {
        let data = EventData::RunStarted {
            workflow: Box::new(self.wf.spec().clone()),
            input: self.input.clone(),
            seed: self.seed,
        };
        self.emit(None, None, None, data);
        let compiled = self.wf.compiled();
        self.dirty = (0..compiled.nodes.len())
            .filter(|&i| compiled.nodes[i].deps.is_empty())
            .collect();
        self.needs_advance = true;
    }

    /// The workflow.
    pub fn workflow(&self) -> &Workflow {
        &self.wf
    }

    /// Run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Events decided since the last call.
    pub fn take_outbox(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.outbox)
    }

    /// Whether the current step has completed and the next decisions are due.
    pub fn needs_advance(&self) -> bool {
        self.needs_advance
    }

    /// The next seq the machine will assign.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Current status.
    pub fn status(&self) -> RunStatus {
        if let Some(o) = &self.outcome {
            return o.status;
        }
        let outstanding_host_work = self.slots.iter().any(|s| {
            s.result.is_none() && self.wf.compiled().nodes[s.node].kind != NodeKind::Human
        });
        if self.unresolved > 0 && !outstanding_host_work {
            RunStatus::Waiting
        } else {
            RunStatus::Running
        }
    }

    /// Outcome so far (status, output of a completed run, error of a failed one).
    pub fn outcome(&self) -> Outcome {
        self.outcome.clone().unwrap_or(Outcome {
            status: self.status(),
            output: None,
            error: None,
        })
    }

    /// Activations not handed out by an earlier `poll`.
    pub fn poll(&mut self) -> Vec<Activation> {
        if self.outcome.is_some() {
            return Vec::new();
        }
        let start = self.handed_out;
        self.handed_out = self.slots.len();
        (start..self.slots.len())
            .filter(|&i| self.slots[i].result.is_none())
            .map(|i| self.activation(i))
            .collect()
    }

    /// Every activation still waiting for a completion.
    pub fn outstanding(&self) -> Vec<Activation> {
        if self.outcome.is_some() {
            return Vec::new();
        }
        (0..self.slots.len())
            .filter(|&i| self.slots[i].result.is_none())
            .map(|i| self.activation(i))
            .collect()
    }

    fn activation(&self, i: usize) -> Activation {
        let slot = &self.slots[i];
        let node = &self.wf.compiled().nodes[slot.node];
        let mut deps = BTreeMap::new();
        for &d in &node.after {
            if let (NodeStatus::Completed, Some(out)) =
                (self.nodes[d].status, &self.nodes[d].output)
            {
                deps.insert(self.wf.compiled().nodes[d].id.clone(), out.clone());
            }
        }
        let mut h = blake3::Hasher::new();
        h.update(&self.seed.to_le_bytes());
        h.update(self.run_id.as_bytes());
        h.update(&slot.id.to_le_bytes());
        let seed = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
        Activation {
            id: slot.id,
            run_id: self.run_id.clone(),
            node: node.id.clone(),
            kind: node.kind,
            name: node.name.clone(),
            attempt: slot.attempt,
            visit: slot.visit,
            delay_ms: slot.delay_ms,
            timeout_ms: node.timeout_ms,
            prompt: node.prompt.clone(),
            seed,
            step: self.step,
            input: self.input.clone(),
            deps,
        }
    }

    fn slot_index(&self, id: u64) -> Result<usize> {
        if let Some(o) = &self.outcome {
            return Err(Error::new(
                ErrorKind::InvalidCompletion,
                format!(
                    "activation {id}: the run is {} and accepts no completions",
                    o.status.as_str()
                ),
            ));
        }
        let i = id.checked_sub(self.step_seq + 1).map(|i| i as usize);
        match i {
            Some(i) if i < self.slots.len() && self.slots[i].id == id => {
                if self.slots[i].result.is_some() {
                    Err(Error::new(
                        ErrorKind::InvalidCompletion,
                        format!(
                            "activation {id} (node '{}') is already completed",
                            self.node_id(self.slots[i].node)
                        ),
                    ))
                } else {
                    Ok(i)
                }
            }
            _ if id > 0 && id <= self.step_seq => Err(Error::new(
                ErrorKind::InvalidCompletion,
                format!("activation {id} belongs to an earlier step and is already completed"),
            )),
            _ => Err(Error::new(
                ErrorKind::InvalidCompletion,
                format!("unknown activation {id}"),
            )),
        }
    }

    fn node_id(&self, i: usize) -> &str {
        &self.wf.compiled().nodes[i].id
    }

    /// Build the completion event for activation `id` without changing the run.
    ///
    /// Errors: `INVALID_COMPLETION` for an unknown, late or duplicate activation.
    pub fn completion_event(&self, id: u64, completion: Completion) -> Result<Event> {
        let result = completion
            .result
            .map(|(output, usage)| (Arc::new(output), usage));
        self.completion_event_shared(id, result, completion.duration_us)
    }

    /// [`Machine::completion_event`] for an output already shared (replay reuses the recorded one).
    pub(crate) fn completion_event_shared(
        &self,
        id: u64,
        result: std::result::Result<(Arc<Value>, Option<crate::model::event::Usage>), Failure>,
        duration_us: Option<u64>,
    ) -> Result<Event> {
        let i = self.slot_index(id)?;
        let slot = &self.slots[i];
        let kind = self.wf.compiled().nodes[slot.node].kind;
        let data = match (result, kind) {
            (Ok((output, usage)), NodeKind::Agent) => {
                EventData::AgentCompleted(Completed { output, usage })
            }
            (Ok((output, usage)), NodeKind::Tool) => {
                EventData::ToolCompleted(Completed { output, usage })
            }
            (Ok((output, usage)), _) => EventData::HumanResolved(Completed { output, usage }),
            (Err(error), NodeKind::Agent) => EventData::AgentFailed { error },
            (Err(error), NodeKind::Tool) => EventData::ToolFailed { error },
            (Err(error), _) => EventData::HumanFailed { error },
        };
        let mut e = self.event(
            slot.completion_seq,
            Some(slot.id),
            Some(slot.node),
            Some(slot.attempt),
            data,
        );
        if let Some(us) = duration_us {
            e.meta = Some(crate::model::event::Meta {
                at: 0,
                dur_us: Some(us),
            });
        }
        Ok(e)
    }

    /// Record a completion event built by [`Machine::completion_event`] (after it was committed).
    pub fn apply_completion(&mut self, event: &Event) -> Result<()> {
        let id = event.parent_seq.unwrap_or(0);
        let i = self.slot_index(id)?;
        let result = match &event.data {
            EventData::AgentCompleted(c)
            | EventData::ToolCompleted(c)
            | EventData::HumanResolved(c) => SlotResult::Ok(c.output.clone()),
            EventData::AgentFailed { error }
            | EventData::ToolFailed { error }
            | EventData::HumanFailed { error } => SlotResult::Failed(error.clone(), event.seq),
            _ => {
                return Err(Error::internal(format!(
                    "{} is not a completion",
                    event.type_name()
                )))
            }
        };
        self.slots[i].result = Some(result);
        self.unresolved -= 1;
        if self.unresolved == 0 {
            self.settle_step();
        }
        Ok(())
    }

    /// Move the finished step's results into node state; failures decide retries.
    fn settle_step(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        for slot in &slots {
            let spec = &self.wf.compiled().nodes[slot.node];
            let state = &mut self.nodes[slot.node];
            match slot.result.as_ref().expect("settled slots have results") {
                SlotResult::Ok(out) => {
                    state.status = NodeStatus::Completed;
                    state.output = Some(out.clone());
                    state.resolved_seq = slot.completion_seq;
                    self.dirty
                        .extend_from_slice(&self.wf.compiled().children[slot.node]);
                }
                SlotResult::Failed(f, seq) => {
                    let policy = spec.retry;
                    let max = policy.map_or(1, |p| p.max_attempts);
                    if f.retryable && slot.attempt < max {
                        let p = policy.expect("max > 1 implies a policy");
                        state.status = NodeStatus::Pending;
                        state.retry = Some(Retry {
                            attempt: slot.attempt + 1,
                            delay_ms: p.delay_before(slot.attempt + 1),
                            retry_of: *seq,
                        });
                        self.retrying.push(slot.node);
                    } else {
                        state.status = NodeStatus::Failed;
                        state.resolved_seq = *seq;
                        if self.pending_failure.is_none() {
                            let code = if f.kind == FailureKind::Timeout {
                                ErrorKind::Timeout
                            } else {
                                ErrorKind::AgentFailed
                            };
                            let why = if !f.retryable && slot.attempt < max {
                                " (not retryable)"
                            } else {
                                ""
                            };
                            self.pending_failure = Some(RunError {
                                code: code.code().to_owned(),
                                message: format!(
                                    "node '{}' failed on attempt {}/{}{why}: {}: {}",
                                    spec.id, slot.attempt, max, f.error_type, f.message
                                ),
                                node: Some(spec.id.to_string()),
                            });
                        }
                    }
                }
                SlotResult::Cancelled => {}
            }
        }
        self.slots = slots;
        self.slots.clear();
        self.handed_out = 0;
        self.needs_advance = true;
    }

    /// Replace the output of a completed node (fork overrides). Only between steps.
    ///
    /// Errors: `INVALID_ARGUMENT` when the node is unknown, has no output, or a step is open.
    pub fn override_output(&mut self, node: &str, output: Value) -> Result<()> {
        let Some(&i) = self.wf.compiled().index.get(node) else {
            return Err(Error::invalid_argument(format!(
                "override: unknown node '{node}'"
            )));
        };
        if self.unresolved > 0 || self.outcome.is_some() {
            return Err(Error::invalid_argument(
                "override: outputs can only be replaced between steps",
            ));
        }
        if self.nodes[i].status != NodeStatus::Completed || self.nodes[i].output.is_none() {
            return Err(Error::invalid_argument(format!(
                "override: node '{node}' has no output at this point"
            )));
        }
        let output = Arc::new(output);
        let parent = self.nodes[i].resolved_seq;
        self.nodes[i].output = Some(output.clone());
        self.emit(
            Some(parent),
            Some(i),
            None,
            EventData::OutputOverridden { output },
        );
        Ok(())
    }

    /// Cancel: outstanding activations get `activationCancelled` at their reserved seqs, then
    /// `runCancelled`. Returns `false` when the run had already finished.
    pub fn cancel(&mut self, reason: &str) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        for i in 0..self.slots.len() {
            if self.slots[i].result.is_none() {
                let s = &self.slots[i];
                let e = self.event(
                    s.completion_seq,
                    Some(s.id),
                    Some(s.node),
                    Some(s.attempt),
                    EventData::ActivationCancelled {
                        reason: reason.to_owned(),
                    },
                );
                self.outbox.push(e);
                self.slots[i].result = Some(SlotResult::Cancelled);
            }
        }
        self.unresolved = 0;
        self.needs_advance = false;
        self.finished_seq = self.emit(
            Some(1),
            None,
            None,
            EventData::RunCancelled {
                reason: reason.to_owned(),
            },
        );
        self.outcome = Some(Outcome {
            status: RunStatus::Cancelled,
            output: None,
            error: Some(RunError {
                code: ErrorKind::Cancelled.code().to_owned(),
                message: reason.to_owned(),
                node: None,
            }),
        });
        true
    }

    fn event(
        &self,
        seq: u64,
        parent: Option<u64>,
        node: Option<usize>,
        attempt: Option<u32>,
        data: EventData,
    ) -> Event {
        Event {
            seq,
            run_id: self.run_id.clone(),
            trace_id: self.trace_id.clone(),
            parent_seq: parent,
            node: node.map(|i| self.wf.compiled().nodes[i].id.clone()),
            attempt,
            data,
            meta: None,
        }
    }

    fn emit(
        &mut self,
        parent: Option<u64>,
        node: Option<usize>,
        attempt: Option<u32>,
        data: EventData,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let e = self.event(seq, parent, node, attempt, data);
        self.outbox.push(e);
        seq
    }

    fn finish(&mut self, status: RunStatus, output: Option<Value>, error: Option<RunError>) {
        let data = match (&output, &error) {
            (_, Some(e)) => EventData::RunFailed { error: e.clone() },
            (Some(o), None) => EventData::RunCompleted { output: o.clone() },
            (None, None) => EventData::RunCompleted {
                output: Value::Object(Map::new()),
            },
        };
        self.finished_seq = self.emit(Some(1), None, None, data);
        self.outcome = Some(Outcome {
            status,
            output,
            error,
        });
    }

    fn fail(&mut self, kind: ErrorKind, message: String, node: Option<usize>) {
        let node = node.map(|i| self.node_id(i).to_owned());
        self.finish(
            RunStatus::Failed,
            None,
            Some(RunError {
                code: kind.code().to_owned(),
                message,
                node,
            }),
        );
    }

    /// Decide the next step after the current one completed (or after start).
    pub fn advance(&mut self) {
        if !self.needs_advance || self.outcome.is_some() {
            return;
        }
        self.needs_advance = false;
        if let Some(err) = self.pending_failure.take() {
            self.finish(RunStatus::Failed, None, Some(err));
            return;
        }
        let wf = self.wf.clone();
        let compiled = wf.compiled();
        let mut ready: Vec<usize> = Vec::new();
        // Evaluate only nodes whose dependencies changed, in topological order. A loop-back
        // resets its body; the body is evaluated in a further round, after this one.
        let mut round: BTreeSet<usize> =
            self.dirty.drain(..).map(|i| compiled.topo_pos[i]).collect();
        // Loops made of decisions alone (branches, skipped work) would spin here forever:
        // bound them like steps.
        let loop_limit = compiled
            .max_steps
            .unwrap_or(u64::MAX)
            .min(MAX_LOOPS_PER_DECISION);
        let mut loops = 0u64;
        while !round.is_empty() {
            let mut next_round = BTreeSet::new();
            while let Some(pos) = round.pop_first() {
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
                    return;
                }
                if compiled.nodes[i].kind == NodeKind::Branch {
                    if let Some(body) = self.decide_branch(i, trigger) {
                        loops += 1;
                        if loops > loop_limit {
                            let msg = format!(
                                "branch '{}' looped back {loop_limit} times between two steps without scheduling any work",
                                compiled.nodes[i].id
                            );
                            self.fail(ErrorKind::LimitExceeded, msg, Some(i));
                            return;
                        }
                        next_round.extend(body.iter().map(|&n| compiled.topo_pos[n]));
                    }
                    round.extend(compiled.children[i].iter().map(|&c| compiled.topo_pos[c]));
                } else {
                    self.nodes[i].status = NodeStatus::Active;
                    ready.push(i);
                }
            }
            round = next_round;
        }
        ready.append(&mut self.retrying);
        if ready.is_empty() {
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
            self.finish(RunStatus::Completed, Some(output), None);
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
                return;
            }
        }
        ready.sort_unstable();
        self.schedule(ready);
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
                _ => return None,
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
    fn decide_branch(&mut self, i: usize, trigger: u64) -> Option<Vec<usize>> {
        let wf = self.wf.clone();
        let compiled = wf.compiled();
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
        let data = EventData::BranchDecided {
            case,
            goto: target.map(|t| compiled.nodes[t].id.to_string()),
            loop_back: body.is_some(),
        };
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
        Some(body.clone())
    }

    fn schedule(&mut self, ready: Vec<usize>) {
        self.step += 1;
        let n = ready.len() as u64;
        let parent = if self.step == 1 { 1 } else { self.step_seq };
        self.step_seq = self.emit(
            Some(parent),
            None,
            None,
            EventData::StepStarted {
                step: self.step,
                activations: n,
            },
        );
        let wf = self.wf.clone();
        let compiled = wf.compiled();
        for i in ready {
            let node = &compiled.nodes[i];
            let state = &mut self.nodes[i];
            let (attempt, delay_ms, retry_of) = match state.retry.take() {
                Some(r) => (r.attempt, r.delay_ms, Some(r.retry_of)),
                None => {
                    state.visits += 1;
                    (1, 0, None)
                }
            };
            state.status = NodeStatus::Active;
            let visit = state.visits;
            let mut body = Scheduled {
                agent: None,
                tool: None,
                prompt: None,
                visit,
                delay_ms,
                timeout_ms: node.timeout_ms,
                retry_of,
            };
            let data = match node.kind {
                NodeKind::Agent => {
                    body.agent = Some(node.name.to_string());
                    EventData::AgentScheduled(body)
                }
                NodeKind::Tool => {
                    body.tool = Some(node.name.to_string());
                    EventData::ToolScheduled(body)
                }
                _ => {
                    body.prompt = node.prompt.clone();
                    EventData::HumanRequested(body)
                }
            };
            let id = self.emit(Some(self.step_seq), Some(i), Some(attempt), data);
            self.slots.push(Slot {
                id,
                completion_seq: id + n,
                node: i,
                attempt,
                visit,
                delay_ms,
                result: None,
            });
        }
        // Reserve the completion seqs.
        self.next_seq += n;
        self.unresolved = self.slots.len();
        self.handed_out = 0;
    }

    /// A read-only view for `state_at`.
    pub(crate) fn snapshot(&self, upto: u64) -> Snapshot {
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
                NodeStatus::Completed if compiled.nodes[i].kind != NodeKind::Branch => {
                    if let Some(o) = &s.output {
                        completed.insert(id, (**o).clone());
                    }
                }
                NodeStatus::Skipped => skipped.push(id),
                NodeStatus::Failed => failed.push(id),
                _ => {}
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
            _ if !pending.is_empty()
                && pending
                    .iter()
                    .all(|a: &Activation| a.kind == NodeKind::Human) =>
            {
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
        Snapshot {
            status,
            step,
            completed,
            skipped,
            failed,
            visits,
            pending,
        }
    }
}

/// Status of a run at one seq (see [`crate::state_at`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub status: RunStatus,
    pub step: u64,
    pub completed: BTreeMap<String, Value>,
    pub skipped: Vec<String>,
    pub failed: Vec<String>,
    pub visits: BTreeMap<String, u64>,
    pub pending: Vec<Activation>,
}

struct View<'a> {
    m: &'a Machine,
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
