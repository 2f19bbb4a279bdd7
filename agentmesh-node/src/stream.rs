//! Reads that stream: a log's events (`readLog`) and its history (`history`), batch by batch,
//! in flat memory.
//!
//! A producer thread walks the log with the core's streaming readers (`read_events`,
//! `for_each_state`) and sends batches over a channel that holds a few: it works ahead while
//! JavaScript takes the last one, and waits when JavaScript does not ask. Each
//! `next()` is a Promise (an `AsyncTask` receiving on libuv's thread pool); the batch becomes
//! JavaScript on the JS thread when it resolves. An error ends the stream: the `next()` that
//! reaches it rejects with the core's error. `close()` (or the stream being collected) drops
//! the receiving end, and the producer stops at its next send.
//!
//! Events cross as text: a batch is one JSON array of canonical events — the lines of the
//! core's `canonical_log`, the same events `read_events` gives in the same order, spliced from
//! the records without parsing their bodies (2.4× faster than parsing and re-serializing each
//! `Event`, measured) — which `JSON.parse` turns into objects faster than Node-API can build
//! them property by property; `data.seed` of `runStarted` (64 bits, which a JS number cannot
//! hold) also comes as a decimal string, set as a `bigint` by lib/log.js.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use agentmesh_core::{Error, ErrorKind, EventData};
use napi::bindgen_prelude::AsyncTask;
use napi_derive::napi;

use crate::errors::panicked;
use crate::objects::RunState;
use crate::task::{spawn, CoreTask};

/// Events per batch, at most; a batch also ends once its text passes [`BATCH_BYTES`].
const BATCH_EVENTS: usize = 2048;
const BATCH_BYTES: usize = 64 << 10;
/// Batches the reader thread may have ready before JavaScript takes them.
const AHEAD: usize = 4;
/// States per history batch.
const BATCH_STATES: usize = 64;

/// The receiving end of a producer, shared by the stream and its pending `next()`.
struct Shared<T> {
    /// Taken by a `next()` while it waits (so `close()` never waits for it), then put back.
    rx: Mutex<Option<Receiver<agentmesh_core::Result<T>>>>,
    closed: AtomicBool,
}

type Batches<T> = Arc<Shared<T>>;

/// Start `produce` on its own thread, sending into a channel of [`AHEAD`] batches.
fn producer<T: Send + 'static>(
    name: &str,
    produce: impl FnOnce(&SyncSender<agentmesh_core::Result<T>>) -> agentmesh_core::Result<()>
        + Send
        + 'static,
) -> agentmesh_core::Result<Batches<T>> {
    let (tx, rx) = sync_channel(AHEAD);
    thread::Builder::new()
        .name(format!("agentmesh-{name}"))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce(&tx)))
                .unwrap_or_else(|p| Err(panicked(p)));
            if let Err(e) = outcome {
                // Nobody listening any more is fine.
                let _ = tx.send(Err(e));
            }
        })
        .map_err(|e| Error::new(ErrorKind::Io, format!("starting a reader thread: {e}")))?;
    Ok(Arc::new(Shared {
        rx: Mutex::new(Some(rx)),
        closed: AtomicBool::new(false),
    }))
}

/// The next batch, or `None` at the end (or after `close`). Blocks (on the thread pool).
fn receive<T>(batches: &Batches<T>) -> agentmesh_core::Result<Option<T>> {
    let taken = batches.rx.lock().ok().and_then(|mut rx| rx.take());
    let Some(rx) = taken else {
        return Ok(None); // closed, finished, or another next() is waiting
    };
    let got = rx.recv();
    if !batches.closed.load(Ordering::SeqCst) {
        if let Ok(mut slot) = batches.rx.lock() {
            *slot = Some(rx);
        }
    }
    match got {
        Ok(Ok(batch)) => Ok(Some(batch)),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(None), // the producer finished
    }
}

/// Stop: the receiver is dropped now, or by the waiting `next()` when it returns.
fn close<T>(batches: &Batches<T>) {
    batches.closed.store(true, Ordering::SeqCst);
    if let Ok(mut rx) = batches.rx.lock() {
        *rx = None;
    }
}

/// A batch of events: a JSON array of canonical events, and the `runStarted` seed (index in
/// the batch, decimal digits) when the batch holds that event.
#[napi(object, object_from_js = false)]
pub struct EventBatch {
    /// `[event, ...]` as JSON text.
    pub events: String,
    /// Index of the `runStarted` event in `events`, if it is there.
    pub run_started: Option<u32>,
    /// Its `data.seed`, exactly (decimal).
    pub seed: Option<String>,
}

impl EventBatch {
    fn empty() -> EventBatch {
        EventBatch {
            events: String::from("["),
            run_started: None,
            seed: None,
        }
    }
}

