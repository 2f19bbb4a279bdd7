//! What a log says about its run's progress, read from the events alone: the activations
//! still outstanding, the step ends (fork points), the last step, when the last event was
//! written and the tokens the run spent. Pure, so `inspect`, `inspect --follow`, `verify`
//! and `runs` agree, and it works on a log another process is still writing.

use std::collections::{BTreeMap, BTreeSet};

use agentmesh_core::{ActivationKind, Event, EventData, LogHeader, RunStatus, Usage};
use serde::Serialize;

/// An activation scheduled and not completed (yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// Seq of its scheduling event (the activation id).
    pub seq: u64,
    pub node: String,
    pub kind: ActivationKind,
    /// Agent or tool name; the node id for a person.
    pub name: String,
    pub attempt: u32,
    pub visit: u64,
    /// Step it was scheduled in.
    pub step: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// Tokens summed over a run's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Tokens {
    fn add(&mut self, u: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(u.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(u.output_tokens);
    }
}

/// The progress of a run as its events tell it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Status of the final event, when the last event ends the run.
    pub finished: Option<RunStatus>,
    /// Outstanding activations by activation id.
    pub pending: BTreeMap<u64, Pending>,
    /// Latest step started (0 before the first).
    pub step: u64,
    /// Latest `meta.at` (Unix ms) among the events.
    pub last_at: Option<u64>,
    /// Tokens of this run's own events: a fork's copies of its parent's events (seq up to
    /// `parent.seq`) were spent by the parent, not by the fork.
    pub tokens: Tokens,
}

fn usage_of(data: &EventData) -> Option<&Usage> {
    match data {
        EventData::Completed(_, c) => c.usage.as_ref(),
        EventData::Failed(_, f) => f.usage.as_ref(),
        _ => None,
    }
}

/// The step ends among `events` (in seq order): seq 1, and the last seq a step reserved once
/// every one of them holds its completion — the places `fork` accepts. A step with `n`
/// activations started at seq `s` schedules them at `s+1..=s+n` and reserves `s+n+1..=s+2n`.
pub fn fork_points(events: &[Event]) -> BTreeSet<u64> {
    let present: BTreeSet<u64> = events.iter().map(|e| e.seq).collect();
    let mut points = BTreeSet::new();
    if present.contains(&1) {
        points.insert(1);
    }
    for e in events {
        if let EventData::StepStarted(st) = &e.data {
            let (first, last) = (e.seq + st.activations + 1, e.seq + 2 * st.activations);
            if st.activations > 0 && present.range(first..=last).count() as u64 == st.activations {
                points.insert(last);
            }
        }
    }
    points
}

impl Progress {
    /// The progress of the run of `header` after `events` (in seq order, as `read_log` gives
    /// them; holes allowed).
    pub fn of(header: &LogHeader, events: &[Event]) -> Progress {
        let inherited = header.parent.as_ref().map_or(0, |p| p.seq);
        let mut p = Progress::default();
        let mut step = 0;
        for e in events {
            if let Some(at) = e.meta.as_ref().map(|m| m.at) {
                p.last_at = Some(p.last_at.map_or(at, |l| l.max(at)));
            }
            if e.seq > inherited {
                if let Some(u) = usage_of(&e.data) {
                    p.tokens.add(u);
                }
            }
            match &e.data {
                EventData::StepStarted(s) => step = s.step,
                EventData::Scheduled(kind, s) => {
                    let name = s
                        .agent
                        .as_deref()
                        .or(s.tool.as_deref())
                        .or(e.node.as_deref())
                        .unwrap_or("-");
                    p.pending.insert(
                        e.seq,
                        Pending {
                            seq: e.seq,
                            node: e.node.as_deref().unwrap_or("-").to_owned(),
                            kind: *kind,
                            name: name.to_owned(),
                            attempt: e.attempt.unwrap_or(1),
                            visit: s.visit,
                            step,
                            prompt: s.prompt.as_deref().map(str::to_owned),
                        },
                    );
                }
                EventData::Completed(..)
                | EventData::Failed(..)
                | EventData::ActivationCancelled(_) => {
                    if let Some(parent) = e.parent_seq {
                        p.pending.remove(&parent);
                    }
                }
                _ => {}
            }
        }
        p.step = step;
        p.finished = events.last().and_then(|e| match e.data {
            EventData::RunCompleted(_) => Some(RunStatus::Completed),
            EventData::RunFailed(_) => Some(RunStatus::Failed),
            EventData::RunCancelled(_) => Some(RunStatus::Cancelled),
            _ => None,
        });
        if p.finished.is_some() {
            // Nothing runs after the end, whatever was left unanswered.
            p.pending.clear();
        }
        p
    }

