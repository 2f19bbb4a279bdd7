//! Tools agents call (`Mesh.call_tool`, `Mesh.mcp`; docs/tools.md): who may call them and how
//! often ([`AccessSpec`] → the core's `ToolAccess`), a host tool's rules ([`NativeToolRules`],
//! the providers' `ToolRules`), tools executed in Rust ([`NativeTool`], an MCP server's), and
//! the MCP servers themselves ([`NativeMcp`]).
//!
//! Everything that can block — spawning a server, listing its tools, closing it — runs with
//! the GIL released. A server ends when the last handle on it goes: the `Mesh` that started
//! it (its `NativeMcp` and its tools) is garbage collected, or `Mesh.close` closes it. A
//! handle dropped by the garbage collector hands a server it was the last owner of to a
//! short-lived thread, so the interpreter never waits for a server to exit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentmesh_core::{provider_error, CallExecutor, Error, ErrorKind, ToolAccess};
use agentmesh_providers::mcp::{McpOptions, McpServer};
use agentmesh_providers::{core_error, CallError, McpToolExecutor, ToolRules, ValidatedTool};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

use crate::errors::{detached, to_py};
use crate::pyjson;

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

/// A value for a message: numbers as written (`0`, `nan`, `True`), anything else by type.
fn shown(obj: &Bound<'_, PyAny>) -> String {
    if obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>() {
        if let Ok(r) = obj.repr() {
            return r.to_string();
        }
    }
    pyjson::type_name(obj)
}

/// A duration in seconds: an int or a float, finite and > 0 (not a bool).
fn seconds(what: &str, obj: &Bound<'_, PyAny>) -> Result<Duration, Error> {
    let bad = || {
        invalid(format!(
            "{what} must be a finite number of seconds > 0, not {}",
            shown(obj)
        ))
    };
    if obj.is_instance_of::<PyBool>()
        || !(obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>())
    {
        return Err(bad());
    }
    let secs: f64 = obj.extract().map_err(|_| bad())?;
    if !secs.is_finite() || secs <= 0.0 {
        return Err(bad());
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(bad()),
    }
}

/// The access rules given at registration (`agents=`, `rate_limit=`), checked: each tool
/// then gets a [`ToolAccess`] of its own from [`AccessSpec::build`].
pub struct AccessSpec {
    agents: Option<Vec<String>>,
    rate: Option<(u32, Duration)>,
}

impl AccessSpec {
    /// `agents`: `None` or an iterable of agent names (str); `rate_limit`: `None` or
    /// `(calls, per_seconds)`. `INVALID_ARGUMENT` naming `label` (the tool) and the field.
    pub fn from_py(
        label: &str,
        agents: Option<&Bound<'_, PyAny>>,
        rate_limit: Option<&Bound<'_, PyAny>>,
    ) -> Result<AccessSpec, Error> {
        let agents = match agents.filter(|a| !a.is_none()) {
            None => None,
            Some(a) if a.is_instance_of::<PyString>() => {
                return Err(invalid(format!(
                    "{label}: agents must be an iterable of agent names, not a str (a list of one name: agents=[{}])",
                    a.repr().map(|r| r.to_string()).unwrap_or_default()
                )))
            }
            Some(a) => {
                let items = a.try_iter().map_err(|_| {
                    invalid(format!(
                        "{label}: agents must be an iterable of agent names (str), not {}",
                        pyjson::type_name(a)
                    ))
                })?;
                let mut names = Vec::new();
                for (i, item) in items.enumerate() {
                    let item = item.map_err(|e| {
                        invalid(format!("{label}: reading agents failed at item {i}: {e}"))
                    })?;
                    let name: String = item
                        .cast::<PyString>()
                        .ok()
                        .and_then(|s| s.to_cow().ok().map(|c| c.into_owned()))
                        .ok_or_else(|| {
                            invalid(format!(
                                "{label}: agents[{i}] must be an agent name (str), not {}",
                                pyjson::type_name(&item)
                            ))
                        })?;
                    names.push(name);
                }
                Some(names)
            }
        };
        let rate = match rate_limit.filter(|r| !r.is_none()) {
            None => None,
            Some(r) => Some(rate_of(label, r)?),
        };
        Ok(AccessSpec { agents, rate })
    }

