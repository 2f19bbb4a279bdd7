//! Structured outputs: a node's `output.schema` (JSON Schema) checked against every output
//! its activations report, with the optional repair of almost-JSON text ([`super::repair`]).
//! An output that does not match is a retryable `OutputSchemaError` naming the path, so the
//! node's retry policy re-asks; the activation that retries it gets that failure
//! (`Activation.last_failure`) to tell the model what was wrong.

use std::sync::Arc;

use serde_json::Value;

use super::event::Repaired;
use super::failure::Failure;
use super::repair::repair_json;

/// Error type of an output that does not match its node's schema.
pub const OUTPUT_SCHEMA_ERROR: &str = "OutputSchemaError";
/// Longest failure message (a schema error quotes the value it is about).
const MAX_MESSAGE: usize = 1024;
/// Compiled `pattern`s may take this much memory (the `regex` engine: linear time).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// A compiled output contract.
pub(crate) struct OutputCheck {
    validator: jsonschema::Validator,
    repair: bool,
}

impl std::fmt::Debug for OutputCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputCheck")
            .field("repair", &self.repair)
            .finish_non_exhaustive()
    }
}

fn cut(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

impl OutputCheck {
    /// Compile `schema` (draft 2020-12 unless its `$schema` names another; `format` is
    /// asserted; no remote or file `$ref`s; `pattern` in the linear-time `regex` engine).
    ///
    /// Errors: why the schema is not usable.
    pub(crate) fn compile(schema: &Value, repair: bool) -> Result<OutputCheck, String> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .with_pattern_options(
                jsonschema::PatternOptions::regex()
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .dfa_size_limit(PATTERN_SIZE_LIMIT),
            )
            .build(schema)
            .map_err(|e| cut(format!("not a usable JSON Schema: {e}")))?;
        Ok(OutputCheck { validator, repair })
    }

    /// Check `output`: the value to record (repaired text parsed) and the repair, or the
    /// failure to record instead.
    pub(crate) fn check(
        &self,
        output: Arc<Value>,
    ) -> Result<(Arc<Value>, Option<Repaired>), Failure> {
        let Err(first) = self.mismatch(&output) else {
            return Ok((output, None));
        };
        let text = match (&*output, self.repair) {
            (Value::String(text), true) => text,
            _ => return Err(Failure::error(OUTPUT_SCHEMA_ERROR, first)),
        };
        let Some((value, fixes)) = repair_json(text) else {
            return Err(Failure::error(
                OUTPUT_SCHEMA_ERROR,
                cut(format!(
                    "{first}; the output is text that repair could not make JSON"
                )),
            ));
        };
        if let Err(why) = self.mismatch(&value) {
            let applied: Vec<&str> = fixes.iter().map(|f| f.as_str()).collect();
            return Err(Failure::error(
                OUTPUT_SCHEMA_ERROR,
                cut(format!(
                    "after repair ({}): {why}",
                    if applied.is_empty() {
                        "parsed".to_owned()
                    } else {
                        applied.join(", ")
                    }
                )),
            ));
        }
        let repaired = Repaired {
            from: digest(text.as_bytes()),
            to: digest(
                serde_json::to_string(&value)
                    .expect("a value serializes")
                    .as_bytes(),
            ),
            fixes: fixes.iter().map(|f| f.as_str().into()).collect(),
        };
        Ok((Arc::new(value), Some(repaired)))
    }

    /// `Err` with a message naming the first error's path, when `value` does not match.
    fn mismatch(&self, value: &Value) -> Result<(), String> {
        let mut errors = self.validator.iter_errors(value);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let more = errors.take(99).count();
        let path = first.instance_path().to_string();
        let at = if path.is_empty() {
            "the root".to_owned()
        } else {
            path
        };
        let also = match more {
            0 => String::new(),
            99 => " (and 99 or more other errors)".to_owned(),
            n => format!(" (and {n} other error{})", if n == 1 { "" } else { "s" }),
        };
        Err(cut(format!(
            "the output does not match the node's schema at {at}: {first}{also}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(
        schema: Value,
        repair: bool,
        output: Value,
    ) -> Result<(Value, Option<Repaired>), Failure> {
        OutputCheck::compile(&schema, repair)
            .unwrap()
            .check(Arc::new(output))
            .map(|(v, r)| ((*v).clone(), r))
    }

    fn plan() -> Value {
        json!({"type": "object", "required": ["questions"], "additionalProperties": false,
               "properties": {"questions": {"type": "array", "items": {"type": "string"}, "minItems": 1}}})
    }

    #[test]
    fn a_matching_output_passes_unchanged() {
        let (v, r) = check(plan(), true, json!({"questions": ["a"]})).unwrap();
        assert_eq!((v, r), (json!({"questions": ["a"]}), None));
    }

    #[test]
    fn a_mismatch_names_the_path_and_is_retryable() {
        let f = check(plan(), false, json!({"questions": ["a", 5]})).unwrap_err();
        assert_eq!(f.error_type, OUTPUT_SCHEMA_ERROR);
        assert!(f.retryable);
        assert!(f.message.starts_with("the output does not match the node's schema at /questions/1: 5 is not of type \"string\""), "{}", f.message);
        let f = check(plan(), false, json!({"extra": 1})).unwrap_err();
        assert!(f.message.contains("at the root"), "{}", f.message);
        assert!(f.message.contains("(and 1 other error)"), "{}", f.message);
    }

    #[test]
    fn almost_json_text_is_repaired_and_recorded_by_digest() {
        let text = "```json\n{'questions': ['a', 'b',],}\n```";
        let (v, r) = check(plan(), true, json!(text)).unwrap();
        assert_eq!(v, json!({"questions": ["a", "b"]}));
        let r = r.unwrap();
        assert_eq!(r.from, digest(text.as_bytes()));
        assert_eq!(r.to, digest(br#"{"questions":["a","b"]}"#));
        let fixes: Vec<&str> = r.fixes.iter().map(|f| &**f).collect();
        assert_eq!(fixes, ["codeFence", "singleQuotes", "trailingCommas"]);
        // Plain JSON text is parsed (no fixes).
        let (_, r) = check(plan(), true, json!("{\"questions\": [\"a\"]}")).unwrap();
        assert!(r.unwrap().fixes.is_empty());
        // Without `repair`, text is a mismatch like any other.
        assert!(check(plan(), false, json!(text)).is_err());
        // Repaired, but still not matching: the failure says so.
        let f = check(plan(), true, json!("{questions: []}")).unwrap_err();
        assert!(
            f.message
                .starts_with("after repair (unquotedKeys): the output does not match"),
            "{}",
            f.message
        );
        let f = check(plan(), true, json!("no idea")).unwrap_err();
        assert!(
            f.message.ends_with("repair could not make JSON"),
            "{}",
            f.message
        );
    }

    #[test]
    fn schemas_are_checked_when_compiled_and_patterns_are_linear() {
        assert!(OutputCheck::compile(&json!({"type": "nope"}), false).is_err());
        assert!(
            OutputCheck::compile(&json!({"$ref": "https://example.com/s.json"}), false).is_err()
        );
        // Backreferences need backtracking, which the regex engine does not do.
        assert!(OutputCheck::compile(&json!({"pattern": "(a)\\1"}), false).is_err());
        let s = json!({"type": "string", "pattern": "^(a+)+$"});
        let long = format!("{}b", "a".repeat(50_000));
        assert!(
            check(s, false, json!(long)).is_err(),
            "linear on adversarial input"
        );
        let f = check(json!({"format": "email"}), false, json!("not an address")).unwrap_err();
        assert!(f.message.contains("email"), "{}", f.message);
    }
}
