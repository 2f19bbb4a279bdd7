//! Replay, time travel and the rebuild that resume and fork share.
//!
//! A log is re-driven by feeding its recorded completions to a fresh machine and checking
//! that every event the machine decides equals the recorded one. No agent is called.

mod divergence;

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use divergence::divergence;
pub(crate) use divergence::divergence as divergence_of;
pub(crate) use divergence::nearby;

use crate::error::{Error, Result};
use crate::log::reader::{InOrder, LogScan, RecordRef};
use crate::machine::{Machine, Report, RunState};
use crate::model::activation::{Outcome, RunStatus};
use crate::model::event::{
    trace_id_for, Completed, Decoder, Encoded, Event, EventData, EventKind, Failed, Layout, Role,
};
use crate::model::workflow::Workflow;

/// Where a rebuild stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Process the whole log and decide what follows it.
    End,
    /// Process every event, and decide nothing more (replay, history).
    All,
    /// Process events up to and including this seq, and decide nothing more (time travel,
    /// fork).
    At(u64),
}

pub(crate) struct Rebuilt {
    pub machine: Machine,
    /// Events the machine decided that the log does not hold yet (lost by a crash).
    pub tail: Vec<Event>,
    /// The recorded events processed, with the run id replaced when one was given.
    pub prefix: Vec<Event>,
    pub events: u64,
    pub workflow_changed: bool,
    /// Seqs at which a fork is consistent: 1 and the last completion of every step.
    pub fork_points: Vec<u64>,
}

/// The workflow recorded in a log's `runStarted` event, read without reading the rest.
///
/// Errors: `LOG_CORRUPT` (empty log, first event not `runStarted`, invalid workflow), `IO`.
pub fn recorded_workflow(path: impl AsRef<Path>) -> Result<Workflow> {
    let path = path.as_ref();
    let mut scan = LogScan::open(path)?;
    let mut decoder = scan.decoder();
    let Some(rec) = scan.next()? else {
        scan.require_events()?;
        return Err(Error::corrupt(
            0,
            format!("{}: log has no events", path.display()),
        ));
    };
    let offset = rec.offset;
    let event = rec.parse(&mut decoder, &mut Vec::new())?;
    match event.data {
        EventData::RunStarted(b) => Workflow::from_spec((*b.workflow).clone()).map_err(|e| {
            Error::corrupt(
                offset,
                format!("the workflow recorded in runStarted is invalid: {e}"),
            )
        }),
        _ => Err(Error::corrupt(offset, "the first event is not runStarted")),
    }
}

/// What a recorded completion reported, sharing its output.
fn report_of(e: &Event) -> Option<Report> {
    let dur_us = e.meta.as_ref().and_then(|m| m.dur_us);
    match &e.data {
        EventData::Completed(_, c) => Some(Report {
            result: Ok(c.output.clone()),
            usage: c.usage.clone(),
            dur_us,
            verdicts: c.verdicts.clone(),
            repaired: c.repaired.clone(),
        }),
        EventData::Failed(_, f) => Some(Report {
            result: Err(f.error.clone()),
            usage: f.usage.clone(),
            dur_us,
            verdicts: f.verdicts.clone(),
            repaired: None,
        }),
        _ => None,
    }
}

struct Rebuilder<'w, 's> {
    workflow: Option<&'w Workflow>,
    run_id: Option<String>,
    stop: Stop,
    layout: Layout,
    machine: Option<Machine>,
    flags: crate::model::header::CoreFlags,
    queue: VecDeque<Event>,
    prefix: Vec<Event>,
    collect: bool,
    events: u64,
    workflow_changed: bool,
    fork_points: Vec<u64>,
    max_seq: u64,
    deferred_cancels: Vec<Event>,
    decoder: Decoder,
    scratch: Vec<u8>,
    encoded: Vec<u8>,
    /// Called with the state after each step end (and at the end of the log): `history`.
    on_state: Option<&'s mut dyn FnMut(RunState) -> Result<()>>,
}

