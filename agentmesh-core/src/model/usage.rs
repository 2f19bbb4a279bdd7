//! Token usage an activation reports, and the one place that reads the shapes hosts have:
//! AgentMesh's own, the OpenAI Chat Completions and Responses APIs', Anthropic's, and whole
//! SDK responses carrying one of those beside their `model`.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::workflow::MAX_NAME_LEN;

/// Token usage an activation reports, on success or failure (a failed paid call still spent
/// its tokens). `input_tokens` counts every prompt token, cached ones included (OpenAI's
/// `prompt_tokens`; Anthropic's `input_tokens` plus its cache reads and writes);
/// `output_tokens` every completion token, reasoning included. The breakdowns and the model
/// are recorded only when known, so older logs keep their bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens read from a provider's prompt cache (part of `input_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Prompt tokens written to a provider's prompt cache (Anthropic; part of `input_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Reasoning tokens (part of `output_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    /// The model that answered, when the host said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

const FIELDS: &[&str] = &[
    "inputTokens",
    "outputTokens",
    "cachedInputTokens",
    "cacheWriteTokens",
    "reasoningTokens",
    "model",
];

impl Usage {
    /// Usage of `input` prompt and `output` completion tokens.
    pub fn tokens(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        }
    }

    /// Read usage in any shape a host has, into one form:
    ///
    /// - AgentMesh's: `inputTokens`, `outputTokens` (each 0 when absent), optional
    ///   `cachedInputTokens`, `cacheWriteTokens`, `reasoningTokens`, `model`, nothing else;
    /// - OpenAI Chat Completions: `prompt_tokens`, `completion_tokens`,
    ///   `prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`;
    /// - OpenAI Responses: `input_tokens`, `output_tokens`, `input_tokens_details.cached_tokens`,
    ///   `output_tokens_details.reasoning_tokens`;
    /// - Anthropic: `input_tokens`, `output_tokens`, `cache_read_input_tokens`,
    ///   `cache_creation_input_tokens` (added to `inputTokens`, which then counts every
    ///   prompt token as OpenAI's does);
    /// - a whole response (an object with a `usage` object in one of those shapes): its
    ///   `usage`, and its `model`.
    ///
    /// In the providers' shapes other keys (`total_tokens`, `service_tier`, ...) are ignored
    /// and `null` counts as absent; every count must be a non-negative integer. A list, a
    /// float or an unknown key in AgentMesh's shape is refused, never guessed at.
    ///
    /// Errors: a message naming what is wrong (hosts report it as `INVALID_OUTPUT`).
    pub fn from_value(value: &Value) -> Result<Usage, String> {
        let Value::Object(map) = value else {
            return Usage::deserialize(value).map_err(|e| own_shape_error(&e));
        };
        if let Some(Value::Object(inner)) = map.get("usage") {
            let mut usage = provider_usage(inner)?
                .map_or_else(|| own_shape(&Value::Object(inner.clone())), Ok)?;
            if let Some(model) = map.get("model").filter(|m| !m.is_null()) {
                usage.model = Some(model_name(model)?);
            }
            return Ok(usage);
        }
        match provider_usage(map)? {
            Some(usage) => Ok(usage),
            None => own_shape(value),
        }
    }

    /// Add `other`'s counts (saturating); the model is kept only when both agree.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.cache_write_tokens = self
            .cache_write_tokens
            .saturating_add(other.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
        if self.model != other.model {
            self.model = None;
        }
    }
}

fn own_shape(value: &Value) -> Result<Usage, String> {
    Usage::deserialize(value).map_err(|e| own_shape_error(&e))
}

fn own_shape_error(e: &impl fmt::Display) -> String {
    format!(
        "usage must be {{\"inputTokens\": int, \"outputTokens\": int}} (or the usage of an OpenAI or Anthropic response): {e}"
    )
}

fn model_name(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_NAME_LEN => Ok(s.clone()),
        Value::String(s) if s.is_empty() => Err("usage model must not be empty".to_owned()),
        Value::String(_) => Err(format!("usage model is longer than {MAX_NAME_LEN} bytes")),
        other => Err(format!("usage model must be a string, not {other}")),
    }
}

