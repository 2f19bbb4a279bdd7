//! Streaming log reader, verification with torn-tail repair, and the canonical log.
//!
//! Nothing here loads a whole log into memory: records are checked line by line, and the only
//! buffer is the reorder window of one superstep's out-of-order completions.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::chain::{self, Digest, MAX_RECORD_BYTES};
use crate::error::{Error, Result};
use crate::model::event::{Event, Interner, LogHeader, LOG_FORMAT, LOG_VERSION};

/// A torn tail cut off a log (its bytes were first copied to `broken_path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repair {
    /// Offset where the torn record began (the new file length).
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// Where they were copied.
    pub broken_path: PathBuf,
}

/// What opening a log for writing found.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The header (absent when the file was empty or only held a torn header).
    pub header: Option<LogHeader>,
    /// Hash of the last valid record.
    pub(crate) last_hash: Digest,
    /// Events in the file.
    pub events: u64,
    /// The repair made, if any.
    pub repaired: Option<Repair>,
}

/// Result of [`verify_log`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Run id from the header (`None` for an empty log).
    pub run_id: Option<String>,
    /// Workflow name from the header.
    pub workflow: Option<String>,
    /// Number of events.
    pub events: u64,
    /// Highest seq.
    pub last_seq: u64,
    /// Seqs below `last_seq` not yet written: completions of activations still outstanding.
    pub holes: Vec<u64>,
    /// Type of the final event when the run has finished (`runCompleted`, ...).
    pub finished: Option<String>,
    /// File size after any repair.
    pub bytes: u64,
    /// The torn-tail repair made, if any.
    pub repaired: Option<Repair>,
}

/// One verified physical line.
pub(crate) struct Line<'a> {
    pub offset: u64,
    /// The record without its chain fields and closing brace.
    pub head: &'a [u8],
}

/// Reads and verifies records in file order.
pub(crate) struct LogReader<R> {
    r: R,
    path: String,
    offset: u64,
    prev: Digest,
    line: Vec<u8>,
    /// Offset of an incomplete final line (a torn write, or a write in progress).
    pub torn: Option<u64>,
    pub header: Option<LogHeader>,
}

impl LogReader<BufReader<File>> {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let f =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        LogReader::new(BufReader::with_capacity(256 * 1024, f), path)
    }
}

impl<R: BufRead> LogReader<R> {
    pub(crate) fn new(r: R, path: &Path) -> Result<Self> {
        let mut reader = LogReader {
            r,
            path: path.display().to_string(),
            offset: 0,
            prev: chain::GENESIS,
            line: Vec::new(),
            torn: None,
            header: None,
        };
        if let Some(line) = reader.next_line()? {
            let offset = line.offset;
            let mut text = line.head.to_vec();
            text.push(b'}');
            let header: LogHeader = serde_json::from_slice(&text).map_err(|e| {
                Error::corrupt(
                    offset,
                    format!("{}: not an AgentMesh log header: {e}", reader.path),
                )
            })?;
            if header.format != LOG_FORMAT || header.version != LOG_VERSION {
                return Err(Error::corrupt(
                    0,
                    format!(
                        "{}: unsupported log format {} v{}",
                        reader.path, header.format, header.version
                    ),
                ));
            }
            reader.header = Some(header);
        }
        Ok(reader)
    }

    /// The header, or `LOG_CORRUPT` for an empty log.
    pub(crate) fn require_header(&self) -> Result<&LogHeader> {
        self.header
            .as_ref()
            .ok_or_else(|| Error::corrupt(0, format!("{}: empty log (no header)", self.path)))
    }

    /// The next verified line; `None` at the end or at a torn final line.
    pub(crate) fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        if self.torn.is_some() {
            return Ok(None);
        }
        self.line.clear();
        let limit = (MAX_RECORD_BYTES + chain::SUFFIX_LEN + 2) as u64;
        let n = (&mut self.r)
            .take(limit)
            .read_until(b'\n', &mut self.line)
            .map_err(|e| Error::io(format!("reading {}", self.path), e))?;
        if n == 0 {
            return Ok(None);
        }
        let offset = self.offset;
        if self.line.last() != Some(&b'\n') {
            if n as u64 == limit {
                return Err(Error::corrupt(
                    offset,
                    format!(
                        "{}: record longer than {} bytes",
                        self.path, MAX_RECORD_BYTES
                    ),
                ));
            }
            self.torn = Some(offset);
            return Ok(None);
        }
        self.offset += n as u64;
        let body = &self.line[..n - 1];
        let (head, hash) = chain::unseal(body, &self.prev)
            .map_err(|why| Error::corrupt(offset, format!("{}: {why}", self.path)))?;
        self.prev = hash;
        Ok(Some(Line { offset, head }))
    }

    pub(crate) fn last_hash(&self) -> Digest {
        self.prev
    }

    pub(crate) fn end_offset(&self) -> u64 {
        self.offset
    }
}

