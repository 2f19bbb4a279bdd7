//! Re-execute replay: the agents of a recorded run run again, every call they make is
//! answered from the log, and the first place the new execution differs from the record (a
//! changed prompt, model or tool argument at a call; a changed output; a call the log does not
//! have) is reported. Strict replay ([`crate::replay`]) runs no agent code; this is the
//! regression test of a changed agent against recorded LLM answers. Nothing is sent, and
//! nothing is written: the run lives in memory.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Run, RunOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::machine::Report;
use crate::model::activation::Activation;
use crate::model::event::{Event, EventData};
use crate::model::workflow::{ActivationKind, Workflow};

/// The recorded run a re-execution is compared with.
#[derive(Debug)]
pub(crate) struct Reexec {
    /// The log's events by canonical key.
    recorded: BTreeMap<(u64, u32), Event>,
    /// The first difference found (later calls get it too).
    divergence: Option<Error>,
    activations: u64,
}

/// What a re-execution checked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReexecReport {
    /// The run id (the recorded one).
    pub run_id: String,
    /// Activations whose agents or tools ran again.
    pub activations: u64,
    /// Calls answered from the log.
    pub calls: u64,
    /// Events compared.
    pub events: u64,
}

impl Run {
    /// Start re-executing the run recorded in `path`: a run in memory with the recorded
    /// workflow, input, seed and run id. Drive it as usual (poll, run the agents, complete);
    /// every call is answered from the log, human decisions are taken from it, and each
    /// completion is compared with the recorded one. Finish with [`Run::reexec_report`].
    ///
    /// Errors: `LOG_CORRUPT`, `IO`, `INVALID_ARGUMENT` (a fork's log or a retried run: not
    /// supported yet).
    pub fn reexecute(path: impl AsRef<Path>) -> Result<Run> {
        Run::reexecute_with(path, None)
    }

    /// [`Run::reexecute`] of a run judged by `policy` (the one its header names): new
    /// outputs are judged as they were, so they compare with the recorded ones.
    ///
    /// Errors: as [`Run::reexecute`]; `INVALID_ARGUMENT` when `policy` is not the run's.
    pub fn reexecute_with(
        path: impl AsRef<Path>,
        policy: Option<crate::policy::Policy>,
    ) -> Result<Run> {
        let (header, events) = crate::read_log(path.as_ref())?;
        let policy = super::run_policy(&header, policy)?;
        if header.parent.is_some() {
            return Err(Error::invalid_argument(
                "re-execute replay of a fork's log is not supported yet: re-execute its parent",
            ));
        }
        let Some(EventData::RunStarted(started)) = events.first().map(|e| &e.data) else {
            return Err(Error::invalid_argument("the log holds no runStarted"));
        };
        if events
            .iter()
            .any(|e| matches!(e.data, EventData::RunReopened(_)))
        {
            return Err(Error::invalid_argument(
                "re-execute replay of a retried run (runReopened) is not supported yet",
            ));
        }
        let workflow = Workflow::from_spec((*started.workflow).clone())?;
        // The recorded budget: every call is answered from the log, so no price is needed.
        let mut run = Run::start_accounting(
            &workflow,
            RunOptions {
                input: (*started.input).clone(),
                seed: started.seed,
                run_id: Some(header.run_id.clone()),
                policy,
                ..Default::default()
            },
            started.budget.clone().map(|b| (b, None)),
            Some(started.verdicts.clone()),
        )?;
        run.machine.answer_calls_from_log();
        run.reexec = Some(Box::new(Reexec {
            recorded: events.into_iter().map(|e| (e.canonical_key(), e)).collect(),
            divergence: None,
            activations: 0,
        }));
        Ok(run)
    }

