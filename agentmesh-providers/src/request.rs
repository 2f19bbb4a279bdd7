//! The canonical LLM request: what an agent asks for and the log records, the same for every
//! provider. Adapters translate it to a provider's wire form (`openai.rs`, `anthropic.rs`).

use std::fmt;

use agentmesh_core::ErrorKind;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::CallError;

/// A canonical LLM request (`docs/providers.md`). Only `model` and `messages` are required;
/// absent options are left to the provider's defaults (except Anthropic's `max_tokens`, which
/// the Anthropic adapter defaults to 1024).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LlmRequest {
    /// The model asked for (a provider configured with a `model` sends that one instead).
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Most completion tokens to generate (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The fewest completion tokens this call accepts when a budget clamps `maxTokens` to
    /// what is left (docs/budgets.md); without it a call with `maxTokens` is sent as asked
    /// or refused. Not sent to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2 (Anthropic accepts 0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Sampling seed (OpenAI-compatible servers; Anthropic has none and it is not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Vec<String>>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Whether and which tool the model must call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// The shape of the answer's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// The text; required except on an assistant message that carries tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool calls the assistant made (assistant messages only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The tool call this message answers (tool messages only, required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// The speaker of a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions (Anthropic: the top-level `system`).
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's result (Anthropic: a `tool_result` block in a user message).
    Tool,
}

/// A tool call, in a request's assistant message or in a canonical response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolCall {
    /// The canonical id (`{prefix}_{i}` in responses), never the provider's.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as JSON; a string when the model's arguments were not valid JSON.
    pub arguments: Value,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema object for its arguments (default: an object with no properties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

impl Tool {
    /// The parameters schema to send: the given one, or an empty object schema.
    pub(crate) fn schema(&self) -> Value {
        self.parameters
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}))
    }
}

/// `"auto"`, `"none"`, `"required"` or `{"name": tool}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool call.
    None,
    /// At least one tool call (Anthropic: `any`).
    Required,
    /// This tool.
    Named(String),
}

