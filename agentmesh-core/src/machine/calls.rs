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

use super::ledger::{self, Ledger};
use super::{Machine, Slot};
use crate::budget::{reserve_llm, Amounts, Dimension, LlmAsk, Reservation};
use crate::error::{Error, ErrorDetail, ErrorKind, Result};
use crate::model::budget::{BudgetRefusal, CallDenied};
use crate::model::call::{
    idempotency_key, CallAsk, CallCompleted, CallError, CallFailed, CallKind, CallOutcome,
    CallRequest, CallStarted, CallTicket, TicketState, MAX_CALLS_PER_ACTIVATION,
};
use crate::model::event::{Event, EventData};
use crate::model::verdict::Verdict;
use crate::policy::{block_digest, Subject};

/// One call of an activation, as the log holds it.
#[derive(Debug, Clone)]
pub(super) struct JournalEntry {
    started: CallStarted,
    sub: u32,
    result: Option<CallOutcome>,
    /// What it reserved (zero when the run does not account for spend).
    reserve: Amounts,
    /// What its executor estimated (prices the settlement), when it said.
    ask: Option<CallAsk>,
    /// Refused by a budget: it has no result.
    denied: Option<BudgetRefusal>,
    /// Refused by the run's policy (its first verdict): it has no result, and its request is
    /// not in the log.
    blocked: Option<Verdict>,
}

impl JournalEntry {
    fn new(started: CallStarted, sub: u32) -> JournalEntry {
        JournalEntry {
            reserve: started.reserve.unwrap_or_default(),
            started,
            sub,
            result: None,
            ask: None,
            denied: None,
            blocked: None,
        }
    }
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
    /// The first call a budget refused.
    denial: Option<BudgetRefusal>,
    /// The first call the policy refused.
    policy_denial: Option<Verdict>,
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

    /// The first call a budget refused, if one was.
    pub(super) fn denial(&self) -> Option<&BudgetRefusal> {
        self.denial.as_ref()
    }

    /// The first call the policy refused, if one was.
    pub(super) fn policy_denial(&self) -> Option<&Verdict> {
        self.policy_denial.as_ref()
    }
}

/// What the policy makes of a call's request.
enum Judged {
    /// Send it (the redacted request, when the policy changed it).
    Pass {
        request: Option<Arc<Value>>,
        verdicts: Vec<Verdict>,
    },
    /// Refused: nothing is sent, the request is not recorded.
    Deny(Vec<Verdict>),
}

/// What a budget decides for a live call.
enum Decision {
    /// Reserve this (and send this `maxTokens`, when it says one).
    Reserve(Amounts, Option<u64>),
    /// Refused: nothing is sent.
    Deny(BudgetRefusal),
}

/// The `maxTokens` a call without one may be clamped from: a budget that limits its output
/// or cost sends the largest that fits.
const NO_MAX_TOKENS: u64 = u32::MAX as u64;

/// What [`Machine::call_event`] decided for one call.
pub(crate) enum CallStep {
    /// Write this `callStarted`, then [`Machine::apply_call_start`], then let the call run.
    Record(Box<Event>, CallTicket),
    /// Write this `callDenied`, then [`Machine::apply_call_start`]; the ticket is `Denied`.
    Deny(Box<Event>, CallTicket),
    /// Nothing to write: the log answers it, or it was in flight and is re-issued.
    Reuse(CallTicket),
}

