//! `agentmesh show LOG NODE [--visit N] [--json]`: one visit of a node in full — what it
//! received (the run input and its `after` nodes' outputs, rebuilt from the log), every
//! attempt with its output or error, usage and duration, and outputs a fork replaced.

use std::fmt::Write as _;
use std::path::Path;

use agentmesh_core::{
    model::workflow::NodeSpec, read_log, recorded_workflow, state_at, ActivationKind, Error,
    ErrorKind, Event, EventData, NodeKind,
};
use serde_json::{json, Map, Value};

use crate::commands::{print, to_json};
use crate::timeline::{duration, shell_quote};

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

/// One attempt of the visit, scheduled in `step`, as JSON (the text form is rendered from it).
fn attempt_json(scheduled: &Event, step: u64, result: Option<&Event>) -> Value {
    let mut a = Map::new();
    a.insert("attempt".into(), json!(scheduled.attempt.unwrap_or(1)));
    a.insert("scheduledSeq".into(), json!(scheduled.seq));
    a.insert("step".into(), json!(step));
    if let EventData::Scheduled(_, s) = &scheduled.data {
        if s.delay_ms > 0 {
            a.insert("delayMs".into(), json!(s.delay_ms));
        }
        if let Some(t) = s.timeout_ms {
            a.insert("timeoutMs".into(), json!(t));
        }
        if let Some(r) = s.retry_of {
            a.insert("retryOf".into(), json!(r));
        }
    }
    let status = match result.map(|e| &e.data) {
        None if matches!(&scheduled.data, EventData::Scheduled(k, _) if *k == ActivationKind::Human) => {
            "waiting"
        }
        None => "inFlight",
        Some(EventData::Completed(_, c)) => {
            a.insert("output".into(), (*c.output).clone());
            if let Some(u) = &c.usage {
                a.insert("usage".into(), json!(u));
            }
            "completed"
        }
        Some(EventData::Failed(_, f)) => {
            a.insert("error".into(), json!(f.error));
            if let Some(u) = &f.usage {
                a.insert("usage".into(), json!(u));
            }
            "failed"
        }
        Some(EventData::ActivationCancelled(r)) => {
            a.insert("reason".into(), json!(r.reason));
            "cancelled"
        }
        Some(_) => "unknown",
    };
    a.insert("status".into(), json!(status));
    if let Some(e) = result {
        a.insert("seq".into(), json!(e.seq));
        a.insert("type".into(), json!(e.type_name()));
        if let Some(us) = e.meta.as_ref().and_then(|m| m.dur_us) {
            a.insert("durUs".into(), json!(us));
        }
    }
    Value::Object(a)
}

/// Which node, kind and name; errors name the nodes there are.
fn find_node<'a>(nodes: &'a [NodeSpec], id: &str) -> Result<&'a NodeSpec, Error> {
    nodes.iter().find(|n| n.id == id).ok_or_else(|| {
        let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        invalid(format!(
            "no node '{id}' in the log's workflow (its nodes: {})",
            ids.join(", ")
        ))
    })
}

fn pick_visit(node: &str, visits: u64, visit: Option<u64>, skipped: &[u64]) -> Result<u64, Error> {
    if visits == 0 {
        let why = match skipped.first() {
            Some(seq) => format!(" (skipped at seq {seq}: not on the chosen path)"),
            None => String::new(),
        };
        return Err(invalid(format!(
            "node '{node}' has not run in this log{why}"
        )));
    }
    match visit {
        None => Ok(visits),
        Some(v) if (1..=visits).contains(&v) => Ok(v),
        Some(v) => Err(invalid(format!(
            "node '{node}' has {visits} visit{} in this log, not {v}",
            if visits == 1 { "" } else { "s" }
        ))),
    }
}

