//! What an agent gets besides its activation: cancelling the run, and making calls through
//! the run so each is recorded as it happens (docs/calls.md).
//!
//! The run has one writer, the driver. An agent on a pool thread reaches it through the
//! driver's channel; the lone activation the driver runs on its own thread (no thread hop
//! per step) reaches it directly, through a lock held only for the length of one call's
//! bookkeeping, never across user code or the call itself.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use super::{CancelHandle, Msg};
use crate::error::{Error, ErrorDetail, ErrorKind, Result};
use crate::model::call::{
    CallAsk, CallError, CallKind, CallOutcome, CallRequest, CallTicket, TicketState,
};
use crate::run::Run;

use super::tool_access::ToolAccess;

/// Makes calls on a host's behalf: an LLM provider (the `agentmesh-providers` crate has
/// OpenAI-compatible and Anthropic ones over `ureq`), or a tool. The core never does IO;
/// it records what an executor was asked and what it answered.
pub trait CallExecutor: Send + Sync {
    /// Check and normalise a request before it is recorded (the same request written by any
    /// host gives the same bytes). The default takes it as it is.
    ///
    /// Errors: a [`CallError`] the agent gets as `INVALID_ARGUMENT`; nothing is recorded.
    fn prepare(&self, request: Value) -> std::result::Result<Value, CallError> {
        Ok(request)
    }

    /// What a prepared request may cost, for budgets to reserve before it is sent (an LLM
    /// provider estimates its prompt and reads its `maxTokens`). The default says nothing:
    /// the call reserves one call and is charged what it reports.
    fn ask(&self, _request: &Value) -> Option<CallAsk> {
        None
    }

    /// Make the call. `request` is the canonical request (what the log holds); the ticket
    /// gives the idempotency key and the ids to give tool calls; `on_chunk`, when given,
    /// receives the response as it streams (`{"text": "..."}` deltas). Errors and usage are
    /// in the outcome.
    fn execute(
        &self,
        request: &Value,
        ticket: &CallTicket,
        on_chunk: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome;
}

/// The executors a mesh has, by name: LLM providers and tools agents call.
#[derive(Default, Clone)]
pub(crate) struct Executors {
    pub(crate) providers: HashMap<String, Arc<dyn CallExecutor>>,
    pub(crate) tools: HashMap<String, (Arc<dyn CallExecutor>, ToolAccess)>,
}

/// A call's request to the driver thread, which owns the run.
pub(crate) enum CallMsg {
    Start(u64, Vec<CallRequest>, Sender<Result<Vec<CallTicket>>>),
    Complete(u64, u32, Box<CallOutcome>, Sender<Result<CallOutcome>>),
}

impl CallMsg {
    /// Answer it with the run (on the driver thread).
    pub(crate) fn handle(self, run: &mut Run) {
        match self {
            CallMsg::Start(act, reqs, reply) => {
                let _ = reply.send(run.call_start_many(act, reqs));
            }
            CallMsg::Complete(act, call, outcome, reply) => {
                let _ = reply.send(run.call_complete(act, call, *outcome));
            }
        }
    }
}

#[derive(Clone)]
enum Port<'a> {
    /// The agent runs on the driver's thread: the run, locked per call.
    Direct(&'a Mutex<&'a mut Run>),
    /// The agent runs on a pool thread: ask the driver.
    Driver(Sender<Msg>),
}

/// Passed to agents alongside the activation.
#[derive(Clone)]
pub struct Context<'a> {
    pub(crate) cancel: CancelHandle,
    act: u64,
    agent: Arc<str>,
    port: Port<'a>,
    executors: Arc<Executors>,
}

/// A call's response as an agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReply {
    /// The canonical response (`text`, `toolCalls`, `finishReason` for LLM calls; a tool's
    /// result).
    pub response: Arc<Value>,
    /// Tokens spent.
    pub usage: Option<crate::Usage>,
    /// Whether the log answered it (after a resume, in re-execute replay): nothing was sent.
    pub recorded: bool,
}

