//! Exports of a log: one entry point for the CLI and the bindings.

use std::path::Path;

use agentmesh_core::{read_log, Error, ErrorKind, Event, LogHeader};
use serde_json::{json, Map, Value};

use crate::chrome::{attr_json, chrome_trace_text};
use crate::html::html_timeline;
use crate::mermaid::mermaid;
use crate::spans::{spans, Span, Status};

/// What to turn a log into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Chrome/Perfetto trace JSON.
    Chrome,
    /// A self-contained HTML timeline.
    Html,
    /// A Mermaid flowchart of the workflow with the run's statuses.
    Mermaid,
    /// The derived spans as JSON lines (OTLP field names), what OTLP export sends.
    Spans,
}

impl Format {
    /// `chrome`, `html`, `mermaid` or `spans`.
    ///
    /// Errors: `INVALID_ARGUMENT` naming the formats.
    pub fn parse(name: &str) -> agentmesh_core::Result<Format> {
        match name {
            "chrome" | "perfetto" => Ok(Format::Chrome),
            "html" => Ok(Format::Html),
            "mermaid" => Ok(Format::Mermaid),
            "spans" => Ok(Format::Spans),
            other => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("unknown export format '{other}' (chrome, html, mermaid, spans)"),
            )),
        }
    }
}

/// Render a run's events (`header` and its events in canonical order, as [`read_log`] gives
/// them) in `format`.
///
/// Errors: `INVALID_ARGUMENT` for a Mermaid export of events without `runStarted`.
pub fn render(
    header: &LogHeader,
    events: &[Event],
    format: Format,
) -> agentmesh_core::Result<String> {
    let run_id = header.run_id.as_str();
    let workflow = header.workflow.name.as_str();
    match format {
        Format::Mermaid => mermaid(events).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("the events of run '{run_id}' have no runStarted: no workflow to draw"),
            )
        }),
        Format::Chrome => {
            let (spans, steps) = spans(header, events);
            Ok(chrome_trace_text(run_id, workflow, &spans, &steps) + "\n")
        }
        Format::Html => {
            let (spans, steps) = spans(header, events);
            Ok(html_timeline(run_id, workflow, &spans, &steps))
        }
        Format::Spans => {
            let (spans, _) = spans(header, events);
            let mut out = String::new();
            for s in &spans {
                out.push_str(&serde_json::to_string(&span_json(s)).expect("serializes"));
                out.push('\n');
            }
            Ok(out)
        }
    }
}

/// Render the log at `path` (finished or still running) in `format`.
///
/// Errors: those of [`read_log`] (`IO`, `LOG_CORRUPT`), and of [`render`].
pub fn render_log(path: impl AsRef<Path>, format: Format) -> agentmesh_core::Result<String> {
    let (header, events) = read_log(path)?;
    render(&header, &events, format)
}

/// A span as OTLP/JSON-shaped data (`traceId`, `spanId`, `parentSpanId`, `kind`, times in
/// unix nanoseconds as strings, attributes as a flat object).
pub fn span_json(s: &Span) -> Value {
    let mut attrs = Map::new();
    for (k, v) in &s.attrs {
        attrs.insert((*k).into(), attr_json(v));
    }
    let (code, message) = match &s.status {
        Status::Ok => ("OK", None),
        Status::Error(m) => ("ERROR", Some(m.as_str())),
        Status::Open => ("UNSET", None),
    };
    json!({
        "traceId": s.trace_id.hex(),
        "spanId": s.span_id.hex(),
        "parentSpanId": s.parent.map(|p| p.hex()),
        "name": s.name,
        "kind": if s.category.is_client() { "CLIENT" } else { "INTERNAL" },
        "startTimeUnixNano": (u128::from(s.start_us) * 1000).to_string(),
        "endTimeUnixNano": (u128::from(s.end_us) * 1000).to_string(),
        "attributes": attrs,
        "events": s.events.iter().map(|e| {
            let mut a = Map::new();
            for (k, v) in &e.attrs {
                a.insert((*k).into(), attr_json(v));
            }
            json!({"name": e.name, "timeUnixNano": (u128::from(e.time_us) * 1000).to_string(), "attributes": a})
        }).collect::<Vec<_>>(),
        "links": s.links.iter().map(|l| json!({"traceId": s.trace_id.hex(), "spanId": l.hex()})).collect::<Vec<_>>(),
        "status": {"code": code, "message": message},
        "open": s.status == Status::Open,
    })
}

/// Send the finished spans of the log at `path` to a collector with their original times (a
/// running log's open spans are left out: sent later, the same span would arrive twice with
/// two ends). With `capture_content`, spans carry the recorded inputs and outputs
/// ([`crate::content`]). The number of spans sent.
///
/// Errors: those of [`read_log`], and of [`crate::otlp::export_now`] (`INVALID_ARGUMENT`,
/// `IO`).
pub fn send_log(
    path: impl AsRef<Path>,
    config: &crate::otlp::OtlpConfig,
    capture_content: bool,
) -> agentmesh_core::Result<u64> {
    let (header, events) = read_log(path)?;
    let (all, _) = spans(&header, &events);
    let mut finished: Vec<Span> = all
        .into_iter()
        .filter(|s| s.status != Status::Open)
        .collect();
    if capture_content {
        finished.iter_mut().for_each(crate::content::attach);
    }
    crate::otlp::export_now(&finished, config)
}