/// The JSON description of visit `visit` of `node` (see docs/cli.md).
pub fn describe(log: &Path, node: &str, visit: Option<u64>) -> Result<Value, Error> {
    let (header, events) = read_log(log)?;
    let workflow = recorded_workflow(log)?;
    let spec = find_node(&workflow.spec().nodes, node)?;
    let mine: Vec<&Event> = events
        .iter()
        .filter(|e| e.node.as_deref() == Some(node))
        .collect();
    let skipped: Vec<u64> = mine
        .iter()
        .filter(|e| matches!(e.data, EventData::NodeSkipped))
        .map(|e| e.seq)
        .collect();
    let mut out = Map::new();
    out.insert("runId".into(), json!(header.run_id));
    out.insert("node".into(), json!(node));
    out.insert("type".into(), json!(spec.kind.as_str()));
    if let Some(name) = spec.agent.as_ref().or(spec.tool.as_ref()) {
        out.insert("name".into(), json!(name));
    }
    if let Some(p) = &spec.prompt {
        out.insert("prompt".into(), json!(p));
    }
    if spec.kind == NodeKind::Branch {
        let decisions: Vec<&Event> = mine
            .iter()
            .copied()
            .filter(|e| matches!(e.data, EventData::BranchDecided(_)))
            .collect();
        let v = pick_visit(node, decisions.len() as u64, visit, &skipped)?;
        let d = decisions[(v - 1) as usize];
        out.insert("visit".into(), json!(v));
        out.insert("visits".into(), json!(decisions.len()));
        let data = serde_json::to_value(d)
            .ok()
            .and_then(|mut e| e.get_mut("data").map(Value::take))
            .unwrap_or(Value::Null);
        out.insert("decision".into(), json!({"seq": d.seq, "data": data}));
        return Ok(Value::Object(out));
    }
    // Attempts by visit, in seq order, with the step each was scheduled in.
    let mut step = 0;
    let mut scheduled: Vec<(&Event, u64, u64)> = Vec::new();
    for e in &events {
        match &e.data {
            EventData::StepStarted(st) => step = st.step,
            EventData::Scheduled(_, s) if e.node.as_deref() == Some(node) => {
                scheduled.push((e, s.visit, step));
            }
            _ => {}
        }
    }
    let visits = scheduled.iter().map(|(_, v, _)| *v).max().unwrap_or(0);
    let v = pick_visit(node, visits, visit, &skipped)?;
    let attempts: Vec<(&Event, u64)> = scheduled
        .iter()
        .filter(|(_, vv, _)| *vv == v)
        .map(|(e, _, step)| (*e, *step))
        .collect();
    let result_of = |sched: &Event| {
        mine.iter().copied().find(|e| {
            e.parent_seq == Some(sched.seq)
                && matches!(
                    e.data,
                    EventData::Completed(..)
                        | EventData::Failed(..)
                        | EventData::ActivationCancelled(_)
                )
        })
    };
    let (last, _) = *attempts.last().expect("a visit has an attempt");
    // What the visit received, rebuilt as of its last attempt's scheduling.
    let state = state_at(log, last.seq)?;
    let act = state
        .pending
        .iter()
        .find(|a| a.id == last.seq)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("no activation #{} at its own seq", last.seq),
            )
        })?;
    out.insert("visit".into(), json!(v));
    out.insert("visits".into(), json!(visits));
    out.insert("input".into(), (*act.input).clone());
    let deps: Map<String, Value> = act
        .deps
        .iter()
        .map(|(k, v)| (k.to_string(), (**v).clone()))
        .collect();
    out.insert("deps".into(), Value::Object(deps));
    let mut output = Value::Null;
    let mut done_at = None;
    let attempts: Vec<Value> = attempts
        .iter()
        .map(|&(s, step)| {
            let r = result_of(s);
            if let Some(EventData::Completed(_, c)) = r.map(|e| &e.data) {
                output = (*c.output).clone();
                done_at = r.map(|e| e.seq);
            }
            attempt_json(s, step, r)
        })
        .collect();
    out.insert("attempts".into(), Value::Array(attempts));
    out.insert("output".into(), output);
    // Outputs a fork set for this visit: after its completion, before the next visit.
    let next_visit = scheduled
        .iter()
        .find(|(_, vv, _)| *vv == v + 1)
        .map(|(e, _, _)| e.seq);
    let overrides: Vec<Value> = mine
        .iter()
        .filter_map(|e| match &e.data {
            EventData::OutputOverridden(o)
                if done_at.is_some_and(|d| e.seq > d) && next_visit.is_none_or(|n| e.seq < n) =>
            {
                Some(json!({"seq": e.seq, "output": *o.output}))
            }
            _ => None,
        })
        .collect();
    out.insert("overrides".into(), Value::Array(overrides));
    Ok(Value::Object(out))
}

/// `label` (empty on a continuation line) and `value` in full: on the line when short, else
/// pretty-printed and indented under it.
fn value_text(out: &mut String, label: &str, prefix: &str, value: &Value) {
    let compact = value.to_string();
    if compact.chars().count() <= 100 {
        let _ = writeln!(out, "{label:<12} {prefix}{compact}");
        return;
    }
    let _ = writeln!(out, "{label:<12} {}", prefix.trim_end());
    let pretty = serde_json::to_string_pretty(value).unwrap_or(compact);
    for line in pretty.lines() {
        let _ = writeln!(out, "{:<12}   {line}", "");
    }
}

