//! The calls of the open step's activations: numbering, the journal a resume rebuilds, and
//! the answers it gives from the log.
//!
//! Each slot keeps a journal of the calls its activation made, recorded or rebuilt from the
//! log. A live call takes the next odd `sub` for its `callStarted` and reserves the one after
//! for its result, so results of calls made concurrently inside one activation land at fixed
//! places whatever order they return in. After a resume the activation runs again from its
//! start: its first calls are matched against the journal in order and answered from it, and
//! only a call past the journal (or one that was in flight) goes live.

use std::sync::Arc;

use serde_json::Value;

use super::{Machine, Slot};
use crate::error::{Error, ErrorDetail, ErrorKind, Result};
use crate::model::call::{
    idempotency_key, CallCompleted, CallFailed, CallOutcome, CallRequest, CallStarted, CallTicket,
    TicketState, MAX_CALLS_PER_ACTIVATION,
};
use crate::model::event::{Event, EventData};

/// One call of an activation, as the log holds it.
#[derive(Debug, Clone)]
pub(super) struct JournalEntry {
    started: CallStarted,
    sub: u32,
    result: Option<CallOutcome>,
}

/// The calls of one activation.
#[derive(Debug, Clone, Default)]
pub(super) struct Journal {
    /// The sub the next `callStarted` gets (0 until the first: then 1).
    next_sub: u32,
    /// Calls this execution of the activation has issued (the first ones may have been
    /// answered from the log).
    issued: u32,
    entries: Vec<JournalEntry>,
}

impl Journal {
    /// Recorded calls this execution has not issued again (a resumed agent that stopped
    /// short of what the log holds).
    pub(super) fn unconsumed(&self) -> usize {
        self.entries.len().saturating_sub(self.issued as usize)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// What [`Machine::call_event`] decided for one call.
pub(crate) enum CallStep {
    /// Write this `callStarted`, then [`Machine::apply_call_start`], then let the call run.
    Record(Box<Event>, CallTicket),
    /// Nothing to write: the log answers it, or it was in flight and is re-issued.
    Reuse(CallTicket),
}

/// Where a journal stood, to undo a batch of call starts that was refused part way.
pub(crate) struct JournalMark {
    next_sub: u32,
    issued: u32,
    len: usize,
}

impl Machine {
    /// Where activation `act`'s journal stands.
    pub(crate) fn clone_calls(&self, act: u64) -> Option<JournalMark> {
        let i = self.call_slot(act).ok()?;
        let j = &self.slots[i].calls;
        Some(JournalMark {
            next_sub: j.next_sub,
            issued: j.issued,
            len: j.entries.len(),
        })
    }

    /// Undo the call starts applied since `mark`.
    pub(crate) fn restore_calls(&mut self, act: u64, mark: Option<JournalMark>) {
        let (Ok(i), Some(m)) = (self.call_slot(act), mark) else {
            return;
        };
        let j = &mut self.slots[i].calls;
        j.next_sub = m.next_sub;
        j.issued = m.issued;
        j.entries.truncate(m.len);
    }

    /// The completion seq of open activation `act`.
    pub(crate) fn completion_seq_of(&self, act: u64) -> Option<u64> {
        self.slot_index(act)
            .ok()
            .map(|i| self.slots[i].completion_seq)
    }

    fn call_slot(&self, act: u64) -> Result<usize> {
        self.slot_index(act).map_err(|e| {
            Error::new(
                ErrorKind::InvalidCompletion,
                format!("call refused: {}", e.message()),
            )
        })
    }

    fn ticket(&self, slot: &Slot, call: u32, state: TicketState) -> CallTicket {
        CallTicket {
            activation: slot.id,
            call,
            seq: slot.completion_seq,
            state,
            idempotency_key: idempotency_key(&self.run_id, slot.completion_seq, call),
        }
    }

    /// Decide call `req` of activation `act` without changing the run.
    ///
    /// Errors: `INVALID_COMPLETION` (the activation is unknown or completed: its calls are
    /// closed), `NONDETERMINISM` (after a resume, the call differs from the one the log holds
    /// at this number, naming seq, sub and field; in re-execute replay, also a call the log
    /// cannot answer), `LIMIT_EXCEEDED` (too many calls).
    pub(crate) fn call_event(&self, act: u64, req: &CallRequest) -> Result<CallStep> {
        let i = self.call_slot(act)?;
        let slot = &self.slots[i];
        let journal = &slot.calls;
        let call = journal.issued + 1;
        if let Some(entry) = journal.entries.get(journal.issued as usize) {
            self.check_same_call(slot, entry, req)?;
            return Ok(CallStep::Reuse(match &entry.result {
                Some(outcome) => self.ticket(slot, call, TicketState::Recorded(outcome.clone())),
                None if self.answer_only => {
                    return Err(self.divergence(
                        slot,
                        entry.sub + 1,
                        "data",
                        "null".to_owned(),
                        format!("call {call}"),
                        format!(
                            "call {call} was in flight when the log ended: re-execute replay has no answer for it"
                        ),
                    ))
                }
                None => self.ticket(slot, call, TicketState::Live),
            }));
        }
        if self.answer_only {
            return Err(self.divergence(
                slot,
                journal.next_sub.max(1),
                "type",
                "null".to_owned(),
                "\"callStarted\"".to_owned(),
                format!(
                    "the agent made call {call} ({} '{}'); the log holds {} for this activation",
                    req.kind.as_str(),
                    req.name,
                    journal.entries.len()
                ),
            ));
        }
        if call > MAX_CALLS_PER_ACTIVATION {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!(
                    "node '{}': more than {MAX_CALLS_PER_ACTIVATION} calls in one activation",
                    self.node_id(slot.node)
                ),
            ));
        }
        let sub = journal.next_sub.max(1);
        let mut event = self.event(
            slot.completion_seq,
            Some(slot.id),
            Some(slot.node),
            Some(slot.attempt),
            EventData::CallStarted(CallStarted {
                call,
                kind: req.kind,
                name: req.name.as_str().into(),
                request: Arc::new(req.request.clone()),
            }),
        );
        event.sub = Some(sub);
        Ok(CallStep::Record(
            Box::new(event),
            self.ticket(slot, call, TicketState::Live),
        ))
    }

