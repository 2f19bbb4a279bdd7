//! A counting semaphore with a deadline: a provider's concurrency limit.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

/// At most `permits` holders at once.
#[derive(Debug)]
pub(crate) struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A held permit, given back on drop.
#[derive(Debug)]
pub(crate) struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            free: Mutex::new(permits),
            freed: Condvar::new(),
        }
    }

    /// A permit, or `None` if none came free before `deadline`.
    pub fn acquire(&self, deadline: Instant) -> Option<Permit<'_>> {
        // A panic elsewhere cannot leave the count inconsistent: recover from poisoning.
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            let left = deadline.checked_duration_since(Instant::now())?;
            if left.is_zero() {
                return None;
            }
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *free -= 1;
        Some(Permit(self))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(PoisonError::into_inner);
        *free += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn limits_holders_and_times_out() {
        let s = Semaphore::new(2);
        let soon = || Instant::now() + Duration::from_millis(20);
        let a = s.acquire(soon()).unwrap();
        let _b = s.acquire(soon()).unwrap();
        assert!(s.acquire(soon()).is_none());
        drop(a);
        assert!(s.acquire(soon()).is_some());
    }

    #[test]
    fn never_more_than_the_limit_in_parallel() {
        let s = Semaphore::new(2);
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| {
                    let _p = s.acquire(Instant::now() + Duration::from_secs(30)).unwrap();
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        let most = most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} holders at once");
    }
}