/// Where a journal stood, to undo a batch of call starts that was refused part way.
pub(crate) struct JournalMark {
    next_sub: u32,
    issued: u32,
    len: usize,
    denial: Option<BudgetRefusal>,
    policy_denial: Option<Verdict>,
    charged: Amounts,
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
            denial: j.denial.clone(),
            policy_denial: j.policy_denial.clone(),
            charged: self.slots[i].account.charged,
        })
    }

    /// Undo the call starts applied since `mark`.
    pub(crate) fn restore_calls(&mut self, act: u64, mark: Option<JournalMark>) {
        let (Ok(i), Some(m)) = (self.call_slot(act), mark) else {
            return;
        };
        self.slots[i].account.charged = m.charged;
        let j = &mut self.slots[i].calls;
        j.next_sub = m.next_sub;
        j.issued = m.issued;
        j.entries.truncate(m.len);
        j.denial = m.denial;
        j.policy_denial = m.policy_denial;
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

    fn ticket(
        &self,
        slot: &Slot,
        kind: CallKind,
        call: u32,
        state: TicketState,
        max_tokens: Option<u64>,
        request: Option<Arc<Value>>,
    ) -> CallTicket {
        let subject = match kind {
            CallKind::Llm => Subject::LlmResponse,
            CallKind::Tool => Subject::ToolResult,
        };
        CallTicket {
            hold_response: self.policy.as_ref().is_some_and(|p| p.looks_at(subject)),
            activation: slot.id,
            call,
            seq: slot.completion_seq,
            state,
            idempotency_key: idempotency_key(&self.run_id, slot.completion_seq, call),
            max_tokens,
            request,
        }
    }

    /// What the run's policy makes of call `req` of `slot`, whose start would take `sub`:
    /// the tool allowlist first, then the content rules.
    fn judge_request(&self, slot: &Slot, req: &CallRequest, sub: u32) -> Judged {
        let Some(policy) = &self.policy else {
            return Judged::Pass {
                request: None,
                verdicts: Vec::new(),
            };
        };
        if req.kind == CallKind::Tool {
            let agent = &self.wf.compiled().nodes[slot.node].name;
            if let Some(v) = policy.allowlist().check_call(agent, &req.name) {
                return Judged::Deny(vec![v]);
            }
        }
        let subject = match req.kind {
            CallKind::Llm => Subject::LlmRequest,
            CallKind::Tool => Subject::ToolArgs,
        };
        let checked = policy.check(subject, &req.request);
        if checked.blocked {
            let digest = block_digest(&self.digest_context(slot.completion_seq, sub), &req.request);
            return Judged::Deny(
                checked
                    .verdicts
                    .into_iter()
                    .map(|mut v| {
                        v.digest = Some(digest.clone());
                        v
                    })
                    .collect(),
            );
        }
        Judged::Pass {
            request: checked.value.map(Arc::new),
            verdicts: checked.verdicts,
        }
    }

    /// What the run's policy makes of the outcome of `entry`'s call (recorded at `sub`): the
    /// response redacted or blocked (then a `PolicyDeniedError` with the block's digest),
    /// error messages redacted.
    fn judge_outcome(
        &self,
        slot: &Slot,
        entry: &JournalEntry,
        outcome: &CallOutcome,
    ) -> (CallOutcome, Vec<Verdict>) {
        let Some(policy) = &self.policy else {
            return (outcome.clone(), Vec::new());
        };
        let subject = match entry.started.kind {
            CallKind::Llm => Subject::LlmResponse,
            CallKind::Tool => Subject::ToolResult,
        };
        let mut judged = outcome.clone();
        let mut verdicts: Vec<Verdict>;
        match &outcome.result {
            Ok(response) => {
                let checked = policy.check(subject, response);
                if checked.blocked {
                    let digest = block_digest(
                        &self.digest_context(slot.completion_seq, entry.sub + 1),
                        response,
                    );
                    verdicts = checked
                        .verdicts
                        .into_iter()
                        .map(|mut v| {
                            v.digest = Some(digest.clone());
                            v
                        })
                        .collect();
                    judged.result = Err(CallError::new(
                        ErrorKind::PolicyDenied.class_name(),
                        format!("the response was {}", verdicts[0].message()),
                    )
                    .permanent());
                } else {
                    if let Some(v) = checked.value {
                        judged.result = Ok(Arc::new(v));
                    }
                    verdicts = checked.verdicts;
                }
            }
            Err(e) => {
                let (message, found) = policy.check_message(subject, &e.message);
                if let (Some(m), Err(e)) = (message, judged.result.as_mut()) {
                    e.message = m;
                }
                verdicts = found;
            }
        }
        for attempt in &mut judged.attempts {
            let (message, found) = policy.check_message(subject, &attempt.error.message);
            if let Some(m) = message {
                attempt.error.message = m;
            }
            verdicts.extend(found);
        }
        (judged, verdicts)
    }

    /// What the budget decides for a live call of `slot`: what it reserves against what is
    /// left of the activation's lease, or its refusal.
    ///
    /// Errors: `INVALID_ARGUMENT` (an LLM call to a model the price table does not price:
    /// never counted as free; nothing is recorded).
    fn decide_budget(&self, slot: &Slot, ledger: &Ledger, req: &CallRequest) -> Result<Decision> {
        let left = slot.account.lease.left(&slot.account.charged);
        let node = &self.wf.compiled().nodes[slot.node];
        let agent = node.agent();
        let deny = |d: Dimension, requested: u64| {
            Decision::Deny(ledger.refusal(&slot.account, slot.node, &node.id, agent, d, requested))
        };
        let (CallKind::Llm, Some(ask)) = (req.kind, &req.ask) else {
            // A tool (at its price per call, if the table has one), or an LLM call its host
            // makes itself: one call, charged what it reports.
            let price = match req.kind {
                CallKind::Tool => ledger
                    .prices
                    .as_deref()
                    .and_then(|t| t.tool(&req.name))
                    .unwrap_or(0),
                CallKind::Llm => 0,
            };
            let one = Amounts::of(0, 0, price, 1);
            return Ok(match left.exceeded_by(&Amounts::ZERO, &one) {
                Some(d) => deny(d, one.get(d)),
                None => Decision::Reserve(one, None),
            });
        };
        let Some(table) = ledger.prices.as_deref() else {
            return Err(Error::invalid_argument(
                "this run accounts for spend but was given no price table",
            ));
        };
        let Some(price) = table.find(&ask.provider, &ask.model) else {
            return Err(Error::invalid_argument(format!(
                "{} call '{}': the price table ({}) has no price for model '{}' of provider '{}'; a budget never counts a call as free: add the model to the run's prices (docs/budgets.md)",
                req.kind.as_str(),
                req.name,
                table.hash(),
                ask.model,
                ask.provider
            )));
        };
        let llm = LlmAsk {
            prices: Some(&price.prices),
            input_tokens: ask.input_tokens,
            max_tokens: ask.max_tokens.unwrap_or(NO_MAX_TOKENS),
            clamp_to_at_least: match ask.max_tokens {
                Some(_) => ask.min_tokens,
                None => Some(ask.min_tokens.unwrap_or(1)),
            },
        };
        Ok(match reserve_llm(&left, &llm) {
            // Without `maxTokens` and nothing limiting output: its output is not known
            // before it is made, so only its prompt and the call are reserved.
            Reservation::Fits { .. } if ask.max_tokens.is_none() => {
                Decision::Reserve(llm.amounts(0), None)
            }
            Reservation::Fits { amounts } => Decision::Reserve(amounts, None),
            Reservation::Clamped {
                max_tokens,
                amounts,
            } => Decision::Reserve(amounts, Some(max_tokens)),
            Reservation::Refused {
                dimension,
                requested,
                ..
            } => deny(dimension, requested),
        })
    }

    /// What a finished call is charged: its reported usage priced (one call), its whole
    /// reservation when it reported none, nothing when the cache answered.
    fn charge_of(&self, ledger: &Ledger, entry: &JournalEntry, outcome: &CallOutcome) -> Amounts {
        if outcome.cached {
            return Amounts::ZERO;
        }
        // A tool costs its price per call (its reservation), whatever it reports.
        if entry.started.kind == CallKind::Tool {
            let tokens = outcome
                .usage
                .as_ref()
                .map_or(Amounts::ZERO, |u| ledger::amounts_of(u, 0, 0));
            return entry.reserve.plus(&tokens);
        }
        let Some(usage) = &outcome.usage else {
            return entry.reserve;
        };
        let (provider, asked) = match &entry.ask {
            Some(a) => (a.provider.as_str(), Some(a.model.as_str())),
            None => (&*entry.started.name, None),
        };
        let price = ledger.prices.as_deref().and_then(|t| {
            usage
                .model
                .as_deref()
                .and_then(|m| t.find(provider, m))
                .or_else(|| asked.and_then(|m| t.find(provider, m)))
        });
        let cost = price.map_or(0, |p| p.prices.cost_micro_usd(usage));
        ledger::amounts_of(usage, cost, 1)
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
        let recorded = journal.entries.get(journal.issued as usize);
        let sub = recorded.map_or(journal.next_sub.max(1), |e| e.sub);
        // The policy decides the same on every execution, so a resumed call compares alike.
        let judged = self.judge_request(slot, req, sub);
        if let Some(entry) = recorded {
            self.check_same_call(slot, entry, req, &judged)?;
            let max = entry.started.max_tokens;
            if let Some(v) = &entry.blocked {
                return Ok(CallStep::Reuse(self.ticket(
                    slot,
                    req.kind,
                    call,
                    TicketState::PolicyDenied(v.clone()),
                    None,
                    None,
                )));
            }
            if let Some(refusal) = &entry.denied {
                return Ok(CallStep::Reuse(self.ticket(
                    slot,
                    req.kind,
                    call,
                    TicketState::Denied(refusal.clone()),
                    None,
                    None,
                )));
            }
            let request = match &judged {
                Judged::Pass { request, .. } => request.clone(),
                Judged::Deny(_) => None,
            };
            return Ok(CallStep::Reuse(match &entry.result {
                Some(outcome) => self.ticket(
                    slot,
                    req.kind,
                    call,
                    TicketState::Recorded(outcome.clone()),
                    max,
                    request,
                ),
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
                None => self.ticket(slot, req.kind, call, TicketState::Live, max, request),
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
        let (redacted, verdicts) = match judged {
            Judged::Deny(verdicts) => {
                let first = verdicts[0].clone();
                let data = EventData::CallDenied(CallDenied {
                    call,
                    kind: req.kind,
                    name: req.name.as_str().into(),
                    request: None,
                    budget: None,
                    verdicts,
                });
                let event = self.call_record(slot, sub, data);
                let ticket = self.ticket(
                    slot,
                    req.kind,
                    call,
                    TicketState::PolicyDenied(first),
                    None,
                    None,
                );
                return Ok(CallStep::Deny(Box::new(event), ticket));
            }
            Judged::Pass { request, verdicts } => (request, verdicts),
        };
        // What is recorded, reserved for and sent: the request as the policy left it.
        let sent: &Value = redacted.as_deref().unwrap_or(&req.request);
        let decision = match &self.ledger {
            Some(ledger) => Some(self.decide_budget(slot, ledger, req)?),
            None => None,
        };
        let (data, state, max_tokens) = match decision {
            Some(Decision::Deny(refusal)) => (
                EventData::CallDenied(CallDenied {
                    call,
                    kind: req.kind,
                    name: req.name.as_str().into(),
                    request: Some(Arc::new(sent.clone())),
                    budget: Some(refusal.clone()),
                    verdicts,
                }),
                TicketState::Denied(refusal),
                None,
            ),
            reserved => {
                let (reserve, max_tokens) = match reserved {
                    Some(Decision::Reserve(a, m)) => (Some(a), m),
                    _ => (None, None),
                };
                (
                    EventData::CallStarted(CallStarted {
                        call,
                        kind: req.kind,
                        name: req.name.as_str().into(),
                        request: Arc::new(sent.clone()),
                        reserve,
                        max_tokens,
                        verdicts,
                    }),
                    TicketState::Live,
                    max_tokens,
                )
            }
        };
        let event = self.call_record(slot, sub, data);
        let ticket = self.ticket(slot, req.kind, call, state, max_tokens, redacted);
        Ok(match ticket.state {
            TicketState::Denied(_) => CallStep::Deny(Box::new(event), ticket),
            _ => CallStep::Record(Box::new(event), ticket),
        })
    }

    /// A call record of `slot` at `sub`.
    fn call_record(&self, slot: &Slot, sub: u32, data: EventData) -> Event {
        let mut event = self.event(
            slot.completion_seq,
            Some(slot.id),
            Some(slot.node),
            Some(slot.attempt),
            data,
        );
        event.sub = Some(sub);
        event
    }

    /// Record a call decided by [`Machine::call_event`] (after its record was staged).
    pub(crate) fn apply_call_start(&mut self, act: u64, step: &CallStep, req: &CallRequest) {
        let i = self.call_slot(act).expect("decided for an open activation");
        let slot = &mut self.slots[i];
        let journal = &mut slot.calls;
        match step {
            CallStep::Record(event, _) | CallStep::Deny(event, _) => {
                let sub = event.sub.expect("call records have a sub");
                let mut entry = match &event.data {
                    EventData::CallStarted(started) => JournalEntry::new(started.clone(), sub),
                    EventData::CallDenied(d) => denied_entry(d, sub),
                    _ => unreachable!("call_event records callStarted or callDenied events"),
                };
                entry.ask = req.ask.clone();
                slot.account.charged = slot.account.charged.plus(&entry.reserve);
                if let (Some(r), None) = (&entry.denied, &journal.denial) {
                    journal.denial = Some(r.clone());
                }
                if let (Some(v), None) = (&entry.blocked, &journal.policy_denial) {
                    journal.policy_denial = Some(v.clone());
                }
                journal.entries.push(entry);
                journal.next_sub = sub + 2;
            }
            CallStep::Reuse(_) => {
                // A call re-issued after a resume prices its settlement as it did then.
                if let Some(e) = journal.entries.get_mut(journal.issued as usize) {
                    e.ask = req.ask.clone();
                }
            }
        }
        journal.issued += 1;
    }

    /// The result event of call `call` of activation `act`, without changing the run, and
    /// the outcome as it records it (what the agent gets: the policy may have redacted or
    /// blocked the response).
    ///
    /// Errors: `INVALID_COMPLETION` (the activation completed, the call was not started, was
    /// answered from the log, or already has its result).
    pub(crate) fn call_result_event(
        &self,
        act: u64,
        call: u32,
        outcome: &CallOutcome,
    ) -> Result<(Event, CallOutcome)> {
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
        if entry.denied.is_some() {
            return refuse("was refused by its budget");
        }
        if entry.blocked.is_some() {
            return refuse("was refused by the run's policy");
        }
        let charge = self
            .ledger
            .as_deref()
            .map(|l| self.charge_of(l, entry, outcome));
        let (judged, verdicts) = self.judge_outcome(slot, entry, outcome);
        let data = match &judged.result {
            Ok(response) => EventData::CallCompleted(CallCompleted {
                call,
                response: response.clone(),
                usage: judged.usage.clone(),
                cached: judged.cached,
                attempts: judged.attempts.clone(),
                charge,
                verdicts,
            }),
            Err(error) => EventData::CallFailed(CallFailed {
                call,
                error: error.clone(),
                usage: judged.usage.clone(),
                attempts: judged.attempts.clone(),
                charge,
                verdicts,
            }),
        };
        let event = self.call_record(slot, entry.sub + 1, data);
        Ok((event, judged))
    }

    /// Record a call's result built by [`Machine::call_result_event`] (the outcome it
    /// returned).
    pub(crate) fn apply_call_result(&mut self, act: u64, call: u32, outcome: CallOutcome) {
        let i = self.call_slot(act).expect("built for an open activation");
        let index = (call - 1) as usize;
        if let Some(ledger) = self.ledger.as_deref() {
            let entry = &self.slots[i].calls.entries[index];
            let charge = self.charge_of(ledger, entry, &outcome);
            let reserve = entry.reserve;
            let account = &mut self.slots[i].account;
            account.charged = account.charged.minus(&reserve).plus(&charge);
        }
        let entry = &mut self.slots[i].calls.entries[index];
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
        let slot = &mut self.slots[i];
        let journal = &mut slot.calls;
        let settle = |account: &mut super::ledger::Account,
                      journal: &Journal,
                      charge: Option<Amounts>| {
            if let (Some(c), Some(e)) = (charge, journal.entries.iter().find(|e| e.sub + 1 == sub))
            {
                account.charged = account.charged.minus(&e.reserve).plus(&c);
            }
        };
        match &event.data {
            EventData::CallStarted(started) => {
                let entry = JournalEntry::new(started.clone(), sub);
                slot.account.charged = slot.account.charged.plus(&entry.reserve);
                journal.entries.push(entry);
                journal.next_sub = sub + 2;
            }
            EventData::CallDenied(d) => {
                let entry = denied_entry(d, sub);
                if journal.denial.is_none() {
                    journal.denial = entry.denied.clone();
                }
                if journal.policy_denial.is_none() {
                    journal.policy_denial = entry.blocked.clone();
                }
                journal.entries.push(entry);
                journal.next_sub = sub + 2;
            }
            EventData::CallCompleted(c) => {
                settle(&mut slot.account, journal, c.charge);
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
                settle(&mut slot.account, journal, f.charge);
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

    fn check_same_call(
        &self,
        slot: &Slot,
        entry: &JournalEntry,
        req: &CallRequest,
        judged: &Judged,
    ) -> Result<()> {
        let s = &entry.started;
        // The request as the log would hold it now (redacted), or the digest of a block.
        let now = match judged {
            Judged::Pass { request, .. } => Ok(request.as_deref().unwrap_or(&req.request)),
            Judged::Deny(v) => Err(v[0].digest.as_deref()),
        };
        let block_digest = entry.blocked.as_ref().map(|v| v.digest.as_deref());
        let (field, expected, actual) = if s.kind != req.kind {
            (
                "data.kind".to_owned(),
                json(s.kind.as_str()),
                json(req.kind.as_str()),
            )
        } else if *s.name != *req.name {
            ("data.name".to_owned(), json(&s.name), json(&req.name))
        } else if let Some(recorded) = block_digest {
            // Refused when recorded: the log keeps the verdict's digest, not the request.
            match now {
                Err(digest) if digest == recorded => return Ok(()),
                Err(digest) => (
                    "data.verdicts[0].digest".to_owned(),
                    json(recorded.unwrap_or("")),
                    json(digest.unwrap_or("")),
                ),
                Ok(_) => ("type".to_owned(), json("callDenied"), json("callStarted")),
            }
        } else {
            match now {
                Err(_) => ("type".to_owned(), json("callStarted"), json("callDenied")),
                Ok(request) => match value_difference("data.request", &s.request, request) {
                    Some((path, a, b)) => (path, a.to_string(), b.to_string()),
                    None => return Ok(()),
                },
            }
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

/// The journal entry of a refused call.
fn denied_entry(d: &CallDenied, sub: u32) -> JournalEntry {
    let mut entry = JournalEntry::new(
        CallStarted {
            call: d.call,
            kind: d.kind,
            name: d.name.clone(),
            // A policy refusal keeps no request: its verdict's digest stands for it.
            request: d.request.clone().unwrap_or_else(|| Arc::new(Value::Null)),
            reserve: None,
            max_tokens: None,
            verdicts: Vec::new(),
        },
        sub,
    );
    entry.denied = d.budget.clone();
    if d.budget.is_none() {
        entry.blocked = d.verdicts.first().cloned();
    }
    entry
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