/// Parse an event from a verified line.
pub(crate) fn parse_event(line: &Line<'_>, scratch: &mut Vec<u8>) -> Result<Event> {
    parse_event_interned(line, scratch, &mut Interner::default())
}

fn parse_event_interned(
    line: &Line<'_>,
    scratch: &mut Vec<u8>,
    interner: &mut Interner,
) -> Result<Event> {
    scratch.clear();
    scratch.extend_from_slice(line.head);
    scratch.push(b'}');
    let text = std::str::from_utf8(scratch)
        .map_err(|_| Error::corrupt(line.offset, "record is not UTF-8"))?;
    Event::from_json_interned(text, interner)
        .map_err(|e| Error::corrupt(line.offset, format!("not a valid event: {e}")))
}

/// Tracks seqs: each at most once, gaps only where completions are outstanding.
#[derive(Default)]
pub(crate) struct SeqTracker {
    max: u64,
    missing: BTreeSet<u64>,
}

impl SeqTracker {
    pub(crate) fn see(&mut self, seq: u64, offset: u64) -> Result<()> {
        if seq > self.max {
            if seq - self.max > 1_000_000 {
                return Err(Error::corrupt(
                    offset,
                    format!("seq {seq} jumps too far past {}", self.max),
                ));
            }
            self.missing.extend(self.max + 1..seq);
            self.max = seq;
            Ok(())
        } else if self.missing.remove(&seq) {
            Ok(())
        } else {
            Err(Error::corrupt(offset, format!("seq {seq} appears twice")))
        }
    }
}

/// Verify a log opened read-write and repair a torn tail (copy to `.broken`, then cut).
pub(crate) fn recover(path: &Path, file: &File) -> Result<Recovery> {
    let report = scan(path, file)?;
    Ok(Recovery {
        header: report.1,
        last_hash: report.2,
        events: report.0.events,
        repaired: report.0.repaired,
    })
}

fn scan(path: &Path, mut file: &File) -> Result<(VerifyReport, Option<LogHeader>, Digest)> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(format!("seeking {}", path.display()), e))?;
    let mut reader = LogReader::new(BufReader::with_capacity(256 * 1024, file), path)?;
    let run_id = reader.header.as_ref().map(|h| h.run_id.clone());
    let mut seqs = SeqTracker::default();
    let mut events = 0u64;
    let mut finished = None;
    // Verification checks integrity and the envelope without parsing bodies (that is what
    // makes it fast); replay and resume parse every body fully.
    let run_id_field = run_id
        .as_ref()
        .map(|id| serde_json::to_vec(id).unwrap_or_default());
    while let Some(line) = reader.next_line()? {
        let (seq, kind, rid) = chain::envelope(line.head).ok_or_else(|| {
            Error::corrupt(
                line.offset,
                "record does not start with seq, type and runId",
            )
        })?;
        if Some(rid) != run_id_field.as_deref() {
            return Err(Error::corrupt(
                line.offset,
                format!(
                    "event {seq} belongs to run {}",
                    String::from_utf8_lossy(rid)
                ),
            ));
        }
        if !crate::model::event::EVENT_TYPES
            .iter()
            .any(|t| t.as_bytes() == kind)
        {
            return Err(Error::corrupt(
                line.offset,
                format!("unknown event type '{}'", String::from_utf8_lossy(kind)),
            ));
        }
        if events == 0 && !(seq == 1 && kind == b"runStarted") {
            return Err(Error::corrupt(
                line.offset,
                "the first event must be runStarted with seq 1",
            ));
        }
        seqs.see(seq, line.offset)?;
        if seq == seqs.max && matches!(kind, b"runCompleted" | b"runFailed" | b"runCancelled") {
            finished = Some(String::from_utf8_lossy(kind).into_owned());
        }
        events += 1;
    }
    let last_hash = reader.last_hash();
    let end = reader.end_offset();
    let torn = reader.torn;
    let header = reader.header.take();
    let repaired = match torn {
        Some(offset) => Some(cut_tail(path, file, offset)?),
        None => None,
    };
    let report = VerifyReport {
        run_id,
        workflow: header.as_ref().map(|h| h.workflow.name.clone()),
        events,
        last_seq: seqs.max,
        holes: seqs.missing.into_iter().collect(),
        finished,
        bytes: end,
        repaired,
    };
    Ok((report, header, last_hash))
}

