//! Writing events as JSON bytes, fast: the envelope and the small decision bodies by hand,
//! everything that holds host data (outputs, inputs, error texts, workflows) through
//! serde_json. The bytes are exactly what serde_json writes for the same fields in the same
//! order (compact, `"` `\` and control characters escaped, nothing else), which a property
//! test checks against the serde path; the log's canonical form depends on it.
//!
//! It matters because every event is written once when it is committed, and every decision
//! is written again when replay compares what the machine decides with the log.

use std::io::Write;

use serde::Serialize;

use super::event::{Encoded, EventData, Layout, Scheduled};
use super::header::Meta;
use super::usage::Usage;

/// Append `s` as a JSON string: copied when nothing in it needs escaping (names and ids,
/// nearly always), else through serde_json.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

pub(crate) fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn push_serde<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(&mut *out, v).expect("event bodies serialize");
}

fn push_opt_str(out: &mut Vec<u8>, key: &[u8], v: Option<&str>, first: &mut bool) {
    if let Some(v) = v {
        out.extend_from_slice(if *first { b"" } else { b"," });
        out.extend_from_slice(key);
        push_str(out, v);
        *first = false;
    }
}

fn push_opt_u64(out: &mut Vec<u8>, key: &[u8], v: Option<u64>, first: &mut bool) {
    if let Some(v) = v {
        out.extend_from_slice(if *first { b"" } else { b"," });
        out.extend_from_slice(key);
        push_u64(out, v);
        *first = false;
    }
}

fn push_scheduled(out: &mut Vec<u8>, s: &Scheduled) {
    out.push(b'{');
    let mut first = true;
    push_opt_str(out, b"\"agent\":", s.agent.as_deref(), &mut first);
    push_opt_str(out, b"\"tool\":", s.tool.as_deref(), &mut first);
    push_opt_str(out, b"\"prompt\":", s.prompt.as_deref(), &mut first);
    push_opt_u64(
        out,
        b"\"visit\":",
        (s.visit != 1).then_some(s.visit),
        &mut first,
    );
    push_opt_u64(
        out,
        b"\"delayMs\":",
        (s.delay_ms != 0).then_some(s.delay_ms),
        &mut first,
    );
    push_opt_u64(out, b"\"timeoutMs\":", s.timeout_ms, &mut first);
    push_opt_u64(out, b"\"retryOf\":", s.retry_of, &mut first);
    if let Some(lease) = &s.lease {
        out.extend_from_slice(if first { b"" } else { b"," });
        out.extend_from_slice(b"\"lease\":");
        push_serde(out, lease);
        first = false;
    }
    if let Some(item) = &s.item {
        out.extend_from_slice(if first { b"" } else { b"," });
        out.extend_from_slice(b"\"item\":{\"index\":");
        push_u64(out, item.index);
        if let Some(k) = &item.key {
            out.extend_from_slice(b",\"key\":");
            push_str(out, k);
        }
        out.push(b'}');
        first = false;
    }
    if !s.reads.is_empty() {
        out.extend_from_slice(if first { b"" } else { b"," });
        out.extend_from_slice(b"\"reads\":");
        push_serde(out, &s.reads);
    }
    out.push(b'}');
}

