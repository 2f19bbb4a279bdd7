//! Read-only functions over a log file: check, canonical form, fingerprint, header, events.
//! None of them writes: they work on a read-only file system and while the log's writer is
//! running (a final record still being written is reported as torn and ignored).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::reader::{Ending, InOrder, LogReader, LogScan, RecordRef};
use crate::error::{Error, Result};
use crate::model::event::{Decoder, Event};
use crate::model::header::{CanonicalHeader, LogHeader};

/// A damaged tail cut off or mended by [`crate::verify_log`] or a resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repair {
    /// Offset of the first byte that was changed (the new end of the last record).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// Where the cut bytes were copied first (none when nothing was cut).
    pub broken_path: Option<PathBuf>,
    /// The last record was complete but its newline missing or damaged: it was kept and
    /// its newline written.
    pub newline_restored: bool,
}

/// What verifying a log found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Run id from the header.
    pub run_id: String,
    /// Workflow name from the header.
    pub workflow: String,
    /// File format version.
    pub version: u32,
    /// Number of events.
    pub events: u64,
    /// Highest seq.
    pub last_seq: u64,
    /// Reserved seqs below `last_seq` not yet written: completions of activations still
    /// outstanding.
    pub holes: Vec<u64>,
    /// Type of the final event when the run has finished (`runCompleted`, ...).
    pub finished: Option<String>,
    /// Bytes of the verified records (after a repair: the file size).
    pub bytes: u64,
    /// Offset of a damaged tail left as it is ([`check_log`] never writes): an incomplete
    /// final record, or a complete one without its newline.
    pub torn_at: Option<u64>,
    /// The repair made ([`crate::verify_log`] only).
    pub repaired: Option<Repair>,
}

impl VerifyReport {
    pub(crate) fn of_scan<R: Read>(scan: &LogScan<R>) -> VerifyReport {
        let h = &scan.reader.header;
        let (bytes, torn_at) = match scan.reader.ending {
            None => (scan.reader.end_offset(), None),
            Some(Ending::Torn(at)) => (at, Some(at)),
            Some(Ending::NoNewline(at, _)) => (at, Some(at)),
        };
        VerifyReport {
            run_id: h.run_id.clone(),
            workflow: h.workflow.name.clone(),
            version: h.version,
            events: scan.shape.events(),
            last_seq: scan.shape.last_seq(),
            holes: scan.shape.holes(),
            finished: scan.shape.finished().map(|k| k.name().to_owned()),
            bytes,
            torn_at,
            repaired: None,
        }
    }
}

/// Verify a log without changing it: hash chain, header, the envelope and structure of every
/// record. A damaged tail is reported (`torn_at`), not repaired; [`crate::verify_log`]
/// repairs it.
///
/// Errors: `LOG_CORRUPT` with the byte offset of the first damaged record (also for an empty
/// file, a file without a complete header, and a log without a complete event); `IO`.
pub fn check_log(path: impl AsRef<Path>) -> Result<VerifyReport> {
    let mut scan = LogScan::open(path.as_ref())?;
    scan.skip_to_end()?;
    Ok(VerifyReport::of_scan(&scan))
}

/// Write the canonical log of `path` to `out`: the header, then the events sorted by seq,
/// each without `meta` and chain fields, one per line. Read-only: a torn final line is
/// ignored, not repaired. Returns the number of events.
///
/// Errors: `LOG_CORRUPT`, `IO`.
pub fn canonical_log(path: impl AsRef<Path>, out: &mut dyn Write) -> Result<u64> {
    let mut scan = LogScan::open(path.as_ref())?;
    let io = |e| Error::io("writing canonical log", e);
    let mut buf = Vec::with_capacity(64 * 1024);
    serde_json::to_writer(&mut buf, &CanonicalHeader(scan.header()))
        .map_err(|e| Error::internal(e.to_string()))?;
    buf.push(b'\n');
    let ids = scan.ids().to_vec();
    let mut write = |rec: RecordRef<'_>| -> Result<()> {
        rec.canonical_into(&ids, &mut buf)?;
        if buf.len() >= 60 * 1024 {
            out.write_all(&buf).map_err(io)?;
            buf.clear();
        }
        Ok(())
    };
    let mut order = InOrder::new();
    while let Some(rec) = scan.next()? {
        order.push(rec, &mut write)?;
    }
    order.finish(&mut write)?;
    scan.require_events()?;
    out.write_all(&buf).map_err(io)?;
    Ok(scan.shape.events())
}

