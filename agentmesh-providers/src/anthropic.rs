//! The Anthropic Messages adapter (`POST {base_url}/messages`): the canonical request to the
//! wire body, and the answer (whole or streamed) back to a [`Draft`].
//!
//! Differences from the canonical form, decided here: system messages (wherever they are)
//! become the top-level `system`, joined by blank lines; tool results become `tool_result`
//! blocks of a user message, and consecutive messages of one side are merged into one (the
//! API wants all results of a turn in the next user message); `maxTokens` defaults to
//! [`DEFAULT_MAX_TOKENS`] (the API requires it); `seed` is not sent (no such parameter);
//! `responseFormat` `json_object`/`json_schema` are refused (`INVALID_ARGUMENT`), not emulated.

use agentmesh_core::ErrorKind;
use serde_json::{json, Map, Value};

use crate::error::CallError;
use crate::http::{error_object_message, Ctx};
use crate::llm::Chunk;
use crate::request::{LlmRequest, ResponseFormat, Role, ToolChoice};
use crate::response::{Draft, DraftArgs, DraftCall, FinishReason};

/// The path under the base URL.
pub(crate) const PATH: &str = "messages";

/// The `anthropic-version` header sent.
pub(crate) const API_VERSION: &str = "2023-06-01";

/// `max_tokens` sent when the request has no `maxTokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

/// The wire body for `req`, asking for `model`.
///
/// Errors: `INVALID_ARGUMENT` for what the Messages API cannot take: a JSON response format,
/// tool-call arguments that are not an object.
pub(crate) fn encode(
    req: &LlmRequest,
    model: &str,
    stream: bool,
    ctx: &Ctx<'_>,
) -> Result<Value, CallError> {
    let unsupported = |path: &str, what: &str| {
        ctx.error(
            ErrorKind::InvalidArgument,
            "Unsupported",
            format!("LLM request {path}: {what}"),
            None,
            false,
        )
    };
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(_) => {
            return Err(unsupported(
                "responseFormat",
                "json_object and json_schema are not supported by the Anthropic adapter \
                 (ask for JSON in the prompt, or declare a tool and read its arguments)",
            ))
        }
    }
    let mut system = Vec::new();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let text = m.content.as_deref().unwrap_or("");
        let (role, blocks) = match m.role {
            Role::System => {
                system.push(text);
                continue;
            }
            Role::User => ("user", vec![json!({"type": "text", "text": text})]),
            Role::Tool => (
                "user",
                vec![json!({"type": "tool_result",
                    "tool_use_id": m.tool_call_id.as_deref().unwrap_or(""), "content": text})],
            ),
            Role::Assistant => {
                let mut blocks = Vec::new();
                if !text.is_empty() || m.tool_calls.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for (j, c) in m.tool_calls.iter().enumerate() {
                    if !c.arguments.is_object() {
                        return Err(unsupported(
                            &format!("messages[{i}].toolCalls[{j}].arguments"),
                            "must be an object for Anthropic (tool_use input)",
                        ));
                    }
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name,
                        "input": c.arguments}));
                }
                ("assistant", blocks)
            }
        };
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages = turns.into_iter().map(|(role, mut blocks)| {
        // A lone text block is sent as a plain string, the API's simplest form.
        let content = if blocks.len() == 1 && blocks[0]["type"] == "text" {
            blocks.pop().expect("one block")["text"].take()
        } else {
            Value::Array(blocks)
        };
        json!({"role": role, "content": content})
    });
    let mut b = Map::new();
    b.insert("model".into(), json!(model));
    b.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if !system.is_empty() {
        b.insert("system".into(), json!(system.join("\n\n")));
    }
    b.insert("messages".into(), Value::Array(messages.collect()));
    if let Some(t) = req.temperature {
        b.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        b.insert("top_p".into(), json!(p));
    }
    if let Some(stop) = &req.stop {
        b.insert("stop_sequences".into(), json!(stop));
    }
    if !req.tools.is_empty() {
        let tools = req.tools.iter().map(|t| {
            let mut o = Map::new();
            o.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                o.insert("description".into(), json!(d));
            }
            o.insert("input_schema".into(), t.schema());
            Value::Object(o)
        });
        b.insert("tools".into(), Value::Array(tools.collect()));
    }
    if let Some(choice) = &req.tool_choice {
        let c = match choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Named(n) => json!({"type": "tool", "name": n}),
        };
        b.insert("tool_choice".into(), c);
    }
    if stream {
        b.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(b))
}

