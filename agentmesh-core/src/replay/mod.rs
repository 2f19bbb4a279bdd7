//! Replay, time travel and the rebuild that resume and fork share.
//!
//! A log is re-driven by feeding its recorded completions to a fresh [`Machine`] and checking
//! that every event the machine decides equals the recorded one. No agent is called.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, ErrorDetail, ErrorKind, Result};
use crate::log::reader::{for_each_record, LogReader, Record};
use crate::model::activation::{Activation, Outcome, RunStatus};
use crate::model::event::{Canonical, Event, EventData, Failure, Interner, LogHeader, Usage};
use crate::model::workflow::Workflow;
use crate::orchestrator::{trace_id_for, Machine};

/// Where a rebuild stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Process the whole log and decide what follows it.
    End,
    /// Process events up to and including this seq (`u64::MAX`: all), and decide nothing more.
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

pub(crate) fn read_header(path: &Path) -> Result<(LogHeader, ())> {
    let reader = LogReader::open(path)?;
    Ok((reader.require_header()?.clone(), ()))
}

/// The workflow recorded in a log's `runStarted` event, read without reading the rest.
///
/// Errors: `LOG_CORRUPT` (empty log, first event not `runStarted`, invalid workflow), `IO`.
pub fn recorded_workflow(path: impl AsRef<Path>) -> Result<Workflow> {
    let path = path.as_ref();
    let mut reader = LogReader::open(path)?;
    reader.require_header()?;
    let mut scratch = Vec::new();
    let Some(line) = reader.next_line()? else {
        return Err(Error::corrupt(
            0,
            format!("{}: log has no events", path.display()),
        ));
    };
    let offset = line.offset;
    let event = crate::log::reader::parse_event(&line, &mut scratch)?;
    match event.data {
        EventData::RunStarted { workflow, .. } => Workflow::from_spec(*workflow).map_err(|e| {
            Error::corrupt(
                offset,
                format!("the workflow recorded in runStarted is invalid: {e}"),
            )
        }),
        _ => Err(Error::corrupt(offset, "the first event is not runStarted")),
    }
}

pub(crate) fn nearby(points: &[u64], seq: u64) -> String {
    let before = points.iter().rev().find(|&&p| p < seq);
    let after = points.iter().find(|&&p| p > seq);
    match (before, after) {
        (Some(b), Some(a)) => format!("{b} and {a}"),
        (Some(b), None) => b.to_string(),
        (None, Some(a)) => a.to_string(),
        (None, None) => "none".to_owned(),
    }
}

fn event_json(e: Option<&Event>) -> Value {
    match e {
        Some(e) => serde_json::from_str(&e.to_canonical_json()).unwrap_or(Value::Null),
        None => Value::Null,
    }
}

/// First differing field between two JSON values, as a dotted path.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<(String, Value, Value)> {
    if a == b {
        return None;
    }
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.dedup();
        // Envelope fields first, in wire order; then the rest alphabetically.
        let order = [
            "seq",
            "type",
            "runId",
            "traceId",
            "parentSeq",
            "node",
            "attempt",
            "data",
        ];
        keys.sort_by_key(|k| {
            (
                order.iter().position(|o| o == k).unwrap_or(order.len()),
                (*k).clone(),
            )
        });
        keys.dedup();
        for k in keys {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let (p, q) = (
                x.get(k).unwrap_or(&Value::Null),
                y.get(k).unwrap_or(&Value::Null),
            );
            if x.contains_key(k) != y.contains_key(k) {
                return Some((sub, p.clone(), q.clone()));
            }
            if let Some(d) = first_difference(&sub, p, q) {
                return Some(d);
            }
        }
    }
    Some((
        if path.is_empty() {
            "(event)".to_owned()
        } else {
            path.to_owned()
        },
        a.clone(),
        b.clone(),
    ))
}

