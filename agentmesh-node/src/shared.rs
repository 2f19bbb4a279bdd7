//! The open run behind a mutex, shared by `NativeRun` (the driver, on the JS thread) and the
//! call protocol (`calls.rs`: `NativeCalls` on the JS thread, native provider calls on their
//! own threads).
//!
//! Why a lock and not `&mut NativeRun`: a native LLM call runs on a thread of its own and
//! records its result there, while the driver keeps polling on the JS thread; and napi-rs
//! refuses a second `&mut` borrow of a class instance while one is live. Every holder takes
//! the lock for one piece of bookkeeping (a poll, a commit, one `call_start` or
//! `call_complete`) and never across JavaScript, user code or a network call.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

use agentmesh_core::{Error, ErrorKind, Run};

use crate::errors::{invalid_argument, panicked};

/// What the lock guards.
pub struct RunCell {
    run: Option<Run>,
    /// A caught panic left the run's state unknown: every later use is refused.
    poisoned: bool,
    /// Activations whose agent returned (settled): their calls are closed, so a call started
    /// or finished later (an unawaited Promise, a native call still in flight) is refused
    /// with `INVALID_COMPLETION` and nothing is logged, whenever the driver records the
    /// completion itself.
    ended: HashSet<u64>,
}

/// The shared handle.
pub type SharedRun = Arc<Mutex<RunCell>>;

/// A new handle on `run`.
pub fn shared(run: Run) -> SharedRun {
    Arc::new(Mutex::new(RunCell {
        run: Some(run),
        poisoned: false,
        ended: HashSet::new(),
    }))
}

/// The lock; a panic is caught inside it ([`with`]), so a poisoned mutex only means a
/// panic outside core work: the cell is still consistent.
pub fn lock(cell: &SharedRun) -> MutexGuard<'_, RunCell> {
    cell.lock().unwrap_or_else(|p| p.into_inner())
}

/// Work on the open run under the lock. A panic half-way leaves the run's state unknown: it
/// is caught, reported as `INTERNAL`, and the run refuses every later call.
///
/// Errors: `INVALID_ARGUMENT` (the run is closed), `INTERNAL` (after a panic), and `f`'s.
pub fn with<T>(
    cell: &SharedRun,
    f: impl FnOnce(&mut Run) -> agentmesh_core::Result<T>,
) -> agentmesh_core::Result<T> {
    let mut guard = lock(cell);
    guard.with(f)
}

impl RunCell {
    /// [`with`] on a cell already locked.
    pub fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Run) -> agentmesh_core::Result<T>,
    ) -> agentmesh_core::Result<T> {
        if self.poisoned {
            return Err(Error::new(
                ErrorKind::Internal,
                "the run is unusable after an internal panic",
            ));
        }
        let run = self
            .run
            .as_mut()
            .ok_or_else(|| invalid_argument("the run is closed (its log was released)"))?;
        match catch_unwind(AssertUnwindSafe(|| f(run))) {
            Ok(result) => result,
            Err(panic) => {
                self.poisoned = true;
                Err(panicked(panic))
            }
        }
    }

    /// Take the run out (`close`): dropping it releases the log file.
    pub fn take(&mut self) -> Option<Run> {
        self.run.take()
    }

    /// Close the calls of activation `act` (its agent returned).
    pub fn end(&mut self, act: u64) {
        self.ended.insert(act);
    }

    /// `INVALID_COMPLETION` when the calls of `act` are closed.
    pub fn check_open(&self, act: u64) -> agentmesh_core::Result<()> {
        if self.ended.contains(&act) {
            return Err(ended(act));
        }
        Ok(())
    }
}

/// The error for a call of an activation whose agent already returned.
pub fn ended(act: u64) -> Error {
    Error::new(
        ErrorKind::InvalidCompletion,
        format!(
            "call refused: activation {act} ended (its agent returned); a call made or finished after that is not recorded"
        ),
    )
}
