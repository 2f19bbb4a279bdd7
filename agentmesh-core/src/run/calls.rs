//! The call protocol of a run: an activation starts a call and gets a ticket, makes the call
//! when the ticket says so, and reports its result. Each record is committed (durable per
//! the fsync mode) before the method returns, so a call's `callStarted` is in the log before
//! anything is sent, and its result before the agent sees it.

use super::Run;
use crate::error::{Error, ErrorKind, Result};
use crate::machine::CallStep;
use crate::model::call::{CallOutcome, CallRequest, CallTicket, TicketState};
use crate::model::event::Event;
use crate::model::header::MetaExtra;

/// Longest provider or tool name a call may have.
const MAX_CALL_NAME: usize = 256;

impl Run {
    /// Start call `req` of activation `act`. A `Live` ticket means: `callStarted` is
    /// committed, make the call now and report it with [`Run::call_complete`]. A `Recorded`
    /// ticket (after a resume: the log already holds this call's result) means: use its
    /// result, call nothing, report nothing. A call that was in flight when the process died
    /// is handed out `Live` again under its number (at least once: pass the ticket's
    /// idempotency key to services that honour one).
    ///
    /// Errors: `INVALID_COMPLETION` (the activation is unknown or already completed: its
    /// calls are closed; nothing is written), `NONDETERMINISM` (after a resume the call
    /// differs from the one the log holds at this number; the error names seq, sub and
    /// field), `INVALID_ARGUMENT` (an empty or overlong name, a request nested too deep, or
    /// a log format that holds no calls), `INVALID_OUTPUT` (a request too large for a log
    /// record), `LIMIT_EXCEEDED` (more calls than one activation may make), `IO`.
    pub fn call_start(&mut self, act: u64, req: CallRequest) -> Result<CallTicket> {
        let mut tickets = self.call_start_many(act, vec![req])?;
        let ticket = tickets.pop().expect("one ticket per request");
        match &ticket.state {
            TicketState::Denied(refusal) => Err(Error::budget_exceeded(refusal)),
            TicketState::PolicyDenied(verdict) => Err(Error::policy_denied(verdict)),
            _ => Ok(ticket),
        }
    }

    /// Start several calls of activation `act` at once, numbered in list order, in one
    /// commit: the form for calls an agent makes concurrently, whose numbers would otherwise
    /// depend on which thread asks first. On an error nothing of the batch is recorded.
    ///
    /// Errors: as [`Run::call_start`].
    pub fn call_start_many(&mut self, act: u64, reqs: Vec<CallRequest>) -> Result<Vec<CallTicket>> {
        self.check_usable()?;
        self.check_calls_allowed()?;
        if let Some(e) = self.reexec_divergence() {
            return Err(e);
        }
        for req in &reqs {
            check_request(req)?;
        }
        let mut steps = Vec::with_capacity(reqs.len());
        let mut staged: Vec<Event> = Vec::new();
        // Decide and apply one by one (each number depends on the one before); the journal
        // is restored if a later request of the batch is refused.
        let saved = self.machine.clone_calls(act);
        for req in &reqs {
            let step = match self.machine.call_event(act, req) {
                Ok(s) => s,
                Err(e) => {
                    self.machine.restore_calls(act, saved);
                    self.reexec_note(&e);
                    return Err(e);
                }
            };
            if let CallStep::Record(event, _) | CallStep::Deny(event, _) = &step {
                staged.push((**event).clone());
            }
            self.machine.apply_call_start(act, &step, req);
            steps.push(step);
        }
        if let Err(e) = self.stage_call_records(staged) {
            self.machine.restore_calls(act, saved);
            return Err(e);
        }
        self.commit()?;
        Ok(steps
            .into_iter()
            .map(|s| match s {
                CallStep::Record(_, t) | CallStep::Deny(_, t) | CallStep::Reuse(t) => t,
            })
            .collect())
    }

    /// Report the result of call `call` of activation `act` (a `Live` ticket's call). It is
    /// committed before this returns. Returns the outcome as recorded: what the agent must
    /// use, since the run's policy may have redacted the response or blocked it (then it is
    /// a `PolicyDeniedError` failure).
    ///
    /// Errors: `INVALID_COMPLETION` (the activation completed, or timed out, first: a late
    /// result is refused and never logged; the call was not started, was answered from the
    /// log, or already has a result), `INVALID_OUTPUT` (a response nested too deep or too
    /// large for a log record; nothing is written), `IO`.
    pub fn call_complete(
        &mut self,
        act: u64,
        call: u32,
        outcome: CallOutcome,
    ) -> Result<CallOutcome> {
        self.check_usable()?;
        if let Ok(response) = &outcome.result {
            if crate::model::too_deep(response) {
                return Err(Error::new(
                    ErrorKind::InvalidOutput,
                    format!(
                        "call {call} of activation {act}: the response nests arrays/objects deeper than {}",
                        crate::model::MAX_VALUE_DEPTH
                    ),
                ));
            }
        }
        let (event, recorded) = self.machine.call_result_event(act, call, &outcome)?;
        let extra = MetaExtra {
            dur_us: outcome.duration_us,
            call: outcome.meta.clone(),
        };
        let at = self.sink.stage(vec![event.clone()], &extra)?;
        if let Some(w) = self.watch.as_mut() {
            w.stage([event], at, &extra);
        }
        self.machine.apply_call_result(act, call, recorded.clone());
        self.commit()?;
        Ok(recorded)
    }

    fn stage_call_records(&mut self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.stage_events(events)
    }

    fn check_calls_allowed(&self) -> Result<()> {
        if self.header.version < 3 {
            return Err(Error::invalid_argument(format!(
                "this log is in format {}, which holds no call records (format 3 does): fork the run into a new log to make calls",
                self.header.version
            )));
        }
        Ok(())
    }
}

fn check_request(req: &CallRequest) -> Result<()> {
    if req.name.is_empty() || req.name.len() > MAX_CALL_NAME {
        return Err(Error::invalid_argument(format!(
            "a {} call needs a name of 1 to {MAX_CALL_NAME} bytes",
            req.kind.as_str()
        )));
    }
    if crate::model::too_deep(&req.request) {
        return Err(Error::invalid_argument(format!(
            "{} call '{}': the request nests arrays/objects deeper than {}",
            req.kind.as_str(),
            req.name,
            crate::model::MAX_VALUE_DEPTH
        )));
    }
    Ok(())
}