fn attempt_line(a: &Value) -> String {
    let num = |k: &str| a.get(k).and_then(Value::as_u64);
    let mut line = format!(
        "scheduled at seq {} (step {})",
        num("scheduledSeq").unwrap_or_default(),
        num("step").unwrap_or_default()
    );
    if let Some(r) = num("retryOf") {
        let _ = write!(line, ", retry of #{r}");
    }
    if let Some(d) = num("delayMs") {
        let _ = write!(line, ", after {d} ms backoff");
    }
    if let Some(t) = num("timeoutMs") {
        let _ = write!(line, ", timeout {t} ms");
    }
    match a["status"].as_str() {
        Some("inFlight") => line.push_str("; no completion yet (in flight)"),
        Some("waiting") => line.push_str("; waiting for a person"),
        _ => {
            let _ = write!(
                line,
                "; {} at seq {}",
                a["type"].as_str().unwrap_or("-"),
                num("seq").unwrap_or_default()
            );
            if let Some(us) = num("durUs") {
                let _ = write!(line, " after {}", duration(us));
            }
        }
    }
    if let Some(e) = a.get("error") {
        let _ = write!(
            line,
            ": {}{}: {} ({})",
            if e["kind"] == "timeout" {
                "timeout "
            } else {
                ""
            },
            e["type"].as_str().unwrap_or("-"),
            e["message"].as_str().unwrap_or(""),
            if e["retryable"] == true {
                "retryable"
            } else {
                "permanent"
            }
        );
    }
    if let Some(r) = a.get("reason").and_then(Value::as_str) {
        let _ = write!(line, ": {r}");
    }
    if let Some(u) = a.get("usage") {
        let _ = write!(
            line,
            ", {} in / {} out tokens",
            u["inputTokens"], u["outputTokens"]
        );
    }
    line
}

/// The text form of [`describe`].
fn render(log: &Path, d: &Value) -> String {
    let mut out = String::new();
    let s = |k: &str| d[k].as_str().unwrap_or("-").to_owned();
    let _ = writeln!(
        out,
        "run          {}  (log {})",
        s("runId"),
        shell_quote(&log.display().to_string())
    );
    let kind = s("type");
    match d.get("name").and_then(Value::as_str) {
        Some(name) => {
            let _ = writeln!(out, "node         {} ({kind} {name})", s("node"));
        }
        None => {
            let _ = writeln!(out, "node         {} ({kind})", s("node"));
        }
    }
    if let Some(p) = d.get("prompt") {
        let _ = writeln!(out, "prompt       {p}");
    }
    let _ = writeln!(out, "visit        {} of {}", d["visit"], d["visits"]);
    if let Some(dec) = d.get("decision") {
        let _ = writeln!(out, "decided      at seq {}", dec["seq"]);
        value_text(&mut out, "decision", "", &dec["data"]);
        return out;
    }
    value_text(&mut out, "input", "", &d["input"]);
    match d["deps"].as_object() {
        Some(deps) if !deps.is_empty() => {
            let width = deps.keys().map(|k| k.chars().count()).max().unwrap_or(0) + 1;
            for (i, (name, v)) in deps.iter().enumerate() {
                let label = if i == 0 { "deps" } else { "" };
                value_text(
                    &mut out,
                    label,
                    &format!("{:<width$} ", format!("{name}:")),
                    v,
                );
            }
        }
        _ => {
            let _ = writeln!(out, "deps         - (no `after` node has an output)");
        }
    }
    for a in d["attempts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:<12} {}",
            format!("attempt {}", a["attempt"]),
            attempt_line(a)
        );
    }
    if !d["output"].is_null()
        || d["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["status"] == "completed"))
    {
        value_text(&mut out, "output", "", &d["output"]);
    } else {
        let _ = writeln!(out, "output       - (no attempt completed)");
    }
    for o in d["overrides"].as_array().into_iter().flatten() {
        value_text(
            &mut out,
            "overridden",
            &format!("at seq {}: ", o["seq"]),
            &o["output"],
        );
    }
    out
}

/// `agentmesh show`.
pub fn show(log: &Path, node: &str, visit: Option<u64>, as_json: bool) -> Result<u8, Error> {
    let d = describe(log, node, visit)?;
    if as_json {
        print(&format!("{}\n", to_json(&d)?))?;
    } else {
        print(&render(log, &d))?;
    }
    Ok(0)
}
