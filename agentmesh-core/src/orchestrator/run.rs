//! A run: the state machine plus where its events go (a file log or memory).
//!
//! This is the API every host driver (Rust, Python, Node) is written against:
//! `start` → loop { `poll` → execute → `complete` } → `outcome`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::machine::Machine;
use crate::error::{Error, ErrorDetail, ErrorKind, Result};
use crate::log::reader::HashWriter;
use crate::log::{self, FsyncMode, LogWriter};
use crate::model::activation::{Activation, Completion, Outcome, RunStatus};
use crate::model::event::{
    Canonical, Event, LogHeader, Meta, ParentRef, WorkflowRef, CORE_FLAGS, LOG_FORMAT, LOG_VERSION,
};
use crate::model::workflow::Workflow;
use crate::replay::{self, Stop};

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
}

#[derive(Debug)]
enum Sink {
    Memory(Vec<Event>),
    File(LogWriter),
}

impl Sink {
    /// Stage events for the next [`Sink::write`] (memory logs keep them at once).
    fn stage(&mut self, events: Vec<Event>) -> Result<()> {
        match self {
            Sink::File(w) => w.stage(&events),
            Sink::Memory(log) => {
                let at = log::writer::now_ms();
                log.extend(events.into_iter().map(|mut e| {
                    e.meta = Some(Meta {
                        at,
                        dur_us: e.meta.and_then(|m| m.dur_us),
                    });
                    e
                }));
                Ok(())
            }
        }
    }

    fn write(&mut self) -> Result<()> {
        match self {
            Sink::File(w) => w.write_staged(),
            Sink::Memory(_) => Ok(()),
        }
    }

    fn append(&mut self, events: Vec<Event>) -> Result<()> {
        self.stage(events)?;
        self.write()
    }
}

