//! Compiled content rules and where they match in a string.
//!
//! Regexes use the `regex` crate only (finite automata: linear in the text, whatever the
//! pattern), with a compiled-size and a nesting limit; a pattern that needs backtracking
//! (look-around, backreferences) is refused with that reason, never handed to another engine.
//! Keywords match as whole words on normalized text ([`super::normalize`]).

use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use super::detect::{self, Detector, Span};
use super::normalize::{self, Folded};
use super::spec::{Subject, MAX_KEYWORDS, MAX_KEYWORD_BYTES, MAX_PATTERN_BYTES};
use crate::model::verdict::Action;

/// Largest compiled regex (bytes) per rule.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Deepest nesting of groups and repetitions in a pattern.
const REGEX_NEST_LIMIT: u32 = 64;

/// What a rule looks for.
#[derive(Debug, Clone)]
pub(crate) enum Matcher {
    Detector(Detector),
    Regex(Regex),
    /// One alternation of the folded keywords, with word boundaries.
    Keywords(Regex),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) id: Arc<str>,
    pub(crate) action: Action,
    /// What a redaction says (`[REDACTED:<kind>]`) and verdicts record: the detector's name,
    /// or the rule id.
    pub(crate) kind: Arc<str>,
    pub(crate) matcher: Matcher,
    /// Bit set of [`Subject::bit`].
    pub(crate) on: u8,
}

impl Rule {
    pub(crate) fn applies(&self, subject: Subject) -> bool {
        self.on & subject.bit() != 0
    }

    /// Whether this is the `secret_value` detector (it also judges object fields).
    pub(crate) fn is_secret_value(&self) -> bool {
        matches!(self.matcher, Matcher::Detector(Detector::SecretValue))
    }

    /// Append the byte spans of `text` this rule matches.
    pub(crate) fn find(&self, text: &str, folded: &mut Option<Folded>, out: &mut Vec<Span>) {
        match &self.matcher {
            Matcher::Detector(d) => detect::find(*d, text, out),
            Matcher::Regex(re) => out.extend(re.find_iter(text).filter_map(|m| {
                (m.end() > m.start()).then_some(Span {
                    start: m.start(),
                    end: m.end(),
                })
            })),
            Matcher::Keywords(re) => {
                if text.is_ascii() {
                    // ASCII needs no normalization: the pattern is case-insensitive.
                    out.extend(re.find_iter(text).map(|m| Span {
                        start: m.start(),
                        end: m.end(),
                    }));
                    return;
                }
                let f = folded.get_or_insert_with(|| Folded::of(text));
                for m in re.find_iter(&f.text) {
                    let (start, end) = f.original(m.start(), m.end());
                    out.push(Span { start, end });
                }
            }
        }
    }
}

/// Compile a `regex` rule's pattern.
///
/// Errors: why the pattern is refused (too long, backtracking features, invalid syntax, too
/// large compiled), with the offset in the pattern when the parser gives one.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "the pattern is {} bytes, over the limit of {MAX_PATTERN_BYTES}",
            pattern.len()
        ));
    }
    if pattern.is_empty() {
        return Err("the pattern is empty".to_owned());
    }
    let re = RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| regex_error(pattern, e))?;
    if re.is_match("") {
        return Err(
            "the pattern matches the empty string, so it would match everywhere".to_owned(),
        );
    }
    Ok(re)
}

fn regex_error(pattern: &str, e: regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => format!(
            "the pattern compiles to more than {limit} bytes (the limit): simplify it or split it into several rules"
        ),
        regex::Error::Syntax(text) => {
            let backtracking = text.contains("look-around") || text.contains("backreferences");
            // The parser's message draws the pattern with a caret; keep its last line, and
            // the span's offset when it names one.
            let why = text
                .lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .map(|l| l.trim_start_matches("error:").trim().to_owned())
                .unwrap_or_else(|| text.lines().last().unwrap_or("").to_owned());
            let offset = caret_offset(&text, pattern)
                .map(|o| format!(" at byte {o} of the pattern"))
                .unwrap_or_default();
            if backtracking {
                format!(
                    "{why}{offset}: AgentMesh runs regexes in linear time, so patterns that need backtracking (look-around, backreferences) are refused; rewrite it without them"
                )
            } else {
                format!("invalid regex{offset}: {why}")
            }
        }
        other => format!("invalid regex: {other}"),
    }
}

