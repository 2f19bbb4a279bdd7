//! A run: the state machine plus where its events go (a file log or memory).
//!
//! This is the API every host driver (Rust, Python, Node) is written against:
//! `start` → loop { `poll` → execute → `complete` } → `outcome`. Protocol rules that every
//! host shares live here once: the timeout failure, approvals on resume, what happens to an
//! output the log cannot hold.
//!
//! Every change is committed to the log before the state it describes is visible: a
//! completion is staged, written, then applied. If a commit fails the run is poisoned: every
//! later call returns that error, so the in-memory run never runs ahead of its log.

mod calls;
mod observe;
mod reexec;
mod sink;
mod watch;
mod way_out;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

pub use observe::Observer;
pub use reexec::ReexecReport;
pub(crate) use sink::RunLog;
use sink::Sink;
use watch::Watch;

use crate::budget::{Limits, PriceTable};
use crate::error::{Error, ErrorKind, Result};
use crate::log::reader::{LogReader, LogScan};
use crate::log::writer::LogWriter;
use crate::log::FsyncMode;
use crate::machine::Machine;
use crate::model::activation::{Activation, Completion, Outcome, RunStatus};
use crate::model::budget::RunBudget;
use crate::model::event::{Event, EventData};
use crate::model::header::{
    CoreFlags, HeaderMeta, LogHeader, MetaExtra, ParentRef, PolicyRef, WorkflowRef,
};
use crate::model::verdict::Verdict;
use crate::model::workflow::{ActivationKind, Workflow};
use crate::policy::{Policy, Subject};
use crate::replay::{self, Stop};

/// The reason `runReopened` records for [`Run::retry`] (one text for every host, so their
/// logs stay byte-identical).
pub const REOPEN_REASON: &str = "retry";

/// The bundled price table with `user`'s entries looked at first.
pub(crate) fn price_table(user: Option<&PriceTable>) -> Arc<PriceTable> {
    static BUNDLED: std::sync::OnceLock<Arc<PriceTable>> = std::sync::OnceLock::new();
    match user {
        Some(t) => Arc::new(PriceTable::bundled().merged(t)),
        None => BUNDLED
            .get_or_init(|| Arc::new(PriceTable::bundled().clone()))
            .clone(),
    }
}

/// How to start a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run input (any JSON); `null` when not given.
    pub input: Value,
    /// Seed: part of the derived run id and of every activation's seed.
    pub seed: u64,
    /// Run id; derived from workflow, input and seed when `None`.
    pub run_id: Option<String>,
    /// Directory for `<runId>.jsonl`; `None` keeps the log in memory.
    pub log_dir: Option<PathBuf>,
    /// Durability mode of the file log.
    pub fsync: FsyncMode,
    /// Tenant recorded in the header.
    pub tenant: Option<String>,
    /// What hosts the run (`cli`, `python`, `node`, `rust`), recorded in the header's
    /// non-canonical `meta.host`.
    pub host: Option<String>,
    /// Keep committed events for [`Run::take_committed`] from the first one on.
    pub watch: bool,
    /// Sees every event the run commits (telemetry: docs/telemetry.md).
    pub observer: Option<Arc<dyn Observer>>,
    /// The run's limits, replacing the workflow's `budget` (recorded in `runStarted`, so
    /// resume and replay use these). `Some(Limits::UNLIMITED)` accounts for spend without
    /// limiting the run.
    pub budget: Option<Limits>,
    /// Prices looked at before the bundled table (docs/budgets.md); the merged table's hash
    /// is recorded. Giving a table makes the run account for spend.
    pub prices: Option<PriceTable>,
    /// The policy that judges what the run records, sends and passes on (docs/policy.md); its
    /// hash is recorded in the header.
    pub policy: Option<Policy>,
}

/// How to reopen a run from its log (see [`Run::resume_with`]).
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// Durability mode for what is appended.
    pub fsync: FsyncMode,
    /// The run the log must hold; another run's log is refused before anything is written.
    pub run_id: Option<String>,
    /// Decisions for waiting human nodes: node id → output.
    pub approvals: BTreeMap<String, Value>,
    /// Keep committed events for [`Run::take_committed`], including what resume appends.
    pub watch: bool,
    /// Sees every event the run commits (telemetry: docs/telemetry.md).
    pub observer: Option<Arc<dyn Observer>>,
    /// The user price table the run was started with, when it was given one: a run that
    /// accounts for spend needs the same prices to go on (the recorded hash is checked).
    pub prices: Option<PriceTable>,
    /// The policy the run was started with, when it had one (the recorded hash is checked;
    /// a run goes on only under its own policy).
    pub policy: Option<Policy>,
}

