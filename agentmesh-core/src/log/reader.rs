//! Reading a log: verified physical lines ([`LogReader`]), then records with their envelope
//! and the log's structure checked ([`LogScan`]), then canonical order ([`InOrder`]). Every
//! function that reads a log goes through these three, so all apply the same rules.
//!
//! Memory does not grow with the log: one line buffer, and the completions of the open step
//! that arrive before an earlier one (the reorder window).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::chain::{self, Link, MAX_RECORD_BYTES};
use super::shape::{step_activations, Shape};
use crate::error::{Error, Result};
use crate::model::event::{trace_id_for, Decoder, Event, EventKind, Layout};
use crate::model::header::LogHeader;

/// One verified physical line.
pub(crate) struct Line<'a> {
    pub offset: u64,
    /// The record without its chain fields and closing brace.
    pub head: &'a [u8],
}

/// How a log's last record ends when it is not a plain newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// An incomplete record starts here (a torn write, or a write in progress).
    Torn(u64),
    /// The last record is complete and valid but its newline, at this offset, is missing
    /// (`false`) or damaged (`true`).
    NoNewline(u64, bool),
}

/// Reads and verifies physical lines in file order, straight from one large buffer: a line
/// is handed out where it was read, and copied only to make room for the next read.
pub(crate) struct LogReader<R> {
    r: R,
    pub path: String,
    offset: u64,
    /// Offset just past the closing brace of the last record read (its newline excluded).
    record_end: u64,
    prev: Link,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    pub ending: Option<Ending>,
    pub header: LogHeader,
    pub layout: Layout,
}

/// The buffer starts at this size and grows for longer records (up to the record limit).
const READ_BUFFER: usize = 256 * 1024;

fn io(path: &str, e: std::io::Error) -> Error {
    Error::io(format!("reading {path}"), e)
}

impl LogReader<File> {
    /// Open a log read-only.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let f =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        LogReader::new(f, path)
    }
}

impl<R: Read> LogReader<R> {
    /// Read and check the header.
    ///
    /// Errors: `LOG_CORRUPT` (empty file, no complete header, unknown format, version or
    /// flag, invalid run id), `IO`.
    pub(crate) fn new(r: R, path: &Path) -> Result<Self> {
        let path = path.display().to_string();
        let mut reader = LogReader {
            r,
            path,
            offset: 0,
            record_end: 0,
            prev: Link::genesis(false),
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            eof: false,
            ending: None,
            header: LogHeader::new(
                "-",
                crate::model::header::WorkflowRef {
                    name: String::new(),
                    hash: String::new(),
                },
                0,
                None,
            ),
            layout: Layout::V2,
        };
        let p = reader.path.clone();
        let Some((s, e)) = reader.read_line()? else {
            return Err(Error::corrupt(
                0,
                format!("{p}: empty file, not an AgentMesh log"),
            ));
        };
        let line = &reader.buf[s..e];
        let n = line.len();
        let complete = line.last() == Some(&b'\n');
        let body_len = if complete { n - 1 } else { n };
        let format_one = chain::is_format_one(&line[..body_len]);
        let layout = if format_one { Layout::V1 } else { Layout::V2 };
        let unsealed = chain::unseal(&line[..body_len], Link::genesis(format_one));
        let (head, hash) = match unsealed {
            Ok(ok) => ok,
            Err(why) if complete => {
                return Err(Error::corrupt(0, format!("{p}: not an AgentMesh log header: {why}")))
            }
            Err(_) => {
                return Err(Error::corrupt(
                    0,
                    format!("{p}: no complete header (not an AgentMesh log, or a start that did not finish)"),
                ))
            }
        };
        let mut text = head.to_vec();
        text.push(b'}');
        let header: LogHeader = serde_json::from_slice(&text)
            .map_err(|e| Error::corrupt(0, format!("{p}: not an AgentMesh log header: {e}")))?;
        header
            .check_format()
            .and_then(|()| header.core_flags().map(|_| ()))
            .map_err(|why| Error::corrupt(0, format!("{p}: {why}")))?;
        if Layout::of_version(header.version) != layout {
            return Err(Error::corrupt(
                0,
                format!(
                    "{p}: a version {} header in another version's layout",
                    header.version
                ),
            ));
        }
        super::writer::validate_run_id(&header.run_id)
            .map_err(|e| Error::corrupt(0, format!("{p}: {}", e.message())))?;
        reader.prev = hash;
        reader.offset = n as u64;
        reader.record_end = body_len as u64;
        reader.header = header;
        reader.layout = layout;
        if !complete {
            // A complete header without its newline: the file holds nothing else.
            reader.ending = Some(Ending::NoNewline(body_len as u64, false));
        }
        Ok(reader)
    }

