//! Where a run's events go: a file log, or memory. Both apply the same size rule, so a run
//! has the same outcome and fingerprint wherever its log lives.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::read::HashWriter;
use crate::log::writer::{now_ms, LogWriter};
use crate::log::FsyncMode;
use crate::model::event::{Encoded, Event};
use crate::model::header::{CanonicalHeader, LogHeader, MetaExtra};

#[derive(Debug)]
pub(crate) enum Sink {
    Memory(Vec<Event>),
    File(LogWriter),
}

impl Sink {
    /// A new log: the header and the run's first events, in memory or as a file created
    /// atomically in `log_dir`. Returns the sink, the file's path and the `meta.at` of the
    /// first events.
    ///
    /// Errors: `RUN_EXISTS`, `INVALID_OUTPUT` (an event too large), `IO`.
    pub(crate) fn create(
        header: &LogHeader,
        events: Vec<Event>,
        log_dir: Option<&Path>,
        fsync: FsyncMode,
    ) -> Result<(Sink, Option<PathBuf>, u64)> {
        match log_dir {
            Some(dir) => {
                let path = crate::log::log_path(dir, &header.run_id)?;
                let (w, at) = LogWriter::create(&path, header, &events, fsync)?;
                Ok((Sink::File(w), Some(path), at))
            }
            None => {
                let mut sink = Sink::Memory(Vec::new());
                let at = sink.stage(events, &MetaExtra::NONE)?;
                Ok((sink, None, at))
            }
        }
    }

    /// Stage events for the next [`Sink::write`] (memory logs keep them at once). `extra`
    /// is what the records' meta carries besides `at` (a completion's duration, a call's
    /// provider facts). Nothing is staged when an
    /// event is too large. Returns the `meta.at` the events carry.
    ///
    /// Errors: `INVALID_OUTPUT` (an event too large), `IO` (writer poisoned).
    pub(crate) fn stage(&mut self, events: Vec<Event>, extra: &MetaExtra) -> Result<u64> {
        match self {
            Sink::File(w) => w.stage(&events, extra),
            Sink::Memory(log) => {
                for e in &events {
                    e.check_size_bounded()?;
                }
                let at = now_ms();
                log.extend(events.into_iter().map(|mut e| {
                    e.meta = Some(extra.at(at));
                    e
                }));
                Ok(at)
            }
        }
    }

    /// Stage one event the caller keeps (a completion about to be applied): a file log
    /// serializes it now; a memory log only checks its size, and takes the event with
    /// [`Sink::keep`] once applied. Returns the `meta.at` the event carries.
    ///
    /// Errors: as [`Sink::stage`].
    pub(crate) fn stage_ref(&mut self, event: &Event, extra: &MetaExtra) -> Result<u64> {
        match self {
            Sink::File(w) => w.stage(std::slice::from_ref(event), extra),
            Sink::Memory(_) => event.check_size_bounded().map(|()| now_ms()),
        }
    }

    /// The event staged with [`Sink::stage_ref`] at `at`, now applied (memory logs keep it).
    pub(crate) fn keep(&mut self, mut event: Event, at: u64, extra: &MetaExtra) {
        if let Sink::Memory(log) = self {
            event.meta = Some(extra.at(at));
            log.push(event);
        }
    }

    /// Drop what was staged and not written (memory logs: nothing to drop, see `stage`).
    pub(crate) fn unstage(&mut self) {
        if let Sink::File(w) = self {
            w.unstage();
        }
    }

    /// Write what was staged.
    ///
    /// Errors: `IO`.
    pub(crate) fn write(&mut self) -> Result<()> {
        match self {
            Sink::File(w) => w.write_staged(),
            Sink::Memory(_) => Ok(()),
        }
    }

    /// After a commit: a step boundary (batch group commit) while the run goes on, an fsync
    /// when it finished or waits.
    ///
    /// Errors: `IO`.
    pub(crate) fn settle(&mut self, running: bool) -> Result<()> {
        match self {
            Sink::File(w) if running => w.boundary(),
            Sink::File(w) => w.flush(),
            Sink::Memory(_) => Ok(()),
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
    pub(crate) fn write_canonical(&self, out: &mut dyn Write) -> Result<()> {
        match self {
            RunLog::File(p) => crate::log::canonical_log(p, out).map(|_| ()),
            RunLog::Memory(m) => write_memory_canonical(&m.0, &m.1, out),
        }
    }

    pub(crate) fn usage(&self) -> Result<crate::UsageReport> {
        match self {
            RunLog::File(p) => crate::usage_report(p),
            RunLog::Memory(m) => {
                crate::UsageReport::of_events(&m.0, m.1.iter().map(|e| Ok(e.clone())))
            }
        }
    }

    pub(crate) fn fingerprint(&self) -> Result<String> {
        let mut h = HashWriter(blake3::Hasher::new());
        self.write_canonical(&mut h)?;
        Ok(h.0.finalize().to_hex().to_string())
    }
}

/// The canonical log of events kept in memory (the same bytes a file log gives).
pub(crate) fn write_memory_canonical(
    header: &LogHeader,
    events: &[Event],
    out: &mut dyn Write,
) -> Result<()> {
    let io = |e| Error::io("writing canonical log", e);
    let mut buf = Vec::with_capacity(4096);
    serde_json::to_writer(&mut buf, &CanonicalHeader(header))
        .map_err(|e| Error::internal(e.to_string()))?;
    buf.push(b'\n');
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_by_key(|e| e.canonical_key());
    for e in sorted {
        Encoded::canonical(e).write_to(&mut buf);
        buf.push(b'\n');
        if buf.len() >= 64 * 1024 {
            out.write_all(&buf).map_err(io)?;
            buf.clear();
        }
    }
    out.write_all(&buf).map_err(io)
}
