//! The append-only log writer: one file per run, hash-chained, fsync per mode, poisoned on
//! error.
//!
//! A new log appears atomically: the header and the run's first events are written to a
//! hidden temporary file in the log directory, which is then linked into place. So the log's
//! path never shows an empty or header-only file, two starts of one run id cannot both
//! succeed (only one link can), and a failed start leaves nothing at the path.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::chain::{self, Link};
use crate::error::{Error, ErrorKind, Result};
use crate::model::event::{Encoded, Event, Layout};
use crate::model::header::{HeaderMeta, LogHeader, MetaExtra, LOG_FORMAT};

/// When the writer calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FsyncMode {
    /// After every append: each commit is durable when it returns (completions committed
    /// together share one fsync).
    Always,
    /// At superstep boundaries, at most once per [`BATCH_SYNC_INTERVAL`] (group commit), and
    /// always when the run finishes, waits for a person, or is cancelled. The default.
    #[default]
    Batch,
    /// Never; the operating system decides.
    Never,
}

impl FsyncMode {
    /// Parse `always`, `batch` or `never`.
    ///
    /// Errors: `INVALID_ARGUMENT`.
    pub fn parse(text: &str) -> Result<FsyncMode> {
        match text {
            "always" => Ok(FsyncMode::Always),
            "batch" => Ok(FsyncMode::Batch),
            "never" => Ok(FsyncMode::Never),
            other => Err(Error::invalid_argument(format!(
                "fsync must be always, batch or never, not '{other}'"
            ))),
        }
    }

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncMode::Always => "always",
            FsyncMode::Batch => "batch",
            FsyncMode::Never => "never",
        }
    }
}

