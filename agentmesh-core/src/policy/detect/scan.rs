//! Byte-level helpers the detectors share: a fast digit search and a lexer of digit groups.

/// Whether `b` is an ASCII letter or digit.
pub(super) fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// The byte at `i`, or 0 outside the text (0 is never a separator or a digit).
pub(super) fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 at the start.
pub(super) fn before(b: &[u8], i: usize) -> u8 {
    if i == 0 {
        0
    } else {
        b[i - 1]
    }
}

/// The first ASCII digit at or after `from`. Whole 16-byte chunks are tested with a branch-free
/// fold the compiler vectorises, so digit-free prose is skipped at memory speed.
pub(super) fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    const CHUNK: usize = 16;
    let mut i = from;
    while i + CHUNK <= b.len() {
        let chunk = &b[i..i + CHUNK];
        if chunk.iter().fold(false, |any, &c| any | c.is_ascii_digit()) {
            break;
        }
        i += CHUNK;
    }
    b[i.min(b.len())..]
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| i + p)
}

/// The most digit groups a number lexed by [`digit_groups`] keeps (later ones are only counted).
pub(super) const MAX_GROUPS: usize = 8;

/// A run of digit groups separated by single separator bytes, e.g. `4111 1111 1111 1111`.
pub(super) struct Groups {
    /// `(start, end)` of each kept group.
    pub spans: [(usize, usize); MAX_GROUPS],
    /// The separator byte before each kept group (0 before the first).
    pub seps: [u8; MAX_GROUPS],
    /// Groups kept in `spans`.
    pub len: usize,
    /// Groups in the whole run (more than `len` when the run has more than `MAX_GROUPS`).
    pub total: usize,
    /// Digits in the kept groups.
    pub digits: usize,
    /// End of the whole run.
    pub end: usize,
}

impl Groups {
    /// Length of group `i`.
    pub fn width(&self, i: usize) -> usize {
        self.spans[i].1 - self.spans[i].0
    }

    /// Whether every separator is the same byte (true for a single group).
    pub fn one_separator(&self) -> bool {
        self.len < 2 || self.seps[1..self.len].iter().all(|&s| s == self.seps[1])
    }
}

/// Lexes the maximal run of digit groups starting at the digit `start`: a group is a run of
/// digits; a group continues the run when exactly one byte of `seps` separates it from the
/// previous one. Linear in the run's length.
pub(super) fn digit_groups(b: &[u8], start: usize, seps: &[u8]) -> Groups {
    let mut g = Groups {
        spans: [(0, 0); MAX_GROUPS],
        seps: [0; MAX_GROUPS],
        len: 0,
        total: 0,
        digits: 0,
        end: start,
    };
    let mut i = start;
    let mut sep = 0u8;
    loop {
        let s = i;
        while at(b, i).is_ascii_digit() {
            i += 1;
        }
        if g.len < MAX_GROUPS {
            g.spans[g.len] = (s, i);
            g.seps[g.len] = sep;
            g.len += 1;
            g.digits += i - s;
        }
        g.total += 1;
        g.end = i;
        let next = at(b, i);
        if seps.contains(&next) && at(b, i + 1).is_ascii_digit() {
            sep = next;
            i += 1;
        } else {
            return g;
        }
    }
}

/// Luhn checksum over the digits of `b[start..end]` (other bytes skipped).
pub(super) fn luhn(b: &[u8], start: usize, end: usize) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &c in b[start..end].iter().rev() {
        if !c.is_ascii_digit() {
            continue;
        }
        let mut d = u32::from(c - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum.is_multiple_of(10)
}

/// Whether the ASCII word ending right before `end` (skipping spaces, `:`, `=` and `#`) is, in
/// lower case, one of `words`. Looks back at most 24 bytes.
pub(super) fn preceded_by_word(b: &[u8], end: usize, words: &[&str]) -> bool {
    let mut i = end;
    let floor = end.saturating_sub(24);
    while i > floor && matches!(b[i - 1], b' ' | b':' | b'=' | b'#' | b'\t') {
        i -= 1;
    }
    let word_end = i;
    while i > floor && (b[i - 1].is_ascii_alphabetic() || b[i - 1] == b'_') {
        i -= 1;
    }
    if i == word_end || (i > 0 && is_alnum(b[i - 1])) {
        return false;
    }
    let word = &b[i..word_end];
    words
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w.as_bytes()))
}

/// Shannon entropy of `s` in bits per byte.
pub(super) fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &c in s {
        counts[usize::from(c)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}
