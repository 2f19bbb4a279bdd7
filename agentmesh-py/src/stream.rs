//! Streaming readers: `read_log` (the core's `read_events`) and `history` (the core's
//! `for_each_state`) as Python iterators whose memory stays flat however long the log.
//!
//! Both fetch in batches with the GIL released and build each item's Python objects natively
//! ([`crate::pyser`]), so Python never parses JSON per event. An error found part-way (a
//! damaged record) is raised after the items before it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;

use agentmesh_core::{Error, ErrorKind, Event, LogEvents, RunState};
use pyo3::prelude::*;

use crate::errors::{detached, to_py};
use crate::pyser::{self, Strings};

/// Events fetched per trip without the GIL.
const EVENT_BATCH: usize = 512;
/// States sent per message by the history thread (states can be large: few at a time).
const STATE_BATCH: usize = 16;

/// The events of a log in seq order (canonical form: no `meta`), one dict each.
#[pyclass(module = "agentmesh._agentmesh", name = "EventStream")]
pub struct EventStream {
    events: Option<LogEvents>,
    /// Fetched, not yet converted: each becomes Python objects only when taken, so at most
    /// one event's objects exist at a time (less for the garbage collector to walk).
    ready: VecDeque<Event>,
    /// An error met after `ready`: raised once they are taken.
    error: Option<Error>,
    strings: Strings,
}

impl EventStream {
    /// Open the log (header and structure checks happen now, so a bad path raises here).
    pub fn open(py: Python<'_>, path: PathBuf) -> PyResult<EventStream> {
        let events = detached(py, || agentmesh_core::read_events(&path))?;
        Ok(EventStream {
            events: Some(events),
            ready: VecDeque::new(),
            error: None,
            strings: Strings::default(),
        })
    }

    fn fill(&mut self, py: Python<'_>) -> PyResult<()> {
        let Some(events) = self.events.as_mut() else {
            return Ok(());
        };
        let (batch, error) = detached(py, || {
            let mut batch = Vec::with_capacity(EVENT_BATCH);
            let mut error = None;
            while batch.len() < EVENT_BATCH {
                match events.next() {
                    Some(Ok(e)) => batch.push(e),
                    Some(Err(e)) => {
                        error = Some(e);
                        break;
                    }
                    None => break,
                }
            }
            Ok((batch, error))
        })?;
        if batch.len() < EVENT_BATCH {
            self.events = None; // ended (or failed): the file is closed now
        }
        self.error = error;
        self.ready.extend(batch);
        Ok(())
    }
}

#[pymethods]
impl EventStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if self.ready.is_empty() && self.error.is_none() {
            self.fill(py)?;
        }
        if let Some(mut event) = self.ready.pop_front() {
            event.meta = None; // canonical form
            return Ok(Some(event_to_py(py, &mut self.strings, &event)?));
        }
        match self.error.take() {
            Some(e) => Err(to_py(py, &e)),
            None => Ok(None),
        }
    }
}

/// One event as a Python dict: the one conversion of events for Python, shared by
/// `read_log` (which clears `meta` first) and a watched run's `take_committed` (which keeps it).
pub fn event_to_py(py: Python<'_>, strings: &mut Strings, event: &Event) -> PyResult<Py<PyAny>> {
    Ok(pyser::to_py_with(py, strings, event)?.unbind())
}

enum Msg {
    States(Vec<RunState>),
    End(agentmesh_core::Result<()>),
}

/// The states of a run's history, one dict each, computed in one pass by a thread of its
/// own that stays at most a batch or two ahead of the reader.
#[pyclass(module = "agentmesh._agentmesh", name = "StateStream")]
pub struct StateStream {
    /// In a mutex only to make the class `Sync`: `__next__` has `&mut self`.
    rx: Option<Mutex<Receiver<Msg>>>,
    ready: VecDeque<RunState>,
    error: Option<Error>,
    strings: Strings,
}

impl StateStream {
    /// Start the pass and wait for its first states, so that a log that cannot be read
    /// raises here.
    pub fn open(py: Python<'_>, path: PathBuf) -> PyResult<StateStream> {
        let (tx, rx) = sync_channel::<Msg>(1);
        std::thread::Builder::new()
            .name("agentmesh-history".to_owned())
            .spawn(move || {
                let mut batch = Vec::with_capacity(STATE_BATCH);
                let walked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    agentmesh_core::for_each_state(&path, &mut |state| {
                        batch.push(state);
                        if batch.len() == STATE_BATCH {
                            let full =
                                std::mem::replace(&mut batch, Vec::with_capacity(STATE_BATCH));
                            // The reader is gone (its iterator dropped): stop the pass.
                            tx.send(Msg::States(full)).map_err(|_| {
                                Error::new(ErrorKind::Internal, "history reader closed")
                            })?;
                        }
                        Ok(())
                    })
                }));
                let end = match walked {
                    Ok(result) => result,
                    Err(panic) => Err(Error::new(
                        ErrorKind::Internal,
                        format!(
                            "panic inside agentmesh: {}",
                            agentmesh_core::error::panic_message(panic.as_ref())
                        ),
                    )),
                };
                if !batch.is_empty() && tx.send(Msg::States(batch)).is_err() {
                    return;
                }
                let _ = tx.send(Msg::End(end));
            })
            .map_err(|e| {
                to_py(
                    py,
                    &Error::new(
                        ErrorKind::Io,
                        format!("could not start the history thread: {e}"),
                    ),
                )
            })?;
        let mut stream = StateStream {
            rx: Some(Mutex::new(rx)),
            ready: VecDeque::new(),
            error: None,
            strings: Strings::default(),
        };
        stream.fill(py)?;
        if stream.ready.is_empty() {
            if let Some(e) = stream.error.take() {
                return Err(to_py(py, &e));
            }
        }
        Ok(stream)
    }

    fn fill(&mut self, py: Python<'_>) -> PyResult<()> {
        let Some(rx) = self.rx.as_mut().and_then(|m| m.get_mut().ok()) else {
            return Ok(());
        };
        let msg = detached(py, move || {
            rx.recv()
                .map_err(|_| Error::new(ErrorKind::Internal, "the history thread stopped"))
        });
        match msg {
            Ok(Msg::States(states)) => self.ready.extend(states),
            Ok(Msg::End(result)) => {
                self.rx = None;
                self.error = result.err();
            }
            Err(e) => {
                self.rx = None;
                return Err(e);
            }
        }
        Ok(())
    }
}

#[pymethods]
impl StateStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        while self.ready.is_empty() && self.error.is_none() && self.rx.is_some() {
            self.fill(py)?;
        }
        if let Some(state) = self.ready.pop_front() {
            return Ok(Some(
                pyser::to_py_with(py, &mut self.strings, &state)?.unbind(),
            ));
        }
        match self.error.take() {
            Some(e) => Err(to_py(py, &e)),
            None => Ok(None),
        }
    }
}
