//! Structured logs: each committed event as a `tracing` event (target `agentmesh::event`)
//! carrying run id, trace id, span id, node, seq and type, plus the telemetry's own warnings
//! (target `agentmesh::telemetry`: dropped spans). With no subscriber installed they cost a
//! check per event.
//!
//! Two ways to see them: [`json_logs_to_stderr`] (one JSON object per line), or [`capture_logs`], which
//! keeps the JSON lines in a bounded buffer that a host drains on its own thread — how the
//! Python and Node packages route them into `logging` and a Node logger without Rust ever
//! calling into Python or JavaScript.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use agentmesh_core::{Error, ErrorKind, Event, EventData};
use tracing::Level;

use crate::spans::SpanId;

/// Emit `events` of run `run_id` as `tracing` events.
pub fn emit(run_id: &str, events: &[Event]) {
    for e in events {
        let level = level_of(&e.data);
        // The macros need the level as a constant: one arm per level.
        macro_rules! event_at {
            ($lvl:expr) => {
                tracing::event!(
                    target: "agentmesh::event",
                    $lvl,
                    run_id = %e.run_id,
                    trace_id = %e.trace_id,
                    span_id = %span_of(run_id, e).hex(),
                    seq = e.seq,
                    sub = e.sub,
                    node = e.node.as_deref(),
                    attempt = e.attempt,
                    event = e.type_name(),
                    "{}",
                    summary(e)
                )
            };
        }
        match level {
            Level::WARN => event_at!(Level::WARN),
            Level::INFO => event_at!(Level::INFO),
            _ => event_at!(Level::DEBUG),
        }
    }
}

/// The span this event belongs to (the one [`crate::spans`] derives for it): an activation's
/// is opened by its scheduled event, a call's by its `callStarted` (the sub before its
/// result's), everything else is the run's.
fn span_of(run_id: &str, e: &Event) -> SpanId {
    let (seq, sub) = match &e.data {
        EventData::Scheduled(..) => (e.seq, None),
        EventData::Completed(..) | EventData::Failed(..) | EventData::ActivationCancelled(_) => {
            (e.parent_seq.unwrap_or(e.seq), None)
        }
        EventData::CallStarted(_) | EventData::CallDenied(_) => (e.seq, e.sub),
        EventData::CallCompleted(_) | EventData::CallFailed(_) => {
            (e.seq, e.sub.map(|s| s.saturating_sub(1)))
        }
        _ => (1, None),
    };
    SpanId::of(run_id, seq, sub)
}

fn level_of(data: &EventData) -> Level {
    match data {
        EventData::Failed(..)
        | EventData::CallFailed(_)
        | EventData::CallDenied(_)
        | EventData::RunFailed(_)
        | EventData::BudgetWarning(_) => Level::WARN,
        EventData::RunStarted(_)
        | EventData::RunCompleted(_)
        | EventData::RunCancelled(_)
        | EventData::RunReopened(_) => Level::INFO,
        _ => Level::DEBUG,
    }
}

/// A one-line description (no payloads: those stay in the log, where the policy judged them).
fn summary(e: &Event) -> String {
    let node = e.node.as_deref().unwrap_or("-");
    match &e.data {
        EventData::RunStarted(b) => format!("run started: workflow {}", b.workflow.name),
        EventData::StepStarted(b) => {
            format!("step {} started ({} activations)", b.step, b.activations)
        }
        EventData::Scheduled(..) => {
            format!("{node} scheduled (attempt {})", e.attempt.unwrap_or(1))
        }
        EventData::Completed(..) => format!("{node} completed"),
        EventData::Failed(_, b) => {
            format!("{node} failed: {}: {}", b.error.error_type, b.error.message)
        }
        EventData::ActivationCancelled(b) => format!("{node} cancelled: {}", b.reason),
        EventData::CallStarted(b) => format!("{node} calls {} {}", b.kind.as_str(), b.name),
        EventData::CallCompleted(_) => format!("{node} call answered"),
        EventData::CallFailed(b) => format!(
            "{node} call failed: {}: {}",
            b.error.error_type, b.error.message
        ),
        EventData::CallDenied(b) => format!("{node} call to {} refused", b.name),
        EventData::BudgetWarning(w) => format!(
            "budget warning: {} {} at {}% ({} of {})",
            w.scope.as_str(),
            w.dimension.as_str(),
            w.threshold,
            w.spent,
            w.limit
        ),
        EventData::RunCompleted(_) => "run completed".to_owned(),
        EventData::RunFailed(b) => format!("run failed: [{}] {}", b.error.code, b.error.message),
        EventData::RunCancelled(b) => format!("run cancelled: {}", b.reason),
        EventData::RunReopened(b) => format!("run reopened: {}", b.reason),
        other => format!("{node}: {}", EventKindName(other)),
    }
}