fn invalid_response(ctx: &Ctx<'_>, what: &str) -> CallError {
    ctx.error(
        ErrorKind::ProviderError,
        "InvalidResponse",
        format!("unexpected message: {what}"),
        None,
        false,
    )
}

/// An `error` object (a body or a stream event) as a typed error.
fn stream_error(e: &Value, ctx: &Ctx<'_>) -> CallError {
    let t = e.get("type").and_then(Value::as_str).unwrap_or("");
    let (error_type, retryable) = match t {
        "overloaded_error" => ("Overloaded", true),
        "rate_limit_error" => ("RateLimited", true),
        "api_error" | "timeout_error" => ("ProviderError", true),
        _ => ("ProviderError", false),
    };
    let message = error_object_message(e).unwrap_or_else(|| "stream error".into());
    ctx.error(
        ErrorKind::ProviderError,
        error_type,
        message,
        None,
        retryable,
    )
}

fn ids(d: &mut Draft, message: &Value) {
    let s = |k: &str| message.get(k).and_then(Value::as_str).map(str::to_owned);
    d.response_id = s("id");
    d.model = s("model");
}

/// A whole `message`.
pub(crate) fn decode(v: &Value, ctx: &Ctx<'_>) -> Result<Draft, CallError> {
    if v.get("type").and_then(Value::as_str) == Some("error") {
        return Err(stream_error(v.get("error").unwrap_or(&Value::Null), ctx));
    }
    let mut d = Draft::default();
    ids(&mut d, v);
    let Some(Value::Array(blocks)) = v.get("content") else {
        return Err(invalid_response(ctx, "no content array"));
    };
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => d
                .text
                .push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => d.calls.push(DraftCall {
                provider_id: str_of(b, "id"),
                name: str_of(b, "name"),
                arguments: DraftArgs::Json(b.get("input").cloned().unwrap_or(json!({}))),
            }),
            _ => {} // thinking, redacted_thinking, server tool blocks: not canonical text
        }
    }
    d.finish = Some(FinishReason::from_anthropic(
        v.get("stop_reason").and_then(Value::as_str),
    ));
    d.usage = v.get("usage").cloned();
    Ok(d)
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// What a streamed content block is, by its index.
enum Block {
    Text,
    Call(usize),
    Other,
}

/// A streamed answer being read (`message_start`, `content_block_*`, `message_delta`,
/// `message_stop` events; `ping` skipped).
#[derive(Default)]
pub(crate) struct Stream {
    draft: Draft,
    blocks: Vec<(u64, Block)>,
    usage: Map<String, Value>,
    done: bool,
}

impl Stream {
    /// Read one event's data; `Ok(true)` at `message_stop`.
    pub fn event(
        &mut self,
        data: &str,
        emit: &mut dyn FnMut(Chunk),
        ctx: &Ctx<'_>,
    ) -> Result<bool, CallError> {
        let v: Value = serde_json::from_str(data)
            .map_err(|e| invalid_response(ctx, &format!("stream event is not JSON: {e}")))?;
        let d = &mut self.draft;
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                ids(d, m);
                merge_usage(&mut self.usage, m.get("usage"));
            }
            "content_block_start" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let b = v.get("content_block").unwrap_or(&Value::Null);
                let block = match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = b.get("text").and_then(Value::as_str).unwrap_or("");
                        if !t.is_empty() {
                            d.text.push_str(t);
                            emit(Chunk::Text(t.to_owned()));
                        }
                        Block::Text
                    }
                    Some("tool_use") => {
                        let i = d.calls.len();
                        let name = str_of(b, "name");
                        emit(Chunk::ToolCallStart {
                            index: i,
                            name: name.clone(),
                        });
                        d.calls.push(DraftCall {
                            provider_id: str_of(b, "id"),
                            name,
                            arguments: DraftArgs::Text(String::new()),
                        });
                        Block::Call(i)
                    }
                    _ => Block::Other,
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = v.get("delta").unwrap_or(&Value::Null);
                let block = self.blocks.iter().rev().find(|(i, _)| *i == index);
                match (
                    block.map(|(_, b)| b),
                    delta.get("type").and_then(Value::as_str),
                ) {
                    (Some(Block::Text), Some("text_delta")) => {
                        let t = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        d.text.push_str(t);
                        if !t.is_empty() {
                            emit(Chunk::Text(t.to_owned()));
                        }
                    }
                    (Some(Block::Call(i)), Some("input_json_delta")) => {
                        let p = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        if let DraftArgs::Text(t) = &mut d.calls[*i].arguments {
                            t.push_str(p);
                        }
                        if !p.is_empty() {
                            emit(Chunk::ToolCallArguments {
                                index: *i,
                                delta: p.to_owned(),
                            });
                        }
                    }
                    (None, _) => {
                        return Err(invalid_response(ctx, "a delta for a block never started"))
                    }
                    _ => {} // thinking and signature deltas
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    d.finish = Some(FinishReason::from_anthropic(Some(r)));
                }
                merge_usage(&mut self.usage, v.get("usage"));
            }
            "message_stop" => {
                self.done = true;
                return Ok(true);
            }
            "error" => return Err(stream_error(v.get("error").unwrap_or(&Value::Null), ctx)),
            _ => {} // ping, content_block_stop, and event types added later
        }
        Ok(false)
    }

    /// The answer read; an error if the stream ended before `message_stop`.
    pub fn finish(mut self, ctx: &Ctx<'_>) -> Result<Draft, CallError> {
        if !self.done {
            return Err(ctx.error(
                ErrorKind::ProviderError,
                "ConnectionError",
                "the stream ended before the answer was complete".into(),
                None,
                true,
            ));
        }
        if !self.usage.is_empty() {
            self.draft.usage = Some(Value::Object(self.usage));
        }
        Ok(self.draft)
    }
}

