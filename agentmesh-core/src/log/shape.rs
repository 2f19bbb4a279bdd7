//! The structure every log has, checked on every read path (verify, canonical, read, replay,
//! resume): one set of rules, so no reader accepts a log another rejects.
//!
//! Records are appended in seq order, except the completions of the open step, which sit at
//! the seqs its `stepStarted` reserved and may arrive in any order (docs/events.md, "Physical
//! order"):
//!
//! - the first event is `runStarted` at seq 1;
//! - `stepStarted` at seq `s` with `n` activations (1 ≤ n ≤ the node limit) is followed by
//!   its `n` scheduled events at `s+1 ..= s+n`, which reserve `s+n+1 ..= s+2n`;
//! - completions and `activationCancelled` fill reserved seqs of the open step, each once;
//! - call records (format 3) sit at a reserved seq of the open step that holds no completion
//!   yet, with a `sub`: each `callStarted` at the next odd sub of its seq (1, 3, 5, …), each
//!   result at the sub after its `callStarted`'s, once; a result may be missing (the call was
//!   in flight when the activation ended or the process died);
//! - every other record is at the next seq in order, and only once the open step's reserved
//!   seqs are all filled; nothing follows the event that ends the run.
//!
//! The only state is the open step's reserved seqs and their calls awaiting a result, so
//! memory is bounded by the node and call limits whatever a file claims, and all arithmetic
//! on values read from the file is checked.

use crate::error::{Error, Result};
use crate::model::call::MAX_CALLS_PER_ACTIVATION;
use crate::model::event::{EventKind, Role};
use crate::model::workflow::MAX_NODES;

/// The open step.
#[derive(Debug, Clone)]
struct OpenStep {
    /// Scheduled events still to come.
    to_schedule: u64,
    /// The first reserved seq (`s + n + 1`).
    first_reserved: u64,
    /// Which reserved seqs hold a record.
    filled: Vec<bool>,
    unfilled: u64,
    /// The calls of each reserved seq (empty until its first call).
    calls: Vec<Calls>,
}

/// The call records of one activation so far.
#[derive(Debug, Clone, Default)]
struct Calls {
    /// The sub the next `callStarted` must have (0: none yet, so 1).
    next_start: u32,
    /// Result subs not yet seen.
    awaiting: Vec<u32>,
}

/// Checks the structure of a log record by record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shape {
    events: u64,
    /// The seq the next in-order record must have.
    next: u64,
    step: Option<OpenStep>,
    /// The buffer of the last closed step, for the next.
    spare: Vec<bool>,
    finished: Option<EventKind>,
    last_seq: u64,
    /// Whether the file's format holds call records (version 3 on).
    calls: bool,
    /// Whether it holds budget records (`callDenied`, `budgetWarning`: version 4 on).
    budgets: bool,
}

impl Shape {
    /// The rules of file format `version`.
    pub(crate) fn for_version(version: u32) -> Shape {
        Shape {
            calls: version >= 3,
            budgets: version >= 4,
            ..Shape::default()
        }
    }