impl Rebuilder<'_, '_> {
    fn check(&mut self, recorded: &Event, decided: &Event) -> Result<()> {
        let same = if let (EventData::RunStarted(a), EventData::RunStarted(b)) =
            (&recorded.data, &decided.data)
        {
            // With a new workflow, its definition differs by design; compare the rest.
            (self.workflow.is_none() || self.workflow_changed || a == b)
                && a.input == b.input
                && a.seed == b.seed
                && recorded.parent_seq == decided.parent_seq
                && recorded.seq == decided.seq
                && (self.workflow.is_some() || a == b)
        } else {
            recorded.same_canonical(decided)
        };
        if same {
            Ok(())
        } else {
            Err(divergence(
                recorded.seq.min(decided.seq),
                Some(recorded),
                Some(decided),
            ))
        }
    }

    /// Feed one record. Decision events the machine also decided are compared as bytes in
    /// the file's own layout without parsing them (most of a replay's parse cost), and a
    /// completion has only its `data` parsed, to stage it, and is compared as bytes too;
    /// anything else, and any difference, goes through [`Rebuilder::feed`] with the record
    /// parsed (which reports the divergence field by field).
    fn feed_record(&mut self, rec: RecordRef<'_>) -> Result<()> {
        let fast = !self.collect
            && self.deferred_cancels.is_empty()
            && matches!(self.stop, Stop::End | Stop::All);
        if fast && rec.kind.role() == Role::Completion && self.completion_as_bytes(&rec)? {
            return Ok(());
        }
        let fast = fast && matches!(rec.kind.role(), Role::Decision | Role::Scheduled);
        if let (true, Some(machine)) = (fast, self.machine.as_mut()) {
            if machine.needs_advance() {
                machine.advance();
                self.queue.extend(machine.take_outbox());
            }
            if let Some(decided) = self.queue.front().filter(|d| d.seq == rec.seq) {
                self.encoded.clear();
                let encoded = Encoded {
                    event: decided,
                    layout: self.layout,
                    meta: None,
                };
                encoded.write_to(&mut self.encoded);
                let decided_head = &self.encoded[..self.encoded.len() - 1];
                if rec.without_meta()? == decided_head {
                    self.queue.pop_front();
                    self.events += 1;
                    self.max_seq = self.max_seq.max(rec.seq);
                    return Ok(());
                }
            }
        }
        let event = rec.parse(&mut self.decoder, &mut self.scratch)?;
        self.feed(event, rec.offset)
    }

    /// The fast path of a completion: stage what its `data` reports and compare the staged
    /// event's bytes with the record's. `false` when it cannot decide (the slow path then
    /// parses the whole record).
    fn completion_as_bytes(&mut self, rec: &RecordRef<'_>) -> Result<bool> {
        let Some(machine) = self.machine.as_mut() else {
            return Ok(false);
        };
        let Some((Some(parent), data)) = rec.parent_and_data() else {
            return Ok(false);
        };
        let report = match rec.kind {
            EventKind::AgentCompleted | EventKind::ToolCompleted | EventKind::HumanResolved => {
                let Ok(c) = serde_json::from_slice::<Completed>(data) else {
                    return Ok(false);
                };
                Report {
                    result: Ok(c.output),
                    usage: c.usage,
                    dur_us: None,
                    verdicts: c.verdicts,
                    repaired: c.repaired,
                }
            }
            _ => {
                let Ok(f) = serde_json::from_slice::<Failed>(data) else {
                    return Ok(false);
                };
                Report {
                    result: Err(f.error),
                    usage: f.usage,
                    dur_us: None,
                    verdicts: f.verdicts,
                    repaired: None,
                }
            }
        };
        if machine.needs_advance() {
            machine.advance();
            self.queue.extend(machine.take_outbox());
        }
        if self.queue.front().is_some_and(|d| d.seq < rec.seq) {
            return Ok(false);
        }
        let Ok(staged) = machine.stage_report(parent, report) else {
            return Ok(false);
        };
        self.encoded.clear();
        Encoded {
            event: staged.event(),
            layout: self.layout,
            meta: None,
        }
        .write_to(&mut self.encoded);
        if rec.without_meta()? != &self.encoded[..self.encoded.len() - 1] {
            return Ok(false);
        }
        machine.apply(staged);
        self.events += 1;
        self.max_seq = self.max_seq.max(rec.seq);
        if self.machine.as_ref().is_some_and(Machine::needs_advance) {
            self.step_end(rec.seq)?;
        }
        Ok(true)
    }

