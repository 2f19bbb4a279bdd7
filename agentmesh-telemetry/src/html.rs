//! A run as one self-contained HTML file (no network, no external script): a lane per agent on
//! a time axis, steps, activations with their calls nested inside, retries, human waits,
//! policy verdicts, cost and tokens; clicking an item shows its recorded (redacted) input and
//! output. A running log renders too: what has not ended is drawn open.
//!
//! The page's data is JSON inside a `<script type="application/json">` element with `<`
//! escaped, and the page's script only ever sets `textContent`: a node name or an output
//! holding markup is shown as text, never run.

use serde_json::{json, Map, Value};

use crate::chrome::attr_json;
use crate::lanes::{layout, origin};
use crate::spans::{Category, Span, Status, StepMark};

/// The HTML page of a run's spans and steps.
pub fn html_timeline(run_id: &str, workflow: &str, spans: &[Span], steps: &[StepMark]) -> String {
    let text = page_data(run_id, workflow, spans, steps);
    // Inside <script>, only `</` could end the element; `<` escaped covers it and `<!--`.
    let text = text.replace('<', "\\u003c");
    TEMPLATE
        .replace("__TITLE__", &escape_html(&format!("{workflow} · {run_id}")))
        .replace("__DATA__", &text)
}

/// The page's data as JSON text. Each span's item is written as it is made, so a long run's
/// data is never all held as values at once.
fn page_data(run_id: &str, workflow: &str, spans: &[Span], steps: &[StepMark]) -> String {
    let origin = origin(spans, steps);
    let ms = |t: u64| t.saturating_sub(origin) as f64 / 1000.0;
    let lay = layout(spans);
    let mut items = String::new();
    let (mut tin, mut tout, mut cost) = (0i64, 0i64, 0i64);
    let mut status = "running";
    for s in spans {
        let (lane, row) = lay.place.get(&s.span_id).copied().unwrap_or((0, 0));
        let mut attrs = Map::new();
        for (k, v) in &s.attrs {
            attrs.insert((*k).into(), attr_json(v));
        }
        let (state, error) = match &s.status {
            Status::Ok => ("ok", Value::Null),
            Status::Error(m) => ("error", json!(m)),
            Status::Open => ("open", Value::Null),
        };
        if s.category == Category::Workflow && s.status != Status::Open {
            status = match s.attr("agentmesh.run.status") {
                Some(crate::AttrValue::Str(v)) => match v.as_str() {
                    "completed" => "completed",
                    "failed" => "failed",
                    _ => "cancelled",
                },
                _ => "ended",
            };
        }
        if s.category.is_client() {
            let int = |k: &str| match s.attr(k) {
                Some(crate::AttrValue::Int(v)) => *v,
                _ => 0,
            };
            tin += int("gen_ai.usage.input_tokens");
            tout += int("gen_ai.usage.output_tokens");
            cost += int("agentmesh.cost.micro_usd");
        }
        let events: Vec<Value> = s
            .events
            .iter()
            .map(|e| {
                let mut a = Map::new();
                for (k, v) in &e.attrs {
                    a.insert((*k).into(), attr_json(v));
                }
                json!({"name": e.name, "t": ms(e.time_us), "attrs": a})
            })
            .collect();
        if !items.is_empty() {
            items.push(',');
        }
        let item = json!({
            "id": s.span_id.hex(),
            "parent": s.parent.map(|p| p.hex()),
            "links": s.links.iter().map(|l| l.hex()).collect::<Vec<_>>(),
            "name": s.name,
            "cat": s.category.short_name(),
            "node": s.node.as_deref(),
            "seq": s.seq,
            "lane": lane,
            "row": row,
            "start": ms(s.start_us),
            "end": ms(s.end_us),
            "state": state,
            "error": error,
            "attrs": attrs,
            "events": events,
            "input": s.input.as_deref(),
            "output": s.output.as_deref(),
        });
        items.push_str(&item.to_string());
    }
    let lanes: Vec<Value> = lay
        .lanes
        .iter()
        .map(|l| json!({"name": l.name, "rows": l.rows.max(1)}))
        .collect();
    let steps: Vec<Value> = steps
        .iter()
        .map(|s| json!({"step": s.step, "t": ms(s.time_us), "activations": s.activations}))
        .collect();
    let head = json!({
        "runId": run_id,
        "workflow": workflow,
        "status": status,
        "startedUnixMs": origin / 1000,
        "tokens": {"input": tin, "output": tout},
        "microUsd": cost,
        "lanes": lanes,
        "steps": steps,
    })
    .to_string();
    // `head` is an object: its closing brace gives way to the spans.
    format!("{},\"spans\":[{items}]}}", &head[..head.len() - 1])
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const TEMPLATE: &str = include_str!("timeline.html");