    /// Check the next record in file order. `sub` is a call record's number under its seq;
    /// `activations` is the count a `stepStarted` record claims (ignored for other types).
    pub(crate) fn see(
        &mut self,
        seq: u64,
        sub: Option<u32>,
        kind: EventKind,
        activations: Option<u64>,
        offset: u64,
    ) -> Result<()> {
        let bad = |why: String| Err(Error::corrupt(offset, format!("seq {seq}: {why}")));
        if !self.budgets && matches!(kind, EventKind::CallDenied | EventKind::BudgetWarning) {
            return bad(format!(
                "{} in a log whose format holds no budget records (format 4 does)",
                kind.name()
            ));
        }
        if kind.role() == Role::Call {
            return self.see_call(seq, sub, kind, offset);
        }
        if sub.is_some() {
            return bad(format!("{} carries a sub number", kind.name()));
        }
        if self.events == 0 {
            if seq != 1 || kind != EventKind::RunStarted {
                return bad("the first event must be runStarted with seq 1".to_owned());
            }
            self.events = 1;
            self.next = 2;
            self.last_seq = 1;
            return Ok(());
        }
        if let Some(end) = self.finished {
            if kind != EventKind::RunReopened || end == EventKind::RunCompleted {
                return bad(format!(
                    "{} follows {}, which ended the run",
                    kind.name(),
                    end.name()
                ));
            }
            self.finished = None;
        }
        match kind.role() {
            Role::Call => unreachable!("call records are checked by see_call"),
            Role::Scheduled => {
                let scheduling = self.step.as_mut().filter(|s| s.to_schedule > 0);
                let Some(step) = scheduling else {
                    return bad(format!("{} outside the activations of a step", kind.name()));
                };
                if seq != self.next {
                    return bad(format!("expected seq {} here", self.next));
                }
                step.to_schedule -= 1;
                self.next = if step.to_schedule == 0 {
                    // Past the reserved seqs, with a bound checked when the step started.
                    step.first_reserved + step.filled.len() as u64
                } else {
                    seq + 1
                };
            }
            Role::Completion | Role::Cancellation => {
                let Some(step) = self.step.as_mut().filter(|s| s.to_schedule == 0) else {
                    return bad(format!(
                        "{} outside the reserved seqs of a step",
                        kind.name()
                    ));
                };
                let slot = seq
                    .checked_sub(step.first_reserved)
                    .filter(|&i| i < step.filled.len() as u64);
                let Some(slot) = slot else {
                    return bad(format!(
                        "{} is not at a seq its step reserved ({}..={})",
                        kind.name(),
                        step.first_reserved,
                        step.first_reserved + step.filled.len() as u64 - 1
                    ));
                };
                if std::mem::replace(&mut step.filled[slot as usize], true) {
                    return bad("appears twice".to_owned());
                }
                step.unfilled -= 1;
                if step.unfilled == 0 {
                    if let Some(done) = self.step.take() {
                        self.spare = done.filled;
                    }
                }
            }
            Role::Decision | Role::Input => {
                if let Some(step) = &self.step {
                    return bad(if step.to_schedule > 0 {
                        format!("{} where the step's activations belong", kind.name())
                    } else {
                        format!(
                            "{} before every completion of the open step was recorded",
                            kind.name()
                        )
                    });
                }
                if seq != self.next {
                    return bad(format!("expected seq {} here", self.next));
                }
                if kind == EventKind::StepStarted {
                    let n = match activations {
                        Some(n) if (1..=MAX_NODES as u64).contains(&n) => n,
                        Some(n) => {
                            return bad(format!(
                                "a step of {n} activations (1 to {MAX_NODES} are possible)"
                            ))
                        }
                        None => return bad("stepStarted body is malformed".to_owned()),
                    };
                    // n ≤ MAX_NODES, so only a seq near u64::MAX can overflow here.
                    let Some(end) = seq.checked_add(2 * n + 1) else {
                        return bad("the step's seqs overflow".to_owned());
                    };
                    // Reuse the last step's buffer: a step per few records is the common case.
                    let mut filled = std::mem::take(&mut self.spare);
                    filled.clear();
                    filled.resize(n as usize, false);
                    self.step = Some(OpenStep {
                        to_schedule: n,
                        first_reserved: seq + n + 1,
                        filled,
                        unfilled: n,
                        calls: Vec::new(),
                    });
                    debug_assert_eq!(end, seq + 2 * n + 1);
                }
                if kind.ends_run() {
                    self.finished = Some(kind);
                }
                self.next = match seq.checked_add(1) {
                    Some(n) => n,
                    None => return bad("seq overflows".to_owned()),
                };
            }
        }
        self.events += 1;
        self.last_seq = self.last_seq.max(seq);
        Ok(())
    }

    fn see_call(&mut self, seq: u64, sub: Option<u32>, kind: EventKind, offset: u64) -> Result<()> {
        let bad = |why: String| {
            let at = sub.map_or_else(String::new, |s| format!(" sub {s}"));
            Err(Error::corrupt(offset, format!("seq {seq}{at}: {why}")))
        };
        if !self.calls {
            return bad(format!(
                "{} in a log whose format holds no call records (format 3 does)",
                kind.name()
            ));
        }
        let Some(sub) = sub else {
            return bad(format!("{} without a sub number", kind.name()));
        };
        if self.finished.is_some() {
            return bad(format!("{} after the run ended", kind.name()));
        }
        let Some(step) = self.step.as_mut().filter(|s| s.to_schedule == 0) else {
            return bad(format!("{} outside the activations of a step", kind.name()));
        };
        let slot = seq
            .checked_sub(step.first_reserved)
            .filter(|&i| i < step.filled.len() as u64);
        let Some(slot) = slot.map(|i| i as usize) else {
            return bad(format!(
                "{} is not at a completion seq its step reserved",
                kind.name()
            ));
        };
        if step.filled[slot] {
            return bad(format!("{} after its activation's completion", kind.name()));
        }
        if step.calls.len() < step.filled.len() {
            step.calls.resize_with(step.filled.len(), Calls::default);
        }
        let calls = &mut step.calls[slot];
        if matches!(kind, EventKind::CallStarted | EventKind::CallDenied) {
            let expected = calls.next_start.max(1);
            if sub != expected {
                return bad(format!("expected the next callStarted at sub {expected}"));
            }
            if sub / 2 >= MAX_CALLS_PER_ACTIVATION {
                return bad(format!(
                    "more than {MAX_CALLS_PER_ACTIVATION} calls in one activation"
                ));
            }
            calls.next_start = sub + 2;
            // A refused call has no result.
            if kind == EventKind::CallStarted {
                calls.awaiting.push(sub + 1);
            }
        } else {
            let Some(i) = calls.awaiting.iter().position(|&s| s == sub) else {
                return bad(format!(
                    "{} without its callStarted at sub {}, or twice",
                    kind.name(),
                    sub.saturating_sub(1)
                ));
            };
            calls.awaiting.swap_remove(i);
        }
        self.events += 1;
        self.last_seq = self.last_seq.max(seq);
        Ok(())
    }