    fn feed(&mut self, mut r: Event, offset: u64) -> Result<()> {
        self.max_seq = self.max_seq.max(r.seq);
        // Step ends past a stop seq are collected too, so an error can name the next one.
        if let EventData::StepStarted(s) = &r.data {
            // Only `fork` and `state_at` (which stop at a seq) need these; replay of a long
            // log should not grow with its steps.
            if matches!(self.stop, Stop::At(_)) {
                let end = s
                    .activations
                    .checked_mul(2)
                    .and_then(|n| r.seq.checked_add(n))
                    .ok_or_else(|| Error::corrupt(offset, "the step's seqs overflow"))?;
                self.fork_points.push(end);
            }
        }
        if let Stop::At(s) = self.stop {
            if r.seq > s {
                return Ok(());
            }
        }
        if let Some(id) = &self.run_id {
            r.run_id = id.as_str().into();
            r.trace_id = trace_id_for(id).into();
        }
        self.events += 1;
        let Some(machine) = self.machine.as_mut() else {
            return self.begin(r);
        };
        if r.kind().role() == Role::Call {
            // Host input for an open activation's journal: a resumed agent's calls are
            // answered from it; nothing is decided.
            if machine.needs_advance() {
                machine.advance();
                self.queue.extend(machine.take_outbox());
            }
            machine.record_call(&r)?;
            if self.collect {
                self.prefix.push(r);
            }
            return Ok(());
        }
        // A cancel fills the reserved seqs of unfinished activations, so recorded completions
        // of the same step may follow an `activationCancelled`: hold those until `runCancelled`.
        if matches!(r.data, EventData::ActivationCancelled(_))
            && machine.outcome().status != RunStatus::Cancelled
        {
            self.deferred_cancels.push(r);
            return Ok(());
        }
        let is_override = matches!(r.data, EventData::OutputOverridden(_));
        if !is_override && machine.needs_advance() {
            machine.advance();
            self.queue.extend(machine.take_outbox());
        }
        if let Some(report) = report_of(&r) {
            if let Some(front) = self.queue.front() {
                if front.seq < r.seq {
                    return Err(divergence(front.seq, None, Some(front)));
                }
            }
            let id = r.parent_seq.unwrap_or(0);
            let staged = match machine.stage_report(id, report) {
                Ok(s) => s,
                Err(_) => return Err(divergence(r.seq, Some(&r), None)),
            };
            self.check(&r, staged.event())?;
            let machine = self.machine.as_mut().expect("started");
            machine.apply(staged);
            if machine.needs_advance() {
                self.step_end(r.seq)?;
            }
        } else {
            match &r.data {
                EventData::RunCancelled(c) if machine.outcome().status != RunStatus::Cancelled => {
                    let reason = c.reason.clone();
                    self.cancel(&reason)?;
                }
                EventData::RunReopened(o) => {
                    if machine.reopen(&o.reason).is_err() {
                        return Err(divergence(r.seq, Some(&r), None));
                    }
                    self.queue.extend(machine.take_outbox());
                }
                EventData::OutputOverridden(o) => {
                    let node = r.node.as_deref().unwrap_or_default();
                    if machine
                        .override_output(node, (*o.output).clone(), Some(o.verdicts.clone()))
                        .is_err()
                    {
                        return Err(divergence(r.seq, Some(&r), None));
                    }
                    self.queue.extend(machine.take_outbox());
                }
                _ => {}
            }
            match self.queue.pop_front() {
                Some(d) if d.seq == r.seq => self.check(&r, &d)?,
                Some(d) if d.seq < r.seq => return Err(divergence(d.seq, None, Some(&d))),
                Some(d) => {
                    let err = divergence(r.seq, Some(&r), None);
                    self.queue.push_front(d);
                    return Err(err);
                }
                None => return Err(divergence(r.seq, Some(&r), None)),
            }
        }
        if self.collect {
            self.prefix.push(r);
        }
        Ok(())
    }

