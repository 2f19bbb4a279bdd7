//! MCP tools over stdio: a client for one Model Context Protocol server process.
//!
//! [`McpServer::spawn`] starts the server, runs the `initialize` handshake and checks the
//! protocol version; [`list_tools`](McpServer::list_tools) and
//! [`call_tool`](McpServer::call_tool) then talk JSON-RPC, one object per line, over its
//! stdin and stdout. No async runtime: plain threads, and every wait has a timeout.
//!
//! ```no_run
//! use agentmesh_providers::mcp::{McpOptions, McpServer};
//! use serde_json::json;
//!
//! // After `npm install @modelcontextprotocol/server-everything`.
//! let entry = "node_modules/@modelcontextprotocol/server-everything/dist/index.js";
//! let command = ["node", entry, "stdio"].map(String::from);
//! let server = McpServer::spawn(&command, &[], None, McpOptions::default())?;
//! for tool in server.list_tools()? {
//!     println!("{}: {}", tool.name, tool.description);
//! }
//! let result = server.call_tool("get-sum", json!({"a": 2, "b": 3}))?;
//! assert!(!result.is_error);
//! println!("{}", result.text()); // The sum of 2 and 3 is 5.
//! # Ok::<(), agentmesh_providers::CallError>(())
//! ```
//!
//! Errors are [`CallError`]s with the `error_type`s of [`error_type`]; `docs/tools.md` has
//! the table.

mod connection;
pub mod error_type;
mod stderr_tail;
mod tool;

use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};

use self::connection::Connection;
use self::error_type as err;
pub use self::tool::{McpTool, McpToolResult};
use crate::CallError;

/// The protocol version this client asks for.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// The versions a server may answer with (newest first); any other ends the session.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[&str] =
    &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// `tools/list` pages followed before giving up on a server whose cursor never ends.
pub const MAX_TOOL_PAGES: usize = 100;

/// Timeouts and environment of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpOptions {
    /// From spawn to the `initialize` response (default 30 s; `npx` may download first).
    pub init_timeout: Duration,
    /// Per request after that (default 60 s); see [`McpServer::call_tool_with_timeout`].
    pub call_timeout: Duration,
    /// On drop, how long the server may take to exit after its stdin closed before it is
    /// killed (default 2 s).
    pub shutdown_grace: Duration,
    /// Pass the whole host environment to the server. Default `false`: the server gets only
    /// `HOME`, `LOGNAME`, `PATH`, `SHELL`, `TERM`, `USER` (Windows: its equivalents) plus the
    /// `env` given to [`McpServer::spawn`], so host secrets do not leak into every server.
    pub inherit_env: bool,
}

impl Default for McpOptions {
    fn default() -> Self {
        McpOptions {
            init_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(2),
            inherit_env: false,
        }
    }
}

/// What the server said about itself in `initialize`.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServerInfo {
    /// The negotiated protocol version (one of [`SUPPORTED_PROTOCOL_VERSIONS`]).
    pub protocol_version: String,
    /// `serverInfo.name`.
    pub name: String,
    /// `serverInfo.version`.
    pub version: String,
    /// `serverInfo.title`, if given.
    pub title: Option<String>,
    /// The server's capabilities object, as sent.
    pub capabilities: Value,
    /// Usage instructions for a model, if given.
    pub instructions: Option<String>,
}

/// A running MCP server and its session. `Send + Sync`: share it (for example in an `Arc`)
/// and call tools from several threads at once; each request has its own id and waits only
/// for its own response.
///
/// Dropping it closes the server's stdin, waits up to
/// [`shutdown_grace`](McpOptions::shutdown_grace), then kills and reaps the process.
/// A server started through a wrapper that forks (a shell script without `exec`) may leave
/// the grandchild running if it ignores the closed stdin: start the server program directly.
pub struct McpServer {
    connection: Connection,
    info: McpServerInfo,
    call_timeout: Duration,
    /// The `list_changed` count the last complete `list_tools` reflects.
    tools_listed: Mutex<Option<u64>>,
}

