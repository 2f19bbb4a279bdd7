//! Tool access and MCP tools for the TypeScript driver (docs/tools.md, docs/typescript.md).
//!
//! - [`NativeToolRules`]: the rules of a JavaScript tool (`mesh.callTool(name, fn, {schema,
//!   agents, rateLimit})`), the providers' `ToolRules` built once at registration.
//!   `admit(agent, args)` runs before the call is started (allowlist → `POLICY_DENIED`,
//!   schema → `INVALID_ARGUMENT` naming the path: nothing is recorded, the function is not
//!   called); `reserve()` is how long a live call waits for its rate-limit slot (JavaScript
//!   sleeps on a timer: the event loop never blocks).
//! - [`NativeMcpServer`]: an MCP server process (`mesh.mcp({command, ...})`), spawned and
//!   listed on a dedicated thread (never the JS thread, never libuv's pool: `initialize` may
//!   take its whole timeout). Each of its tools is a [`NativeExecutor`] executed like a
//!   built-in provider (`calls.rs`): the server's input schema enforced by `ValidatedTool`,
//!   the allowlist and rate limit of the `mcp()` call (one `ToolAccess` per tool) checked and
//!   waited for inside the native call.
//!
//! **Lifetime.** The server ends when its last handle goes: `close()` (JavaScript's
//! `mesh.close()`), or garbage collection of the server object and its tools' executors. A
//! call in flight holds the server until it returns. Ending a server may wait up to its
//! shutdown grace (2 s) for the process to exit, so it always happens off the JS thread.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agentmesh_core::{
    provider_error, CallError, CallExecutor, CallOutcome, CallTicket, Error, ErrorKind, Result,
    ToolAccess,
};
use agentmesh_providers::mcp::{error_type, McpOptions, McpServer};
use agentmesh_providers::{core_error, McpToolExecutor, ToolRules, ValidatedTool};
use napi::bindgen_prelude::{FromNapiValue, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;
use serde_json::{json, Value};

use crate::args;
use crate::calls::{Js, NativeExecutor};
use crate::errors::{guard, invalid_argument, to_js, OrThrow};

/// The access rules `what` (`tool 'search'`, `mcp`) is registered with: the agents allowed
/// (`None`: any) and an optional rate limit of `calls` per `per_ms` milliseconds.
///
/// Errors: `INVALID_ARGUMENT` naming `what` and the field (`rateLimit.calls`, `.perMs`).
fn access(
    what: &str,
    agents: Option<Vec<String>>,
    calls: Option<f64>,
    per_ms: Option<f64>,
) -> Result<ToolAccess> {
    let access = match agents {
        None => ToolAccess::any(),
        Some(list) => ToolAccess::only(list),
    };
    match (calls, per_ms) {
        (None, None) => Ok(access),
        (Some(calls), Some(per_ms)) => {
            if !(calls.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&calls)) {
                return Err(invalid_argument(format!(
                    "{what}: rateLimit.calls must be an integer from 1 to {}, not {calls}",
                    u32::MAX
                )));
            }
            let per = positive_ms(per_ms).ok_or_else(|| {
                invalid_argument(format!(
                    "{what}: rateLimit.perMs must be a positive finite number of milliseconds, not {per_ms}"
                ))
            })?;
            access
                .rate_limit(calls as u32, per)
                .map_err(|e| invalid_argument(format!("{what}: {}", e.message())))
        }
        _ => Err(invalid_argument(format!(
            "{what}: rateLimit needs both calls and perMs"
        ))),
    }
}

/// `ms` milliseconds as a non-zero `Duration`; `None` for NaN, infinities, zero, negatives,
/// less than a nanosecond, or more than `Duration` holds.
fn positive_ms(ms: f64) -> Option<Duration> {
    if !(ms.is_finite() && ms > 0.0) {
        return None;
    }
    Duration::try_from_secs_f64(ms / 1000.0)
        .ok()
        .filter(|d| !d.is_zero())
}

/// An optional timeout option (`initTimeoutMs`, `callTimeoutMs`) or its default.
fn timeout(field: &str, ms: Option<f64>, default: Duration) -> Result<Duration> {
    match ms {
        None => Ok(default),
        Some(ms) => positive_ms(ms).ok_or_else(|| {
            invalid_argument(format!(
                "mcp: {field} must be a positive finite number of milliseconds, not {ms}"
            ))
        }),
    }
}