    /// A fresh `ToolAccess` (its own rate limiter) for one tool.
    pub fn build(&self) -> agentmesh_core::Result<ToolAccess> {
        let access = match &self.agents {
            None => ToolAccess::any(),
            Some(names) => ToolAccess::only(names.iter().cloned()),
        };
        match self.rate {
            None => Ok(access),
            Some((calls, per)) => access.rate_limit(calls, per),
        }
    }
}

fn rate_of(label: &str, r: &Bound<'_, PyAny>) -> Result<(u32, Duration), Error> {
    let pair = if r.is_instance_of::<PyTuple>() || r.is_instance_of::<PyList>() {
        r.try_iter()
            .and_then(|it| it.collect::<PyResult<Vec<_>>>())
            .ok()
    } else {
        None
    };
    let Some([calls, per]) = pair.and_then(|p| <[_; 2]>::try_from(p).ok()) else {
        return Err(invalid(format!(
            "{label}: rate_limit must be a (calls, per_seconds) pair, not {}",
            pyjson::type_name(r)
        )));
    };
    let bad_calls = || {
        invalid(format!(
            "{label}: rate_limit calls must be an int from 1 to {}, not {}",
            u32::MAX,
            shown(&calls)
        ))
    };
    if calls.is_instance_of::<PyBool>() || !calls.is_instance_of::<PyInt>() {
        return Err(bad_calls());
    }
    let n: u32 = calls.extract().map_err(|_| bad_calls())?;
    if n == 0 {
        return Err(bad_calls());
    }
    let per = seconds(&format!("{label}: rate_limit per_seconds"), &per)?;
    Ok((n, per))
}

/// The rules of a host tool (`Mesh.call_tool` with a Python function): its argument schema
/// and its access, checked before its call is recorded (`act.tool`).
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativeToolRules {
    pub(crate) name: String,
    schema: Option<Value>,
    pub(crate) rules: ToolRules,
}

