//! Rate limits of a provider (docs/providers.md "Rate limits"): requests and tokens per
//! minute, per model, as token buckets that refill continuously. A call waits until its
//! request and its tokens are free; the wait is timing, so it is recorded in the call's
//! `meta.call.rateWaitUs` only, never in canonical bytes.
//!
//! Buckets belong to the provider, so every run of a mesh shares them; providers given the
//! same `rateLimitGroup` share them across meshes in the process (one organisation's key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Requests and tokens per minute (either may be unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// Requests per minute (each attempt is a request).
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute (a call's estimated prompt plus its `maxTokens`).
    pub tokens_per_minute: Option<u64>,
}

impl RateLimits {
    /// Whether nothing is limited.
    pub fn is_none(&self) -> bool {
        self.requests_per_minute.is_none() && self.tokens_per_minute.is_none()
    }
}

/// A bucket of `capacity` units refilled at `capacity` per minute. Taking more than is
/// there leaves a debt that later takers wait out first, so waiting callers are served in
/// the order they asked.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(per_minute: u64) -> Bucket {
        let capacity = per_minute as f64;
        Bucket {
            capacity,
            per_sec: capacity / 60.0,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Take `n` units (at most the capacity) now; how long the caller must wait before
    /// they are its.
    fn take(&self, n: u64) -> Duration {
        let n = (n as f64).min(self.capacity);
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refilled = s.0 + now.saturating_duration_since(s.1).as_secs_f64() * self.per_sec;
        let level = refilled.min(self.capacity) - n;
        *s = (level, now);
        if level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-level / self.per_sec)
        }
    }
}

/// A model's request and token buckets (each only when limited).
type Buckets = Arc<(Option<Bucket>, Option<Bucket>)>;

/// The buckets of one provider (or group), per model.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    limits: RateLimits,
    models: Mutex<HashMap<String, Buckets>>,
}

impl Limiter {
    /// The limiter for `limits`: the process-wide one of `group` when given (the first
    /// provider to name a group sets its limits), else a new one.
    pub(crate) fn new(limits: RateLimits, group: Option<&str>) -> Arc<Limiter> {
        let make = || {
            Arc::new(Limiter {
                limits,
                models: Mutex::default(),
            })
        };
        let Some(group) = group else {
            return make();
        };
        static GROUPS: OnceLock<Mutex<HashMap<String, Arc<Limiter>>>> = OnceLock::new();
        let mut groups = GROUPS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        groups.entry(group.to_owned()).or_insert_with(make).clone()
    }

    fn buckets(&self, model: &str) -> Buckets {
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        models
            .entry(model.to_owned())
            .or_insert_with(|| {
                Arc::new((
                    self.limits
                        .requests_per_minute
                        .map(|r| Bucket::new(u64::from(r))),
                    self.limits.tokens_per_minute.map(Bucket::new),
                ))
            })
            .clone()
    }

    /// How long a request for `model` spending `tokens` must wait (its units are taken now).
    pub(crate) fn wait_for(&self, model: &str, tokens: u64, first_attempt: bool) -> Duration {
        if self.limits.is_none() {
            return Duration::ZERO;
        }
        let b = self.buckets(model);
        let requests = b.0.as_ref().map_or(Duration::ZERO, |r| r.take(1));
        // Tokens are taken once per call, not per retry of it.
        let tokens = match (&b.1, first_attempt) {
            (Some(t), true) => t.take(tokens),
            _ => Duration::ZERO,
        };
        requests.max(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn requests_beyond_the_minute_wait_their_turn() {
        let l = Limiter::new(
            RateLimits {
                requests_per_minute: Some(60),
                tokens_per_minute: None,
            },
            None,
        );
        for _ in 0..60 {
            assert!(l.wait_for("m", 0, true).is_zero());
        }
        // One a second after the burst, in the order asked.
        let w1 = secs(l.wait_for("m", 0, true));
        let w2 = secs(l.wait_for("m", 0, true));
        assert!((0.9..=1.0).contains(&w1), "{w1}");
        assert!((1.9..=2.0).contains(&w2), "{w2}");
        // Another model has its own buckets.
        assert!(l.wait_for("other", 0, true).is_zero());
    }

    #[test]
    fn tokens_are_taken_once_per_call_and_capped_at_the_capacity() {
        let l = Limiter::new(
            RateLimits {
                requests_per_minute: None,
                tokens_per_minute: Some(6_000),
            },
            None,
        );
        assert!(l.wait_for("m", 6_000, true).is_zero());
        // A retry takes no tokens; a new call of 100 tokens waits a second for them.
        assert!(l.wait_for("m", 100, false).is_zero());
        let w = secs(l.wait_for("m", 100, true));
        assert!((0.9..=1.0).contains(&w), "{w}");
        // A call larger than a minute's tokens waits for a full bucket, not forever.
        let big = secs(l.wait_for("m", 1_000_000, true));
        assert!(big <= 61.0, "{big}");
    }

    #[test]
    fn a_group_is_shared_across_providers() {
        let limits = RateLimits {
            requests_per_minute: Some(1),
            tokens_per_minute: None,
        };
        let a = Limiter::new(limits, Some("rate-test-group"));
        let b = Limiter::new(limits, Some("rate-test-group"));
        assert!(a.wait_for("m", 0, true).is_zero());
        assert!(!b.wait_for("m", 0, true).is_zero());
    }
}