    /// The next line — its range in `buf`, newline included — or the last bytes of the file
    /// without one; `None` at the end.
    ///
    /// Errors: `LOG_CORRUPT` (a line longer than a record may be), `IO`.
    fn read_line(&mut self) -> Result<Option<(usize, usize)>> {
        let mut searched = self.start;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..self.end]) {
                let line = (self.start, searched + i + 1);
                self.start = line.1;
                return Ok(Some(line));
            }
            let pending = self.end - self.start;
            if self.eof {
                if pending == 0 {
                    return Ok(None);
                }
                let line = (self.start, self.end);
                self.start = self.end;
                return Ok(Some(line));
            }
            if pending > MAX_RECORD_BYTES + 1 {
                return Err(Error::corrupt(
                    self.offset,
                    format!("{}: record longer than {MAX_RECORD_BYTES} bytes", self.path),
                ));
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.start = 0;
                self.end = pending;
            }
            if self.end == self.buf.len() {
                let grown = (self.buf.len() * 2).min(MAX_RECORD_BYTES + 2 + READ_BUFFER);
                self.buf.resize(grown.max(self.buf.len() + 1), 0);
            }
            searched = self.end;
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(&self.path, e)),
            }
        }
    }

    /// The next verified line; `None` at the end or at a torn final line.
    pub(crate) fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        if self.ending.is_some() {
            return Ok(None);
        }
        let Some((s, e)) = self.read_line()? else {
            return Ok(None);
        };
        let line = &self.buf[s..e];
        let n = line.len();
        let offset = self.offset;
        let mut body_len = n - 1;
        if line.last() != Some(&b'\n') {
            // The final line has no newline. A torn write, unless it is a complete record
            // whose newline is missing or damaged: that record is valid and is kept.
            let whole = chain::unseal(line, self.prev).is_ok();
            let damaged = !whole && n > 1 && chain::unseal(&line[..n - 1], self.prev).is_ok();
            if !whole && !damaged {
                self.ending = Some(Ending::Torn(offset));
                return Ok(None);
            }
            body_len = if whole { n } else { n - 1 };
            self.ending = Some(Ending::NoNewline(offset + body_len as u64, damaged));
        }
        self.offset += n as u64;
        self.record_end = offset + body_len as u64;
        let (head, link) = chain::unseal(&line[..body_len], self.prev)
            .map_err(|why| Error::corrupt(offset, format!("{}: {why}", self.path)))?;
        self.prev = link;
        Ok(Some(Line { offset, head }))
    }

    /// The link of the last record read (what the next record must continue).
    pub(crate) fn last_link(&self) -> Link {
        self.prev
    }

    /// Offset just past the last complete line read.
    pub(crate) fn end_offset(&self) -> u64 {
        self.offset
    }

    /// Offset just past the last record read, its newline not counted (so a record whose
    /// newline was missing ends at the same offset once repaired).
    pub(crate) fn record_end(&self) -> u64 {
        self.record_end
    }
}

/// A record with its envelope checked, borrowed from the reader or the reorder window.
#[derive(Clone, Copy)]
pub(crate) struct RecordRef<'a> {
    pub offset: u64,
    pub seq: u64,
    /// A call record's number under `seq`.
    pub sub: Option<u32>,
    pub kind: EventKind,
    /// The physical record without chain fields and closing brace.
    head: &'a [u8],
    /// Where the bytes after `"type":"…"` start in `head`.
    type_end: usize,
    /// Where the fields after the run and trace ids (format 1) start: `parentSeq`, ...
    fields_at: usize,
    /// Where `,"meta":{` starts: the canonical record ends there.
    meta_at: usize,
    layout: Layout,
}

