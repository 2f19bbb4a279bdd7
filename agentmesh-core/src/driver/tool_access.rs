//! Who may call a tool, and how often (docs/tools.md "Access"): the registry's rules, checked
//! by every host before a tool call is recorded or made.
//!
//! The allowlist is exact: an agent's registered name, compared byte for byte. A refused
//! call is `POLICY_DENIED` and nothing is recorded, so the refusal repeats identically on a
//! resume or a replay. The rate limit only delays live calls (a call the log answers is not
//! made, so it is not counted): it changes when a tool runs, never what the log holds.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// A tool's access rules: the agents allowed to call it (any, unless restricted) and an
/// optional rate limit. Clones share one rate limiter.
#[derive(Debug, Clone, Default)]
pub struct ToolAccess {
    agents: Option<BTreeSet<String>>,
    rate: Option<Arc<RateLimit>>,
}

/// At most `calls` live calls start in any window of `per`.
#[derive(Debug)]
struct RateLimit {
    calls: u32,
    per: Duration,
    /// The start times of the last `calls` calls (some may lie in the future: reserved).
    starts: Mutex<VecDeque<Instant>>,
}

impl ToolAccess {
    /// Any agent may call the tool, as often as it likes.
    pub fn any() -> ToolAccess {
        ToolAccess::default()
    }

    /// Only the agents named may call the tool (an empty list: none may).
    pub fn only<I, S>(agents: I) -> ToolAccess
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ToolAccess {
            agents: Some(agents.into_iter().map(Into::into).collect()),
            rate: None,
        }
    }

    /// At most `calls` live calls of the tool start in any window of `per` (over all the
    /// runs of the mesh it is registered with); a call over the limit waits for its slot.
    ///
    /// Errors: `INVALID_ARGUMENT` when `calls` or `per` is zero.
    pub fn rate_limit(mut self, calls: u32, per: Duration) -> Result<ToolAccess> {
        if calls == 0 || per.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "a tool's rate limit is at least 1 call per a positive duration, not {calls} per {} ms",
                    per.as_millis()
                ),
            ));
        }
        self.rate = Some(Arc::new(RateLimit {
            calls,
            per,
            starts: Mutex::new(VecDeque::with_capacity(calls.min(1024) as usize)),
        }));
        Ok(self)
    }

    /// The agents allowed, `None` when any agent is.
    pub fn agents(&self) -> Option<&BTreeSet<String>> {
        self.agents.as_ref()
    }

    /// The rate limit as `(calls, per)`, if any.
    pub fn rate(&self) -> Option<(u32, Duration)> {
        self.rate.as_ref().map(|r| (r.calls, r.per))
    }

    /// Whether `agent` may call tool `tool`.
    ///
    /// Errors: `POLICY_DENIED` naming the tool, the agent and the agents allowed.
    pub fn check(&self, tool: &str, agent: &str) -> Result<()> {
        match &self.agents {
            Some(allowed) if !allowed.contains(agent) => {
                let list = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                };
                Err(Error::new(
                    ErrorKind::PolicyDenied,
                    format!(
                        "agent '{agent}' may not call tool '{tool}' (agents allowed: {list}); nothing was recorded"
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Reserve the next start slot of a live call: how long the caller must wait before
    /// making it (zero without a rate limit, or while under it).
    pub fn reserve(&self) -> Duration {
        let Some(rate) = &self.rate else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut starts = rate.starts.lock().unwrap_or_else(|p| p.into_inner());
        let start = if starts.len() < rate.calls as usize {
            now
        } else {
            // The oldest of the last `calls` starts; this one may start `per` after it.
            let oldest = starts.pop_front().expect("full window");
            (oldest + rate.per).max(now)
        };
        starts.push_back(start);
        start.saturating_duration_since(now)
    }

    /// [`ToolAccess::reserve`] a slot and sleep until it.
    pub fn wait_for_slot(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_is_exact() {
        let a = ToolAccess::only(["researcher"]);
        assert!(a.check("search", "researcher").is_ok());
        for who in ["Researcher", "researcher ", "writer", ""] {
            let e = a.check("search", who).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::PolicyDenied);
            assert!(e.message().contains("agents allowed: researcher"), "{e}");
        }
        assert!(ToolAccess::any().check("search", "anyone").is_ok());
        let none = ToolAccess::only(Vec::<String>::new());
        assert!(none
            .check("t", "a")
            .unwrap_err()
            .message()
            .contains("allowed: none"));
    }

    #[test]
    fn rate_limit_spaces_starts_by_the_window() {
        let a = ToolAccess::any()
            .rate_limit(2, Duration::from_secs(1000))
            .unwrap();
        assert!(a.reserve().is_zero());
        assert!(a.reserve().is_zero());
        // The third and fourth wait about one window; the fifth about two.
        let third = a.reserve();
        assert!(third > Duration::from_secs(990) && third <= Duration::from_secs(1000));
        let fourth = a.reserve();
        assert!(fourth > Duration::from_secs(990) && fourth <= Duration::from_secs(1000));
        let fifth = a.reserve();
        assert!(fifth > Duration::from_secs(1990) && fifth <= Duration::from_secs(2000));
        // Clones share the limiter.
        assert!(a.clone().reserve() > Duration::from_secs(1990));
    }

    #[test]
    fn zero_rate_limits_are_refused() {
        for (calls, per) in [(0, Duration::from_secs(1)), (1, Duration::ZERO)] {
            let e = ToolAccess::any().rate_limit(calls, per).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        }
    }
}