/// A count in a provider's shape: absent or `null` is 0.
fn count(map: &Map<String, Value>, key: &str, path: &str) -> Result<u64, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("usage {path}{key} must be a non-negative integer, not {v}")),
    }
}

/// `map[key][inner]`, a count in a details object.
fn detail(map: &Map<String, Value>, key: &str, inner: &str) -> Result<u64, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Object(d)) => count(d, inner, &format!("{key}.")),
        Some(v) => Err(format!("usage {key} must be an object, not {v}")),
    }
}

/// Usage in a provider's shape (with the `model` beside the counts, when given), or `None`
/// when `map` is in none of them.
fn provider_usage(map: &Map<String, Value>) -> Result<Option<Usage>, String> {
    // AgentMesh's own counts (the `model` key is shared by every shape).
    if map.keys().any(|k| FIELDS[..5].contains(&k.as_str())) {
        return Ok(None);
    }
    let Some(mut usage) = provider_counts(map)? else {
        return Ok(None);
    };
    if let Some(model) = map.get("model").filter(|m| !m.is_null()) {
        usage.model = Some(model_name(model)?);
    }
    Ok(Some(usage))
}

fn provider_counts(map: &Map<String, Value>) -> Result<Option<Usage>, String> {
    if map.contains_key("prompt_tokens") || map.contains_key("completion_tokens") {
        return Ok(Some(Usage {
            input_tokens: count(map, "prompt_tokens", "")?,
            output_tokens: count(map, "completion_tokens", "")?,
            cached_input_tokens: detail(map, "prompt_tokens_details", "cached_tokens")?,
            reasoning_tokens: detail(map, "completion_tokens_details", "reasoning_tokens")?,
            ..Usage::default()
        }));
    }
    if map.contains_key("input_tokens") || map.contains_key("output_tokens") {
        let input = count(map, "input_tokens", "")?;
        let read = count(map, "cache_read_input_tokens", "")?;
        let write = count(map, "cache_creation_input_tokens", "")?;
        return Ok(Some(Usage {
            // Anthropic counts cache reads and writes apart from input_tokens.
            input_tokens: input.saturating_add(read).saturating_add(write),
            output_tokens: count(map, "output_tokens", "")?,
            cached_input_tokens: read.saturating_add(detail(
                map,
                "input_tokens_details",
                "cached_tokens",
            )?),
            cache_write_tokens: write,
            reasoning_tokens: detail(map, "output_tokens_details", "reasoning_tokens")?,
            model: None,
        }));
    }
    Ok(None)
}