struct EventKindName<'a>(&'a EventData);

impl std::fmt::Display for EventKindName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.type_name())
    }
}

fn parse_level(level: &str) -> agentmesh_core::Result<Level> {
    match level.to_ascii_lowercase().as_str() {
        "debug" => Ok(Level::DEBUG),
        "info" => Ok(Level::INFO),
        "warn" | "warning" => Ok(Level::WARN),
        "error" => Ok(Level::ERROR),
        other => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("log level '{other}' is not debug, info, warn or error"),
        )),
    }
}

fn install<W>(level: Level, writer: W) -> agentmesh_core::Result<()>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_max_level(level)
        .with_writer(writer)
        .finish();
    tracing::subscriber::set_global_default(subscriber).map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            "a tracing subscriber is already installed in this process",
        )
    })
}

/// Print AgentMesh's logs (and every other `tracing` event of the process) as JSON lines
/// on stderr, from `level` (`debug`, `info`, `warn`, `error`) up.
///
/// Errors: `INVALID_ARGUMENT` for another level, or when the process already has a global
/// `tracing` subscriber.
pub fn json_logs_to_stderr(level: &str) -> agentmesh_core::Result<()> {
    install(parse_level(level)?, io::stderr)
}

/// JSON log lines kept for a host to drain ([`capture_logs`]).
#[derive(Debug)]
pub struct LogBuffer {
    lines: Mutex<VecDeque<String>>,
    ready: Condvar,
    cap: usize,
    dropped: AtomicU64,
}

impl LogBuffer {
    fn push(&self, line: String) {
        let mut q = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= self.cap {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(line);
        self.ready.notify_one();
    }

    /// Up to `max` lines, waiting at most `wait` for the first.
    pub fn drain(&self, max: usize, wait: Duration) -> Vec<String> {
        let mut q = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_empty() && !wait.is_zero() {
            q = self
                .ready
                .wait_timeout(q, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    /// Lines dropped because the buffer was full (the oldest go first).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct BufferWriter(Arc<LogBuffer>);

struct LineWriter {
    buffer: Arc<LogBuffer>,
    bytes: Vec<u8>,
}

impl io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.bytes);
        for line in text.lines().filter(|l| !l.is_empty()) {
            self.buffer.push(line.to_owned());
        }
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for BufferWriter {
    type Writer = LineWriter;
    fn make_writer(&'w self) -> LineWriter {
        LineWriter {
            buffer: self.0.clone(),
            bytes: Vec::new(),
        }
    }
}

/// Keep the process's `tracing` events from `level` up as JSON lines in a buffer of `cap`
/// lines (the oldest dropped first), for a host to [`LogBuffer::drain`].
///
/// Errors: `INVALID_ARGUMENT` for another level, or when the process already has a global
/// `tracing` subscriber.
///
/// The first call installs the buffer; later calls return the same buffer (with the first
/// call's level and size).
pub fn capture_logs(level: &str, cap: usize) -> agentmesh_core::Result<Arc<LogBuffer>> {
    static CAPTURED: Mutex<Option<Arc<LogBuffer>>> = Mutex::new(None);
    let level = parse_level(level)?;
    let mut captured = CAPTURED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = captured.as_ref() {
        return Ok(b.clone());
    }
    let buffer = Arc::new(LogBuffer {
        lines: Mutex::new(VecDeque::new()),
        ready: Condvar::new(),
        cap: cap.max(1),
        dropped: AtomicU64::new(0),
    });
    install(level, BufferWriter(buffer.clone()))?;
    *captured = Some(buffer.clone());
    Ok(buffer)
}
