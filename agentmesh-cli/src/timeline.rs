//! Text (and JSON) rendering of logs, outcomes, states and verify reports.
//!
//! Everything here is pure: it turns core values into strings, so the commands stay short and
//! the formats are tested without running a binary.

use std::fmt::Write as _;

use agentmesh_core::{
    Activation, ActivationKind, Event, EventData, FailureKind, LogHeader, RunError, RunResult,
    RunState, RunStatus, Usage, VerifyReport,
};
use serde::Serialize;
use serde_json::Value;

/// Longest JSON preview in a timeline row, in characters.
const PREVIEW_CHARS: usize = 60;
/// Widest node column; longer ids are shortened.
const NODE_WIDTH_MAX: usize = 24;
/// Width of the event type column (`activationCancelled`).
const TYPE_WIDTH: usize = 19;

/// One row of a timeline: one canonical event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub seq: u64,
    /// The superstep the event belongs to (`None` for `runStarted`).
    pub step: Option<u64>,
    pub node: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub attempt: Option<u32>,
    /// `meta.durUs` of the physical record (completions only).
    pub dur_us: Option<u64>,
    pub detail: String,
}

/// Rows for events in canonical (seq) order.
///
/// An event belongs to the latest step started before it: in canonical order a step's
/// completions and the decisions they trigger come before the next `stepStarted`.
pub fn rows(events: &[Event]) -> Vec<Row> {
    let mut step = None;
    events
        .iter()
        .map(|e| {
            if let EventData::StepStarted(s) = &e.data {
                step = Some(s.step);
            }
            Row {
                seq: e.seq,
                step,
                node: e.node.as_deref().map(str::to_owned),
                kind: e.type_name(),
                attempt: e.attempt,
                dur_us: e.meta.and_then(|m| m.dur_us),
                detail: detail(&e.data),
            }
        })
        .collect()
}

/// Compact JSON, cut to `max` characters with `...`.
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

