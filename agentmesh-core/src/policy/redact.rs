//! Judging values: every string (and number, and object key) of a JSON value is matched by the
//! rules that apply to its subject; a block keeps the whole value out, a redaction replaces
//! each match with `[REDACTED:<kind>]`, a warning only records a verdict.
//!
//! Overlapping matches merge into one placeholder, so no fragment of either is left. Matches
//! that lie inside a placeholder already there are ignored, so redacting twice changes nothing.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value};

use super::detect::{self, Span};
use super::normalize::Folded;
use super::rules::Rule;
use super::{Policy, Subject};
use crate::model::verdict::{Action, Verdict};

/// How every placeholder starts: `[REDACTED:<kind>]`.
pub const PLACEHOLDER_PREFIX: &str = "[REDACTED:";

/// Placeholders already in a text (a value redacted before, or quoted from one).
fn placeholders() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\[REDACTED:[A-Za-z0-9_.-]{1,64}\]").expect("a valid regex"))
}

/// What a policy decided about one value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checked {
    /// The value to record, send and pass on instead, when a redaction changed it.
    pub value: Option<Value>,
    /// The verdicts, in the order of the value's strings, then of the rules. For a blocked
    /// value, only the blocks.
    pub verdicts: Vec<Verdict>,
    /// Whether a `block` rule matched: the value must not be recorded, sent or passed on.
    pub blocked: bool,
}

/// One replaced span of [`Policy::redact`]: character (Unicode scalar) offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedactedSpan {
    /// First character of the span.
    pub start: usize,
    /// One past its last character.
    pub end: usize,
    /// What the placeholder says (`email`, or a custom rule's id).
    pub kind: String,
    /// The rule that matched first there.
    pub rule: String,
}

/// A redacted text and what was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redaction {
    /// The text with every span replaced by `[REDACTED:<kind>]`.
    pub text: String,
    /// The replaced spans, in order.
    pub spans: Vec<RedactedSpan>,
}

/// A match of rule `rule` (an index into the policy's rules).
#[derive(Debug, Clone, Copy)]
struct Hit {
    span: Span,
    rule: usize,
}

/// The keyed digest a block records for the value it kept out: blake3 keyed by
/// `derive_key("agentmesh policy block digest v1", context)`, over the value's canonical JSON.
/// The context is `<runId>/<seq>/<sub>` of the record (`sub` 0 for a completion), so a value
/// can be checked against the log by whoever holds it, and digests of one value differ between
/// records.
pub fn block_digest(context: &str, value: &Value) -> String {
    let key = blake3::derive_key("agentmesh policy block digest v1", context.as_bytes());
    let text = value.to_string();
    blake3::keyed_hash(&key, text.as_bytes())
        .to_hex()
        .to_string()
}

impl Policy {
    /// Judge `value` as `subject`: the rules that apply to it, in order.
    pub fn check(&self, subject: Subject, value: &Value) -> Checked {
        if !self.looks_at(subject) {
            return Checked::default();
        }
        let mut walk = Walk {
            rules: self.rules(),
            active: self.rules_on(subject),
            verdicts: BTreeMap::new(),
            order: 0,
            blocked: false,
        };
        let replaced = walk.value(value, &mut String::new(), None);
        let mut verdicts: Vec<(usize, Verdict)> = walk.verdicts.into_values().collect();
        verdicts.sort_by_key(|(order, _)| *order);
        let mut verdicts: Vec<Verdict> = verdicts.into_iter().map(|(_, v)| v).collect();
        if walk.blocked {
            verdicts.retain(|v| v.action == Action::Block);
            return Checked {
                value: None,
                verdicts,
                blocked: true,
            };
        }
        Checked {
            value: replaced,
            verdicts,
            blocked: false,
        }
    }

    /// Judge a text that cannot be blocked (a failure's message): blocking rules redact it.
    pub fn check_message(&self, subject: Subject, text: &str) -> (Option<String>, Vec<Verdict>) {
        let checked = self.check(subject, &Value::String(text.to_owned()));
        if !checked.blocked {
            let text = checked.value.and_then(|v| v.as_str().map(str::to_owned));
            return (text, checked.verdicts);
        }
        // Redact with every matching rule, blocks included.
        let not_warn = |r: &Rule| r.action != Action::Warn;
        let hits = stable_hits(self.rules(), self.rules_on(subject), text, None, &not_warn);
        let (redacted, _) = replace(self.rules(), text, &hits, not_warn);
        let verdicts = checked
            .verdicts
            .into_iter()
            .map(|mut v| {
                v.action = Action::Redact;
                v
            })
            .collect();
        (Some(redacted), verdicts)
    }