/// How to fork a run (see [`Run::fork_with`]).
#[derive(Debug, Clone, Default)]
pub struct ForkOptions {
    /// The step end to fork at (1, or the last completion of a step).
    pub seq: u64,
    /// Node outputs to replace before the fork continues: node id → output.
    pub overrides: BTreeMap<String, Value>,
    /// Run id of the fork; derived from parent, seq, overrides (and a changed workflow).
    pub run_id: Option<String>,
    /// Directory for the fork's log; `None` keeps it in memory.
    pub log_dir: Option<PathBuf>,
    /// Durability mode of the fork's log.
    pub fsync: FsyncMode,
    /// Continue under this workflow instead of the recorded one; the prefix must replay
    /// equal under it.
    pub workflow: Option<Workflow>,
    /// What hosts the fork (see [`RunOptions::host`]).
    pub host: Option<String>,
    /// Keep committed events for [`Run::take_committed`], the copied prefix included.
    pub watch: bool,
    /// Sees every event the run commits (telemetry: docs/telemetry.md).
    pub observer: Option<Arc<dyn Observer>>,
    /// The parent's user price table, when it was given one (see [`ResumeOptions::prices`]).
    pub prices: Option<PriceTable>,
    /// The parent's policy, when it had one (see [`ResumeOptions::policy`]).
    pub policy: Option<Policy>,
}

/// One run of a workflow. Single writer: all calls come from one thread at a time.
#[derive(Debug)]
pub struct Run {
    machine: Machine,
    sink: Sink,
    header: LogHeader,
    path: Option<PathBuf>,
    /// The failure of a commit: the log is behind the machine, so nothing may go on.
    poisoned: Option<Error>,
    /// Committed events for a watching host.
    watch: Option<Watch>,
    /// Re-execute replay: the recorded run this one is compared with.
    reexec: Option<Box<reexec::Reexec>>,
}

/// The run id used when none is given: `run-` + 16 hex digits of
/// blake3(workflow hash, canonical input, seed). Same workflow, input and seed ⇒ same id.
pub fn derive_run_id(workflow: &Workflow, input: &Value, seed: u64) -> String {
    let mut h = blake3::Hasher::new();
    h.update(workflow.hash().as_bytes());
    h.update(&[0]);
    h.update(input.to_string().as_bytes());
    h.update(&[0]);
    h.update(&seed.to_le_bytes());
    format!("run-{}", &h.finalize().to_hex()[..16])
}

/// What became of one completion given to [`Run::complete_all`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Recorded {
    /// Recorded as given.
    AsGiven,
    /// The output could not be recorded (too large for the log): recorded instead as a
    /// permanent failure of type `InvalidOutput` with this error's message.
    AsFailure(Error),
    /// Refused (`INVALID_COMPLETION`: unknown, late or duplicate activation): nothing
    /// recorded.
    Refused(Error),
}

impl Run {
    /// Start a run: creates its log holding the header, `runStarted` and the first step.
    ///
    /// Errors: `INVALID_ARGUMENT` (run id, tenant, input too deep or too large),
    /// `RUN_EXISTS`, `IO`.
    pub fn start(workflow: &Workflow, options: RunOptions) -> Result<Run> {
        let budget = if workflow.compiled().has_budgets
            || options.budget.is_some()
            || options.prices.is_some()
        {
            let prices = price_table(options.prices.as_ref());
            Some((
                RunBudget {
                    limits: options.budget,
                    prices: prices.hash().to_owned(),
                },
                Some(prices),
            ))
        } else {
            None
        };
        Run::start_accounting(workflow, options, budget, None)
    }

