//! The one seam telemetry needs: something that sees each event a run commits, as the log
//! holds it (with `meta`), right after it is durable per the fsync mode.
//!
//! It is library code's hook (the telemetry crate implements it), not a place for a host's
//! callbacks: it runs on the committing thread, so an observer must only do cheap work and
//! hand the rest to its own thread. A panicking observer is detached and the run goes on.

use std::path::Path;

use crate::model::event::Event;
use crate::model::header::LogHeader;

/// Sees the events a run commits (docs/telemetry.md).
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// `events` were just committed, in commit order (a step's events in canonical order, a
    /// completion's as it arrived), each with its `meta`. They are the observer's to keep
    /// (hand them to another thread rather than work on them here).
    fn committed(&self, header: &LogHeader, events: Vec<Event>);

    /// The run goes on from its log at `log` (resume, retry): what the log held before is
    /// there to read; only what is appended from now on is passed to
    /// [`Observer::committed`].
    fn resumed(&self, header: &LogHeader, log: &Path) {
        let _ = (header, log);
    }
}
