//! The `error_type` strings of MCP call errors, and the constructors that word them.
//!
//! Every constructor names the server by its program only (`node`, `./server`): arguments and
//! environment values may hold secrets and never appear in a message.

use std::process::ExitStatus;
use std::time::Duration;

use agentmesh_core::ErrorKind;

use crate::CallError;

/// The server could not be started (command not found, not executable, bad working directory).
pub const SPAWN_FAILED: &str = "McpSpawnFailed";
/// The server exited (or was killed) while the session was open; the message has the exit
/// status and the tail of its stderr.
pub const SERVER_EXITED: &str = "McpServerExited";
/// The server closed its stdout but did not exit.
pub const STDOUT_CLOSED: &str = "McpStdoutClosed";
/// No response within the timeout (kind `TIMEOUT`, retryable).
pub const TIMEOUT: &str = "Timeout";
/// The server broke the protocol: a line that is not a JSON-RPC message, an unsupported
/// protocol version, a result without the fields MCP requires.
pub const PROTOCOL_ERROR: &str = "McpProtocolError";
/// The server answered with a JSON-RPC error (the message has its code and text).
pub const RPC_ERROR: &str = "McpRpcError";
/// A tool ran and reported failure (`isError: true`); see `McpToolResult::into_result`.
pub const TOOL_ERROR: &str = "ToolError";
/// The request is malformed before anything is sent (kind `INVALID_ARGUMENT`).
pub const INVALID_ARGUMENT: &str = "InvalidArgument";

/// How much of an offending line a message quotes.
const LINE_QUOTE_CHARS: usize = 200;

fn error(kind: ErrorKind, error_type: &str, message: String, retryable: bool) -> CallError {
    CallError {
        kind,
        error_type: error_type.to_string(),
        message,
        status: None,
        retryable,
    }
}

fn with_stderr(mut message: String, stderr_tail: &str) -> String {
    if stderr_tail.is_empty() {
        message.push_str(" (stderr was empty)");
    } else {
        message.push_str("; stderr tail:\n");
        message.push_str(stderr_tail);
    }
    message
}

pub(crate) fn invalid_argument(message: String) -> CallError {
    error(ErrorKind::InvalidArgument, INVALID_ARGUMENT, message, false)
}

pub(crate) fn spawn_failed(program: &str, err: &std::io::Error) -> CallError {
    let message = match err.kind() {
        std::io::ErrorKind::NotFound => {
            format!("MCP server command not found: `{program}` (is it installed and on PATH?)")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("MCP server command `{program}` is not executable: {err}")
        }
        _ => format!("MCP server command `{program}` could not be started: {err}"),
    };
    error(ErrorKind::ProviderError, SPAWN_FAILED, message, false)
}

pub(crate) fn bad_cwd(program: &str, cwd: &std::path::Path) -> CallError {
    let message = format!(
        "MCP server `{program}`: working directory {} does not exist or is not a directory",
        cwd.display()
    );
    error(ErrorKind::ProviderError, SPAWN_FAILED, message, false)
}

pub(crate) fn exited(program: &str, status: ExitStatus, stderr_tail: &str) -> CallError {
    let message = with_stderr(
        format!("MCP server `{program}` exited ({status})"),
        stderr_tail,
    );
    error(ErrorKind::ProviderError, SERVER_EXITED, message, false)
}

pub(crate) fn stdout_closed(program: &str, stderr_tail: &str) -> CallError {
    let message = with_stderr(
        format!("MCP server `{program}` closed its stdout but is still running"),
        stderr_tail,
    );
    error(ErrorKind::ProviderError, STDOUT_CLOSED, message, false)
}

pub(crate) fn read_failed(program: &str, err: &std::io::Error) -> CallError {
    let message = format!("MCP server `{program}`: reading its stdout failed: {err}");
    error(ErrorKind::ProviderError, STDOUT_CLOSED, message, false)
}

pub(crate) fn closed_by_client(program: &str) -> CallError {
    let message = format!("MCP server `{program}`: the session was closed by the client");
    error(ErrorKind::ProviderError, SERVER_EXITED, message, false)
}

pub(crate) fn timeout(program: &str, what: &str, after: Duration) -> CallError {
    let message = format!(
        "MCP server `{program}`: no response to {what} within {} ms",
        after.as_millis()
    );
    error(ErrorKind::Timeout, TIMEOUT, message, true)
}

/// A line on stdout that is not a JSON-RPC message: the session cannot continue, since the
/// line may have been any response.
pub(crate) fn malformed(program: &str, what: &str, line: &[u8]) -> CallError {
    let text = String::from_utf8_lossy(line);
    let quoted: String = text.chars().take(LINE_QUOTE_CHARS).collect();
    let more = if text.chars().count() > LINE_QUOTE_CHARS {
        "…"
    } else {
        ""
    };
    let message =
        format!("MCP server `{program}` sent a malformed JSON-RPC line ({what}): `{quoted}{more}`");
    error(ErrorKind::ProviderError, PROTOCOL_ERROR, message, false)
}

pub(crate) fn protocol(program: &str, message: String) -> CallError {
    let message = format!("MCP server `{program}`: {message}");
    error(ErrorKind::ProviderError, PROTOCOL_ERROR, message, false)
}

pub(crate) fn rpc_error(program: &str, what: &str, code: i64, text: &str) -> CallError {
    let message =
        format!("MCP server `{program}` answered {what} with JSON-RPC error {code}: {text}");
    error(ErrorKind::ProviderError, RPC_ERROR, message, false)
}

pub(crate) fn tool_error(message: String) -> CallError {
    error(ErrorKind::ProviderError, TOOL_ERROR, message, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_quotes_at_most_200_chars_on_a_char_boundary() {
        let line = "é".repeat(500);
        let e = malformed("srv", "not JSON", line.as_bytes());
        assert_eq!(e.error_type, PROTOCOL_ERROR);
        let quoted = e.message.split('`').nth(3).unwrap();
        assert_eq!(quoted.chars().count(), 201, "200 chars and an ellipsis");
        assert!(quoted.ends_with('…'));
    }

    #[test]
    fn timeout_is_retryable_with_kind_timeout() {
        let e = timeout("srv", "tools/call `x`", Duration::from_millis(250));
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.retryable);
        assert!(e.message.contains("250 ms"), "{}", e.message);
    }
}