/// The shape of the answer's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "FormatWire")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object (OpenAI-compatible only).
    JsonObject,
    /// JSON matching `schema` (OpenAI-compatible only).
    JsonSchema {
        /// The schema's name.
        name: String,
        /// A JSON Schema object.
        schema: Value,
        /// Whether the provider must follow the schema exactly.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

// serde's internally tagged enums ignore unknown keys on unit variants (`{"type": "text",
// "x": 1}` would pass): read one flat struct and check it instead.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatWire {
    #[serde(rename = "type")]
    kind: FormatKind,
    name: Option<String>,
    schema: Option<Value>,
    strict: Option<bool>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FormatKind {
    Text,
    JsonObject,
    JsonSchema,
}

impl TryFrom<FormatWire> for ResponseFormat {
    type Error = String;
    fn try_from(w: FormatWire) -> Result<ResponseFormat, String> {
        match (w.kind, w.name, w.schema) {
            (FormatKind::JsonSchema, Some(name), Some(schema)) => Ok(ResponseFormat::JsonSchema {
                name,
                schema,
                strict: w.strict,
            }),
            (FormatKind::JsonSchema, _, _) => Err("json_schema needs `name` and `schema`".into()),
            (_, None, None) if w.strict.is_none() => Ok(match w.kind {
                FormatKind::Text => ResponseFormat::Text,
                _ => ResponseFormat::JsonObject,
            }),
            _ => Err("`name`, `schema` and `strict` belong to json_schema only".into()),
        }
    }
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Named(name) => {
                let mut m = Map::new();
                m.insert("name".into(), Value::String(name.clone()));
                Value::Object(m).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ToolChoice, D::Error> {
        let v = Value::deserialize(d)?;
        let bad = || {
            de::Error::custom(format!(
                "must be \"auto\", \"none\", \"required\" or {{\"name\": <tool>}}, not {}",
                short(&v)
            ))
        };
        match &v {
            Value::String(s) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" => Ok(ToolChoice::Required),
                _ => Err(bad()),
            },
            Value::Object(m) if m.len() == 1 => match m.get("name") {
                Some(Value::String(name)) => Ok(ToolChoice::Named(name.clone())),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// A value for an error message, cut to a readable length.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

fn invalid(path: impl fmt::Display, what: impl fmt::Display) -> CallError {
    CallError {
        kind: ErrorKind::InvalidArgument,
        error_type: "InvalidRequest".into(),
        message: format!("LLM request {path}: {what}"),
        status: None,
        retryable: false,
    }
}

impl LlmRequest {
    /// Read and check a canonical request.
    ///
    /// Errors: `INVALID_ARGUMENT` naming the field path (`messages[2].toolCallId: ...`) for an
    /// unknown key, a wrong type, or a value out of range.
    pub fn from_value(value: &Value) -> Result<LlmRequest, CallError> {
        // serde's derived structs also read arrays (fields by position): refuse them first.
        if !value.is_object() {
            return Err(invalid(
                "(top level)",
                format!("must be an object, not {}", short(value)),
            ));
        }
        objects_only(value)?;
        let req: LlmRequest = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "(top level)".into()
            } else {
                path
            };
            invalid(path, e.into_inner())
        })?;
        req.check()?;
        Ok(req)
    }

    /// The request as canonical JSON (what the log records).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a request always serializes")
    }

    fn check(&self) -> Result<(), CallError> {
        if self.model.is_empty() {
            return Err(invalid("model", "must not be empty"));
        }
        if self.messages.is_empty() {
            return Err(invalid("messages", "must hold at least one message"));
        }
        for (i, m) in self.messages.iter().enumerate() {
            check_message(i, m)?;
        }
        if self.max_tokens == Some(0) {
            return Err(invalid("maxTokens", "must be at least 1"));
        }
        if self.min_tokens == Some(0) {
            return Err(invalid("minTokens", "must be at least 1"));
        }
        if let (Some(min), Some(max)) = (self.min_tokens, self.max_tokens) {
            if min > max {
                return Err(invalid(
                    "minTokens",
                    format!("{min} is more than maxTokens ({max})"),
                ));
            }
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(invalid("temperature", format!("must be 0 to 2, not {t}")));
            }
        }
        if let Some(p) = self.top_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid("topP", format!("must be 0 to 1, not {p}")));
            }
        }
        for (i, t) in self.tools.iter().enumerate() {
            if t.name.is_empty() {
                return Err(invalid(format!("tools[{i}].name"), "must not be empty"));
            }
            if self.tools[..i].iter().any(|u| u.name == t.name) {
                return Err(invalid(
                    format!("tools[{i}].name"),
                    format!("`{}` is declared twice", t.name),
                ));
            }
            if matches!(&t.parameters, Some(p) if !p.is_object()) {
                return Err(invalid(
                    format!("tools[{i}].parameters"),
                    "must be a JSON Schema object",
                ));
            }
        }
        match &self.tool_choice {
            Some(ToolChoice::Required) if self.tools.is_empty() => {
                return Err(invalid("toolChoice", "\"required\" needs tools"));
            }
            Some(ToolChoice::Named(name)) if !self.tools.iter().any(|t| &t.name == name) => {
                return Err(invalid(
                    "toolChoice",
                    format!("names `{name}`, which is not in tools"),
                ));
            }
            _ => {}
        }
        if let Some(ResponseFormat::JsonSchema { name, schema, .. }) = &self.response_format {
            if name.is_empty() {
                return Err(invalid("responseFormat.name", "must not be empty"));
            }
            if !schema.is_object() {
                return Err(invalid(
                    "responseFormat.schema",
                    "must be a JSON Schema object",
                ));
            }
        }
        Ok(())
    }
}

/// The list items that are structs must be objects (see [`LlmRequest::from_value`]).
fn objects_only(v: &Value) -> Result<(), CallError> {
    fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
        v.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
    }
    let must = |path: String, item: &Value| {
        if item.is_object() {
            Ok(())
        } else {
            Err(invalid(
                path,
                format!("must be an object, not {}", short(item)),
            ))
        }
    };
    for (i, m) in items(v, "messages") {
        must(format!("messages[{i}]"), m)?;
        for (j, c) in items(m, "toolCalls") {
            must(format!("messages[{i}].toolCalls[{j}]"), c)?;
        }
    }
    for (i, t) in items(v, "tools") {
        must(format!("tools[{i}]"), t)?;
    }
    Ok(())
}

