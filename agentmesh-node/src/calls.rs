//! Calls inside activations for the TypeScript driver (docs/calls.md): the run's call
//! protocol (`NativeCalls`: `start`, `complete`, `end`), and built-in LLM providers
//! (`NativeExecutor`, from `agentmesh-providers`) executed off the JS thread.
//!
//! A native call follows the Rust driver's `Context::call_with` (agentmesh-core
//! `driver/context.rs`): `prepare` normalises the request (what is recorded), `call_start`
//! commits `callStarted`; a `Recorded` ticket is answered from the log; a `Live` one is
//! executed on a dedicated `std::thread` (not libuv's pool: a slow HTTP call must not starve
//! `fs`), which records the result itself (`call_complete`, durable before the agent sees it)
//! and settles a Promise (`env.create_deferred`; no tokio). Streamed chunks reach JavaScript
//! through a ThreadsafeFunction as JSON text, fire-and-forget (`call`, never `call_async`:
//! the JS side never throws from it); the outcome carries how many were sent, so JavaScript
//! knows when it has them all (the Promise and the chunks travel on different queues).
//!
//! The run is locked for each piece of bookkeeping only (`shared.rs`), never across the
//! network call or JavaScript.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use agentmesh_core::{
    refused_request, CallAsk, CallError, CallExecutor, CallKind, CallOutcome, CallRequest,
    CallTicket, Error, ErrorKind, TicketState, ToolAccess, Usage,
};
use napi::bindgen_prelude::{ToNapiValue, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, Env, JsValue, Status};
use napi_derive::napi;
use serde_json::{Map, Value};

use crate::args;
use crate::errors::{error_value, guard, invalid_argument, panicked, serde_value, to_js, OrThrow};
use crate::json::{self, from_js, Refused};
use crate::shared::{self, SharedRun};

/// A JS value built here (`json::write`), handed to napi as it is.
pub struct Js(pub(crate) sys::napi_value);

impl ToNapiValue for Js {
    unsafe fn to_napi_value(_env: sys::napi_env, val: Js) -> napi::Result<sys::napi_value> {
        Ok(val.0)
    }
}

/// A call error as JavaScript gives it (`{type, message, retryable?, status?}`).
#[napi(object, object_to_js = false)]
pub struct CallErrorArg {
    /// Error type (`ProviderError`, an exception class name, ...).
    #[napi(js_name = "type")]
    pub error_type: String,
    /// Message (never a secret).
    pub message: String,
    /// Whether a retry may help (default `true`).
    pub retryable: Option<bool>,
    /// HTTP status, when a service answered.
    pub status: Option<u32>,
}

impl CallErrorArg {
    fn into_core(self) -> agentmesh_core::Result<CallError> {
        let status = match self.status {
            None => None,
            Some(s) => Some(u16::try_from(s).map_err(|_| {
                invalid_argument(format!("a call error's status must be 0 to 65535, not {s}"))
            })?),
        };
        Ok(CallError {
            error_type: self.error_type,
            message: self.message,
            retryable: self.retryable.unwrap_or(true),
            status,
        })
    }
}

/// What a host-made call may cost, estimated before it is sent (`CallRequest.ask`): what a
/// budget reserves, and may clamp `maxTokens` of.
#[napi(object, object_to_js = false)]
pub struct CallAskArg {
    /// The price table's provider id for the model.
    pub provider: String,
    /// The model asked for.
    pub model: String,
    /// Estimated prompt tokens (an integer from 0 to 2^53-1).
    pub input_tokens: f64,
    /// The request's `maxTokens` (absent: a limited budget clamps it to what fits).
    pub max_tokens: Option<f64>,
    /// The smallest `maxTokens` the call accepts when a budget clamps it.
    pub min_tokens: Option<f64>,
}

impl CallAskArg {
    fn into_core(self) -> agentmesh_core::Result<CallAsk> {
        let tokens = |field: &str, n: Option<f64>| {
            n.map(|n| args::uint(&format!("ask.{field}"), n))
                .transpose()
        };
        Ok(CallAsk {
            provider: self.provider,
            model: self.model,
            input_tokens: args::uint("ask.inputTokens", self.input_tokens)?,
            max_tokens: tokens("maxTokens", self.max_tokens)?,
            min_tokens: tokens("minTokens", self.min_tokens)?,
        })
    }
}

