//! Contact details: e-mail addresses and phone numbers.

use memchr::memchr_iter;

use super::numbers::{ends_clean, skip_digits, thousands_group};
use super::scan::{at, before, is_alnum, next_digit};
use super::Span;

/// Bytes of the local part this detector accepts (the common RFC 5322 atext subset).
fn local_byte(c: u8) -> bool {
    is_alnum(c) || b"._%+-'".contains(&c)
}

/// Top-level "domains" that are file extensions: `icon@2x.png` is an asset, not an address.
const ASSET_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "avif", "heic", "css",
    "js", "mjs", "ts", "map", "json", "woff", "woff2", "ttf", "mp4", "webm", "pdf",
];

/// Finds e-mail addresses `local@domain.tld`. The domain needs a dot and an alphabetic TLD of
/// at least two letters, so `user@localhost`, `pkg@1.2.3` and `image@sha256:…` are not
/// addresses; `@handle` has no local part; `name@2x.png` style asset names and URL userinfo
/// (`https://user@host`) are skipped.
pub(super) fn find_emails(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let mut resume = 0;
    for at_sign in memchr_iter(b'@', b) {
        if at_sign < resume {
            continue;
        }
        let mut s = at_sign;
        while s > 0 && at_sign - s <= 64 && local_byte(b[s - 1]) {
            s -= 1;
        }
        if at_sign - s > 64 {
            continue;
        }
        while s < at_sign && !is_alnum(b[s]) {
            s += 1;
        }
        if url_userinfo(b, s) {
            continue;
        }
        let local = &b[s..at_sign];
        if local.is_empty() || local.ends_with(b".") || local.windows(2).any(|w| w == b"..") {
            continue;
        }
        let Some((end, first, tld)) = domain(b, at_sign + 1) else {
            continue;
        };
        let tld = &b[tld..end];
        let first = &b[at_sign + 1..first];
        let retina = first.len() >= 2
            && first[..first.len() - 1].iter().all(u8::is_ascii_digit)
            && first.ends_with(b"x");
        let asset = ASSET_EXTENSIONS
            .iter()
            .any(|e| tld.eq_ignore_ascii_case(e.as_bytes()));
        if retina || asset {
            continue;
        }
        out.push(Span { start: s, end });
        resume = end;
    }
}

/// Whether the local part starting at `s` is URL userinfo (`https://token@host`,
/// `postgres://user:pa#ss@host`): only userinfo bytes between a `://` and it.
fn url_userinfo(b: &[u8], s: usize) -> bool {
    let mut i = s;
    let floor = s.saturating_sub(128);
    while i > floor
        && !matches!(
            b[i - 1],
            b' ' | b'\t' | b'\n' | b'\r' | b'/' | b'@' | b'"' | b'\'' | b'<'
        )
    {
        i -= 1;
    }
    b[..i].ends_with(b"://")
}

/// Lexes a domain of at least two dot-separated labels starting at `i`; returns its end, the
/// end of its first label and the start of its TLD. The TLD is alphabetic (or punycode).
fn domain(b: &[u8], i: usize) -> Option<(usize, usize, usize)> {
    let mut j = i;
    let mut labels = 0;
    let mut first_end = i;
    let mut last_start;
    loop {
        last_start = j;
        while is_alnum(at(b, j)) || at(b, j) == b'-' {
            j += 1;
        }
        let label = &b[last_start..j];
        if label.is_empty() || label.len() > 63 || label[0] == b'-' || label.ends_with(b"-") {
            return None;
        }
        labels += 1;
        if labels == 1 {
            first_end = j;
        }
        if at(b, j) == b'.' && is_alnum(at(b, j + 1)) && j - i < 253 {
            j += 1;
        } else {
            break;
        }
    }
    let tld = &b[last_start..j];
    let alphabetic = tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic);
    let punycode = tld.len() > 4 && tld[..4].eq_ignore_ascii_case(b"xn--");
    (labels >= 2 && (alphabetic || punycode)).then_some((j, first_end, last_start))
}

