//! Deterministic repair of almost-JSON, as language models write it: the text inside a code
//! fence, prose around the value, `//` and `/* */` comments, single-quoted strings, unquoted
//! keys, trailing commas, Python's `True`/`False`/`None`, and a value cut off before its
//! closers (a truncated reply). The repaired text is then parsed strictly; nothing is guessed
//! beyond these rules, so the same text always repairs to the same value, in every host.

use serde_json::Value;

/// Longest text a repair is attempted on (larger outputs are not "almost JSON" by accident).
pub const MAX_REPAIR_BYTES: usize = 1 << 20;
/// Deepest nesting a repair follows.
const MAX_DEPTH: usize = 128;

/// A rule a repair applied; its wire name (recorded in the completion's `repaired.fixes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fix {
    /// The value was inside a Markdown code fence.
    CodeFence,
    /// Text before or after the value was dropped.
    SurroundingText,
    /// `//` or `/* */` comments were dropped.
    Comments,
    /// Single-quoted strings became double-quoted.
    SingleQuotes,
    /// Bare keys were quoted.
    UnquotedKeys,
    /// Commas before a closing bracket were dropped.
    TrailingCommas,
    /// `True`, `False`, `None` became `true`, `false`, `null`.
    PythonLiterals,
    /// Missing closing quotes and brackets were added (an incomplete last member dropped).
    Truncated,
}

impl Fix {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Fix::CodeFence => "codeFence",
            Fix::SurroundingText => "surroundingText",
            Fix::Comments => "comments",
            Fix::SingleQuotes => "singleQuotes",
            Fix::UnquotedKeys => "unquotedKeys",
            Fix::TrailingCommas => "trailingCommas",
            Fix::PythonLiterals => "pythonLiterals",
            Fix::Truncated => "truncated",
        }
    }
}

/// Repair `text` into a JSON value: the value and the rules applied (sorted; empty when the
/// text was JSON already). `None` when the rules do not make it JSON.
pub fn repair_json(text: &str) -> Option<(Value, Vec<Fix>)> {
    if text.len() > MAX_REPAIR_BYTES {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Some((v, Vec::new()));
    }
    let mut fixes = Vec::new();
    let mut body = text.trim().trim_start_matches('\u{feff}');
    if let Some(inner) = fenced(body) {
        fixes.push(Fix::CodeFence);
        body = inner;
    }
    let mut out = Rewriter {
        src: body.as_bytes(),
        text: body,
        pos: 0,
        out: String::with_capacity(body.len() + 8),
        fixes: &mut fixes,
    };
    out.document()?;
    let repaired = std::mem::take(&mut out.out);
    let value: Value = serde_json::from_str(&repaired).ok()?;
    fixes.sort_unstable();
    fixes.dedup();
    Some((value, fixes))
}

/// The body of the first Markdown code fence in `text` (its info string dropped), if any;
/// an unclosed fence runs to the end.
fn fenced(text: &str) -> Option<&str> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    let body_start = after.find('\n').map_or(after.len(), |n| n + 1);
    let body = &after[body_start..];
    let end = body.find("```").unwrap_or(body.len());
    Some(body[..end].trim())
}

enum Open {
    Object,
    Array,
}

struct Rewriter<'a, 'f> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    out: String,
    fixes: &'f mut Vec<Fix>,
}