    /// A step ended at `seq`: hand the state to `history`.
    fn step_end(&mut self, seq: u64) -> Result<()> {
        if let (Some(f), Some(m)) = (self.on_state.as_mut(), self.machine.as_ref()) {
            f(m.snapshot(seq))?;
        }
        Ok(())
    }

    /// Cancel the machine and match the held `activationCancelled` events.
    fn cancel(&mut self, reason: &str) -> Result<()> {
        let machine = self.machine.as_mut().expect("started");
        machine.cancel(reason);
        self.queue.extend(machine.take_outbox());
        for d in std::mem::take(&mut self.deferred_cancels) {
            match self.queue.pop_front() {
                Some(e) if e.seq == d.seq => self.check(&d, &e)?,
                other => return Err(divergence(d.seq, Some(&d), other.as_ref())),
            }
            if self.collect {
                self.prefix.push(d);
            }
        }
        Ok(())
    }

    fn begin(&mut self, r: Event) -> Result<()> {
        let EventData::RunStarted(started) = &r.data else {
            return Err(Error::corrupt(
                0,
                format!("the first event is {}, not runStarted", r.type_name()),
            ));
        };
        let recorded = Workflow::from_spec((*started.workflow).clone()).map_err(|e| {
            Error::corrupt(
                0,
                format!("the workflow recorded in runStarted is invalid: {e}"),
            )
        })?;
        let wf = match self.workflow {
            Some(w) => {
                self.workflow_changed = w.hash() != recorded.hash();
                w.clone()
            }
            None => recorded,
        };
        let mut machine = Machine::new(
            wf,
            &r.run_id,
            started.input.clone(),
            started.seed,
            self.flags.clone(),
            started.budget.clone().map(|b| (b, None)),
        );
        machine.start(started.verdicts.clone());
        self.queue.extend(machine.take_outbox());
        self.machine = Some(machine);
        self.fork_points.push(1);
        let decided = self.queue.pop_front().expect("runStarted");
        self.check(&r, &decided)?;
        if self.collect {
            self.prefix.push(r);
        }
        self.step_end(1)
    }
}

/// Rebuild a machine from a log being scanned. `workflow` replaces the recorded one
/// (replay); `run_id` renames the run (fork; the renamed prefix is collected); `on_state`
/// receives the state after every step end (history).
pub(crate) fn rebuild<R: Read>(
    scan: &mut LogScan<R>,
    workflow: Option<&Workflow>,
    stop: Stop,
    run_id: Option<&str>,
    on_state: Option<&mut dyn FnMut(RunState) -> Result<()>>,
) -> Result<Rebuilt> {
    let header = scan.header().clone();
    let flags = header.core_flags().map_err(|why| Error::corrupt(0, why))?;
    let mut rb = Rebuilder {
        workflow,
        run_id: run_id.map(str::to_owned),
        stop,
        layout: scan.reader.layout,
        machine: None,
        flags,
        queue: VecDeque::new(),
        prefix: Vec::new(),
        collect: run_id.is_some(),
        events: 0,
        workflow_changed: false,
        fork_points: Vec::new(),
        max_seq: 0,
        deferred_cancels: Vec::new(),
        decoder: scan.decoder(),
        scratch: Vec::new(),
        encoded: Vec::new(),
        on_state,
    };
    let mut order = InOrder::new();
    {
        let mut feed = |rec: RecordRef<'_>| rb.feed_record(rec);
        while let Some(rec) = scan.next()? {
            order.push(rec, &mut feed)?;
        }
        order.finish(&mut feed)?;
    }
    scan.require_events()?;
    // A crash in the middle of writing a cancel: finish it (its events join the tail).
    if let Some(reason) = rb.deferred_cancels.first().and_then(|e| match &e.data {
        EventData::ActivationCancelled(c) => Some(c.reason.clone()),
        _ => None,
    }) {
        rb.cancel(&reason)?;
    }
    // Checked before the machine: with seq 0 no event was processed at all.
    if let Stop::At(s) = stop {
        if rb.max_seq > 0 && (s == 0 || s > rb.max_seq) {
            return Err(Error::invalid_argument(format!(
                "seq {s} is outside the log (1..={})",
                rb.max_seq
            )));
        }
    }
    // The end of a step whose completions are not all written yet is not a fork point.
    let max_seq = rb.max_seq;
    rb.fork_points.retain(|&p| p <= max_seq);
    let Some(mut machine) = rb.machine.take() else {
        return Err(Error::corrupt(
            0,
            format!("log of run '{}' has no events", header.run_id),
        ));
    };
    if let Some(f) = rb.on_state.as_mut() {
        // The end of the log, when it is not a step end already handed out.
        if !machine.needs_advance() {
            f(machine.snapshot(max_seq))?;
        }
    }
    if stop == Stop::End && machine.needs_advance() {
        machine.advance();
        rb.queue.extend(machine.take_outbox());
    }
    Ok(Rebuilt {
        machine,
        tail: rb.queue.into_iter().collect(),
        prefix: rb.prefix,
        events: rb.events,
        workflow_changed: rb.workflow_changed,
        fork_points: rb.fork_points,
    })
}

