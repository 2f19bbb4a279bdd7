//! The timeline of a log: one row per event (text or JSON), rows for the activations still
//! outstanding, and the step ends marked as fork points.
//!
//! Everything here is pure: it turns core values into strings, so the commands stay short and
//! the formats are tested without running a binary.

use std::fmt::Write as _;

use agentmesh_core::{ActivationKind, Event, EventData, FailureKind, LogHeader, RunError, Usage};
use serde::Serialize;
use serde_json::Value;

use crate::progress::{self, Pending};

/// Longest JSON preview in a timeline row, in characters.
pub const PREVIEW_CHARS: usize = 60;
/// Widest node column; longer ids are shortened.
const NODE_WIDTH_MAX: usize = 24;
/// Width of the event type column (`activationCancelled`).
const TYPE_WIDTH: usize = 19;

/// How much of the values (outputs, input) a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// Cut to [`PREVIEW_CHARS`] (the text timeline).
    Preview,
    /// Whole, and the event's `data` alongside (`--json`).
    Full,
}

/// One row of a timeline: one canonical event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub seq: u64,
    /// A call record's number under `seq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<u32>,
    /// The superstep the event belongs to (`None` for `runStarted`).
    pub step: Option<u64>,
    pub node: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub attempt: Option<u32>,
    /// `meta.durUs` of the physical record (completions only).
    pub dur_us: Option<u64>,
    /// Whether a step ends here: a place `fork` may branch off.
    pub fork_point: bool,
    pub detail: String,
    /// The event's `data` as the log holds it ([`Values::Full`] only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Rows for events in canonical (seq) order.
///
/// An event belongs to the latest step started before it: in canonical order a step's
/// completions and the decisions they trigger come before the next `stepStarted`.
pub fn rows(events: &[Event], values: Values) -> Vec<Row> {
    let max = match values {
        Values::Preview => PREVIEW_CHARS,
        Values::Full => usize::MAX,
    };
    let mut step = None;
    let fork_points = progress::fork_points(events);
    events
        .iter()
        .map(|e| {
            if let EventData::StepStarted(s) = &e.data {
                step = Some(s.step);
            }
            Row {
                seq: e.seq,
                sub: e.sub,
                step,
                node: e.node.as_deref().map(str::to_owned),
                kind: e.type_name(),
                attempt: e.attempt,
                dur_us: e.meta.as_ref().and_then(|m| m.dur_us),
                fork_point: e.sub.is_none() && fork_points.contains(&e.seq),
                detail: detail(&e.data, max),
                data: (values == Values::Full).then(|| event_data(e)),
            }
        })
        .collect()
}

