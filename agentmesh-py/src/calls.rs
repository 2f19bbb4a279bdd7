//! Calls inside an activation (docs/calls.md): tickets, native providers, and the run-side
//! steps of a call. The agent API itself (`act.llm`, `act.tool`, streams, host executors)
//! is Python (`agentmesh/_calls.py`) on top of these steps; what runs natively here — the
//! commits and a native provider's network call — runs with the GIL released, and the run's
//! lock is held only for one commit, never across Python code or the call itself (so the
//! lone activation a driver runs on its own thread can call without deadlock).

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentmesh_core::{
    provider_error, refused_request, replayed_chunk, CallError, CallExecutor, CallKind,
    CallOutcome, CallRequest, CallTicket as CoreTicket, Error, ErrorKind, Run, TicketState,
    ToolAccess,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::{json, Value};

use crate::errors::{detached, to_py};
use crate::pyjson;

/// The run an activation's calls go to: the `NativeRun`'s own cell (`None` once closed).
pub type SharedRun = Arc<Mutex<Option<Run>>>;

/// Work on the run for a call, with the GIL already released. A closed run (the drive
/// ended, or was interrupted) refuses like a completed activation: `INVALID_COMPLETION`.
pub fn with_run<T>(
    run: &SharedRun,
    f: impl FnOnce(&mut Run) -> agentmesh_core::Result<T>,
) -> agentmesh_core::Result<T> {
    let mut guard = run.lock().map_err(|_| {
        Error::new(
            ErrorKind::Internal,
            "the run is unusable after an internal panic",
        )
    })?;
    match guard.as_mut() {
        Some(run) => f(run),
        None => Err(closed()),
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

fn closed() -> Error {
    Error::new(
        ErrorKind::InvalidCompletion,
        "call refused: the run is no longer driven (the activation ended)",
    )
}

/// An LLM provider executed by Rust (`Mesh.provider` with a configuration): one
/// OpenAI-compatible or Anthropic endpoint, or a fallback chain of them.
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativeProvider {
    name: String,
    exec: Arc<dyn CallExecutor>,
}

#[pymethods]
impl NativeProvider {
    /// Build provider `name` from `config` (a dict, or a list of them for a fallback
    /// chain; see docs/providers.md). `INVALID_ARGUMENT` naming the field.
    #[staticmethod]
    fn from_config(py: Python<'_>, name: String, config: &Bound<'_, PyAny>) -> PyResult<Self> {
        let config = pyjson::from_py(config).map_err(|why| {
            to_py(
                py,
                &invalid(format!(
                    "provider '{name}': the configuration is not JSON data: {why}"
                )),
            )
        })?;
        let exec = detached(py, || {
            agentmesh_providers::executor_from_config(&name, &config)
        })?;
        Ok(NativeProvider { name, exec })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __repr__(&self) -> String {
        format!("NativeProvider({:?})", self.name)
    }
}

/// What `act.call_start` hands back: the call's number, and whether to make the call
/// (`live`) or take the result the log already holds (`recorded`, with `outcome`).
#[pyclass(frozen, module = "agentmesh", name = "CallTicket")]
pub struct CallTicket {
    pub(crate) inner: CoreTicket,
    /// The request as the executor prepared it (a native provider's or tool's), for its
    /// execution; the policy's redaction of it (`inner.request`) is sent instead when set.
    prepared: Value,
    /// The native executor that makes the call, when it is a native provider's or tool's.
    exec: Option<Arc<dyn CallExecutor>>,
    /// A native tool's access: its rate limit delays the live call.
    access: Option<ToolAccess>,
}

#[pymethods]
impl CallTicket {
    /// The activation the call belongs to.
    #[getter]
    fn activation(&self) -> u64 {
        self.inner.activation
    }

    /// The call's number in its activation, from 1.
    #[getter]
    fn call(&self) -> u32 {
        self.inner.call
    }

    /// The seq the call's records sit under (the activation's completion seq).
    #[getter]
    fn seq(&self) -> u64 {
        self.inner.seq
    }

    /// Make the call now, then report it with `act.call_complete`.
    #[getter]
    fn live(&self) -> bool {
        self.inner.is_live()
    }

    /// The log answers it (`outcome`): call nothing, report nothing.
    #[getter]
    fn recorded(&self) -> bool {
        !self.inner.is_live()
    }

    /// The `maxTokens` a budget allows this call: send it instead of the request's. `None`
    /// when the budget did not clamp it.
    #[getter]
    fn max_tokens(&self) -> Option<u64> {
        self.inner.max_tokens
    }

    /// The request as the run's policy redacted it: send this one, never the original.
    /// `None` when the policy left the request as it was (or there is no policy).
    #[getter]
    fn request(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.inner.request {
            Some(r) => Ok(Some(pyjson::to_py(py, r)?.unbind())),
            None => Ok(None),
        }
    }

    /// The run's policy judges the response: give the agent nothing of it before
    /// `call_complete` returns, then only what it returns (a stream: one chunk of it).
    #[getter]
    fn hold_response(&self) -> bool {
        self.inner.hold_response
    }

    /// `blake3(runId, seq, call)`: the same when a call is re-issued after a crash.
    #[getter]
    fn idempotency_key(&self) -> &str {
        &self.inner.idempotency_key
    }

    /// The recorded result of a `recorded` ticket: `{"response"}` or `{"error"}`, with
    /// `"usage"` when it spent tokens; `None` for a live ticket.
    #[getter]
    fn outcome(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &self.inner.state {
            TicketState::Live | TicketState::Denied(_) | TicketState::PolicyDenied(_) => Ok(None),
            TicketState::Recorded(o) => {
                Ok(Some(crate::pyser::to_py(py, &outcome_json(o))?.unbind()))
            }
        }
    }

    /// The id the `i`-th tool call of an LLM response gets (`call_<seq>_<call>_<i>`).
    fn tool_call_id(&self, i: usize) -> String {
        self.inner.tool_call_id(i)
    }

    fn __repr__(&self) -> String {
        format!(
            "CallTicket(activation={}, call={}, seq={}, {})",
            self.inner.activation,
            self.inner.call,
            self.inner.seq,
            if self.inner.is_live() {
                "live"
            } else {
                "recorded"
            }
        )
    }
}

fn outcome_json(o: &CallOutcome) -> Value {
    let mut m = serde_json::Map::new();
    match &o.result {
        Ok(r) => m.insert("response".into(), (**r).clone()),
        Err(e) => m.insert("error".into(), json!(e)),
    };
    if let Some(u) = &o.usage {
        m.insert("usage".into(), json!(u));
    }
    Value::Object(m)
}

/// A call's request from Python: kind, name, request (JSON data) and the `ask` a budget
/// reserves (`None`: none).
pub fn request_of(
    py: Python<'_>,
    kind: &str,
    name: String,
    request: &Bound<'_, PyAny>,
    ask: Option<&Bound<'_, PyAny>>,
) -> PyResult<CallRequest> {
    let kind = CallKind::parse(kind).map_err(|e| to_py(py, &e))?;
    let request = pyjson::from_py(request).map_err(|why| {
        to_py(
            py,
            &invalid(format!(
                "{} call '{name}': the request is not JSON data: {why}",
                kind.as_str()
            )),
        )
    })?;
    let ask = crate::budget::ask_of(kind.as_str(), &name, ask).map_err(|e| to_py(py, &e))?;
    Ok(CallRequest {
        kind,
        name,
        request,
        ask,
    })
}

/// One entry of `call_start_many`: a `(kind, name, request)` or `(kind, name, request, ask)`
/// tuple, or a dict with those keys (`ask` optional).
pub fn request_item(py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<CallRequest> {
    let bad = || {
        to_py(
            py,
            &invalid(
                "call_start_many takes (kind, name, request[, ask]) tuples or dicts with kind, name, request and ask?",
            ),
        )
    };
    if let Ok(t) = item.cast::<PyTuple>() {
        if t.len() != 3 && t.len() != 4 {
            return Err(bad());
        }
        let kind: String = t.get_item(0)?.extract().map_err(|_| bad())?;
        let name: String = t.get_item(1)?.extract().map_err(|_| bad())?;
        let ask = if t.len() == 4 {
            Some(t.get_item(3)?)
        } else {
            None
        };
        return request_of(py, &kind, name, &t.get_item(2)?, ask.as_ref());
    }
    if let Ok(d) = item.cast::<PyDict>() {
        let get = |k: &str| d.get_item(k).ok().flatten();
        let kind: String = get("kind").ok_or_else(bad)?.extract().map_err(|_| bad())?;
        let name: String = get("name").ok_or_else(bad)?.extract().map_err(|_| bad())?;
        let request = match get("request") {
            Some(r) => r,
            None => py.None().into_bound(py),
        };
        return request_of(py, &kind, name, &request, get("ask").as_ref());
    }
    Err(bad())
}

/// Start calls of activation `act` (numbered in list order, one commit).
pub fn start_many(
    py: Python<'_>,
    run: &SharedRun,
    act: u64,
    reqs: Vec<CallRequest>,
) -> PyResult<Vec<CallTicket>> {
    let requests: Vec<Value> = reqs.iter().map(|r| r.request.clone()).collect();
    let tickets = detached(py, || with_run(run, |r| r.call_start_many(act, reqs)))?;
    // A call of the batch a budget or the policy refused is recorded with the others; the
    // batch raises its error.
    for t in &tickets {
        refusal(&t.state).map_err(|e| to_py(py, &e))?;
    }
    Ok(tickets
        .into_iter()
        .zip(requests)
        .map(|(inner, prepared)| CallTicket {
            inner,
            prepared,
            exec: None,
            access: None,
        })
        .collect())
}

/// The error of a ticket a budget (`BUDGET_EXCEEDED`) or the run's policy (`POLICY_DENIED`)
/// refused: nothing may be sent.
fn refusal(state: &TicketState) -> agentmesh_core::Result<()> {
    match state {
        TicketState::Denied(r) => Err(Error::budget_exceeded(r)),
        TicketState::PolicyDenied(v) => Err(Error::policy_denied(v)),
        _ => Ok(()),
    }
}

/// A call executed natively: a native provider's, or a native (MCP) tool's with its access.
pub struct Native<'a> {
    pub kind: &'static str,
    pub name: &'a str,
    pub exec: &'a Arc<dyn CallExecutor>,
    pub access: Option<&'a ToolAccess>,
}

impl<'a> Native<'a> {
    /// Native provider `provider`'s call.
    pub fn provider(provider: &'a NativeProvider) -> Native<'a> {
        Native {
            kind: "llm",
            name: &provider.name,
            exec: &provider.exec,
            access: None,
        }
    }
}

/// Start a native call of activation `act`, whose agent is `agent`, in the order of
/// `Context::call_with`: the tool's allowlist (`POLICY_DENIED`), then the executor's
/// `prepare`, which checks and normalises the request — that form is what is recorded
/// (`INVALID_ARGUMENT` naming the path if it refuses) — then `callStarted`. Refused: nothing
/// is recorded.
pub fn start_native(
    py: Python<'_>,
    run: &SharedRun,
    act: u64,
    agent: &str,
    call: Native<'_>,
    request: &Bound<'_, PyAny>,
) -> PyResult<CallTicket> {
    if let Some(access) = call.access {
        access.check(call.name, agent).map_err(|e| to_py(py, &e))?;
    }
    let mut req = request_of(py, call.kind, call.name.to_owned(), request, None)?;
    let exec = call.exec.clone();
    let (inner, prepared) = detached(py, || {
        req.request = exec
            .prepare(req.request)
            .map_err(|e| refused_request(req.kind, &req.name, &e))?;
        req.ask = exec.ask(&req.request);
        let prepared = req.request.clone();
        let ticket = with_run(run, |r| r.call_start(act, req))?;
        Ok((ticket, prepared))
    })?;
    Ok(CallTicket {
        inner,
        prepared,
        exec: Some(exec),
        access: call.access.cloned(),
    })
}

/// Wait `wait` (a rate limit's delay) with the GIL released, in slices, so Ctrl-C still
/// interrupts it (then the call stays started without a result, as after a crash).
pub fn sleep_interruptibly(py: Python<'_>, wait: Duration) -> PyResult<()> {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        py.detach(|| std::thread::sleep(left.min(POLL)));
        py.check_signals()?;
    }
}

/// The outcome a host reports (`call_complete`): a response or an error dict, and usage.
pub fn outcome_of(
    py: Python<'_>,
    response: Option<&Bound<'_, PyAny>>,
    usage: Option<&Bound<'_, PyAny>>,
    error: Option<&Bound<'_, PyAny>>,
) -> PyResult<CallOutcome> {
    let bad = |what: String| to_py(py, &invalid(what));
    let mut outcome = match (error.filter(|e| !e.is_none()), response) {
        (Some(e), None) => {
            let mut v = pyjson::from_py(e).map_err(|why| bad(format!("error: {why}")))?;
            // As in scripts: an error is retryable unless it says otherwise.
            if let Value::Object(m) = &mut v {
                m.entry("retryable").or_insert(Value::Bool(true));
            }
            let e: CallError = serde_json::from_value(v).map_err(|why| {
                bad(format!(
                    "error must be {{\"type\": str, \"message\": str, \"retryable\"?: bool, \"status\"?: int}}: {why}"
                ))
            })?;
            CallOutcome::err(e)
        }
        (Some(_), Some(_)) => {
            return Err(bad(
                "call_complete takes a response or an error, not both".to_owned()
            ))
        }
        (None, r) => {
            let v = match r {
                Some(r) => pyjson::from_py(r)
                    .map_err(|why| bad(format!("the response is not JSON data: {why}")))?,
                None => Value::Null,
            };
            CallOutcome::ok(v)
        }
    };
    outcome.usage = crate::completion::usage_of(usage).map_err(bad)?;
    Ok(outcome)
}

/// Report a live call's result: the outcome as recorded (the run's policy may have redacted
/// the response, or blocked it: then a `PolicyDeniedError` failure).
pub fn complete(
    py: Python<'_>,
    run: &SharedRun,
    act: u64,
    ticket: &CallTicket,
    outcome: CallOutcome,
) -> PyResult<CallOutcome> {
    check_owner(py, act, ticket)?;
    let call = ticket.inner.call;
    detached(py, || {
        with_run(run, |r| r.call_complete(act, call, outcome))
    })
}

fn check_owner(py: Python<'_>, act: u64, ticket: &CallTicket) -> PyResult<()> {
    if ticket.inner.activation != act {
        return Err(to_py(
            py,
            &invalid(format!(
                "the ticket is activation {}'s, not {act}'s",
                ticket.inner.activation
            )),
        ));
    }
    Ok(())
}

fn executor(py: Python<'_>, ticket: &CallTicket) -> PyResult<Arc<dyn CallExecutor>> {
    ticket.exec.clone().ok_or_else(|| {
        to_py(
            py,
            &invalid("this ticket is not a native provider's or tool's call"),
        )
    })
}

/// Execute a native provider's or tool's live call (after the tool's rate limit let it
/// start) and record its outcome; a recorded ticket gives the recorded outcome, at once.
/// Returns `(response, usage)`; a call's error raises `ProviderError`.
pub fn execute(
    py: Python<'_>,
    run: &SharedRun,
    act: u64,
    ticket: &CallTicket,
) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
    check_owner(py, act, ticket)?;
    refusal(&ticket.inner.state).map_err(|e| to_py(py, &e))?;
    let outcome = match &ticket.inner.state {
        TicketState::Recorded(o) => o.clone(),
        _ => {
            let exec = executor(py, ticket)?;
            if let Some(access) = &ticket.access {
                sleep_interruptibly(py, access.reserve())?;
            }
            detached(py, || {
                let outcome = run_call(&*exec, ticket.to_send(), &ticket.inner, None);
                // The agent gets what was recorded (redacted, or blocked into an error).
                with_run(run, |r| r.call_complete(act, ticket.inner.call, outcome))
            })?
        }
    };
    reply(py, &outcome)
}

fn run_call(
    exec: &dyn CallExecutor,
    request: &Value,
    ticket: &CoreTicket,
    on_chunk: Option<&mut dyn FnMut(&Value)>,
) -> CallOutcome {
    let started = Instant::now();
    let mut outcome = exec.execute(request, ticket, on_chunk);
    outcome.duration_us = Some(started.elapsed().as_micros() as u64);
    outcome
}

impl CallTicket {
    /// What a live call sends: the policy's redaction of the request when it made one.
    fn to_send(&self) -> &Value {
        self.inner.request.as_deref().unwrap_or(&self.prepared)
    }
}

/// A recorded outcome as the agent gets it: `(response, usage)`, or its error raised
/// (`ProviderError`; `PolicyDeniedError` for a response the run's policy blocked).
pub fn reply(py: Python<'_>, o: &CallOutcome) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
    match &o.result {
        Ok(r) => {
            let usage = match &o.usage {
                Some(u) => Some(crate::pyser::to_py(py, u)?.unbind()),
                None => None,
            };
            Ok((pyjson::to_py(py, r)?.unbind(), usage))
        }
        Err(e) => Err(to_py(py, &provider_error(e))),
    }
}

/// The `ProviderError` an agent gets for a call's error (`{"type", "message",
/// "retryable"?, "status"?}`), worded as in every host.
#[pyfunction]
pub fn provider_error_of(py: Python<'_>, error: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let o = outcome_of(py, None, None, Some(error))?;
    let e = o.result.expect_err("an error outcome");
    Ok(to_py(py, &provider_error(&e)).into_value(py).into_any())
}

enum StreamMsg {
    Chunk(Value),
    Done(agentmesh_core::Result<CallOutcome>),
}

/// The chunks of a native provider's streamed call, as they arrive (`{"text": ...}`
/// deltas; a recorded response is one chunk); `outcome()` once they end.
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativeChunks {
    state: Mutex<Chunks>,
}

struct Chunks {
    rx: Option<Receiver<StreamMsg>>,
    pending: Option<Value>,
    done: Option<agentmesh_core::Result<CallOutcome>>,
}

impl NativeChunks {
    fn new(chunks: Chunks) -> NativeChunks {
        NativeChunks {
            state: Mutex::new(chunks),
        }
    }

    /// The state, for one reader at a time: never waited for with the GIL held.
    fn state(&self, py: Python<'_>) -> PyResult<std::sync::MutexGuard<'_, Chunks>> {
        match self.state.try_lock() {
            Ok(g) => Ok(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => Err(to_py(
                py,
                &invalid("the stream is being read by another thread"),
            )),
        }
    }
}

/// How long one wait for a chunk lasts before Python may handle a signal (Ctrl-C).
const POLL: Duration = Duration::from_millis(100);

/// Stream a native provider's call: a live one runs on a thread of its own (the executor's
/// timeouts bound it) that records the outcome, so the agent reads chunks as they come.
pub fn stream(
    py: Python<'_>,
    run: &SharedRun,
    act: u64,
    ticket: &CallTicket,
) -> PyResult<NativeChunks> {
    check_owner(py, act, ticket)?;
    refusal(&ticket.inner.state).map_err(|e| to_py(py, &e))?;
    match &ticket.inner.state {
        TicketState::Recorded(o) => Ok(NativeChunks::new(Chunks {
            rx: None,
            pending: o.result.as_ref().ok().map(|r| replayed_chunk(r)),
            done: Some(Ok(o.clone())),
        })),
        _ => {
            let exec = executor(py, ticket)?;
            if let Some(access) = &ticket.access {
                sleep_interruptibly(py, access.reserve())?;
            }
            let (tx, rx) = channel();
            let run = run.clone();
            let request = ticket.to_send().clone();
            let core = ticket.inner.clone();
            std::thread::Builder::new()
                .name("agentmesh-llm-stream".into())
                .spawn(move || {
                    let chunks = tx.clone();
                    let mut on_chunk = |c: &Value| {
                        let _ = chunks.send(StreamMsg::Chunk(c.clone()));
                    };
                    // A response the policy judges streams nothing live: one chunk of what
                    // is recorded, once it is, as a replayed response streams.
                    let live: Option<&mut dyn FnMut(&Value)> = if core.hold_response {
                        None
                    } else {
                        Some(&mut on_chunk)
                    };
                    let outcome = run_call(&*exec, &request, &core, live);
                    let done = with_run(&run, |r| r.call_complete(act, core.call, outcome));
                    if let (true, Ok(Ok(response))) =
                        (core.hold_response, done.as_ref().map(|o| &o.result))
                    {
                        let _ = tx.send(StreamMsg::Chunk(replayed_chunk(response)));
                    }
                    let _ = tx.send(StreamMsg::Done(done));
                })
                .map_err(|e| {
                    to_py(
                        py,
                        &Error::new(
                            ErrorKind::Io,
                            format!("starting a streaming call's thread: {e}"),
                        ),
                    )
                })?;
            Ok(NativeChunks::new(Chunks {
                rx: Some(rx),
                pending: None,
                done: None,
            }))
        }
    }
}

#[pymethods]
impl NativeChunks {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next chunk, or `None` once the call has ended (then `outcome()`).
    fn next_chunk(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let mut st = self.state(py)?;
        if let Some(c) = st.pending.take() {
            return Ok(Some(pyjson::to_py(py, &c)?.unbind()));
        }
        loop {
            let Some(rx) = st.rx.take() else {
                return Ok(None);
            };
            let (rx, got) = py.detach(move || {
                let got = rx.recv_timeout(POLL);
                (rx, got)
            });
            st.rx = Some(rx);
            match got {
                Ok(StreamMsg::Chunk(c)) => return Ok(Some(pyjson::to_py(py, &c)?.unbind())),
                Ok(StreamMsg::Done(d)) => {
                    st.done = Some(d);
                    st.rx = None;
                }
                Err(RecvTimeoutError::Timeout) => py.check_signals()?,
                Err(RecvTimeoutError::Disconnected) => {
                    st.rx = None;
                    st.done = Some(Err(Error::new(
                        ErrorKind::Internal,
                        "a streaming call's thread ended without a result",
                    )));
                }
            }
        }
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.next_chunk(py)
    }

    /// `(response, usage)` once the chunks ended; the call's error raises `ProviderError`,
    /// a refused record its error (`INVALID_COMPLETION` for a late call).
    fn outcome(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
        let st = self.state(py)?;
        match &st.done {
            None => Err(to_py(py, &invalid("the stream has not ended yet"))),
            Some(Err(e)) => Err(to_py(py, e)),
            Some(Ok(o)) => reply(py, o),
        }
    }
}

/// Usage in any shape `Output` accepts, as the log records it (its keys), or `None`.
#[pyfunction]
pub fn normalize_usage(py: Python<'_>, usage: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
    let usage = crate::completion::usage_of(Some(usage)).map_err(|why| to_py(py, &invalid(why)))?;
    match usage {
        Some(u) => Ok(Some(crate::pyser::to_py(py, &u)?.unbind())),
        None => Ok(None),
    }
}