// By hand: serde's derive would also accept a sequence (`[1, 2]` as both counts), and
// duplicate keys must be refused.
impl<'de> Deserialize<'de> for Usage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Usage, D::Error> {
        struct UsageVisitor;
        impl<'de> Visitor<'de> for UsageVisitor {
            type Value = Usage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with inputTokens and outputTokens")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Usage, A::Error> {
                let mut usage = Usage::default();
                let mut seen = [false; 6];
                while let Some(key) = map.next_key::<String>()? {
                    let Some(i) = FIELDS.iter().position(|f| *f == key) else {
                        return Err(de::Error::unknown_field(&key, FIELDS));
                    };
                    if std::mem::replace(&mut seen[i], true) {
                        return Err(de::Error::custom(format!("duplicate field `{key}`")));
                    }
                    match i {
                        0 => usage.input_tokens = map.next_value()?,
                        1 => usage.output_tokens = map.next_value()?,
                        2 => usage.cached_input_tokens = map.next_value()?,
                        3 => usage.cache_write_tokens = map.next_value()?,
                        4 => usage.reasoning_tokens = map.next_value()?,
                        _ => {
                            let v: String = map.next_value()?;
                            usage.model =
                                Some(model_name(&Value::String(v)).map_err(de::Error::custom)?);
                        }
                    }
                }
                Ok(usage)
            }
        }
        deserializer.deserialize_map(UsageVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn own_shape_is_strict() {
        let u = Usage::from_value(&json!({"inputTokens": 3})).unwrap();
        assert_eq!(u, Usage::tokens(3, 0));
        assert_eq!(Usage::from_value(&json!({})).unwrap(), Usage::default());
        for bad in [
            json!([1, 2]),
            json!(5),
            json!(null),
            json!({"inputTokens": -1}),
            json!({"inputTokens": 1.5}),
            json!({"inputTokens": 1, "cost": 2}),
            json!({"inputTokens": 1, "model": ""}),
            json!({"inputTokens": 1, "model": 7}),
        ] {
            assert!(Usage::from_value(&bad).is_err(), "{bad} accepted");
        }
        let dup = serde_json::from_str::<Usage>(r#"{"inputTokens":1,"inputTokens":2}"#);
        assert!(dup.is_err(), "duplicate key accepted");
    }

    #[test]
    fn openai_chat_usage_and_whole_responses() {
        let usage = json!({"prompt_tokens": 403, "completion_tokens": 62, "total_tokens": 465,
            "prompt_tokens_details": {"cached_tokens": 128, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 10, "audio_tokens": null}});
        let u = Usage::from_value(&usage).unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens,
                u.reasoning_tokens
            ),
            (403, 62, 128, 10)
        );
        let response = json!({"id": "chatcmpl-1", "created": 1733000000, "model": "gpt-4o-mini",
            "choices": [], "usage": usage});
        let r = Usage::from_value(&response).unwrap();
        assert_eq!(r.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(r.input_tokens, 403);
        let none = json!({"prompt_tokens": 1, "completion_tokens": 2,
            "prompt_tokens_details": null, "completion_tokens_details": null});
        assert_eq!(Usage::from_value(&none).unwrap(), Usage::tokens(1, 2));
        assert!(Usage::from_value(&json!({"prompt_tokens": -3})).is_err());
        let with_model = json!({"input_tokens": 25, "output_tokens": 1, "model": "x"});
        assert_eq!(
            Usage::from_value(&with_model).unwrap().model.as_deref(),
            Some("x")
        );
        assert!(Usage::from_value(&json!({"prompt_tokens": 1, "model": 5})).is_err());
        assert!(
            Usage::from_value(&json!({"prompt_tokens": 1, "prompt_tokens_details": 3})).is_err()
        );
    }

    #[test]
    fn responses_and_anthropic_usage() {
        let responses = json!({"input_tokens": 50, "output_tokens": 20, "total_tokens": 70,
            "input_tokens_details": {"cached_tokens": 30},
            "output_tokens_details": {"reasoning_tokens": 5}});
        let u = Usage::from_value(&responses).unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens,
                u.reasoning_tokens
            ),
            (50, 20, 30, 5)
        );
        let anthropic = json!({"model": "claude-sonnet-4-5", "usage": {"input_tokens": 10,
            "output_tokens": 7, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 40,
            "service_tier": "standard", "server_tool_use": null}});
        let a = Usage::from_value(&anthropic).unwrap();
        assert_eq!(
            a.input_tokens, 150,
            "every prompt token, as OpenAI counts them"
        );
        assert_eq!((a.cached_input_tokens, a.cache_write_tokens), (100, 40));
        assert_eq!(a.model.as_deref(), Some("claude-sonnet-4-5"));
    }

    #[test]
    fn new_fields_are_written_only_when_known() {
        let text = serde_json::to_string(&Usage::tokens(1, 2)).unwrap();
        assert_eq!(text, r#"{"inputTokens":1,"outputTokens":2}"#);
        let mut u = Usage::tokens(1, 2);
        u.model = Some("m".into());
        u.cached_input_tokens = 1;
        let text = serde_json::to_string(&u).unwrap();
        assert_eq!(
            text,
            r#"{"inputTokens":1,"outputTokens":2,"cachedInputTokens":1,"model":"m"}"#
        );
        assert_eq!(
            Usage::from_value(&serde_json::from_str(&text).unwrap()).unwrap(),
            u
        );
    }

    #[test]
    fn sums_saturate_and_keep_an_agreed_model() {
        let mut a = Usage::tokens(u64::MAX, 1);
        a.model = Some("m".into());
        let mut b = Usage::tokens(5, 1);
        b.model = Some("m".into());
        a.add(&b);
        assert_eq!((a.input_tokens, a.output_tokens), (u64::MAX, 2));
        assert_eq!(a.model.as_deref(), Some("m"));
        a.add(&Usage::tokens(0, 0));
        assert_eq!(a.model, None);
    }
}