/// One run of a workflow. Single writer: all calls come from one thread at a time.
#[derive(Debug)]
pub struct Run {
    machine: Machine,
    sink: Sink,
    header: LogHeader,
    path: Option<PathBuf>,
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

impl Run {
    /// Start a run: writes the header and `runStarted`, and decides the first step.
    ///
    /// Errors: `INVALID_ARGUMENT` (run id, tenant), `RUN_EXISTS`, `IO`.
    pub fn start(workflow: &Workflow, options: RunOptions) -> Result<Run> {
        let run_id = match options.run_id {
            Some(id) => id,
            None => derive_run_id(workflow, &options.input, options.seed),
        };
        log::validate_run_id(&run_id)?;
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
        let header = LogHeader {
            format: LOG_FORMAT.to_owned(),
            version: LOG_VERSION,
            flags: CORE_FLAGS.to_vec(),
            run_id: run_id.clone(),
            workflow: WorkflowRef {
                name: workflow.name().to_owned(),
                hash: workflow.hash().to_owned(),
            },
            seed: options.seed,
            tenant: options.tenant,
            parent: None,
            meta: None,
        };
        let (sink, path) = open_sink(&header, options.log_dir.as_deref(), options.fsync)?;
        let mut machine = Machine::new(
            workflow.clone(),
            &run_id,
            Arc::new(options.input),
            options.seed,
        );
        machine.start();
        machine.advance();
        let mut run = Run {
            machine,
            sink,
            header,
            path,
        };
        if let Err(e) = run.commit() {
            // Nothing but the header reached the file: remove it so the run id stays usable.
            if let Some(p) = &run.path {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        Ok(run)
    }

    /// Reopen a run from its log (after a crash, or to resolve a human wait): verify and repair
    /// the log, rebuild the state without calling any agent, append decisions the crash lost.
    /// [`Run::poll`] then returns only unfinished work.
    ///
    /// Errors: `LOG_CORRUPT`, `NONDETERMINISM` (the log disagrees with its own workflow), `IO`.
    pub fn resume(path: impl AsRef<Path>, fsync: FsyncMode) -> Result<Run> {
        let path = path.as_ref();
        let (writer, recovery) = LogWriter::open_append(path, fsync)?;
        let header = recovery.header.ok_or_else(|| {
            Error::corrupt(0, format!("{}: empty log (no header)", path.display()))
        })?;
        let rebuilt = replay::rebuild(path, None, Stop::End, None)?;
        let mut run = Run {
            machine: rebuilt.machine,
            sink: Sink::File(writer),
            header,
            path: Some(path.to_owned()),
        };
        run.sink.append(rebuilt.tail)?;
        run.commit()?;
        Ok(run)
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
        let path = path.as_ref();
        let (parent, _) = replay::read_header(path)?;
        let run_id = match run_id {
            Some(id) => id,
            None => {
                let mut h = blake3::Hasher::new();
                h.update(parent.run_id.as_bytes());
                h.update(&seq.to_le_bytes());
                h.update(
                    serde_json::to_string(&overrides)
                        .unwrap_or_default()
                        .as_bytes(),
                );
                format!("fork-{}", &h.finalize().to_hex()[..16])
            }
        };
        log::validate_run_id(&run_id)?;
        if let Some((node, _)) = overrides.iter().find(|(_, v)| crate::model::too_deep(v)) {
            return Err(Error::invalid_argument(format!(
                "override of '{node}' nests arrays/objects deeper than {}",
                crate::model::MAX_VALUE_DEPTH
            )));
        }
        let rebuilt = replay::rebuild(path, None, Stop::At(seq), Some(&run_id))?;
        let mut machine = rebuilt.machine;
        if !machine.needs_advance() {
            return Err(Error::invalid_argument(format!(
                "seq {seq} is not a step end, so there is no consistent point to fork at; step ends near it: {}",
                replay::nearby(&rebuilt.fork_points, seq)
            )));
        }
        // Apply the overrides before creating the file, so a bad override leaves nothing behind.
        for (node, output) in overrides {
            machine.override_output(&node, output)?;
        }
        machine.advance();
        let header = LogHeader {
            run_id: run_id.clone(),
            parent: Some(ParentRef {
                run_id: parent.run_id.clone(),
                seq,
            }),
            meta: None,
            ..parent
        };
        let (mut sink, path) = open_sink(&header, log_dir.as_deref(), fsync)?;
        sink.append(rebuilt.prefix)?;
        let mut run = Run {
            machine,
            sink,
            header,
            path,
        };
        run.commit()?;
        Ok(run)
    }

    fn commit(&mut self) -> Result<()> {
        let events = self.machine.take_outbox();
        if !events.is_empty() {
            self.sink.stage(events)?;
        }
        self.sink.write()?;
        if let Sink::File(w) = &mut self.sink {
            if self.machine.status() == RunStatus::Running {
                w.boundary()?;
            } else {
                w.flush()?;
            }
        }
        Ok(())
    }

    /// Activations not yet handed out, in canonical order.
    pub fn poll(&mut self) -> Vec<Activation> {
        self.machine.poll()
    }

    /// All activations still waiting for a completion.
    pub fn outstanding(&self) -> Vec<Activation> {
        self.machine.outstanding()
    }

    /// Report the result of activation `id`. The completion is committed to the log before the
    /// state changes; when it ends the step, the next step is decided and committed too.
    ///
    /// Errors: `INVALID_COMPLETION` (unknown, late or duplicate; nothing changes),
    /// `INVALID_OUTPUT` (record too large; nothing changes), `IO` (writer poisoned).
    pub fn complete(&mut self, id: u64, completion: Completion) -> Result<()> {
        if let Ok((output, _)) = &completion.result {
            if crate::model::too_deep(output) {
                let message = format!(
                    "output nests arrays/objects deeper than {}",
                    crate::model::MAX_VALUE_DEPTH
                );
                return Err(self.invalid_output(id, &message));
            }
        }
        let event = self.machine.completion_event(id, completion)?;
        // Staged, not yet written: the completion and the decisions it triggers reach the
        // file in one write before this call returns. A record over the size limit is refused
        // here by the log, which knows no nodes: name the node for every host.
        self.sink.stage(vec![event.clone()]).map_err(|e| {
            if e.kind() == ErrorKind::InvalidOutput && e.detail().is_none() {
                self.invalid_output(id, e.message())
            } else {
                e
            }
        })?;
        self.machine.apply_completion(&event)?;
        if self.machine.needs_advance() {
            self.machine.advance();
        }
        self.commit()
    }

    /// `INVALID_OUTPUT` for activation `id`, naming its node (while it is outstanding): the
    /// error a host gives when an agent's result cannot become a completion (bindings that
    /// convert values before calling [`Run::complete`] use it, so every host reports alike).
    pub fn invalid_output(&self, id: u64, message: &str) -> Error {
        match self.machine.outstanding().into_iter().find(|a| a.id == id) {
            Some(act) => Error::new(
                ErrorKind::InvalidOutput,
                format!("node '{}': {message}", act.node),
            )
            .with_detail(ErrorDetail::Node {
                node: act.node.to_string(),
            }),
            None => Error::new(ErrorKind::InvalidOutput, message),
        }
    }

    /// Cancel the run: outstanding activations are recorded as cancelled, then `runCancelled`.
    /// Returns `false` if the run had already finished.
    ///
    /// Errors: `IO`.
    pub fn cancel(&mut self, reason: &str) -> Result<bool> {
        let cancelled = self.machine.cancel(reason);
        self.commit()?;
        Ok(cancelled)
    }

    /// Current status.
    pub fn status(&self) -> RunStatus {
        self.machine.status()
    }

    /// Whether the run completed, failed or was cancelled.
    pub fn is_finished(&self) -> bool {
        self.status().is_finished()
    }

    /// Status, output and error.
    pub fn outcome(&self) -> Outcome {
        self.machine.outcome()
    }

    /// Run id.
    pub fn run_id(&self) -> &str {
        &self.header.run_id
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

    /// Events of an in-memory run, in commit order.
    pub fn events(&self) -> Option<&[Event]> {
        match &self.sink {
            Sink::Memory(v) => Some(v),
            Sink::File(_) => None,
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

    fn write_canonical(&self, out: &mut dyn std::io::Write) -> Result<()> {
        match &self.sink {
            Sink::File(w) => log::canonical_log(w.path(), out).map(|_| ()),
            Sink::Memory(events) => write_memory_canonical(&self.header, events, out),
        }
    }

    /// blake3 (hex) of the canonical log.
    ///
    /// Errors: `IO`, `LOG_CORRUPT`.
    pub fn fingerprint(&self) -> Result<String> {
        let mut h = HashWriter(blake3::Hasher::new());
        self.write_canonical(&mut h)?;
        Ok(h.0.finalize().to_hex().to_string())
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

/// The log of a run that is no longer driven: its file, or its events kept in memory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RunLog {
    File(PathBuf),
    Memory(Arc<(LogHeader, Vec<Event>)>),
}

impl RunLog {
    pub(crate) fn write_canonical(&self, out: &mut dyn std::io::Write) -> Result<()> {
        match self {
            RunLog::File(p) => log::canonical_log(p, out).map(|_| ()),
            RunLog::Memory(m) => write_memory_canonical(&m.0, &m.1, out),
        }
    }
}

fn write_memory_canonical(
    header: &LogHeader,
    events: &[Event],
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let io = |e| Error::io("writing canonical log", e);
    let mut buf = Vec::with_capacity(4096);
    serde_json::to_writer(&mut buf, header).map_err(|e| Error::internal(e.to_string()))?;
    buf.push(b'\n');
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    for e in sorted {
        serde_json::to_writer(&mut buf, &Canonical(e))
            .map_err(|e| Error::internal(e.to_string()))?;
        buf.push(b'\n');
        if buf.len() >= 64 * 1024 {
            out.write_all(&buf).map_err(io)?;
            buf.clear();
        }
    }
    out.write_all(&buf).map_err(io)
}

fn open_sink(
    header: &LogHeader,
    log_dir: Option<&Path>,
    fsync: FsyncMode,
) -> Result<(Sink, Option<PathBuf>)> {
    Ok(match log_dir {
        Some(dir) => {
            let path = log::log_path(dir, &header.run_id)?;
            (
                Sink::File(LogWriter::create(&path, header, fsync)?),
                Some(path),
            )
        }
        None => (Sink::Memory(Vec::new()), None),
    })
}
