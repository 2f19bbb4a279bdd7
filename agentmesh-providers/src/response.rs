//! The canonical LLM response, and the [`Draft`] both adapters fill from a provider's answer
//! (whole or streamed) so that streaming and non-streaming give the same bytes.

use agentmesh_core::{ErrorKind, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::CallError;
use crate::llm::ProviderMeta;
use crate::request::ToolCall;

/// A canonical LLM response: provider-neutral and deterministic (no provider ids, no
/// timestamps). Serialized as `{"text", "toolCalls" (omitted when none), "finishReason"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmResponse {
    /// The answer's text (every text part, concatenated; `""` when there is none).
    pub text: String,
    /// Tool calls, with ids `{tool_call_prefix}_{i}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Why generation stopped, in OpenAI's vocabulary.
    pub finish_reason: FinishReason,
}

impl LlmResponse {
    /// Read a canonical response (one recorded in a log, for example).
    ///
    /// Errors: `INVALID_ARGUMENT` naming the field for an unknown key or a wrong type.
    pub fn from_value(value: &Value) -> Result<LlmResponse, CallError> {
        serde_path_to_error::deserialize(value).map_err(|e| CallError {
            kind: ErrorKind::InvalidArgument,
            error_type: "InvalidResponse".into(),
            message: format!("LLM response {}: {}", e.path(), e.inner()),
            status: None,
            retryable: false,
        })
    }

    /// The response as canonical JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a response always serializes")
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A natural end or a stop sequence (Anthropic `end_turn`, `stop_sequence`).
    Stop,
    /// The token limit (Anthropic `max_tokens`).
    Length,
    /// The model called tools (Anthropic `tool_use`).
    ToolCalls,
    /// A provider's filter stopped it (Anthropic `refusal`).
    ContentFilter,
    /// Anything else, or not said.
    Other,
}

impl FinishReason {
    /// From OpenAI's `finish_reason`.
    pub(crate) fn from_openai(s: Option<&str>) -> FinishReason {
        match s {
            Some("stop") => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
            Some("content_filter") => FinishReason::ContentFilter,
            _ => FinishReason::Other,
        }
    }

    /// From Anthropic's `stop_reason`.
    pub(crate) fn from_anthropic(s: Option<&str>) -> FinishReason {
        match s {
            Some("end_turn" | "stop_sequence") => FinishReason::Stop,
            Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
            Some("tool_use") => FinishReason::ToolCalls,
            Some("refusal") => FinishReason::ContentFilter,
            _ => FinishReason::Other,
        }
    }
}

/// A tool call as the provider gave it.
#[derive(Debug, Default)]
pub(crate) struct DraftCall {
    pub provider_id: String,
    pub name: String,
    /// Arguments as JSON text (OpenAI; streamed Anthropic), or already parsed.
    pub arguments: DraftArgs,
}

#[derive(Debug)]
pub(crate) enum DraftArgs {
    Text(String),
    Json(Value),
}

impl Default for DraftArgs {
    fn default() -> Self {
        DraftArgs::Text(String::new())
    }
}

/// What an adapter has read of an answer so far.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    pub text: String,
    pub calls: Vec<DraftCall>,
    pub finish: Option<FinishReason>,
    /// The provider's usage object, in its own shape.
    pub usage: Option<Value>,
    pub response_id: Option<String>,
    pub model: Option<String>,
    pub created: Option<i64>,
    pub system_fingerprint: Option<String>,
}