/// The core error for an MCP server's error outside a call (spawning, listing its tools):
/// `PROVIDER_ERROR` with the error type as a call's (`McpSpawnFailed`, ...), `TIMEOUT`,
/// `INVALID_ARGUMENT`. Messages name the server by its program only.
fn server_error(e: &agentmesh_providers::CallError) -> Error {
    if e.kind == ErrorKind::ProviderError {
        provider_error(&core_error(e))
    } else {
        Error::new(e.kind, e.message.clone())
    }
}

/// The rules of a JavaScript call tool (see the module docs).
#[napi]
pub struct NativeToolRules {
    rules: ToolRules,
}

#[napi]
impl NativeToolRules {
    /// Tool `name`'s rules: its argument `schema` (a JSON Schema, or `null`), the `agents`
    /// allowed (`null`: any) and a rate limit of `rateCalls` per `ratePerMs` (both or
    /// neither). Errors: `INVALID_ARGUMENT` naming the tool and the field (an invalid schema,
    /// a rate limit that is not at least 1 call per a positive duration).
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: &Env,
        name: String,
        #[napi(ts_arg_type = "unknown")] schema: Option<Unknown<'_>>,
        agents: Option<Vec<String>>,
        rate_calls: Option<f64>,
        rate_per_ms: Option<f64>,
    ) -> napi::Result<NativeToolRules> {
        let schema = match args::json(env, "a tool's schema", schema.as_ref())? {
            Value::Null => None,
            s => Some(s),
        };
        let what = format!("tool '{name}'");
        let rules = guard(|| {
            let access = access(&what, agents, rate_calls, rate_per_ms)?;
            ToolRules::new(&name, schema.as_ref(), access)
        })
        .or_throw(env)?;
        Ok(NativeToolRules { rules })
    }

    /// Whether `agent` may call the tool with `args` (JSON data, or JSON text when `text`):
    /// the allowlist first, then the schema. Errors: `POLICY_DENIED`; `INVALID_ARGUMENT`
    /// naming the path of the first violation (`tool call 'x': arguments at /a: ...`).
    #[napi(catch_unwind)]
    pub fn admit(
        &self,
        env: &Env,
        agent: String,
        #[napi(ts_arg_type = "unknown")] args: Unknown<'_>,
        text: bool,
    ) -> napi::Result<()> {
        let arguments = if text {
            // SAFETY: the current call's environment and one of its values.
            let s = unsafe { String::from_napi_value(env.raw(), args.raw()) }?;
            serde_json::from_str(&s).map_err(|e| {
                to_js(
                    env,
                    &invalid_argument(format!("a tool's arguments are not valid JSON text: {e}")),
                )
            })?
        } else {
            args::json(env, "a tool's arguments", Some(&args))?
        };
        guard(|| self.rules.admit(&agent, &arguments)).or_throw(env)
    }

    /// Reserve the start slot of a live call: how many milliseconds to wait before making it
    /// (0 without a rate limit, or while under it).
    #[napi]
    pub fn reserve(&self) -> f64 {
        self.rules.access().reserve().as_secs_f64() * 1000.0
    }
}

/// The server behind an MCP tool's executors, until it is closed.
struct Slot {
    server: Mutex<Option<Arc<McpServer>>>,
    /// The server's program (`command[0]`), for messages.
    program: String,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Option<Arc<McpServer>>> {
        self.server.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self) -> Option<Arc<McpServer>> {
        self.lock().clone()
    }

    fn closed(&self) -> CallError {
        CallError::new(
            error_type::SERVER_EXITED,
            format!(
                "the MCP server '{}' was closed (mesh.close()) before this call ran",
                self.program
            ),
        )
        .permanent()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Garbage collection runs on the JS thread: never wait there for the process to exit.
        if let Some(server) = self.lock().take() {
            end_off_thread(server, |_| {});
        }
    }
}

/// Drop (the last handle on) `server` on a thread of its own, then `done(exited)`.
fn end_off_thread(server: Arc<McpServer>, done: impl FnOnce(bool) + Send + 'static) {
    let end = move || {
        let exited = match Arc::try_unwrap(server) {
            Ok(s) => {
                s.shutdown();
                true
            }
            // A call in flight holds it: the server ends when that call returns.
            Err(shared) => {
                drop(shared);
                false
            }
        };
        done(exited)
    };
    // Without a thread (the process is out of them), end it here: waiting beats leaking.
    let cell = Arc::new(Mutex::new(Some(end)));
    let theirs = cell.clone();
    let spawned = std::thread::Builder::new()
        .name("agentmesh-mcp-close".into())
        .spawn(move || {
            if let Some(f) = theirs.lock().unwrap_or_else(|p| p.into_inner()).take() {
                f()
            }
        });
    if spawned.is_err() {
        if let Some(f) = cell.lock().unwrap_or_else(|p| p.into_inner()).take() {
            f()
        }
    }
}