fn cut_tail(path: &Path, mut file: &File, offset: u64) -> Result<Repair> {
    let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io("seeking", e))?;
    file.read_to_end(&mut tail)
        .map_err(|e| io("reading tail of", e))?;
    let mut broken = PathBuf::from(format!("{}.broken", path.display()));
    let mut n = 1;
    while broken.exists() {
        broken = PathBuf::from(format!("{}.broken.{n}", path.display()));
        n += 1;
    }
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut out = opts
        .open(&broken)
        .map_err(|e| io("creating broken-tail copy of", e))?;
    out.write_all(&tail)
        .and_then(|_| out.sync_all())
        .map_err(|e| io("writing broken-tail copy of", e))?;
    // Cut only after the copy is durable (the etcd rule).
    file.set_len(offset)
        .and_then(|_| file.sync_all())
        .map_err(|e| io("truncating", e))?;
    Ok(Repair {
        offset,
        bytes: tail.len() as u64,
        broken_path: broken,
    })
}

/// Verify a log: hash chain, header, event structure, seq uniqueness; repair a torn tail.
///
/// Streams the file; memory does not grow with its size.
///
/// Errors: `LOG_CORRUPT` with the byte offset of the first damaged record; `IO`, also when
/// another process is writing the log.
pub fn verify_log(path: impl AsRef<Path>) -> Result<VerifyReport> {
    let path = path.as_ref();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let file = super::writer_lock(file, path)?;
    let (mut report, _, _) = scan(path, &file)?;
    if let Some(r) = &report.repaired {
        report.bytes = r.offset;
    }
    Ok(report)
}

/// Emits items in seq order, holding back the few that arrive early.
pub(crate) struct Reorder<T> {
    next: u64,
    pending: BTreeMap<u64, T>,
}

