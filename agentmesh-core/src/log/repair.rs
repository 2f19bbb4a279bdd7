//! Mending a damaged tail (the etcd rule: copy the bytes aside, durably, before cutting), and
//! [`verify_log`], the verification that may do it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::read::{Repair, VerifyReport};
use super::reader::{Ending, LogReader, LogScan};
use super::writer::{lock, Locked};
use crate::error::{Error, Result};

/// Copy `bytes` to a new `<path>.broken` (or `.broken.N`), durably. A copy that cannot be
/// completed (a full disk) is removed, so failed attempts leave nothing behind.
///
/// Errors: `IO`.
pub(crate) fn keep_copy(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let mut n = 0;
    loop {
        let broken = match n {
            0 => PathBuf::from(format!("{}.broken", path.display())),
            n => PathBuf::from(format!("{}.broken.{n}", path.display())),
        };
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut out = match opts.open(&broken) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 10_000 => {
                n += 1;
                continue;
            }
            Err(e) => {
                return Err(Error::io(
                    format!("creating the copy of the damaged tail {}", broken.display()),
                    e,
                ))
            }
        };
        return match out.write_all(bytes).and_then(|_| out.sync_all()) {
            Ok(()) => {
                super::writer::sync_dir(&broken)?;
                Ok(broken)
            }
            Err(e) => {
                drop(out);
                let _ = std::fs::remove_file(&broken);
                Err(Error::io(
                    format!("writing the copy of the damaged tail {}", broken.display()),
                    e,
                ))
            }
        };
    }
}

/// Mend the damaged end of a log opened read-write: cut a torn record (after copying it
/// aside), or write the missing newline of a complete last record.
///
/// Errors: `IO`.
pub(crate) fn repair_tail(path: &Path, mut file: &File, ending: Ending) -> Result<Repair> {
    let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    let at = match ending {
        Ending::Torn(at) | Ending::NoNewline(at, _) => at,
    };
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(at))
        .map_err(|e| io("seeking", e))?;
    file.read_to_end(&mut tail)
        .map_err(|e| io("reading the tail of", e))?;
    let broken_path = if tail.is_empty() {
        None
    } else {
        Some(keep_copy(path, &tail)?)
    };
    // Cut only after the copy is durable.
    file.set_len(at).map_err(|e| io("truncating", e))?;
    let newline_restored = matches!(ending, Ending::NoNewline(..));
    if newline_restored {
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.write_all(b"\n"))
            .map_err(|e| io("writing the newline of", e))?;
    }
    file.sync_all().map_err(|e| io("fsync of", e))?;
    Ok(Repair {
        offset: at,
        bytes: tail.len() as u64,
        broken_path,
        newline_restored,
    })
}

/// Open a log read-write holding the writer lock.
///
/// Errors: `IO` (also when another writer holds it).
pub(crate) fn open_locked(path: &Path) -> Result<Locked> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    lock(file, path)
}

/// Verify a log — hash chain, header, the envelope and structure of every record — and
/// mend a damaged tail: a torn final record is copied to `<log>.broken` and cut; a complete
/// final record whose newline is missing or damaged gets it back. [`crate::check_log`]
/// verifies without writing.
///
/// Streams the file; memory does not grow with its size.
///
/// Errors: `LOG_CORRUPT` with the byte offset of the first damaged record (also for an empty
/// file, a file without a complete header, and a log without a complete event: none of
/// these is changed); `IO`, also when another process is writing the log.
pub fn verify_log(path: impl AsRef<Path>) -> Result<VerifyReport> {
    let path = path.as_ref();
    let file = open_locked(path)?;
    let mut scan = LogScan::new(LogReader::new(&*file, path)?);
    scan.skip_to_end()?;
    let mut report = VerifyReport::of_scan(&scan);
    if let Some(ending) = scan.reader.ending {
        let repair = repair_tail(path, &file, ending)?;
        report.bytes = repair.offset + u64::from(repair.newline_restored);
        report.torn_at = None;
        report.repaired = Some(repair);
    }
    Ok(report)
}