/// One tool of an MCP server, as long as the server is open (`McpToolExecutor` once it is
/// fetched from the slot). Wrapped in `ValidatedTool`, which checks the server's schema.
struct McpTool {
    slot: Arc<Slot>,
    tool: String,
}

impl CallExecutor for McpTool {
    fn prepare(&self, request: Value) -> std::result::Result<Value, CallError> {
        match self.slot.get() {
            Some(server) => McpToolExecutor::new(server, self.tool.clone()).prepare(request),
            None => Err(self.slot.closed()),
        }
    }

    fn execute(
        &self,
        request: &Value,
        ticket: &CallTicket,
        on_chunk: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        match self.slot.get() {
            Some(server) => {
                McpToolExecutor::new(server, self.tool.clone()).execute(request, ticket, on_chunk)
            }
            None => CallOutcome::err(self.slot.closed()),
        }
    }
}

/// One listed tool: what `tools()` reports and the executor agents' calls go to.
struct Listed {
    name: String,
    description: String,
    schema: Value,
    executor: Arc<dyn CallExecutor>,
    access: ToolAccess,
}

/// A running MCP server and its tools (see the module docs).
#[napi]
pub struct NativeMcpServer {
    slot: Arc<Slot>,
    pid: u32,
    tools: Vec<Listed>,
}

/// What settles `spawn`'s Promise, on the JS thread.
type Spawned = Box<dyn FnOnce(Env) -> napi::Result<NativeMcpServer> + Send>;
/// What settles `close`'s Promise, on the JS thread.
type Closed = Box<dyn FnOnce(Env) -> napi::Result<bool> + Send>;

/// Everything `spawn` needs, read from JavaScript on its thread.
struct Launch {
    command: Vec<String>,
    env: Vec<(String, String)>,
    options: McpOptions,
    agents: Option<Vec<String>>,
    rate: (Option<f64>, Option<f64>),
}

impl Launch {
    /// Start the server, list its tools and build their executors (on the spawn thread).
    fn run(self) -> Result<NativeMcpServer> {
        let program = self.command.first().cloned().unwrap_or_default();
        let server = McpServer::spawn(&self.command, &self.env, None, self.options)
            .map_err(|e| server_error(&e))?;
        let server = Arc::new(server);
        let pid = server.pid();
        let listed = server.list_tools().map_err(|e| server_error(&e))?;
        let slot = Arc::new(Slot {
            server: Mutex::new(Some(server)),
            program,
        });
        let mut tools = Vec::with_capacity(listed.len());
        for t in listed {
            let inner = Arc::new(McpTool {
                slot: slot.clone(),
                tool: t.name.clone(),
            });
            let executor = ValidatedTool::new(&t.name, &t.input_schema, inner)?;
            // One limiter per tool: the rate limit applies to each of the server's tools.
            let access = access("mcp", self.agents.clone(), self.rate.0, self.rate.1)?;
            tools.push(Listed {
                name: t.name,
                description: t.description,
                schema: t.input_schema,
                executor: Arc::new(executor),
                access,
            });
        }
        Ok(NativeMcpServer { slot, pid, tools })
    }
}

