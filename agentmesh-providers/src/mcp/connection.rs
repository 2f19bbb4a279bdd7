//! One MCP server process and the JSON-RPC session over its stdio.
//!
//! Three threads per server, none of them async: a writer (so a caller never blocks on a
//! full stdin pipe beyond its timeout), a reader that routes each response to the caller
//! waiting on its id, and a stderr drain. Ids only grow, so a late response to a request
//! that timed out finds no waiter and is dropped, never handed to a newer request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::error_type as err;
use super::stderr_tail::StderrTail;
use crate::CallError;

/// The longest line accepted from a server (tool results may carry base64 images).
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// How long the reader waits, after stdout closed, for the process to exit.
const EXIT_WAIT: Duration = Duration::from_secs(1);
/// How long it then waits for the rest of stderr.
const STDERR_WAIT: Duration = Duration::from_millis(500);

/// Variables a server inherits unless `inherit_env` is set: what a program needs to run,
/// not the host's API keys (the same set as the MCP SDKs' stdio transports).
#[cfg(not(windows))]
const DEFAULT_ENV: &[&str] = &["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];
#[cfg(windows)]
const DEFAULT_ENV: &[&str] = &[
    "APPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "LOCALAPPDATA",
    "PATH",
    "PROCESSOR_ARCHITECTURE",
    "SYSTEMDRIVE",
    "SYSTEMROOT",
    "TEMP",
    "USERNAME",
    "USERPROFILE",
    "PROGRAMFILES",
];

/// A routed response: the `result` and how many `tools/list_changed` notifications the
/// reader had seen when it routed it (they arrive in stream order).
pub(crate) struct Response {
    pub(crate) result: Value,
    pub(crate) list_changed: u64,
}

type Outcome = Result<Response, CallError>;

struct Waiter {
    what: String,
    tx: mpsc::Sender<Outcome>,
}

struct State {
    next_id: u64,
    pending: HashMap<u64, Waiter>,
    /// Set once the session is unusable; every waiter and every later request gets it.
    fatal: Option<CallError>,
    list_changed: u64,
}

struct Shared {
    program: String,
    state: Mutex<State>,
    /// `None` once the client closed the session (dropping it closes the server's stdin).
    writer: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    child: Mutex<Child>,
    stderr: StderrTail,
}

/// A running server. Dropping it closes stdin, waits `grace`, then kills and reaps.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    pid: u32,
    grace: Duration,
    closed: Option<Option<ExitStatus>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connection {
    /// Starts `command` with piped stdio and the three threads.
    pub(crate) fn spawn(
        command: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
        inherit_env: bool,
        grace: Duration,
    ) -> Result<Connection, CallError> {
        let Some(program) = command.first().filter(|p| !p.is_empty()) else {
            return Err(err::invalid_argument(
                "MCP server command is empty: give the program and its arguments".into(),
            ));
        };
        let mut cmd = Command::new(program);
        cmd.args(&command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !inherit_env {
            cmd.env_clear();
            for key in DEFAULT_ENV {
                if let Some(value) = std::env::var_os(key) {
                    cmd.env(key, value);
                }
            }
        }
        for (key, value) in env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                // The value is not quoted: it may be a secret.
                return Err(err::invalid_argument(format!(
                    "MCP server `{program}`: environment variable name {key:?} or its value is invalid"
                )));
            }
            cmd.env(key, value);
        }
        if let Some(dir) = cwd {
            if !dir.is_dir() {
                return Err(err::bad_cwd(program, dir));
            }
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| err::spawn_failed(program, &e))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable_pipes(&mut child);
            return Err(err::spawn_failed(
                program,
                &std::io::Error::other("stdio pipes missing"),
            ));
        };
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let shared = Arc::new(Shared {
            program: program.clone(),
            state: Mutex::new(State {
                next_id: 1,
                pending: HashMap::new(),
                fatal: None,
                list_changed: 0,
            }),
            writer: Mutex::new(Some(tx)),
            child: Mutex::new(child),
            stderr: StderrTail::default(),
        });
        let connection = Connection {
            shared: Arc::clone(&shared),
            pid,
            grace,
            closed: None,
        };
        // On a failed thread spawn `connection` drops here, which kills and reaps the child.
        start_thread("agentmesh-mcp-writer", program, move || {
            write_loop(stdin, rx)
        })?;
        let s = Arc::clone(&shared);
        start_thread("agentmesh-mcp-stderr", program, move || {
            s.stderr.drain(stderr)
        })?;
        let s = Arc::clone(&shared);
        start_thread("agentmesh-mcp-reader", program, move || s.read_loop(stdout))?;
        Ok(connection)
    }

    /// The program (first word of the command), for messages.
    pub(crate) fn program(&self) -> &str {
        &self.shared.program
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// What the server wrote to stderr lately.
    pub(crate) fn stderr_tail(&self) -> String {
        self.shared.stderr.text()
    }

    /// How many `notifications/tools/list_changed` the server has sent.
    pub(crate) fn list_changed(&self) -> u64 {
        lock(&self.shared.state).list_changed
    }

    /// Sends a request and waits for its response, at most `timeout`. `what` names the
    /// request in messages (`tools/call \`echo\``).
    pub(crate) fn request(
        &self,
        method: &str,
        params: Option<Value>,
        what: &str,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let (tx, rx) = mpsc::channel();
        let id = {
            let mut state = lock(&self.shared.state);
            if let Some(fatal) = &state.fatal {
                return Err(fatal.clone());
            }
            let id = state.next_id;
            state.next_id += 1;
            let what = what.to_string();
            state.pending.insert(id, Waiter { what, tx });
            id
        };
        let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        // A failed send means the server is gone: the reader reports why, and the timeout
        // bounds the wait if it cannot.
        self.shared.send(&message);
        match rx.recv_timeout(timeout) {
            Ok(outcome) => outcome,
            Err(RecvTimeoutError::Timeout) => {
                let still_pending = lock(&self.shared.state).pending.remove(&id).is_some();
                if !still_pending {
                    // The reader routed it between the timeout and the lock (it sends under
                    // the lock, so the outcome is already in the channel).
                    if let Ok(outcome) = rx.try_recv() {
                        return outcome;
                    }
                }
                // The spec forbids cancelling `initialize`; anything else is cancelled so the
                // server can stop working on it (its late answer, if any, is dropped).
                if method != "initialize" {
                    self.notify(
                        "notifications/cancelled",
                        Some(json!({"requestId": id, "reason": "client timeout"})),
                    );
                }
                Err(err::timeout(&self.shared.program, what, timeout))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.shared.fatal_or_closed()),
        }
    }

    /// Sends a notification (no response expected).
    pub(crate) fn notify(&self, method: &str, params: Option<Value>) {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        self.shared.send(&message);
    }

    /// Ends the session: closes stdin, waits up to the grace period for the server to exit,
    /// then kills it; reaps it either way. Idempotent; returns the exit status if known.
    pub(crate) fn close(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.closed {
            return status;
        }
        self.shared
            .fail(err::closed_by_client(&self.shared.program));
        lock(&self.shared.writer).take();
        let status = self.shared.wait_exit(self.grace).or_else(|| {
            let mut child = lock(&self.shared.child);
            let _ = child.kill();
            child.wait().ok()
        });
        self.closed = Some(status);
        status
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// `spawn` asked for all three pipes, so they exist; if a platform ever disagreed, the child
/// is not left behind.
fn unreachable_pipes(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn start_thread(
    name: &str,
    program: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<(), CallError> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map(drop)
        .map_err(|e| err::spawn_failed(program, &e))
}

fn write_loop(mut stdin: ChildStdin, rx: mpsc::Receiver<Vec<u8>>) {
    for line in rx {
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            return;
        }
    }
    // The channel closed: dropping `stdin` tells the server to exit.
}

enum Line {
    Complete,
    TooLong,
    Eof,
}

/// Reads one `\n`-terminated line into `line` (without the newline), at most `max` bytes.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    line.clear();
    loop {
        let available = match r.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if line.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(available.len());
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&available[..take.min(room)]);
        r.consume(if newline.is_some() { take + 1 } else { take });
        if take > room {
            return Ok(Line::TooLong);
        }
        if newline.is_some() {
            return Ok(Line::Complete);
        }
    }
}

