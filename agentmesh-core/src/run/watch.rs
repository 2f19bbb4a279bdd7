//! Committed events kept for a host that watches its run (`on_event`, event streams): each
//! event as the log holds it (with its `meta`), handed out only once it is committed.

use crate::model::event::Event;
use crate::model::header::MetaExtra;

#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// Staged with the next write; dropped when the write fails.
    staged: Vec<Event>,
    /// Written (and durable per the fsync mode); not yet taken.
    committed: Vec<Event>,
}

impl Watch {
    /// A watch holding `events`, already committed at `at` (a new log's first events).
    pub(crate) fn committed(events: Vec<Event>, at: u64) -> Watch {
        let mut w = Watch::default();
        w.stage(events, at, &MetaExtra::NONE);
        w.commit();
        w
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
    pub(crate) fn commit(&mut self) {
        self.committed.append(&mut self.staged);
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