    /// [`Run::start`] with the run's budget record given (re-execute replay takes the
    /// recorded one), and the verdicts about the input when they are known (re-execute
    /// replay takes the recorded input and its verdicts; otherwise the policy judges it).
    pub(crate) fn start_accounting(
        workflow: &Workflow,
        mut options: RunOptions,
        budget: Option<(RunBudget, Option<Arc<PriceTable>>)>,
        input_verdicts: Option<Vec<Verdict>>,
    ) -> Result<Run> {
        let run_id = match options.run_id.take() {
            Some(id) => id,
            None => derive_run_id(workflow, &options.input, options.seed),
        };
        let policy = options.policy.take();
        if let Some(p) = &policy {
            check_tool_nodes(workflow, p)?;
        }
        let verdicts = match (input_verdicts, &policy) {
            (Some(v), _) => v,
            (None, None) => Vec::new(),
            (None, Some(p)) => {
                let checked = p.check(Subject::Input, &options.input);
                if checked.blocked {
                    // Keyed like a completion at seq 1: the input never reaches the log.
                    let context = format!("{run_id}/1/0");
                    let digest = crate::policy::block_digest(&context, &options.input);
                    options.input = Value::Null;
                    checked
                        .verdicts
                        .into_iter()
                        .map(|mut v| {
                            v.digest = Some(digest.clone());
                            v
                        })
                        .collect()
                } else {
                    if let Some(v) = checked.value {
                        options.input = v;
                    }
                    checked.verdicts
                }
            }
        };
        crate::log::validate_run_id(&run_id)?;
        if crate::model::too_deep(&options.input) {
            return Err(Error::invalid_argument(format!(
                "input nests arrays/objects deeper than {}",
                crate::model::MAX_VALUE_DEPTH
            )));
        }
        if let Some(t) = &options.tenant {
            crate::model::validate::check_name(None, "tenant", t)
                .map_err(|e| Error::invalid_argument(e.message()))?;
        }
        if let Some(h) = &options.host {
            crate::model::validate::check_name(None, "host", h)
                .map_err(|e| Error::invalid_argument(e.message()))?;
        }
        let mut header = LogHeader::new(
            &run_id,
            WorkflowRef {
                name: workflow.name().to_owned(),
                hash: workflow.hash().to_owned(),
            },
            options.seed,
            options.tenant,
        );
        header.meta = options.host.map(|host| HeaderMeta {
            at: 0,
            host: Some(host),
        });
        header.policy = policy.as_ref().map(|p| PolicyRef {
            name: p.name().to_owned(),
            hash: p.hash().to_owned(),
        });
        let mut machine = Machine::new(
            workflow.clone(),
            &run_id,
            Arc::new(options.input),
            options.seed,
            CoreFlags::current(),
            budget,
        );
        machine.set_policy(policy);
        machine.start(verdicts);
        machine.advance();
        let first = machine.take_outbox();
        let mut watch = Watch::new(options.watch, options.observer.clone());
        let watched = watch.is_some().then(|| first.clone());
        let (sink, path, at) =
            Sink::create(&header, first, options.log_dir.as_deref(), options.fsync).map_err(
                |e| match e.kind() {
                    ErrorKind::InvalidOutput => Error::invalid_argument(format!(
                        "the run input is too large for the log: {}",
                        e.message()
                    )),
                    ErrorKind::RunExists => match &options.log_dir {
                        Some(dir) => match crate::log::log_path(dir, &run_id) {
                            Ok(p) => Error::new(ErrorKind::RunExists, way_out::for_existing(&p)),
                            Err(_) => e,
                        },
                        None => e,
                    },
                    _ => e,
                },
            )?;
        if let (Some(w), Some(events)) = (watch.as_mut(), watched) {
            w.stage(events, at, &MetaExtra::NONE);
        }
        let mut run = Run {
            machine,
            sink,
            header,
            path,
            poisoned: None,
            watch,
            reexec: None,
        };
        run.commit()?;
        Ok(run)
    }

    /// Reopen a run from its log (after a crash, or to resolve a human wait): verify it and
    /// rebuild the state in one pass without calling any agent, mend a damaged tail, make
    /// the file durable, and append the decisions a crash lost. [`Run::poll`] then returns
    /// only unfinished work. A format-1 log is appended in format 1.
    ///
    /// Errors: `LOG_CORRUPT`, `NONDETERMINISM` (the log disagrees with its own workflow),
    /// `IO` (also when another writer holds the log).
    pub fn resume(path: impl AsRef<Path>, fsync: FsyncMode) -> Result<Run> {
        Run::resume_with(
            path,
            ResumeOptions {
                fsync,
                ..ResumeOptions::default()
            },
        )
    }

    /// [`Run::resume`], checking that the log holds `options.run_id` and resolving waiting
    /// human nodes with `options.approvals` — every approval is checked before any is
    /// recorded, so a typo changes nothing.
    ///
    /// Errors: as [`Run::resume`]; `INVALID_ARGUMENT` (another run's log, an approval for a
    /// node with no pending human activation), `INVALID_OUTPUT` (an approval too deep).
    pub fn resume_with(path: impl AsRef<Path>, options: ResumeOptions) -> Result<Run> {
        Run::reopen_log(path.as_ref(), options, false)
    }