/// [`rebuild`] of a log file opened read-only.
pub(crate) fn rebuild_file(
    path: &Path,
    workflow: Option<&Workflow>,
    stop: Stop,
    run_id: Option<&str>,
) -> Result<Rebuilt> {
    let mut scan = LogScan::open(path)?;
    rebuild(&mut scan, workflow, stop, run_id, None)
}

/// Result of [`replay`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Run id.
    pub run_id: String,
    /// Events re-driven and found equal.
    pub events: u64,
    /// Whether the workflow given differs from the one recorded (but decided the same events).
    pub workflow_changed: bool,
    /// The run's outcome as of the end of the log.
    pub outcome: Outcome,
}

/// Re-drive a log against `workflow` (the recorded one when `None`) without calling any agent.
///
/// Errors: `NONDETERMINISM` naming the first divergent seq, node, field, expected and actual;
/// `LOG_CORRUPT`; `IO`.
pub fn replay(path: impl AsRef<Path>, workflow: Option<&Workflow>) -> Result<ReplayReport> {
    let mut scan = LogScan::open(path.as_ref())?;
    let rebuilt = rebuild(&mut scan, workflow, Stop::All, None, None)?;
    Ok(ReplayReport {
        run_id: scan.header().run_id.clone(),
        events: rebuilt.events,
        workflow_changed: rebuilt.workflow_changed,
        outcome: rebuilt.machine.outcome(),
    })
}

/// Time travel: the state of the run recorded in `path` as of `seq`.
///
/// Completions and pending activations are exact at every seq; inside one decision batch
/// (the branch/skip/schedule events between two steps) node statuses show the whole batch.
///
/// Errors: `INVALID_ARGUMENT` (seq outside the log), `LOG_CORRUPT`, `IO`.
pub fn state_at(path: impl AsRef<Path>, seq: u64) -> Result<RunState> {
    let rebuilt = rebuild_file(path.as_ref(), None, Stop::At(seq), None)?;
    Ok(rebuilt.machine.snapshot(seq))
}

/// The run's history in one pass: its state at seq 1, after every step, and at the end of
/// the log (when that is not a step end), in seq order — what calling [`state_at`] at each
/// of those seqs gives, for about the cost of one replay.
///
/// Errors: `LOG_CORRUPT`, `NONDETERMINISM` (the log disagrees with its workflow), `IO`.
pub fn history(path: impl AsRef<Path>) -> Result<Vec<RunState>> {
    let mut states = Vec::new();
    for_each_state(path, &mut |s| {
        states.push(s);
        Ok(())
    })?;
    Ok(states)
}

/// [`history`], streamed: `f` gets each state as it is reached.
///
/// Errors: as [`history`], and whatever `f` returns (which stops the walk).
pub fn for_each_state(
    path: impl AsRef<Path>,
    f: &mut dyn FnMut(RunState) -> Result<()>,
) -> Result<()> {
    let mut scan = LogScan::open(path.as_ref())?;
    rebuild(&mut scan, None, Stop::All, None, Some(f)).map(|_| ())
}