fn push_data(out: &mut Vec<u8>, data: &EventData) {
    match data {
        EventData::StepStarted(b) => {
            out.extend_from_slice(b"{\"step\":");
            push_u64(out, b.step);
            out.extend_from_slice(b",\"activations\":");
            push_u64(out, b.activations);
            out.push(b'}');
        }
        EventData::Scheduled(_, s) => push_scheduled(out, s),
        EventData::BranchDecided(b) => {
            out.extend_from_slice(b"{\"case\":");
            match b.case {
                Some(c) => push_u64(out, c),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"goto\":");
            match &b.goto {
                Some(g) => push_str(out, g),
                None => out.extend_from_slice(b"null"),
            }
            if b.loop_back {
                out.extend_from_slice(b",\"loop\":true");
            }
            out.push(b'}');
        }
        EventData::NodeSkipped => out.extend_from_slice(b"{}"),
        EventData::RunStarted(b) => push_serde(out, b),
        EventData::Completed(_, b) => {
            out.extend_from_slice(b"{\"output\":");
            push_serde(out, &*b.output);
            match &b.usage {
                // The common case by hand; breakdowns and the model through serde.
                Some(u) if *u == Usage::tokens(u.input_tokens, u.output_tokens) => {
                    out.extend_from_slice(b",\"usage\":{\"inputTokens\":");
                    push_u64(out, u.input_tokens);
                    out.extend_from_slice(b",\"outputTokens\":");
                    push_u64(out, u.output_tokens);
                    out.push(b'}');
                }
                Some(u) => {
                    out.extend_from_slice(b",\"usage\":");
                    push_serde(out, u);
                }
                None => {}
            }
            if !b.verdicts.is_empty() {
                out.extend_from_slice(b",\"verdicts\":");
                push_serde(out, &b.verdicts);
            }
            if let Some(r) = &b.repaired {
                out.extend_from_slice(b",\"repaired\":");
                push_serde(out, r);
            }
            out.push(b'}');
        }
        EventData::Failed(_, b) => push_serde(out, b),
        EventData::ActivationCancelled(b)
        | EventData::RunCancelled(b)
        | EventData::RunReopened(b) => push_serde(out, b),
        EventData::OutputOverridden(b) => push_serde(out, b),
        EventData::RunCompleted(b) => push_serde(out, b),
        EventData::RunFailed(b) => push_serde(out, b),
        EventData::CallStarted(b) => push_serde(out, b),
        EventData::CallCompleted(b) => push_serde(out, b),
        EventData::CallFailed(b) => push_serde(out, b),
        EventData::CallDenied(b) => push_serde(out, b),
        EventData::BudgetWarning(b) => push_serde(out, b),
        EventData::MapCompleted(b) => push_serde(out, b),
        EventData::WorkflowStarted(b) | EventData::WorkflowCompleted(b) => push_serde(out, b),
    }
}

pub(crate) fn push_meta(out: &mut Vec<u8>, m: &Meta) {
    out.extend_from_slice(b",\"meta\":{\"at\":");
    push_u64(out, m.at);
    if let Some(d) = m.dur_us {
        out.extend_from_slice(b",\"durUs\":");
        push_u64(out, d);
    }
    if let Some(call) = &m.call {
        out.extend_from_slice(b",\"call\":");
        serde_json::to_writer(&mut *out, &**call).expect("CallMeta serializes");
    }
    out.push(b'}');
}

impl Encoded<'_> {
    /// Append the JSON object (no newline) to `out`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let e = self.event;
        out.extend_from_slice(b"{\"seq\":");
        push_u64(out, e.seq);
        if let Some(sub) = e.sub {
            out.extend_from_slice(b",\"sub\":");
            push_u64(out, u64::from(sub));
        }
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(e.type_name().as_bytes());
        out.push(b'"');
        if self.layout != Layout::V2 {
            out.extend_from_slice(b",\"runId\":");
            push_str(out, &e.run_id);
            out.extend_from_slice(b",\"traceId\":");
            push_str(out, &e.trace_id);
        }
        if let Some(p) = e.parent_seq {
            out.extend_from_slice(b",\"parentSeq\":");
            push_u64(out, p);
        }
        if let Some(n) = &e.node {
            out.extend_from_slice(b",\"node\":");
            push_str(out, n);
        }
        if let Some(a) = e.attempt {
            out.extend_from_slice(b",\"attempt\":");
            push_u64(out, u64::from(a));
        }
        out.extend_from_slice(b",\"data\":");
        push_data(out, &e.data);
        if self.layout != Layout::Canonical {
            if let Some(m) = &self.meta {
                push_meta(out, m);
            }
        }
        out.push(b'}');
    }

    /// The JSON object as a new buffer.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out);
        out
    }
}

