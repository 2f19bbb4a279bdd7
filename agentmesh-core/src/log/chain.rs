//! The chain that links every physical record to the one before it, in both file layouts.
//!
//! - **Format 2**: each record ends with `"crc"`, 8 hex digits: the CRC32C of every record
//!   body from the header on, this one included (a running CRC: each record's value continues
//!   the previous one's). A changed byte, a removed or reordered record, or a record from
//!   another log breaks it at the first affected record, for about 10 ns a record.
//! - **Format 1**: each record ends with `"prev"` and `"hash"`, 64 hex digits each:
//!   `hash = blake3(prev hash || body)`.
//!
//! `body` is the record without its chain fields (closing brace included). Because the chain
//! fields are always last and fixed-length, a line is checked without parsing JSON.
//!
//! Neither chain resists someone who rewrites the log and recomputes it: that is what
//! anchors are for ([`super::anchor`]), which hash the log's bytes with blake3. A
//! cryptographic hash per record (format 1) cost a quarter of a microsecond a record here
//! and bought nothing an anchor does not.

use crate::model::limits::{MAX_EVENT_BYTES, RECORD_OVERHEAD};

/// `,"prev":"` + 64 + `","hash":"` + 64 + `"}`.
const V1_SUFFIX_LEN: usize = 9 + 64 + 10 + 64 + 2;
/// `,"crc":"` + 8 + `"}`.
const V2_SUFFIX_LEN: usize = 8 + 8 + 2;

/// Longest physical line a reader accepts (a record of the largest event, its `meta` and
/// chain fields, and the newline).
pub const MAX_RECORD_BYTES: usize = MAX_EVENT_BYTES + RECORD_OVERHEAD;

pub(crate) type Digest = [u8; 32];

/// The link a record passes to the next: the running CRC (format 2) or the blake3 hash of the
/// record (format 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Format 1.
    Hash(Digest),
    /// Format 2.
    Crc(u32),
}

impl Link {
    /// What the header of a log links to.
    pub(crate) fn genesis(format_one: bool) -> Link {
        if format_one {
            Link::Hash([0u8; 32])
        } else {
            Link::Crc(0)
        }
    }

    fn suffix_len(self) -> usize {
        match self {
            Link::Hash(_) => V1_SUFFIX_LEN,
            Link::Crc(_) => V2_SUFFIX_LEN,
        }
    }
}

/// Append `body` (a JSON object) sealed with the chain field(s) after `prev` and `\n` to
/// `out`; returns the record's link.
pub(crate) fn seal(body: &[u8], prev: Link, out: &mut Vec<u8>) -> Link {
    debug_assert_eq!(body.last(), Some(&b'}'));
    out.reserve(body.len() + prev.suffix_len() + 1);
    out.extend_from_slice(&body[..body.len() - 1]);
    let link = match prev {
        Link::Crc(c) => {
            let crc = crc32c::crc32c_append(c, body);
            out.extend_from_slice(b",\"crc\":\"");
            out.extend_from_slice(&hex8(crc));
            Link::Crc(crc)
        }
        Link::Hash(p) => {
            let mut h = blake3::Hasher::new();
            h.update(&p);
            h.update(body);
            let hash = *h.finalize().as_bytes();
            out.extend_from_slice(b",\"prev\":\"");
            out.extend_from_slice(&hex(&p));
            out.extend_from_slice(b"\",\"hash\":\"");
            out.extend_from_slice(&hex(&hash));
            Link::Hash(hash)
        }
    };
    out.extend_from_slice(b"\"}\n");
    link
}

pub(crate) fn hex(bytes: &Digest) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

fn hex8(v: u32) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (28 - 4 * i)) & 15) as usize];
    }
    out
}

/// Whether a header line is sealed in format 1 (it carries `prev`).
pub(crate) fn is_format_one(line: &[u8]) -> bool {
    line.len() >= V1_SUFFIX_LEN && line[line.len() - V1_SUFFIX_LEN..].starts_with(b",\"prev\":\"")
}