impl<'a> RecordRef<'a> {
    /// The physical record without `meta` (and without chain fields and closing brace).
    pub(crate) fn without_meta(&self) -> Result<&'a [u8]> {
        Ok(&self.head[..self.meta_at])
    }

    /// The record's `parentSeq` and the bytes of its `data` (meta excluded), read without
    /// parsing JSON: the envelope fields come in a fixed order and hold no strings that
    /// could contain the keys. `None` when the record is not in that form (the caller then
    /// parses it whole).
    pub(crate) fn parent_and_data(&self) -> Option<(Option<u64>, &'a [u8])> {
        let mut rest = &self.head[self.fields_at..self.meta_at];
        let mut parent = None;
        if let Some(r) = rest.strip_prefix(b",\"parentSeq\":") {
            let (seq, r) = chain::leading_digits(r)?;
            parent = Some(seq);
            rest = r;
        }
        let pat = b",\"data\":";
        let at = rest.windows(pat.len()).position(|w| w == pat)?;
        Some((parent, &rest[at + pat.len()..]))
    }

    /// Append the canonical form of the record and `\n` to `out`; `ids` are the bytes
    /// `,"runId":…,"traceId":…` that format-2 records leave out.
    pub(crate) fn canonical_into(&self, ids: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let body = self.without_meta()?;
        match self.layout {
            Layout::V1 | Layout::Canonical => out.extend_from_slice(body),
            Layout::V2 => {
                out.extend_from_slice(&body[..self.type_end]);
                out.extend_from_slice(ids);
                out.extend_from_slice(&body[self.type_end..]);
            }
        }
        out.extend_from_slice(b"}\n");
        Ok(())
    }

    /// Parse the record.
    pub(crate) fn parse(&self, decoder: &mut Decoder, scratch: &mut Vec<u8>) -> Result<Event> {
        scratch.clear();
        scratch.extend_from_slice(self.head);
        scratch.push(b'}');
        let text = std::str::from_utf8(scratch)
            .map_err(|_| Error::corrupt(self.offset, "record is not UTF-8"))?;
        decoder
            .decode(text)
            .map_err(|e| Error::corrupt(self.offset, format!("not a valid event: {e}")))
    }

    fn to_owned(self) -> OwnedRecord {
        OwnedRecord {
            offset: self.offset,
            seq: self.seq,
            sub: self.sub,
            kind: self.kind,
            head: self.head.to_vec(),
            type_end: self.type_end,
            fields_at: self.fields_at,
            meta_at: self.meta_at,
            layout: self.layout,
        }
    }
}

struct OwnedRecord {
    offset: u64,
    seq: u64,
    sub: Option<u32>,
    kind: EventKind,
    head: Vec<u8>,
    type_end: usize,
    fields_at: usize,
    meta_at: usize,
    layout: Layout,
}

impl OwnedRecord {
    fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            offset: self.offset,
            seq: self.seq,
            sub: self.sub,
            kind: self.kind,
            head: &self.head,
            type_end: self.type_end,
            fields_at: self.fields_at,
            meta_at: self.meta_at,
            layout: self.layout,
        }
    }
}

/// `,"runId":"R","traceId":"T"`: what a format-1 record has after its type, and what the
/// canonical form of a format-2 record gets there. Run ids need no JSON escapes.
pub(crate) fn id_fields(run_id: &str) -> Vec<u8> {
    format!(
        ",\"runId\":\"{run_id}\",\"traceId\":\"{}\"",
        trace_id_for(run_id)
    )
    .into_bytes()
}

/// Records in file order, each verified (chain, envelope, structure).
pub(crate) struct LogScan<R> {
    pub reader: LogReader<R>,
    pub shape: Shape,
    ids: Vec<u8>,
}

impl LogScan<File> {
    /// Open a log read-only.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        Ok(LogScan::new(LogReader::open(path)?))
    }
}

impl<R: Read> LogScan<R> {
    pub(crate) fn new(reader: LogReader<R>) -> Self {
        let ids = id_fields(&reader.header.run_id);
        let shape = Shape::for_version(reader.header.version);
        LogScan { reader, shape, ids }
    }

    pub(crate) fn header(&self) -> &LogHeader {
        &self.reader.header
    }

    /// `,"runId":…,"traceId":…` of this log.
    pub(crate) fn ids(&self) -> &[u8] {
        &self.ids
    }

    /// A decoder for this log's records.
    pub(crate) fn decoder(&self) -> Decoder {
        Decoder::for_log(&self.reader.header.run_id, self.reader.layout)
    }