impl CallReply {
    /// The response's `text` (LLM calls), `""` when it has none.
    pub fn text(&self) -> &str {
        self.response
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The response's `finishReason` (LLM calls).
    pub fn finish_reason(&self) -> Option<&str> {
        self.response.get("finishReason").and_then(Value::as_str)
    }

    /// The response's `toolCalls` (LLM calls), empty when none.
    pub fn tool_calls(&self) -> &[Value] {
        self.response
            .get("toolCalls")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

impl<'a> Context<'a> {
    pub(crate) fn direct(
        cancel: CancelHandle,
        act: u64,
        agent: Arc<str>,
        run: &'a Mutex<&'a mut Run>,
        executors: Arc<Executors>,
    ) -> Context<'a> {
        Context {
            cancel,
            act,
            agent,
            port: Port::Direct(run),
            executors,
        }
    }

    pub(crate) fn driver(
        cancel: CancelHandle,
        act: u64,
        agent: Arc<str>,
        tx: Sender<Msg>,
        executors: Arc<Executors>,
    ) -> Context<'static> {
        Context {
            cancel,
            act,
            agent,
            port: Port::Driver(tx),
            executors,
        }
    }

    /// Cancel the run this activation belongs to. Takes effect before this activation's own
    /// result is recorded, so it is deterministic when called from inside an agent.
    pub fn cancel_run(&self, reason: &str) {
        self.cancel.cancel(reason);
    }

    /// The activation this context belongs to.
    pub fn activation(&self) -> u64 {
        self.act
    }

    /// The name of the agent (or tool) the activation runs: what a tool's allowlist names.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// Start a call ([`Run::call_start`]): `callStarted` is durable when this returns.
    ///
    /// Errors: as [`Run::call_start`].
    pub fn call_start(&self, req: CallRequest) -> Result<CallTicket> {
        let mut t = self.call_start_many(vec![req])?;
        let ticket = t.pop().expect("one ticket per request");
        match &ticket.state {
            TicketState::Denied(refusal) => Err(Error::budget_exceeded(refusal)),
            TicketState::PolicyDenied(verdict) => Err(Error::policy_denied(verdict)),
            _ => Ok(ticket),
        }
    }

    /// Start calls the agent makes concurrently, numbered in list order
    /// ([`Run::call_start_many`]). A call a budget refused has a `Denied` ticket (its
    /// `callDenied` is recorded with the others).
    ///
    /// Errors: as [`Run::call_start`].
    pub fn call_start_many(&self, reqs: Vec<CallRequest>) -> Result<Vec<CallTicket>> {
        match &self.port {
            Port::Direct(run) => lock(run).call_start_many(self.act, reqs),
            Port::Driver(tx) => {
                let (reply, rx) = channel();
                self.ask(tx, CallMsg::Start(self.act, reqs, reply))?;
                rx.recv().map_err(|_| closed())?
            }
        }
    }

    /// Report a live call's result ([`Run::call_complete`]); returns the outcome as recorded
    /// (use it: the run's policy may have redacted or blocked the response).
    ///
    /// Errors: as [`Run::call_complete`].
    pub fn call_complete(&self, ticket: &CallTicket, outcome: CallOutcome) -> Result<CallOutcome> {
        match &self.port {
            Port::Direct(run) => lock(run).call_complete(self.act, ticket.call, outcome),
            Port::Driver(tx) => {
                let (reply, rx) = channel();
                let msg = CallMsg::Complete(self.act, ticket.call, Box::new(outcome), reply);
                self.ask(tx, msg)?;
                rx.recv().map_err(|_| closed())?
            }
        }
    }

    fn ask(&self, tx: &Sender<Msg>, msg: CallMsg) -> Result<()> {
        tx.send(Msg::Call(msg)).map_err(|_| closed())
    }

    /// Send `request` to the LLM provider registered as `provider` ([`super::Mesh::provider`])
    /// and return its response, recorded: after a resume a call the log already answered is
    /// not sent again.
    ///
    /// Errors: `PROVIDER_ERROR` (the provider failed; the detail has the HTTP status and
    /// whether a retry may help), `UNKNOWN_AGENT` (no such provider), and the errors of
    /// [`Run::call_start`].
    pub fn llm(&self, provider: &str, request: Value) -> Result<CallReply> {
        self.call_with(CallRequest::llm(provider, request), None)
    }

    /// [`Context::llm`], with the response streamed to `on_chunk` as it arrives
    /// (`{"text": "..."}` deltas); the assembled response is what is recorded and returned.
    /// A response the log answers is streamed as one chunk.
    ///
    /// Errors: as [`Context::llm`].
    pub fn llm_stream(
        &self,
        provider: &str,
        request: Value,
        on_chunk: &mut dyn FnMut(&Value),
    ) -> Result<CallReply> {
        self.call_with(CallRequest::llm(provider, request), Some(on_chunk))
    }

    /// Call the tool registered as `name` ([`super::Mesh::call_tool`]) with `arguments`,
    /// recorded like an LLM call.
    ///
    /// Errors: `PROVIDER_ERROR` (the tool failed), `UNKNOWN_AGENT`, and the errors of
    /// [`Run::call_start`].
    pub fn tool(&self, name: &str, arguments: Value) -> Result<CallReply> {
        self.call_with(CallRequest::tool(name, arguments), None)
    }

    fn call_with(
        &self,
        req: CallRequest,
        on_chunk: Option<&mut dyn FnMut(&Value)>,
    ) -> Result<CallReply> {
        let found = match req.kind {
            CallKind::Llm => self.executors.providers.get(&req.name).map(|e| (e, None)),
            CallKind::Tool => self
                .executors
                .tools
                .get(&req.name)
                .map(|(e, a)| (e, Some(a))),
        };
        let Some((exec, access)) = found else {
            return Err(Error::new(
                ErrorKind::UnknownAgent,
                format!(
                    "no {} registered as '{}' with this mesh",
                    match req.kind {
                        CallKind::Llm => "provider",
                        CallKind::Tool => "tool",
                    },
                    req.name
                ),
            ));
        };
        let exec = exec.clone();
        if let Some(access) = access {
            access.check(&req.name, &self.agent)?;
        }
        let mut req = req;
        req.request = exec
            .prepare(req.request)
            .map_err(|e| refused_request(req.kind, &req.name, &e))?;
        req.ask = exec.ask(&req.request);
        let request = req.request.clone();
        let ticket = self.call_start(req)?;
        match &ticket.state {
            TicketState::Denied(refusal) => Err(Error::budget_exceeded(refusal)),
            TicketState::PolicyDenied(verdict) => Err(Error::policy_denied(verdict)),
            TicketState::Recorded(outcome) => {
                if let (Some(f), Ok(r)) = (on_chunk, &outcome.result) {
                    f(&replayed_chunk(r));
                }
                reply_of(outcome.clone(), true)
            }
            TicketState::Live => {
                let waited = access.map_or(std::time::Duration::ZERO, |a| {
                    let wait = a.reserve();
                    std::thread::sleep(wait);
                    wait
                });
                // Send what the policy left of the request; a judged response streams only
                // once it is recorded.
                let request = ticket.request.as_deref().unwrap_or(&request);
                let (live_chunks, held) = match on_chunk {
                    Some(f) if ticket.hold_response => (None, Some(f)),
                    f => (f, None),
                };
                let started = Instant::now();
                let mut outcome = exec.execute(request, &ticket, live_chunks);
                outcome.duration_us = Some(started.elapsed().as_micros() as u64);
                if !waited.is_zero() {
                    let mut meta = outcome.meta.as_deref().cloned().unwrap_or_default();
                    meta.rate_wait_us = Some(waited.as_micros() as u64);
                    outcome.meta = Some(Arc::new(meta));
                }
                let recorded = self.call_complete(&ticket, outcome)?;
                if let (Some(f), Ok(r)) = (held, &recorded.result) {
                    f(&replayed_chunk(r));
                }
                reply_of(recorded, false)
            }
        }
    }
}

/// The `INVALID_ARGUMENT` an agent gets when an executor's `prepare` refuses its request
/// (nothing is recorded), worded alike in every host.
pub fn refused_request(kind: CallKind, name: &str, e: &CallError) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("{} call '{name}': {}", kind.as_str(), e.message),
    )
}