/// blake3 (hex) of the canonical log: equal for equal runs, whichever host wrote them and
/// whichever file format holds them.
///
/// Errors: `LOG_CORRUPT`, `IO`.
pub fn fingerprint(path: impl AsRef<Path>) -> Result<String> {
    let mut hasher = HashWriter(blake3::Hasher::new());
    canonical_log(path, &mut hasher)?;
    Ok(hasher.0.finalize().to_hex().to_string())
}

/// `io::Write` into a blake3 hasher: fingerprints are hashes of canonical bytes.
pub(crate) struct HashWriter(pub blake3::Hasher);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Read a log's header only (its first line, hash-checked). Read-only; cheap for any log size.
///
/// Errors: `LOG_CORRUPT` (not a log, damaged header, unsupported version or flag), `IO`.
pub fn read_header(path: impl AsRef<Path>) -> Result<LogHeader> {
    Ok(LogReader::open(path.as_ref())?.header)
}

/// Read a log's header and its events in canonical (seq) order. Read-only. Loads every
/// event; [`read_events`] streams them.
///
/// Errors: `LOG_CORRUPT`, `IO`.
pub fn read_log(path: impl AsRef<Path>) -> Result<(LogHeader, Vec<Event>)> {
    let mut events = read_events(path)?;
    let mut all = Vec::new();
    for e in events.by_ref() {
        all.push(e?);
    }
    Ok((events.header().clone(), all))
}

/// Stream a log's events in canonical (seq) order: memory stays flat however long the log.
/// Read-only.
///
/// Errors: `LOG_CORRUPT`, `IO` (opening; later errors come from the iterator).
pub fn read_events(path: impl AsRef<Path>) -> Result<LogEvents> {
    let scan = LogScan::open(path.as_ref())?;
    let decoder = scan.decoder();
    Ok(LogEvents {
        scan,
        order: Some(InOrder::new()),
        decoder,
        ready: VecDeque::new(),
        scratch: Vec::new(),
        failed: false,
    })
}

/// The events of a log in canonical order (see [`read_events`]).
pub struct LogEvents {
    scan: LogScan<File>,
    order: Option<InOrder>,
    decoder: Decoder,
    ready: VecDeque<Event>,
    scratch: Vec<u8>,
    failed: bool,
}

impl std::fmt::Debug for LogEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogEvents")
            .field("run_id", &self.scan.header().run_id)
            .finish_non_exhaustive()
    }
}

impl LogEvents {
    /// The log's header.
    pub fn header(&self) -> &LogHeader {
        self.scan.header()
    }

    fn fill(&mut self) -> Result<()> {
        while self.ready.is_empty() {
            let Some(order) = self.order.as_mut() else {
                return Ok(());
            };
            let (decoder, scratch, ready) = (&mut self.decoder, &mut self.scratch, &mut self.ready);
            let mut parse = |rec: RecordRef<'_>| -> Result<()> {
                ready.push_back(rec.parse(decoder, scratch)?);
                Ok(())
            };
            match self.scan.next()? {
                Some(rec) => order.push(rec, &mut parse)?,
                None => {
                    let order = self.order.take().expect("present");
                    order.finish(&mut parse)?;
                    self.scan.require_events()?;
                }
            }
        }
        Ok(())
    }
}

impl Iterator for LogEvents {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        if self.failed {
            return None;
        }
        if self.ready.is_empty() {
            if let Err(e) = self.fill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        self.ready.pop_front().map(Ok)
    }
}