/// The canonical log (`canonical_log`: the header line, then each event's canonical JSON on a
/// line, in seq order — spliced from the records without parsing their bodies, the core's
/// fastest read) cut into batches of events.
struct Batcher<'a> {
    tx: &'a SyncSender<agentmesh_core::Result<EventBatch>>,
    /// The line being received.
    line: Vec<u8>,
    batch: EventBatch,
    count: usize,
    /// Lines seen (the first is the header).
    lines: u64,
    /// The stream was closed: stop reading.
    closed: bool,
}

impl Batcher<'_> {
    fn line(&mut self) -> agentmesh_core::Result<()> {
        self.lines += 1;
        if self.lines == 1 {
            return Ok(()); // the header
        }
        let text = std::str::from_utf8(&self.line).map_err(|e| {
            Error::new(ErrorKind::Internal, format!("canonical log not UTF-8: {e}"))
        })?;
        if self.lines == 2 {
            // seq 1: `runStarted`, whose 64-bit seed JavaScript reads from its digits.
            if let Ok(event) = agentmesh_core::Event::from_json(text) {
                if let EventData::RunStarted(body) = &event.data {
                    self.batch.run_started = Some(self.count as u32);
                    self.batch.seed = Some(body.seed.to_string());
                }
            }
        }
        if self.count > 0 {
            self.batch.events.push(',');
        }
        self.batch.events.push_str(text);
        self.count += 1;
        if self.count == BATCH_EVENTS || self.batch.events.len() >= BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    /// Send the batch so far (if any).
    fn send(&mut self) -> agentmesh_core::Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let mut full = std::mem::replace(&mut self.batch, EventBatch::empty());
        full.events.push(']');
        self.count = 0;
        if self.tx.send(Ok(full)).is_err() {
            self.closed = true;
            return Err(Error::new(ErrorKind::Internal, "read stream closed"));
        }
        Ok(())
    }
}

impl std::io::Write for Batcher<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..nl]);
            rest = &rest[nl + 1..];
            let done = self.line();
            self.line.clear();
            done.map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The events of a log in canonical order, batch by batch (see the module docs).
#[napi]
pub struct NativeEventStream {
    batches: Batches<EventBatch>,
}

#[napi]
impl NativeEventStream {
    /// Stream the events of the log at `path`. Errors (from the `next()` that reaches them):
    /// `LOG_CORRUPT`, `IO`.
    #[napi(factory, catch_unwind)]
    pub fn open(env: &napi::Env, path: String) -> napi::Result<NativeEventStream> {
        use crate::errors::OrThrow;
        let batches = producer("read-log", move |tx| {
            let mut out = Batcher {
                tx,
                line: Vec::new(),
                batch: EventBatch::empty(),
                count: 0,
                lines: 0,
                closed: false,
            };
            let read = agentmesh_core::canonical_log(&path, &mut out);
            if out.closed {
                return Ok(());
            }
            read?;
            out.send()?;
            Ok(())
        })
        .or_throw(env)?;
        Ok(NativeEventStream { batches })
    }

    /// The next batch, or `null` at the end.
    #[napi(ts_return_type = "Promise<EventBatch | null>")]
    pub fn next(&self) -> AsyncTask<CoreTask<Option<EventBatch>>> {
        let batches = self.batches.clone();
        spawn(move || receive(&batches))
    }

    /// Stop reading (idempotent): the reader thread ends and the file is closed.
    #[napi]
    pub fn close(&self) {
        close(&self.batches);
    }
}

/// The history of a run (its state at seq 1, after every step, at the end), batch by batch.
#[napi]
pub struct NativeHistoryStream {
    batches: Batches<Vec<RunState>>,
}

#[napi]
impl NativeHistoryStream {
    /// Stream the history of the log at `path`. Errors (from a `next()`): `LOG_CORRUPT`,
    /// `NONDETERMINISM`, `IO`.
    #[napi(factory, catch_unwind)]
    pub fn open(env: &napi::Env, path: String) -> napi::Result<NativeHistoryStream> {
        use crate::errors::OrThrow;
        let batches = producer("history", move |tx| {
            let mut batch = Vec::with_capacity(BATCH_STATES);
            let mut closed = false;
            let walked = agentmesh_core::for_each_state(&path, &mut |state| {
                batch.push(RunState::from(state));
                if batch.len() == BATCH_STATES {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_STATES));
                    if tx.send(Ok(full)).is_err() {
                        // A closed stream stops the walk.
                        closed = true;
                        return Err(Error::new(ErrorKind::Internal, "history stream closed"));
                    }
                }
                Ok(())
            });
            if closed {
                return Ok(());
            }
            walked?;
            if !batch.is_empty() {
                let _ = tx.send(Ok(batch));
            }
            Ok(())
        })
        .or_throw(env)?;
        Ok(NativeHistoryStream { batches })
    }

    /// The next batch of states, or `null` at the end.
    #[napi(ts_return_type = "Promise<Array<RunState> | null>")]
    pub fn next(&self) -> AsyncTask<CoreTask<Option<Vec<RunState>>>> {
        let batches = self.batches.clone();
        spawn(move || receive(&batches))
    }

    /// Stop reading (idempotent).
    #[napi]
    pub fn close(&self) {
        close(&self.batches);
    }
}