/// The one chunk a recorded response is streamed as.
pub fn replayed_chunk(response: &Value) -> Value {
    let mut chunk = serde_json::Map::new();
    if let Some(t) = response.get("text") {
        chunk.insert("text".into(), t.clone());
    }
    if let Some(t) = response.get("toolCalls") {
        chunk.insert("toolCalls".into(), t.clone());
    }
    Value::Object(chunk)
}

fn reply_of(outcome: CallOutcome, recorded: bool) -> Result<CallReply> {
    match outcome.result {
        Ok(response) => Ok(CallReply {
            response,
            usage: outcome.usage,
            recorded,
        }),
        Err(e) => Err(provider_error(&e)),
    }
}

/// The `PROVIDER_ERROR` an agent gets for a call's recorded error (`POLICY_DENIED` for a
/// response the run's policy blocked).
pub fn provider_error(e: &CallError) -> Error {
    if e.error_type == ErrorKind::PolicyDenied.class_name() {
        return Error::new(ErrorKind::PolicyDenied, e.message.clone());
    }
    let status = e
        .status
        .map_or_else(String::new, |s| format!(" (HTTP {s})"));
    Error::new(
        ErrorKind::ProviderError,
        format!("{}{status}: {}", e.error_type, e.message),
    )
    .with_detail(ErrorDetail::Provider {
        error_type: e.error_type.clone(),
        status: e.status,
        retryable: e.retryable,
    })
}

fn lock<'m, 'r>(run: &'m Mutex<&'r mut Run>) -> std::sync::MutexGuard<'m, &'r mut Run> {
    run.lock().unwrap_or_else(|p| p.into_inner())
}

fn closed() -> Error {
    Error::new(
        ErrorKind::InvalidCompletion,
        "call refused: the run is no longer driven (the activation ended)",
    )
}
