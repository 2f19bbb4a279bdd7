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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

fn parse_hex(text: &[u8]) -> Option<Digest> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(text[2 * i])? << 4 | nib(text[2 * i + 1])?;
    }
    Some(out)
}

/// Check one line (without `\n`) against `prev`. Returns the body without its closing brace
/// (`{...` up to the last body field) and the record's hash.
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
    let stored_prev = parse_hex(&suffix[9..73]).ok_or("prev is not hex")?;
    let stored_hash = parse_hex(&suffix[83..147]).ok_or("hash is not hex")?;
    if &stored_prev != prev {
        return Err(
            "prev does not match the previous record's hash (record missing, reordered or altered)",
        );
    }
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(head);
    h.update(b"}");
    if h.finalize().as_bytes() != &stored_hash {
        return Err("hash mismatch (record altered)");
    }
    Ok((head, stored_hash))
}

/// The canonical form of a body returned by [`unseal`]: without the final `"meta"` field.
pub(crate) fn canonical_body(head: &[u8]) -> Option<&[u8]> {
    let pat = b",\"meta\":{";
    let pos = head.windows(pat.len()).rposition(|w| w == pat)?;
    Some(&head[..pos])
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