#[napi]
impl NativeMcpServer {
    /// Start the MCP server `command` (program, then arguments) with `envKeys[i]=envValues[i]`
    /// added to its minimal environment, run `initialize` and list its tools, on a thread of
    /// its own. `agents` (`null`: any) and a rate limit of `rateCalls` per `ratePerMs` apply
    /// to each tool. Resolves to the server; rejects with `PROVIDER_ERROR` (`McpSpawnFailed`,
    /// `McpServerExited`, `McpProtocolError`, `McpRpcError`), `TIMEOUT` (no `initialize`
    /// answer within `initTimeoutMs`, default 30 000) or `INVALID_ARGUMENT` (an empty
    /// command, a malformed variable name, an invalid rate limit or timeout, a tool whose
    /// schema is not a JSON Schema). Messages never hold the arguments or environment values.
    #[napi(catch_unwind, ts_return_type = "Promise<NativeMcpServer>")]
    #[allow(clippy::too_many_arguments)] // positional, as the JS driver calls it
    pub fn spawn(
        env: &Env,
        command: Vec<String>,
        env_keys: Vec<String>,
        env_values: Vec<String>,
        agents: Option<Vec<String>>,
        rate_calls: Option<f64>,
        rate_per_ms: Option<f64>,
        init_timeout_ms: Option<f64>,
        call_timeout_ms: Option<f64>,
    ) -> napi::Result<Js> {
        let launch = (|| -> Result<Launch> {
            if env_keys.len() != env_values.len() {
                return Err(invalid_argument(
                    "mcp: the environment's names and values differ in length",
                ));
            }
            let defaults = McpOptions::default();
            let options = McpOptions {
                init_timeout: timeout("initTimeoutMs", init_timeout_ms, defaults.init_timeout)?,
                call_timeout: timeout("callTimeoutMs", call_timeout_ms, defaults.call_timeout)?,
                ..defaults
            };
            // Checked now, so a bad rate limit is refused before anything is started.
            access("mcp", agents.clone(), rate_calls, rate_per_ms)?;
            Ok(Launch {
                command,
                env: env_keys.into_iter().zip(env_values).collect(),
                options,
                agents,
                rate: (rate_calls, rate_per_ms),
            })
        })()
        .or_throw(env)?;
        let (deferred, promise) = env.create_deferred::<NativeMcpServer, Spawned>()?;
        spawn_thread(env, "agentmesh-mcp-spawn", move || {
            let started = guard(|| launch.run());
            deferred.resolve(Box::new(move |env: Env| {
                started.map_err(|e| to_js(&env, &e))
            }));
        })?;
        Ok(Js(promise.raw()))
    }

    /// The server's tools, in its order: `[{name, description, schema}]` (the input schema
    /// its calls are checked against).
    #[napi(
        catch_unwind,
        ts_return_type = "Array<{ name: string; description: string; schema: unknown }>"
    )]
    pub fn tools(&self, env: &Env) -> napi::Result<Js> {
        let list: Vec<Value> = self
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "schema": t.schema}))
            .collect();
        // SAFETY: the current call's environment, on its thread.
        Ok(Js(unsafe {
            crate::json::write(env.raw(), &Value::Array(list))
        }?))
    }

    /// The executor of tool `name` (what `act.tool(name, args)` runs). Errors:
    /// `UNKNOWN_AGENT` when the server listed no such tool.
    #[napi(catch_unwind)]
    pub fn executor(&self, env: &Env, name: String) -> napi::Result<NativeExecutor> {
        match self.tools.iter().find(|t| t.name == name) {
            Some(t) => Ok(NativeExecutor::tool(t.executor.clone(), t.access.clone())),
            None => Err(to_js(
                env,
                &Error::new(
                    ErrorKind::UnknownAgent,
                    format!(
                        "the MCP server '{}' has no tool '{name}'",
                        self.slot.program
                    ),
                ),
            )),
        }
    }

    /// The server's process id.
    #[napi(getter)]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's program (`command[0]`), what messages name it by.
    #[napi(getter)]
    pub fn program(&self) -> String {
        self.slot.program.clone()
    }

    /// End the server: later calls of its tools fail (`McpServerExited`, not retryable).
    /// Resolves to `true` once the process exited, `false` when a call still in flight holds
    /// it (the server ends when that call returns) or it was closed already.
    #[napi(catch_unwind, ts_return_type = "Promise<boolean>")]
    pub fn close(&self, env: &Env) -> napi::Result<Js> {
        let (deferred, promise) = env.create_deferred::<bool, Closed>()?;
        match self.slot.lock().take() {
            None => deferred.resolve(Box::new(|_| Ok(false))),
            Some(server) => end_off_thread(server, move |exited| {
                deferred.resolve(Box::new(move |_| Ok(exited)))
            }),
        }
        Ok(Js(promise.raw()))
    }
}

/// Run `work` on a new named thread; `IO` error when none can be started.
fn spawn_thread(env: &Env, name: &str, work: impl FnOnce() + Send + 'static) -> napi::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .map(|_| ())
        .map_err(|e| {
            to_js(
                env,
                &Error::new(ErrorKind::Io, format!("could not start a thread: {e}")),
            )
        })
}
