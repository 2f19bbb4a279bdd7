//! The append-only, hash-chained event log (JSONL, one file per run).
//!
//! `reader` reads (chain, envelope, structure via `shape`, canonical order), `read` holds the
//! read-only functions, `repair` the verification that mends a damaged tail, `writer` the
//! appender with atomic creation, `anchor` the heads kept elsewhere that detect truncation
//! and recomputed chains.

pub(crate) mod anchor;
pub(crate) mod chain;
pub(crate) mod read;
pub(crate) mod reader;
pub(crate) mod repair;
pub(crate) mod shape;
pub(crate) mod usage;
pub(crate) mod writer;

pub use anchor::{anchor, verify_anchor, Anchor, AnchorKey, ANCHOR_VERSION};
pub use chain::MAX_RECORD_BYTES;
pub use read::{
    canonical_log, check_log, fingerprint, read_events, read_header, read_log, LogEvents, Repair,
    VerifyReport,
};
pub use repair::verify_log;
pub use usage::{usage_report, CostLine, UsageReport, UsageTotals};
pub use writer::{log_in_use, log_path, validate_run_id, FsyncMode, BATCH_SYNC_INTERVAL};