/// A built-in executor (`agentmesh-providers`): an LLM provider (one HTTP provider, or a
/// fallback chain), or a tool of an MCP server (`tools.rs`) with its access rules.
#[napi]
pub struct NativeExecutor {
    inner: Arc<dyn CallExecutor>,
    /// A tool's allowlist and rate limit (`None` for providers).
    access: Option<ToolAccess>,
}

impl NativeExecutor {
    /// A call tool executed natively, under `access`.
    pub(crate) fn tool(inner: Arc<dyn CallExecutor>, access: ToolAccess) -> NativeExecutor {
        NativeExecutor {
            inner,
            access: Some(access),
        }
    }
}

#[napi]
impl NativeExecutor {
    /// The provider registered as `name` from `config` (`{kind: 'openai' | 'anthropic',
    /// baseUrl, model, apiKeyEnv, …Ms, maxRetries, …}`), or a list of them (a fallback
    /// chain). Errors: `INVALID_ARGUMENT` naming the field.
    #[napi(factory, catch_unwind)]
    pub fn from_config(
        env: &Env,
        name: String,
        #[napi(ts_arg_type = "unknown")] config: Unknown<'_>,
    ) -> napi::Result<NativeExecutor> {
        let config = args::json(env, "config", Some(&config))?;
        let inner =
            guard(|| agentmesh_providers::executor_from_config(&name, &config)).or_throw(env)?;
        Ok(NativeExecutor {
            inner,
            access: None,
        })
    }
}

/// The call protocol of one run (`NativeRun.calls()`).
#[napi]
pub struct NativeCalls {
    cell: SharedRun,
}

impl NativeCalls {
    pub(crate) fn new(cell: SharedRun) -> NativeCalls {
        NativeCalls { cell }
    }

    /// `call_start_many` under the lock, unless the activation's calls are closed.
    fn start_many(
        &self,
        act: u64,
        reqs: Vec<CallRequest>,
    ) -> agentmesh_core::Result<Vec<CallTicket>> {
        let mut cell = shared::lock(&self.cell);
        cell.check_open(act)?;
        let tickets = cell.with(|r| r.call_start_many(act, reqs))?;
        // A call a budget or the policy refused is recorded with the others; the batch
        // throws its error.
        for t in &tickets {
            match &t.state {
                TicketState::Denied(r) => return Err(agentmesh_core::Error::budget_exceeded(r)),
                TicketState::PolicyDenied(v) => {
                    return Err(agentmesh_core::Error::policy_denied(v))
                }
                _ => {}
            }
        }
        Ok(tickets)
    }
}

/// A value JavaScript gave as data, or as JSON text when `text` (exact numbers: `1.0`, 2^64).
fn data(env: &Env, what: &str, value: &Unknown<'_>, text: bool) -> napi::Result<Value> {
    if text {
        let s = unsafe {
            <String as napi::bindgen_prelude::FromNapiValue>::from_napi_value(
                env.raw(),
                value.raw(),
            )
        }?;
        return serde_json::from_str(&s).map_err(|e| {
            to_js(
                env,
                &invalid_argument(format!("{what} is not valid JSON text: {e}")),
            )
        });
    }
    args::json(env, what, Some(value))
}