impl Rewriter<'_, '_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// Skip whitespace and comments.
    fn skip(&mut self) {
        loop {
            while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
                self.pos += 1;
            }
            let rest = &self.src[self.pos..];
            if rest.starts_with(b"//") || rest.starts_with(b"#") {
                self.fixes.push(Fix::Comments);
                while self.peek().is_some_and(|b| b != b'\n') {
                    self.pos += 1;
                }
            } else if rest.starts_with(b"/*") {
                self.fixes.push(Fix::Comments);
                match self.text[self.pos + 2..].find("*/") {
                    Some(n) => self.pos += 2 + n + 2,
                    None => self.pos = self.src.len(),
                }
            } else {
                return;
            }
        }
    }

    /// The value, with anything before its first bracket and after its end dropped.
    fn document(&mut self) -> Option<()> {
        self.skip();
        let first = self.text[self.pos..].find(['{', '['])?;
        if first > 0 {
            // Prose first ("Here is the JSON: {...}"); a bare scalar is not repaired.
            self.fixes.push(Fix::SurroundingText);
            self.pos += first;
        }
        self.value(0)?;
        self.skip();
        if self.pos < self.src.len() {
            self.fixes.push(Fix::SurroundingText);
        }
        Some(())
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip();
        match self.peek()? {
            b'{' => self.container(Open::Object, depth),
            b'[' => self.container(Open::Array, depth),
            b'"' | b'\'' => self.string(),
            _ => self.scalar(),
        }
    }

    /// An object or array; at the end of the text, whatever is open is closed.
    fn container(&mut self, kind: Open, depth: usize) -> Option<()> {
        let (open, close) = match kind {
            Open::Object => ('{', b'}'),
            Open::Array => ('[', b']'),
        };
        self.pos += 1;
        self.out.push(open);
        let mut members = 0usize;
        // After a member a comma or the closer must come; after a comma, a member.
        let mut after_comma = false;
        loop {
            self.skip();
            match self.peek() {
                None => {
                    self.fixes.push(Fix::Truncated);
                    self.out.push(close as char);
                    return Some(());
                }
                Some(b) if b == close => {
                    if after_comma {
                        self.fixes.push(Fix::TrailingCommas);
                    }
                    self.pos += 1;
                    self.out.push(close as char);
                    return Some(());
                }
                Some(b',') if members > 0 && !after_comma => {
                    self.pos += 1;
                    after_comma = true;
                    continue;
                }
                // A comma first, two in a row, or a member right after another.
                Some(b',') => return None,
                Some(_) if members > 0 && !after_comma => return None,
                Some(_) => {}
            }
            let mark = self.out.len();
            if members > 0 {
                self.out.push(',');
            }
            let complete = match kind {
                Open::Object => self.member(depth)?,
                Open::Array => {
                    self.value(depth + 1)?;
                    true
                }
            };
            if !complete {
                // A key without its value at the end of a truncated text.
                self.out.truncate(mark);
                self.fixes.push(Fix::Truncated);
                self.out.push(close as char);
                return Some(());
            }
            members += 1;
            after_comma = false;
        }
    }

    /// `key: value`; `false` when the text ends before the value.
    fn member(&mut self, depth: usize) -> Option<bool> {
        match self.peek()? {
            b'"' | b'\'' => self.string()?,
            b if b.is_ascii_alphabetic() || b == b'_' || b == b'$' => {
                let start = self.pos;
                while self.peek().is_some_and(|b| {
                    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'-'
                }) {
                    self.pos += 1;
                }
                self.fixes.push(Fix::UnquotedKeys);
                self.out.push('"');
                self.out.push_str(&self.text[start..self.pos]);
                self.out.push('"');
            }
            _ => return None,
        }
        self.skip();
        match self.peek() {
            None => return Some(false),
            Some(b':') => self.pos += 1,
            Some(_) => return None,
        }
        self.skip();
        if self.peek().is_none() {
            return Some(false);
        }
        self.out.push(':');
        self.value(depth + 1)?;
        Some(true)
    }

    /// A string in double or single quotes, written double-quoted; an unclosed one is closed.
    fn string(&mut self) -> Option<()> {
        let quote = self.peek()?;
        if quote == b'\'' {
            self.fixes.push(Fix::SingleQuotes);
        }
        self.pos += 1;
        self.out.push('"');
        loop {
            let rest = &self.text[self.pos..];
            let Some(c) = rest.chars().next() else {
                self.fixes.push(Fix::Truncated);
                self.out.push('"');
                return Some(());
            };
            self.pos += c.len_utf8();
            match c {
                '\\' => {
                    let Some(e) = self.text[self.pos..].chars().next() else {
                        self.fixes.push(Fix::Truncated);
                        self.out.push('"');
                        return Some(());
                    };
                    self.pos += e.len_utf8();
                    match e {
                        // `\'` means a quote in a single-quoted string; JSON has no such escape.
                        '\'' => self.out.push('\''),
                        _ => {
                            self.out.push('\\');
                            self.out.push(e);
                        }
                    }
                }
                c if c as u32 == quote as u32 => {
                    self.out.push('"');
                    return Some(());
                }
                '"' => self.out.push_str("\\\""),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    self.out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => self.out.push(c),
            }
        }
    }

    /// A number or a literal, Python's spelled the JSON way.
    fn scalar(&mut self) -> Option<()> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.' | b'_'))
        {
            self.pos += 1;
        }
        let word = &self.text[start..self.pos];
        let json = match word {
            "" => return None,
            "True" => "true",
            "False" => "false",
            "None" => "null",
            w => w,
        };
        if json != word {
            self.fixes.push(Fix::PythonLiterals);
        }
        self.out.push_str(json);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn fixed(text: &str) -> (Value, Vec<&'static str>) {
        let (v, fixes) = repair_json(text).unwrap_or_else(|| panic!("not repaired: {text}"));
        (v, fixes.iter().map(|f| f.as_str()).collect())
    }

    #[test]
    fn the_defects_models_make_are_repaired_and_named() {
        let cases: &[(&str, Value, &[&str])] = &[
            (r#"{"a": 1}"#, json!({"a": 1}), &[]),
            (
                "```json\n{\"a\": [1, 2]}\n```",
                json!({"a": [1, 2]}),
                &["codeFence"],
            ),
            (
                "Sure! Here it is:\n```\n[1]\n```\nAnything else?",
                json!([1]),
                &["codeFence"],
            ),
            (
                "Here is the plan: {\"q\": [\"x\"]} Hope that helps.",
                json!({"q": ["x"]}),
                &["surroundingText"],
            ),
            (
                "{'a': 'it\\'s', 'b': \"say \\\"hi\\\"\"}",
                json!({"a": "it's", "b": "say \"hi\""}),
                &["singleQuotes"],
            ),
            (
                "{questions: ['a', 'b'], max_n: 2}",
                json!({"questions": ["a", "b"], "max_n": 2}),
                &["singleQuotes", "unquotedKeys"],
            ),
            (
                "{\"a\": [1, 2,], \"b\": 3,}",
                json!({"a": [1, 2], "b": 3}),
                &["trailingCommas"],
            ),
            (
                "{\"ok\": True, \"v\": None, \"n\": False}",
                json!({"ok": true, "v": null, "n": false}),
                &["pythonLiterals"],
            ),
            (
                "{\n  // the plan\n  \"a\": 1 /* one */\n}",
                json!({"a": 1}),
                &["comments"],
            ),
            (
                "{\"questions\": [\"one\", \"tw",
                json!({"questions": ["one", "tw"]}),
                &["truncated"],
            ),
            (
                "{\"a\": {\"b\": [1, 2",
                json!({"a": {"b": [1, 2]}}),
                &["truncated"],
            ),
            ("{\"a\": 1, \"b\":", json!({"a": 1}), &["truncated"]),
            ("{\"a\": 1, \"b\"", json!({"a": 1}), &["truncated"]),
            ("[{\"x\": 1}, ", json!([{"x": 1}]), &["truncated"]),
            (
                "{'line': 'a\nb'}",
                json!({"line": "a\nb"}),
                &["singleQuotes"],
            ),
        ];
        for (text, value, names) in cases {
            let (v, f) = fixed(text);
            assert_eq!(&v, value, "{text}");
            assert_eq!(&f, names, "{text}");
        }
    }

    #[test]
    fn what_the_rules_cannot_fix_is_refused() {
        for text in [
            "",
            "no json here",
            "42 apples",
            "{\"a\" 1}",
            "{\"a\": 1 \"b\": 2}",
            "[1 2]",
            "{\"a\": undefinedish}",
            "{,}",
        ] {
            assert!(repair_json(text).is_none(), "{text}");
        }
        let deep = "[".repeat(200);
        assert!(repair_json(&deep).is_none(), "nesting is bounded");
    }

    proptest! {
        #[test]
        fn json_is_left_as_it_is_and_no_text_panics(text in ".{0,200}") {
            let _ = repair_json(&text);
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                prop_assert_eq!(repair_json(&text), Some((v, Vec::new())));
            }
        }

        #[test]
        fn a_fenced_or_cut_value_comes_back(
            items in proptest::collection::vec("[a-z ]{0,8}", 1..6),
            cut in 0usize..5,
        ) {
            let value = json!({"items": items});
            let text = format!("```json\n{}\n```", serde_json::to_string_pretty(&value).unwrap());
            prop_assert_eq!(repair_json(&text).map(|r| r.0), Some(value.clone()));
            // Cut inside the closers: the items survive.
            let compact = serde_json::to_string(&value).unwrap();
            let cut = compact.len() - cut.min(2);
            let (v, _) = repair_json(&compact[..cut]).unwrap();
            prop_assert_eq!(v, value);
        }
    }
}