    /// Record a call decided by [`Machine::call_event`] (after its `callStarted` was staged).
    pub(crate) fn apply_call_start(&mut self, act: u64, step: &CallStep) {
        let i = self.call_slot(act).expect("decided for an open activation");
        let journal = &mut self.slots[i].calls;
        if let CallStep::Record(event, _) = step {
            let (EventData::CallStarted(started), Some(sub)) = (&event.data, event.sub) else {
                unreachable!("call_event records callStarted events")
            };
            journal.entries.push(JournalEntry {
                started: started.clone(),
                sub,
                result: None,
            });
            journal.next_sub = sub + 2;
        }
        journal.issued += 1;
    }

    /// The result event of call `call` of activation `act`, without changing the run.
    ///
    /// Errors: `INVALID_COMPLETION` (the activation completed, the call was not started, was
    /// answered from the log, or already has its result).
    pub(crate) fn call_result_event(
        &self,
        act: u64,
        call: u32,
        outcome: &CallOutcome,
    ) -> Result<Event> {
        let i = self.call_slot(act)?;
        let slot = &self.slots[i];
        let refuse = |why: &str| {
            Err(Error::new(
                ErrorKind::InvalidCompletion,
                format!(
                    "call {call} of activation {act} (node '{}') {why}",
                    self.node_id(slot.node)
                ),
            ))
        };
        let index = call.checked_sub(1).map(|c| c as usize);
        let Some(entry) = index.and_then(|c| {
            (c < slot.calls.issued as usize)
                .then(|| slot.calls.entries.get(c))
                .flatten()
        }) else {
            return refuse("was not started");
        };
        if entry.result.is_some() {
            return refuse("already has its result");
        }
        let data = match &outcome.result {
            Ok(response) => EventData::CallCompleted(CallCompleted {
                call,
                response: response.clone(),
                usage: outcome.usage.clone(),
                cached: outcome.cached,
                attempts: outcome.attempts.clone(),
            }),
            Err(error) => EventData::CallFailed(CallFailed {
                call,
                error: error.clone(),
                usage: outcome.usage.clone(),
                attempts: outcome.attempts.clone(),
            }),
        };
        let mut event = self.event(
            slot.completion_seq,
            Some(slot.id),
            Some(slot.node),
            Some(slot.attempt),
            data,
        );
        event.sub = Some(entry.sub + 1);
        Ok(event)
    }

    /// Record a call's result built by [`Machine::call_result_event`].
    pub(crate) fn apply_call_result(&mut self, act: u64, call: u32, outcome: CallOutcome) {
        let i = self.call_slot(act).expect("built for an open activation");
        let entry = &mut self.slots[i].calls.entries[(call - 1) as usize];
        entry.result = Some(CallOutcome {
            duration_us: None,
            ..outcome
        });
    }