    /// After driving a re-executed run: `Ok` with what was checked when the new execution
    /// gave the recorded log event for event; `NONDETERMINISM` naming seq, node and field
    /// at the first difference otherwise.
    ///
    /// Errors: `INVALID_ARGUMENT` (not a re-executed run), `NONDETERMINISM`.
    pub fn reexec_report(&self) -> Result<ReexecReport> {
        let Some(re) = &self.reexec else {
            return Err(Error::invalid_argument("not a re-executed run"));
        };
        if let Some(e) = &re.divergence {
            return Err(e.clone());
        }
        let mut mine: Vec<&Event> = self.events().unwrap_or(&[]).iter().collect();
        mine.sort_by_key(|e| e.canonical_key());
        // Recorded calls were each matched when the agent made them (an agent that made
        // fewer fails its completion); what is compared here is everything else.
        let theirs: Vec<&Event> = re.recorded.values().filter(|e| e.sub.is_none()).collect();
        for i in 0..mine.len().max(theirs.len()) {
            let (a, b) = (theirs.get(i).copied(), mine.get(i).copied());
            let same = matches!((a, b), (Some(x), Some(y)) if x.same_canonical(y));
            if !same {
                let seq = a.or(b).map_or(0, |e| e.seq);
                return Err(crate::replay::divergence_of(seq, a, b));
            }
        }
        let calls = re
            .recorded
            .values()
            .filter(|e| matches!(e.data, EventData::CallStarted(_)))
            .count() as u64;
        Ok(ReexecReport {
            run_id: self.run_id().to_owned(),
            activations: re.activations,
            calls,
            events: re.recorded.len() as u64,
        })
    }

    /// The first difference a re-execution found so far (later work is refused with it).
    pub(crate) fn reexec_divergence(&self) -> Option<Error> {
        self.reexec.as_ref().and_then(|r| r.divergence.clone())
    }

    /// Remember a call's divergence (an agent may catch the error; the run still diverged).
    pub(crate) fn reexec_note(&mut self, e: &Error) {
        if let Some(re) = self.reexec.as_mut() {
            if e.kind() == ErrorKind::Nondeterminism && re.divergence.is_none() {
                re.divergence = Some(e.clone());
            }
        }
    }

    /// Activations handed out by `poll` in a re-execution: their recorded calls go into the
    /// journal; human ones are resolved from the log.
    pub(crate) fn reexec_poll(&mut self, mut acts: Vec<Activation>) -> Result<Vec<Activation>> {
        let mut out = Vec::new();
        loop {
            for act in acts {
                let Some(seq) = self.machine.completion_seq_of(act.id) else {
                    continue;
                };
                let re = self.reexec.as_ref().expect("a re-executed run");
                let calls: Vec<Event> = re
                    .recorded
                    .range((seq, 0)..(seq, u32::MAX))
                    .map(|(_, e)| e.clone())
                    .collect();
                for c in &calls {
                    self.machine.record_call(c)?;
                }
                if act.kind == ActivationKind::Human {
                    // A person's decision is taken as the log holds it, with the verdicts
                    // the run's policy gave it then (its redacted form is not judged again).
                    let recorded = re.recorded.get(&(seq, u32::MAX)).cloned();
                    let report = match recorded.map(|e| e.data) {
                        Some(EventData::Completed(_, c)) => Report {
                            result: Ok(c.output),
                            usage: c.usage,
                            dur_us: None,
                            verdicts: c.verdicts,
                            repaired: c.repaired,
                        },
                        Some(EventData::Failed(_, f)) => Report {
                            result: Err(f.error),
                            usage: f.usage,
                            dur_us: None,
                            verdicts: f.verdicts,
                            repaired: None,
                        },
                        // Still waiting in the log: it waits here too.
                        _ => continue,
                    };
                    self.check_usable()?;
                    let staged = self.machine.stage_report(act.id, report)?;
                    self.record_staged(act.id, staged)?;
                    self.commit()?;
                } else {
                    if let Some(re) = self.reexec.as_mut() {
                        re.activations += 1;
                    }
                    out.push(act);
                }
            }
            acts = self.machine.poll();
            if acts.is_empty() {
                return Ok(out);
            }
        }
    }

    /// Compare a completion about to be recorded with the log's.
    pub(crate) fn reexec_check(&mut self, event: &Event) -> Result<()> {
        let Some(re) = self.reexec.as_mut() else {
            return Ok(());
        };
        if let Some(e) = &re.divergence {
            return Err(e.clone());
        }
        let recorded = re.recorded.get(&event.canonical_key());
        if recorded.is_some_and(|r| r.same_canonical(event)) {
            return Ok(());
        }
        let e = crate::replay::divergence_of(event.seq, recorded, Some(event));
        re.divergence = Some(e.clone());
        Err(e)
    }
}
