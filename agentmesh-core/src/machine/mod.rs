//! The run state machine: sans-IO, single writer, deterministic.
//!
//! It advances in supersteps ([`scheduler`]). When a step is scheduled, the `seq`s of its
//! completion events are reserved in activation order, so completions can be committed the
//! moment they arrive while the canonical order (by `seq`) stays independent of timing.
//! Decisions for the next step are made only once every activation of the current step has
//! completed, from data alone.
//!
//! This file holds the run state: node states, the open step's slots, completions and the
//! outcome. A completion is first [`Machine::stage`]d (built, nothing changes), then committed
//! by the caller, then [`Machine::apply`]d: apply accepts only a [`Staged`] completion this
//! machine built, so a forged or stale event can never change the state.

mod calls;
mod ledger;
mod map;
mod reads;
mod scheduler;
mod snapshot;
mod subflow;

pub(crate) use calls::CallStep;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

pub use snapshot::{MapProgress, RunState};

use crate::budget::PriceTable;
use crate::error::{Error, ErrorKind, Result};
use crate::model::activation::{Activation, Completion, Outcome, RunStatus};
use crate::model::budget::{BudgetWarning, RunBudget};
use crate::model::event::{
    Completed, Event, EventData, Failed, Overridden, Reason, Repaired, RunCompleted, RunFailed,
    RunStarted,
};
use crate::model::failure::{Failure, FailureKind, RunError, Usage};
use crate::model::header::CoreFlags;
use crate::model::verdict::{Action, Verdict};
use crate::model::workflow::{ActivationKind, Workflow};
use crate::policy::{Policy, Subject};

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
    /// The failure retried (`None` for an attempt a cancel closed).
    failure: Option<Failure>,
}

#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub status: NodeStatus,
    pub visits: u64,
    pub output: Option<Arc<Value>>,
    /// Seq of the event `output` comes from.
    output_seq: u64,
    /// Branches: the target chosen on the latest visit.
    chosen: Option<usize>,
    retry: Option<Retry>,
    /// Seq of the event that last resolved this node (completion, decision or skip).
    resolved_seq: u64,
    /// The latest attempt of the current visit.
    attempt: u32,
    /// Attempts of this visit made before the current allowance (a reopened run gives the
    /// nodes it runs again a fresh `maxAttempts`).
    attempt_base: u32,
    /// Map nodes: the items of the current visit.
    map: Option<Box<map::MapState>>,
    /// The failure that failed the node for good (what a reopened run retries).
    failure: Option<Failure>,
}

#[derive(Debug, Clone)]
enum SlotResult {
    Ok(Arc<Value>),
    Failed(Failure, u64),
    Cancelled,
}

/// One activation of the open step.
#[derive(Debug, Clone)]
struct Slot {
    id: u64,
    completion_seq: u64,
    node: usize,
    kind: ActivationKind,
    attempt: u32,
    visit: u64,
    delay_ms: u64,
    result: Option<SlotResult>,
    /// The calls the activation made (from the log after a resume).
    calls: calls::Journal,
    /// Its lease and charges, when the run accounts for spend.
    account: ledger::Account,
    /// The policy block its recorded failure carries (an output the policy kept out).
    blocked: Option<Verdict>,
    /// The map item it runs.
    item: Option<u32>,
    /// Whether `poll` handed it to the host.
    handed: bool,
    /// The failure this attempt retries.
    last_failure: Option<Failure>,
}

/// Where an attempt stands in its node's retry allowance.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    /// Attempts made in the current allowance.
    made: u32,
    max: u32,
    /// Attempts made before it (a reopened run's fresh allowance).
    base: u32,
}

/// The run error of `slot`'s attempt, which failed for good with `f`: `node 'x' failed on
/// attempt 2/3: …` (`item` names a map's item: `node 'x' item 1 ('k') failed …`).
fn failed_for_good(
    node: &str,
    item: Option<(u64, Option<&str>)>,
    slot: &Slot,
    f: &Failure,
    at: Attempt,
) -> RunError {
    let code = match f.kind {
        _ if slot.blocked.is_some() => ErrorKind::PolicyDenied,
        FailureKind::Timeout => ErrorKind::Timeout,
        FailureKind::Error => ErrorKind::AgentFailed,
    };
    let why = if !f.retryable && at.max > 1 {
        " (not retryable)"
    } else {
        ""
    };
    let Attempt { made, max, base } = at;
    // After a retry the attempt number goes on past maxAttempts.
    let attempt = if base == 0 {
        format!("{made}/{max}")
    } else {
        format!("{} ({made}/{max} since the run was retried)", slot.attempt)
    };
    let what = match item {
        Some((k, Some(key))) => format!(" item {k} ('{key}')"),
        Some((k, None)) => format!(" item {k}"),
        None => String::new(),
    };
    RunError {
        code: code.code().to_owned(),
        message: format!(
            "node '{node}'{what} failed on attempt {attempt}{why}: {}: {}",
            f.error_type, f.message
        ),
        node: Some(node.to_owned()),
        budget: None,
        verdict: slot.blocked.clone(),
        item: item.map(|(k, _)| k),
    }
}

