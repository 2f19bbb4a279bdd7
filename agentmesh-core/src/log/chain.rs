//! The hash chain over physical records.
//!
//! A record is a JSON object whose last fields are `"prev"` and `"hash"` (64 hex digits each):
//! `hash = blake3(prev_bytes || body)` where `body` is the record without those two fields.
//! Because they are always last and fixed-length, a line is checked without parsing JSON.

/// `,"prev":"` + 64 + `","hash":"` + 64 + `"}`.
pub(crate) const SUFFIX_LEN: usize = 9 + 64 + 10 + 64 + 2;
/// Largest record accepted by the writer and the reader.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

pub(crate) type Digest = [u8; 32];
pub(crate) const GENESIS: Digest = [0u8; 32];

/// Append `body` (a JSON object) sealed with the chain fields and `\n` to `out`; returns its hash.
pub(crate) fn seal(body: &[u8], prev: &Digest, out: &mut Vec<u8>) -> Digest {
    debug_assert_eq!(body.last(), Some(&b'}'));
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(body);
    let hash = *h.finalize().as_bytes();
    out.extend_from_slice(&body[..body.len() - 1]);
    out.extend_from_slice(b",\"prev\":\"");
    push_hex(out, prev);
    out.extend_from_slice(b"\",\"hash\":\"");
    push_hex(out, &hash);
    out.extend_from_slice(b"\"}\n");
    hash
}

fn push_hex(out: &mut Vec<u8>, bytes: &Digest) {
    out.extend_from_slice(&hex(bytes));
}

fn hex(bytes: &Digest) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// Check one line (without `\n`) against `prev`. Returns the body without its closing brace
/// (`{...` up to the last body field) and the record's hash.
///
/// Hashes are compared in hex form, which is cheaper than decoding the stored hex.
pub(crate) fn unseal<'a>(
    line: &'a [u8],
    prev: &Digest,
) -> Result<(&'a [u8], Digest), &'static str> {
    if line.len() < SUFFIX_LEN + 2 || line[0] != b'{' {
        return Err("not a sealed record");
    }
    let (head, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    if !suffix.starts_with(b",\"prev\":\"")
        || &suffix[73..83] != b"\",\"hash\":\""
        || !suffix.ends_with(b"\"}")
    {
        return Err("chain fields missing or malformed");
    }
    if suffix[9..73] != hex(prev) {
        return Err(
            "prev does not match the previous record's hash (record missing, reordered or altered)",
        );
    }
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(head);
    h.update(b"}");
    let hash = *h.finalize().as_bytes();
    if suffix[83..147] != hex(&hash) {
        return Err("hash mismatch (record altered)");
    }
    Ok((head, hash))
}

/// The canonical form of a body returned by [`unseal`]: without the final `"meta"` field.
pub(crate) fn canonical_body(head: &[u8]) -> Option<&[u8]> {
    let pat = b",\"meta\":{";
    let pos = head.windows(pat.len()).rposition(|w| w == pat)?;
    Some(&head[..pos])
}

/// The envelope of an event body: `{"seq":N,"type":"T","runId":"R"` → (N, T, `"R"` as JSON).
pub(crate) fn envelope(head: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let seq = leading_seq(head)?;
    let rest = &head[head.iter().position(|&c| c == b',')? + 1..];
    let rest = rest.strip_prefix(b"\"type\":\"")?;
    let end = rest.iter().position(|&c| c == b'"')?;
    let (kind, rest) = (&rest[..end], &rest[end + 1..]);
    let rest = rest.strip_prefix(b",\"runId\":")?;
    // The run id is a JSON string without escapes (run ids are [A-Za-z0-9._-]).
    let close = 1 + rest.get(1..)?.iter().position(|&c| c == b'"')?;
    Some((seq, kind, &rest[..=close]))
}

/// The `seq` at the start of an event body (`{"seq":N,`), without parsing the rest.
pub(crate) fn leading_seq(head: &[u8]) -> Option<u64> {
    let rest = head.strip_prefix(b"{\"seq\":")?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_unseal() {
        let mut out = Vec::new();
        let h1 = seal(br#"{"seq":1,"x":"a","meta":{"at":5}}"#, &GENESIS, &mut out);
        let line = &out[..out.len() - 1];
        let (head, h) = unseal(line, &GENESIS).unwrap();
        assert_eq!(h, h1);
        assert_eq!(canonical_body(head), Some(&br#"{"seq":1,"x":"a""#[..]));
        assert_eq!(leading_seq(head), Some(1));
        let mut bad = line.to_vec();
        bad[10] ^= 1;
        assert!(unseal(&bad, &GENESIS).is_err());
        assert!(unseal(line, &h1).is_err(), "wrong prev");
    }
}
