//! Opt-in message content on spans: what the log holds (already redacted by the run's
//! policy), as the GenAI conventions name it. Off unless asked for, because prompts and
//! outputs are user data.

use serde_json::{json, Value};

use crate::spans::{AttrValue, Category, Span};

/// Longest content attribute, in bytes; longer values are cut at a character boundary.
pub const MAX_CONTENT: usize = 64 * 1024;

/// Put `span`'s recorded input and output on it as content attributes.
pub fn attach(span: &mut Span) {
    match span.category {
        Category::Chat => {
            if let Some(messages) = span.input.as_deref().and_then(|r| r.get("messages")) {
                span.attrs.push(("gen_ai.input.messages", text(messages)));
            }
            if let Some(out) = span.output.as_deref() {
                let reason = out.get("finishReason").cloned().unwrap_or(Value::Null);
                let parts = json!([{"type": "text", "content": out.get("text").cloned().unwrap_or(Value::Null)}]);
                let message =
                    json!([{"role": "assistant", "parts": parts, "finish_reason": reason}]);
                span.attrs.push(("gen_ai.output.messages", text(&message)));
            }
        }
        Category::ToolCall | Category::ToolNode => {
            if let Some(args) = span.input.as_deref() {
                span.attrs.push(("gen_ai.tool.call.arguments", text(args)));
            }
            if let Some(result) = span.output.as_deref() {
                span.attrs.push(("gen_ai.tool.call.result", text(result)));
            }
        }
        Category::Agent | Category::Human | Category::Workflow => {
            if let Some(input) = span.input.as_deref() {
                span.attrs.push(("agentmesh.input", text(input)));
            }
            if let Some(output) = span.output.as_deref() {
                span.attrs.push(("agentmesh.output", text(output)));
            }
        }
        Category::Guardrail => {}
    }
}

fn text(v: &Value) -> AttrValue {
    let mut s = serde_json::to_string(v).expect("JSON values serialize");
    if s.len() > MAX_CONTENT {
        let mut cut = MAX_CONTENT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    AttrValue::Str(s)
}