    /// [`Run::resume_with`], and with `retry` the `runReopened` of [`Run::retry`]: checked with
    /// the approvals, before anything is appended.
    fn reopen_log(path: &Path, options: ResumeOptions, retry: bool) -> Result<Run> {
        if let Some(expected) = &options.run_id {
            let header = crate::log::read_header(path)?;
            if &header.run_id != expected {
                return Err(Error::invalid_argument(format!(
                    "{} holds run '{}', not '{expected}'",
                    path.display(),
                    header.run_id
                )));
            }
        }
        let mut file = crate::log::repair::open_locked(path)?;
        let (rebuilt, header, ending, last_link, end) = {
            let reader = LogReader::new(&*file, path)?;
            let mut scan = LogScan::new(reader);
            let rebuilt = replay::rebuild(&mut scan, None, Stop::End, None, None)?;
            let r = &scan.reader;
            (
                rebuilt,
                r.header.clone(),
                r.ending,
                r.last_link(),
                r.end_offset(),
            )
        };
        let end = match ending {
            Some(ending) => {
                let repair = crate::log::repair::repair_tail(path, &file, ending)?;
                repair.offset + u64::from(repair.newline_restored)
            }
            None => end,
        };
        // What resume read may be only in the page cache (a writer poisoned by a failed
        // fsync leaves it so): make it durable before building on it.
        let mut syncs = 0;
        if fsync_enabled(options.fsync) {
            file.sync_all()
                .map_err(|e| Error::io(format!("fsync of {}", path.display()), e))?;
            crate::log::writer::sync_dir(path)?;
            syncs = 2;
        }
        file.seek(SeekFrom::Start(end))
            .map_err(|e| Error::io(format!("seeking {}", path.display()), e))?;
        let mut machine = rebuilt.machine;
        machine.use_prices(options.prices.as_ref())?;
        machine.set_policy(run_policy(&header, options.policy)?);
        let writer = LogWriter::append_to(file, path, &header, last_link, options.fsync, syncs)?;
        let mut run = Run {
            machine,
            sink: Sink::File(writer),
            header,
            path: Some(path.to_owned()),
            poisoned: None,
            watch: Watch::new(options.watch, options.observer.clone()),
            reexec: None,
        };
        if let (Some(w), Some(p)) = (run.watch.as_mut(), run.path.as_deref()) {
            w.resumed(&run.header, p);
        }
        // Check the approvals (and that a retry can reopen the run) before appending anything.
        let approvals = run.approvals(options.approvals)?;
        if retry {
            if let Err(e) = run.machine.reopen(REOPEN_REASON) {
                // Name the fork point a limit failure or a completed run needs.
                let at = way_out::last_fork_point(path, None)
                    .map(|seq| format!(" (the last step end is seq {seq})"))
                    .unwrap_or_default();
                return Err(Error::new(e.kind(), format!("{}{at}", e.message())));
            }
            run.machine.advance();
        }
        run.stage_events(rebuilt.tail)?;
        run.commit()?;
        if !approvals.is_empty() {
            run.complete_all(approvals)?;
        }
        Ok(run)
    }

    /// Reopen a failed or cancelled run from its log and continue it: [`Run::resume_with`],
    /// then `runReopened`, after which the nodes that failed the run (and the activations a
    /// cancel closed) are scheduled again with a fresh allowance of attempts; finished work
    /// is kept. Explicit cancellation is final for the driver that was running; a retry is
    /// the decision to go on anyway.
    ///
    /// Errors: as [`Run::resume_with`]; `INVALID_ARGUMENT` when the run is not failed or
    /// cancelled (resume it), completed (final: fork it), or failed on a limit (a retry
    /// would fail the same way: fork it with a changed workflow).
    pub fn retry(path: impl AsRef<Path>, options: ResumeOptions) -> Result<Run> {
        if !options.approvals.is_empty() {
            return Err(Error::invalid_argument(
                "a retried run takes no approvals: its human nodes ask again",
            ));
        }
        Run::reopen_log(path.as_ref(), options, true)
    }

    /// Match approvals (node id → output) to waiting human activations; every one must match.
    fn approvals(&self, approvals: BTreeMap<String, Value>) -> Result<Vec<(u64, Completion)>> {
        let waiting: Vec<Activation> = self
            .machine
            .outstanding()
            .into_iter()
            .filter(|a| a.kind == ActivationKind::Human)
            .collect();
        let mut resolved = Vec::with_capacity(approvals.len());
        for (node, output) in approvals {
            let Some(act) = waiting.iter().find(|a| *a.node == *node) else {
                return Err(self.not_waiting(&node, &waiting));
            };
            if crate::model::too_deep(&output) {
                return Err(self.invalid_output(
                    act.id,
                    &format!(
                        "approval nests arrays/objects deeper than {}",
                        crate::model::MAX_VALUE_DEPTH
                    ),
                ));
            }
            // A decision its node's output contract refuses is refused here, before anything
            // is appended (a person is not re-asked by a retry).
            let completion = Completion::ok(output);
            match self.machine.stage(act.id, completion.clone()) {
                Err(e) if e.kind() == ErrorKind::InvalidOutput => return Err(e),
                _ => {}
            }
            resolved.push((act.id, completion));
        }
        Ok(resolved)
    }

