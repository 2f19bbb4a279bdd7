//! The telemetry thread: the observer only hands each commit's events to it through a bounded
//! queue (a full queue drops them, counted and warned about, rather than slow the run), and
//! this thread turns them into spans, metrics and log lines, and hands finished spans to the
//! exporter's thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};

use agentmesh_core::{read_log, Event, EventData, LogHeader, Observer};

use crate::metrics::Metrics;
use crate::otlp::OtlpExporter;
use crate::sampling::Sampler;
use crate::spans::{Category, Span, SpanBuilder};

pub(crate) enum Msg {
    /// One commit of a run; the header comes with the commit holding `runStarted`.
    Events {
        header: Option<Box<LogHeader>>,
        events: Vec<Event>,
    },
    /// A run goes on from its log, which held `history` then.
    Resumed {
        header: Box<LogHeader>,
        history: Vec<Event>,
    },
    /// Answer once everything sent before is handled.
    Sync(SyncSender<()>),
}

/// Events the telemetry thread may fall behind by before new ones are dropped.
const MAX_PENDING: usize = 1 << 20;
/// Events that make the observer wake the thread (else it looks every [`TICK`]).
const WAKE_AT: usize = 512;
/// How often the thread looks at what is pending.
const TICK: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Default)]
struct Pending {
    msgs: Vec<Msg>,
    events: usize,
}

/// The observer meshes and runs get. The committing thread only appends to a buffer; the
/// telemetry thread takes it every [`TICK`], or when woken: at [`WAKE_AT`] events, a run's
/// end, a resume or a sync. One wake-up per commit would cost more than the commit.
///
/// The events come back once handled and are freed on the committing thread, at its next
/// commit: memory is freed by the thread that allocated it, so the run's thread never waits
/// on the allocator's lock while the telemetry thread frees (the glibc arenas); when the
/// runs go quiet the telemetry thread frees them itself.
pub(crate) struct Feed {
    pending: Mutex<Pending>,
    wake: SyncSender<()>,
    pub(crate) dropped: AtomicU64,
    /// Handled events, to be freed by the committing thread.
    handled: Mutex<Vec<Vec<Event>>>,
    /// Whether `handled` holds anything (checked at every commit without the lock).
    has_handled: AtomicBool,
    /// Commits so far (the telemetry thread frees `handled` itself once this stops moving).
    commits: AtomicU64,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").finish_non_exhaustive()
    }
}

impl Feed {
    pub(crate) fn new() -> (Feed, Receiver<()>) {
        let (wake, rx) = std::sync::mpsc::sync_channel(1);
        let feed = Feed {
            pending: Mutex::new(Pending::default()),
            wake,
            dropped: AtomicU64::new(0),
            handled: Mutex::new(Vec::new()),
            has_handled: AtomicBool::new(false),
            commits: AtomicU64::new(0),
        };
        (feed, rx)
    }

    /// Queue `msg` (of `events` events); false when it was dropped.
    pub(crate) fn push(&self, msg: Msg, events: usize, wake: bool) -> bool {
        let wake = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if events > 0 && p.events + events > MAX_PENDING {
                return false;
            }
            p.events += events;
            p.msgs.push(msg);
            wake || p.events >= WAKE_AT
        };
        if wake {
            // Full: a wake-up is already pending.
            let _ = self.wake.try_send(());
        }
        true
    }

    /// Hand a batch's handled events back, in one lock.
    fn give_back(&self, batch: Vec<Vec<Event>>) {
        if batch.is_empty() {
            return;
        }
        self.handled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(batch);
        self.has_handled.store(true, Ordering::Release);
    }

    /// Free what was handled (on the calling thread); a flag check when there is nothing.
    fn free_handled(&self) {
        if !self.has_handled.swap(false, Ordering::Acquire) {
            return;
        }
        let handled = std::mem::take(&mut *self.handled.lock().unwrap_or_else(|p| p.into_inner()));
        drop(handled);
    }

    fn take(&self) -> Vec<Msg> {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.events = 0;
        std::mem::take(&mut p.msgs)
    }
}

impl Observer for Feed {
    fn committed(&self, header: &LogHeader, events: Vec<Event>) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.free_handled();
        if events.is_empty() {
            return;
        }
        let header = events
            .iter()
            .any(|e| matches!(e.data, EventData::RunStarted(_)))
            .then(|| Box::new(header.clone()));
        let ends = events.iter().any(|e| e.kind().ends_run());
        let n = events.len();
        let msg = Msg::Events { header, events };
        if !self.push(msg, n, ends) {
            let n = n as u64;
            let before = self.dropped.fetch_add(n, Ordering::Relaxed);
            if before == 0 || before.leading_zeros() != (before + n).leading_zeros() {
                tracing::warn!(
                    target: "agentmesh::telemetry",
                    dropped = before + n,
                    "telemetry events dropped: the telemetry thread is behind"
                );
            }
        }
    }

    fn resumed(&self, header: &LogHeader, log: &std::path::Path) {
        // Read now, on the resuming thread: read later, the log would already hold what the
        // resumed run appends (and those events arrive as commits of their own).
        let history = read_log(log).map(|(_, events)| events).unwrap_or_default();
        let msg = Msg::Resumed {
            header: Box::new(header.clone()),
            history,
        };
        self.push(msg, 0, true);
    }
}

