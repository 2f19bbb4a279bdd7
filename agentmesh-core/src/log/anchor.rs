//! Anchors: the head of a log's hash chain, kept somewhere else, so that cutting records off
//! the end or editing a record and recomputing every later hash is detected (the
//! Certificate Transparency idea: a signed tree head held by someone else).
//!
//! The chain alone detects accidental damage: a changed byte, a removed or reordered record.
//! It cannot detect a log cut at a record boundary (what is left is a valid, shorter chain),
//! nor an edit whose author recomputed the chain. An [`Anchor`] — run id, number of records,
//! their byte length and the blake3 hash of those bytes (the head) — taken earlier and stored
//! outside the log's machine detects both. A keyed anchor also carries a MAC (blake3 keyed
//! mode) over those facts, so an attacker who can rewrite the anchor store too, but does not
//! hold the key, cannot make a matching anchor for a tampered log.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use std::io::Read;

use super::read::VerifyReport;
use super::reader::LogScan;
use crate::error::{Error, ErrorDetail, ErrorKind, Result};

/// Anchor format version.
pub const ANCHOR_VERSION: u32 = 1;

/// The head of a log at one point: what [`anchor`] returns and [`verify_anchor`] checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Anchor {
    /// Anchor format ([`ANCHOR_VERSION`]).
    pub version: u32,
    /// Run id of the log.
    pub run_id: String,
    /// Events in the log when the anchor was taken.
    pub records: u64,
    /// Bytes of the log up to the end of those records (the last one's newline not counted).
    pub bytes: u64,
    /// blake3 (hex) of those bytes: the log's first `bytes` bytes.
    pub head: String,
    /// blake3 keyed hash (hex) of the facts above, when the anchor was taken with a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl Anchor {
    /// Parse an anchor's JSON text.
    ///
    /// Errors: `INVALID_ARGUMENT`.
    pub fn from_json(text: &str) -> Result<Anchor> {
        let a: Anchor = serde_json::from_str(text)
            .map_err(|e| Error::invalid_argument(format!("not an anchor: {e}")))?;
        if a.version != ANCHOR_VERSION {
            return Err(Error::invalid_argument(format!(
                "unsupported anchor version {} (this AgentMesh reads {ANCHOR_VERSION})",
                a.version
            )));
        }
        Ok(a)
    }

    /// The anchor as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("anchors serialize")
    }

    fn mac_of(&self, key: &AnchorKey) -> String {
        let mut h = blake3::Hasher::new_keyed(&key.0);
        h.update(b"agentmesh-anchor\0");
        h.update(&ANCHOR_VERSION.to_le_bytes());
        h.update(&(self.run_id.len() as u64).to_le_bytes());
        h.update(self.run_id.as_bytes());
        h.update(&self.records.to_le_bytes());
        h.update(&self.bytes.to_le_bytes());
        h.update(self.head.as_bytes());
        h.finalize().to_hex().to_string()
    }
}

/// A secret key for keyed anchors. It is derived from key material (a key file's bytes, an
/// environment variable's value) with blake3's key derivation, so any material works; use at
/// least 32 random bytes. Never logged, never printed (`Debug` shows nothing of it).
#[derive(Clone)]
pub struct AnchorKey([u8; 32]);

impl AnchorKey {
    /// Derive a key from key material.
    ///
    /// Errors: `INVALID_ARGUMENT` when the material is empty.
    pub fn from_material(material: &[u8]) -> Result<AnchorKey> {
        if material.is_empty() {
            return Err(Error::invalid_argument("the anchor key material is empty"));
        }
        Ok(AnchorKey(blake3::derive_key(
            "agentmesh 2026-12 anchor key v1",
            material,
        )))
    }
}

impl fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnchorKey(…)")
    }
}

/// blake3 (hex) of the first `bytes` bytes of the file, read in large blocks (blake3 hashes
/// them several chunks at a time). `None` when the file is shorter.
fn head_of(path: &Path, bytes: u64) -> Result<Option<String>> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file
            .read(&mut buf[..want])
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            return Ok(None);
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(Some(hasher.finalize().to_hex().to_string()))
}

/// Take an anchor of a log: its verified records (a torn tail is not anchored). Read-only;
/// works while the log's writer runs. With a key the anchor carries a MAC.
///
/// Errors: `LOG_CORRUPT`, `LOG_TRUNCATED` (the file shrank while it was read), `IO`.
pub fn anchor(path: impl AsRef<Path>, key: Option<&AnchorKey>) -> Result<Anchor> {
    let path = path.as_ref();
    let mut scan = LogScan::open(path)?;
    scan.skip_to_end()?;
    let report = VerifyReport::of_scan(&scan);
    let bytes = scan.reader.record_end();
    let Some(head) = head_of(path, bytes)? else {
        return Err(Error::new(
            ErrorKind::LogTruncated,
            format!("{} shrank while it was anchored", path.display()),
        ));
    };
    let mut a = Anchor {
        version: ANCHOR_VERSION,
        run_id: report.run_id,
        records: report.events,
        bytes,
        head,
        mac: None,
    };
    a.mac = key.map(|k| a.mac_of(k));
    Ok(a)
}