    /// Why an approval for `node` cannot be recorded now, and what to do instead.
    fn not_waiting(&self, node: &str, waiting: &[Activation]) -> Error {
        let names: Vec<&str> = waiting.iter().map(|a| &*a.node).collect();
        let waiting_text = if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        };
        let compiled = self.machine.workflow().compiled();
        let human = compiled
            .index
            .get(node)
            .map(|&i| compiled.nodes[i].kind == crate::model::workflow::NodeKind::Human);
        let finished = self.machine.outcome().status.is_finished();
        let reached = match human {
            Some(true) if finished => format!(
                ": the run is {}, so nothing waits for a person",
                self.machine.outcome().status.as_str()
            ),
            Some(true) if self.machine.node_resolved(node) == Some(true) => {
                ": it was already decided (or skipped) on its latest visit".to_owned()
            }
            Some(true) => {
                let running: Vec<String> = self
                    .machine
                    .outstanding()
                    .iter()
                    .filter(|a| a.kind != ActivationKind::Human)
                    .map(|a| a.node.to_string())
                    .collect();
                let at = if running.is_empty() {
                    String::new()
                } else {
                    format!(" (unfinished: {})", running.join(", "))
                };
                format!(
                    ": the run has not reached it yet{at}; resume the run without approvals, then approve it when it waits"
                )
            }
            None | Some(false) => String::new(),
        };
        Error::invalid_argument(format!(
            "node '{node}' has no pending human activation{reached} (waiting: {waiting_text})"
        ))
    }

    /// Resolve waiting human activations: `approvals` maps node id → the person's decision
    /// (recorded as the node's output). All are checked before any is recorded.
    ///
    /// Errors: `INVALID_ARGUMENT` (a node with no pending human activation),
    /// `INVALID_OUTPUT`, `IO`.
    pub fn resolve_humans(&mut self, approvals: BTreeMap<String, Value>) -> Result<()> {
        self.check_usable()?;
        let resolved = self.approvals(approvals)?;
        for r in self.complete_all(resolved)? {
            match r {
                Recorded::AsGiven => {}
                Recorded::AsFailure(e) | Recorded::Refused(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Fork a run at `seq` (a step end; see [`crate::state_at`]): a new run whose header links
    /// the parent, with the parent's events up to `seq` copied, the given node outputs replaced
    /// (recorded as `outputOverridden` events), continuing live from there.
    ///
    /// Errors: `INVALID_ARGUMENT` (seq not a step end, unknown node, node without output),
    /// `LOG_CORRUPT`, `RUN_EXISTS`, `IO`.
    pub fn fork(
        path: impl AsRef<Path>,
        seq: u64,
        overrides: BTreeMap<String, Value>,
        run_id: Option<String>,
        log_dir: Option<PathBuf>,
        fsync: FsyncMode,
    ) -> Result<Run> {
        Run::fork_with(
            path,
            ForkOptions {
                seq,
                overrides,
                run_id,
                log_dir,
                fsync,
                ..ForkOptions::default()
            },
        )
    }

    /// [`Run::fork`] with every option, among them a changed workflow: the parent's events
    /// up to `seq` must replay equal under it (the check [`crate::replay`] makes), and the
    /// fork records it, so a bug fixed in the workflow does not redo finished work.
    ///
    /// Errors: as [`Run::fork`]; `NONDETERMINISM` when the prefix does not replay equal
    /// under `options.workflow`.
    pub fn fork_with(path: impl AsRef<Path>, options: ForkOptions) -> Result<Run> {
        let ForkOptions {
            seq,
            overrides,
            run_id,
            log_dir,
            fsync,
            workflow,
            host,
            watch,
            observer,
            prices,
            policy,
        } = options;
        let path = path.as_ref();
        let parent = crate::log::read_header(path)?;
        let policy = run_policy(&parent, policy)?;
        if let (Some(p), Some(w)) = (&policy, &workflow) {
            check_tool_nodes(w, p)?;
        }
        let changed = workflow
            .as_ref()
            .filter(|w| w.hash() != parent.workflow.hash);
        let run_id = match run_id {
            Some(id) => id,
            None => {
                let mut h = blake3::Hasher::new();
                h.update(parent.run_id.as_bytes());
                h.update(&seq.to_le_bytes());
                let overrides = serde_json::to_string(&overrides).expect("JSON values serialize");
                h.update(overrides.as_bytes());
                if let Some(w) = changed {
                    h.update(&[0]);
                    h.update(w.hash().as_bytes());
                }
                format!("fork-{}", &h.finalize().to_hex()[..16])
            }
        };
        crate::log::validate_run_id(&run_id)?;
        if let Some((node, _)) = overrides.iter().find(|(_, v)| crate::model::too_deep(v)) {
            return Err(Error::invalid_argument(format!(
                "override of '{node}' nests arrays/objects deeper than {}",
                crate::model::MAX_VALUE_DEPTH
            )));
        }
        let rebuilt = replay::rebuild_file(path, changed, Stop::At(seq), Some(&run_id))?;
        let mut machine = rebuilt.machine;
        machine.use_prices(prices.as_ref())?;
        machine.set_policy(policy);
        if !machine.needs_advance() {
            return Err(Error::invalid_argument(format!(
                "seq {seq} is not a step end, so there is no consistent point to fork at; step ends near it: {}",
                replay::nearby(&rebuilt.fork_points, seq)
            )));
        }
        // Apply the overrides before creating the file, so a bad override leaves nothing behind.
        for (node, output) in overrides {
            machine.override_output(&node, output, None)?;
        }
        machine.advance();
        let mut first = rebuilt.prefix;
        // The fork runs under the changed workflow: its `runStarted` records it.
        if let Some(w) = changed {
            if let Some(EventData::RunStarted(started)) = first.first_mut().map(|e| &mut e.data) {
                started.workflow = w.shared_spec();
            }
        }
        let header = LogHeader {
            run_id: run_id.clone(),
            version: crate::model::header::LOG_VERSION,
            flags: machine.flags().as_slice().to_vec(),
            parent: Some(ParentRef {
                run_id: parent.run_id.clone(),
                seq,
            }),
            workflow: match changed {
                Some(w) => WorkflowRef {
                    name: w.name().to_owned(),
                    hash: w.hash().to_owned(),
                },
                None => parent.workflow.clone(),
            },
            meta: host.map(|host| HeaderMeta {
                at: 0,
                host: Some(host),
            }),
            ..parent
        };
        first.extend(machine.take_outbox());
        let mut watch = Watch::new(watch, observer);
        let watched = watch.is_some().then(|| first.clone());
        let (sink, path, at) = Sink::create(&header, first, log_dir.as_deref(), fsync)?;
        if let (Some(w), Some(events)) = (watch.as_mut(), watched) {
            w.stage(events, at, &MetaExtra::NONE);
        }
        let mut run = Run {
            machine,
            sink,
            header,
            path,
            poisoned: None,
            watch,
            reexec: None,
        };
        run.commit()?;
        Ok(run)
    }

    /// Keep committed events from now on for [`Run::take_committed`] (hosts that report
    /// events as they happen).
    pub fn watch(&mut self) {
        self.watch.get_or_insert_with(Watch::default).keep();
    }

    /// Events committed since the last call, in commit order, each as the log holds it
    /// (with `meta`); empty unless the run is watched ([`Run::watch`], `watch` options).
    pub fn take_committed(&mut self) -> Vec<Event> {
        self.watch.as_mut().map(Watch::take).unwrap_or_default()
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Write what the machine decided, then settle durability per the fsync mode. A failure
    /// poisons the run.
    fn commit(&mut self) -> Result<()> {
        let result = self.try_commit();
        if let Some(w) = self.watch.as_mut() {
            match result {
                Ok(()) => w.commit(&self.header),
                Err(_) => w.drop_staged(),
            }
        }
        if let Err(e) = &result {
            self.poisoned = Some(Error::new(
                e.kind(),
                format!(
                    "the run stopped when its log could not be written ({}); resume it from the log",
                    e.message()
                ),
            ));
        }
        result
    }

    /// Stage `events` in the sink, and for a watch: a file log only serializes them, so the
    /// watch takes them without a copy; a memory log keeps them, so the watch gets a copy.
    fn stage_events(&mut self, events: Vec<Event>) -> Result<()> {
        let extra = &MetaExtra::NONE;
        match (&mut self.sink, self.watch.as_mut()) {
            (Sink::File(writer), Some(w)) => {
                let at = writer.stage(&events, extra)?;
                w.stage(events, at, extra);
            }
            (sink, Some(w)) => {
                let copy = events.clone();
                let at = sink.stage(events, extra)?;
                w.stage(copy, at, extra);
            }
            (sink, None) => {
                sink.stage(events, extra)?;
            }
        }
        Ok(())
    }

    fn try_commit(&mut self) -> Result<()> {
        let events = self.machine.take_outbox();
        if !events.is_empty() {
            self.stage_events(events)?;
        }
        self.sink.write()?;
        self.sink
            .settle(self.machine.status() == RunStatus::Running)
    }

    /// Activations not yet handed out, in canonical order.
    ///
    /// Errors: the commit failure that poisoned the run.
    pub fn poll(&mut self) -> Result<Vec<Activation>> {
        self.check_usable()?;
        let acts = self.machine.poll();
        if self.reexec.is_some() {
            return self.reexec_poll(acts);
        }
        Ok(acts)
    }

    /// All activations still waiting for a completion.
    ///
    /// Errors: the commit failure that poisoned the run.
    pub fn outstanding(&self) -> Result<Vec<Activation>> {
        self.check_usable()?;
        Ok(self.machine.outstanding())
    }

    /// Report the result of activation `id`. The completion is committed to the log before the
    /// state changes; when it ends the step, the next step is decided and committed too.
    /// A [`Completion::timed_out`] is recorded with the one timeout failure every host writes.
    ///
    /// Errors: `INVALID_COMPLETION` (unknown, late or duplicate; nothing changes),
    /// `INVALID_OUTPUT` (too deep or too large for the log, naming the node; nothing
    /// changes), `IO` (the run is then poisoned).
    pub fn complete(&mut self, id: u64, completion: Completion) -> Result<()> {
        self.check_usable()?;
        self.stage_completion(id, completion)?;
        self.commit()
    }

    /// Stage one completion and apply it (not yet written).
    fn stage_completion(&mut self, id: u64, completion: Completion) -> Result<()> {
        if let Ok(output) = &completion.result {
            if crate::model::too_deep(output) {
                let message = format!(
                    "output nests arrays/objects deeper than {}",
                    crate::model::MAX_VALUE_DEPTH
                );
                return Err(self.invalid_output(id, &message));
            }
        }
        let staged = self.machine.stage(id, completion)?;
        self.record_staged(id, staged)
    }

    /// Record a completion the machine staged: checked against a re-executed log, staged in
    /// the sink (refused there when too large), applied, and the next step decided.
    fn record_staged(&mut self, id: u64, staged: crate::machine::Staged) -> Result<()> {
        self.reexec_check(staged.event())?;
        // Staged, not yet written: the completion and the decisions it triggers reach the
        // file in one write. A record over the size limit is refused here, naming the node.
        let extra = MetaExtra::dur(staged.dur_us());
        let at = self.sink.stage_ref(staged.event(), &extra).map_err(|e| {
            if e.kind() == ErrorKind::InvalidOutput {
                self.invalid_output(id, e.message())
            } else {
                e
            }
        })?;
        let event = self.machine.apply(staged);
        match (&self.sink, self.watch.as_mut()) {
            // A file log has written it: the watch takes the event itself.
            (Sink::File(_), Some(w)) => w.stage([event], at, &extra),
            (_, Some(w)) => {
                w.stage([event.clone()], at, &extra);
                self.sink.keep(event, at, &extra);
            }
            (_, None) => self.sink.keep(event, at, &extra),
        }
        if self.machine.needs_advance() {
            self.machine.advance();
        }
        Ok(())
    }

    /// Report several results in one commit: one write, and in `always` mode one fsync for
    /// all of them (group commit). Each gets a [`Recorded`]: an output the log cannot hold is
    /// recorded as a permanent `InvalidOutput` failure (the rule every driver follows), a
    /// refused completion records nothing; the others are recorded as given.
    ///
    /// Errors: `IO` (nothing of the batch is durable; the run is poisoned).
    pub fn complete_all(&mut self, items: Vec<(u64, Completion)>) -> Result<Vec<Recorded>> {
        self.check_usable()?;
        let mut out = Vec::with_capacity(items.len());
        for (id, completion) in items {
            let duration_us = completion.duration_us;
            let usage = completion.usage.clone();
            let r = match self.stage_completion(id, completion) {
                Ok(()) => Recorded::AsGiven,
                Err(e) if e.kind() == ErrorKind::InvalidOutput => {
                    let mut failure = Completion::invalid_output(&e);
                    failure.usage = usage;
                    failure.duration_us = duration_us;
                    match self.stage_completion(id, failure) {
                        Ok(()) => Recorded::AsFailure(e),
                        Err(e) if e.kind() == ErrorKind::Io => return self.fail_batch(e),
                        Err(e) => Recorded::Refused(e),
                    }
                }
                Err(e) if e.kind() == ErrorKind::InvalidCompletion => Recorded::Refused(e),
                Err(e) => return self.fail_batch(e),
            };
            out.push(r);
        }
        self.commit()?;
        Ok(out)
    }

    fn fail_batch(&mut self, e: Error) -> Result<Vec<Recorded>> {
        // Some completions of the batch were applied but not written: the run cannot go on.
        self.sink.unstage();
        if let Some(w) = self.watch.as_mut() {
            w.drop_staged();
        }
        self.poisoned = Some(e.clone());
        Err(e)
    }

    /// `INVALID_OUTPUT` for activation `id`, naming its node (while it is outstanding): the
    /// error a host gives when an agent's result cannot become a completion (bindings that
    /// convert values before calling [`Run::complete`] use it, so every host reports alike).
    pub fn invalid_output(&self, id: u64, message: &str) -> Error {
        match self.machine.activation_by_id(id) {
            Some(act) => Error::invalid_output(&act.node, message),
            None => Error::new(ErrorKind::InvalidOutput, message),
        }
    }

    /// Cancel the run: outstanding activations are recorded as cancelled, then `runCancelled`.
    /// Returns `false` if the run had already finished.
    ///
    /// Errors: `IO`, or the commit failure that poisoned the run.
    pub fn cancel(&mut self, reason: &str) -> Result<bool> {
        self.check_usable()?;
        let cancelled = self.machine.cancel(reason);
        self.commit()?;
        Ok(cancelled)
    }

    /// Current status.
    ///
    /// Errors: the commit failure that poisoned the run.
    pub fn status(&self) -> Result<RunStatus> {
        self.check_usable()?;
        Ok(self.machine.status())
    }

    /// Whether the run completed, failed or was cancelled.
    ///
    /// Errors: the commit failure that poisoned the run.
    pub fn is_finished(&self) -> Result<bool> {
        Ok(self.status()?.is_finished())
    }

    /// Status, output and error.
    ///
    /// Errors: the commit failure that poisoned the run.
    pub fn outcome(&self) -> Result<Outcome> {
        self.check_usable()?;
        Ok(self.machine.outcome())
    }

    /// Run id.
    pub fn run_id(&self) -> &str {
        &self.header.run_id
    }

    /// The run input. An activation's `input` is this one (the same `Arc`), except for a
    /// sub-workflow's nodes, which see their workflow node's `input`.
    pub fn input(&self) -> &Arc<Value> {
        self.machine.input()
    }

    /// The log header.
    pub fn header(&self) -> &LogHeader {
        &self.header
    }

    /// The workflow being run.
    pub fn workflow(&self) -> &Workflow {
        self.machine.workflow()
    }

    /// Path of the file log, if the run has one.
    pub fn log_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// fsyncs this run's log writer made so far (file and directory; 0 in memory): what
    /// durability cost, for benchmarks and for checking group commit.
    pub fn fsync_count(&self) -> u64 {
        match &self.sink {
            Sink::File(w) => w.syncs(),
            Sink::Memory(_) => 0,
        }
    }

    /// Events of an in-memory run, in commit order.
    pub fn events(&self) -> Option<&[Event]> {
        match &self.sink {
            Sink::Memory(v) => Some(v),
            Sink::File(_) => None,
        }
    }

    /// What the run spent so far (see [`crate::UsageReport`]), from its log.
    ///
    /// Errors: `IO`, `LOG_CORRUPT`.
    pub fn usage(&self) -> Result<crate::UsageReport> {
        match &self.sink {
            Sink::File(w) => crate::usage_report(w.path()),
            Sink::Memory(events) => {
                crate::UsageReport::of_events(&self.header, events.iter().map(|e| Ok(e.clone())))
            }
        }
    }

    /// The canonical log (see [`crate::canonical_log`]).
    ///
    /// Errors: `IO`, `LOG_CORRUPT`.
    pub fn canonical(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_canonical(&mut out)?;
        Ok(out)
    }

    /// blake3 (hex) of the canonical log.
    ///
    /// Errors: `IO`, `LOG_CORRUPT`.
    pub fn fingerprint(&self) -> Result<String> {
        let mut h = crate::log::read::HashWriter(blake3::Hasher::new());
        self.write_canonical(&mut h)?;
        Ok(h.0.finalize().to_hex().to_string())
    }

    fn write_canonical(&self, out: &mut dyn std::io::Write) -> Result<()> {
        match &self.sink {
            Sink::File(w) => crate::log::canonical_log(w.path(), out).map(|_| ()),
            Sink::Memory(events) => sink::write_memory_canonical(&self.header, events, out),
        }
    }

    /// Close the run and keep only its log (the file path, or the in-memory events), for
    /// computing the canonical form later. Closing a file log releases its lock.
    pub(crate) fn into_log(self) -> RunLog {
        match self.sink {
            Sink::File(w) => RunLog::File(w.path().to_owned()),
            Sink::Memory(events) => RunLog::Memory(Arc::new((self.header, events))),
        }
    }
}

/// The policy a run recorded in `header` goes on under: `given` must be it (same hash), and
/// a run started without a policy takes none.
///
/// Errors: `INVALID_ARGUMENT` naming both policies and the way to test a new one.
pub(crate) fn run_policy(header: &LogHeader, given: Option<Policy>) -> Result<Option<Policy>> {
    match (&header.policy, given) {
        (None, None) => Ok(None),
        (Some(r), Some(p)) if r.hash == p.hash() => Ok(Some(p)),
        (Some(r), None) => Err(Error::invalid_argument(format!(
            "run '{}' was started under policy '{}' ({}): pass that policy to go on with it",
            header.run_id, r.name, r.hash
        ))),
        (Some(r), Some(p)) => Err(Error::invalid_argument(format!(
            "run '{}' was started under policy '{}' ({}), not '{}' ({}): a run goes on only under its own policy; test the new one against the log with `agentmesh policy check`",
            header.run_id,
            r.name,
            r.hash,
            p.name(),
            p.hash()
        ))),
        (None, Some(p)) => Err(Error::invalid_argument(format!(
            "run '{}' was started without a policy, so it cannot go on under '{}' ({}): fork or start a new run under it, or test it against the log with `agentmesh policy check`",
            header.run_id,
            p.name(),
            p.hash()
        ))),
    }
}

/// A policy denies tool nodes whose tool its `tools.workflow` does not list: checked before
/// a run starts, so nothing of it is recorded.
///
/// Errors: `POLICY_DENIED` naming the node and the tool.
fn check_tool_nodes(workflow: &Workflow, policy: &Policy) -> Result<()> {
    let compiled = workflow.compiled();
    for node in &compiled.nodes {
        if node.is_tool() && !policy.allowlist().allows_node(&node.name) {
            let verdict = Verdict {
                rule: crate::model::verdict::TOOLS_RULE.into(),
                action: crate::model::verdict::Action::Block,
                kind: "tool".into(),
                path: None,
                count: 1,
                digest: None,
                agent: None,
            };
            return Err(Error::new(
                ErrorKind::PolicyDenied,
                format!(
                    "policy '{}': node '{}' runs tool '{}', which the policy's tools.workflow does not list",
                    policy.name(),
                    node.id,
                    node.name
                ),
            )
            .with_detail(crate::error::ErrorDetail::Verdict(verdict)));
        }
    }
    Ok(())
}

fn fsync_enabled(mode: FsyncMode) -> bool {
    match mode {
        FsyncMode::Always | FsyncMode::Batch => true,
        FsyncMode::Never => false,
    }
}