/// An upper bound of the bytes a JSON value takes, cheap for small values: the memory log
/// checks event sizes with it and serializes only what may be near the limit.
pub(crate) fn json_bound(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total = total.saturating_add(match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 24,
            // Each byte escapes to at most 6 (`\u00XX`).
            Value::String(s) => s.len().saturating_mul(6).saturating_add(2),
            Value::Array(a) => {
                stack.extend(a.iter());
                a.len().saturating_add(2)
            }
            Value::Object(m) => {
                for (k, v) in m {
                    total = total.saturating_add(k.len().saturating_mul(6).saturating_add(4));
                    stack.push(v);
                }
                m.len().saturating_add(2)
            }
        });
    }
    total
}

/// Room the envelope and the fixed parts of any body need (ids and names are ≤ 128 bytes).
pub(crate) const ENVELOPE_BOUND: usize = 2048;

impl EventData {
    /// An upper bound of the bytes the body's host-supplied parts take (0 for the bodies the
    /// workflow's own limits bound).
    pub(crate) fn host_bytes_bound(&self) -> usize {
        let s = |t: &str| t.len().saturating_mul(6);
        match self {
            EventData::StepStarted(_)
            | EventData::BranchDecided(_)
            | EventData::NodeSkipped
            | EventData::BudgetWarning(_)
            | EventData::MapCompleted(_)
            | EventData::WorkflowStarted(_)
            | EventData::WorkflowCompleted(_) => 0,
            // An item's key comes from data; `reads` paths are as long as the workflow says.
            EventData::Scheduled(_, b) => {
                let key = b.item.as_ref().and_then(|i| i.key.as_deref()).map_or(0, s);
                b.reads
                    .keys()
                    .fold(key, |n, p| n.saturating_add(s(p)).saturating_add(24))
            }
            // The workflow has no size limit of its own beyond its node count: measure it.
            EventData::RunStarted(_) => usize::MAX,
            EventData::Completed(_, c) => json_bound(&c.output),
            EventData::Failed(_, f) => s(&f.error.error_type).saturating_add(s(&f.error.message)),
            EventData::ActivationCancelled(r)
            | EventData::RunCancelled(r)
            | EventData::RunReopened(r) => s(&r.reason),
            EventData::OutputOverridden(o) => json_bound(&o.output),
            EventData::RunCompleted(r) => json_bound(&r.output),
            EventData::RunFailed(r) => s(&r.error.message).saturating_add(s(&r.error.code)),
            // Requests and responses are arbitrary JSON: measure them.
            EventData::CallStarted(_)
            | EventData::CallCompleted(_)
            | EventData::CallFailed(_)
            | EventData::CallDenied(_) => usize::MAX,
        }
    }
}

/// `io::Write` that only counts.
pub(crate) struct Count(pub usize);

impl Write for Count {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::model::event::*;
    use crate::model::failure::{Failure, RunError, Usage};
    use crate::model::workflow::ActivationKind;

    /// The serde path: what the hand-written one must equal byte for byte.
    fn serde_bytes(e: &Encoded<'_>) -> Vec<u8> {
        serde_json::to_vec(e).unwrap()
    }