/// The most groups a phone number has (`+33 1 23 45 67 89` has 6).
const MAX_PHONE_GROUPS: usize = 8;

/// One digit group of a phone number.
#[derive(Clone, Copy, Default)]
struct PhoneGroup {
    start: usize,
    end: usize,
    /// Written in parentheses, `(415)`.
    paren: bool,
    /// The separator before it (0 for none or the first).
    sep: u8,
}

impl PhoneGroup {
    fn width(&self) -> usize {
        self.end - self.start
    }
}

/// Finds phone numbers: `+` and a valid country code with 8-15 digits in any grouping; NANP
/// `(415) 555-2671`, `415-555-2671`, `1-800-555-0199`; and national numbers starting with a
/// single 0 in 2+ groups (`020 7946 0958`, `01 23 45 67 89`). Bare digit runs, dates, times,
/// versions, IP addresses and card numbers have none of these shapes.
pub(super) fn find_phones(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(d) = next_digit(b, i) {
        let (start, plus) = match before(b, d) {
            b'+' => (d - 1, true),
            b'(' => (d - 1, false),
            _ => (d, false),
        };
        let p = before(b, start);
        let glued = is_alnum(p)
            || (!plus && thousands_group(b, d))
            || (!plus && after_code_group(b, start))
            || b"._-/+$#=&".contains(&p);
        let clock = p == b':' && before(b, start - usize::from(start > 0)).is_ascii_digit();
        if glued || clock {
            i = skip_digits(b, d);
            continue;
        }
        let mut groups = [PhoneGroup::default(); MAX_PHONE_GROUPS];
        let (n, end) = lex_phone(b, if plus { d } else { start }, &mut groups);
        i = end.max(d + 1);
        if n == 0 || n > MAX_PHONE_GROUPS || !ends_clean(b, end) {
            continue;
        }
        let g = &groups[..n];
        let ok = if plus {
            international(b, g)
        } else {
            nanp(b, g) || national(b, g)
        };
        if ok {
            out.push(Span { start, end });
        }
    }
}

/// Whether the digits at `start` continue a code written in spaced groups of four, such as a
/// spaced IBAN (`NL91 ABNA 0417 1643 00`): the block before them is four of `A-Z 0-9` with a
/// letter, after a space.
fn after_code_group(b: &[u8], start: usize) -> bool {
    if start < 5 || b[start - 1] != b' ' {
        return false;
    }
    let block = &b[start - 5..start - 1];
    let opens = start == 5 || b[start - 6] == b' ';
    opens
        && block
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && block.iter().any(u8::is_ascii_uppercase)
}

/// Lexes digit groups (plain or parenthesised) joined by one of ` -.` (or nothing around a
/// parenthesis). Returns the group count (more than `MAX_PHONE_GROUPS` if too many) and the end.
fn lex_phone(
    b: &[u8],
    mut j: usize,
    groups: &mut [PhoneGroup; MAX_PHONE_GROUPS],
) -> (usize, usize) {
    let mut n = 0;
    let mut sep = 0;
    let mut end = j;
    loop {
        let group = if at(b, j) == b'(' {
            let s = j + 1;
            let e = skip_digits(b, s);
            if e == s || e - s > 5 || at(b, e) != b')' {
                break;
            }
            j = e + 1;
            PhoneGroup {
                start: s,
                end: e,
                paren: true,
                sep,
            }
        } else if at(b, j).is_ascii_digit() {
            let s = j;
            j = skip_digits(b, j);
            PhoneGroup {
                start: s,
                end: j,
                paren: false,
                sep,
            }
        } else {
            break;
        };
        if n < MAX_PHONE_GROUPS {
            groups[n] = group;
        }
        n += 1;
        end = j;
        let next = at(b, j);
        let after = at(b, j + 1);
        if b" -.".contains(&next) && (after.is_ascii_digit() || after == b'(') {
            sep = next;
            j += 1;
        } else if next == b'(' || (group.paren && next.is_ascii_digit()) {
            sep = 0;
        } else {
            break;
        }
    }
    (n, end)
}