#[pymethods]
impl NativeToolRules {
    /// Tool `name`'s rules: `schema` (a JSON Schema of the arguments, JSON data), `agents`
    /// and `rate_limit` as for `Mesh.call_tool`. `INVALID_ARGUMENT` naming the tool and the
    /// field (an invalid schema, a bad agent name or rate limit).
    #[staticmethod]
    #[pyo3(signature = (name, schema=None, agents=None, rate_limit=None))]
    fn new(
        py: Python<'_>,
        name: String,
        schema: Option<&Bound<'_, PyAny>>,
        agents: Option<&Bound<'_, PyAny>>,
        rate_limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<NativeToolRules> {
        let label = format!("tool '{name}'");
        let spec = AccessSpec::from_py(&label, agents, rate_limit).map_err(|e| to_py(py, &e))?;
        let schema = match schema.filter(|s| !s.is_none()) {
            None => None,
            Some(s) => Some(pyjson::from_py(s).map_err(|why| {
                to_py(
                    py,
                    &invalid(format!("{label}: the schema is not JSON data: {why}")),
                )
            })?),
        };
        let rules = detached(py, || ToolRules::new(&name, schema.as_ref(), spec.build()?))?;
        Ok(NativeToolRules {
            name,
            schema,
            rules,
        })
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The argument schema as registered (JSON data), or `None`.
    #[getter]
    fn schema(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.schema
            .as_ref()
            .map(|s| pyjson::to_py(py, s).map(Bound::unbind))
            .transpose()
    }

    /// Reserve the start slot of a live call: the seconds to wait before making it (0.0
    /// without a rate limit or under it).
    fn reserve(&self) -> f64 {
        self.rules.access().reserve().as_secs_f64()
    }

    fn __repr__(&self) -> String {
        format!("NativeToolRules({:?})", self.name)
    }
}

/// A tool executed in Rust (an MCP server's): agents call it through `act.tool` like a host
/// tool; its argument schema, allowlist and rate limit are enforced natively.
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativeTool {
    pub(crate) name: String,
    description: String,
    schema: Value,
    /// `Some` until dropped (taken first on drop, see [`release`]).
    exec: Option<Arc<dyn CallExecutor>>,
    pub(crate) access: ToolAccess,
    server: Option<Arc<McpServer>>,
}

impl NativeTool {
    pub(crate) fn exec(&self) -> &Arc<dyn CallExecutor> {
        self.exec.as_ref().expect("set until dropped")
    }
}

impl Drop for NativeTool {
    fn drop(&mut self) {
        drop(self.exec.take()); // its server handle goes before ours is looked at
        if let Some(server) = self.server.take() {
            release(server);
        }
    }
}

#[pymethods]
impl NativeTool {
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// What the tool does, for a model (`None` when the server gives no description).
    #[getter]
    fn description(&self) -> Option<&str> {
        Some(self.description.as_str()).filter(|d| !d.is_empty())
    }

    /// The JSON Schema of its arguments (enforced before a call is recorded).
    #[getter]
    fn schema(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(pyjson::to_py(py, &self.schema)?.unbind())
    }

    fn __repr__(&self) -> String {
        format!("NativeTool({:?})", self.name)
    }
}

/// Drop a server handle; when it is the last one, on a thread of its own: a server's drop
/// waits for the process to exit (up to its shutdown grace), and a handle the garbage
/// collector drops holds the GIL.
fn release(server: Arc<McpServer>) {
    if Arc::strong_count(&server) > 1 {
        return; // others hold it: only a count goes down
    }
    // If no thread can be started, the closure (and the server) is dropped right here.
    let _ = std::thread::Builder::new()
        .name("agentmesh-mcp-close".into())
        .spawn(move || drop(server));
}

/// A server's error as the agent-facing error: `PROVIDER_ERROR` with its type
/// (`McpSpawnFailed`, `McpServerExited`, ...) or `TIMEOUT`.
fn mcp_error(e: &CallError) -> Error {
    match e.kind {
        ErrorKind::ProviderError => provider_error(&core_error(e)),
        kind => Error::new(kind, e.message.clone()),
    }
}

/// An MCP server started by `Mesh.mcp`.
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativeMcp {
    program: String,
    server: Mutex<Option<Arc<McpServer>>>,
}

impl Drop for NativeMcp {
    fn drop(&mut self) {
        let server = self.server.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(server) = server.take() {
            release(server);
        }
    }
}

#[pymethods]
impl NativeMcp {
    /// Start the server `command` (program, then arguments: a sequence of str) with `env`
    /// (a mapping of str to str) added to its minimal environment, and list its tools:
    /// `(server, tools)`, each tool with its own access from `agents` and `rate_limit`.
    /// Errors: `INVALID_ARGUMENT` (a bad command, env, timeout, agent name or rate limit,
    /// nothing started; a tool whose schema is invalid); `PROVIDER_ERROR` (`McpSpawnFailed`,
    /// `McpServerExited`, `McpProtocolError`, `McpRpcError`); `TIMEOUT`. Messages never
    /// hold the environment's values.
    #[staticmethod]
    #[pyo3(signature = (command, env=None, agents=None, rate_limit=None, init_timeout=None, call_timeout=None))]
    fn spawn(
        py: Python<'_>,
        command: &Bound<'_, PyAny>,
        env: Option<&Bound<'_, PyAny>>,
        agents: Option<&Bound<'_, PyAny>>,
        rate_limit: Option<&Bound<'_, PyAny>>,
        init_timeout: Option<&Bound<'_, PyAny>>,
        call_timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(NativeMcp, Vec<NativeTool>)> {
        let err = |e: Error| to_py(py, &e);
        let command = command_of(command).map_err(err)?;
        let label = format!("MCP server `{}`", command[0]);
        let spec = AccessSpec::from_py(&label, agents, rate_limit).map_err(err)?;
        let env = env_of(&label, env).map_err(err)?;
        let mut options = McpOptions::default();
        if let Some(t) = init_timeout.filter(|t| !t.is_none()) {
            options.init_timeout = seconds(&format!("{label}: init_timeout"), t).map_err(err)?;
        }
        if let Some(t) = call_timeout.filter(|t| !t.is_none()) {
            options.call_timeout = seconds(&format!("{label}: call_timeout"), t).map_err(err)?;
        }
        let (server, tools) = detached(py, || {
            let server = Arc::new(
                McpServer::spawn(&command, &env, None, options).map_err(|e| mcp_error(&e))?,
            );
            let listed = server.list_tools().map_err(|e| mcp_error(&e))?;
            let mut tools = Vec::with_capacity(listed.len());
            for t in listed {
                let inner: Arc<dyn CallExecutor> =
                    Arc::new(McpToolExecutor::new(server.clone(), &t.name));
                let exec = Arc::new(ValidatedTool::new(&t.name, &t.input_schema, inner)?);
                tools.push(NativeTool {
                    name: t.name,
                    description: t.description,
                    schema: t.input_schema,
                    exec: Some(exec),
                    access: spec.build()?,
                    server: Some(server.clone()),
                });
            }
            Ok((server, tools))
        })?;
        let mcp = NativeMcp {
            program: command[0].clone(),
            server: Mutex::new(Some(server)),
        };
        Ok((mcp, tools))
    }

    /// The program the server runs (the command's first word).
    #[getter]
    fn program(&self) -> &str {
        &self.program
    }

    /// The server's process id (`None` once closed).
    #[getter]
    fn pid(&self) -> Option<u32> {
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner());
        server.as_ref().map(|s| s.pid())
    }

    /// Whether the server is still held (not closed).
    #[getter]
    fn running(&self) -> bool {
        self.server.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Close the server: `True` when this was its last handle and it was shut down (its
    /// stdin closed, then killed after its grace period if it did not exit), `False` when
    /// something still holds it (a `CallTicket` kept by an agent): it ends with that. Drop
    /// the tools first (`Mesh.close` unregisters them).
    fn close(&self, py: Python<'_>) -> PyResult<bool> {
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(server) = server else {
            return Ok(false);
        };
        detached(py, move || match Arc::try_unwrap(server) {
            Ok(server) => {
                server.shutdown();
                Ok(true)
            }
            Err(_) => Ok(false),
        })
    }

    fn __repr__(&self) -> String {
        format!("NativeMcp({:?}, running={})", self.program, self.running())
    }
}

/// A command: a non-empty sequence of str (not a str itself).
fn command_of(obj: &Bound<'_, PyAny>) -> Result<Vec<String>, Error> {
    let bad = || {
        invalid(format!(
            "mcp: command must be a non-empty list of str (the program, then its arguments), not {}",
            pyjson::type_name(obj)
        ))
    };
    if obj.is_instance_of::<PyString>() {
        return Err(invalid(
            "mcp: command must be a list of str (the program, then its arguments), not a str: \
             split it, e.g. [\"node\", \"server.js\", \"stdio\"]"
                .to_owned(),
        ));
    }
    let items = obj.try_iter().map_err(|_| bad())?;
    let mut words = Vec::new();
    for (i, item) in items.enumerate() {
        let item = item.map_err(|_| bad())?;
        let word = item
            .cast::<PyString>()
            .ok()
            .and_then(|s| s.to_cow().ok().map(|c| c.into_owned()))
            .ok_or_else(|| {
                invalid(format!(
                    "mcp: command[{i}] must be a str, not {}",
                    pyjson::type_name(&item)
                ))
            })?;
        words.push(word);
    }
    match words.first() {
        None => Err(bad()),
        Some(p) if p.is_empty() => Err(invalid(
            "mcp: command[0] (the program) is an empty str".to_owned(),
        )),
        Some(_) => Ok(words),
    }
}

/// The variables added to a server's environment: a mapping of str to str. Messages name a
/// variable, never its value.
fn env_of(label: &str, obj: Option<&Bound<'_, PyAny>>) -> Result<Vec<(String, String)>, Error> {
    let Some(obj) = obj.filter(|e| !e.is_none()) else {
        return Ok(Vec::new());
    };
    let bad = || {
        invalid(format!(
            "{label}: env must be a mapping of str to str, not {}",
            pyjson::type_name(obj)
        ))
    };
    let items = obj
        .call_method0("items")
        .and_then(|i| i.try_iter().map(|it| it.collect::<PyResult<Vec<_>>>()))
        .map_err(|_| bad())?
        .map_err(|_| bad())?;
    let mut vars = Vec::with_capacity(items.len());
    for pair in items {
        let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
            pair.extract().map_err(|_| bad())?;
        let key: String = key.extract::<String>().map_err(|_| {
            invalid(format!(
                "{label}: env keys must be str, not {}",
                pyjson::type_name(&key)
            ))
        })?;
        let value: String = value.extract::<String>().map_err(|_| {
            invalid(format!(
                "{label}: env[{key:?}] must be a str, not {}",
                pyjson::type_name(&value)
            ))
        })?;
        vars.push((key, value));
    }
    Ok(vars)
}
