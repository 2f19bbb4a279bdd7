//! Divergence reports: the first field where a re-driven run and its log disagree.

use serde_json::Value;

use crate::error::{Error, ErrorDetail, ErrorKind};
use crate::model::event::{Event, EventData};
use crate::model::workflow::ActivationKind;

/// The step ends nearest `seq`, for an error that names where a fork could go instead.
pub(crate) fn nearby(points: &[u64], seq: u64) -> String {
    let before = points.iter().rev().find(|&&p| p < seq);
    let after = points.iter().find(|&&p| p > seq);
    match (before, after) {
        (Some(b), Some(a)) => format!("{b} and {a}"),
        (Some(b), None) => b.to_string(),
        (None, Some(a)) => a.to_string(),
        (None, None) => "none".to_owned(),
    }
}

fn event_json(e: Option<&Event>) -> Value {
    match e {
        Some(e) => serde_json::from_str(&e.to_canonical_json()).unwrap_or(Value::Null),
        None => Value::Null,
    }
}

/// First differing field between two JSON values, as a dotted path.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<(String, Value, Value)> {
    if a == b {
        return None;
    }
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.dedup();
        // Envelope fields first, in wire order; then the rest alphabetically.
        let order = [
            "seq",
            "type",
            "runId",
            "traceId",
            "parentSeq",
            "node",
            "attempt",
            "data",
        ];
        keys.sort_by_key(|k| {
            (
                order.iter().position(|o| o == k).unwrap_or(order.len()),
                (*k).clone(),
            )
        });
        keys.dedup();
        for k in keys {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let (p, q) = (
                x.get(k).unwrap_or(&Value::Null),
                y.get(k).unwrap_or(&Value::Null),
            );
            if x.contains_key(k) != y.contains_key(k) {
                return Some((sub, p.clone(), q.clone()));
            }
            if let Some(d) = first_difference(&sub, p, q) {
                return Some(d);
            }
        }
    }
    Some((
        if path.is_empty() {
            "(event)".to_owned()
        } else {
            path.to_owned()
        },
        a.clone(),
        b.clone(),
    ))
}

/// One event as a person reads it, after a verb: "took case 0 → write (loop)".
fn summary(e: Option<&Event>, verb: &str) -> String {
    let Some(e) = e else {
        return format!("{verb} nothing here");
    };
    let node = e.node.as_deref().unwrap_or("-");
    match &e.data {
        EventData::BranchDecided(b) => {
            let which = match b.case {
                Some(c) => format!("case {c}"),
                None => "the default".to_owned(),
            };
            let to = match &b.goto {
                Some(g) => format!(" → {g}{}", if b.loop_back { " (loop)" } else { "" }),
                None => " (no successor)".to_owned(),
            };
            let verb = if verb == "has" { "took" } else { "takes" };
            format!("{verb} {which}{to} at branch '{node}'")
        }
        EventData::Scheduled(kind, s) => {
            let what = match kind {
                ActivationKind::Agent => format!("agent '{}'", s.agent.as_deref().unwrap_or("?")),
                ActivationKind::Tool => format!("tool '{}'", s.tool.as_deref().unwrap_or("?")),
                ActivationKind::Human => "a person".to_owned(),
            };
            let verb = if verb == "has" { "runs" } else { "would run" };
            format!(
                "{verb} {what} for node '{node}' (visit {}, attempt {})",
                s.visit,
                e.attempt.unwrap_or(1)
            )
        }
        EventData::NodeSkipped => format!("skips node '{node}'"),
        EventData::StepStarted(s) => format!(
            "{} step {} with {} activations",
            if verb == "has" {
                "starts"
            } else {
                "would start"
            },
            s.step,
            s.activations
        ),
        EventData::RunCompleted(_) => format!("{verb} the run's completion"),
        EventData::RunFailed(f) => format!("{verb} the run's failure ({})", f.error.code),
        _ => format!("{verb} {} of '{node}'", e.type_name()),
    }
}

/// The `NONDETERMINISM` error for `recorded` (the log) vs `decided` (the workflow) at `seq`.
pub(crate) fn divergence(seq: u64, recorded: Option<&Event>, decided: Option<&Event>) -> Error {
    let node = recorded
        .or(decided)
        .and_then(|e| e.node.as_deref())
        .map(str::to_owned);
    let (field, expected, actual) = match (recorded, decided) {
        (Some(_), Some(_)) => first_difference("", &event_json(recorded), &event_json(decided))
            .unwrap_or_else(|| ("(event)".to_owned(), Value::Null, Value::Null)),
        _ => (
            "(event)".to_owned(),
            event_json(recorded),
            event_json(decided),
        ),
    };
    let message = format!(
        "seq {seq}{}: the log {}; this workflow {}. First difference in '{field}': expected {expected}, actual {actual}",
        node.as_deref().map(|n| format!(" (node '{n}')")).unwrap_or_default(),
        summary(recorded, "has"),
        summary(decided, "decides"),
    );
    Error::new(ErrorKind::Nondeterminism, message).with_detail(ErrorDetail::Nondeterminism {
        seq,
        node,
        field,
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}
