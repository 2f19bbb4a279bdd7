//! Structured numbers: US social security numbers, payment cards and IBANs.

use super::scan::{at, before, digit_groups, is_alnum, luhn, next_digit, MAX_GROUPS};
use super::Span;

/// Whether a number starting at `i` may begin there: not glued to a word, a decimal point, a
/// thousands comma, a range, a path, a sign or a currency (a CSV comma is fine).
pub(super) fn starts_clean(b: &[u8], i: usize) -> bool {
    let p = before(b, i);
    let glued = is_alnum(p) || thousands_group(b, i) || b"._-/+$:#".contains(&p);
    let currency = p >= 0x80 && currency_before(b, i);
    !glued && !currency
}

/// Whether the digits at `i` are a thousands group (`1,234`): a comma after a digit, then
/// exactly three digits not followed by another digit group. A CSV field after a number
/// (`10442,4111…`, `1984-03-12,219-09-9999`) is not.
pub(super) fn thousands_group(b: &[u8], i: usize) -> bool {
    let e = skip_digits(b, i);
    let grouped = (matches!(at(b, e), b' ' | b'-') && at(b, e + 1).is_ascii_digit())
        || (at(b, e) == b'.' && skip_digits(b, e + 1) == e + 4 && at(b, e + 4) == b'.');
    i >= 2 && b[i - 1] == b',' && b[i - 2].is_ascii_digit() && e - i == 3 && !grouped
}

/// Whether a multi-byte currency sign (€, £, ¥, ₹) ends right before `i`.
fn currency_before(b: &[u8], i: usize) -> bool {
    ["€", "£", "¥", "₹"]
        .iter()
        .any(|c| b[..i].ends_with(c.as_bytes()))
}

/// Whether a number ending at `i` ends there: not followed by a letter, a digit, or a decimal
/// or thousands part.
pub(super) fn ends_clean(b: &[u8], i: usize) -> bool {
    let n = at(b, i);
    let thousands = n == b',' && skip_digits(b, i + 1) == i + 4;
    !(is_alnum(n) || thousands || (b".-/:".contains(&n) && at(b, i + 1).is_ascii_digit()))
}

/// Skips the digits at `i`.
pub(super) fn skip_digits(b: &[u8], mut i: usize) -> usize {
    while at(b, i).is_ascii_digit() {
        i += 1;
    }
    i
}

/// Whether the 40 bytes before `end`, in lower case, contain `needle`.
fn context_has(b: &[u8], end: usize, needle: &[u8]) -> bool {
    let w = &b[end.saturating_sub(40)..end];
    w.windows(needle.len())
        .any(|x| x.eq_ignore_ascii_case(needle))
}

/// Finds US social security numbers `AAA-GG-SSSS` / `AAA GG SSSS`, and 9 bare digits only when
/// the 40 bytes before them name an SSN ("SSN", "social security").
pub(super) fn find_ssns(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(d) = next_digit(b, i) {
        if !starts_clean(b, d) {
            i = skip_digits(b, d);
            continue;
        }
        let g = digit_groups(b, d, b"- ");
        i = g.end;
        if !ends_clean(b, g.end) {
            continue;
        }
        let d9 = |k: usize| b[g.spans[k].0..g.spans[k].1].iter().map(|c| c - b'0');
        let (area, group, serial) = if g.total == 3
            && g.one_separator()
            && (g.width(0), g.width(1), g.width(2)) == (3, 2, 4)
        {
            (num(d9(0)), num(d9(1)), num(d9(2)))
        } else if g.total == 1
            && g.width(0) == 9
            && (context_has(b, d, b"ssn") || context_has(b, d, b"social security"))
        {
            let all: Vec<u8> = d9(0).collect();
            (
                num(all[..3].iter().copied()),
                num(all[3..5].iter().copied()),
                num(all[5..].iter().copied()),
            )
        } else {
            continue;
        };
        let area_ok = area != 0 && area != 666 && area < 900;
        if area_ok && group != 0 && serial != 0 {
            out.push(Span {
                start: d,
                end: g.end,
            });
        }
    }
}

/// The decimal value of a few digits.
fn num(digits: impl Iterator<Item = u8>) -> u32 {
    digits.fold(0, |n, d| n * 10 + u32::from(d))
}

/// Whether a card number (its digits, most significant first) has a known IIN and a length
/// that fits the brand. Maestro is the fallback for the 50 and 56-69 ranges left over.
fn card_brand_ok(d: &[u8]) -> bool {
    let len = d.len();
    let p = |n: usize| num(d[..n].iter().copied());
    let (p1, p2, p3, p4) = (p(1), p(2), p(3), p(4));
    if p1 == 4 {
        return matches!(len, 13 | 16 | 19);
    }
    if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
        return len == 16;
    }
    if p2 == 34 || p2 == 37 {
        return len == 15;
    }
    if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 {
        return (16..=19).contains(&len);
    }
    if p2 == 36 {
        return (14..=19).contains(&len);
    }
    if (300..=305).contains(&p3) || p2 == 38 || p2 == 39 {
        return len == 14 || (16..=19).contains(&len);
    }
    if (3528..=3589).contains(&p4) {
        return (16..=19).contains(&len);
    }
    if p2 == 62 {
        return (16..=19).contains(&len);
    }
    if p2 == 50 || (56..=69).contains(&p2) {
        return (13..=19).contains(&len);
    }
    false
}