impl Shared {
    fn send(&self, message: &Value) -> bool {
        let Ok(mut bytes) = serde_json::to_vec(message) else {
            return false;
        };
        bytes.push(b'\n');
        match lock(&self.writer).as_ref() {
            Some(tx) => tx.send(bytes).is_ok(),
            None => false,
        }
    }

    /// Makes the session unusable with `error` (the first error wins) and wakes every waiter.
    fn fail(&self, error: CallError) {
        let mut state = lock(&self.state);
        let error = state.fatal.get_or_insert(error).clone();
        for (_, waiter) in state.pending.drain() {
            let _ = waiter.tx.send(Err(error.clone()));
        }
    }

    fn fatal_or_closed(&self) -> CallError {
        lock(&self.state)
            .fatal
            .clone()
            .unwrap_or_else(|| err::closed_by_client(&self.program))
    }

    fn kill(&self) {
        let _ = lock(&self.child).kill();
    }

    fn wait_exit(&self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            match lock(&self.child).try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(_) => return None,
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn read_loop(&self, stdout: ChildStdout) {
        let mut reader = BufReader::with_capacity(64 * 1024, stdout);
        let mut line = Vec::new();
        loop {
            let problem = match read_line(&mut reader, &mut line, MAX_LINE_BYTES) {
                Ok(Line::Complete) => match self.handle_line(&line) {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Ok(Line::TooLong) => {
                    let what = format!("longer than {} MiB", MAX_LINE_BYTES >> 20);
                    err::malformed(&self.program, &what, &line)
                }
                Ok(Line::Eof) => {
                    self.on_eof();
                    return;
                }
                Err(e) => err::read_failed(&self.program, &e),
            };
            // After a line that is not JSON-RPC the stream cannot be trusted (that line may
            // have been anyone's response): end the session for every caller.
            self.fail(problem);
            self.kill();
            return;
        }
    }

    fn on_eof(&self) {
        let status = self.wait_exit(EXIT_WAIT);
        self.stderr.wait_closed(STDERR_WAIT);
        let tail = self.stderr.text();
        self.fail(match status {
            Some(status) => err::exited(&self.program, status, &tail),
            None => err::stdout_closed(&self.program, &tail),
        });
    }

    fn handle_line(&self, line: &[u8]) -> Result<(), CallError> {
        let line = line.trim_ascii();
        if line.is_empty() {
            return Ok(());
        }
        let bad = |what: &str| err::malformed(&self.program, what, line);
        let value: Value =
            serde_json::from_slice(line).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let message = match value {
            Value::Object(message) => message,
            Value::Array(_) => return Err(bad("a JSON array; MCP has no batches")),
            _ => return Err(bad("not a JSON object")),
        };
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(bad("`jsonrpc` is not \"2.0\""));
        }
        match message.get("method") {
            Some(Value::String(method)) => {
                match message.get("id") {
                    Some(id) if !id.is_null() => self.answer(id, method),
                    _ => self.on_notification(method),
                }
                Ok(())
            }
            Some(_) => Err(bad("`method` is not a string")),
            None => self.on_response(&message, &bad),
        }
    }

    fn on_response(
        &self,
        message: &serde_json::Map<String, Value>,
        bad: &dyn Fn(&str) -> CallError,
    ) -> Result<(), CallError> {
        let id = match message.get("id") {
            Some(Value::Number(n)) => n.as_u64(),
            // Not one of ours (we send numbers); `null` is an error the server could not
            // attribute to a request.
            Some(Value::String(_)) | Some(Value::Null) => None,
            Some(_) => return Err(bad("`id` is neither a number nor a string")),
            None => return Err(bad("a response without `id`")),
        };
        let outcome: Result<Value, (i64, String)> =
            match (message.get("result"), message.get("error")) {
                (Some(result), None) => Ok(result.clone()),
                (None, Some(Value::Object(error))) => {
                    let code = error.get("code").and_then(Value::as_i64);
                    let text = error.get("message").and_then(Value::as_str);
                    match (code, text) {
                        (Some(code), Some(text)) => Err((code, text.to_string())),
                        _ => {
                            return Err(bad(
                                "an `error` without an integer `code` and a string `message`",
                            ))
                        }
                    }
                }
                (None, Some(_)) => return Err(bad("`error` is not an object")),
                (Some(_), Some(_)) => return Err(bad("a response with both `result` and `error`")),
                (None, None) => return Err(bad("a response with neither `result` nor `error`")),
            };
        let mut state = lock(&self.state);
        // No waiter: the request timed out (or was never ours). Dropped, never re-routed.
        let Some(waiter) = id.and_then(|id| state.pending.remove(&id)) else {
            return Ok(());
        };
        let outcome = match outcome {
            Ok(result) => Ok(Response {
                result,
                list_changed: state.list_changed,
            }),
            Err((code, text)) => Err(err::rpc_error(&self.program, &waiter.what, code, &text)),
        };
        // Sent under the lock: a caller that just timed out and finds its waiter gone can
        // count on the outcome being in its channel.
        let _ = waiter.tx.send(outcome);
        Ok(())
    }

    /// Requests from the server: we offer no client capabilities, so only `ping` is answered.
    fn answer(&self, id: &Value, method: &str) {
        let reply = if method == "ping" {
            json!({"jsonrpc": "2.0", "id": id, "result": {}})
        } else {
            json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32601,
                "message": format!("Method not found: {method} (the AgentMesh client offers no capabilities)"),
            }})
        };
        self.send(&reply);
    }

    fn on_notification(&self, method: &str) {
        // Progress, logging, resource updates: nothing here waits on them.
        if method == "notifications/tools/list_changed" {
            lock(&self.state).list_changed += 1;
        }
    }
}

/// Every line of `input`, read through a 4-byte buffer.
#[cfg(test)]
fn lines(input: &[u8], max: usize) -> Vec<Result<String, &'static str>> {
    let mut r = BufReader::with_capacity(4, input);
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        match read_line(&mut r, &mut line, max).unwrap() {
            Line::Complete => out.push(Ok(String::from_utf8(line.clone()).unwrap())),
            Line::TooLong => out.push(Err("too long")),
            Line::Eof => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_across_buffer_boundaries() {
        let got = lines(b"{\"a\":1}\n\nlast-without-newline", 100);
        assert_eq!(
            got,
            vec![
                Ok("{\"a\":1}".into()),
                Ok(String::new()),
                Ok("last-without-newline".into())
            ]
        );
    }

    #[test]
    fn a_line_over_the_limit_is_reported() {
        assert_eq!(lines(b"0123456789\n", 5)[0], Err("too long"));
        assert_eq!(lines(b"01234\n", 5), vec![Ok("01234".into())]);
    }
}