    /// Redact `text` with every content rule of the policy whose action is `redact` or
    /// `block`, whatever its subjects (what `agentmesh redact` prints).
    pub fn redact(&self, text: &str) -> Redaction {
        let all: Vec<usize> = (0..self.rules().len()).collect();
        let not_warn = |r: &Rule| r.action != Action::Warn;
        let hits = stable_hits(self.rules(), &all, text, None, &not_warn);
        let (out, spans) = replace(self.rules(), text, &hits, not_warn);
        // Byte offsets to character offsets, in one pass.
        let mut chars = text.char_indices().map(|(i, _)| i).enumerate().peekable();
        let mut char_at = |byte: usize| -> usize {
            while let Some(&(n, b)) = chars.peek() {
                if b >= byte {
                    return n;
                }
                chars.next();
            }
            text.chars().count()
        };
        let spans = spans
            .into_iter()
            .map(|(span, rule)| {
                let start = char_at(span.start);
                let end = char_at(span.end);
                RedactedSpan {
                    start,
                    end,
                    kind: self.rules()[rule].kind.to_string(),
                    rule: self.rules()[rule].id.to_string(),
                }
            })
            .collect();
        Redaction { text: out, spans }
    }
}

struct Walk<'a> {
    rules: &'a [Rule],
    active: &'a [usize],
    /// (path, rule) → (first seen, verdict).
    verdicts: BTreeMap<(String, usize), (usize, Verdict)>,
    order: usize,
    blocked: bool,
}

impl Walk<'_> {
    /// Judge one value at `pointer` (`key` is its field name in the parent object); returns
    /// its replacement when a redaction changed it.
    fn value(&mut self, v: &Value, pointer: &mut String, key: Option<&str>) -> Option<Value> {
        match v {
            Value::String(s) => self.text(s, pointer, key).map(Value::String),
            Value::Number(n) => self.text(&n.to_string(), pointer, key).map(Value::String),
            Value::Array(items) => {
                let mut out: Option<Vec<Value>> = None;
                for (i, item) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(itoa::Buffer::new().format(i));
                    let changed = self.value(item, pointer, None);
                    pointer.truncate(len);
                    if let Some(new) = changed {
                        out.get_or_insert_with(|| items[..i].to_vec()).push(new);
                    } else if let Some(o) = out.as_mut() {
                        o.push(item.clone());
                    }
                }
                out.map(Value::Array)
            }
            Value::Object(map) => {
                // Replacements (new key, new value) by member, allocated at the first change.
                let mut changes: Option<Vec<(Option<String>, Option<Value>)>> = None;
                for (i, (k, item)) in map.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    push_escaped(pointer, k);
                    let new_key = self.text(k, pointer, None);
                    let new_value = self.value(item, pointer, Some(k));
                    pointer.truncate(len);
                    if new_key.is_some() || new_value.is_some() {
                        let c = changes.get_or_insert_with(|| {
                            let mut v = Vec::with_capacity(map.len());
                            v.resize_with(i, || (None, None));
                            v
                        });
                        c.push((new_key, new_value));
                    } else if let Some(c) = changes.as_mut() {
                        c.push((None, None));
                    }
                }
                let changes = changes?;
                let mut out = Map::new();
                for ((new_key, new_value), (key, old)) in changes.into_iter().zip(map) {
                    // Two keys redacted alike stay two members.
                    let key = new_key.unwrap_or_else(|| key.clone());
                    let mut unique = key.clone();
                    let mut n = 2;
                    while out.contains_key(&unique) {
                        unique = format!("{key}#{n}");
                        n += 1;
                    }
                    out.insert(unique, new_value.unwrap_or_else(|| old.clone()));
                }
                Some(Value::Object(out))
            }
            Value::Bool(_) | Value::Null => None,
        }
    }

    fn text(&mut self, s: &str, pointer: &str, key: Option<&str>) -> Option<String> {
        if s.is_empty() {
            return None;
        }
        let redacts = |r: &Rule| r.action == Action::Redact;
        let hits = stable_hits(self.rules, self.active, s, key, &redacts);
        if hits.is_empty() {
            return None;
        }
        for h in &hits {
            let rule = &self.rules[h.rule];
            self.blocked |= rule.action == Action::Block;
            let order = self.order;
            let entry = self
                .verdicts
                .entry((pointer.to_owned(), h.rule))
                .or_insert_with(|| {
                    (
                        order,
                        Verdict {
                            rule: rule.id.clone(),
                            action: rule.action,
                            kind: rule.kind.clone(),
                            path: Some(pointer.to_owned()),
                            count: 0,
                            digest: None,
                            agent: None,
                        },
                    )
                });
            entry.1.count = entry.1.count.saturating_add(1);
            self.order += 1;
        }
        let (out, spans) = replace(self.rules, s, &hits, redacts);
        (!spans.is_empty()).then_some(out)
    }
}