impl<T> Reorder<T> {
    pub(crate) fn new() -> Self {
        Reorder {
            next: 1,
            pending: BTreeMap::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        seq: u64,
        item: T,
        mut emit: impl FnMut(T) -> Result<()>,
    ) -> Result<()> {
        if seq != self.next {
            self.pending.insert(seq, item);
            return Ok(());
        }
        emit(item)?;
        self.next += 1;
        while let Some(item) = self.pending.remove(&self.next) {
            emit(item)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Remaining items in seq order (after holes).
    pub(crate) fn finish(self, mut emit: impl FnMut(T) -> Result<()>) -> Result<()> {
        for (_, item) in self.pending {
            emit(item)?;
        }
        Ok(())
    }
}

/// Write the canonical log of `path` to `out`: header and events sorted by seq, without `meta`,
/// `prev` and `hash`, one per line. Read-only: a torn final line is ignored, not repaired.
/// Returns the number of events.
///
/// Errors: `LOG_CORRUPT`, `IO`.
pub fn canonical_log(path: impl AsRef<Path>, out: &mut dyn Write) -> Result<u64> {
    let path = path.as_ref();
    let mut reader = LogReader::open(path)?;
    let header = reader.require_header()?.clone();
    let mut header = header;
    header.meta = None;
    let io = |e| Error::io("writing canonical log", e);
    serde_json::to_writer(&mut *out, &header).map_err(|e| Error::internal(e.to_string()))?;
    out.write_all(b"\n").map_err(io)?;
    let mut reorder: Reorder<Vec<u8>> = Reorder::new();
    let mut count = 0;
    let mut write = |bytes: Vec<u8>| -> Result<()> { out.write_all(&bytes).map_err(io) };
    while let Some(line) = reader.next_line()? {
        let seq = chain::leading_seq(line.head)
            .ok_or_else(|| Error::corrupt(line.offset, "record has no leading seq"))?;
        let body = chain::canonical_body(line.head)
            .ok_or_else(|| Error::corrupt(line.offset, "record has no meta"))?;
        let mut canon = Vec::with_capacity(body.len() + 2);
        canon.extend_from_slice(body);
        canon.extend_from_slice(b"}\n");
        reorder.push(seq, canon, &mut write)?;
        count += 1;
    }
    reorder.finish(&mut write)?;
    Ok(count)
}

/// blake3 (hex) of the canonical log: equal for equal runs, whichever host wrote them.
///
/// Errors: `LOG_CORRUPT`, `IO`.
pub fn fingerprint(path: impl AsRef<Path>) -> Result<String> {
    let mut hasher = HashWriter(blake3::Hasher::new());
    canonical_log(path, &mut hasher)?;
    Ok(hasher.0.finalize().to_hex().to_string())
}

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
/// Errors: `LOG_CORRUPT` (not a log, damaged header), `IO`.
pub fn read_header(path: impl AsRef<Path>) -> Result<LogHeader> {
    let reader = LogReader::open(path.as_ref())?;
    reader.require_header().cloned()
}

/// Read a log's header and its events in canonical (seq) order. Read-only.
///
/// Errors: `LOG_CORRUPT`, `IO`.
pub fn read_log(path: impl AsRef<Path>) -> Result<(LogHeader, Vec<Event>)> {
    let mut events = Vec::new();
    let header = for_each_event(path.as_ref(), |e| {
        events.push(e);
        Ok(())
    })?;
    Ok((header, events))
}

/// One verified record, not yet parsed: its body (the JSON object without chain fields).
pub(crate) struct Record {
    pub offset: u64,
    pub seq: u64,
    body: Vec<u8>,
}

impl Record {
    /// The event `type`.
    pub(crate) fn kind(&self) -> &[u8] {
        chain::envelope(&self.body).map_or(&[][..], |(_, kind, _)| kind)
    }

    /// The canonical form without its closing brace (no `meta`).
    pub(crate) fn canonical_head(&self) -> Option<&[u8]> {
        chain::canonical_body(&self.body[..self.body.len() - 1])
    }

    pub(crate) fn parse(&self, interner: &mut Interner) -> Result<Event> {
        let text = std::str::from_utf8(&self.body)
            .map_err(|_| Error::corrupt(self.offset, "record is not UTF-8"))?;
        Event::from_json_interned(text, interner)
            .map_err(|e| Error::corrupt(self.offset, format!("not a valid event: {e}")))
    }
}

/// Stream a log's records in seq order to `f`, parsing only what `f` asks for. Returns the
/// header.
pub(crate) fn for_each_record(
    path: &Path,
    mut f: impl FnMut(Record, &mut Interner) -> Result<()>,
) -> Result<LogHeader> {
    let mut reader = LogReader::open(path)?;
    let header = reader.require_header()?.clone();
    let run_id = serde_json::to_vec(&header.run_id).unwrap_or_default();
    let mut reorder: Reorder<Record> = Reorder::new();
    let mut interner = Interner::default();
    let mut emit = |r: Record| f(r, &mut interner);
    while let Some(line) = reader.next_line()? {
        let (seq, _, rid) = chain::envelope(line.head).ok_or_else(|| {
            Error::corrupt(
                line.offset,
                "record does not start with seq, type and runId",
            )
        })?;
        if rid != run_id.as_slice() {
            return Err(Error::corrupt(
                line.offset,
                format!(
                    "event {seq} belongs to run {}",
                    String::from_utf8_lossy(rid)
                ),
            ));
        }
        let mut body = Vec::with_capacity(line.head.len() + 1);
        body.extend_from_slice(line.head);
        body.push(b'}');
        reorder.push(
            seq,
            Record {
                offset: line.offset,
                seq,
                body,
            },
            &mut emit,
        )?;
    }
    reorder.finish(&mut emit)?;
    Ok(header)
}

/// Stream a log's events in seq order to `f`. Returns the header.
pub(crate) fn for_each_event(
    path: &Path,
    mut f: impl FnMut(Event) -> Result<()>,
) -> Result<LogHeader> {
    let mut reader = LogReader::open(path)?;
    let header = reader.require_header()?.clone();
    let mut reorder: Reorder<Event> = Reorder::new();
    let mut scratch = Vec::new();
    let mut interner = Interner::default();
    while let Some(line) = reader.next_line()? {
        let e = parse_event_interned(&line, &mut scratch, &mut interner)?;
        if *e.run_id != header.run_id {
            return Err(Error::corrupt(
                line.offset,
                format!("event {} belongs to run '{}'", e.seq, e.run_id),
            ));
        }
        reorder.push(e.seq, e, &mut f)?;
    }
    reorder.finish(&mut f)?;
    Ok(header)
}
