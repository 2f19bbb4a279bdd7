//! What `tools/list` and `tools/call` return: tool descriptions and tool results.

use serde_json::{Map, Value};

use super::error_type as err;
use crate::CallError;

/// How much of a failed tool's text a `ToolError` message quotes.
const ERROR_TEXT_CHARS: usize = 2000;

/// A tool as the server describes it in `tools/list`.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// The name to pass to [`McpServer::call_tool`](super::McpServer::call_tool).
    pub name: String,
    /// A display name (MCP 2025-06-18 and later).
    pub title: Option<String>,
    /// What the tool does, for a model; empty when the server gives none.
    pub description: String,
    /// JSON Schema of the arguments (`{"type":"object"}` when the server gives none).
    pub input_schema: Value,
    /// JSON Schema of `structuredContent`, when the tool declares one.
    pub output_schema: Option<Value>,
    /// Hints such as `readOnlyHint` and `idempotentHint`, as sent.
    pub annotations: Option<Value>,
}

impl McpTool {
    /// One entry of a `tools/list` result.
    pub(crate) fn from_wire(value: &Value) -> Result<McpTool, String> {
        let tool = value.as_object().ok_or("a tool that is not an object")?;
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("a tool without a `name` string")?
            .to_string();
        let text = |field: &str| -> Result<Option<String>, String> {
            match tool.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("tool `{name}`: `{field}` is not a string")),
            }
        };
        let schema = |field: &str| -> Result<Option<Value>, String> {
            match tool.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
                Some(_) => Err(format!("tool `{name}`: `{field}` is not an object")),
            }
        };
        Ok(McpTool {
            title: text("title")?,
            description: text("description")?.unwrap_or_default(),
            input_schema: schema("inputSchema")?
                .unwrap_or_else(|| serde_json::json!({"type": "object"})),
            output_schema: schema("outputSchema")?,
            annotations: schema("annotations")?,
            name,
        })
    }
}

/// The result of `tools/call`.
///
/// `is_error: true` means the tool ran (or the server looked for it) and reported failure:
/// an unknown tool, arguments that fail its schema, an access the server refused. That is a
/// result, not a transport error — [`McpServer::call_tool`](super::McpServer::call_tool)
/// returns it as `Ok`, the log records it, and the caller decides: hand it to the model as is,
/// or turn it into an error with [`into_result`](Self::into_result).
#[derive(Debug, Clone, PartialEq)]
pub struct McpToolResult {
    /// Content blocks as sent (`{"type":"text","text":…}`, images, resource links, …).
    pub content: Vec<Value>,
    /// Structured output (MCP 2025-06-18 and later), when the tool gives one.
    pub structured_content: Option<Value>,
    /// Whether the tool reported failure.
    pub is_error: bool,
}

impl McpToolResult {
    /// Reads a `tools/call` result from the wire, or a canonical result back from a log.
    /// Fields other than `content`, `structuredContent` and `isError` (such as `_meta`) are
    /// dropped. Errors (`INVALID_ARGUMENT`) name the field that is wrong.
    pub fn from_canonical(value: &Value) -> Result<McpToolResult, CallError> {
        Self::parse(value)
            .map_err(|m| err::invalid_argument(format!("not an MCP tool result: {m}")))
    }

    pub(crate) fn parse(value: &Value) -> Result<McpToolResult, String> {
        let result = value.as_object().ok_or("the result is not an object")?;
        let content = match result.get("content") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(blocks)) => blocks.clone(),
            Some(_) => return Err("`content` is not an array".into()),
        };
        let is_error = match result.get("isError") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("`isError` is not a boolean".into()),
        };
        let structured_content = match result.get("structuredContent") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.clone()),
        };
        Ok(McpToolResult {
            content,
            structured_content,
            is_error,
        })
    }

    /// The form the AgentMesh log records: `{"content":[…],"structuredContent":…,"isError":true}`,
    /// `structuredContent` omitted when absent and `isError` omitted when false.
    pub fn to_canonical(&self) -> Value {
        let mut out = Map::new();
        out.insert("content".into(), Value::Array(self.content.clone()));
        if let Some(structured) = &self.structured_content {
            out.insert("structuredContent".into(), structured.clone());
        }
        if self.is_error {
            out.insert("isError".into(), Value::Bool(true));
        }
        Value::Object(out)
    }

    /// The `text` of every text block, joined by newlines.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self
            .content
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        texts.join("\n")
    }

    /// The result as an error when `is_error` is set: kind `PROVIDER_ERROR`, error type
    /// `ToolError`, not retryable, the tool's text as message.
    pub fn tool_error(&self) -> Option<CallError> {
        if !self.is_error {
            return None;
        }
        let text = self.text();
        let message = if text.is_empty() {
            "MCP tool reported an error (no text content)".to_string()
        } else {
            let quoted: String = text.chars().take(ERROR_TEXT_CHARS).collect();
            let more = if text.chars().count() > ERROR_TEXT_CHARS {
                "…"
            } else {
                ""
            };
            format!("MCP tool reported an error: {quoted}{more}")
        };
        Some(err::tool_error(message))
    }

    /// `Ok(self)` unless the tool reported an error, which becomes [`tool_error`](Self::tool_error).
    pub fn into_result(self) -> Result<McpToolResult, CallError> {
        match self.tool_error() {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_omits_defaults_and_drops_meta() {
        let wire = json!({"content": [{"type": "text", "text": "hi"}], "_meta": {"t": 1}});
        let result = McpToolResult::from_canonical(&wire).unwrap();
        assert_eq!(
            result.to_canonical(),
            json!({"content": [{"type": "text", "text": "hi"}]})
        );
        let failed = json!({"content": [], "structuredContent": {"x": 1}, "isError": true});
        let back = McpToolResult::from_canonical(&failed).unwrap();
        assert_eq!(back.to_canonical(), failed);
        assert_eq!(
            McpToolResult::from_canonical(&back.to_canonical()).unwrap(),
            back
        );
    }

    #[test]
    fn tool_error_quotes_the_text() {
        let r = McpToolResult::from_canonical(&json!({
            "content": [{"type": "text", "text": "a"}, {"type": "image", "data": ""}, {"type": "text", "text": "b"}],
            "isError": true
        }))
        .unwrap();
        let e = r.clone().into_result().unwrap_err();
        assert_eq!(e.error_type, "ToolError");
        assert!(!e.retryable);
        assert_eq!(e.message, "MCP tool reported an error: a\nb");
        assert_eq!(r.tool_error(), Some(e));
    }

    #[test]
    fn malformed_results_name_the_field() {
        let e = McpToolResult::from_canonical(&json!({"content": "x"})).unwrap_err();
        assert!(e.message.contains("`content`"), "{}", e.message);
        let e = McpToolResult::from_canonical(&json!({"isError": "yes"})).unwrap_err();
        assert!(e.message.contains("`isError`"), "{}", e.message);
    }

    #[test]
    fn tools_default_description_and_schema() {
        let t = McpTool::from_wire(&json!({"name": "t"})).unwrap();
        assert_eq!(t.description, "");
        assert_eq!(t.input_schema, json!({"type": "object"}));
        assert!(McpTool::from_wire(&json!({"name": "t", "inputSchema": 3})).is_err());
        assert!(McpTool::from_wire(&json!({"title": "no name"})).is_err());
    }
}