struct RunSpans {
    builder: SpanBuilder,
    sampled: bool,
    /// Whether a span of an always-traced agent was kept (its run span must be too).
    kept_some: bool,
}

pub(crate) struct Worker {
    pub(crate) feed: Arc<Feed>,
    pub(crate) wake: Receiver<()>,
    pub(crate) sampler: Sampler,
    pub(crate) capture_content: bool,
    pub(crate) exporter: Option<Arc<OtlpExporter>>,
    pub(crate) metrics: Arc<Mutex<Metrics>>,
}

impl Worker {
    pub(crate) fn run(self) {
        let mut runs: HashMap<Arc<str>, RunSpans> = HashMap::new();
        let mut commits = 0;
        loop {
            let open = !matches!(
                self.wake.recv_timeout(TICK),
                Err(RecvTimeoutError::Disconnected)
            );
            let mut handled = Vec::new();
            for msg in self.feed.take() {
                if let Some(events) = self.handle(&mut runs, msg) {
                    handled.push(events);
                }
            }
            self.feed.give_back(handled);
            // No commit since the last look: no committing thread is there to free them.
            let now = self.feed.commits.load(Ordering::Relaxed);
            if now == commits {
                self.feed.free_handled();
            }
            commits = now;
            // Every handle of the telemetry is gone (the feed itself is held here).
            if !open || Arc::strong_count(&self.feed) == 1 {
                return;
            }
        }
    }

    /// Handle `msg`; the events it carried, to be freed by their thread.
    fn handle(&self, runs: &mut HashMap<Arc<str>, RunSpans>, msg: Msg) -> Option<Vec<Event>> {
        match msg {
            Msg::Events { header, events } => {
                self.events(runs, header, &events);
                Some(events)
            }
            Msg::Resumed { header, history } => {
                // Rebuild what was open when the run stopped, so what ends now nests under
                // it; what ended before was the earlier process's to send.
                let mut run = self.run_spans(&header);
                let mut discard = Vec::new();
                for e in &history {
                    run.builder.push(e, &mut discard);
                    discard.clear();
                }
                runs.insert(Arc::from(header.run_id.as_str()), run);
                None
            }
            Msg::Sync(done) => {
                let _ = done.try_send(());
                None
            }
        }
    }

    fn run_spans(&self, header: &LogHeader) -> RunSpans {
        let mut builder = SpanBuilder::new(header);
        if !self.capture_content {
            builder = builder.without_values();
        }
        let sampled = self.sampler.samples(builder.trace_id());
        RunSpans {
            builder,
            sampled,
            kept_some: false,
        }
    }

    fn events(
        &self,
        runs: &mut HashMap<Arc<str>, RunSpans>,
        header: Option<Box<LogHeader>>,
        events: &[Event],
    ) {
        // The run's id by reference: the events' own `Arc` is the run thread's to count.
        let Some(run_id) = events.first().map(|e| &*e.run_id) else {
            return;
        };
        if !runs.contains_key(run_id) {
            match header {
                Some(h) => {
                    runs.insert(Arc::from(run_id), self.run_spans(&h));
                }
                // A run first seen mid-way (its start was dropped from a full queue):
                // nothing to hang its spans on.
                None => return,
            }
        }
        let run = runs.get_mut(run_id).expect("inserted above");
        crate::logs::emit(run_id, events);
        let mut ended = Vec::new();
        let mut finished = false;
        for e in events {
            run.builder.push(e, &mut ended);
            finished |= e.kind().ends_run();
        }
        {
            let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
            m.record_spans(&ended);
            m.record_events(run_id, events);
        }
        if self.capture_content {
            ended.iter_mut().for_each(crate::content::attach);
        }
        let kept = keep(&self.sampler, run, ended);
        if finished {
            runs.remove(run_id);
        }
        if let Some(exporter) = &self.exporter {
            exporter.send(&kept);
            if finished {
                // The run's last spans go now, not at the next batch; nobody waits for them.
                exporter.flush_soon();
            }
        }
    }
}

/// The spans of `ended` that leave the process: all of a sampled run's, else those of
/// always-traced agents and the run span above them.
fn keep(sampler: &Sampler, run: &mut RunSpans, ended: Vec<Span>) -> Vec<Span> {
    if run.sampled {
        return ended;
    }
    if sampler.always.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for s in ended {
        let keep = match s.category {
            Category::Workflow => run.kept_some,
            _ => s
                .lane
                .as_deref()
                .is_some_and(|l| sampler.always.contains(l)),
        };
        if keep {
            run.kept_some = true;
            out.push(s);
        }
    }
    out
}