/// A completion built by [`Machine::stage`] and not yet applied: its event (to commit) and
/// the measured duration that travels beside it (`meta.durUs`, never canonical).
#[derive(Debug)]
pub(crate) struct Staged {
    event: Event,
    dur_us: Option<u64>,
    slot: usize,
    /// The machine's completion count when this was built: a stale one is refused.
    generation: u64,
}

impl Staged {
    /// The completion event.
    pub(crate) fn event(&self) -> &Event {
        &self.event
    }

    /// How long the activation ran, as the host measured it.
    pub(crate) fn dur_us(&self) -> Option<u64> {
        self.dur_us
    }
}

/// What an activation reported, as the machine records it (replay shares recorded outputs).
pub(crate) struct Report {
    pub result: std::result::Result<Arc<Value>, Failure>,
    pub usage: Option<Usage>,
    pub dur_us: Option<u64>,
    /// What the run's policy decided about it.
    pub verdicts: Vec<Verdict>,
    /// The repair its node's output contract made of it.
    pub repaired: Option<Repaired>,
}

/// The orchestrator of one run. Events it decides go to an outbox the caller drains.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    wf: Workflow,
    run_id: Arc<str>,
    trace_id: Arc<str>,
    input: Arc<Value>,
    seed: u64,
    flags: CoreFlags,
    next_seq: u64,
    step: u64,
    step_seq: u64,
    nodes: Vec<NodeState>,
    slots: Vec<Slot>,
    unresolved: usize,
    handed_out: usize,
    /// Completions applied so far (identifies stale [`Staged`] values).
    generation: u64,
    pending_failure: Option<RunError>,
    /// Nodes whose readiness may have changed since the last decisions (keeps a step O(changes)).
    dirty: Vec<usize>,
    /// Nodes whose failed attempt will be retried in the next step.
    retrying: Vec<usize>,
    /// Buffers of the scheduler, kept across steps (no state of the run).
    round: scheduler::Round,
    ready: Vec<usize>,
    needs_advance: bool,
    outcome: Option<Outcome>,
    finished_seq: u64,
    outbox: Vec<Event>,
    /// Re-execute replay: every call must be answered from the log.
    answer_only: bool,
    /// Budgets and spend, when the run accounts for them (`runStarted.budget`).
    ledger: Option<Box<ledger::Ledger>>,
    /// Warnings the last settled step crossed, recorded with the next decisions.
    warnings: Vec<(Option<usize>, BudgetWarning)>,
    /// The run's policy, when it has one (the header records its hash).
    policy: Option<Policy>,
    /// Map nodes whose items all finished in the last settled step (`mapCompleted` is due).
    finished_maps: Vec<usize>,
}

impl Machine {
    /// A machine for a run; nothing happens until [`Machine::start`].
    pub(crate) fn new(
        wf: Workflow,
        run_id: &str,
        input: Arc<Value>,
        seed: u64,
        flags: CoreFlags,
        budget: Option<(RunBudget, Option<Arc<PriceTable>>)>,
    ) -> Machine {
        let count = wf.compiled().nodes.len();
        let ledger =
            budget.map(|(record, prices)| Box::new(ledger::Ledger::new(&wf, record, prices)));
        Machine {
            ledger,
            warnings: Vec::new(),
            trace_id: crate::model::event::trace_id_for(run_id).into(),
            run_id: run_id.into(),
            wf,
            input,
            seed,
            flags,
            next_seq: 1,
            step: 0,
            step_seq: 0,
            nodes: vec![
                NodeState {
                    status: NodeStatus::Pending,
                    visits: 0,
                    output: None,
                    output_seq: 0,
                    chosen: None,
                    retry: None,
                    resolved_seq: 0,
                    attempt: 0,
                    attempt_base: 0,
                    map: None,
                    failure: None,
                };
                count
            ],
            slots: Vec::new(),
            unresolved: 0,
            handed_out: 0,
            generation: 0,
            pending_failure: None,
            dirty: Vec::new(),
            retrying: Vec::new(),
            round: scheduler::Round::default(),
            ready: Vec::new(),
            needs_advance: false,
            outcome: None,
            finished_seq: 0,
            outbox: Vec::new(),
            answer_only: false,
            policy: None,
            finished_maps: Vec::new(),
        }
    }

    /// Judge what the run records, sends and passes on by `policy` (the one its header names).
    pub(crate) fn set_policy(&mut self, policy: Option<Policy>) {
        self.policy = policy;
    }

    /// The context a block's digest is keyed with (see [`crate::policy::block_digest`]).
    pub(crate) fn digest_context(&self, seq: u64, sub: u32) -> String {
        format!("{}/{seq}/{sub}", self.run_id)
    }

    /// Price the run's calls with the bundled table and `user`'s over it, as it was started
    /// (a machine rebuilt from a log has the recorded budget but no prices).
    ///
    /// Errors: `INVALID_ARGUMENT` when the table's hash is not the recorded one.
    pub(crate) fn use_prices(&mut self, user: Option<&PriceTable>) -> Result<()> {
        let Some(ledger) = self.ledger.as_mut() else {
            return Ok(());
        };
        let table = crate::run::price_table(user);
        if table.hash() != ledger.record.prices {
            return Err(Error::invalid_argument(format!(
                "the run was started with price table {}, not {} (the bundled table{}): pass the prices it was started with",
                ledger.record.prices,
                table.hash(),
                if user.is_some() { " and the prices given" } else { " alone" }
            )));
        }
        ledger.prices = Some(table);
        Ok(())
    }

