//! The hash chain over physical records, in both file layouts.
//!
//! A record is a JSON object whose last field is `"hash"` (64 hex digits), preceded in format
//! 1 by `"prev"` (the previous record's hash, which format 2 leaves out: the reader knows it):
//! `hash = blake3(prev_hash || body)`, where `body` is the record without its chain fields.
//! Because they are always last and fixed-length, a line is checked without parsing JSON.

use crate::model::event::Layout;
use crate::model::limits::{MAX_EVENT_BYTES, RECORD_OVERHEAD};

/// `,"prev":"` + 64 + `","hash":"` + 64 + `"}`.
const V1_SUFFIX_LEN: usize = 9 + 64 + 10 + 64 + 2;
/// `,"hash":"` + 64 + `"}`.
const V2_SUFFIX_LEN: usize = 9 + 64 + 2;

/// Longest physical line a reader accepts (a record of the largest event, its `meta` and
/// chain fields, and the newline).
pub const MAX_RECORD_BYTES: usize = MAX_EVENT_BYTES + RECORD_OVERHEAD;

pub(crate) type Digest = [u8; 32];
pub(crate) const GENESIS: Digest = [0u8; 32];

/// The chain suffix length of a layout.
pub(crate) fn suffix_len(layout: Layout) -> usize {
    match layout {
        Layout::V1 => V1_SUFFIX_LEN,
        Layout::V2 | Layout::Canonical => V2_SUFFIX_LEN,
    }
}

/// Append `body` (a JSON object) sealed with the chain fields of `layout` and `\n` to `out`;
/// returns its hash.
pub(crate) fn seal(body: &[u8], prev: &Digest, layout: Layout, out: &mut Vec<u8>) -> Digest {
    debug_assert_eq!(body.last(), Some(&b'}'));
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(body);
    let hash = *h.finalize().as_bytes();
    out.reserve(body.len() + suffix_len(layout) + 1);
    out.extend_from_slice(&body[..body.len() - 1]);
    if layout == Layout::V1 {
        out.extend_from_slice(b",\"prev\":\"");
        out.extend_from_slice(&hex(prev));
        out.extend_from_slice(b"\"");
    }
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(&hex(&hash));
    out.extend_from_slice(b"\"}\n");
    hash
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

/// The layout a header line is sealed in: format 1 lines carry `prev`.
pub(crate) fn layout_of_line(line: &[u8]) -> Layout {
    if line.len() >= V1_SUFFIX_LEN
        && line[line.len() - V1_SUFFIX_LEN..].starts_with(b",\"prev\":\"")
    {
        Layout::V1
    } else {
        Layout::V2
    }
}

/// Check one line (without `\n`) against `prev`. Returns the body without its closing brace
/// (`{...` up to the last body field) and the record's hash.
///
/// Hashes are compared in hex form, which is cheaper than decoding the stored hex.
pub(crate) fn unseal<'a>(
    line: &'a [u8],
    prev: &Digest,
    layout: Layout,
) -> Result<(&'a [u8], Digest), &'static str> {
    let suffix_len = suffix_len(layout);
    if line.len() < suffix_len + 2 || line[0] != b'{' {
        return Err("not a sealed record");
    }
    let (head, suffix) = line.split_at(line.len() - suffix_len);
    let hash_at = match layout {
        Layout::V1 => {
            if !suffix.starts_with(b",\"prev\":\"") || &suffix[73..83] != b"\",\"hash\":\"" {
                return Err("chain fields missing or malformed");
            }
            if suffix[9..73] != hex(prev) {
                return Err(
                    "prev does not match the previous record's hash (record missing, reordered or altered)",
                );
            }
            83
        }
        Layout::V2 | Layout::Canonical => {
            if !suffix.starts_with(b",\"hash\":\"") {
                return Err("chain field missing or malformed");
            }
            9
        }
    };
    if !suffix.ends_with(b"\"}") {
        return Err("chain fields missing or malformed");
    }
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(head);
    h.update(b"}");
    let hash = *h.finalize().as_bytes();
    if suffix[hash_at..hash_at + 64] != hex(&hash) {
        return Err(match layout {
            Layout::V1 => "hash mismatch (record altered)",
            Layout::V2 | Layout::Canonical => {
                "hash mismatch (the record was altered, or one before it removed or reordered)"
            }
        });
    }
    Ok((head, hash))
}

/// The body returned by [`unseal`] without its final `"meta"` field (its canonical end).
pub(crate) fn without_meta(head: &[u8]) -> Option<&[u8]> {
    let pat = b",\"meta\":{";
    let pos = head.windows(pat.len()).rposition(|w| w == pat)?;
    Some(&head[..pos])
}

/// The envelope of an event body: `{"seq":N,"type":"T"` → (N, T, the rest after the type).
pub(crate) fn envelope(head: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let seq = leading_seq(head)?;
    let rest = &head[head.iter().position(|&c| c == b',')? + 1..];
    let rest = rest.strip_prefix(b"\"type\":\"")?;
    let end = rest.iter().position(|&c| c == b'"')?;
    Some((seq, &rest[..end], &rest[end + 1..]))
}

/// The `seq` at the start of an event body (`{"seq":N,`), without parsing the rest.
pub(crate) fn leading_seq(head: &[u8]) -> Option<u64> {
    let rest = head.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 20 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_unseal_both_layouts() {
        for layout in [Layout::V1, Layout::V2] {
            let mut out = Vec::new();
            let h1 = seal(
                br#"{"seq":1,"x":"a","meta":{"at":5}}"#,
                &GENESIS,
                layout,
                &mut out,
            );
            let line = &out[..out.len() - 1];
            assert_eq!(layout_of_line(line), layout);
            let (head, h) = unseal(line, &GENESIS, layout).unwrap();
            assert_eq!(h, h1);
            assert_eq!(without_meta(head), Some(&br#"{"seq":1,"x":"a""#[..]));
            assert_eq!(leading_seq(head), Some(1));
            let mut bad = line.to_vec();
            bad[10] ^= 1;
            assert!(unseal(&bad, &GENESIS, layout).is_err());
            assert!(unseal(line, &h1, layout).is_err(), "wrong prev");
        }
    }

    #[test]
    fn format_two_records_are_smaller() {
        let mut v1 = Vec::new();
        let mut v2 = Vec::new();
        seal(b"{}", &GENESIS, Layout::V1, &mut v1);
        seal(b"{}", &GENESIS, Layout::V2, &mut v2);
        assert_eq!(v1.len() - v2.len(), 9 + 64 + 1);
    }

    #[test]
    fn envelope_and_seq_parse_without_json() {
        let (seq, kind, rest) =
            envelope(br#"{"seq":12,"type":"stepStarted","parentSeq":2"#).unwrap();
        assert_eq!(
            (seq, kind, rest),
            (12, &b"stepStarted"[..], &br#","parentSeq":2"#[..])
        );
        assert_eq!(
            leading_seq(br#"{"seq":18446744073709551615,"#),
            Some(u64::MAX)
        );
        assert_eq!(
            leading_seq(br#"{"seq":18446744073709551616,"#),
            None,
            "overflow"
        );
        assert_eq!(leading_seq(br#"{"seq":,"#), None);
    }
}