impl Draft {
    /// The canonical response, its usage and the provider's ids.
    ///
    /// Arguments text that is empty means no arguments (`{}`); text that is not JSON is kept
    /// as a JSON string, so nothing the model said is lost.
    pub fn finish(
        self,
        provider: &str,
        tool_call_prefix: &str,
        sent_model: &str,
    ) -> Result<(LlmResponse, Option<Usage>, ProviderMeta), CallError> {
        let model = self.model.clone().unwrap_or_else(|| sent_model.to_owned());
        let usage = match &self.usage {
            None | Some(Value::Null) => None,
            Some(u) => Some(
                Usage::from_value(&json!({"model": model, "usage": u})).map_err(|e| CallError {
                    kind: ErrorKind::ProviderError,
                    error_type: "InvalidResponse".into(),
                    message: format!("`{provider}` answered with unreadable usage: {e}"),
                    status: None,
                    retryable: false,
                })?,
            ),
        };
        let mut tool_calls = Vec::with_capacity(self.calls.len());
        let mut tool_call_ids = Vec::with_capacity(self.calls.len());
        for (i, c) in self.calls.into_iter().enumerate() {
            let arguments = match c.arguments {
                DraftArgs::Json(v) => v,
                DraftArgs::Text(t) if t.trim().is_empty() => json!({}),
                DraftArgs::Text(t) => serde_json::from_str(&t).unwrap_or(Value::String(t)),
            };
            tool_calls.push(ToolCall {
                id: format!("{tool_call_prefix}_{i}"),
                name: c.name,
                arguments,
            });
            tool_call_ids.push(c.provider_id);
        }
        let response = LlmResponse {
            text: self.text,
            tool_calls,
            finish_reason: self.finish.unwrap_or(FinishReason::Other),
        };
        let meta = ProviderMeta {
            provider: provider.to_owned(),
            response_id: self.response_id,
            model: self.model,
            created: self.created,
            system_fingerprint: self.system_fingerprint,
            tool_call_ids,
            rate_wait_us: None,
        };
        Ok((response, usage, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_prefix_and_arguments_are_parsed_or_kept() {
        let mut d = Draft::default();
        for (id, args) in [
            ("p1", DraftArgs::Text(r#"{"q":"x"}"#.into())),
            ("p2", DraftArgs::Text("{not json".into())),
            ("p3", DraftArgs::Text(String::new())),
            ("p4", DraftArgs::Json(json!({"a": 1}))),
        ] {
            d.calls.push(DraftCall {
                provider_id: id.into(),
                name: "t".into(),
                arguments: args,
            });
        }
        d.usage = Some(json!({"prompt_tokens": 3, "completion_tokens": 4}));
        let (r, u, meta) = d.finish("p", "call_7_1", "m").unwrap();
        let ids: Vec<_> = r.tool_calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["call_7_1_0", "call_7_1_1", "call_7_1_2", "call_7_1_3"]
        );
        assert_eq!(r.tool_calls[0].arguments, json!({"q": "x"}));
        assert_eq!(r.tool_calls[1].arguments, json!("{not json"));
        assert_eq!(r.tool_calls[2].arguments, json!({}));
        assert_eq!(meta.tool_call_ids, ["p1", "p2", "p3", "p4"]);
        assert_eq!(r.finish_reason, FinishReason::Other);
        let u = u.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (3, 4));
        assert_eq!(
            u.model.as_deref(),
            Some("m"),
            "the sent model when none is said"
        );
        let v = r.to_value();
        assert_eq!(v["finishReason"], "other");
        assert_eq!(v["toolCalls"][3]["id"], "call_7_1_3");
    }

    #[test]
    fn no_tool_calls_key_when_none_and_bad_usage_is_an_error() {
        let d = Draft {
            text: "hi".into(),
            finish: Some(FinishReason::Stop),
            ..Draft::default()
        };
        let (r, u, _) = d.finish("p", "c", "m").unwrap();
        assert_eq!(r.to_value(), json!({"text": "hi", "finishReason": "stop"}));
        assert_eq!(LlmResponse::from_value(&r.to_value()).unwrap(), r);
        let e =
            LlmResponse::from_value(&json!({"text": "hi", "finishReason": "done"})).unwrap_err();
        assert!(
            e.message.starts_with("LLM response finishReason:"),
            "{}",
            e.message
        );
        assert!(u.is_none());
        let d = Draft {
            usage: Some(json!({"prompt_tokens": -1})),
            ..Draft::default()
        };
        let e = d.finish("p", "c", "m").unwrap_err();
        assert_eq!(e.error_type, "InvalidResponse");
    }

    #[test]
    fn finish_reasons_map_to_openai_vocabulary() {
        use FinishReason::*;
        for (a, f) in [
            ("end_turn", Stop),
            ("stop_sequence", Stop),
            ("max_tokens", Length),
            ("tool_use", ToolCalls),
            ("refusal", ContentFilter),
            ("pause_turn", Other),
        ] {
            assert_eq!(FinishReason::from_anthropic(Some(a)), f);
        }
        assert_eq!(FinishReason::from_openai(Some("tool_calls")), ToolCalls);
        assert_eq!(FinishReason::from_openai(None), Other);
    }
}
