//! A run as a Chrome trace (the JSON `chrome://tracing` and <https://ui.perfetto.dev> open):
//! a thread per agent lane, activations with their calls nested inside, the steps on their
//! own lane, verdicts as instant events, and counters for tokens and cost.

use serde_json::{json, Map, Value};

use crate::lanes::{layout, origin};
use crate::spans::{AttrValue, Category, Span, Status, StepMark};

/// The Chrome trace JSON of a run's spans and steps, as a value. Times are microseconds from
/// the run's first record.
pub fn chrome_trace(run_id: &str, workflow: &str, spans: &[Span], steps: &[StepMark]) -> Value {
    let mut events: Vec<Value> = Vec::new();
    let origin = trace_events(spans, steps, run_id, workflow, &mut events);
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"runId": run_id, "workflow": workflow, "originUnixUs": origin},
    })
}

/// [`chrome_trace`] as JSON text, written event by event: memory stays flat however long the
/// run (what `agentmesh export --format chrome` prints).
pub fn chrome_trace_text(
    run_id: &str,
    workflow: &str,
    spans: &[Span],
    steps: &[StepMark],
) -> String {
    let mut text = Text(String::from("{\"traceEvents\":["), true);
    let origin = trace_events(spans, steps, run_id, workflow, &mut text);
    let other = json!({"runId": run_id, "workflow": workflow, "originUnixUs": origin});
    let mut out = text.0;
    out.push_str("],\"displayTimeUnit\":\"ms\",\"otherData\":");
    out.push_str(&other.to_string());
    out.push('}');
    out
}

/// Where trace events go: a list, or JSON text.
trait Events {
    fn push(&mut self, event: Value);
    fn extend(&mut self, events: impl IntoIterator<Item = Value>) {
        for e in events {
            self.push(e);
        }
    }
}

impl Events for Vec<Value> {
    fn push(&mut self, event: Value) {
        Vec::push(self, event);
    }
}

/// JSON text of the events so far, and whether none was written yet.
struct Text(String, bool);

impl Events for Text {
    fn push(&mut self, event: Value) {
        if !std::mem::take(&mut self.1) {
            self.0.push(',');
        }
        self.0.push_str(&event.to_string());
    }
}

/// Write the trace's events; the origin (unix µs) their times count from.
fn trace_events(
    spans: &[Span],
    steps: &[StepMark],
    run_id: &str,
    workflow: &str,
    events: &mut impl Events,
) -> u64 {
    let origin = origin(spans, steps);
    let rel = |t: u64| t.saturating_sub(origin);
    let lay = layout(spans);
    events.push(json!({"ph": "M", "pid": 1, "name": "process_name",
        "args": {"name": format!("{workflow} ({run_id})")}}));
    // Thread ids: 1 for steps, then each lane's rows in lane order.
    let mut tid_of = Vec::new();
    let mut next = 2u64;
    events.extend(thread_name(1, "steps", 0));
    for (i, lane) in lay.lanes.iter().enumerate() {
        let mut rows = Vec::new();
        for r in 0..lane.rows.max(1) {
            let name = if r == 0 {
                lane.name.clone()
            } else {
                format!("{} #{}", lane.name, r + 1)
            };
            events.extend(thread_name(next, &name, (i + 1) as u64 * 100 + r as u64));
            rows.push(next);
            next += 1;
        }
        tid_of.push(rows);
    }
    let end = spans.iter().map(|s| s.end_us).max().unwrap_or(origin);
    for (i, step) in steps.iter().enumerate() {
        let until = steps.get(i + 1).map_or(end, |n| n.time_us);
        events.push(
            json!({"ph": "X", "pid": 1, "tid": 1, "name": format!("step {}", step.step),
            "cat": "step", "ts": rel(step.time_us), "dur": until.saturating_sub(step.time_us),
            "args": {"activations": step.activations}}),
        );
    }
    let mut sorted: Vec<&Span> = spans.iter().collect();
    // Parents before children at equal start, so viewers nest them.
    sorted.sort_by_key(|s| (s.start_us, std::cmp::Reverse(s.end_us), depth(s.category)));
    let (mut tokens_in, mut tokens_out, mut cost) = (0i64, 0i64, 0i64);
    for s in sorted {
        let (lane, row) = lay.place.get(&s.span_id).copied().unwrap_or((0, 0));
        let tid = tid_of
            .get(lane)
            .and_then(|rows| rows.get(row))
            .copied()
            .unwrap_or(2);
        let mut args = Map::new();
        args.insert("spanId".into(), json!(s.span_id.hex()));
        args.insert("seq".into(), json!(s.seq));
        for (k, v) in &s.attrs {
            args.insert((*k).into(), attr_json(v));
        }
        match &s.status {
            Status::Error(m) => {
                args.insert("error".into(), json!(m));
            }
            Status::Open => {
                args.insert("open".into(), json!(true));
            }
            Status::Ok => {}
        }
        if s.category == Category::Guardrail {
            events.push(
                json!({"ph": "i", "s": "t", "pid": 1, "tid": tid, "name": s.name,
                "cat": "policy", "ts": rel(s.start_us), "args": args}),
            );
            continue;
        }
        events.push(
            json!({"ph": "X", "pid": 1, "tid": tid, "name": s.name, "cat": s.category.short_name(),
            "ts": rel(s.start_us), "dur": s.dur_us().max(1), "args": args}),
        );
        for ev in &s.events {
            let mut a = Map::new();
            for (k, v) in &ev.attrs {
                a.insert((*k).into(), attr_json(v));
            }
            events.push(
                json!({"ph": "i", "s": "p", "pid": 1, "tid": tid, "name": ev.name,
                "cat": "budget", "ts": rel(ev.time_us), "args": a}),
            );
        }
        if s.category.is_client() {
            let int = |k: &str| match s.attr(k) {
                Some(AttrValue::Int(v)) => *v,
                _ => 0,
            };
            tokens_in += int("gen_ai.usage.input_tokens");
            tokens_out += int("gen_ai.usage.output_tokens");
            cost += int("agentmesh.cost.micro_usd");
            events.push(
                json!({"ph": "C", "pid": 1, "name": "tokens", "ts": rel(s.end_us),
                "args": {"input": tokens_in, "output": tokens_out}}),
            );
            events.push(
                json!({"ph": "C", "pid": 1, "name": "cost (µUSD)", "ts": rel(s.end_us),
                "args": {"microUsd": cost}}),
            );
        }
    }
    origin
}

fn thread_name(tid: u64, name: &str, order: u64) -> [Value; 2] {
    [
        json!({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": name}}),
        json!({"ph": "M", "pid": 1, "tid": tid, "name": "thread_sort_index",
            "args": {"sort_index": order}}),
    ]
}

fn depth(c: Category) -> u8 {
    match c {
        Category::Workflow => 0,
        Category::Agent | Category::ToolNode | Category::Human => 1,
        Category::Chat | Category::ToolCall => 2,
        Category::Guardrail => 3,
    }
}

pub(crate) fn attr_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!(s),
        AttrValue::Int(i) => json!(i),
        AttrValue::Float(f) => json!(f),
        AttrValue::Bool(b) => json!(b),
        AttrValue::Strs(v) => json!(v),
    }
}