/// The offset of the caret the regex parser draws under the pattern.
fn caret_offset(text: &str, pattern: &str) -> Option<usize> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.ends_with(pattern) || line == pattern {
            let caret = lines.next()?;
            let pad = line.len() - pattern.len();
            return caret.find('^').map(|i| i.saturating_sub(pad));
        }
    }
    None
}

/// Compile a `keywords` rule: each keyword folded, escaped, bounded by word boundaries where
/// it starts or ends with a word character.
///
/// Errors: why the list is refused, naming the keyword's index.
pub(crate) fn compile_keywords(words: &[String]) -> Result<Regex, String> {
    if words.is_empty() {
        return Err("the list is empty".to_owned());
    }
    if words.len() > MAX_KEYWORDS {
        return Err(format!(
            "{} keywords, over the limit of {MAX_KEYWORDS}",
            words.len()
        ));
    }
    let mut alternatives = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        if w.len() > MAX_KEYWORD_BYTES {
            return Err(format!(
                "keyword {i} is {} bytes, over the limit of {MAX_KEYWORD_BYTES}",
                w.len()
            ));
        }
        let folded = normalize::fold(w.trim());
        if folded.is_empty() {
            return Err(format!("keyword {i} is empty after normalisation"));
        }
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let mut alt = String::new();
        if word(folded.chars().next()) {
            alt.push_str(r"\b");
        }
        alt.push_str(&regex::escape(&folded));
        if word(folded.chars().last()) {
            alt.push_str(r"\b");
        }
        alternatives.push(alt);
    }
    let pattern = format!("(?i:{})", alternatives.join("|"));
    RegexBuilder::new(&pattern)
        .size_limit(REGEX_SIZE_LIMIT * 8)
        .dfa_size_limit(REGEX_SIZE_LIMIT * 8)
        .build()
        .map_err(|e| format!("the keywords compile too large: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtracking_patterns_are_refused_with_the_reason() {
        let e = compile_regex(r"foo(?=bar)").unwrap_err();
        assert!(e.contains("look-around"), "{e}");
        assert!(e.contains("linear time"), "{e}");
        let e = compile_regex(r"(a)\1").unwrap_err();
        assert!(e.contains("backreferences"), "{e}");
        let e = compile_regex(r"a(b").unwrap_err();
        assert!(e.starts_with("invalid regex at byte 1"), "{e}");
        assert!(compile_regex(r"a*").unwrap_err().contains("empty string"));
        let big = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert!(compile_regex(&big).unwrap_err().contains("over the limit"));
        // Nested counted repetition compiles far past the size limit.
        let e = compile_regex(r"(((a{100}){100}){100})").unwrap_err();
        assert!(e.contains("compiles to more than"), "{e}");
    }

    #[test]
    fn keywords_match_whole_words_after_normalisation() {
        let re = compile_keywords(&["Project Zeus".into(), "c++".into()]).unwrap();
        let rule = Rule {
            id: "k".into(),
            action: Action::Block,
            kind: "k".into(),
            matcher: Matcher::Keywords(re),
            on: 0xff,
        };
        let hits = |text: &str| {
            let mut out = Vec::new();
            rule.find(text, &mut None, &mut out);
            out.iter()
                .map(|s| text[s.start..s.end].to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(hits("about PROJECT ZEUS today"), ["PROJECT ZEUS"]);
        assert_eq!(
            hits("ｐｒｏｊｅｃｔ　ｚｅｕｓ"),
            ["ｐｒｏｊｅｃｔ　ｚｅｕｓ"]
        );
        assert_eq!(hits("pro\u{200B}ject zeus!"), ["pro\u{200B}ject zeus"]);
        assert!(hits("projectzeus and project zeuss").is_empty());
        assert_eq!(hits("I like c++."), ["c++"]);
    }
}
