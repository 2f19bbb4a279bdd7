//! The OpenAI Chat Completions adapter (`POST {base_url}/chat/completions`): the canonical
//! request to the wire body, and the answer (whole or streamed) back to a [`Draft`].

use agentmesh_core::ErrorKind;
use serde_json::{json, Map, Value};

use crate::error::CallError;
use crate::http::{error_object_message, Ctx};
use crate::llm::Chunk;
use crate::request::{LlmRequest, Message, ResponseFormat, Role, ToolChoice};
use crate::response::{Draft, DraftArgs, DraftCall, FinishReason};

/// The path under the base URL.
pub(crate) const PATH: &str = "chat/completions";

/// The wire body for `req`, asking for `model`. `maxTokens` is sent as
/// `max_completion_tokens` (OpenAI's current name; `max_tokens` is refused by its reasoning
/// models; llama-server and vLLM accept both).
pub(crate) fn encode(req: &LlmRequest, model: &str, stream: bool) -> Value {
    let mut b = Map::new();
    b.insert("model".into(), json!(model));
    b.insert(
        "messages".into(),
        Value::Array(req.messages.iter().map(message).collect()),
    );
    if let Some(n) = req.max_tokens {
        b.insert("max_completion_tokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        b.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        b.insert("top_p".into(), json!(p));
    }
    if let Some(s) = req.seed {
        b.insert("seed".into(), json!(s));
    }
    if let Some(stop) = &req.stop {
        b.insert("stop".into(), json!(stop));
    }
    if !req.tools.is_empty() {
        let tools = req.tools.iter().map(|t| {
            let mut f = Map::new();
            f.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                f.insert("description".into(), json!(d));
            }
            f.insert("parameters".into(), t.schema());
            json!({"type": "function", "function": f})
        });
        b.insert("tools".into(), Value::Array(tools.collect()));
    }
    if let Some(choice) = &req.tool_choice {
        let c = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
        };
        b.insert("tool_choice".into(), c);
    }
    if let Some(f) = &req.response_format {
        let f = match f {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => {
                let mut s = Map::new();
                s.insert("name".into(), json!(name));
                s.insert("schema".into(), schema.clone());
                if let Some(strict) = strict {
                    s.insert("strict".into(), json!(strict));
                }
                json!({"type": "json_schema", "json_schema": s})
            }
        };
        b.insert("response_format".into(), f);
    }
    if stream {
        b.insert("stream".into(), json!(true));
        b.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(b)
}

fn message(m: &Message) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut o = Map::new();
    o.insert("role".into(), json!(role));
    o.insert(
        "content".into(),
        m.content.as_ref().map_or(Value::Null, |c| json!(c)),
    );
    if !m.tool_calls.is_empty() {
        let calls = m.tool_calls.iter().map(|c| {
            // Arguments kept as a string (the model's unparsable text) go back as they came.
            let arguments = match &c.arguments {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            json!({"id": c.id, "type": "function",
                   "function": {"name": c.name, "arguments": arguments}})
        });
        o.insert("tool_calls".into(), Value::Array(calls.collect()));
    }
    if let Some(id) = &m.tool_call_id {
        o.insert("tool_call_id".into(), json!(id));
    }
    Value::Object(o)
}

fn invalid_response(ctx: &Ctx<'_>, what: &str) -> CallError {
    ctx.error(
        ErrorKind::ProviderError,
        "InvalidResponse",
        format!("unexpected chat completion: {what}"),
        None,
        false,
    )
}

fn ids(draft: &mut Draft, v: &Value) {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    draft.response_id = draft.response_id.take().or_else(|| s("id"));
    draft.model = draft.model.take().or_else(|| s("model"));
    draft.system_fingerprint = draft
        .system_fingerprint
        .take()
        .or_else(|| s("system_fingerprint"));
    draft.created = draft
        .created
        .or_else(|| v.get("created").and_then(Value::as_i64));
}

/// A whole `chat.completion`.
pub(crate) fn decode(v: &Value, ctx: &Ctx<'_>) -> Result<Draft, CallError> {
    let mut d = Draft::default();
    ids(&mut d, v);
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| invalid_response(ctx, "no choices[0]"))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| invalid_response(ctx, "no choices[0].message"))?;
    d.text = match msg.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid_response(ctx, "content is not a string")),
    };
    if let Some(Value::Array(calls)) = msg.get("tool_calls") {
        for c in calls {
            let f = c.get("function").unwrap_or(&Value::Null);
            let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
            d.calls.push(DraftCall {
                provider_id: text(c.get("id")),
                name: text(f.get("name")),
                arguments: DraftArgs::Text(text(f.get("arguments"))),
            });
        }
    }
    d.finish = Some(FinishReason::from_openai(
        choice.get("finish_reason").and_then(Value::as_str),
    ));
    d.usage = v.get("usage").cloned();
    Ok(d)
}

/// A streamed answer being read, chunk by chunk (`data: {chat.completion.chunk}` events,
/// then `data: [DONE]`).
#[derive(Default)]
pub(crate) struct Stream {
    draft: Draft,
    done: bool,
}