/// The first digit of a group.
fn lead(b: &[u8], g: &PhoneGroup) -> u8 {
    b[g.start]
}

/// Two-digit country codes in use (E.164); 1 and 7 are the one-digit ones.
const CC2: &[u8] = &[
    20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55, 56,
    57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
];
/// Two-digit prefixes of the three-digit country codes.
const CC3_PREFIX: &[u8] = &[
    21, 22, 23, 24, 25, 26, 29, 35, 37, 38, 42, 50, 59, 67, 68, 69, 80, 85, 87, 88, 96, 97, 99,
];

/// `+` numbers: a country code in use, 8-15 digits (a `(0)` trunk digit not counted); +1
/// numbers are NANP (11 digits, area code 2-9).
fn international(b: &[u8], g: &[PhoneGroup]) -> bool {
    let mut digits = [0u8; 16];
    let mut n = 0;
    for (k, grp) in g.iter().enumerate() {
        if k > 0 && grp.paren && &b[grp.start..grp.end] == b"0" {
            continue;
        }
        for &c in &b[grp.start..grp.end] {
            if n == digits.len() {
                return false;
            }
            digits[n] = c - b'0';
            n += 1;
        }
    }
    if !(8..=15).contains(&n) || g[0].paren {
        return false;
    }
    let cc2 = digits[0] * 10 + digits[1];
    match digits[0] {
        1 => n == 11 && digits[1] >= 2,
        7 => n == 11,
        0 => false,
        _ => CC2.contains(&cc2) || CC3_PREFIX.contains(&cc2),
    }
}

/// NANP without `+`: optional leading 1, area code and exchange starting 2-9, line of 4;
/// the separators are consistent unless the area code is parenthesised.
fn nanp(b: &[u8], g: &[PhoneGroup]) -> bool {
    let g = match g {
        [one, rest @ ..] if rest.len() == 3 && !one.paren && &b[one.start..one.end] == b"1" => rest,
        _ => g,
    };
    let [area, exchange, line] = g else {
        return false;
    };
    if (area.width(), exchange.width(), line.width()) != (3, 3, 4)
        || exchange.paren
        || line.paren
        || lead(b, area) < b'2'
        || lead(b, exchange) < b'2'
    {
        return false;
    }
    if area.paren {
        matches!(exchange.sep, 0 | b' ') && line.sep != 0
    } else {
        exchange.sep != 0 && exchange.sep == line.sep
    }
}

/// National numbers: a single leading 0 (then a non-zero digit), 2+ groups of 2-8 digits
/// joined by one kind of separator (space or dash), 9-11 digits in all.
fn national(b: &[u8], g: &[PhoneGroup]) -> bool {
    if g.len() < 2 || g[0].width() < 2 || g[0].width() > 5 {
        return false;
    }
    let first = &b[g[0].start..g[0].end];
    if first[0] != b'0' || first[1] == b'0' {
        return false;
    }
    let digits: usize = g.iter().map(PhoneGroup::width).sum();
    let widths: Vec<usize> = g.iter().map(PhoneGroup::width).collect();
    if widths == [3, 2, 4] {
        return false; // the shape of an SSN
    }
    let seps_ok = g[1..]
        .iter()
        .all(|x| matches!(x.sep, b' ' | b'-') && x.sep == g[1].sep)
        || (g[0].paren && g[1].sep == b' ' && g[2..].iter().all(|x| x.sep == b' '));
    (9..=11).contains(&digits)
        && seps_ok
        && g[1..]
            .iter()
            .all(|x| !x.paren && (2..=8).contains(&x.width()))
}