/// The `NONDETERMINISM` error for `recorded` (the log) vs `decided` (the workflow) at `seq`.
fn divergence(seq: u64, recorded: Option<&Event>, decided: Option<&Event>) -> Error {
    let node = recorded
        .or(decided)
        .and_then(|e| e.node.as_deref())
        .map(str::to_owned);
    let (field, expected, actual) = match (recorded, decided) {
        (Some(_), Some(_)) => first_difference("", &event_json(recorded), &event_json(decided))
            .unwrap_or_else(|| ("(event)".to_owned(), Value::Null, Value::Null)),
        _ => (
            "(event)".to_owned(),
            event_json(recorded),
            event_json(decided),
        ),
    };
    let describe = |e: Option<&Event>| match e {
        Some(e) => format!(
            "{} {}",
            e.type_name(),
            e.node
                .as_deref()
                .map(|n| format!("of '{n}'"))
                .unwrap_or_default()
        ),
        None => "nothing".to_owned(),
    };
    let message = format!(
        "seq {seq}{}: the log has {}, the workflow decides {}; first difference in '{field}': expected {expected}, actual {actual}",
        node.as_deref().map(|n| format!(" (node '{n}')")).unwrap_or_default(),
        describe(recorded).trim_end(),
        describe(decided).trim_end(),
    );
    Error::new(ErrorKind::Nondeterminism, message).with_detail(ErrorDetail::Nondeterminism {
        seq,
        node,
        field,
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

/// The completion a recorded completion event reports (sharing its output).
type Recorded = (Result<(Arc<Value>, Option<Usage>), Failure>, Option<u64>);

fn completion_of(e: &Event) -> Option<Recorded> {
    let result = match &e.data {
        EventData::AgentCompleted(c)
        | EventData::ToolCompleted(c)
        | EventData::HumanResolved(c) => Ok((c.output.clone(), c.usage)),
        EventData::AgentFailed { error }
        | EventData::ToolFailed { error }
        | EventData::HumanFailed { error } => Err(error.clone()),
        _ => return None,
    };
    Some((result, e.meta.and_then(|m| m.dur_us)))
}

struct Rebuilder<'w> {
    workflow: Option<&'w Workflow>,
    run_id: Option<String>,
    stop: Stop,
    machine: Option<Machine>,
    queue: VecDeque<Event>,
    prefix: Vec<Event>,
    collect: bool,
    events: u64,
    workflow_changed: bool,
    fork_points: Vec<u64>,
    max_seq: u64,
    deferred_cancels: Vec<Event>,
    scratch: Vec<u8>,
}

impl Rebuilder<'_> {
    fn check(&mut self, recorded: &Event, decided: &Event) -> Result<()> {
        let same = if let (
            EventData::RunStarted {
                input: a, seed: s, ..
            },
            EventData::RunStarted {
                input: b, seed: t, ..
            },
        ) = (&recorded.data, &decided.data)
        {
            // With a new workflow, its definition differs by design; compare the rest.
            (self.workflow.is_none() || self.workflow_changed || recorded.data == decided.data)
                && a == b
                && s == t
                && recorded.parent_seq == decided.parent_seq
                && recorded.seq == decided.seq
                && (self.workflow.is_some() || recorded.data == decided.data)
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

    /// Feed one record. Decision events the machine also decided are compared as canonical
    /// bytes without parsing them (most of a replay's parse cost); anything else, and any
    /// difference, goes through [`Rebuilder::feed`] with the record parsed.
    fn feed_record(&mut self, rec: Record, interner: &mut Interner) -> Result<()> {
        let fast = !self.collect
            && self.deferred_cancels.is_empty()
            && matches!(self.stop, Stop::End | Stop::At(u64::MAX))
            && matches!(
                rec.kind(),
                b"stepStarted"
                    | b"agentScheduled"
                    | b"toolScheduled"
                    | b"humanRequested"
                    | b"branchDecided"
                    | b"nodeSkipped"
                    | b"runCompleted"
                    | b"runFailed"
            );
        if let (true, Some(machine)) = (fast, self.machine.as_mut()) {
            if machine.needs_advance() {
                machine.advance();
                self.queue.extend(machine.take_outbox());
            }
            if let Some(decided) = self.queue.front().filter(|d| d.seq == rec.seq) {
                self.scratch.clear();
                serde_json::to_writer(&mut self.scratch, &Canonical(decided))
                    .map_err(|e| Error::internal(e.to_string()))?;
                let decided_head = &self.scratch[..self.scratch.len() - 1];
                if rec.canonical_head() == Some(decided_head) {
                    self.queue.pop_front();
                    self.events += 1;
                    self.max_seq = self.max_seq.max(rec.seq);
                    return Ok(());
                }
            }
        }
        self.feed(rec.parse(interner)?)
    }

    fn feed(&mut self, mut r: Event) -> Result<()> {
        self.max_seq = self.max_seq.max(r.seq);
        // Step ends past a stop seq are collected too, so an error can name the next one.
        if let EventData::StepStarted { activations, .. } = r.data {
            // Only `fork` and `state_at` (which stop at a seq) need these; replay of a long log
            // should not grow with its steps.
            if matches!(self.stop, Stop::At(s) if s != u64::MAX) {
                self.fork_points.push(r.seq + 2 * activations);
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
        // A cancel fills the reserved seqs of unfinished activations, so recorded completions
        // of the same step may follow an `activationCancelled`: hold those until `runCancelled`.
        if matches!(r.data, EventData::ActivationCancelled { .. })
            && machine.outcome().status != RunStatus::Cancelled
        {
            self.deferred_cancels.push(r);
            return Ok(());
        }
        let is_override = matches!(r.data, EventData::OutputOverridden { .. });
        if !is_override && machine.needs_advance() {
            machine.advance();
            self.queue.extend(machine.take_outbox());
        }
        if let Some((result, duration_us)) = completion_of(&r) {
            if let Some(front) = self.queue.front() {
                if front.seq < r.seq {
                    return Err(divergence(front.seq, None, Some(front)));
                }
            }
            let id = r.parent_seq.unwrap_or(0);
            let decided = match machine.completion_event_shared(id, result, duration_us) {
                Ok(e) => e,
                Err(_) => return Err(divergence(r.seq, Some(&r), None)),
            };
            self.check(&r, &decided)?;
            let machine = self.machine.as_mut().expect("started");
            machine.apply_completion(&decided)?;
        } else {
            match &r.data {
                EventData::RunCancelled { reason }
                    if machine.outcome().status != RunStatus::Cancelled =>
                {
                    let reason = reason.clone();
                    self.cancel(&reason)?;
                }
                EventData::OutputOverridden { output } => {
                    let node = r.node.as_deref().unwrap_or_default();
                    if machine.override_output(node, (**output).clone()).is_err() {
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
        let EventData::RunStarted {
            workflow: spec,
            input,
            seed,
        } = &r.data
        else {
            return Err(Error::corrupt(
                0,
                format!("the first event is {}, not runStarted", r.type_name()),
            ));
        };
        let recorded = Workflow::from_spec((**spec).clone()).map_err(|e| {
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
        let mut machine = Machine::new(wf, &r.run_id, input.clone(), *seed);
        machine.start();
        self.queue.extend(machine.take_outbox());
        self.machine = Some(machine);
        self.fork_points.push(1);
        let decided = self.queue.pop_front().expect("runStarted");
        self.check(&r, &decided)?;
        if self.collect {
            self.prefix.push(r);
        }
        Ok(())
    }
}

/// Rebuild a machine from a log. `workflow` replaces the recorded one (replay); `run_id`
/// renames the run (fork; the renamed prefix is collected).
pub(crate) fn rebuild(
    path: &Path,
    workflow: Option<&Workflow>,
    stop: Stop,
    run_id: Option<&str>,
) -> Result<Rebuilt> {
    let mut rb = Rebuilder {
        workflow,
        run_id: run_id.map(str::to_owned),
        stop,
        machine: None,
        queue: VecDeque::new(),
        prefix: Vec::new(),
        collect: run_id.is_some(),
        events: 0,
        workflow_changed: false,
        fork_points: Vec::new(),
        max_seq: 0,
        deferred_cancels: Vec::new(),
        scratch: Vec::new(),
    };
    let header = for_each_record(path, |rec, interner| rb.feed_record(rec, interner))?;
    // A crash in the middle of writing a cancel: finish it (its events join the tail).
    if let Some(reason) = rb.deferred_cancels.first().and_then(|e| match &e.data {
        EventData::ActivationCancelled { reason } => Some(reason.clone()),
        _ => None,
    }) {
        rb.cancel(&reason)?;
    }
    // Checked before the machine: with seq 0 no event was processed at all.
    if let Stop::At(s) = stop {
        if s != u64::MAX && rb.max_seq > 0 && (s == 0 || s > rb.max_seq) {
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
            format!(
                "{}: log of run '{}' has no events",
                path.display(),
                header.run_id
            ),
        ));
    };
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
    let path = path.as_ref();
    let rebuilt = rebuild(path, workflow, Stop::At(u64::MAX), None)?;
    let (header, _) = read_header(path)?;
    Ok(ReplayReport {
        run_id: header.run_id,
        events: rebuilt.events,
        workflow_changed: rebuilt.workflow_changed,
        outcome: rebuilt.machine.outcome(),
    })
}

/// The state of a run as of one seq (see [`state_at`]).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    /// The seq asked for.
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

/// Time travel: the state of the run recorded in `path` as of `seq`.
///
/// Completions and pending activations are exact at every seq; inside one decision batch
/// (the branch/skip/schedule events between two steps) node statuses show the whole batch.
///
/// Errors: `INVALID_ARGUMENT` (seq outside the log), `LOG_CORRUPT`, `IO`.
pub fn state_at(path: impl AsRef<Path>, seq: u64) -> Result<RunState> {
    let rebuilt = rebuild(path.as_ref(), None, Stop::At(seq), None)?;
    let fork_point = rebuilt.machine.needs_advance();
    let snap = rebuilt.machine.snapshot(seq);
    Ok(RunState {
        seq,
        status: snap.status,
        step: snap.step,
        completed: snap.completed,
        skipped: snap.skipped,
        failed: snap.failed,
        visits: snap.visits,
        pending: snap.pending,
        fork_point,
    })
}
