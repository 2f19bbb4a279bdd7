//! Network identifiers: IPv4 addresses.

use super::numbers::skip_digits;
use super::scan::{at, before, is_alnum, next_digit, preceded_by_word};
use super::Span;

/// Words that make a dotted quad a version, an object id or a section number, not an address.
const NOT_ADDRESS_WORDS: &[&str] = &[
    "v",
    "ver",
    "version",
    "build",
    "release",
    "oid",
    "firmware",
    "kernel",
    "chrome",
    "firefox",
    "windows",
    "macos",
    "ios",
    "android",
    "python",
    "node",
    "java",
    "rustc",
    "chapter",
    "section",
    "clause",
    "paragraph",
    "step",
    "rule",
    "figure",
    "table",
];

/// Finds IPv4 addresses: four octets 0-255 without leading zeros, not part of a longer dotted
/// number (`1.2.3.4.5`, OIDs), not glued to letters (`v1.2.3.4`, `1.2.3.4-beta`), not after a version word
/// (`version 10.0.19041.1`). Loopback (127/8), 0.0.0.0 and 255.x (masks, broadcast) are not
/// personal data and are skipped; private ranges are kept (they map a network).
pub(super) fn find_ipv4s(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(d) = next_digit(b, i) {
        let p = before(b, d);
        let glued = is_alnum(p) || b"._-+$".contains(&p);
        if glued {
            i = skip_digits(b, d);
            continue;
        }
        let mut octets = [0u16; 4];
        let mut j = d;
        let mut ok = true;
        for (k, octet) in octets.iter_mut().enumerate() {
            let s = j;
            j = skip_digits(b, j);
            let digits = &b[s..j];
            if digits.is_empty() || digits.len() > 3 || (digits.len() > 1 && digits[0] == b'0') {
                ok = false;
                break;
            }
            *octet = digits.iter().fold(0, |n, &c| n * 10 + u16::from(c - b'0'));
            if *octet > 255 {
                ok = false;
                break;
            }
            if k < 3 {
                if at(b, j) != b'.' {
                    ok = false;
                    break;
                }
                j += 1;
            }
        }
        if !ok {
            i = skip_dotted(b, d);
            continue;
        }
        i = j;
        let n = at(b, j);
        let longer = n == b'.' && at(b, j + 1).is_ascii_digit();
        let suffix = n == b'-' && at(b, j + 1).is_ascii_alphabetic();
        if is_alnum(n) || longer || suffix || preceded_by_word(b, d, NOT_ADDRESS_WORDS) {
            i = skip_dotted(b, d);
            continue;
        }
        let special = octets[0] == 127 || octets[0] == 255 || octets == [0, 0, 0, 0];
        if !special {
            out.push(Span { start: d, end: j });
        }
    }
}

/// Skips a whole run of digits and dots, so the tail of a rejected dotted number is not
/// re-read as an address.
fn skip_dotted(b: &[u8], mut i: usize) -> usize {
    while at(b, i).is_ascii_digit() || (at(b, i) == b'.' && at(b, i + 1).is_ascii_digit()) {
        i += 1;
    }
    i
}