    /// Answer every call from the journal the log gave, never live (re-execute replay).
    pub(crate) fn answer_calls_from_log(&mut self) {
        self.answer_only = true;
    }

    /// Emit `runStarted` with what the policy decided about the input; the first decisions
    /// follow with [`Machine::advance`]. A blocked input (a `block` verdict) fails the run
    /// at once with `POLICY_DENIED`.
    pub(crate) fn start(&mut self, verdicts: Vec<Verdict>) {
        let block = verdicts.iter().find(|v| v.action == Action::Block).cloned();
        let data = EventData::RunStarted(RunStarted {
            workflow: self.wf.shared_spec(),
            input: self.input.clone(),
            seed: self.seed,
            budget: self.ledger.as_ref().map(|l| l.record.clone()),
            verdicts,
        });
        self.emit(None, None, None, data);
        if let Some(v) = block {
            let error = RunError {
                code: ErrorKind::PolicyDenied.code().to_owned(),
                message: format!("the run input was {}", v.message()),
                node: None,
                budget: None,
                verdict: Some(v),
                item: None,
            };
            self.finish(RunStatus::Failed, None, Some(error));
            return;
        }
        let compiled = self.wf.compiled();
        self.dirty = (0..compiled.nodes.len())
            .filter(|&i| compiled.nodes[i].deps.is_empty())
            .collect();
        self.needs_advance = true;
    }

    pub(crate) fn input(&self) -> &Arc<Value> {
        &self.input
    }

    pub(crate) fn workflow(&self) -> &Workflow {
        &self.wf
    }

    /// The behaviour flags this run was started (or recorded) with.
    pub(crate) fn flags(&self) -> &CoreFlags {
        &self.flags
    }