impl Stream {
    /// Read one event's data; `Ok(true)` when the stream is complete.
    pub fn event(
        &mut self,
        data: &str,
        emit: &mut dyn FnMut(Chunk),
        ctx: &Ctx<'_>,
    ) -> Result<bool, CallError> {
        if data == "[DONE]" {
            self.done = true;
            return Ok(true);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| invalid_response(ctx, &format!("stream chunk is not JSON: {e}")))?;
        if let Some(e) = v.get("error") {
            let message = error_object_message(e).unwrap_or_else(|| "stream error".into());
            let retryable = e.get("type").and_then(Value::as_str) == Some("server_error");
            return Err(ctx.error(
                ErrorKind::ProviderError,
                "ProviderError",
                message,
                None,
                retryable,
            ));
        }
        let d = &mut self.draft;
        ids(d, &v);
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            d.usage = Some(u.clone());
        }
        let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
            return Ok(false); // the usage chunk has no choices
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = delta.get("content").and_then(Value::as_str) {
            if !t.is_empty() {
                d.text.push_str(t);
                emit(Chunk::Text(t.to_owned()));
            }
        }
        if let Some(Value::Array(calls)) = delta.get("tool_calls") {
            for c in calls {
                let index = c
                    .get("index")
                    .and_then(Value::as_u64)
                    .map_or(d.calls.len().saturating_sub(1), |i| i as usize);
                if index > d.calls.len() {
                    return Err(invalid_response(ctx, "tool call index skips ahead"));
                }
                if index == d.calls.len() {
                    d.calls.push(DraftCall::default());
                }
                let call = &mut d.calls[index];
                if let Some(id) = c.get("id").and_then(Value::as_str) {
                    call.provider_id = id.to_owned();
                }
                let f = c.get("function").unwrap_or(&Value::Null);
                if let Some(name) = f.get("name").and_then(Value::as_str) {
                    if call.name.is_empty() {
                        emit(Chunk::ToolCallStart {
                            index,
                            name: name.to_owned(),
                        });
                    }
                    call.name.push_str(name);
                }
                if let Some(a) = f.get("arguments").and_then(Value::as_str) {
                    if let DraftArgs::Text(t) = &mut call.arguments {
                        t.push_str(a);
                    }
                    if !a.is_empty() {
                        emit(Chunk::ToolCallArguments {
                            index,
                            delta: a.to_owned(),
                        });
                    }
                }
            }
        }
        if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
            d.finish = Some(FinishReason::from_openai(Some(r)));
        }
        Ok(false)
    }

    /// The answer read; an error if the stream ended before `[DONE]` and before any finish
    /// reason (a cut connection).
    pub fn finish(self, ctx: &Ctx<'_>) -> Result<Draft, CallError> {
        if !self.done && self.draft.finish.is_none() {
            return Err(ctx.error(
                ErrorKind::ProviderError,
                "ConnectionError",
                "the stream ended before the answer was complete".into(),
                None,
                true,
            ));
        }
        Ok(self.draft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx() -> Ctx<'static> {
        Ctx {
            provider: "o",
            secret: None,
            total_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn encodes_every_field() {
        let req = LlmRequest::from_value(&json!({"model": "ignored", "messages": [
                {"role": "system", "content": "s"},
                {"role": "assistant", "toolCalls": [
                    {"id": "c_0", "name": "f", "arguments": {"a": 1}},
                    {"id": "c_1", "name": "f", "arguments": "{broken"}]},
                {"role": "tool", "content": "r", "toolCallId": "c_0"}],
            "maxTokens": 9, "temperature": 0.5, "topP": 0.9, "seed": 3, "stop": ["x"],
            "tools": [{"name": "f"}], "toolChoice": {"name": "f"},
            "responseFormat": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}}))
        .unwrap();
        let b = encode(&req, "m", true);
        assert_eq!(
            b,
            json!({"model": "m", "messages": [
                {"role": "system", "content": "s"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c_0", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"id": "c_1", "type": "function", "function": {"name": "f", "arguments": "{broken"}}]},
                {"role": "tool", "content": "r", "tool_call_id": "c_0"}],
              "max_completion_tokens": 9, "temperature": 0.5, "top_p": 0.9, "seed": 3, "stop": ["x"],
              "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
              "tool_choice": {"type": "function", "function": {"name": "f"}},
              "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
              "stream": true, "stream_options": {"include_usage": true}})
        );
    }

    #[test]
    fn stream_cut_off_is_a_retryable_error() {
        let mut s = Stream::default();
        let mut n = 0;
        s.event(
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            &mut |_| n += 1,
            &ctx(),
        )
        .unwrap();
        assert_eq!(n, 1);
        let e = s.finish(&ctx()).unwrap_err();
        assert!(e.retryable && e.error_type == "ConnectionError");
        let mut s = Stream::default();
        let e = s
            .event(
                r#"{"error":{"message":"boom","type":"server_error"}}"#,
                &mut |_| {},
                &ctx(),
            )
            .unwrap_err();
        assert!(e.retryable && e.message.contains("boom"));
        assert!(Stream::default().event("{", &mut |_| {}, &ctx()).is_err());
    }
}