/// The `data` object of an event, as `read_log` gives it.
fn event_data(e: &Event) -> Value {
    match serde_json::to_value(e) {
        Ok(Value::Object(mut m)) => m.remove("data").unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Compact JSON, cut to `max` characters with `...` (`usize::MAX`: whole).
pub fn preview(value: &Value, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max.saturating_sub(3)).collect();
    format!("{cut}...")
}

fn tokens(text: &mut String, usage: Option<&Usage>) {
    if let Some(u) = usage {
        let _ = write!(
            text,
            " ({} in / {} out tokens{})",
            u.input_tokens,
            u.output_tokens,
            u.model
                .as_deref()
                .map(|m| format!(", {m}"))
                .unwrap_or_default()
        );
    }
}

fn detail(data: &EventData, max: usize) -> String {
    let verdicts = match data {
        EventData::RunStarted(b) => &b.verdicts[..],
        EventData::Completed(_, c) => &c.verdicts,
        EventData::Failed(_, f) => &f.verdicts,
        EventData::CallStarted(c) => &c.verdicts,
        EventData::CallCompleted(c) => &c.verdicts,
        EventData::CallFailed(c) => &c.verdicts,
        EventData::OutputOverridden(o) => &o.verdicts,
        _ => &[],
    };
    let text = body(data, max);
    if verdicts.is_empty() {
        return text;
    }
    // The policy's decisions first, so a long preview cannot hide them.
    format!("{} {text}", policy_note(verdicts))
}

/// `[policy: redact email at /to, warn codename]`: what a record's verdicts decided.
fn policy_note(verdicts: &[agentmesh_core::model::verdict::Verdict]) -> String {
    let parts: Vec<String> = verdicts
        .iter()
        .map(|v| {
            let at = match v.path.as_deref() {
                None | Some("") => String::new(),
                Some(p) => format!(" at {p}"),
            };
            format!("{} {}{at}", v.action, v.kind)
        })
        .collect();
    format!("[policy: {}]", parts.join(", "))
}

fn body(data: &EventData, max: usize) -> String {
    match data {
        EventData::RunStarted(b) => format!(
            "workflow {}, seed {}, input {}",
            b.workflow.name,
            b.seed,
            preview(&b.input, max)
        ),
        EventData::StepStarted(b) => {
            format!(
                "{} activation{}",
                b.activations,
                if b.activations == 1 { "" } else { "s" }
            )
        }
        EventData::Scheduled(kind, s) => {
            let mut parts = Vec::new();
            if let Some(a) = &s.agent {
                parts.push(format!("agent {a}"));
            }
            if let Some(t) = &s.tool {
                parts.push(format!("tool {t}"));
            }
            if let Some(p) = &s.prompt {
                parts.push(format!("asks {}", Value::String(p.to_string())));
            }
            if let Some(item) = &s.item {
                match &item.key {
                    Some(k) => parts.push(format!("item {} ({k})", item.index)),
                    None => parts.push(format!("item {}", item.index)),
                }
            }
            if *kind == ActivationKind::Human {
                parts.push("waits for a person".to_owned());
            }
            if s.visit > 1 {
                parts.push(format!("visit {}", s.visit));
            }
            if let Some(r) = s.retry_of {
                parts.push(format!("retry of #{r}"));
            }
            if s.delay_ms > 0 {
                parts.push(format!("after {} ms backoff", s.delay_ms));
            }
            if let Some(t) = s.timeout_ms {
                parts.push(format!("timeout {t} ms"));
            }
            for (path, seq) in &s.reads {
                parts.push(format!("reads {path} (#{seq})"));
            }
            parts.join(", ")
        }
        EventData::Completed(_, c) => {
            let mut text = preview(&c.output, max);
            tokens(&mut text, c.usage.as_ref());
            text
        }
        EventData::Failed(_, f) => {
            let error = &f.error;
            let mut text = format!(
                "{}{}: {} ({})",
                if error.kind == FailureKind::Timeout {
                    "timeout "
                } else {
                    ""
                },
                error.error_type,
                error.message,
                if error.retryable {
                    "retryable"
                } else {
                    "permanent"
                }
            );
            tokens(&mut text, f.usage.as_ref());
            text
        }
        EventData::ActivationCancelled(c) => format!("cancelled: {}", c.reason),
        EventData::BranchDecided(b) => {
            let which = match b.case {
                Some(c) => format!("case {c}"),
                None => "default".to_owned(),
            };
            match &b.goto {
                Some(g) => format!("{which} -> {g}{}", if b.loop_back { " (loop)" } else { "" }),
                None => format!("{which} -> no successor"),
            }
        }
        EventData::NodeSkipped => "not on the chosen path".to_owned(),
        EventData::OutputOverridden(o) => {
            format!("output set to {}", preview(&o.output, max))
        }
        EventData::RunCompleted(b) => format!("output {}", preview(&b.output, max)),
        EventData::RunFailed(b) => run_error(&b.error),
        EventData::RunCancelled(c) => format!("cancelled: {}", c.reason),
        EventData::RunReopened(r) => format!(
            "reopened ({}): failed and cancelled nodes run again",
            r.reason
        ),
        EventData::CallStarted(c) => format!(
            "call {} {} '{}' {}",
            c.call,
            c.kind.as_str(),
            c.name,
            preview(&c.request, max)
        ),
        EventData::CallCompleted(c) => {
            let text = c.response.get("text").filter(|t| t.as_str() != Some(""));
            let shown = text
                .or_else(|| c.response.get("toolCalls"))
                .cloned()
                .unwrap_or_else(|| (*c.response).clone());
            let mut text = format!("call {} -> {}", c.call, preview(&shown, max));
            if c.cached {
                text.push_str(" (cached)");
            }
            if !c.attempts.is_empty() {
                let _ = write!(text, " after {} failed attempt(s)", c.attempts.len());
            }
            tokens(&mut text, c.usage.as_ref());
            text
        }
        EventData::CallFailed(c) => {
            let e = &c.error;
            let status = e.status.map_or_else(String::new, |s| format!(" HTTP {s}"));
            let mut text = format!(
                "call {} failed: {}{status}: {} ({})",
                c.call,
                e.error_type,
                e.message,
                if e.retryable {
                    "retryable"
                } else {
                    "permanent"
                }
            );
            tokens(&mut text, c.usage.as_ref());
            text
        }
        EventData::CallDenied(d) => {
            let why = match (&d.budget, d.verdicts.first()) {
                (Some(b), _) => b.message(),
                (None, Some(v)) => v.message(),
                (None, None) => "refused".to_owned(),
            };
            format!(
                "call {} {} '{}' refused: {why}",
                d.call,
                d.kind.as_str(),
                d.name
            )
        }
        EventData::WorkflowStarted(w) => format!("workflow {} starts", w.workflow),
        EventData::WorkflowCompleted(w) => format!("workflow {} done", w.workflow),
        EventData::MapCompleted(m) => match m.failed {
            0 => format!("{} items done", m.items),
            f => format!("{} items done, {f} failed (collected)", m.items),
        },
        // A family newer than this renderer: its type name says what it is.
        other => other.type_name().to_owned(),
    }
}

/// `[CODE] message`, naming the node when the message does not already.
pub fn run_error(e: &RunError) -> String {
    match e.node.as_deref() {
        Some(n) if !e.message.contains(&format!("'{n}'")) => {
            format!("[{}] {} (node '{n}')", e.code, e.message)
        }
        _ => format!("[{}] {}", e.code, e.message),
    }
}

/// `1.2 ms`-style duration.
pub fn duration(us: u64) -> String {
    if us < 1_000 {
        format!("{us} us")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The one-line description of a log's header.
pub fn header_line(h: &LogHeader) -> String {
    let mut line = format!(
        "run {}  workflow {} ({})  seed {}",
        h.run_id,
        h.workflow.name,
        short_hash(&h.workflow.hash),
        h.seed
    );
    if let Some(t) = &h.tenant {
        let _ = write!(line, "  tenant {t}");
    }
    if let Some(p) = &h.parent {
        let _ = write!(line, "  forked from {} at seq {}", p.run_id, p.seq);
    }
    line
}

fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let cut: String = text.chars().take(width.saturating_sub(3)).collect();
    format!("{cut}...")
}

/// Marks a row where a step ends (a fork point), right after its seq.
pub const FORK_MARK: char = '★';

/// The legend of [`FORK_MARK`], printed under a timeline that shows one.
pub const FORK_LEGEND: &str =
    "★ step end: a fork point (`agentmesh fork LOG --at SEQ --set NODE=JSON` branches off there)";

/// Column widths of a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    seq_w: usize,
    node_w: usize,
}

impl Layout {
    /// Widths that fit `rows` and `pending`.
    pub fn fitting(rows: &[Row], pending: &[Pending]) -> Layout {
        let nodes = rows
            .iter()
            .filter_map(|r| r.node.as_deref())
            .chain(pending.iter().map(|p| p.node.as_str()));
        let mut layout = Layout::new(rows.iter().map(|r| r.seq).max().unwrap_or(0), nodes);
        if let Some(sub) = rows.iter().filter_map(|r| r.sub).max() {
            layout.seq_w += 1 + sub.to_string().len();
        }
        layout
    }

    /// Widths for seqs up to `max_seq` and these node ids (for a timeline printed as it
    /// grows, sized from the workflow's node ids).
    pub fn new<'a>(max_seq: u64, nodes: impl Iterator<Item = &'a str>) -> Layout {
        Layout {
            seq_w: max_seq.to_string().len().max(3),
            node_w: nodes
                .map(|n| n.chars().count())
                .max()
                .unwrap_or(0)
                .clamp(4, NODE_WIDTH_MAX),
        }
    }

    /// One line from its cells: seq, step, node, event, att, duration, detail.
    fn line(&self, [seq, step, node, kind, att, dur, detail]: [&str; 7]) -> String {
        let (seq_w, node_w) = (self.seq_w + 1, self.node_w);
        let line = format!(
            "{seq:>seq_w$}  {step:>4}  {:<node_w$}  {kind:<TYPE_WIDTH$}  {att:>3}  {dur:>9}  {detail}",
            fit(node, node_w)
        );
        format!("{}\n", line.trim_end())
    }

    /// The column titles.
    pub fn titles(&self) -> String {
        self.line(["seq ", "step", "node", "event", "att", "duration", "detail"])
    }

    /// One event's line: its seq carries [`FORK_MARK`] at a step end.
    pub fn row(&self, r: &Row) -> String {
        let dash = || "-".to_owned();
        let mark = if r.fork_point { FORK_MARK } else { ' ' };
        self.line([
            &match r.sub {
                Some(sub) => format!("{}.{sub}{mark}", r.seq),
                None => format!("{}{mark}", r.seq),
            },
            &r.step.map(|s| s.to_string()).unwrap_or_else(dash),
            r.node.as_deref().unwrap_or("-"),
            r.kind,
            &r.attempt.map(|a| a.to_string()).unwrap_or_else(dash),
            &r.dur_us.map(duration).unwrap_or_else(dash),
            &r.detail,
        ])
    }

    /// The line of an activation with no completion yet: `in flight` for an agent or tool
    /// (running, or lost with a crashed writer), `waiting` for a person.
    pub fn pending(&self, p: &Pending) -> String {
        let (kind, detail) = match p.kind {
            ActivationKind::Human => (
                "waiting",
                match &p.prompt {
                    Some(q) => format!(
                        "asks {}, waits for a person (requested at seq {})",
                        Value::String(q.clone()),
                        p.seq
                    ),
                    None => format!("waits for a person (requested at seq {})", p.seq),
                },
            ),
            kind => (
                "in flight",
                format!(
                    "{} {}{}, scheduled at seq {}, no completion yet",
                    kind.as_str(),
                    p.name,
                    if p.visit > 1 {
                        format!(", visit {}", p.visit)
                    } else {
                        String::new()
                    },
                    p.seq
                ),
            ),
        };
        self.line([
            "- ",
            &p.step.to_string(),
            &p.node,
            kind,
            &p.attempt.to_string(),
            "-",
            &detail,
        ])
    }
}