#[napi]
impl NativeCalls {
    /// Start calls of activation `act`, numbered in list order, in one commit: `kinds[i]`
    /// (`llm` | `tool`), `names[i]`, `requests[i]` (JSON data, or JSON text when
    /// `texts[i]`), recorded as given, with what each may cost (`asks[i]`, for a budget to
    /// reserve). Returns one ticket per call. Errors: as the core's `Run::call_start`
    /// (`INVALID_COMPLETION` also when the activation's agent returned; `BUDGET_EXCEEDED`
    /// when a budget refused one of them: the batch, the refusal among it, is recorded).
    #[napi(catch_unwind, ts_return_type = "import('./native-raw').NativeTicket[]")]
    #[allow(clippy::too_many_arguments)] // positional, as the JS driver calls it
    pub fn start(
        &self,
        env: &Env,
        act: f64,
        kinds: Vec<String>,
        names: Vec<String>,
        #[napi(ts_arg_type = "unknown[]")] requests: Vec<Unknown<'_>>,
        texts: Vec<bool>,
        asks: Option<Vec<Option<CallAskArg>>>,
    ) -> napi::Result<Js> {
        let act = args::uint("activation", act).or_throw(env)?;
        let mut asks = asks.unwrap_or_default();
        if asks.is_empty() {
            asks.resize_with(kinds.len(), || None);
        }
        if kinds.len() != names.len()
            || names.len() != requests.len()
            || requests.len() != texts.len()
            || texts.len() != asks.len()
        {
            return Err(to_js(
                env,
                &invalid_argument("calls.start: the lists differ in length"),
            ));
        }
        let mut reqs = Vec::with_capacity(kinds.len());
        for (i, ((kind, name), ask)) in kinds.into_iter().zip(names).zip(asks).enumerate() {
            let kind = CallKind::parse(&kind).or_throw(env)?;
            let request = data(env, "a call's request", &requests[i], texts[i])?;
            let ask = ask.map(CallAskArg::into_core).transpose().or_throw(env)?;
            reqs.push(CallRequest {
                kind,
                name,
                request,
                ask,
            });
        }
        // Every JS value is read: from here on no JavaScript runs while the run is locked.
        let tickets = self.start_many(act, reqs).or_throw(env)?;
        let list = tickets
            .iter()
            .map(ticket_value)
            .collect::<agentmesh_core::Result<Vec<_>>>()
            .or_throw(env)?;
        // SAFETY: the current call's environment, on its thread.
        Ok(Js(unsafe { json::write(env.raw(), &Value::Array(list)) }?))
    }

    /// Report the result of live call `call` of activation `act`: `response` (JSON data, or
    /// JSON text when `responseJson` is given) or `error`, with `usage`. Returns the outcome
    /// as recorded (`{response | error, usage?}`): the run's policy may have redacted the
    /// response, or blocked it (an error of type `PolicyDeniedError`). Errors: as the core's
    /// `Run::call_complete`; `INVALID_OUTPUT` for a response that is not JSON data (nothing
    /// is written); `INVALID_COMPLETION` also when the activation's agent returned.
    #[napi(catch_unwind, ts_return_type = "import('./native-raw').NativeOutcome")]
    #[allow(clippy::too_many_arguments)] // positional, as the JS driver calls it
    pub fn complete(
        &self,
        env: &Env,
        act: f64,
        call: u32,
        #[napi(ts_arg_type = "unknown")] response: Option<Unknown<'_>>,
        response_json: Option<String>,
        #[napi(ts_arg_type = "unknown")] usage: Option<Unknown<'_>>,
        error: Option<CallErrorArg>,
        duration_us: Option<f64>,
    ) -> napi::Result<Js> {
        let act = args::uint("activation", act).or_throw(env)?;
        let result = match (error, response_json) {
            (Some(e), _) => Err(e.into_core().or_throw(env)?),
            (None, Some(text)) => Ok(serde_json::from_str(&text).map_err(|e| {
                to_js(
                    env,
                    &invalid_output(call, &format!("responseJson is not valid JSON text: {e}")),
                )
            })?),
            (None, None) => Ok(match &response {
                None => Value::Null,
                Some(v) => from_js(env, v).map_err(|r| match r {
                    Refused::NotJson(why) => to_js(env, &invalid_output(call, &why)),
                    Refused::Js(e) => e,
                })?,
            }),
        };
        let usage = match &usage {
            None => None,
            Some(u) => match args::json(env, "usage", Some(u))? {
                Value::Null => None,
                v => Some(
                    Usage::from_value(&v)
                        .map_err(|why| to_js(env, &invalid_argument(format!("usage: {why}"))))?,
                ),
            },
        };
        let mut outcome = match result {
            Ok(v) => CallOutcome::ok(v),
            Err(e) => CallOutcome::err(e),
        };
        outcome.usage = usage;
        outcome.duration_us = match duration_us {
            None => None,
            Some(us) => Some(args::uint("durationUs", us.round().max(0.0)).or_throw(env)?),
        };
        let recorded = {
            let mut cell = shared::lock(&self.cell);
            cell.check_open(act)
                .and_then(|_| cell.with(|r| r.call_complete(act, call, outcome)))
                .or_throw(env)?
        };
        let value = outcome_value(&recorded, 0).or_throw(env)?;
        // SAFETY: the current call's environment, on its thread.
        Ok(Js(unsafe { json::write(env.raw(), &value) }?))
    }