impl std::fmt::Debug for McpServer {
    // Not derived: the command line and environment may hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("program", &self.connection.program())
            .field("pid", &self.connection.pid())
            .field("server", &self.info.name)
            .field("protocol_version", &self.info.protocol_version)
            .finish_non_exhaustive()
    }
}

impl McpServer {
    /// Starts `command` (program, then arguments) with `env` added to its environment and
    /// `cwd` as working directory, runs `initialize` (within `options.init_timeout`) and sends
    /// `notifications/initialized`.
    ///
    /// Errors: `INVALID_ARGUMENT` for an empty command or a malformed variable name;
    /// `PROVIDER_ERROR` `McpSpawnFailed` (command not found, names the command),
    /// `McpServerExited` (exit status and stderr tail), `McpProtocolError` (a malformed line,
    /// an unsupported protocol version), `McpRpcError`; `TIMEOUT` when `initialize` gets no
    /// answer. The process is killed on every error.
    pub fn spawn(
        command: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
        options: McpOptions,
    ) -> Result<McpServer, CallError> {
        let connection = Connection::spawn(
            command,
            env,
            cwd,
            options.inherit_env,
            options.shutdown_grace,
        )?;
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "agentmesh", "version": env!("CARGO_PKG_VERSION")},
        });
        let response = connection.request(
            "initialize",
            Some(params),
            "initialize",
            options.init_timeout,
        )?;
        let info = server_info(&response.result)
            .map_err(|m| err::protocol(connection.program(), format!("initialize: {m}")))?;
        connection.notify("notifications/initialized", None);
        Ok(McpServer {
            connection,
            info,
            call_timeout: options.call_timeout,
            tools_listed: Mutex::new(None),
        })
    }

    /// What the server said about itself.
    pub fn info(&self) -> &McpServerInfo {
        &self.info
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.connection.pid()
    }

    /// The last few KiB the server wrote to stderr (its log).
    pub fn stderr_tail(&self) -> String {
        self.connection.stderr_tail()
    }

    /// Every tool of the server, following `nextCursor` for at most [`MAX_TOOL_PAGES`] pages.
    ///
    /// Errors: those of [`request`](Self::request), and `McpProtocolError` for a result
    /// without a `tools` array, a malformed tool or a cursor that never ends.
    pub fn list_tools(&self) -> Result<Vec<McpTool>, CallError> {
        let bad = |m: String| err::protocol(self.connection.program(), format!("tools/list: {m}"));
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen_at_first_page = None;
        for _ in 0..MAX_TOOL_PAGES {
            let params = cursor.as_ref().map(|c| json!({"cursor": c}));
            let response =
                self.connection
                    .request("tools/list", params, "tools/list", self.call_timeout)?;
            seen_at_first_page.get_or_insert(response.list_changed);
            let page = &response.result;
            let entries = page
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("the result has no `tools` array".into()))?;
            for entry in entries {
                tools.push(McpTool::from_wire(entry).map_err(bad)?);
            }
            cursor = match page.get("nextCursor") {
                None | Some(Value::Null) => {
                    *self
                        .tools_listed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = seen_at_first_page;
                    return Ok(tools);
                }
                Some(Value::String(next)) => Some(next.clone()),
                Some(_) => return Err(bad("`nextCursor` is not a string".into())),
            };
        }
        Err(bad(format!(
            "still a `nextCursor` after {MAX_TOOL_PAGES} pages"
        )))
    }

    /// Whether the server announced (`notifications/tools/list_changed`) that its tools
    /// changed since the last complete [`list_tools`](Self::list_tools), or the tools were
    /// never listed. Call `list_tools` again when it is `true`.
    pub fn tools_stale(&self) -> bool {
        let listed = *self
            .tools_listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listed != Some(self.connection.list_changed())
    }

    /// Calls tool `name` with `arguments` (a JSON object, or `null` for none), waiting at most
    /// [`call_timeout`](McpOptions::call_timeout).
    ///
    /// A result with `is_error: true` (unknown tool, arguments that fail the tool's schema,
    /// the tool failed) is returned as `Ok`: it is the tool's answer, recorded like any other.
    /// Use [`McpToolResult::into_result`] to treat it as an error.
    ///
    /// Errors: `INVALID_ARGUMENT` (empty name, arguments not an object; nothing is sent);
    /// `TIMEOUT` (retryable; the server is sent `notifications/cancelled` and a late answer
    /// is dropped); `PROVIDER_ERROR` with `McpServerExited`, `McpStdoutClosed`,
    /// `McpProtocolError` or `McpRpcError`.
    pub fn call_tool(&self, name: &str, arguments: Value) -> Result<McpToolResult, CallError> {
        self.call_tool_with_timeout(name, arguments, self.call_timeout)
    }

    /// [`call_tool`](Self::call_tool) with its own timeout, for a tool known to be slow.
    pub fn call_tool_with_timeout(
        &self,
        name: &str,
        arguments: Value,
        timeout: Duration,
    ) -> Result<McpToolResult, CallError> {
        if name.is_empty() {
            return Err(err::invalid_argument("MCP tool name is empty".into()));
        }
        let params = match arguments {
            Value::Null => json!({"name": name}),
            arguments @ Value::Object(_) => json!({"name": name, "arguments": arguments}),
            other => {
                return Err(err::invalid_argument(format!(
                    "MCP tool `{name}`: arguments must be a JSON object (or null for none), not {}",
                    json_type(&other)
                )))
            }
        };
        let what = format!("tools/call `{name}`");
        let response = self
            .connection
            .request("tools/call", Some(params), &what, timeout)?;
        McpToolResult::parse(&response.result)
            .map_err(|m| err::protocol(self.connection.program(), format!("{what}: {m}")))
    }

    /// Sends any other request (`resources/list`, `prompts/get`, …) and returns its `result`,
    /// waiting at most [`call_timeout`](McpOptions::call_timeout). Errors as for
    /// [`call_tool`](Self::call_tool); a JSON-RPC error answer is `McpRpcError` with its code.
    pub fn request(&self, method: &str, params: Option<Value>) -> Result<Value, CallError> {
        self.connection
            .request(method, params, method, self.call_timeout)
            .map(|r| r.result)
    }

    /// Closes the session now (as dropping does) and returns the server's exit status, if it
    /// could be reaped.
    pub fn shutdown(mut self) -> Option<ExitStatus> {
        self.connection.close()
    }
}

fn server_info(result: &Value) -> Result<McpServerInfo, String> {
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or("the result has no `protocolVersion` string")?;
    if !SUPPORTED_PROTOCOL_VERSIONS.contains(&version) {
        return Err(format!(
            "the server speaks protocol version {version:?}; this client supports {}",
            SUPPORTED_PROTOCOL_VERSIONS.join(", ")
        ));
    }
    let server = result.get("serverInfo");
    let field = |name: &str| {
        server
            .and_then(|s| s.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(McpServerInfo {
        protocol_version: version.to_string(),
        name: field("name").unwrap_or_default(),
        version: field("version").unwrap_or_default(),
        title: field("title"),
        capabilities: result
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({})),
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_server_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<McpServer>();
    }

    #[test]
    fn unsupported_versions_are_refused_by_name() {
        let e = server_info(&json!({"protocolVersion": "2099-01-01"})).unwrap_err();
        assert!(
            e.contains("\"2099-01-01\"") && e.contains("2024-11-05"),
            "{e}"
        );
        let ok =
            server_info(&json!({"protocolVersion": "2024-11-05", "serverInfo": {"name": "s"}}));
        assert_eq!(ok.unwrap().name, "s");
    }
}