    /// Events seen.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    /// Highest seq seen.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The type of the event that ended the run, if one did.
    pub(crate) fn finished(&self) -> Option<EventKind> {
        self.finished
    }

    /// Reserved seqs below the highest seq seen that hold no record yet: completions of
    /// activations still outstanding.
    pub(crate) fn holes(&self) -> Vec<u64> {
        let Some(step) = &self.step else {
            return Vec::new();
        };
        (0..step.filled.len() as u64)
            .filter(|&i| !step.filled[i as usize])
            .map(|i| step.first_reserved + i)
            .filter(|&s| s < self.last_seq)
            .collect()
    }
}

/// The `activations` of a `stepStarted` record, read from the bytes after its type
/// (`…,"data":{"step":S,"activations":N}`, the only form the core writes). `None` when the
/// body has another form.
pub(crate) fn step_activations(rest: &[u8]) -> Option<u64> {
    let pat = b",\"data\":{\"step\":";
    let at = rest.windows(pat.len()).position(|w| w == pat)? + pat.len();
    let rest = &rest[at..];
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(b",\"activations\":")?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || rest.get(digits) != Some(&b'}') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind as K;

    fn feed(records: &[(u64, EventKind, Option<u64>)]) -> Result<Shape> {
        let mut s = Shape::default();
        for (i, &(seq, kind, n)) in records.iter().enumerate() {
            s.see(seq, None, kind, n, i as u64)?;
        }
        Ok(s)
    }

    fn feed_calls(records: &[(u64, Option<u32>, EventKind)]) -> Result<Shape> {
        let mut s = Shape::for_version(3);
        s.see(1, None, K::RunStarted, None, 0)?;
        s.see(2, None, K::StepStarted, Some(2), 1)?;
        s.see(3, None, K::AgentScheduled, None, 2)?;
        s.see(4, None, K::AgentScheduled, None, 3)?;
        for (i, &(seq, sub, kind)) in records.iter().enumerate() {
            s.see(seq, sub, kind, None, 10 + i as u64)?;
        }
        Ok(s)
    }

    #[test]
    fn calls_sit_under_open_completions_and_results_follow_their_start() {
        let s = feed_calls(&[
            (5, Some(1), K::CallStarted),
            (6, Some(1), K::CallStarted),
            (5, Some(3), K::CallStarted),
            (5, Some(4), K::CallFailed),
            (6, Some(2), K::CallCompleted),
            (5, Some(5), K::CallStarted),
            (5, Some(2), K::CallCompleted),
            (6, None, K::AgentCompleted),
            // call 3 of seq 5 never got its result (it was in flight when the agent ended)
            (5, None, K::AgentCompleted),
            (7, None, K::RunCompleted),
        ])
        .unwrap();
        assert_eq!(s.events(), 14);
    }

    #[test]
    fn misplaced_call_records_are_corrupt() {
        let cases: Vec<Vec<(u64, Option<u32>, EventKind)>> = vec![
            vec![(5, None, K::CallStarted)],
            vec![(5, Some(2), K::CallStarted)],
            vec![(5, Some(3), K::CallStarted)],
            vec![(5, Some(1), K::CallStarted), (5, Some(1), K::CallStarted)],
            vec![(5, Some(2), K::CallCompleted)],
            vec![
                (5, Some(1), K::CallStarted),
                (5, Some(2), K::CallCompleted),
                (5, Some(2), K::CallFailed),
            ],
            vec![(3, Some(1), K::CallStarted)],
            vec![(7, Some(1), K::CallStarted)],
            vec![(5, None, K::AgentCompleted), (5, Some(1), K::CallStarted)],
            vec![(5, Some(1), K::AgentCompleted)],
        ];
        for (i, c) in cases.iter().enumerate() {
            let e = feed_calls(c).expect_err(&format!("case {i} accepted"));
            assert_eq!(e.code(), "LOG_CORRUPT", "case {i}");
        }
        let mut old = Shape::for_version(2);
        old.see(1, None, K::RunStarted, None, 0).unwrap();
        old.see(2, None, K::StepStarted, Some(1), 1).unwrap();
        old.see(3, None, K::AgentScheduled, None, 2).unwrap();
        let e = old.see(4, Some(1), K::CallStarted, None, 3).unwrap_err();
        assert!(e.message().contains("format 3"), "{e}");
    }

    const START: (u64, EventKind, Option<u64>) = (1, K::RunStarted, None);

    #[test]
    fn completions_fill_reserved_seqs_in_any_order() {
        let s = feed(&[
            START,
            (2, K::StepStarted, Some(2)),
            (3, K::AgentScheduled, None),
            (4, K::ToolScheduled, None),
            (6, K::ToolCompleted, None),
            (5, K::AgentCompleted, None),
            (7, K::RunCompleted, None),
        ])
        .unwrap();
        assert_eq!((s.events(), s.last_seq()), (7, 7));
        assert_eq!(s.finished(), Some(K::RunCompleted));
        assert!(s.holes().is_empty());
    }

    #[test]
    fn an_open_step_reports_its_holes() {
        let s = feed(&[
            START,
            (2, K::StepStarted, Some(3)),
            (3, K::HumanRequested, None),
            (4, K::AgentScheduled, None),
            (5, K::AgentScheduled, None),
            (8, K::AgentCompleted, None),
        ])
        .unwrap();
        assert_eq!(s.holes(), [6, 7]);
    }

    #[test]
    fn every_structural_violation_is_corrupt() {
        let cases: Vec<Vec<(u64, EventKind, Option<u64>)>> = vec![
            vec![(2, K::RunStarted, None)],
            vec![(1, K::StepStarted, Some(1))],
            // a duplicated seq (the forged duplicate completion)
            vec![
                START,
                (2, K::StepStarted, Some(1)),
                (3, K::AgentScheduled, None),
                (4, K::AgentCompleted, None),
                (4, K::AgentCompleted, None),
            ],
            // a jump (the 2.8 GB allocation)
            vec![START, (1_000_000, K::StepStarted, Some(1))],
            // absurd activation counts, overflow
            vec![START, (2, K::StepStarted, Some(1 << 62))],
            vec![START, (2, K::StepStarted, Some(0))],
            vec![START, (2, K::StepStarted, None)],
            // decisions before the step ended, completions outside the reservation
            vec![
                START,
                (2, K::StepStarted, Some(1)),
                (3, K::AgentScheduled, None),
                (5, K::RunCompleted, None),
            ],
            vec![
                START,
                (2, K::StepStarted, Some(1)),
                (3, K::AgentScheduled, None),
                (5, K::AgentCompleted, None),
            ],
            vec![
                START,
                (2, K::StepStarted, Some(1)),
                (4, K::AgentCompleted, None),
            ],
            vec![
                START,
                (2, K::StepStarted, Some(2)),
                (3, K::AgentScheduled, None),
                (4, K::BranchDecided, None),
            ],
            vec![START, (2, K::AgentScheduled, None)],
            // after the end
            vec![START, (2, K::RunFailed, None), (3, K::RunCompleted, None)],
        ];
        for (i, c) in cases.iter().enumerate() {
            let e = feed(c).expect_err(&format!("case {i} accepted"));
            assert_eq!(e.code(), "LOG_CORRUPT", "case {i}");
        }
    }

    #[test]
    fn a_seq_near_the_end_of_u64_does_not_overflow() {
        let mut s = Shape::default();
        s.see(1, None, K::RunStarted, None, 0).unwrap();
        s.next = u64::MAX - 1;
        let e = s
            .see(u64::MAX - 1, None, K::StepStarted, Some(1), 1)
            .unwrap_err();
        assert_eq!(e.code(), "LOG_CORRUPT");
    }

    #[test]
    fn step_bodies_are_read_without_json() {
        assert_eq!(
            step_activations(br#","parentSeq":2,"data":{"step":3,"activations":12}"#),
            Some(12)
        );
        assert_eq!(
            step_activations(br#","data":{"step":3, "activations":12}"#),
            None
        );
        assert_eq!(
            step_activations(br#","data":{"step":3,"activations":12,"x":1}"#),
            None
        );
        assert_eq!(step_activations(br#","data":{}"#), None);
    }
}