    /// Close the calls of activation `act`: its agent returned. Later `start`s and
    /// `complete`s (an unawaited Promise, a native call still in flight) are refused with
    /// `INVALID_COMPLETION` and nothing is logged.
    #[napi]
    pub fn end(&self, env: &Env, act: f64) -> napi::Result<()> {
        let act = args::uint("activation", act).or_throw(env)?;
        shared::lock(&self.cell).end(act);
        Ok(())
    }

    /// Make a call of agent `agent` with a built-in executor (see the module docs), in the
    /// order of the Rust driver's `Context::call_with`: a tool's allowlist, the executor's
    /// `prepare`, `call_start`, then for a live ticket the tool's rate-limit slot (waited for
    /// on the call's thread) and the call. Returns its ticket; a live ticket has `done`, a
    /// Promise of the outcome (`{response?, usage?, error?, chunks}`), rejected with the
    /// core's error when the result could not be recorded. `onChunk(text)` gets each streamed
    /// chunk as JSON text. Errors: `POLICY_DENIED` (the agent may not call the tool),
    /// `INVALID_ARGUMENT` (the executor refuses the request), both before anything is
    /// recorded; and those of `start`.
    #[napi(
        catch_unwind,
        ts_return_type = "import('./native-raw').NativeTicket & { done?: Promise<import('./native-raw').NativeOutcome> }"
    )]
    #[allow(clippy::too_many_arguments)] // positional, as the JS driver calls it
    pub fn native(
        &self,
        env: &Env,
        executor: &NativeExecutor,
        act: f64,
        kind: String,
        name: String,
        agent: String,
        #[napi(ts_arg_type = "unknown")] request: Unknown<'_>,
        #[napi(ts_arg_type = "((chunk: string) => void) | undefined | null")] on_chunk: Option<
            ThreadsafeFunction<String, (), String, Status, false>,
        >,
    ) -> napi::Result<Js> {
        let act = args::uint("activation", act).or_throw(env)?;
        let kind = CallKind::parse(&kind).or_throw(env)?;
        let request = args::json(env, "a call's request", Some(&request))?;
        let exec = executor.inner.clone();
        let access = executor.access.clone();
        if let Some(access) = &access {
            access.check(&name, &agent).or_throw(env)?;
        }
        let request = guard(|| {
            exec.prepare(request)
                .map_err(|e| refused_request(kind, &name, &e))
        })
        .or_throw(env)?;
        let req = CallRequest {
            kind,
            ask: exec.ask(&request),
            name,
            request: request.clone(),
        };
        let mut tickets = self.start_many(act, vec![req]).or_throw(env)?;
        let ticket = tickets.pop().expect("one ticket per request");
        let value = ticket_value(&ticket).or_throw(env)?;
        // SAFETY: the current call's environment, on its thread.
        let object = unsafe { json::write(env.raw(), &value) }?;
        if !ticket.is_live() {
            return Ok(Js(object));
        }
        let (deferred, promise) = env.create_deferred::<Js, Resolver>()?;
        let cell = self.cell.clone();
        std::thread::Builder::new()
            .name(format!("agentmesh-call-{act}-{}", ticket.call))
            .spawn(move || {
                if let Some(access) = &access {
                    access.wait_for_slot();
                }
                // Send what the policy left of the request; a judged response streams only
                // once it is recorded (the JS side gives the agent its one chunk then).
                let sent = ticket.request.as_deref().unwrap_or(&request);
                let chunks_to = if ticket.hold_response { None } else { on_chunk };
                let (outcome, chunks) = execute(exec.as_ref(), sent, &ticket, chunks_to);
                let recorded = {
                    let mut c = shared::lock(&cell);
                    c.check_open(act)
                        .and_then(|_| c.with(|r| r.call_complete(act, ticket.call, outcome)))
                };
                let reply = recorded.and_then(|o| outcome_value(&o, chunks));
                deferred.resolve(Box::new(move |env: Env| match reply {
                    // SAFETY: the resolver runs on the JS thread with its environment.
                    Ok(v) => Ok(Js(unsafe { json::write(env.raw(), &v) }?)),
                    Err(e) => Err(to_js(&env, &e)),
                }));
            })
            .map_err(|e| {
                to_js(
                    env,
                    &Error::new(
                        ErrorKind::Io,
                        format!("could not start a thread for the call: {e}"),
                    ),
                )
            })?;
        // SAFETY: `object` and `promise` belong to the current call's environment.
        let status = unsafe {
            sys::napi_set_named_property(env.raw(), object, c"done".as_ptr(), promise.raw())
        };
        if status != sys::Status::napi_ok {
            return Err(napi::Error::new(
                Status::GenericFailure,
                "setting done".to_owned(),
            ));
        }
        Ok(Js(object))
    }
}

