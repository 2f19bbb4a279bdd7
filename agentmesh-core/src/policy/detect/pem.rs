//! PEM private key blocks, BEGIN to END as one span.

use memchr::memmem;

use super::scan::at;
use super::Span;

/// Base64 lines of a PEM body are 64 (OpenSSH: 70) chars; a shorter one is the last line.
const FULL_LINE: usize = 48;

/// Whether `c` is a base64 character.
fn base64_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')
}

/// Skips whitespace and JSON-escaped line breaks (`\n`, `\r`, `\t`, also double-escaped).
fn skip_separators(b: &[u8], mut i: usize) -> usize {
    loop {
        match at(b, i) {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'\\' if matches!(at(b, i + 1), b'n' | b'r' | b't') => i += 2,
            b'\\' if at(b, i + 1) == b'\\' && matches!(at(b, i + 2), b'n' | b'r') => i += 3,
            _ => return i,
        }
    }
}

/// The end of a `-----BEGIN <label>-----` / `-----END <label>-----` line starting at `i` when
/// its label names a private key (`PRIVATE KEY`, `RSA PRIVATE KEY`, `PGP PRIVATE KEY BLOCK`…).
fn private_key_armor(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    let label_start = i + 5 + word.len();
    if !b[i..].starts_with(b"-----") || !b[i + 5..].starts_with(word) {
        return None;
    }
    let rest = &b[label_start..b.len().min(label_start + 40)];
    let label_len = memmem::find(rest, b"-----")?;
    let label = &rest[..label_len];
    let private = label.ends_with(b"PRIVATE KEY") || label.ends_with(b"PRIVATE KEY BLOCK");
    let plain = label.iter().all(|&c| c.is_ascii_uppercase() || c == b' ');
    (private && plain).then_some(label_start + label_len + 5)
}

/// Finds PEM private key blocks: the whole block from `-----BEGIN … PRIVATE KEY-----` through
/// its `-----END … PRIVATE KEY-----`, with real or JSON-escaped line breaks. A block without
/// END (truncated) is redacted up to the end of its base64. Public keys and certificates have
/// other labels and are not matched.
pub(super) fn find_private_keys(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let finder = memmem::Finder::new(b"-----BEGIN ");
    let mut i = 0;
    while let Some(p) = finder.find(&b[i..]) {
        let start = i + p;
        let Some(header_end) = private_key_armor(b, start, b"BEGIN ") else {
            i = start + 5;
            continue;
        };
        let end = block_end(b, header_end);
        out.push(Span { start, end });
        i = end;
    }
}

/// Where the block whose BEGIN line ends at `i` ends: after its END line, or after the last
/// base64 line of a truncated body. Reads each byte once.
fn block_end(b: &[u8], mut i: usize) -> usize {
    let mut end = i;
    let mut body_started = false;
    let mut last_short = false;
    loop {
        i = skip_separators(b, i);
        if b[i..].starts_with(b"-----") {
            return private_key_armor(b, i, b"END ").unwrap_or(end);
        }
        let s = i;
        while base64_byte(at(b, i)) {
            i += 1;
        }
        // Encrypted PEM headers such as `Proc-Type: 4,ENCRYPTED` come before the base64.
        let header = at(b, i) == b':' || (at(b, i) == b'-' && !b[i..].starts_with(b"-----"));
        if !body_started && header {
            while !matches!(at(b, i), 0 | b'\n' | b'\r' | b'\\' | b'"') {
                i += 1;
            }
            end = i;
            continue;
        }
        if i == s || last_short {
            return end;
        }
        body_started = true;
        last_short = i - s < FULL_LINE;
        end = i;
        if !matches!(at(b, i), b' ' | b'\t' | b'\r' | b'\n' | b'\\' | b'-') {
            return end;
        }
    }
}