/// Minimum time between two superstep-boundary fsyncs in `batch` mode.
///
/// An fsync costs ~200 µs on the reference machine, so one per superstep would dominate short
/// steps; every event still reaches the OS when appended, so a process crash loses nothing.
pub const BATCH_SYNC_INTERVAL: Duration = Duration::from_millis(10);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Which file a path names: (device, inode).
fn identity_of(meta: &std::fs::Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

/// Writes one run's log.
#[derive(Debug)]
pub(crate) struct LogWriter {
    file: Locked,
    path: PathBuf,
    layout: Layout,
    /// Bytes the canonical form adds to a format-2 record (`,"runId":…,"traceId":…`).
    canonical_extra: usize,
    /// Link of the last record written.
    prev: Link,
    /// Link of the last record staged (equals `prev` when nothing is staged).
    staged_prev: Link,
    fsync: FsyncMode,
    buf: Vec<u8>,
    body: Vec<u8>,
    poisoned: Option<String>,
    dirty: bool,
    /// The directory entry of a new file is not yet fsynced.
    dir_unsynced: bool,
    last_sync: Instant,
    /// The open file's (device, inode), compared with the path's when syncing.
    identity: (u64, u64),
    syncs: u64,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn open_options_0600(create_new: bool) -> OpenOptions {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true);
    if create_new {
        opts.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
}

fn run_exists(path: &Path) -> Error {
    Error::new(
        ErrorKind::RunExists,
        format!(
            "{} already exists: resume that run, or choose another run id or log directory",
            path.display()
        ),
    )
}

impl LogWriter {
    /// Create a new log holding `header` and the run's first `events`, atomically (see the
    /// module docs). The file is created `0600`.
    ///
    /// Errors: `RUN_EXISTS` when a log exists at `path`, `INVALID_OUTPUT` (an event too
    /// large; nothing created), `IO`.
    pub(crate) fn create(
        path: &Path,
        header: &LogHeader,
        events: &[Event],
        fsync: FsyncMode,
    ) -> Result<(LogWriter, u64)> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{name}.{}-{}.tmp",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = open_options_0600(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let result = LogWriter::fill_new(file, &tmp, header, events, fsync).and_then(|(w, at)| {
            w.link_into_place(path, &tmp, &header.run_id)
                .map(|w| (w, at))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Write the header and first events into the new (temporary) file; returns the writer
    /// and the events' `meta.at`.
    fn fill_new(
        file: File,
        tmp: &Path,
        header: &LogHeader,
        events: &[Event],
        fsync: FsyncMode,
    ) -> Result<(LogWriter, u64)> {
        let file = lock(file, tmp)?;
        let identity = file
            .metadata()
            .map(|m| identity_of(&m))
            .map_err(|e| Error::io(format!("reading {}", tmp.display()), e))?;
        let layout = Layout::of_version(header.version);
        let genesis = Link::genesis(layout == Layout::V1);
        let mut w = LogWriter::from_parts(file, tmp, layout, &header.run_id, genesis, fsync);
        w.identity = identity;
        let mut header = header.clone();
        header.meta = Some(HeaderMeta {
            at: now_ms(),
            host: header.meta.take().and_then(|m| m.host),
        });
        w.body.clear();
        serde_json::to_writer(&mut w.body, &header)
            .map_err(|e| Error::internal(format!("header: {e}")))?;
        w.staged_prev = chain::seal(&w.body, genesis, &mut w.buf);
        let at = w.stage(events, &MetaExtra::NONE)?;
        // In `always` mode this fsyncs too: the data is durable before the name appears.
        w.write_staged()?;
        Ok((w, at))
    }

    /// Give the new file its name: `link` fails if a log exists, so only one start wins.
    fn link_into_place(mut self, path: &Path, tmp: &Path, run_id: &str) -> Result<LogWriter> {
        match std::fs::hard_link(tmp, path) {
            Ok(()) => {
                let _ = std::fs::remove_file(tmp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                take_over(path, tmp, run_id)?;
            }
            // A file system without hard links: create the name exclusively and copy.
            Err(_) => self.copy_into_new(path)?,
        }
        self.path = path.to_owned();
        self.dir_unsynced = true;
        // `always` makes the new entry durable now; `batch` folds the directory fsync into
        // its first group commit (at the latest when the run finishes or waits).
        if self.fsync == FsyncMode::Always {
            self.sync_entry()?;
        }
        Ok(self)
    }

    /// The fallback of [`LogWriter::link_into_place`]: `create_new` the path and copy the
    /// temporary file's bytes into it, holding the new file's lock from the start.
    fn copy_into_new(&mut self, path: &Path) -> Result<()> {
        let file = match open_options_0600(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(run_exists(path))
            }
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
        };
        let mut file = lock(file, path)?;
        let copied = (|| {
            let mut bytes = Vec::new();
            self.file.seek(SeekFrom::Start(0))?;
            self.file.read_to_end(&mut bytes)?;
            file.write_all(&bytes)?;
            if self.fsync == FsyncMode::Always {
                file.sync_data()?;
            }
            file.metadata()
        })();
        match copied {
            Ok(meta) => {
                let tmp = self.path.clone();
                self.identity = identity_of(&meta);
                self.file = file;
                let _ = std::fs::remove_file(tmp);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(path);
                Err(Error::io(format!("writing {}", path.display()), e))
            }
        }
    }

    /// A writer appending to `file` (locked, verified, positioned at its end by the caller,
    /// which made `syncs` fsyncs of it already).
    pub(crate) fn append_to(
        file: Locked,
        path: &Path,
        header: &LogHeader,
        last: Link,
        fsync: FsyncMode,
        syncs: u64,
    ) -> Result<LogWriter> {
        let identity = file
            .metadata()
            .map(|m| identity_of(&m))
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let layout = Layout::of_version(header.version);
        let mut w = LogWriter::from_parts(file, path, layout, &header.run_id, last, fsync);
        w.identity = identity;
        w.syncs = syncs;
        Ok(w)
    }

    fn from_parts(
        file: Locked,
        path: &Path,
        layout: Layout,
        run_id: &str,
        prev: Link,
        fsync: FsyncMode,
    ) -> LogWriter {
        LogWriter {
            file,
            path: path.to_owned(),
            layout,
            canonical_extra: match layout {
                Layout::V2 => super::reader::id_fields(run_id).len(),
                Layout::V1 | Layout::Canonical => 0,
            },
            prev,
            staged_prev: prev,
            fsync,
            buf: Vec::with_capacity(4096),
            body: Vec::with_capacity(1024),
            poisoned: None,
            dirty: false,
            dir_unsynced: false,
            last_sync: Instant::now(),
            identity: (0, 0),
            syncs: 0,
        }
    }

    /// Path of the log file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs so far (file and directory).
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(Error::new(
                ErrorKind::Io,
                format!(
                    "log writer for {} is poisoned by an earlier failure: {why}",
                    self.path.display()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Serialize and seal events into the pending buffer without writing them, so several
    /// batches reach the file in one write. `extra` is what their meta carries besides `at`. An event that is too large leaves the buffer as it was.
    ///
    /// Returns the `meta.at` the records carry.
    ///
    /// Errors: `INVALID_OUTPUT` (event too large), `IO` (writer poisoned).
    pub(crate) fn stage(&mut self, events: &[Event], extra: &MetaExtra) -> Result<u64> {
        self.check_poisoned()?;
        let mark = self.buf.len();
        let at = now_ms();
        let mut prev = self.staged_prev;
        for e in events {
            self.body.clear();
            let encoded = Encoded {
                event: e,
                layout: self.layout,
                meta: None,
            };
            encoded.write_to(&mut self.body);
            // The canonical size decides, so memory and file logs of any format agree.
            let canonical = self.body.len() + self.canonical_extra;
            if let Err(err) = e.check_size(canonical) {
                self.buf.truncate(mark);
                return Err(err);
            }
            self.body.pop();
            crate::model::encode::push_meta(&mut self.body, &extra.at(at));
            self.body.push(b'}');
            prev = chain::seal(&self.body, prev, &mut self.buf);
        }
        self.staged_prev = prev;
        Ok(at)
    }

    /// Drop everything staged since the last write.
    pub(crate) fn unstage(&mut self) {
        self.buf.clear();
        self.staged_prev = self.prev;
    }

    /// Write everything staged in one write (fsync too in `always` mode).
    ///
    /// Errors: `IO` (the writer is then poisoned).
    pub(crate) fn write_staged(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.buf);
        self.buf.clear();
        if let Err(e) = written {
            self.poisoned = Some(e.to_string());
            return Err(Error::io(format!("writing {}", self.path.display()), e));
        }
        self.prev = self.staged_prev;
        self.dirty = true;
        if self.fsync == FsyncMode::Always {
            self.sync()?;
        }
        Ok(())
    }

    /// Superstep boundary: in `batch` mode, fsync unless one happened within the interval.
    ///
    /// Errors: `IO` (poisons the writer).
    pub(crate) fn boundary(&mut self) -> Result<()> {
        if self.fsync == FsyncMode::Batch
            && self.dirty
            && self.last_sync.elapsed() >= BATCH_SYNC_INTERVAL
        {
            self.sync()?;
        }
        Ok(())
    }

    /// Run end, waiting or cancel: fsync now (unless `never`), and check the log is still
    /// the file at its path.
    ///
    /// Errors: `IO` (poisons the writer).
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if self.fsync != FsyncMode::Never && self.dirty {
            self.sync()?;
        } else {
            self.check_identity()?;
        }
        Ok(())
    }

    /// fsync the file and, when its entry is new, its directory.
    ///
    /// Errors: `IO` (poisons the writer).
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.check_poisoned()?;
        self.sync_file()?;
        self.sync_entry()?;
        self.check_identity()
    }

    /// fsync the directory if the file's entry is new.
    fn sync_entry(&mut self) -> Result<()> {
        if self.dir_unsynced {
            if let Err(e) = sync_dir(&self.path) {
                self.poisoned = Some(format!("fsync of the directory failed: {e}"));
                return Err(e);
            }
            self.syncs += 1;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    fn sync_file(&mut self) -> Result<()> {
        // An fsync error is never retried: the kernel may have dropped the dirty pages, so a
        // later success would lie (the PostgreSQL fsync lesson). Poison instead.
        if let Err(e) = self.file.sync_data() {
            self.poisoned = Some(format!("fsync failed: {e}"));
            return Err(Error::io(format!("fsync of {}", self.path.display()), e));
        }
        self.syncs += 1;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// The log's path must still name the file this writer appends to: a log deleted,
    /// renamed or replaced while its run writes would otherwise lose every later event.
    ///
    /// Errors: `IO` (poisons the writer).
    fn check_identity(&mut self) -> Result<()> {
        let found = std::fs::metadata(&self.path).map(|m| identity_of(&m));
        let why = match found {
            Ok(id) if id == self.identity => return Ok(()),
            Ok(_) => "replaced by another file",
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "deleted or renamed",
            Err(_) => "no longer readable",
        };
        let message = format!(
            "the log {} was {why} while the run was writing it; the events written since are not in any log at that path",
            self.path.display()
        );
        self.poisoned = Some(message.clone());
        Err(Error::new(ErrorKind::Io, message))
    }
}

/// Take over an existing file at `path` that holds nothing committed — an empty file, or a
/// header of this run with at most a torn record after it (a start by an older AgentMesh
/// that did not finish) — by renaming the new log `tmp` over it, after copying its bytes to
/// `<path>.broken`. Anything else is `RUN_EXISTS` and is never touched.
fn take_over(path: &Path, tmp: &Path, run_id: &str) -> Result<()> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Removed meanwhile: try the exclusive link once more.
            return match std::fs::hard_link(tmp, path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(tmp);
                    Ok(())
                }
                Err(_) => Err(run_exists(path)),
            };
        }
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let mut file = lock(file, path).map_err(|_| run_exists(path))?;
    let mut head = Vec::new();
    (&mut *file)
        .take(64 * 1024 + 1)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if !holds_nothing_committed(&head, run_id) {
        return Err(run_exists(path));
    }
    // Still the file at the path? (Another starter may have replaced it before we locked.)
    let locked_id = file.metadata().map(|m| identity_of(&m));
    let path_id = std::fs::metadata(path).map(|m| identity_of(&m));
    match (locked_id, path_id) {
        (Ok(a), Ok(b)) if a == b => {}
        _ => return Err(run_exists(path)),
    }
    if !head.is_empty() {
        super::repair::keep_copy(path, &head)?;
    }
    std::fs::rename(tmp, path).map_err(|e| Error::io(format!("replacing {}", path.display()), e))
}

/// Whether the first bytes of a file are an unfinished start of run `run_id`: nothing, or a
/// complete or torn header line (with at most a torn line after a complete one).
fn holds_nothing_committed(head: &[u8], run_id: &str) -> bool {
    if head.is_empty() {
        return true;
    }
    if head.len() > 64 * 1024 {
        return false;
    }
    let prefix = format!("{{\"format\":\"{LOG_FORMAT}\",");
    match head.iter().position(|&b| b == b'\n') {
        // A torn header: a prefix of our own header format.
        None => head.starts_with(prefix.as_bytes()) || prefix.as_bytes().starts_with(head),
        Some(end) => {
            let rest = &head[end + 1..];
            if rest.contains(&b'\n') {
                return false; // a complete event follows: something was committed
            }
            let line = &head[..end];
            let genesis = Link::genesis(chain::is_format_one(line));
            let Ok((body, _)) = chain::unseal(line, genesis) else {
                return false;
            };
            let mut text = body.to_vec();
            text.push(b'}');
            matches!(serde_json::from_slice::<LogHeader>(&text), Ok(h) if h.run_id == run_id)
        }
    }
}

/// A log file holding the writer lock, unlocked when dropped.
///
/// The lock belongs to the open file, which a child process spawned meanwhile (by any thread
/// of the host) shares until it execs; without the explicit unlock a log closed in that window
/// would stay locked, and a resume right after would be refused.
#[derive(Debug)]
pub(crate) struct Locked(File);

impl std::ops::Deref for Locked {
    type Target = File;
    fn deref(&self) -> &File {
        &self.0
    }
}

impl std::ops::DerefMut for Locked {
    fn deref_mut(&mut self) -> &mut File {
        &mut self.0
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Take the exclusive writer lock of `file` without waiting.
///
/// Errors: `IO` when another writer holds it.
pub(crate) fn lock(file: File, path: &Path) -> Result<Locked> {
    match file.try_lock() {
        Ok(()) => Ok(Locked(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::Io,
            format!(
                "{} is locked by another writer (a run in progress?)",
                path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", path.display()), e))
        }
    }
}

/// Whether a writer holds the lock of the log at `path` (a run in progress, in this process or
/// another), without taking it for longer than the check. A crashed run's lock is gone with
/// its process.
///
/// Errors: `IO` (the file cannot be opened).
pub fn log_in_use(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", path.display()), e))
        }
    }
}

/// fsync the directory holding `path`, so a new or renamed entry survives a crash.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("fsync of directory {}", dir.display()), e))?;
    }
    Ok(())
}

/// Validate a run id for use as a file name: 1–128 of `[A-Za-z0-9._-]`, not starting with `.`.
///
/// Errors: `INVALID_ARGUMENT`.
pub fn validate_run_id(run_id: &str) -> Result<()> {
    let ok_chars = run_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if run_id.is_empty() || run_id.len() > 128 || !ok_chars || run_id.starts_with('.') {
        return Err(Error::invalid_argument(format!(
            "invalid run id {run_id:?}: use 1-128 of A-Z a-z 0-9 . _ - (not starting with '.')"
        )));
    }
    Ok(())
}

/// The log path of a run: `<dir>/<run_id>.jsonl`.
///
/// Errors: `INVALID_ARGUMENT` for an invalid run id.
pub fn log_path(dir: &Path, run_id: &str) -> Result<PathBuf> {
    validate_run_id(run_id)?;
    Ok(dir.join(format!("{run_id}.jsonl")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unfinished_starts_of_the_same_run_are_taken_over() {
        assert!(holds_nothing_committed(b"", "r"));
        assert!(holds_nothing_committed(
            b"{\"format\":\"agentmesh-log\",\"ver",
            "r"
        ));
        assert!(holds_nothing_committed(b"{\"form", "r"));
        assert!(
            !holds_nothing_committed(b"{\"a\":1}", "r"),
            "not our format"
        );
        assert!(!holds_nothing_committed(b"hello world", "r"));
        let mut line = Vec::new();
        let header = LogHeader::new(
            "r",
            crate::model::header::WorkflowRef {
                name: "w".into(),
                hash: "h".into(),
            },
            1,
            None,
        );
        let body = serde_json::to_vec(&header).unwrap();
        chain::seal(&body, Link::genesis(false), &mut line);
        assert!(holds_nothing_committed(&line, "r"));
        assert!(
            !holds_nothing_committed(&line, "other"),
            "another run's header"
        );
        let mut torn = line.clone();
        torn.extend_from_slice(b"{\"seq\":1,\"ty");
        assert!(holds_nothing_committed(&torn, "r"));
        let mut committed = line.clone();
        committed.extend_from_slice(b"{\"seq\":1}\n");
        assert!(!holds_nothing_committed(&committed, "r"));
    }
}