/// Check one line (without `\n`) against `prev`. Returns the body without its closing brace
/// (`{...` up to the last body field) and the record's link.
pub(crate) fn unseal(line: &[u8], prev: Link) -> Result<(&[u8], Link), &'static str> {
    let suffix_len = prev.suffix_len();
    if line.len() < suffix_len + 2 || line[0] != b'{' {
        return Err("not a sealed record");
    }
    let (head, suffix) = line.split_at(line.len() - suffix_len);
    if !suffix.ends_with(b"\"}") {
        return Err("chain fields missing or malformed");
    }
    match prev {
        Link::Crc(c) => {
            if !suffix.starts_with(b",\"crc\":\"") {
                return Err("checksum field missing or malformed");
            }
            let crc = crc32c::crc32c_append(crc32c::crc32c_append(c, head), b"}");
            if suffix[8..16] != hex8(crc) {
                return Err(
                    "checksum mismatch (the record was altered, or one before it removed or reordered)",
                );
            }
            Ok((head, Link::Crc(crc)))
        }
        Link::Hash(p) => {
            if !suffix.starts_with(b",\"prev\":\"") || &suffix[73..83] != b"\",\"hash\":\"" {
                return Err("chain fields missing or malformed");
            }
            if suffix[9..73] != hex(&p) {
                return Err(
                    "prev does not match the previous record's hash (record missing, reordered or altered)",
                );
            }
            let mut h = blake3::Hasher::new();
            h.update(&p);
            h.update(head);
            h.update(b"}");
            let hash = *h.finalize().as_bytes();
            if suffix[83..147] != hex(&hash) {
                return Err("hash mismatch (record altered)");
            }
            Ok((head, Link::Hash(hash)))
        }
    }
}

/// Where the final `,"meta":{...}` field of a body returned by [`unseal`] starts (its
/// canonical end). The core writes meta last and as exactly `{"at":N}`, then optionally
/// `,"durUs":M` and `,"call":{...}` (an object of strings, numbers and arrays of strings,
/// no nested object), so it is found from the end without parsing the record, and a body
/// whose end is not that (a hand-made record) has none.
pub(crate) fn meta_start(head: &[u8]) -> Option<usize> {
    // Parsed backwards from the end: `}`, optionally `,"call":{...}`, digits, optionally
    // `,"durUs":` and digits, then `,"meta":{"at":`.
    let digits_before = |end: usize| {
        let n = head[..end]
            .iter()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .count();
        (n > 0).then(|| end - n)
    };
    let mut end = head.len().checked_sub(1).filter(|&i| head[i] == b'}')?;
    if end > 0 && head[end - 1] == b'}' {
        let open = object_start(&head[..end])?;
        let key = b",\"call\":";
        end = open
            .checked_sub(key.len())
            .filter(|&k| &head[k..open] == key)?;
    }
    let mut at = digits_before(end)?;
    if head[..at].ends_with(b",\"durUs\":") {
        at = digits_before(at - 9)?;
    }
    let key = b",\"meta\":{\"at\":";
    head[..at].ends_with(key).then(|| at - key.len())
}

/// Where the flat JSON object ending `json` starts (its `{`), looking back over its strings:
/// a string's opening quote is the first `"` before its closing one that is not escaped
/// (preceded by an even number of backslashes).
fn object_start(json: &[u8]) -> Option<usize> {
    let mut i = json.len().checked_sub(1).filter(|&i| json[i] == b'}')?;
    while i > 0 {
        i -= 1;
        match json[i] {
            b'{' => return Some(i),
            b'}' => return None,
            b'"' => loop {
                i = json[..i].iter().rposition(|&c| c == b'"')?;
                let slashes = json[..i].iter().rev().take_while(|&&c| c == b'\\').count();
                if slashes % 2 == 0 {
                    break;
                }
            },
            _ => {}
        }
    }
    None
}

/// The body returned by [`unseal`] without its final `"meta"` field (its canonical end).
#[cfg(test)]
fn without_meta(head: &[u8]) -> Option<&[u8]> {
    meta_start(head).map(|at| &head[..at])
}

/// The envelope of an event body: `{"seq":N,"type":"T"` or, for a call record,
/// `{"seq":N,"sub":K,"type":"T"` → (N, K, T, the rest after the type).
pub(crate) fn envelope(head: &[u8]) -> Option<Envelope<'_>> {
    let (seq, mut rest) = leading_seq(head)?;
    let mut sub = None;
    if let Some(r) = rest.strip_prefix(b"\"sub\":") {
        let (k, r) = leading_digits(r)?;
        sub = Some(u32::try_from(k).ok()?);
        rest = r.strip_prefix(b",")?;
    }
    let rest = rest.strip_prefix(b"\"type\":\"")?;
    let end = rest.iter().position(|&c| c == b'"')?;
    Some((seq, sub, &rest[..end], &rest[end + 1..]))
}

/// `(seq, sub, type, the rest after the type)` of a record.
pub(crate) type Envelope<'a> = (u64, Option<u32>, &'a [u8], &'a [u8]);

/// The `seq` at the start of an event body (`{"seq":N,`), and the bytes after its comma,
/// without parsing the rest.
pub(crate) fn leading_seq(head: &[u8]) -> Option<(u64, &[u8])> {
    let (seq, rest) = leading_digits(head.strip_prefix(b"{\"seq\":")?)?;
    Some((seq, rest.strip_prefix(b",")?))
}