/// The readable timeline: a header line, column titles, one row per event, a row per
/// activation still outstanding, and the legend of the step-end mark.
pub fn render(header: &LogHeader, rows: &[Row], pending: &[Pending]) -> String {
    let layout = Layout::fitting(rows, pending);
    let mut out = header_line(header);
    out.push('\n');
    out.push_str(&layout.titles());
    for r in rows {
        out.push_str(&layout.row(r));
    }
    for p in pending {
        out.push_str(&layout.pending(p));
    }
    if rows.iter().any(|r| r.fork_point) {
        out.push_str(FORK_LEGEND);
        out.push('\n');
    }
    out
}

/// The timeline as JSON: `{"header": ..., "events": [{seq, step, node, type, attempt, durUs,
/// forkPoint, detail, data}, ...], "pending": [{seq, node, kind, name, attempt, visit, step,
/// prompt}, ...]}`, every value whole.
pub fn to_json(header: &LogHeader, rows: &[Row], pending: &[Pending]) -> String {
    #[derive(Serialize)]
    struct Timeline<'a> {
        header: &'a LogHeader,
        events: &'a [Row],
        pending: &'a [Pending],
    }
    serde_json::to_string(&Timeline {
        header,
        events: rows,
        pending,
    })
    .expect("timeline rows serialize")
}

