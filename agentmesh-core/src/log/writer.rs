//! The append-only log writer: one file per run, hash-chained, fsync per mode, poisoned on error.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::chain::{self, Digest, MAX_RECORD_BYTES};
use super::reader::{self, Recovery};
use crate::error::{Error, ErrorKind, Result};
use crate::model::event::{Event, LogHeader, Meta, Stamped};

/// When the writer calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FsyncMode {
    /// After every append.
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

/// Writes one run's log.
#[derive(Debug)]
pub struct LogWriter {
    file: Locked,
    path: PathBuf,
    /// Hash of the last record written.
    prev: Digest,
    /// Hash of the last record staged (equals `prev` when nothing is staged).
    staged_prev: Digest,
    fsync: FsyncMode,
    buf: Vec<u8>,
    body: Vec<u8>,
    poisoned: Option<String>,
    dirty: bool,
    /// The directory entry of a new file is not yet fsynced.
    dir_unsynced: bool,
    last_sync: Instant,
}

impl LogWriter {
    /// Create a new log with its header. The file must not exist; it is created `0600`.
    ///
    /// Errors: `RUN_EXISTS` when the file exists, `IO` otherwise.
    pub fn create(path: &Path, header: &LogHeader, fsync: FsyncMode) -> Result<LogWriter> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            }
        }
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = match opts.open(path) {
            Ok(f) => lock(f, path)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => take_over_header_only(path)?,
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
        };
        let mut w = LogWriter::from_parts(file, path, chain::GENESIS, fsync);
        let mut header = header.clone();
        header.meta = Some(Meta {
            at: now_ms(),
            dur_us: None,
        });
        w.body.clear();
        serde_json::to_writer(&mut w.body, &header)
            .map_err(|e| Error::internal(format!("header: {e}")))?;
        let mut line = Vec::with_capacity(w.body.len() + chain::SUFFIX_LEN + 1);
        w.prev = chain::seal(&w.body, &chain::GENESIS, &mut line);
        w.staged_prev = w.prev;
        w.write(&line)?;
        w.dirty = true;
        w.dir_unsynced = true;
        // `always` makes the new file durable now; `batch` folds these fsyncs into its first
        // group commit (at the latest when the run finishes or waits), saving two per run.
        if fsync == FsyncMode::Always {
            w.sync()?;
        }
        Ok(w)
    }

    /// Open an existing log for appending: verify it, repair a torn tail, continue the chain.
    ///
    /// Errors: `LOG_CORRUPT`, `IO` (also when another writer holds the log).
    pub fn open_append(path: &Path, fsync: FsyncMode) -> Result<(LogWriter, Recovery)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let mut file = lock(file, path)?;
        let recovery = reader::recover(path, &file)?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| Error::io(format!("seeking {}", path.display()), e))?;
        let prev = recovery.last_hash;
        Ok((LogWriter::from_parts(file, path, prev, fsync), recovery))
    }

    fn from_parts(file: Locked, path: &Path, prev: Digest, fsync: FsyncMode) -> LogWriter {
        LogWriter {
            file,
            path: path.to_owned(),
            prev,
            staged_prev: prev,
            fsync,
            buf: Vec::with_capacity(4096),
            body: Vec::with_capacity(1024),
            poisoned: None,
            dirty: false,
            dir_unsynced: false,
            last_sync: Instant::now(),
        }
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
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

    /// Append events in one write. On return they are committed (per the fsync mode).
    ///
    /// Errors: `INVALID_OUTPUT` when a record exceeds [`MAX_RECORD_BYTES`] (nothing written),
    /// `IO` on a write or fsync failure (the writer is then poisoned).
    pub fn append(&mut self, events: &[Event]) -> Result<()> {
        self.stage(events)?;
        self.write_staged()
    }

    /// Serialize and seal events into the pending buffer without writing them, so several
    /// batches reach the file in one write. A record that is too large leaves the buffer as
    /// it was.
    ///
    /// Errors: `INVALID_OUTPUT` (record too large), `IO` (writer poisoned).
    pub fn stage(&mut self, events: &[Event]) -> Result<()> {
        self.check_poisoned()?;
        let mark = self.buf.len();
        let at = now_ms();
        let mut prev = self.staged_prev;
        for e in events {
            self.body.clear();
            let meta = Meta {
                at,
                dur_us: e.meta.and_then(|m| m.dur_us),
            };
            let serialized =
                serde_json::to_writer(&mut self.body, &Stamped(e, meta)).map_err(|err| {
                    Error::new(ErrorKind::InvalidOutput, format!("event {}: {err}", e.seq))
                });
            let too_large = self.body.len() + chain::SUFFIX_LEN >= MAX_RECORD_BYTES;
            if serialized.is_err() || too_large {
                self.buf.truncate(mark);
                serialized?;
                return Err(Error::new(
                    ErrorKind::InvalidOutput,
                    format!(
                        "{} record for node '{}' is {} bytes; the limit is {} bytes",
                        e.type_name(),
                        e.node.as_deref().unwrap_or("-"),
                        self.body.len(),
                        MAX_RECORD_BYTES
                    ),
                ));
            }
            prev = chain::seal(&self.body, &prev, &mut self.buf);
        }
        self.staged_prev = prev;
        Ok(())
    }

    /// Write everything staged in one write (fsync too in `always` mode).
    ///
    /// Errors: `IO` (the writer is then poisoned).
    pub fn write_staged(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let written = self.write(&buf);
        self.buf = buf;
        self.buf.clear();
        written?;
        self.prev = self.staged_prev;
        self.dirty = true;
        if self.fsync == FsyncMode::Always {
            self.sync()?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(e) = self.file.write_all(bytes) {
            self.poisoned = Some(e.to_string());
            return Err(Error::io(format!("writing {}", self.path.display()), e));
        }
        Ok(())
    }

    /// Superstep boundary: in `batch` mode, fsync unless one happened within the interval.
    ///
    /// Errors: `IO` (poisons the writer).
    pub fn boundary(&mut self) -> Result<()> {
        if self.fsync == FsyncMode::Batch
            && self.dirty
            && self.last_sync.elapsed() >= BATCH_SYNC_INTERVAL
        {
            self.sync()?;
        }
        Ok(())
    }

    /// Run end, waiting or cancel: fsync now (unless `never`).
    ///
    /// Errors: `IO` (poisons the writer).
    pub fn flush(&mut self) -> Result<()> {
        if self.fsync != FsyncMode::Never && self.dirty {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.check_poisoned()?;
        // An fsync error is never retried: the kernel may have dropped the dirty pages, so a
        // later success would lie (the PostgreSQL fsync lesson). Poison instead.
        if let Err(e) = self.file.sync_data() {
            self.poisoned = Some(format!("fsync failed: {e}"));
            return Err(Error::io(format!("fsync of {}", self.path.display()), e));
        }
        if self.dir_unsynced {
            if let Err(e) = sync_dir(&self.path) {
                self.poisoned = Some(format!("fsync of the directory failed: {e}"));
                return Err(e);
            }
            self.dir_unsynced = false;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// Reuse an existing log that holds no event (a crash inside `Run::start` after the header
/// was written): it has nothing committed, so starting again is safe. Anything else is
/// `RUN_EXISTS`.
fn take_over_header_only(path: &Path) -> Result<Locked> {
    let exists = || {
        Error::new(
            ErrorKind::RunExists,
            format!(
                "{} already exists: resume that run, or choose another run id or log directory",
                path.display()
            ),
        )
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut file = lock(file, path).map_err(|_| exists())?;
    let mut head = Vec::new();
    (&mut *file)
        .take(64 * 1024 + 1)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let newlines = head.iter().filter(|&&b| b == b'\n').count();
    let header_only = head.len() <= 64 * 1024
        && (newlines == 0 || (newlines == 1 && head.last() == Some(&b'\n')));
    if !header_only {
        return Err(exists());
    }
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .map_err(|e| Error::io(format!("truncating {}", path.display()), e))?;
    Ok(file)
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

fn sync_dir(path: &Path) -> Result<()> {
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