    /// The next record in file order; `None` at the end (or a torn final line).
    ///
    /// Errors: `LOG_CORRUPT` naming the record's offset, `IO`.
    pub(crate) fn next(&mut self) -> Result<Option<RecordRef<'_>>> {
        let layout = self.reader.layout;
        let Some(line) = self.reader.next_line()? else {
            return Ok(None);
        };
        let (offset, head) = (line.offset, line.head);
        let Some((seq, sub, kind, rest)) = chain::envelope(head) else {
            return Err(Error::corrupt(
                offset,
                "record does not start with seq and type",
            ));
        };
        let Some(kind) = EventKind::from_name(kind) else {
            return Err(Error::corrupt(
                offset,
                format!("unknown event type '{}'", String::from_utf8_lossy(kind)),
            ));
        };
        let type_end = head.len() - rest.len();
        let rest = match layout {
            Layout::V1 | Layout::Canonical => {
                rest.strip_prefix(&self.ids[..]).ok_or_else(|| {
                    Error::corrupt(
                        offset,
                        format!("event {seq} does not carry this log's runId and traceId"),
                    )
                })?
            }
            Layout::V2 => {
                if rest.starts_with(b",\"runId\"") || rest.starts_with(b",\"traceId\"") {
                    return Err(Error::corrupt(
                        offset,
                        "a format-2 record carries runId or traceId",
                    ));
                }
                rest
            }
        };
        let Some(meta_at) = chain::meta_start(head) else {
            return Err(Error::corrupt(
                offset,
                "record has no meta as its last field",
            ));
        };
        let fields_at = head.len() - rest.len();
        let activations = match kind {
            EventKind::StepStarted => step_activations(&head[fields_at..meta_at]),
            _ => None,
        };
        self.shape.see(seq, sub, kind, activations, offset)?;
        Ok(Some(RecordRef {
            offset,
            seq,
            sub,
            kind,
            head,
            type_end,
            fields_at,
            meta_at,
            layout,
        }))
    }

    /// Read to the end without looking at records (verification). A log with no complete
    /// event is corrupt.
    ///
    /// Errors: `LOG_CORRUPT`, `IO`.
    pub(crate) fn skip_to_end(&mut self) -> Result<()> {
        while self.next()?.is_some() {}
        self.require_events()
    }

    /// `LOG_CORRUPT` unless the log holds at least one complete event: every log the core
    /// writes does (its file appears with `runStarted` in it).
    pub(crate) fn require_events(&self) -> Result<()> {
        if self.shape.events() == 0 {
            return Err(Error::corrupt(
                self.reader.end_offset(),
                format!(
                    "{}: holds no complete event (a start that did not finish; starting the run again takes the file over)",
                    self.reader.path
                ),
            ));
        }
        Ok(())
    }
}

/// Emits records in canonical order, `(seq, sub)` with a seq's call records before the
/// record without a sub (its completion), holding back what arrives before an earlier
/// record of its step.
pub(crate) struct InOrder {
    next: u64,
    /// The next call record of seq `next` to emit.
    next_sub: u32,
    pending: BTreeMap<(u64, u32), OwnedRecord>,
}

/// The key of a record without a sub: after every call record of its seq.
const MAIN: u32 = u32::MAX;

impl InOrder {
    pub(crate) fn new() -> Self {
        InOrder {
            next: 1,
            next_sub: 1,
            pending: BTreeMap::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        rec: RecordRef<'_>,
        emit: &mut dyn FnMut(RecordRef<'_>) -> Result<()>,
    ) -> Result<()> {
        // The structure check guarantees each (seq, sub) once, and a seq's call records
        // before its completion.
        match rec.sub {
            None if rec.seq == self.next => {
                self.emit_held_calls(emit)?;
                emit(rec)?;
                self.advance();
            }
            Some(sub) if rec.seq == self.next && sub == self.next_sub => {
                emit(rec)?;
                self.next_sub += 1;
            }
            sub => {
                self.pending
                    .insert((rec.seq, sub.unwrap_or(MAIN)), rec.to_owned());
                return Ok(());
            }
        }
        self.drain(emit)
    }

    fn advance(&mut self) {
        self.next = self.next.saturating_add(1);
        self.next_sub = 1;
    }

    /// Emit what waits for the records just emitted.
    fn drain(&mut self, emit: &mut dyn FnMut(RecordRef<'_>) -> Result<()>) -> Result<()> {
        while !self.pending.is_empty() {
            if let Some(r) = self.pending.remove(&(self.next, self.next_sub)) {
                emit(r.as_ref())?;
                self.next_sub += 1;
                continue;
            }
            let Some(main) = self.pending.remove(&(self.next, MAIN)) else {
                break;
            };
            self.emit_held_calls(emit)?;
            emit(main.as_ref())?;
            self.advance();
        }
        Ok(())
    }

    /// The held call records of seq `next`, in sub order: once its completion is there, the
    /// results that never came (calls in flight when the activation ended) leave gaps.
    fn emit_held_calls(&mut self, emit: &mut dyn FnMut(RecordRef<'_>) -> Result<()>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let held: Vec<(u64, u32)> = self
            .pending
            .range((self.next, 0)..(self.next, MAIN))
            .map(|(k, _)| *k)
            .collect();
        for k in held {
            if let Some(r) = self.pending.remove(&k) {
                emit(r.as_ref())?;
            }
        }
        Ok(())
    }

    /// Records still held (after holes: completions of a waiting step, calls of activations
    /// in flight), in canonical order.
    pub(crate) fn finish(self, emit: &mut dyn FnMut(RecordRef<'_>) -> Result<()>) -> Result<()> {
        for r in self.pending.values() {
            emit(r.as_ref())?;
        }
        Ok(())
    }
}