    /// Feed a call record read from the log into its activation's journal (resume, replay).
    ///
    /// Errors: `NONDETERMINISM` when no open activation owns the record's seq.
    pub(crate) fn record_call(&mut self, event: &Event) -> Result<()> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.completion_seq == event.seq && Some(s.id) == event.parent_seq);
        let (Some(i), Some(sub)) = (slot, event.sub) else {
            return Err(Error::new(
                ErrorKind::Nondeterminism,
                format!(
                    "seq {}: a {} record where no open activation completes",
                    event.seq,
                    event.type_name()
                ),
            ));
        };
        let journal = &mut self.slots[i].calls;
        match &event.data {
            EventData::CallStarted(started) => {
                journal.entries.push(JournalEntry {
                    started: started.clone(),
                    sub,
                    result: None,
                });
                journal.next_sub = sub + 2;
            }
            EventData::CallCompleted(c) => {
                let outcome = CallOutcome {
                    result: Ok(c.response.clone()),
                    usage: c.usage.clone(),
                    attempts: c.attempts.clone(),
                    cached: c.cached,
                    duration_us: None,
                    meta: None,
                };
                set_result(journal, sub, outcome);
            }
            EventData::CallFailed(f) => {
                let outcome = CallOutcome {
                    result: Err(f.error.clone()),
                    usage: f.usage.clone(),
                    attempts: f.attempts.clone(),
                    cached: false,
                    duration_us: None,
                    meta: None,
                };
                set_result(journal, sub, outcome);
            }
            _ => unreachable!("record_call takes call records"),
        }
        Ok(())
    }

    fn check_same_call(&self, slot: &Slot, entry: &JournalEntry, req: &CallRequest) -> Result<()> {
        let s = &entry.started;
        let (field, expected, actual) = if s.kind != req.kind {
            (
                "data.kind".to_owned(),
                json(s.kind.as_str()),
                json(req.kind.as_str()),
            )
        } else if *s.name != *req.name {
            ("data.name".to_owned(), json(&s.name), json(&req.name))
        } else if let Some((path, a, b)) =
            value_difference("data.request", &s.request, &req.request)
        {
            (path, a.to_string(), b.to_string())
        } else {
            return Ok(());
        };
        let why = format!(
            "call {} differs from the one the log holds at seq {} sub {}: {field} was {expected}, now {actual}",
            s.call, slot.completion_seq, entry.sub
        );
        Err(self.divergence(slot, entry.sub, &field, expected, actual, why))
    }

    fn divergence(
        &self,
        slot: &Slot,
        sub: u32,
        field: &str,
        expected: String,
        actual: String,
        why: String,
    ) -> Error {
        let node = self.node_id(slot.node).to_owned();
        Error::new(
            ErrorKind::Nondeterminism,
            format!(
                "node '{node}', seq {} sub {sub}: {why}",
                slot.completion_seq
            ),
        )
        .with_detail(ErrorDetail::Nondeterminism {
            seq: slot.completion_seq,
            node: Some(node),
            field: field.to_owned(),
            expected,
            actual,
        })
    }
}

fn set_result(journal: &mut Journal, sub: u32, outcome: CallOutcome) {
    if let Some(e) = journal.entries.iter_mut().find(|e| e.sub + 1 == sub) {
        e.result = Some(outcome);
    }
}

fn json(s: &str) -> String {
    Value::from(s).to_string()
}

/// The first place two JSON values differ, as a path (`data.request.messages[1].content`),
/// with both values there (`null` for a missing one).
pub(crate) fn value_difference(path: &str, a: &Value, b: &Value) -> Option<(String, Value, Value)> {
    if a == b {
        return None;
    }
    // The children of two objects (by key, sorted) or two arrays (by index), as
    // (path, left, right); anything else differs as a whole.
    let children: Vec<(String, Option<&Value>, Option<&Value>)> = match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .map(|k| (format!("{path}.{k}"), x.get(k), y.get(k)))
                .collect()
        }
        (Value::Array(x), Value::Array(y)) => (0..x.len().max(y.len()))
            .map(|i| (format!("{path}[{i}]"), x.get(i), y.get(i)))
            .collect(),
        _ => return Some((path.to_owned(), a.clone(), b.clone())),
    };
    children.into_iter().find_map(|(sub, p, q)| match (p, q) {
        (Some(p), Some(q)) => value_difference(&sub, p, q),
        (p, q) => Some((
            sub,
            p.cloned().unwrap_or(Value::Null),
            q.cloned().unwrap_or(Value::Null),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_name_the_path() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let b = json!({"model": "m", "messages": [{"role": "user", "content": "ho"}]});
        let (p, x, y) = value_difference("r", &a, &b).unwrap();
        assert_eq!(
            (p.as_str(), x, y),
            ("r.messages[0].content", json!("hi"), json!("ho"))
        );
        let c = json!({"model": "m", "messages": [], "seed": 1});
        let (p, _, y) = value_difference("r", &a, &c).unwrap();
        assert_eq!((p.as_str(), y), ("r.messages[0]", Value::Null));
        assert!(value_difference("r", &a, &a.clone()).is_none());
    }
}