    /// Activations of agents and tools outstanding (in flight, or lost with a crash).
    pub fn in_flight(&self) -> impl Iterator<Item = &Pending> {
        self.pending
            .values()
            .filter(|a| a.kind != ActivationKind::Human)
    }

    /// Human activations outstanding.
    pub fn waiting(&self) -> impl Iterator<Item = &Pending> {
        self.pending
            .values()
            .filter(|a| a.kind == ActivationKind::Human)
    }

    /// Whether the run waits for a person and for nothing else.
    pub fn is_waiting(&self) -> bool {
        self.finished.is_none()
            && self.waiting().next().is_some()
            && self.in_flight().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(lines: &[&str]) -> Vec<Event> {
        lines.iter().map(|t| Event::from_json(t).unwrap()).collect()
    }

    fn header(parent_seq: Option<u64>) -> LogHeader {
        let mut text = r#"{"format":"agentmesh-log","version":2,"flags":[],"runId":"r","workflow":{"name":"w","hash":"h"},"seed":0"#.to_owned();
        if let Some(s) = parent_seq {
            text.push_str(&format!(r#","parent":{{"runId":"p","seq":{s}}}"#));
        }
        text.push('}');
        serde_json::from_str(&text).unwrap()
    }

    const STEP: [&str; 6] = [
        r#"{"seq":1,"type":"runStarted","runId":"r","traceId":"t","data":{"workflow":{"name":"w","nodes":[{"id":"a","type":"agent","agent":"x"},{"id":"h","type":"human"}]},"input":null,"seed":0}}"#,
        r#"{"seq":2,"type":"stepStarted","runId":"r","traceId":"t","parentSeq":1,"data":{"step":1,"activations":2}}"#,
        r#"{"seq":3,"type":"agentScheduled","runId":"r","traceId":"t","parentSeq":2,"node":"a","attempt":1,"data":{"agent":"x"}}"#,
        r#"{"seq":4,"type":"humanRequested","runId":"r","traceId":"t","parentSeq":2,"node":"h","attempt":1,"data":{"prompt":"ok?"}}"#,
        r#"{"seq":5,"type":"agentCompleted","runId":"r","traceId":"t","parentSeq":3,"node":"a","attempt":1,"data":{"output":1,"usage":{"inputTokens":7,"outputTokens":2}},"meta":{"at":50}}"#,
        r#"{"seq":6,"type":"humanResolved","runId":"r","traceId":"t","parentSeq":4,"node":"h","attempt":1,"data":{"output":true},"meta":{"at":40}}"#,
    ];

    #[test]
    fn pending_activations_step_ends_and_tokens() {
        let p = Progress::of(&header(None), &events(&STEP[..4]));
        assert_eq!(p.pending.keys().copied().collect::<Vec<_>>(), [3, 4]);
        assert_eq!(
            p.in_flight().map(|a| a.node.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert!(!p.is_waiting());
        assert_eq!(
            fork_points(&events(&STEP[..5]))
                .into_iter()
                .collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(
            fork_points(&events(&STEP)).into_iter().collect::<Vec<_>>(),
            [1, 6]
        );

        let p = Progress::of(&header(None), &events(&STEP[..5]));
        assert!(p.is_waiting());
        assert_eq!(p.waiting().next().unwrap().prompt.as_deref(), Some("ok?"));
        assert_eq!(
            p.tokens,
            Tokens {
                input_tokens: 7,
                output_tokens: 2
            }
        );
        assert_eq!(p.last_at, Some(50));

        let p = Progress::of(&header(None), &events(&STEP));
        assert!(p.pending.is_empty() && !p.is_waiting() && p.finished.is_none());
        assert_eq!((p.step, p.last_at), (1, Some(50)));
    }

    #[test]
    fn a_fork_does_not_count_the_tokens_it_copied() {
        assert_eq!(
            Progress::of(&header(Some(5)), &events(&STEP)).tokens,
            Tokens::default()
        );
        assert_eq!(
            Progress::of(&header(Some(4)), &events(&STEP))
                .tokens
                .input_tokens,
            7
        );
    }
}
