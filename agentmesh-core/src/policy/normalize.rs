//! The text keyword rules look at: NFKC, full Unicode case folding, and no zero-width or
//! invisible formatting characters, so `ＰＲＯＪＥＣＴ`, `Pro\u{200B}ject` and `PROJECT` all read
//! `project`. Each normalized byte maps back to the original text, so a match redacts the
//! original characters it came from.

use caseless::Caseless;
use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::UnicodeNormalization;

/// Characters removed before matching: zero-width spaces and joiners, word joiner, BOM, soft
/// hyphen, Mongolian vowel separator, the invisible math operators, and bidi controls.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// A keyword in the form matching uses.
pub(crate) fn fold(s: &str) -> String {
    Folded::of(s).text
}

/// Normalized text with a map back to the original.
pub(crate) struct Folded {
    /// The normalized text.
    pub(crate) text: String,
    /// For each byte of `text`, the original span `[start, end)` of the characters it came
    /// from (empty when the text was ASCII: then the map is the identity).
    spans: Vec<(u32, u32)>,
}

impl Folded {
    /// Normalize `s`. ASCII text only needs lowercasing, done without a map.
    pub(crate) fn of(s: &str) -> Folded {
        if s.is_ascii() {
            return Folded {
                text: s.to_ascii_lowercase(),
                spans: Vec::new(),
            };
        }
        let mut text = String::with_capacity(s.len());
        let mut spans = Vec::with_capacity(s.len());
        // Normalize segment by segment (a starter and the combining marks after it), so the
        // composition NFKC makes stays inside a segment and every output byte has one origin.
        let mut seg_start = 0usize;
        let mut segment = String::new();
        let mut flush = |segment: &mut String, start: usize, end: usize, text: &mut String| {
            if segment.is_empty() {
                return;
            }
            let before = text.len();
            let folded: String = segment.nfkc().default_case_fold().nfkc().collect();
            text.extend(folded.chars().filter(|c| !is_invisible(*c)));
            spans.extend(std::iter::repeat_n(
                (start as u32, end as u32),
                text.len() - before,
            ));
            segment.clear();
        };
        for (i, c) in s.char_indices() {
            if is_invisible(c) {
                // Dropped: it ends no segment, so `a\u{200B}\u{301}` still composes.
                continue;
            }
            if canonical_combining_class(c) == 0 && !segment.is_empty() {
                flush(&mut segment, seg_start, i, &mut text);
                seg_start = i;
            }
            if segment.is_empty() {
                seg_start = i;
            }
            segment.push(c);
        }
        flush(&mut segment, seg_start, s.len(), &mut text);
        Folded { text, spans }
    }

    /// The original span of normalized bytes `[start, end)` (`end > start`).
    pub(crate) fn original(&self, start: usize, end: usize) -> (usize, usize) {
        if self.spans.is_empty() {
            return (start, end);
        }
        let a = self.spans[start].0 as usize;
        let b = self.spans[end - 1].1 as usize;
        (a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_case_and_invisible_characters_fold_away() {
        assert_eq!(fold("ＰＲＯＪＥＣＴ"), "project");
        assert_eq!(fold("Pro\u{200B}ject"), "project");
        assert_eq!(fold("STRASSE"), fold("Straße"));
        assert_eq!(fold("ﬁle"), "file");
        // A decomposed é composes like the precomposed one.
        assert_eq!(fold("cafe\u{301}"), fold("café"));
    }

    #[test]
    fn matches_map_back_to_the_original_characters() {
        let s = "x Ｐro\u{200B}ject y";
        let f = Folded::of(s);
        let at = f.text.find("project").unwrap();
        let (a, b) = f.original(at, at + "project".len());
        assert_eq!(&s[a..b], "Ｐro\u{200B}ject");
        let ascii = Folded::of("Say PROJECT now");
        let at = ascii.text.find("project").unwrap();
        assert_eq!(ascii.original(at, at + 7), (4, 11));
    }
}