/// Whether the first `k` groups are a card layout: one group, or groups of 4 with a shorter
/// last one, or Amex/Diners 4-6-5 / 4-6-4.
fn card_layout(widths: &[usize]) -> bool {
    match widths {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&w| w == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Finds payment card numbers: 13-19 digits, plain or grouped by one kind of separator (space
/// or dash), Luhn-valid, with a branded IIN. A run followed by more groups (a CVV, an expiry)
/// is tried on its leading groups.
pub(super) fn find_cards(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(d) = next_digit(b, i) {
        if !starts_clean(b, d) {
            i = skip_digits(b, d);
            continue;
        }
        let g = digit_groups(b, d, b" -");
        i = g.end;
        if g.digits < 13 {
            continue;
        }
        let mut widths = [0usize; MAX_GROUPS];
        for (k, w) in widths.iter_mut().enumerate().take(g.len) {
            *w = g.width(k);
        }
        for k in (1..=g.len).rev() {
            let end = g.spans[k - 1].1;
            let digits: usize = widths[..k].iter().sum();
            let whole = k == g.total;
            if !(13..=19).contains(&digits)
                || !card_layout(&widths[..k])
                || !g.seps[1..k].iter().all(|&s| s == g.seps[1])
                || (whole && !ends_clean(b, end))
                || (!whole && g.seps[k] != b' ')
            {
                continue;
            }
            let ds: Vec<u8> = b[d..end]
                .iter()
                .filter(|c| c.is_ascii_digit())
                .map(|c| c - b'0')
                .collect();
            if luhn(b, d, end) && card_brand_ok(&ds) {
                out.push(Span { start: d, end });
                i = end;
                break;
            }
        }
    }
}

/// IBAN length per ISO 13616 country code.
fn iban_length(cc: [u8; 2]) -> Option<usize> {
    #[rustfmt::skip]
    const TABLE: &[(&[u8; 2], usize)] = &[
        (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20),
        (b"BE", 16), (b"BG", 22), (b"BH", 22), (b"BR", 29), (b"BY", 28), (b"CH", 21),
        (b"CR", 22), (b"CY", 28), (b"CZ", 24), (b"DE", 22), (b"DK", 18), (b"DO", 28),
        (b"EE", 20), (b"EG", 29), (b"ES", 24), (b"FI", 18), (b"FO", 18), (b"FR", 27),
        (b"GB", 22), (b"GE", 22), (b"GI", 23), (b"GL", 18), (b"GR", 27), (b"GT", 28),
        (b"HR", 21), (b"HU", 28), (b"IE", 22), (b"IL", 23), (b"IQ", 23), (b"IS", 26),
        (b"IT", 27), (b"JO", 30), (b"KW", 30), (b"KZ", 20), (b"LB", 28), (b"LC", 32),
        (b"LI", 21), (b"LT", 20), (b"LU", 20), (b"LV", 21), (b"MC", 27), (b"MD", 24),
        (b"ME", 22), (b"MK", 19), (b"MR", 27), (b"MT", 31), (b"MU", 30), (b"NL", 18),
        (b"NO", 15), (b"PK", 24), (b"PL", 28), (b"PS", 29), (b"PT", 25), (b"QA", 29),
        (b"RO", 24), (b"RS", 22), (b"SA", 24), (b"SC", 31), (b"SE", 24), (b"SI", 19),
        (b"SK", 24), (b"SM", 27), (b"ST", 25), (b"SV", 28), (b"TL", 23), (b"TN", 24),
        (b"TR", 26), (b"UA", 29), (b"VA", 22), (b"VG", 24), (b"XK", 20),
    ];
    TABLE.iter().find(|(c, _)| **c == cc).map(|&(_, n)| n)
}

/// ISO 7064 mod 97-10 over an IBAN's characters (country and check digits moved to the end).
fn iban_checksum_ok(chars: &[u8]) -> bool {
    let rotated = chars[4..].iter().chain(&chars[..4]);
    let mut rem = 0u32;
    for &c in rotated {
        rem = if c.is_ascii_digit() {
            (rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (rem * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    rem == 1
}

/// Finds IBANs: two upper-case letters, two check digits and the rest up to the country's
/// length, compact or with single spaces after every 4 characters; mod-97 valid.
pub(super) fn find_ibans(text: &str, out: &mut Vec<Span>) {
    let b = text.as_bytes();
    let upper_or_digit = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    let mut i = 0;
    while let Some(d) = next_digit(b, i) {
        i = d + 1;
        if d < 2 || !b[d - 2].is_ascii_uppercase() || !b[d - 1].is_ascii_uppercase() {
            continue;
        }
        let start = d - 2;
        if is_alnum(before(b, start)) || !at(b, d + 1).is_ascii_digit() {
            continue;
        }
        let Some(len) = iban_length([b[start], b[start + 1]]) else {
            continue;
        };
        let mut chars = Vec::with_capacity(len);
        let mut j = start;
        let mut spaced = None;
        while chars.len() < len {
            let c = at(b, j);
            if upper_or_digit(c) {
                chars.push(c);
                j += 1;
            } else if c == b' '
                && chars.len() % 4 == 0
                && spaced != Some(false)
                && upper_or_digit(at(b, j + 1))
            {
                spaced = Some(true);
                j += 1;
            } else {
                break;
            }
            if chars.len() == 4 && spaced.is_none() && at(b, j) != b' ' {
                spaced = Some(false);
            }
        }
        if chars.len() == len && !is_alnum(at(b, j)) && iban_checksum_ok(&chars) {
            out.push(Span { start, end: j });
            i = j;
        }
    }
}