fn mismatch(kind: ErrorKind, field: &str, expected: String, found: String, why: &str) -> Error {
    Error::new(
        kind,
        format!("{why}: the anchor says {field} {expected}, the log has {found}"),
    )
    .with_detail(ErrorDetail::Anchor {
        field: field.to_owned(),
        expected,
        found,
    })
}

/// Verify a log (as [`crate::check_log`], read-only) and check it against an anchor taken
/// earlier: the log must hold at least the anchored records, and its first `records` records
/// must end at the anchored byte length with the anchored head hash. Records appended since
/// the anchor are fine. A keyed anchor needs its key, and its MAC must match.
///
/// Errors: `LOG_TRUNCATED` (fewer records or bytes than anchored), `LOG_HEAD_MISMATCH`
/// (another run, another head, a MAC that does not match: records were edited and the chain
/// recomputed, or the anchor was forged), both with [`ErrorDetail::Anchor`];
/// `INVALID_ARGUMENT` (a keyed anchor without a key, a key for an unkeyed anchor);
/// `LOG_CORRUPT`; `IO`.
pub fn verify_anchor(
    path: impl AsRef<Path>,
    anchor: &Anchor,
    key: Option<&AnchorKey>,
) -> Result<VerifyReport> {
    match (&anchor.mac, key) {
        (Some(_), None) => {
            return Err(Error::invalid_argument(
                "this anchor is keyed: give the key it was taken with",
            ))
        }
        (None, Some(_)) => return Err(Error::invalid_argument(
            "this anchor carries no MAC, so a key cannot check it: take keyed anchors with the key",
        )),
        _ => {}
    }
    if let (Some(mac), Some(k)) = (&anchor.mac, key) {
        // The anchor itself first: a forged or altered anchor, or the wrong key.
        if &anchor.mac_of(k) != mac {
            // The MAC this key gives is not shown: it would forge anchors for whoever sees it.
            return Err(mismatch(
                ErrorKind::LogHeadMismatch,
                "mac",
                mac.clone(),
                "another MAC under this key".to_owned(),
                "the anchor's MAC does not match its facts (a forged or altered anchor, or another key)",
            ));
        }
    }
    let path = path.as_ref();
    let mut scan = LogScan::open(path)?;
    if scan.header().run_id != anchor.run_id {
        return Err(mismatch(
            ErrorKind::LogHeadMismatch,
            "runId",
            anchor.run_id.clone(),
            scan.header().run_id.clone(),
            "the log belongs to another run",
        ));
    }
    // Where the anchored records end, as this log has them.
    let mut end = (anchor.records == 0).then(|| scan.reader.record_end());
    while scan.next()?.is_some() {
        if scan.shape.events() == anchor.records {
            end = Some(scan.reader.record_end());
        }
    }
    scan.require_events()?;
    let report = VerifyReport::of_scan(&scan);
    let Some(end) = end else {
        return Err(mismatch(
            ErrorKind::LogTruncated,
            "records",
            anchor.records.to_string(),
            report.events.to_string(),
            "the log is shorter than when it was anchored (records were cut off its end)",
        ));
    };
    if end != anchor.bytes {
        let kind = if end < anchor.bytes {
            ErrorKind::LogTruncated
        } else {
            ErrorKind::LogHeadMismatch
        };
        return Err(mismatch(
            kind,
            "bytes",
            anchor.bytes.to_string(),
            end.to_string(),
            "the anchored records have another length (edited since the anchor)",
        ));
    }
    let head = head_of(path, anchor.bytes)?.unwrap_or_default();
    if head != anchor.head {
        return Err(mismatch(
            ErrorKind::LogHeadMismatch,
            "head",
            anchor.head.clone(),
            head,
            "the anchored records hash to another head (edited, with the chain recomputed)",
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_show_and_macs_depend_on_every_fact() {
        let key = AnchorKey::from_material(b"secret material").unwrap();
        assert_eq!(format!("{key:?}"), "AnchorKey(…)");
        assert!(AnchorKey::from_material(b"").is_err());
        let a = Anchor {
            version: 1,
            run_id: "r".into(),
            records: 3,
            bytes: 400,
            head: "ab".repeat(32),
            mac: None,
        };
        let base = a.mac_of(&key);
        for changed in [
            Anchor {
                records: 2,
                ..a.clone()
            },
            Anchor {
                bytes: 401,
                ..a.clone()
            },
            Anchor {
                run_id: "s".into(),
                ..a.clone()
            },
            Anchor {
                head: "cd".repeat(32),
                ..a.clone()
            },
        ] {
            assert_ne!(changed.mac_of(&key), base);
        }
        let other = AnchorKey::from_material(b"other material").unwrap();
        assert_ne!(a.mac_of(&other), base);
    }

    #[test]
    fn anchors_round_trip_as_json() {
        let a = Anchor {
            version: 1,
            run_id: "r".into(),
            records: 3,
            bytes: 400,
            head: "ab".repeat(32),
            mac: None,
        };
        let text = a.to_json();
        assert!(!text.contains("mac"));
        assert_eq!(Anchor::from_json(&text).unwrap(), a);
        assert!(Anchor::from_json(r#"{"version":2}"#).is_err());
        assert!(Anchor::from_json("[]").is_err());
    }
}
