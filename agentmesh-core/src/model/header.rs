//! The log header: the first record of every log, naming the format, the run and the
//! behaviour flags the core applied when it wrote the log.

use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::call::CallMeta;

/// Log format name written in every header.
pub const LOG_FORMAT: &str = "agentmesh-log";

/// Format version of the files new runs write. Version 6 adds workflow shapes: map nodes
/// (`mapCompleted`, and `item` in the scheduled records of their items) and `reads` (in
/// scheduled records), which appear only in runs of workflows that use them
/// (docs/workflow.md). Version 5 adds policies: the header's `policy`
/// and `verdicts` in the records of the values a policy judged (docs/policy.md), which appear
/// only in runs that have a policy. Version 4 adds budget records (`callDenied`,
/// `budgetWarning`, and the budget fields of `runStarted`, `agentScheduled`, call records and
/// `runFailed`), which appear only in runs that account for spend. Version 3 adds call records (`callStarted`,
/// `callCompleted`, `callFailed`, under their activation's seq with a `sub`), in version 2's
/// layout. Version 2 stores each record without the fields a reader can derive (`runId`,
/// `traceId`, `prev`). Versions 1 and 2 are still read, verified, replayed and resumed
/// (appended in their own layout; they cannot record calls).
pub const LOG_VERSION: u32 = 6;

/// Oldest file format version the reader accepts.
pub const MIN_LOG_VERSION: u32 = 1;

/// Version of the canonical form, written in the canonical header. The canonical log of a
/// run is the same whichever file format holds it, so fingerprints do not change when the
/// storage layout does; this number changes only when the canonical form itself does.
pub const CANONICAL_VERSION: u32 = 1;

/// Core behaviour flags this core knows. A behaviour change that would alter the events of an
/// existing workflow gets a new number here (never reused) and is recorded in the header of
/// the runs that use it, so replay reproduces the behaviour the log was written with
/// (Temporal's internal flags). None exist yet.
pub const KNOWN_FLAGS: &[u32] = &[];

/// Flags new runs record.
pub const CORE_FLAGS: &[u32] = &[];

/// The behaviour flags of one run, checked against [`KNOWN_FLAGS`]: a log written by a newer
/// core with a behaviour this one does not have is refused, never replayed the old way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoreFlags(Vec<u32>);

impl CoreFlags {
    /// The flags new runs use.
    pub fn current() -> CoreFlags {
        CoreFlags(CORE_FLAGS.to_vec())
    }

    /// Check a header's flag list: strictly increasing, every flag known.
    ///
    /// Errors: a message naming the flag.
    pub fn check(flags: &[u32]) -> Result<CoreFlags, String> {
        if let Some(w) = flags.windows(2).find(|w| w[0] >= w[1]) {
            return Err(format!(
                "core flags must be strictly increasing, found {} before {}",
                w[0], w[1]
            ));
        }
        if let Some(f) = flags.iter().find(|f| !KNOWN_FLAGS.contains(f)) {
            return Err(format!(
                "unknown core flag {f}: the log was written by a newer AgentMesh with a behaviour this version does not have"
            ));
        }
        Ok(CoreFlags(flags.to_vec()))
    }

    /// Whether `flag` is in effect.
    pub fn has(&self, flag: u32) -> bool {
        self.0.contains(&flag)
    }

    /// The flags, increasing.
    pub fn as_slice(&self) -> &[u32] {
        &self.0
    }
}

/// Parent link of a forked run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParentRef {
    /// Run id of the parent.
    pub run_id: String,
    /// Last parent event copied into the fork.
    pub seq: u64,
}

/// Workflow identity in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowRef {
    /// Workflow name.
    pub name: String,
    /// blake3 of the canonical workflow JSON.
    pub hash: String,
}

/// The policy a run is judged by (docs/policy.md): its name and the blake3 of its canonical
/// form. A run resumes, retries and forks only under the same policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRef {
    /// The policy's name.
    pub name: String,
    /// blake3 (hex) of its canonical form ([`crate::policy::Policy::hash`]).
    pub hash: String,
}

/// Wall-clock metadata; never part of the canonical log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Meta {
    /// Unix time in milliseconds when the record was appended.
    pub at: u64,
    /// How long the activation ran (completion events) or the call took (call results), in
    /// microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dur_us: Option<u64>,
    /// A call result's provider facts (response id, time to first chunk, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<Arc<CallMeta>>,
}

/// What a record's meta carries besides `at`, handed to the writer with the events.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MetaExtra {
    pub(crate) dur_us: Option<u64>,
    pub(crate) call: Option<Arc<CallMeta>>,
}

impl MetaExtra {
    /// Nothing besides `at`.
    pub(crate) const NONE: MetaExtra = MetaExtra {
        dur_us: None,
        call: None,
    };

    /// A completion's measured duration.
    pub(crate) fn dur(dur_us: Option<u64>) -> MetaExtra {
        MetaExtra { dur_us, call: None }
    }

    /// The meta of a record appended at `at`.
    pub(crate) fn at(&self, at: u64) -> Meta {
        Meta {
            at,
            dur_us: self.dur_us,
            call: self.call.clone(),
        }
    }
}