fn detail(data: &EventData) -> String {
    match data {
        EventData::RunStarted(b) => format!(
            "workflow {}, seed {}, input {}",
            b.workflow.name,
            b.seed,
            preview(&b.input, PREVIEW_CHARS)
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
            parts.join(", ")
        }
        EventData::Completed(_, c) => {
            let mut text = preview(&c.output, PREVIEW_CHARS);
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
            format!("output set to {}", preview(&o.output, PREVIEW_CHARS))
        }
        EventData::RunCompleted(b) => format!("output {}", preview(&b.output, PREVIEW_CHARS)),
        EventData::RunFailed(b) => run_error(&b.error),
        EventData::RunCancelled(c) => format!("cancelled: {}", c.reason),
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

/// The readable timeline: a header line, column titles, one row per event.
pub fn render(header: &LogHeader, rows: &[Row]) -> String {
    let dash = || "-".to_owned();
    let seq_w = rows
        .iter()
        .map(|r| r.seq.to_string().len())
        .max()
        .unwrap_or(0)
        .max(3);
    let node_w = rows
        .iter()
        .filter_map(|r| r.node.as_deref().map(|n| n.chars().count()))
        .max()
        .unwrap_or(0)
        .clamp(4, NODE_WIDTH_MAX);
    let mut out = header_line(header);
    out.push('\n');
    let _ = writeln!(
        out,
        "{:>seq_w$}  {:>4}  {:<node_w$}  {:<TYPE_WIDTH$}  {:>3}  {:>9}  detail",
        "seq", "step", "node", "event", "att", "duration"
    );
    for r in rows {
        let line = format!(
            "{:>seq_w$}  {:>4}  {:<node_w$}  {:<TYPE_WIDTH$}  {:>3}  {:>9}  {}",
            r.seq,
            r.step.map(|s| s.to_string()).unwrap_or_else(dash),
            fit(r.node.as_deref().unwrap_or("-"), node_w),
            r.kind,
            r.attempt.map(|a| a.to_string()).unwrap_or_else(dash),
            r.dur_us.map(duration).unwrap_or_else(dash),
            r.detail
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The timeline as JSON: `{"header": ..., "events": [{seq, step, node, type, attempt, durUs,
/// detail}, ...]}`.
pub fn to_json(header: &LogHeader, rows: &[Row]) -> String {
    #[derive(Serialize)]
    struct Timeline<'a> {
        header: &'a LogHeader,
        events: &'a [Row],
    }
    serde_json::to_string(&Timeline {
        header,
        events: rows,
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

fn describe_human(a: &Activation) -> String {
    match &a.prompt {
        Some(p) => format!("{} (asks {})", a.node, Value::String(p.clone())),
        None => a.node.to_string(),
    }
}

/// The outcome block printed after a run: status, output or error, log, fingerprint, and for a
/// waiting run the nodes and the exact command that approves them (`resume_cmd` is the
/// command up to the `--approve` flags).
pub fn render_outcome(r: &RunResult, resume_cmd: Option<&str>) -> String {
    let mut out = String::new();
    let status = r.status.as_str();
    let _ = writeln!(out, "status       {status}");
    match r.status {
        RunStatus::Completed => {
            let output = r.output.clone().unwrap_or(Value::Null);
            let _ = writeln!(out, "output       {output}");
        }
        RunStatus::Waiting => {
            let nodes: Vec<String> = r.waiting.iter().map(describe_human).collect();
            let _ = writeln!(out, "waiting for  {}", nodes.join(", "));
        }
        _ => {}
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "error        {}", run_error(e));
    }
    if let Some(p) = &r.log_path {
        let _ = writeln!(out, "log          {}", p.display());
    }
    match r.fingerprint() {
        Ok(fp) => {
            let _ = writeln!(out, "fingerprint  {fp}");
        }
        Err(e) => {
            let _ = writeln!(out, "fingerprint  unavailable: {e}");
        }
    }
    if r.status == RunStatus::Waiting {
        if let Some(cmd) = resume_cmd {
            let mut line = cmd.to_owned();
            for a in &r.waiting {
                let _ = write!(line, " --approve {}", shell_quote(&a.node));
            }
            let _ = writeln!(out, "to approve:  {line}");
        }
    }
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// The state of a run at one seq (`inspect --at`); `log` is named in the fork hint.
pub fn render_state(header: &LogHeader, log: &str, st: &RunState) -> String {
    let mut out = header_line(header);
    out.push('\n');
    let _ = writeln!(out, "state at seq {}", st.seq);
    let _ = writeln!(out, "status       {}", st.status.as_str());
    let _ = writeln!(out, "step         {}", st.step);
    if st.fork_point {
        let _ = writeln!(
            out,
            "fork point   yes, a step end: `agentmesh fork {} --at {} --set NODE=JSON` branches off here",
            shell_quote(log),
            st.seq
        );
    } else {
        let _ = writeln!(out, "fork point   no (not a step end)");
    }
    if st.completed.is_empty() {
        let _ = writeln!(out, "completed    -");
    } else {
        let width = st.completed.keys().map(|k| k.len()).max().unwrap_or(0);
        for (i, (node, output)) in st.completed.iter().enumerate() {
            let label = if i == 0 { "completed" } else { "" };
            let _ = writeln!(
                out,
                "{label:<12} {node:<width$}  {}",
                preview(output, PREVIEW_CHARS)
            );
        }
    }
    let _ = writeln!(out, "skipped      {}", list(&st.skipped));
    let _ = writeln!(out, "failed       {}", list(&st.failed));
    if st.pending.is_empty() {
        let _ = writeln!(out, "pending      -");
    } else {
        for (i, a) in st.pending.iter().enumerate() {
            let label = if i == 0 { "pending" } else { "" };
            let _ = writeln!(
                out,
                "{label:<12} #{} {} ({} {}, attempt {}, visit {})",
                a.id,
                a.node,
                a.kind.as_str(),
                a.name,
                a.attempt,
                a.visit
            );
        }
    }
    let visits: Vec<String> = st.visits.iter().map(|(n, v)| format!("{n} {v}")).collect();
    let _ = writeln!(out, "visits       {}", list(&visits));
    out
}

/// The run's state after every step (`inspect --steps`): one line per state, with the nodes
/// whose output changed since the line before.
pub fn render_history(header: &LogHeader, log: &str, states: &[RunState]) -> String {
    let mut out = header_line(header);
    out.push('\n');
    let _ = writeln!(
        out,
        "{:>6}  {:>5}  {:<9}  {:>4}  changed / pending",
        "seq", "step", "status", "done"
    );
    let mut before: Option<&RunState> = None;
    for st in states {
        let changed: Vec<&str> = st
            .completed
            .iter()
            .filter(|(k, v)| before.and_then(|b| b.completed.get(*k)) != Some(*v))
            .map(|(k, _)| k.as_str())
            .collect();
        let pending: Vec<String> = st.pending.iter().map(|a| a.node.to_string()).collect();
        let mut what = String::new();
        if !changed.is_empty() {
            let _ = write!(what, "+{}", changed.join(" +"));
        }
        if !pending.is_empty() {
            if !what.is_empty() {
                what.push_str("  ");
            }
            let _ = write!(what, "waiting: {}", pending.join(", "));
        }
        let _ = writeln!(
            out,
            "{:>6}  {:>5}  {:<9}  {:>4}  {what}",
            st.seq,
            st.step,
            st.status.as_str(),
            st.completed.len()
        );
        before = Some(st);
    }
    let _ = writeln!(
        out,
        "\n{} states; `agentmesh inspect {} --at SEQ` shows one whole, `agentmesh fork` branches off at a step end",
        states.len(),
        shell_quote(log)
    );
    out
}

/// A verify report as text.
pub fn render_verify(r: &VerifyReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run          {}", r.run_id);
    let _ = writeln!(out, "workflow     {}", r.workflow);
    let _ = writeln!(out, "format       version {}", r.version);
    let _ = writeln!(out, "events       {}", r.events);
    let _ = writeln!(out, "last seq     {}", r.last_seq);
    let holes: Vec<String> = r.holes.iter().map(u64::to_string).collect();
    let _ = writeln!(
        out,
        "holes        {}",
        if holes.is_empty() {
            "none".to_owned()
        } else {
            format!("{} (completions still outstanding)", holes.join(", "))
        }
    );
    let _ = writeln!(
        out,
        "finished     {}",
        r.finished.as_deref().unwrap_or("no (running or waiting)")
    );
    let _ = writeln!(out, "bytes        {}", r.bytes);
    match (&r.repaired, r.torn_at) {
        (Some(rep), _) if rep.newline_restored => {
            let _ = writeln!(
                out,
                "repaired     the last record's newline was {} at byte {}: written again",
                if rep.bytes > 0 { "damaged" } else { "missing" },
                rep.offset
            );
        }
        (Some(rep), _) => {
            let moved = rep
                .broken_path
                .as_ref()
                .map(|p| format!(" moved to {}", p.display()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "repaired     torn tail cut at byte {}: {} bytes{moved}",
                rep.offset, rep.bytes
            );
        }
        (None, Some(at)) => {
            let _ = writeln!(
                out,
                "tail         damaged from byte {at} (left as it is: read-only check)"
            );
        }
        (None, None) => {
            let _ = writeln!(out, "repaired     nothing to repair");
        }
    }
    let _ = writeln!(out, "ok           the log is intact");
    out
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
        let rows = rows(&events);
        assert_eq!(rows[0].step, None);
        assert_eq!(rows[3].step, Some(1));
        assert_eq!(rows[3].dur_us, Some(1500));
        assert_eq!(rows[3].detail, "Flaky: 503 (retryable)");
        assert_eq!(rows[2].detail, "agent x");
        assert_eq!(rows[1].detail, "1 activation");
    }
}