    fn events(text: &str, n: u64, num: Value) -> Vec<Event> {
        let datas = vec![
            EventData::StepStarted(StepStarted {
                step: n,
                activations: n % 7 + 1,
            }),
            EventData::Scheduled(
                ActivationKind::Agent,
                Scheduled {
                    agent: Some(text.into()),
                    tool: None,
                    prompt: None,
                    visit: n % 3,
                    delay_ms: n % 2,
                    timeout_ms: n.is_multiple_of(2).then_some(n),
                    retry_of: n.is_multiple_of(3).then_some(n),
                    lease: n.is_multiple_of(4).then(|| {
                        crate::budget::Limits::UNLIMITED
                            .with(crate::budget::Dimension::Calls, Some(n))
                            .with(crate::budget::Dimension::MicroUsd, Some(n.wrapping_mul(7)))
                    }),
                    item: n.is_multiple_of(5).then(|| ItemRef {
                        index: n,
                        key: n.is_multiple_of(2).then(|| text.into()),
                    }),
                    reads: if n.is_multiple_of(3) {
                        [(Arc::from(text), n), (Arc::from("/input"), 1)].into()
                    } else {
                        Default::default()
                    },
                },
            ),
            EventData::Scheduled(
                ActivationKind::Human,
                Scheduled {
                    agent: None,
                    tool: None,
                    prompt: Some(text.into()),
                    visit: 1,
                    delay_ms: 0,
                    timeout_ms: None,
                    retry_of: None,
                    lease: None,
                    item: None,
                    reads: Default::default(),
                },
            ),
            EventData::MapCompleted(MapCompleted {
                items: n,
                failed: n % 3,
            }),
            EventData::BranchDecided(BranchDecided {
                case: n.is_multiple_of(2).then_some(n),
                goto: (!n.is_multiple_of(3)).then(|| text.into()),
                loop_back: n.is_multiple_of(5),
            }),
            EventData::NodeSkipped,
            EventData::Completed(
                ActivationKind::Tool,
                Completed {
                    output: Arc::new(json!({text: [num.clone(), text, null, true]})),
                    usage: n.is_multiple_of(2).then_some(Usage::tokens(n, 2)),
                    verdicts: if n.is_multiple_of(3) {
                        vec![crate::model::verdict::Verdict {
                            rule: text.into(),
                            action: crate::model::verdict::Action::Redact,
                            kind: "email".into(),
                            path: Some(format!("/{text}")),
                            count: (n % 4) as u32 + 1,
                            digest: None,
                            agent: None,
                        }]
                    } else {
                        Vec::new()
                    },
                    repaired: n.is_multiple_of(5).then(|| Repaired {
                        from: text.into(),
                        to: "0".repeat(64),
                        fixes: if n.is_multiple_of(2) {
                            vec![text.into()]
                        } else {
                            Vec::new()
                        },
                    }),
                },
            ),
            EventData::Failed(
                ActivationKind::Agent,
                Failed {
                    error: Failure::error(text, text),
                    usage: None,
                    verdicts: Vec::new(),
                },
            ),
            EventData::RunFailed(RunFailed {
                error: RunError {
                    code: "AGENT_FAILED".into(),
                    message: text.into(),
                    node: Some(text.into()),
                    budget: None,
                    verdict: None,
                    item: None,
                },
            }),
            EventData::RunCancelled(Reason {
                reason: text.into(),
            }),
        ];
        datas
            .into_iter()
            .map(|data| Event {
                seq: n,
                sub: n.is_multiple_of(5).then_some((n % 7) as u32),
                run_id: "run-1".into(),
                trace_id: trace_id_for("run-1").into(),
                parent_seq: (n % 2 == 1).then_some(n / 2),
                node: (n % 3 != 1).then(|| Arc::from(text)),
                attempt: n.is_multiple_of(2).then_some((n % 100) as u32),
                data,
                meta: None,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn hand_written_bytes_are_serde_json_bytes(
            text in "\\PC{0,12}|[\\x00-\\x7f]{0,12}",
            n in any::<u64>(),
            float in any::<f64>(),
            dur in proptest::option::of(any::<u64>()),
            with_call in any::<bool>(),
        ) {
            let call = with_call.then(|| Arc::new(crate::model::call::CallMeta {
                provider: Some(text.clone()),
                response_id: Some(format!("{{\"{text}\\")),
                created: Some(n as i64),
                system_fingerprint: None,
                tool_call_ids: vec![text.clone(), "}".into()],
                ttft_us: dur,
                rate_wait_us: dur.map(|d| d / 2),
            }));
            let num = serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number);
            for e in events(&text, n, num) {
                for layout in [Layout::Canonical, Layout::V1, Layout::V2] {
                    let enc = Encoded { event: &e, layout, meta: Some(Meta { at: n / 3, dur_us: dur, call: call.clone() }) };
                    prop_assert_eq!(enc.to_vec(), serde_bytes(&enc), "{:?} {:?}", layout, e.type_name());
                }
            }
        }

        #[test]
        fn the_bound_is_never_below_the_size(text in "\\PC{0,40}", n in any::<i64>()) {
            let v = json!({text.clone(): [n, text, {"k": null, "b": false}, 1.5e300]});
            let mut c = Count(0);
            serde_json::to_writer(&mut c, &v).unwrap();
            prop_assert!(json_bound(&v) >= c.0);
        }
    }
}