    /// Events decided since the last call.
    pub(crate) fn take_outbox(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.outbox)
    }

    /// Whether the current step has completed and the next decisions are due.
    pub(crate) fn needs_advance(&self) -> bool {
        self.needs_advance
    }

    /// Current status.
    pub(crate) fn status(&self) -> RunStatus {
        if let Some(o) = &self.outcome {
            return o.status;
        }
        let host_work = self
            .slots
            .iter()
            .any(|s| s.result.is_none() && s.kind != ActivationKind::Human);
        if self.unresolved > 0 && !host_work {
            RunStatus::Waiting
        } else {
            RunStatus::Running
        }
    }

    /// Outcome so far (status, output of a completed run, error of a failed one).
    pub(crate) fn outcome(&self) -> Outcome {
        self.outcome.clone().unwrap_or(Outcome {
            status: self.status(),
            output: None,
            error: None,
        })
    }

    /// Activations not handed out by an earlier `poll`: all of them, but for map nodes with
    /// a `concurrency`, whose items are handed out as earlier ones complete.
    pub(crate) fn poll(&mut self) -> Vec<Activation> {
        if self.outcome.is_some() {
            return Vec::new();
        }
        let compiled = self.wf.compiled();
        let mut out = Vec::new();
        // Slots before `handed_out` are all handed out or completed.
        let mut prefix = true;
        for i in self.handed_out..self.slots.len() {
            let slot = &self.slots[i];
            if !slot.handed && slot.result.is_none() {
                if slot.item.is_some() {
                    let window = compiled.nodes[slot.node]
                        .map
                        .as_ref()
                        .and_then(|d| d.concurrency);
                    let state = self.nodes[slot.node]
                        .map
                        .as_mut()
                        .expect("a map item's node has items");
                    if window.is_some_and(|w| state.in_flight >= w) {
                        prefix = false;
                        continue;
                    }
                    state.in_flight += 1;
                }
                self.slots[i].handed = true;
                out.push(self.activation(i));
            }
            if prefix {
                self.handed_out = i + 1;
            }
        }
        out
    }

    /// Every activation still waiting for a completion.
    pub(crate) fn outstanding(&self) -> Vec<Activation> {
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
        let item = slot.item.map(|k| {
            let state = self.nodes[slot.node]
                .map
                .as_ref()
                .expect("a map item's node has items");
            crate::model::activation::Item {
                index: k as u64,
                key: state.keys.as_ref().map(|keys| keys[k as usize].clone()),
                value: state.items[k as usize].clone(),
            }
        });
        let reads = self.read_values(slot.node);
        Activation {
            id: slot.id,
            run_id: self.run_id.clone(),
            node: node.id.clone(),
            kind: slot.kind,
            name: node.name.clone(),
            attempt: slot.attempt,
            visit: slot.visit,
            delay_ms: slot.delay_ms,
            timeout_ms: node.timeout_ms,
            prompt: node.prompt.as_deref().map(str::to_owned),
            seed,
            step: self.step,
            input: self.input_of(slot.node),
            deps,
            item,
            reads,
            last_failure: slot.last_failure.clone(),
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

    /// The outstanding activation `id`, if there is one.
    pub(crate) fn activation_by_id(&self, id: u64) -> Option<Activation> {
        self.slot_index(id).ok().map(|i| self.activation(i))
    }

    /// Build the completion of activation `id` from a host's report without changing the run.
    /// A timeout gets the one failure text every host records.
    ///
    /// Errors: `INVALID_COMPLETION` for an unknown, late or duplicate activation;
    /// `INVALID_OUTPUT` for a person's decision that does not match its node's `output`.
    pub(crate) fn stage(&self, id: u64, completion: Completion) -> Result<Staged> {
        let i = self.slot_index(id)?;
        let node = &self.wf.compiled().nodes[self.slots[i].node];
        let journal = &self.slots[i].calls;
        // The output contract first: what is judged and recorded is the checked (repaired)
        // output, or the failure that re-asks.
        let (checked, repaired) = match (completion.result, &node.output) {
            (Ok(v), Some(check)) => match check.check(Arc::new(v)) {
                Ok((v, r)) => (Ok(v), r),
                // A person is not re-asked by a retry: the decision is refused, nothing is
                // recorded, and whoever gave it can give a matching one.
                Err(f) if self.slots[i].kind == ActivationKind::Human => {
                    return Err(Error::new(
                        ErrorKind::InvalidOutput,
                        format!(
                            "activation {id} (node '{}'): the decision is refused: {}",
                            node.id, f.message
                        ),
                    ));
                }
                Err(f) => (Err(f), None),
            },
            (r, _) => (r.map(Arc::new), None),
        };
        let result = match checked {
            // A resumed agent that finished without making again every call the log holds
            // for it did not do what the first execution did.
            Ok(_) if journal.unconsumed() > 0 => Err(Failure::error(
                "NondeterminismError",
                format!(
                    "the agent finished after {} of the {} calls the log holds for this activation (seq {}): it does not repeat its calls when it runs again",
                    journal.len() - journal.unconsumed(),
                    journal.len(),
                    self.slots[i].completion_seq
                ),
            )
            .permanent()),
            Ok(v) => Ok(v),
            // A budget refused one of its calls and the agent did not get past it: the one
            // failure every host records (whatever its exception was called).
            Err(_) if journal.denial().is_some() => Err(Failure::error(
                "BudgetExceededError",
                journal.denial().expect("checked").message(),
            )
            .permanent()),
            // Likewise for a call the policy refused.
            Err(_) if journal.policy_denial().is_some() => Err(Failure::error(
                ErrorKind::PolicyDenied.class_name(),
                journal.policy_denial().expect("checked").message(),
            )
            .permanent()),
            Err(f) => match (f.kind, node.timeout_ms) {
                (FailureKind::Timeout, Some(ms)) => Err(Failure::timeout(ms)),
                // The policy's verdict is recorded in the failure, so replay (which feeds
                // recorded failures) decides the same retries whatever the policy says later.
                (FailureKind::Error, _)
                    if f.retryable
                        && node
                            .retry
                            .as_ref()
                            .is_some_and(|p| p.max_attempts > 1 && p.refuses(&f.error_type)) =>
                {
                    Err(f.permanent())
                }
                _ => Err(f),
            },
        };
        let (result, verdicts) = self.judge(i, result);
        self.stage_report(
            id,
            Report {
                result,
                usage: completion.usage,
                dur_us: completion.duration_us,
                verdicts,
                repaired,
            },
        )
    }

    /// What the run's policy makes of slot `i`'s result: an output redacted or blocked (then
    /// the failure every host records, with the block's digest), a failure's message
    /// redacted.
    fn judge(
        &self,
        i: usize,
        result: std::result::Result<Arc<Value>, Failure>,
    ) -> (std::result::Result<Arc<Value>, Failure>, Vec<Verdict>) {
        let Some(policy) = &self.policy else {
            return (result, Vec::new());
        };
        let slot = &self.slots[i];
        let subject = match slot.kind {
            ActivationKind::Agent => Subject::Output,
            ActivationKind::Tool => Subject::ToolResult,
            ActivationKind::Human => Subject::Human,
        };
        match result {
            Ok(output) => {
                let checked = policy.check(subject, &output);
                if !checked.blocked {
                    let output = checked.value.map(Arc::new).unwrap_or(output);
                    return (Ok(output), checked.verdicts);
                }
                let context = self.digest_context(slot.completion_seq, 0);
                let digest = crate::policy::block_digest(&context, &output);
                let verdicts: Vec<Verdict> = checked
                    .verdicts
                    .into_iter()
                    .map(|mut v| {
                        v.digest = Some(digest.clone());
                        v
                    })
                    .collect();
                let what = match slot.kind {
                    ActivationKind::Human => "the decision was",
                    _ => "the output was",
                };
                let failure = Failure::error(
                    ErrorKind::PolicyDenied.class_name(),
                    format!("{what} {}", verdicts[0].message()),
                );
                (Err(failure), verdicts)
            }
            Err(mut failure) => {
                let (message, verdicts) = policy.check_message(subject, &failure.message);
                if let Some(m) = message {
                    failure.message = m;
                }
                (Err(failure), verdicts)
            }
        }
    }

    /// [`Machine::stage`] for a report taken as it is (replay feeds recorded completions).
    ///
    /// Errors: `INVALID_COMPLETION`.
    pub(crate) fn stage_report(&self, id: u64, report: Report) -> Result<Staged> {
        let i = self.slot_index(id)?;
        let slot = &self.slots[i];
        let data = match report.result {
            Ok(output) => EventData::Completed(
                slot.kind,
                Completed {
                    output,
                    usage: report.usage,
                    verdicts: report.verdicts,
                    repaired: report.repaired,
                },
            ),
            Err(error) => EventData::Failed(
                slot.kind,
                Failed {
                    error,
                    usage: report.usage,
                    verdicts: report.verdicts,
                },
            ),
        };
        let event = self.event(
            slot.completion_seq,
            Some(slot.id),
            Some(slot.node),
            Some(slot.attempt),
            data,
        );
        Ok(Staged {
            event,
            dur_us: report.dur_us,
            slot: i,
            generation: self.generation,
        })
    }

    /// Record a completion built by [`Machine::stage`] (after the caller committed it).
    /// Returns the event.
    pub(crate) fn apply(&mut self, staged: Staged) -> Event {
        // Staged values are built and applied under one `&mut` borrow of the run, with
        // nothing in between: a stale one is a bug in this crate.
        assert_eq!(
            staged.generation, self.generation,
            "a staged completion was applied after another"
        );
        let (result, usage) = match &staged.event.data {
            EventData::Completed(_, c) => (SlotResult::Ok(c.output.clone()), &c.usage),
            EventData::Failed(_, f) => {
                self.slots[staged.slot].blocked = f
                    .verdicts
                    .iter()
                    .find(|v| v.action == Action::Block)
                    .cloned();
                (
                    SlotResult::Failed(f.error.clone(), staged.event.seq),
                    &f.usage,
                )
            }
            other => unreachable!("stage builds completions only, not {}", other.type_name()),
        };
        // Usage a host reports on a completion is charged after the fact (tokens only: it
        // names no price).
        if let (Some(_), Some(u)) = (&self.ledger, usage) {
            let account = &mut self.slots[staged.slot].account;
            account.charged = account.charged.plus(&ledger::amounts_of(u, 0, 0));
        }
        let slot = &mut self.slots[staged.slot];
        slot.result = Some(result);
        if slot.handed && slot.item.is_some() {
            if let Some(m) = self.nodes[slot.node].map.as_mut() {
                m.in_flight -= 1;
            }
        }
        self.generation += 1;
        self.unresolved -= 1;
        if self.unresolved == 0 {
            self.settle_step();
        }
        staged.event
    }

    /// Move the finished step's results into node state; failures decide retries.
    fn settle_step(&mut self) {
        fn slot_failure(result: &Option<SlotResult>) -> Option<Failure> {
            match result {
                Some(SlotResult::Failed(f, _)) => Some(f.clone()),
                _ => None,
            }
        }
        let slots = std::mem::take(&mut self.slots);
        let mut maps = Vec::new();
        for slot in &slots {
            let spec = &self.wf.compiled().nodes[slot.node];
            if let Some(ledger) = self.ledger.as_mut() {
                let crossed = ledger.settle(slot.node, spec.agent(), &slot.account.charged);
                self.warnings.extend(crossed);
            }
            if let Some(k) = slot.item {
                if maps.last() != Some(&slot.node) {
                    maps.push(slot.node);
                }
                self.settle_item(slot, k as usize);
                continue;
            }
            let state = &mut self.nodes[slot.node];
            match slot.result.as_ref().expect("settled slots have results") {
                SlotResult::Ok(out) => {
                    state.status = NodeStatus::Completed;
                    state.output = Some(out.clone());
                    state.output_seq = slot.completion_seq;
                    state.resolved_seq = slot.completion_seq;
                    self.dirty
                        .extend_from_slice(&self.wf.compiled().children[slot.node]);
                }
                SlotResult::Failed(_, seq) if slot.calls.denial().is_some() => {
                    // A budget refusal is not retried: the run fails with it.
                    state.status = NodeStatus::Failed;
                    state.resolved_seq = *seq;
                    state.failure = slot_failure(&slot.result);
                    if self.pending_failure.is_none() {
                        let refusal = slot.calls.denial().expect("checked").clone();
                        self.pending_failure = Some(RunError {
                            code: ErrorKind::BudgetExceeded.code().to_owned(),
                            message: format!("node '{}': {}", spec.id, refusal.message()),
                            node: Some(spec.id.to_string()),
                            budget: Some(refusal),
                            verdict: None,
                            item: None,
                        });
                    }
                }
                SlotResult::Failed(_, seq) if slot.calls.policy_denial().is_some() => {
                    // A call the policy refused, let through by the agent: not retried either.
                    state.status = NodeStatus::Failed;
                    state.resolved_seq = *seq;
                    state.failure = slot_failure(&slot.result);
                    if self.pending_failure.is_none() {
                        let verdict = slot.calls.policy_denial().expect("checked").clone();
                        self.pending_failure = Some(RunError {
                            code: ErrorKind::PolicyDenied.code().to_owned(),
                            message: format!("node '{}': {}", spec.id, verdict.message()),
                            node: Some(spec.id.to_string()),
                            budget: None,
                            verdict: Some(verdict),
                            item: None,
                        });
                    }
                }
                SlotResult::Failed(f, seq) => {
                    let policy = spec.retry.as_ref();
                    let max = policy.map_or(1, |p| p.max_attempts);
                    // Attempts count within the current allowance (fresh after a reopen).
                    let made = slot.attempt - state.attempt_base;
                    if f.retryable && made < max {
                        let p = policy.expect("max > 1 implies a policy");
                        state.status = NodeStatus::Pending;
                        state.retry = Some(Retry {
                            attempt: slot.attempt + 1,
                            delay_ms: p.delay_before(made + 1),
                            retry_of: *seq,
                            failure: Some(f.clone()),
                        });
                        self.retrying.push(slot.node);
                    } else {
                        state.status = NodeStatus::Failed;
                        state.resolved_seq = *seq;
                        state.failure = Some(f.clone());
                        if self.pending_failure.is_none() {
                            let at = Attempt {
                                made,
                                max,
                                base: state.attempt_base,
                            };
                            self.pending_failure =
                                Some(failed_for_good(&spec.id, None, slot, f, at));
                        }
                    }
                }
                SlotResult::Cancelled => {}
            }
        }
        for node in maps {
            let state = &self.nodes[node];
            let m = state.map.as_ref().expect("a map node has items");
            if state.status == NodeStatus::Failed {
                continue;
            }
            if !m.todo.is_empty() {
                self.retrying.push(node);
            } else if m.left == 0 {
                self.finished_maps.push(node);
            }
        }
        self.slots = slots;
        self.slots.clear();
        self.handed_out = 0;
        self.needs_advance = true;
    }

    /// Replace the output of a completed node (fork overrides). Only between steps. A new
    /// override is judged by the run's policy like an output; one read from a log comes with
    /// its recorded `verdicts`.
    ///
    /// Errors: `INVALID_ARGUMENT` when the node is unknown, has no output, or a step is open;
    /// `POLICY_DENIED` when the policy blocks it.
    pub(crate) fn override_output(
        &mut self,
        node: &str,
        output: Value,
        recorded: Option<Vec<Verdict>>,
    ) -> Result<()> {
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
        let (output, verdicts) = match (recorded, &self.policy) {
            (Some(v), _) => (output, v),
            (None, None) => (output, Vec::new()),
            (None, Some(p)) => {
                let checked = p.check(Subject::Output, &output);
                if checked.blocked {
                    return Err(Error::policy_denied(&checked.verdicts[0]));
                }
                (checked.value.unwrap_or(output), checked.verdicts)
            }
        };
        let output = Arc::new(output);
        let parent = self.nodes[i].resolved_seq;
        self.nodes[i].output = Some(output.clone());
        self.nodes[i].output_seq = self.emit(
            Some(parent),
            Some(i),
            None,
            EventData::OutputOverridden(Overridden { output, verdicts }),
        );
        Ok(())
    }

    /// Cancel: outstanding activations get `activationCancelled` at their reserved seqs, then
    /// `runCancelled`. Returns `false` when the run had already finished.
    pub(crate) fn cancel(&mut self, reason: &str) -> bool {
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
                    EventData::ActivationCancelled(Reason {
                        reason: reason.to_owned(),
                    }),
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
            EventData::RunCancelled(Reason {
                reason: reason.to_owned(),
            }),
        );
        self.outcome = Some(Outcome {
            status: RunStatus::Cancelled,
            output: None,
            error: Some(RunError {
                code: ErrorKind::Cancelled.code().to_owned(),
                message: reason.to_owned(),
                node: None,
                budget: None,
                verdict: None,
                item: None,
            }),
        });
        true
    }

    /// Reopen a failed or cancelled run (`runReopened`): the nodes that failed it, and the
    /// activations a cancel closed, run again with a fresh allowance of attempts; finished
    /// work is kept. The results a cancelled step had already recorded count as if the step
    /// had ended normally (a failure among them stands, and may fail the run again).
    ///
    /// Errors: `INVALID_ARGUMENT` naming why there is nothing to run again (the run is not
    /// failed or cancelled; it failed on a limit, which would fail the same way).
    pub(crate) fn reopen(&mut self, reason: &str) -> Result<()> {
        let Some(outcome) = &self.outcome else {
            return Err(Error::invalid_argument(format!(
                "the run is {}, not failed or cancelled: resume it instead",
                self.status().as_str()
            )));
        };
        let failed: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].status == NodeStatus::Failed)
            .collect();
        match outcome.status {
            RunStatus::Completed => {
                return Err(Error::invalid_argument(
                    "the run completed, which is final: fork it to run part of it again",
                ))
            }
            RunStatus::Failed if failed.is_empty() => {
                let why = outcome
                    .error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(" ({}: {})", e.code, e.message));
                return Err(Error::invalid_argument(format!(
                    "the run failed on a limit, not on a node{why}: a retry would fail the same way; fork it at an earlier step end with a changed workflow"
                )));
            }
            RunStatus::Failed | RunStatus::Cancelled => {}
            RunStatus::Running | RunStatus::Waiting => unreachable!("an outcome is final"),
        }
        let cancelled = outcome.status == RunStatus::Cancelled;
        let parent = self.finished_seq;
        self.outcome = None;
        self.pending_failure = None;
        self.emit(
            Some(parent),
            None,
            None,
            EventData::RunReopened(Reason {
                reason: reason.to_owned(),
            }),
        );
        for i in failed {
            self.rerun(i, self.nodes[i].resolved_seq);
        }
        if cancelled {
            // The cancelled step: what it recorded settles as usual, cancelled slots rerun.
            let cancelled: Vec<(usize, Option<u32>, u64)> = self
                .slots
                .iter()
                .filter(|s| matches!(s.result, Some(SlotResult::Cancelled)))
                .map(|s| (s.node, s.item, s.completion_seq))
                .collect();
            self.settle_step();
            for (node, item, seq) in cancelled {
                match item {
                    Some(k) => self.rerun_item(node, k as usize, seq),
                    None => self.rerun(node, seq),
                }
            }
        }
        self.needs_advance = true;
        Ok(())
    }

    /// Whether node `node` was already resolved (completed, skipped or failed) on its latest
    /// visit; `None` for an unknown node.
    pub(crate) fn node_resolved(&self, node: &str) -> Option<bool> {
        let &i = self.wf.compiled().index.get(node)?;
        Some(matches!(
            self.nodes[i].status,
            NodeStatus::Completed | NodeStatus::Skipped | NodeStatus::Failed
        ))
    }

    /// Schedule node `i` again in the next step with a fresh allowance of attempts,
    /// retrying the attempt that ended at `retry_of`.
    fn rerun(&mut self, i: usize, retry_of: u64) {
        let state = &mut self.nodes[i];
        if let Some(m) = state.map.as_mut() {
            // A map runs its failed items again; what its other items did stands.
            m.rerun_failed();
            state.status = NodeStatus::Active;
            self.retrying.push(i);
            return;
        }
        state.status = NodeStatus::Pending;
        state.attempt_base = state.attempt;
        state.retry = Some(Retry {
            attempt: state.attempt + 1,
            delay_ms: 0,
            retry_of,
            failure: state.failure.take(),
        });
        self.retrying.push(i);
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
            sub: None,
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
            (_, Some(e)) => EventData::RunFailed(RunFailed { error: e.clone() }),
            (Some(o), None) => EventData::RunCompleted(RunCompleted { output: o.clone() }),
            (None, None) => EventData::RunCompleted(RunCompleted {
                output: Value::Object(Map::new()),
            }),
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
                budget: None,
                verdict: None,
                item: None,
            }),
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn machine(wf: Value) -> Machine {
        let wf = Workflow::from_value(wf).expect("valid workflow");
        let mut m = Machine::new(
            wf,
            "r",
            Arc::new(Value::Null),
            1,
            CoreFlags::current(),
            None,
        );
        m.start(Vec::new());
        m.advance();
        m
    }

    pub(crate) fn chain(n: usize) -> Value {
        let nodes: Vec<Value> = (0..n)
            .map(|i| {
                let mut node = json!({"id": format!("n{i}"), "type": "agent", "agent": "a"});
                if i > 0 {
                    node["after"] = json!([format!("n{}", i - 1)]);
                }
                node
            })
            .collect();
        json!({"name": "chain", "nodes": nodes})
    }

    pub(crate) fn complete(m: &mut Machine, id: u64, c: Completion) -> Event {
        let staged = m.stage(id, c).expect("stage");
        let e = m.apply(staged);
        if m.needs_advance() {
            m.advance();
        }
        e
    }

    #[test]
    fn a_completion_lands_at_its_reserved_seq() {
        let mut m = machine(chain(2));
        let out = m.take_outbox();
        let seqs: Vec<(u64, &str)> = out.iter().map(|e| (e.seq, e.type_name())).collect();
        assert_eq!(
            seqs,
            [(1, "runStarted"), (2, "stepStarted"), (3, "agentScheduled")]
        );
        let acts = m.poll();
        assert_eq!(acts.len(), 1);
        assert!(m.poll().is_empty(), "each activation is handed out once");
        let e = complete(&mut m, acts[0].id, Completion::ok(json!(1)));
        assert_eq!((e.seq, e.parent_seq), (4, Some(3)));
        let next: Vec<u64> = m.take_outbox().iter().map(|e| e.seq).collect();
        assert_eq!(next, [5, 6], "the next step starts after the reserved seq");
    }

    #[test]
    fn staging_changes_nothing_and_refuses_bad_ids() {
        let mut m = machine(chain(1));
        let id = m.poll()[0].id;
        let before = m.status();
        let staged = m.stage(id, Completion::ok(json!(1))).unwrap();
        assert_eq!(m.status(), before);
        assert_eq!(m.outstanding().len(), 1, "still outstanding until applied");
        drop(staged);
        for bad in [0, 1, 2, 4, 999] {
            let e = m.stage(bad, Completion::ok(json!(1))).unwrap_err();
            assert_eq!(e.code(), "INVALID_COMPLETION", "id {bad}");
        }
        complete(&mut m, id, Completion::ok(json!(1)));
        let e = m.stage(id, Completion::ok(json!(1))).unwrap_err();
        assert_eq!(e.code(), "INVALID_COMPLETION");
        assert_eq!(m.status(), RunStatus::Completed);
    }

    #[test]
    #[should_panic(expected = "applied after another")]
    fn a_stale_staged_completion_is_refused() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "a", "type": "agent", "agent": "x"}, {"id": "b", "type": "agent", "agent": "x"}]}));
        let acts = m.poll();
        let first = m.stage(acts[0].id, Completion::ok(json!(1))).unwrap();
        let second = m.stage(acts[1].id, Completion::ok(json!(2))).unwrap();
        m.apply(first);
        m.apply(second);
    }

    #[test]
    fn timeouts_get_the_canonical_failure_and_usage_is_kept_on_failures() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "a", "type": "tool", "tool": "t", "timeoutMs": 250}]}));
        let id = m.poll()[0].id;
        let c = Completion::timed_out().with_usage(Usage::tokens(9, 1));
        let e = complete(&mut m, id, c);
        let EventData::Failed(ActivationKind::Tool, f) = &e.data else {
            panic!("{e:?}")
        };
        assert_eq!(f.error, Failure::timeout(250));
        assert_eq!(f.usage.as_ref().map(|u| u.input_tokens), Some(9));
        let o = m.outcome();
        assert_eq!(o.status, RunStatus::Failed);
        assert_eq!(o.error.unwrap().code, "TIMEOUT");
    }

    #[test]
    fn cancel_fills_the_reserved_seqs_then_ends_the_run() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "a", "type": "agent", "agent": "x"}, {"id": "b", "type": "human"}]}));
        m.take_outbox();
        assert_eq!(m.status(), RunStatus::Running);
        let acts = m.poll();
        complete(&mut m, acts[0].id, Completion::ok(json!(1)));
        assert_eq!(m.status(), RunStatus::Waiting, "only the person is left");
        assert!(m.cancel("stop"));
        let out: Vec<(u64, &str)> = m
            .take_outbox()
            .iter()
            .map(|e| (e.seq, e.type_name()))
            .collect();
        assert_eq!(out, [(6, "activationCancelled"), (7, "runCancelled")]);
        assert!(!m.cancel("again"));
        assert!(m.poll().is_empty());
    }

    #[test]
    fn overrides_apply_only_between_steps() {
        let mut m = machine(chain(2));
        let id = m.poll()[0].id;
        let e = m.override_output("n0", json!(1), None).unwrap_err();
        assert!(e.message().contains("between steps"), "{e}");
        let staged = m.stage(id, Completion::ok(json!(1))).unwrap();
        m.apply(staged);
        assert!(m.needs_advance());
        m.override_output("n0", json!(2), None).unwrap();
        assert!(m.override_output("nope", json!(2), None).is_err());
        assert!(
            m.override_output("n1", json!(2), None).is_err(),
            "n1 has no output"
        );
    }

    #[test]
    fn an_output_contract_fails_a_mismatch_repairs_text_and_hands_the_failure_to_the_retry() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "plan", "type": "agent", "agent": "p", "retry": {"maxAttempts": 2},
             "output": {"repair": true, "schema": {"type": "object", "required": ["questions"],
                "properties": {"questions": {"type": "array", "items": {"type": "string"}}}}}}]}));
        let first = m.poll().remove(0);
        assert_eq!(first.last_failure, None);
        let e = complete(&mut m, first.id, Completion::ok(json!({"questions": [1]})));
        let EventData::Failed(_, f) = &e.data else {
            panic!("{e:?}")
        };
        assert_eq!(f.error.error_type, "OutputSchemaError");
        assert!(
            f.error.message.contains("at /questions/0"),
            "{}",
            f.error.message
        );
        let retry = m.poll().remove(0);
        assert_eq!(
            retry.last_failure.as_ref(),
            Some(&f.error),
            "the retry is told why"
        );
        let text = "Here you go:\n```json\n{\"questions\": [\"why\", \"how\",]}\n```";
        let e = complete(&mut m, retry.id, Completion::ok(json!(text)));
        let EventData::Completed(_, c) = &e.data else {
            panic!("{e:?}")
        };
        assert_eq!(*c.output, json!({"questions": ["why", "how"]}));
        let r = c.repaired.as_ref().unwrap();
        let fixes: Vec<&str> = r.fixes.iter().map(|f| &**f).collect();
        assert_eq!(fixes, ["codeFence", "trailingCommas"]);
        assert_eq!(
            m.outcome().output,
            Some(json!({"plan": {"questions": ["why", "how"]}}))
        );
    }

    #[test]
    fn a_decision_that_does_not_match_is_refused_and_nothing_is_recorded() {
        let mut m = machine(json!({"name": "w", "nodes": [
            {"id": "ok", "type": "human",
             "output": {"schema": {"type": "object", "required": ["approved"]}}}]}));
        let act = m.poll().remove(0);
        let e = m
            .stage(act.id, Completion::ok(json!({"yes": 1})))
            .unwrap_err();
        assert_eq!(e.code(), "INVALID_OUTPUT");
        assert!(
            e.message().contains("node 'ok'")
                && e.message().contains("\"approved\" is a required property"),
            "{e}"
        );
        assert_eq!(
            m.status(),
            RunStatus::Waiting,
            "still waiting for a decision"
        );
        complete(&mut m, act.id, Completion::ok(json!({"approved": true})));
        assert_eq!(m.status(), RunStatus::Completed);
    }
}