fn check_message(i: usize, m: &Message) -> Result<(), CallError> {
    let at = |field: &str| format!("messages[{i}].{field}");
    if !m.tool_calls.is_empty() && m.role != Role::Assistant {
        return Err(invalid(
            at("toolCalls"),
            "only assistant messages carry tool calls",
        ));
    }
    match (m.role, &m.tool_call_id) {
        (Role::Tool, None) => return Err(invalid(at("toolCallId"), "a tool message needs one")),
        (Role::Tool, Some(id)) if id.is_empty() => {
            return Err(invalid(at("toolCallId"), "must not be empty"))
        }
        (Role::Tool, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(invalid(at("toolCallId"), "only tool messages carry one")),
    }
    let may_omit = m.role == Role::Assistant && !m.tool_calls.is_empty();
    if m.content.is_none() && !may_omit {
        return Err(invalid(
            at("content"),
            "required (only an assistant message with tool calls may omit it)",
        ));
    }
    for (j, c) in m.tool_calls.iter().enumerate() {
        if c.id.is_empty() {
            return Err(invalid(
                at(&format!("toolCalls[{j}].id")),
                "must not be empty",
            ));
        }
        if c.name.is_empty() {
            return Err(invalid(
                at(&format!("toolCalls[{j}].name")),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        let e = LlmRequest::from_value(&v).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        e.message
    }

    #[test]
    fn full_request_round_trips() {
        let v = json!({"model": "m", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "toolCalls": [{"id": "c_0", "name": "search", "arguments": {"q": 1}}]},
                {"role": "tool", "content": "found", "toolCallId": "c_0"}],
            "maxTokens": 64, "temperature": 0, "topP": 1, "seed": 1, "stop": ["\n"],
            "tools": [{"name": "search", "description": "d", "parameters": {"type": "object"}}],
            "toolChoice": {"name": "search"},
            "responseFormat": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": true}});
        let r = LlmRequest::from_value(&v).unwrap();
        assert_eq!(r.tool_choice, Some(ToolChoice::Named("search".into())));
        let again = r.to_value();
        assert_eq!(again["temperature"], json!(0.0));
        assert_eq!(LlmRequest::from_value(&again).unwrap(), r);
        assert_eq!(again["toolChoice"], json!({"name": "search"}));
        let min = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(LlmRequest::from_value(&min).unwrap().to_value(), min);
    }

    #[test]
    fn errors_name_the_field() {
        let m = |extra: Value| {
            let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        assert!(err(m(json!({"maxTokns": 3}))).contains("unknown field `maxTokns`"));
        assert!(err(m(json!({"maxTokens": -1}))).starts_with("LLM request maxTokens:"));
        assert!(err(m(json!({"maxTokens": 0}))).contains("at least 1"));
        assert!(err(m(json!({"temperature": "hot"}))).starts_with("LLM request temperature:"));
        assert!(err(m(json!({"temperature": 3}))).contains("0 to 2"));
        assert!(err(m(json!({"toolChoice": "sometimes"}))).starts_with("LLM request toolChoice:"));
        assert!(err(m(json!({"toolChoice": {"name": "x"}}))).contains("not in tools"));
        assert!(err(m(json!({"toolChoice": "required"}))).contains("needs tools"));
        assert!(err(m(json!({"responseFormat": {"type": "yaml"}}))).contains("responseFormat"));
        assert!(err(m(json!({"responseFormat": {"type": "text", "x": 1}}))).contains("x"));
        let e = err(m(json!({"responseFormat": {"type": "text", "name": "n"}})));
        assert!(e.contains("json_schema only"), "{e}");
        let e = err(m(
            json!({"responseFormat": {"type": "json_schema", "name": "n"}}),
        ));
        assert!(
            e.starts_with("LLM request responseFormat:") && e.contains("schema"),
            "{e}"
        );
        let msg = |mm: Value| json!({"model": "m", "messages": [mm]});
        let e = err(msg(json!({"role": "user", "content": "a", "colour": 1})));
        assert!(e.starts_with("LLM request messages[0]"), "{e}");
        assert!(err(msg(json!({"role": "robot", "content": "a"}))).contains("messages[0].role"));
        assert!(err(msg(json!({"role": "tool", "content": "a"}))).contains("toolCallId"));
        assert!(err(msg(json!({"role": "user"}))).contains("messages[0].content"));
        let e = err(msg(
            json!({"role": "user", "content": "a", "toolCalls": [{"id": "1", "name": "n", "arguments": {}}]}),
        ));
        assert!(e.contains("only assistant"), "{e}");
        assert!(err(json!({"model": "", "messages": []})).contains("model"));
        assert!(err(json!({"model": "m", "messages": []})).contains("at least one"));
        assert!(err(json!({"messages": []})).contains("model"));
        let e = err(json!({"model": "m", "messages": [["user", "hi"]]}));
        assert!(e.contains("messages[0]: must be an object"), "{e}");
        let e = err(json!([1]));
        assert!(e.contains("top level"), "{e}");
        let e = err(
            json!({"model": "m", "messages": [{"role": "user", "content": "a"}],
            "tools": [{"name": "t"}, {"name": "t"}]}),
        );
        assert!(e.contains("tools[1].name"), "{e}");
    }
}
