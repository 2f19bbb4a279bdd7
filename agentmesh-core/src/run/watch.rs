//! Committed events for a host that watches its run (`on_event`, event streams) and for an
//! [`Observer`] (telemetry): each event as the log holds it (with its `meta`), handed out
//! only once it is committed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::observe::Observer;
use crate::model::event::Event;
use crate::model::header::{LogHeader, MetaExtra};

#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// Staged with the next write; dropped when the write fails.
    staged: Vec<Event>,
    /// Written (and durable per the fsync mode); not yet taken.
    committed: Vec<Event>,
    /// Whether committed events are kept for [`Watch::take`] (a watching host).
    keep: bool,
    /// Sees each commit; detached when it panics.
    observer: Option<Arc<dyn Observer>>,
}

impl Watch {
    /// A watch for a host that takes events (`keep`) and/or an observer; `None` for neither.
    pub(crate) fn new(keep: bool, observer: Option<Arc<dyn Observer>>) -> Option<Watch> {
        (keep || observer.is_some()).then(|| Watch {
            keep,
            observer,
            ..Watch::default()
        })
    }

    /// Keep committed events for [`Watch::take`] from now on.
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }

    /// The run goes on from its log at `path`.
    pub(crate) fn resumed(&mut self, header: &LogHeader, path: &std::path::Path) {
        if let Some(o) = &self.observer {
            if catch_unwind(AssertUnwindSafe(|| o.resumed(header, path))).is_err() {
                self.observer = None;
            }
        }
    }

    /// Events staged at `at` (with a completion's measured duration).
    pub(crate) fn stage(
        &mut self,
        events: impl IntoIterator<Item = Event>,
        at: u64,
        extra: &MetaExtra,
    ) {
        self.staged.extend(events.into_iter().map(|mut e| {
            e.meta = Some(extra.at(at));
            e
        }));
    }

    /// The staged events were written.
    pub(crate) fn commit(&mut self, header: &LogHeader) {
        if let (Some(o), false) = (&self.observer, self.staged.is_empty()) {
            // The observer owns what it is given: a copy only when the host keeps them too.
            let events = if self.keep {
                self.staged.clone()
            } else {
                std::mem::take(&mut self.staged)
            };
            if catch_unwind(AssertUnwindSafe(|| o.committed(header, events))).is_err() {
                self.observer = None;
            }
        }
        if self.keep {
            self.committed.append(&mut self.staged);
        } else {
            self.staged.clear();
        }
    }

    /// The staged events were not written.
    pub(crate) fn drop_staged(&mut self) {
        self.staged.clear();
    }

    /// Committed events not taken yet, in commit order.
    pub(crate) fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.committed)
    }
}
