//! Which runs' spans are exported. The decision is made once per run from its trace id, so
//! it is the same in every process that exports the run (a crash and a resume elsewhere give
//! one complete trace or none), and it never touches the log.

use std::collections::BTreeSet;

use agentmesh_core::{Error, ErrorKind};

use crate::spans::TraceId;

/// A trace-id ratio sampler with per-agent overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampler {
    /// Share of runs exported, 0.0 to 1.0.
    pub ratio: f64,
    /// Agents whose activations (with their calls and verdicts, and the run span above them)
    /// are exported even when the run is not sampled.
    pub always: BTreeSet<String>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            ratio: 1.0,
            always: BTreeSet::new(),
        }
    }
}

impl Sampler {
    /// Every run.
    pub fn always_on() -> Sampler {
        Sampler::default()
    }

    /// A share of runs.
    ///
    /// Errors: `INVALID_ARGUMENT` unless `0 <= ratio <= 1`.
    pub fn ratio(ratio: f64) -> agentmesh_core::Result<Sampler> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("a sampling ratio is between 0 and 1, not {ratio}"),
            ));
        }
        Ok(Sampler {
            ratio,
            ..Sampler::default()
        })
    }

    /// Also export agent `name`'s activations whatever the ratio says.
    pub fn always_trace(mut self, agent: &str) -> Sampler {
        self.always.insert(agent.to_owned());
        self
    }

    /// From `OTEL_TRACES_SAMPLER` (`always_on`, `always_off`, `traceidratio` and their
    /// `parentbased_` forms: a run is a root, so they mean the same) and
    /// `OTEL_TRACES_SAMPLER_ARG`; always on when unset.
    ///
    /// Errors: `INVALID_ARGUMENT` for another sampler or a ratio that is not a number in
    /// [0, 1].
    pub fn from_env() -> agentmesh_core::Result<Sampler> {
        let name = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
        let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
        Sampler::from_parts(&name, arg.as_deref())
    }

    /// [`Sampler::from_env`] with the values given.
    ///
    /// Errors: as [`Sampler::from_env`].
    pub fn from_parts(name: &str, arg: Option<&str>) -> agentmesh_core::Result<Sampler> {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("parentbased_").unwrap_or(&name);
        match name {
            "" | "always_on" => Ok(Sampler::always_on()),
            "always_off" => Sampler::ratio(0.0),
            "traceidratio" => {
                let text = arg.unwrap_or("1.0").trim();
                let ratio: f64 = text.parse().map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("OTEL_TRACES_SAMPLER_ARG '{text}' is not a number"),
                    )
                })?;
                Sampler::ratio(ratio)
            }
            other => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "OTEL_TRACES_SAMPLER '{other}' is not supported (always_on, always_off, traceidratio, parentbased_*)"
                ),
            )),
        }
    }

    /// Whether the run with `trace` is sampled: the OpenTelemetry `TraceIdRatioBased` rule
    /// (the trace id's low 8 bytes against the ratio), so collectors and SDKs agree.
    pub fn samples(&self, trace: TraceId) -> bool {
        if self.ratio >= 1.0 {
            return true;
        }
        if self.ratio <= 0.0 {
            return false;
        }
        let bound = (self.ratio * (1u64 << 63) as f64) as u64;
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace.0[8..]);
        (u64::from_be_bytes(low) >> 1) < bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(n: u64) -> TraceId {
        let h = blake3::hash(&n.to_le_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.as_bytes()[..16]);
        TraceId(id)
    }

    #[test]
    fn the_ratio_is_deterministic_per_trace_and_close_to_its_share() {
        let s = Sampler::ratio(0.25).unwrap();
        let kept = (0..20_000).filter(|n| s.samples(trace(*n))).count();
        assert!((4_500..5_500).contains(&kept), "{kept} of 20000 at 0.25");
        for n in 0..100 {
            assert_eq!(s.samples(trace(n)), s.samples(trace(n)));
        }
        // A smaller ratio keeps a subset of what a larger one keeps.
        let small = Sampler::ratio(0.1).unwrap();
        assert!((0..5_000).all(|n| !small.samples(trace(n)) || s.samples(trace(n))));
        assert!((0..100).all(|n| Sampler::always_on().samples(trace(n))));
        assert!((0..100).all(|n| !Sampler::ratio(0.0).unwrap().samples(trace(n))));
    }

    #[test]
    fn the_environment_names_the_sampler() {
        assert_eq!(Sampler::from_parts("", None).unwrap().ratio, 1.0);
        assert_eq!(Sampler::from_parts("always_off", None).unwrap().ratio, 0.0);
        assert_eq!(
            Sampler::from_parts("parentbased_traceidratio", Some("0.5"))
                .unwrap()
                .ratio,
            0.5
        );
        let e = Sampler::from_parts("traceidratio", Some("half")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(Sampler::from_parts("traceidratio", Some("1.5")).is_err());
        assert!(Sampler::from_parts("jaeger_remote", None)
            .unwrap_err()
            .message()
            .contains("not supported"));
    }
}