/// Append `token` to a JSON Pointer, escaped (RFC 6901), without allocating in the usual case.
fn push_escaped(pointer: &mut String, token: &str) {
    if !token.contains(['~', '/']) {
        pointer.push_str(token);
        return;
    }
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// Most passes [`stable_hits`] makes before it redacts the whole text.
const MAX_PASSES: usize = 8;

/// The hits of [`find_hits`], and those the replacement itself brings out, in `s`'s own
/// offsets: a placeholder changes what its neighbours look like (`x@example.com` followed by
/// `-----BEGIN …` is no address until the key is replaced), so the text is matched again until
/// nothing new appears. That makes redacting idempotent: the result holds no match of its own.
/// Text that is still changing after [`MAX_PASSES`] is redacted whole (fail closed).
fn stable_hits(
    rules: &[Rule],
    active: &[usize],
    s: &str,
    key: Option<&str>,
    replaces: &dyn Fn(&Rule) -> bool,
) -> Vec<Hit> {
    let mut hits = find_hits(rules, active, s, key);
    for _ in 0..MAX_PASSES {
        let (text, merged) = replace(rules, s, &hits, replaces);
        if merged.is_empty() {
            return hits;
        }
        let again = find_hits(rules, active, &text, key);
        let new: Vec<Hit> = again
            .into_iter()
            .filter(|h| replaces(&rules[h.rule]))
            .map(|h| Hit {
                span: to_original(rules, &merged, h.span, s.len()),
                rule: h.rule,
            })
            // A match that lies inside what is replaced already brings nothing new.
            .filter(|h| {
                !merged
                    .iter()
                    .any(|(m, _)| m.start <= h.span.start && h.span.end <= m.end)
            })
            .collect();
        if new.is_empty() {
            return hits;
        }
        hits.extend(new);
    }
    // Still changing: nothing of it is kept.
    let rule = hits
        .iter()
        .find(|h| replaces(&rules[h.rule]))
        .map_or(active[0], |h| h.rule);
    vec![Hit {
        span: Span {
            start: 0,
            end: s.len(),
        },
        rule,
    }]
}

/// The span of the original text that a span of its redaction (by `merged`) came from: a
/// placeholder stands for the whole span it replaced.
fn to_original(rules: &[Rule], merged: &[(Span, usize)], span: Span, len: usize) -> Span {
    // Walk the redacted text: original pieces between the merged spans, a placeholder for each.
    let map = |at: usize, end_side: bool| -> usize {
        let (mut out, mut orig) = (0usize, 0usize);
        for (m, rule) in merged {
            let piece = m.start - orig;
            if at < out + piece || (end_side && at == out + piece) {
                return orig + (at - out);
            }
            out += piece;
            let placeholder = PLACEHOLDER_PREFIX.len() + rules[*rule].kind.len() + 1;
            if at < out + placeholder || (end_side && at == out + placeholder) {
                return if end_side && at > out { m.end } else { m.start };
            }
            out += placeholder;
            orig = m.end;
        }
        (orig + (at - out)).min(len)
    };
    Span {
        start: map(span.start, false),
        end: map(span.end, true),
    }
}

/// Every match of the `active` rules in `s` (a field `key`'s value, when it is one), without
/// those inside a placeholder already there.
fn find_hits(rules: &[Rule], active: &[usize], s: &str, key: Option<&str>) -> Vec<Hit> {
    let mut hits = Vec::new();
    let mut spans = Vec::new();
    let mut folded: Option<Folded> = None;
    for &i in active {
        let rule = &rules[i];
        spans.clear();
        rule.find(s, &mut folded, &mut spans);
        if rule.is_secret_value() {
            if let Some(k) = key {
                if detect::secret_field(k, s) {
                    spans.push(Span {
                        start: 0,
                        end: s.len(),
                    });
                }
            }
        }
        hits.extend(spans.iter().map(|&span| Hit { span, rule: i }));
    }
    if hits.is_empty() || !s.contains(PLACEHOLDER_PREFIX) {
        return hits;
    }
    let kept: Vec<Span> = placeholders()
        .find_iter(s)
        .map(|m| Span {
            start: m.start(),
            end: m.end(),
        })
        .collect();
    hits.retain(|h| {
        !kept
            .iter()
            .any(|p| p.start <= h.span.start && h.span.end <= p.end)
    });
    hits
}

/// Replace the merged spans of the hits whose rule passes `replaces`; returns the text and the
/// merged spans (byte offsets into `s`) with the rule each is named after: the one starting
/// first, the longest among those, then the first in the policy.
fn replace(
    rules: &[Rule],
    s: &str,
    hits: &[Hit],
    replaces: impl Fn(&Rule) -> bool,
) -> (String, Vec<(Span, usize)>) {
    let mut chosen: Vec<Hit> = hits
        .iter()
        .copied()
        .filter(|h| replaces(&rules[h.rule]))
        .collect();
    if chosen.is_empty() {
        return (s.to_owned(), Vec::new());
    }
    chosen.sort_by(|a, b| {
        a.span
            .start
            .cmp(&b.span.start)
            .then(b.span.end.cmp(&a.span.end))
            .then(a.rule.cmp(&b.rule))
    });
    let mut merged: Vec<(Span, usize)> = Vec::new();
    for h in chosen {
        match merged.last_mut() {
            Some((last, _)) if h.span.start < last.end => last.end = last.end.max(h.span.end),
            _ => merged.push((h.span, h.rule)),
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (span, rule) in &merged {
        out.push_str(&s[at..span.start]);
        out.push_str(PLACEHOLDER_PREFIX);
        out.push_str(&rules[*rule].kind);
        out.push(']');
        at = span.end;
    }
    out.push_str(&s[at..]);
    (out, merged)
}