/// `message_delta` usage holds the final (cumulative) counts: they replace what
/// `message_start` said.
fn merge_usage(into: &mut Map<String, Value>, usage: Option<&Value>) {
    if let Some(Value::Object(u)) = usage {
        for (k, v) in u {
            if !v.is_null() {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx() -> Ctx<'static> {
        Ctx {
            provider: "a",
            secret: None,
            total_timeout: Duration::from_secs(1),
        }
    }

    fn enc(v: Value) -> Result<Value, CallError> {
        encode(
            &LlmRequest::from_value(&v).unwrap(),
            "claude",
            false,
            &ctx(),
        )
    }

    #[test]
    fn system_tool_results_and_defaults() {
        let b = enc(json!({"model": "x", "messages": [
                {"role": "system", "content": "one"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "let me look", "toolCalls": [
                    {"id": "c_0", "name": "f", "arguments": {"a": 1}},
                    {"id": "c_1", "name": "g", "arguments": {}}]},
                {"role": "tool", "content": "r0", "toolCallId": "c_0"},
                {"role": "tool", "content": "r1", "toolCallId": "c_1"},
                {"role": "system", "content": "two"}],
            "seed": 5, "stop": ["END"], "tools": [{"name": "f", "description": "d"}, {"name": "g"}],
            "toolChoice": "required"}))
        .unwrap();
        assert_eq!(
            b,
            json!({"model": "claude", "max_tokens": 1024, "system": "one\n\ntwo", "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "let me look"},
                    {"type": "tool_use", "id": "c_0", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "c_1", "name": "g", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "c_0", "content": "r0"},
                    {"type": "tool_result", "tool_use_id": "c_1", "content": "r1"}]}],
              "stop_sequences": ["END"],
              "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}}},
                        {"name": "g", "input_schema": {"type": "object", "properties": {}}}],
              "tool_choice": {"type": "any"}})
        );
    }

    #[test]
    fn refusals_are_invalid_arguments() {
        let e = enc(
            json!({"model": "x", "messages": [{"role": "user", "content": "q"}],
            "responseFormat": {"type": "json_object"}}),
        )
        .unwrap_err();
        assert_eq!(
            (e.kind, e.error_type.as_str()),
            (ErrorKind::InvalidArgument, "Unsupported")
        );
        assert!(e.message.contains("responseFormat"));
        let e = enc(json!({"model": "x", "messages": [{"role": "assistant",
            "toolCalls": [{"id": "c", "name": "f", "arguments": "{bad"}]}]}))
        .unwrap_err();
        assert!(
            e.message.contains("messages[0].toolCalls[0].arguments"),
            "{}",
            e.message
        );
    }

    #[test]
    fn stream_errors_and_cut_streams() {
        let mut s = Stream::default();
        let e = s
            .event(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &mut |_| {},
                &ctx(),
            )
            .unwrap_err();
        assert_eq!((e.error_type.as_str(), e.retryable), ("Overloaded", true));
        let mut s = Stream::default();
        s.event(
            r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}"#,
            &mut |_| {},
            &ctx(),
        )
        .unwrap();
        assert!(s.finish(&ctx()).unwrap_err().retryable);
        let mut s = Stream::default();
        let e = s
            .event(r#"{"type":"content_block_delta","index":4,"delta":{"type":"text_delta","text":"x"}}"#, &mut |_| {}, &ctx())
            .unwrap_err();
        assert_eq!(e.error_type, "InvalidResponse");
    }
}
