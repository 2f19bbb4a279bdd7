//! The append-only, hash-chained event log (JSONL, one file per run).

pub(crate) mod chain;
pub(crate) mod reader;
pub(crate) mod writer;

pub use chain::MAX_RECORD_BYTES;
pub use reader::{
    canonical_log, fingerprint, read_header, read_log, verify_log, Recovery, Repair, VerifyReport,
};
pub use writer::{log_path, validate_run_id, FsyncMode, LogWriter, BATCH_SYNC_INTERVAL};

pub(crate) use writer::lock as writer_lock;
