//! A growable worker pool for the Rust driver.
//!
//! A worker is spawned whenever every existing one is busy, so activations of one step always
//! run in parallel, and an agent that never returns (its activation timed out) only pins its
//! own thread. Idle workers are reused across steps and runs, and exit when the pool drops.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    waiting: usize,
    closed: bool,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    cv: Condvar,
}

pub(crate) struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    pub(crate) fn new() -> Pool {
        Pool {
            inner: Arc::new(Inner::default()),
        }
    }

    /// Run `job` on a worker: an idle one, or a new one when all are busy, so a job never
    /// waits behind another. `Err` (the job dropped) when the OS refuses a new thread.
    pub(crate) fn submit(&self, job: Job) -> Result<(), String> {
        let mut s = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.queue.len() >= s.waiting {
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new()
                .name("agentmesh-worker".to_owned())
                .spawn(move || worker(inner));
            if let Err(e) = spawned {
                return Err(format!("could not start a thread for the activation: {e}"));
            }
        }
        s.queue.push_back(job);
        drop(s);
        self.inner.cv.notify_one();
        Ok(())
    }
}

fn worker(inner: Arc<Inner>) {
    loop {
        let job = {
            let mut s = inner.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = s.queue.pop_front() {
                    break job;
                }
                if s.closed {
                    return;
                }
                s.waiting += 1;
                s = inner.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                s.waiting -= 1;
            }
        };
        job();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.inner.cv.notify_all();
    }
}
