//! The last few KiB of a server's stderr, kept for crash messages.
//!
//! The server's stderr must be drained (a full pipe would block the server), but only its
//! end matters when it dies, so a bounded ring keeps memory flat however much it logs.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Bytes kept: enough for a stack trace, small enough to quote in an error.
pub(crate) const STDERR_TAIL_BYTES: usize = 8 * 1024;

#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    dropped: bool,
    closed: bool,
}

/// A bounded ring of stderr bytes, filled by a drain thread.
#[derive(Default)]
pub(crate) struct StderrTail {
    tail: Mutex<Tail>,
    closed: Condvar,
}

impl StderrTail {
    /// Reads `stderr` to its end (run on a thread of its own).
    pub(crate) fn drain(&self, mut stderr: impl Read) {
        let mut chunk = [0u8; 4096];
        loop {
            match stderr.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.push(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.closed = true;
        self.closed.notify_all();
    }

    fn push(&self, bytes: &[u8]) {
        let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = if bytes.len() > STDERR_TAIL_BYTES {
            tail.dropped = true;
            &bytes[bytes.len() - STDERR_TAIL_BYTES..]
        } else {
            bytes
        };
        let overflow = (tail.bytes.len() + bytes.len()).saturating_sub(STDERR_TAIL_BYTES);
        if overflow > 0 {
            tail.dropped = true;
            tail.bytes.drain(..overflow);
        }
        tail.bytes.extend(bytes);
    }

    /// Waits until the server closed its stderr (it exited), at most `timeout`, so a crash
    /// message includes its last words.
    pub(crate) fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        while !tail.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            tail = self
                .closed
                .wait_timeout(tail, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The kept bytes as text, trimmed; starts with `…` when earlier output was dropped.
    pub(crate) fn text(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        let (a, b) = tail.bytes.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if tail.dropped && !text.is_empty() {
            format!("…{text}")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_bytes() {
        let tail = StderrTail::default();
        let mut input = Vec::new();
        for i in 0..5000 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        tail.drain(&input[..]);
        let text = tail.text();
        assert!(text.starts_with('…'));
        assert!(text.ends_with("line 4999"));
        assert!(text.len() <= STDERR_TAIL_BYTES + '…'.len_utf8());
        assert!(!text.contains("line 10\n"));
    }

    #[test]
    fn short_output_is_kept_whole() {
        let tail = StderrTail::default();
        tail.drain(&b"  starting\nboom\n"[..]);
        assert_eq!(tail.text(), "starting\nboom");
        tail.wait_closed(Duration::from_secs(1));
    }
}