/// Wall-clock and host metadata of the header; never part of the canonical log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMeta {
    /// Unix time in milliseconds when the log was created.
    pub at: u64,
    /// What created the log: `cli` for runs the `agentmesh` command started (the only runs
    /// it may finish with scripted default outputs), `python`, `node` or `rust` for a host
    /// program. Absent in logs of AgentMesh 0.2 and older.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// First line of every log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogHeader {
    /// Always [`LOG_FORMAT`].
    pub format: String,
    /// File format version ([`MIN_LOG_VERSION`]..=[`LOG_VERSION`]).
    pub version: u32,
    /// Core behaviour flags in effect.
    pub flags: Vec<u32>,
    /// Run id.
    pub run_id: String,
    /// Workflow identity.
    pub workflow: WorkflowRef,
    /// Run seed.
    pub seed: u64,
    /// Tenant, when the host set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Parent of a forked run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// The run's policy, when it has one (format 5 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// Creation time and host; not canonical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<HeaderMeta>,
}

impl LogHeader {
    /// The header of a new run (current format version and flags, no parent, no meta).
    pub fn new(run_id: &str, workflow: WorkflowRef, seed: u64, tenant: Option<String>) -> Self {
        LogHeader {
            format: LOG_FORMAT.to_owned(),
            version: LOG_VERSION,
            flags: CORE_FLAGS.to_vec(),
            run_id: run_id.to_owned(),
            workflow,
            seed,
            tenant,
            parent: None,
            policy: None,
            meta: None,
        }
    }

    /// The flags, checked.
    ///
    /// Errors: a message naming an unknown or misordered flag.
    pub fn core_flags(&self) -> Result<CoreFlags, String> {
        CoreFlags::check(&self.flags)
    }

    /// What created the log (see [`HeaderMeta::host`]).
    pub fn host(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.host.as_deref())
    }

    /// Whether this core reads the header's format and version.
    ///
    /// Errors: a message naming what is not supported.
    pub(crate) fn check_format(&self) -> Result<(), String> {
        if self.format != LOG_FORMAT {
            return Err(format!("format '{}' is not {LOG_FORMAT}", self.format));
        }
        if !(MIN_LOG_VERSION..=LOG_VERSION).contains(&self.version) {
            return Err(format!(
                "unsupported log format version {} (this AgentMesh reads {MIN_LOG_VERSION} to {LOG_VERSION}; a newer one wrote it?)",
                self.version
            ));
        }
        if self.policy.is_some() && self.version < 5 {
            return Err(format!(
                "a format {} header names a policy (format 5 does)",
                self.version
            ));
        }
        Ok(())
    }
}

/// The header in canonical form: no `meta`, and the canonical version in place of the file's
/// (see [`CANONICAL_VERSION`]).
pub(crate) struct CanonicalHeader<'a>(pub &'a LogHeader);

impl Serialize for CanonicalHeader<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let h = self.0;
        LogHeader {
            version: CANONICAL_VERSION,
            meta: None,
            format: h.format.clone(),
            flags: h.flags.clone(),
            run_id: h.run_id.clone(),
            workflow: h.workflow.clone(),
            seed: h.seed,
            tenant: h.tenant.clone(),
            parent: h.parent.clone(),
            policy: h.policy.clone(),
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32) -> LogHeader {
        let mut h = LogHeader::new(
            "r",
            WorkflowRef {
                name: "w".into(),
                hash: "h".into(),
            },
            7,
            None,
        );
        h.version = version;
        h
    }

    #[test]
    fn reads_versions_one_to_six_only() {
        for v in 1..=6 {
            assert!(header(v).check_format().is_ok());
        }
        let e = header(7).check_format().unwrap_err();
        assert!(e.contains("unsupported log format version 7"), "{e}");
        let mut h = header(4);
        h.policy = Some(PolicyRef {
            name: "p".into(),
            hash: "h".into(),
        });
        assert!(h.check_format().unwrap_err().contains("names a policy"));
        assert!(header(0).check_format().is_err());
    }

    #[test]
    fn canonical_header_is_the_same_for_every_file_version() {
        let mut v1 = header(1);
        v1.meta = Some(HeaderMeta {
            at: 5,
            host: Some("cli".into()),
        });
        let a = serde_json::to_string(&CanonicalHeader(&v1)).unwrap();
        let b = serde_json::to_string(&CanonicalHeader(&header(2))).unwrap();
        assert_eq!(a, b);
        let c = serde_json::to_string(&CanonicalHeader(&header(3))).unwrap();
        assert_eq!(a, c);
        assert_eq!(
            a,
            r#"{"format":"agentmesh-log","version":1,"flags":[],"runId":"r","workflow":{"name":"w","hash":"h"},"seed":7}"#
        );
    }

    #[test]
    fn unknown_and_misordered_flags_are_refused() {
        assert!(CoreFlags::check(&[]).is_ok());
        let e = CoreFlags::check(&[7]).unwrap_err();
        assert!(e.contains("unknown core flag 7"), "{e}");
        assert!(CoreFlags::check(&[2, 1]).is_err());
        assert!(CoreFlags::check(&[1, 1]).is_err());
    }
}