/// Quote `text` for a POSIX shell when it needs it.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preview_cuts_long_values_on_char_boundaries() {
        let v = Value::String("é".repeat(100));
        let p = preview(&v, 10);
        assert_eq!(p.chars().count(), 10);
        assert!(p.ends_with("..."));
        assert_eq!(preview(&json!({"a": 1}), 10), r#"{"a":1}"#);
    }

    #[test]
    fn run_errors_name_the_node_once() {
        let e = |message: &str| RunError {
            code: "AGENT_FAILED".into(),
            message: message.into(),
            node: Some("b".into()),
            budget: None,
            verdict: None,
            item: None,
        };
        assert_eq!(
            run_error(&e("node 'b' failed")),
            "[AGENT_FAILED] node 'b' failed"
        );
        assert_eq!(
            run_error(&e("too slow")),
            "[AGENT_FAILED] too slow (node 'b')"
        );
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration(15), "15 us");
        assert_eq!(duration(1_500), "1.5 ms");
        assert_eq!(duration(2_500_000), "2.50 s");
    }

    #[test]
    fn shell_quote_leaves_plain_words_alone() {
        assert_eq!(shell_quote("logs/run-1.jsonl"), "logs/run-1.jsonl");
        assert_eq!(shell_quote("my logs/x"), "'my logs/x'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn rows_attribute_events_to_the_latest_step() {
        let events: Vec<Event> = [
            r#"{"seq":1,"type":"runStarted","runId":"r","traceId":"t","data":{"workflow":{"name":"w","nodes":[{"id":"a","type":"agent","agent":"x"}]},"input":null,"seed":0}}"#,
            r#"{"seq":2,"type":"stepStarted","runId":"r","traceId":"t","parentSeq":1,"data":{"step":1,"activations":1}}"#,
            r#"{"seq":3,"type":"agentScheduled","runId":"r","traceId":"t","parentSeq":2,"node":"a","attempt":1,"data":{"agent":"x"}}"#,
            r#"{"seq":4,"type":"agentFailed","runId":"r","traceId":"t","parentSeq":3,"node":"a","attempt":1,"data":{"error":{"kind":"error","type":"Flaky","message":"503","retryable":true}},"meta":{"at":1,"durUs":1500}}"#,
        ]
        .iter()
        .map(|t| Event::from_json(t).unwrap())
        .collect();
        let rows = rows(&events, Values::Preview);
        assert_eq!(rows[0].step, None);
        assert_eq!(rows[3].step, Some(1));
        assert_eq!(rows[3].dur_us, Some(1500));
        assert_eq!(rows[3].detail, "Flaky: 503 (retryable)");
        assert_eq!(rows[2].detail, "agent x");
        assert_eq!(rows[1].detail, "1 activation");
    }
}