/// A u64 written in decimal at the start of `s` (1 to 20 digits, no overflow), and the rest.
pub(crate) fn leading_digits(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in &s[..digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((v, &s[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_unseal_both_formats() {
        for format_one in [true, false] {
            let genesis = Link::genesis(format_one);
            let mut out = Vec::new();
            let l1 = seal(br#"{"seq":1,"x":"a","meta":{"at":5}}"#, genesis, &mut out);
            let line = &out[..out.len() - 1];
            assert_eq!(is_format_one(line), format_one);
            let (head, l) = unseal(line, genesis).unwrap();
            assert_eq!(l, l1);
            assert_eq!(without_meta(head), Some(&br#"{"seq":1,"x":"a""#[..]));
            assert_eq!(without_meta(br#"{"a":{"meta":{"at":1}}"#), None, "not last");
            assert_eq!(without_meta(br#"{"a":1,"meta":{"at":1,"x":2}"#), None);
            assert_eq!(
                without_meta(br#"{"a":1,"meta":{"at":1,"durUs":2}"#),
                Some(&br#"{"a":1"#[..])
            );
            assert_eq!(
                without_meta(
                    br#"{"a":1,"meta":{"at":1,"durUs":2,"call":{"responseId":"x}{\"\\","n":3}}"#
                ),
                Some(&br#"{"a":1"#[..])
            );
            assert_eq!(
                without_meta(br#"{"a":1,"meta":{"at":1,"call":{"toolCallIds":["a","b"]}}"#),
                Some(&br#"{"a":1"#[..])
            );
            for bad in [
                &br#"{"a":1,"meta":{"at":1,"call":{"x":{"y":1}}}"#[..],
                br#"{"a":1,"meta":{"at":1,"other":{"x":1}}"#,
                br#"{"a":1,"meta":{"call":{"x":1}}"#,
                br#"}}"#,
            ] {
                assert_eq!(without_meta(bad), None, "{}", String::from_utf8_lossy(bad));
            }
            assert_eq!(leading_seq(head).map(|(s, _)| s), Some(1));
            for i in 0..line.len() {
                let mut bad = line.to_vec();
                bad[i] ^= 1;
                assert!(unseal(&bad, genesis).is_err(), "a flip at {i} passed");
            }
            assert!(unseal(line, l1).is_err(), "wrong link");
        }
    }

    #[test]
    fn the_running_crc_links_records_in_order() {
        let mut out = Vec::new();
        let a = seal(b"{\"a\":1}", Link::genesis(false), &mut out);
        let b = seal(b"{\"b\":2}", a, &mut out);
        let lines: Vec<&[u8]> = out
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(unseal(lines[1], a).unwrap().1, b);
        assert!(
            unseal(lines[1], Link::genesis(false)).is_err(),
            "out of order"
        );
        // The running CRC of record 2 is the CRC of both bodies.
        assert_eq!(b, Link::Crc(crc32c::crc32c(b"{\"a\":1}{\"b\":2}")));
    }

    #[test]
    fn format_two_records_are_smaller() {
        let mut v1 = Vec::new();
        let mut v2 = Vec::new();
        seal(b"{}", Link::genesis(true), &mut v1);
        seal(b"{}", Link::genesis(false), &mut v2);
        assert_eq!(v1.len() - v2.len(), V1_SUFFIX_LEN - V2_SUFFIX_LEN);
    }

    #[test]
    fn envelope_and_seq_parse_without_json() {
        let (seq, sub, kind, rest) =
            envelope(br#"{"seq":12,"type":"stepStarted","parentSeq":2"#).unwrap();
        assert_eq!(
            (seq, sub, kind, rest),
            (12, None, &b"stepStarted"[..], &br#","parentSeq":2"#[..])
        );
        let (seq, sub, kind, _) = envelope(br#"{"seq":12,"sub":3,"type":"callStarted""#).unwrap();
        assert_eq!((seq, sub, kind), (12, Some(3), &b"callStarted"[..]));
        assert!(envelope(br#"{"seq":12,"sub":4294967296,"type":"callStarted""#).is_none());
        assert!(envelope(br#"{"seq":12,"sub":,"type":"callStarted""#).is_none());
        let max = br#"{"seq":18446744073709551615,"#;
        assert_eq!(leading_seq(max).map(|(s, _)| s), Some(u64::MAX));
        assert_eq!(
            leading_seq(br#"{"seq":18446744073709551616,"#),
            None,
            "overflow"
        );
        assert_eq!(leading_seq(br#"{"seq":,"#), None);
    }
}