/// What settles a native call's Promise, on the JS thread.
type Resolver = Box<dyn FnOnce(Env) -> napi::Result<Js> + Send>;

/// Execute a live call (on its own thread): the outcome, timed, and how many chunks were sent.
/// A panic in the executor is the call's error, never an unwind into Node.
fn execute(
    exec: &dyn CallExecutor,
    request: &Value,
    ticket: &CallTicket,
    on_chunk: Option<ThreadsafeFunction<String, (), String, Status, false>>,
) -> (CallOutcome, u64) {
    let started = Instant::now();
    let mut chunks = 0u64;
    let run = catch_unwind(AssertUnwindSafe(|| match &on_chunk {
        Some(tsfn) => {
            let mut each = |chunk: &Value| {
                chunks += 1;
                let _ = tsfn.call(chunk.to_string(), ThreadsafeFunctionCallMode::NonBlocking);
            };
            exec.execute(request, ticket, Some(&mut each))
        }
        None => exec.execute(request, ticket, None),
    }));
    let mut outcome = run.unwrap_or_else(|p| {
        CallOutcome::err(CallError::new("Internal", panicked(p).to_string()).permanent())
    });
    outcome.duration_us = Some(started.elapsed().as_micros() as u64);
    (outcome, chunks)
}

/// `INVALID_OUTPUT` for a call response that is not JSON data.
fn invalid_output(call: u32, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOutput,
        format!("call {call}: the response is not JSON data: {why}"),
    )
}

/// A ticket as JavaScript gets it: `{activation, call, seq, idempotencyKey, live}`, the
/// `maxTokens` a budget clamped the call to, and for a recorded call its `response` or
/// `error`, `usage`, `cached`.
fn ticket_value(t: &CallTicket) -> agentmesh_core::Result<Value> {
    let mut m = Map::new();
    m.insert("activation".into(), t.activation.into());
    m.insert("call".into(), t.call.into());
    m.insert("seq".into(), t.seq.into());
    m.insert("idempotencyKey".into(), t.idempotency_key.clone().into());
    m.insert("live".into(), t.is_live().into());
    if let Some(n) = t.max_tokens {
        m.insert("maxTokens".into(), n.into());
    }
    if let Some(r) = &t.request {
        m.insert("request".into(), (**r).clone());
    }
    if t.hold_response {
        m.insert("holdResponse".into(), true.into());
    }
    if let TicketState::Recorded(o) = &t.state {
        outcome_fields(&mut m, o)?;
        if o.cached {
            m.insert("cached".into(), true.into());
        }
    }
    Ok(Value::Object(m))
}

fn outcome_fields(m: &mut Map<String, Value>, o: &CallOutcome) -> agentmesh_core::Result<()> {
    match &o.result {
        Ok(r) => {
            m.insert("response".into(), (**r).clone());
        }
        Err(e) => {
            m.insert("error".into(), serde_value(e)?);
        }
    }
    if let Some(u) = &o.usage {
        m.insert("usage".into(), serde_value(u)?);
    }
    Ok(())
}

/// A live call's outcome as JavaScript gets it: `{response | error, usage?, chunks}`.
fn outcome_value(o: &CallOutcome, chunks: u64) -> agentmesh_core::Result<Value> {
    let mut m = Map::new();
    outcome_fields(&mut m, o)?;
    m.insert("chunks".into(), chunks.into());
    Ok(Value::Object(m))
}

/// The `PROVIDER_ERROR` an agent gets for a call's error, as an `Error` object (not thrown):
/// the core's one wording (`provider_error`), details `{type, status, retryable}`.
#[napi(js_name = "providerError", catch_unwind, ts_return_type = "Error")]
pub fn provider_error_value(env: &Env, error: CallErrorArg) -> napi::Result<Js> {
    let e = error.into_core().or_throw(env)?;
    let err = agentmesh_core::provider_error(&e);
    Ok(Js(error_value(env.raw(), &err)?))
}
