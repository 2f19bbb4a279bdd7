//! `agentmesh.Activation`: one unit of work handed to an agent, tool or person.
//!
//! A native, immutable object: building it costs a fraction of a microsecond, and `input`,
//! `deps`, `reads`, `item` and `last_failure` become Python objects only when an agent reads
//! them (then once per activation).

use std::collections::BTreeMap;
use std::sync::Arc;

use agentmesh_core::{Activation as CoreActivation, Error, ErrorKind, Failure, FailureKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use serde_json::Value;

use crate::calls::{self, CallTicket, Native, NativeChunks, NativeProvider, SharedRun};
use crate::errors::{detached, to_py};
use crate::item::Item;
use crate::pyjson;
use crate::tools::{NativeTool, NativeToolRules};

/// One unit of work handed to an agent, tool or person (fields as in the core). Read-only.
#[pyclass(frozen, module = "agentmesh", name = "Activation")]
pub struct Activation {
    pub(crate) inner: CoreActivation,
    /// The driver's `CancelToken` (`None` for activations reported outside a drive).
    token: Option<Py<PyAny>>,
    /// The run its calls are recorded in, and the mesh's providers and tools (`None`
    /// outside a drive).
    calls: Option<(SharedRun, Py<PyAny>)>,
    input: PyOnceLock<Py<PyAny>>,
    deps: PyOnceLock<Py<PyAny>>,
    reads: PyOnceLock<Py<PyAny>>,
    /// An `Item`, or `None` when the activation is not a map's item.
    item: PyOnceLock<Py<PyAny>>,
    /// The dict of `inner.last_failure` (never set when there is none).
    last_failure: PyOnceLock<Py<PyAny>>,
}

impl Activation {
    pub fn new(
        inner: CoreActivation,
        token: Option<Py<PyAny>>,
        calls: Option<(SharedRun, Py<PyAny>)>,
    ) -> Activation {
        Activation {
            inner,
            token,
            calls,
            input: PyOnceLock::new(),
            deps: PyOnceLock::new(),
            reads: PyOnceLock::new(),
            item: PyOnceLock::new(),
            last_failure: PyOnceLock::new(),
        }
    }
}

#[pymethods]
impl Activation {
    /// Activation id (the seq of its scheduling event).
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id
    }

    #[getter]
    fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    #[getter]
    fn node(&self) -> &str {
        &self.inner.node
    }

    /// `agent`, `tool` or `human`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }

    /// Agent or tool name (the node id for a human activation).
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Attempt within this visit, from 1.
    #[getter]
    fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Visit of the node, from 1 (more than 1 inside loops).
    #[getter]
    fn visit(&self) -> u64 {
        self.inner.visit
    }

    /// Retry backoff the driver waits before starting the agent.
    #[getter]
    fn delay_ms(&self) -> u64 {
        self.inner.delay_ms
    }

    /// Deadline of this attempt, after the delay (enforced by the driver).
    #[getter]
    fn timeout_ms(&self) -> Option<u64> {
        self.inner.timeout_ms
    }

    /// Prompt of a human activation.
    #[getter]
    fn prompt(&self) -> Option<&str> {
        self.inner.prompt.as_deref()
    }

    /// Deterministic per-activation seed, derived from the run seed: use it for sampling.
    #[getter]
    fn seed(&self) -> u64 {
        self.inner.seed
    }

    /// Superstep number.
    #[getter]
    fn step(&self) -> u64 {
        self.inner.step
    }

    /// The run input.
    #[getter]
    fn input(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.input.get_or_try_init(py, || {
            pyjson::to_py(py, &self.inner.input).map(Bound::unbind)
        })?;
        Ok(v.clone_ref(py))
    }

    /// Outputs of the node's completed `after` dependencies, by node id.
    #[getter]
    fn deps(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self
            .deps
            .get_or_try_init(py, || dict_of(py, &self.inner.deps))?;
        Ok(v.clone_ref(py))
    }

    /// The values of the node's `reads`, by path as written; a path with no value yet when
    /// the activation was scheduled is absent (empty without `reads`).
    #[getter]
    fn reads(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self
            .reads
            .get_or_try_init(py, || dict_of(py, &self.inner.reads))?;
        Ok(v.clone_ref(py))
    }

    /// The map item this activation runs (`index`, `key`, `value`), or `None` when it is not
    /// a map node's item.
    #[getter]
    fn item(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.item.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            match &self.inner.item {
                Some(item) => Ok(Py::new(py, Item::new(item.clone()))?.into_any()),
                None => Ok(py.None()),
            }
        })?;
        Ok(v.clone_ref(py))
    }

    /// The failure this attempt retries, as recorded: `{"kind": "error" | "timeout", "type",
    /// "message", "retryable"}` — an `OutputSchemaError` names the path the output got wrong,
    /// what to tell a model asked again. `None` on a first attempt and after a cancel.
    #[getter]
    fn last_failure(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let Some(failure) = &self.inner.last_failure else {
            return Ok(py.None());
        };
        let v = self
            .last_failure
            .get_or_try_init(py, || failure_dict(py, failure))?;
        Ok(v.clone_ref(py))
    }

    /// Cancel the run. Takes effect before this activation's own result is recorded.
    #[pyo3(signature = (reason = "cancelled"))]
    fn cancel_run(&self, py: Python<'_>, reason: &str) -> PyResult<()> {
        match &self.token {
            Some(token) => token.call_method1(py, "cancel", (reason,)).map(drop),
            None => Err(to_py(
                py,
                &Error::new(
                    ErrorKind::InvalidArgument,
                    "this activation is not being driven by a Mesh",
                ),
            )),
        }
    }

    // calls (agentmesh/_calls.py is the agent API; these are its native steps) -----------

    /// Start a call: `callStarted` is durable when this returns. `CallTicket.live`: make
    /// it and report it with `call_complete`; `recorded`: the log answers it (`outcome`).
    /// `ask` (`{"provider", "model", "inputTokens", "maxTokens"?, "minTokens"?}`) is what a
    /// budget reserves for an LLM call; a budget that refuses the call records `callDenied`
    /// and raises `BudgetExceededError`, the run's policy `PolicyDeniedError` (`rule`,
    /// `verdict`). A live ticket's `request`, when set, is the policy's redaction of the
    /// request: send it instead; `hold_response`: stream nothing before `call_complete`.
    #[pyo3(signature = (kind, name, request=None, ask=None))]
    fn call_start(
        &self,
        py: Python<'_>,
        kind: &str,
        name: String,
        request: Option<&Bound<'_, PyAny>>,
        ask: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<CallTicket> {
        let run = self.run(py)?;
        let none = py.None().into_bound(py);
        let req = calls::request_of(py, kind, name, request.unwrap_or(&none), ask)?;
        let mut t = calls::start_many(py, run, self.inner.id, vec![req])?;
        Ok(t.pop().expect("one ticket per request"))
    }

    /// Start calls made concurrently, numbered in list order, in one commit: `(kind, name,
    /// request)` or `(kind, name, request, ask)` tuples, or dicts with those keys (`ask`
    /// optional). A call a budget or the run's policy refuses is recorded with the others
    /// (`callDenied`), then the batch raises `BudgetExceededError` or `PolicyDeniedError`.
    fn call_start_many(
        &self,
        py: Python<'_>,
        calls: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<CallTicket>> {
        let run = self.run(py)?;
        let reqs = calls
            .try_iter()?
            .map(|item| calls::request_item(py, &item?))
            .collect::<PyResult<Vec<_>>>()?;
        calls::start_many(py, run, self.inner.id, reqs)
    }

    /// Report a live call's result: `response` (JSON data) or `error` (`{"type",
    /// "message", "retryable"?, "status"?}`), and the tokens it spent (`usage`). Returns
    /// the response as recorded — what the agent must use: the run's policy may have
    /// redacted it — or raises `PolicyDeniedError` when the policy blocked it (the block is
    /// recorded as the call's error first). `None` when an error was reported.
    #[pyo3(signature = (ticket, response=None, usage=None, error=None))]
    fn call_complete(
        &self,
        py: Python<'_>,
        ticket: PyRef<'_, CallTicket>,
        response: Option<&Bound<'_, PyAny>>,
        usage: Option<&Bound<'_, PyAny>>,
        error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let run = self.run(py)?;
        let reported_error = error.is_some_and(|e| !e.is_none());
        let outcome = calls::outcome_of(py, response, usage, error)?;
        let recorded = calls::complete(py, run, self.inner.id, &ticket, outcome)?;
        if reported_error {
            return Ok(None);
        }
        Ok(Some(calls::reply(py, &recorded)?.0))
    }

    /// `call_complete`, for the agent API: `(response, usage)` as recorded, or the recorded
    /// error raised as the agent gets it (`ProviderError`, `PolicyDeniedError`).
    #[pyo3(signature = (ticket, response=None, usage=None, error=None))]
    fn _call_record(
        &self,
        py: Python<'_>,
        ticket: PyRef<'_, CallTicket>,
        response: Option<&Bound<'_, PyAny>>,
        usage: Option<&Bound<'_, PyAny>>,
        error: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
        let run = self.run(py)?;
        let outcome = calls::outcome_of(py, response, usage, error)?;
        let recorded = calls::complete(py, run, self.inner.id, &ticket, outcome)?;
        calls::reply(py, &recorded)
    }

    fn _call_start_native(
        &self,
        py: Python<'_>,
        provider: PyRef<'_, NativeProvider>,
        request: &Bound<'_, PyAny>,
    ) -> PyResult<CallTicket> {
        let run = self.run(py)?;
        let call = Native::provider(&provider);
        calls::start_native(py, run, self.inner.id, &self.inner.name, call, request)
    }

    /// Start a call of a host tool registered with `rules`: this activation's agent must be
    /// on its allowlist (`POLICY_DENIED`) and the arguments must match its schema
    /// (`INVALID_ARGUMENT` naming the path) — checked before anything is recorded.
    #[pyo3(signature = (rules, arguments=None))]
    fn _call_start_tool(
        &self,
        py: Python<'_>,
        rules: PyRef<'_, NativeToolRules>,
        arguments: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<CallTicket> {
        let run = self.run(py)?;
        let agent = &*self.inner.name;
        // The allowlist first, as in every host: a denied agent learns nothing of the schema.
        let access = rules.rules.access();
        access
            .check(&rules.name, agent)
            .map_err(|e| to_py(py, &e))?;
        let none = py.None().into_bound(py);
        let req = calls::request_of(
            py,
            "tool",
            rules.name.clone(),
            arguments.unwrap_or(&none),
            None,
        )?;
        let checked = &rules.rules;
        detached(py, || checked.admit(agent, &req.request))?;
        let mut t = calls::start_many(py, run, self.inner.id, vec![req])?;
        Ok(t.pop().expect("one ticket per request"))
    }

    /// Start a call of a native (MCP) tool: allowlist, then its schema, then `callStarted`;
    /// `_call_execute` makes it (after its rate limit lets it start).
    #[pyo3(signature = (tool, arguments=None))]
    fn _call_start_native_tool(
        &self,
        py: Python<'_>,
        tool: PyRef<'_, NativeTool>,
        arguments: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<CallTicket> {
        let run = self.run(py)?;
        let call = Native {
            kind: "tool",
            name: &tool.name,
            exec: tool.exec(),
            access: Some(&tool.access),
        };
        let none = py.None().into_bound(py);
        let args = arguments.unwrap_or(&none);
        calls::start_native(py, run, self.inner.id, &self.inner.name, call, args)
    }

    fn _call_execute(
        &self,
        py: Python<'_>,
        ticket: PyRef<'_, CallTicket>,
    ) -> PyResult<(Py<PyAny>, Option<Py<PyAny>>)> {
        let run = self.run(py)?;
        calls::execute(py, run, self.inner.id, &ticket)
    }

    fn _call_stream(
        &self,
        py: Python<'_>,
        ticket: PyRef<'_, CallTicket>,
    ) -> PyResult<NativeChunks> {
        let run = self.run(py)?;
        calls::stream(py, run, self.inner.id, &ticket)
    }

    /// The mesh's providers and tools (for agentmesh/_calls.py).
    #[getter]
    fn _calls(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.run(py)?;
        Ok(self.calls.as_ref().expect("checked").1.clone_ref(py))
    }

    /// Send `request` to LLM provider `provider` (recorded): an `LlmReply`.
    #[pyo3(signature = (provider, request=None, **options))]
    fn llm(
        slf: &Bound<'_, Self>,
        provider: &Bound<'_, PyAny>,
        request: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        agent_api(slf, "llm", provider, request, options)
    }

    /// `llm` for asyncio (a coroutine).
    #[pyo3(signature = (provider, request=None, **options))]
    fn llm_async(
        slf: &Bound<'_, Self>,
        provider: &Bound<'_, PyAny>,
        request: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        agent_api(slf, "llm_async", provider, request, options)
    }

    /// `llm`, streamed: an `LlmStream` of chunks, `.reply` once it ends.
    #[pyo3(signature = (provider, request=None, **options))]
    fn llm_stream(
        slf: &Bound<'_, Self>,
        provider: &Bound<'_, PyAny>,
        request: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        agent_api(slf, "llm_stream", provider, request, options)
    }

    /// `llm_stream` for asyncio: an `AsyncLlmStream` (`async for`).
    #[pyo3(signature = (provider, request=None, **options))]
    fn llm_stream_async(
        slf: &Bound<'_, Self>,
        provider: &Bound<'_, PyAny>,
        request: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        agent_api(slf, "llm_stream_async", provider, request, options)
    }

    /// Call tool `name` (registered with `Mesh.call_tool`) with `arguments` (recorded): its
    /// result.
    #[pyo3(signature = (name, arguments=None))]
    fn tool(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyAny>,
        arguments: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        agent_api(slf, "tool", name, arguments, None)
    }

    /// `tool` for asyncio (a coroutine).
    #[pyo3(signature = (name, arguments=None))]
    fn tool_async(
        slf: &Bound<'_, Self>,
        name: &Bound<'_, PyAny>,
        arguments: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        agent_api(slf, "tool_async", name, arguments, None)
    }

    fn __repr__(&self) -> String {
        let a = &self.inner;
        let item = match &a.item {
            Some(item) => format!(", item={}", item.index),
            None => String::new(),
        };
        format!(
            "Activation(id={}, node={:?}, kind={:?}, name={:?}, attempt={}, visit={}, step={}{item})",
            a.id,
            &*a.node,
            a.kind.as_str(),
            &*a.name,
            a.attempt,
            a.visit,
            a.step
        )
    }
}

impl Activation {
    fn run(&self, py: Python<'_>) -> PyResult<&SharedRun> {
        match &self.calls {
            Some((run, _)) => Ok(run),
            None => Err(to_py(
                py,
                &Error::new(
                    ErrorKind::InvalidArgument,
                    "this activation is not being driven by a Mesh: it makes no calls",
                ),
            )),
        }
    }
}

/// A dict of JSON values by text key (`deps`, `reads`).
fn dict_of(py: Python<'_>, values: &BTreeMap<Arc<str>, Arc<Value>>) -> PyResult<Py<PyAny>> {
    let dict = PyDict::new(py);
    for (key, value) in values {
        dict.set_item(&**key, pyjson::to_py(py, value)?)?;
    }
    Ok(dict.into_any().unbind())
}

/// A failure as the log records it (the core's serde names).
fn failure_dict(py: Python<'_>, failure: &Failure) -> PyResult<Py<PyAny>> {
    let kind = match failure.kind {
        FailureKind::Error => "error",
        FailureKind::Timeout => "timeout",
    };
    let dict = PyDict::new(py);
    dict.set_item("kind", kind)?;
    dict.set_item("type", &failure.error_type)?;
    dict.set_item("message", &failure.message)?;
    dict.set_item("retryable", failure.retryable)?;
    Ok(dict.into_any().unbind())
}

/// `agentmesh._calls.<what>(act, first, second, **options)`: the agent API in Python.
fn agent_api(
    slf: &Bound<'_, Activation>,
    what: &str,
    first: &Bound<'_, PyAny>,
    second: Option<&Bound<'_, PyAny>>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let f = py.import("agentmesh._calls")?.getattr(what)?;
    let none = py.None().into_bound(py);
    let args = PyTuple::new(py, [slf.as_any(), first, second.unwrap_or(&none)])?;
    Ok(f.call(args, options)?.unbind())
}

/// Activations as Python objects for the driver; `calls`: the run and the mesh's call
/// table, for the calls agents make.
pub fn wrap_all(
    py: Python<'_>,
    acts: Vec<CoreActivation>,
    token: Option<&Py<PyAny>>,
    calls: Option<(&SharedRun, &Py<PyAny>)>,
) -> PyResult<Vec<Py<Activation>>> {
    acts.into_iter()
        .map(|a| {
            let calls = calls.map(|(r, t)| (r.clone(), t.clone_ref(py)));
            Py::new(
                py,
                Activation::new(a, token.map(|t| t.clone_ref(py)), calls),
            )
        })
        .collect()
}
