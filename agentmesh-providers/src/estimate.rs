//! How many input tokens an LLM request will cost, before it is sent: what a budget reserves
//! (docs/budgets.md "Token estimates"). Settlement uses the provider's reported usage, so an
//! estimate only has to be close and, for the reservation to hold, rarely below.
//!
//! OpenAI-family models are counted with their own tokenizer (`tiktoken-rs`: o200k_base,
//! cl100k_base, ...; its ranks are embedded, nothing is downloaded) plus OpenAI's chat
//! framing: 3 tokens per message, 3 to prime the reply. Other models (Anthropic counts
//! remotely; local models have their own vocabularies) get a documented estimate: a token per
//! 3 bytes of ASCII and per byte of other UTF-8, plus 4 tokens per message and 32 for the
//! chat template.
//! Tool definitions and a response schema count as their JSON text in both.

use serde_json::Value;

use crate::{LlmRequest, Role};

/// Framing tokens per message in OpenAI's chat format.
const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens that prime the reply (`<|start|>assistant<|message|>`).
const REPLY_PRIMING: u64 = 3;
/// Per message, for models counted by bytes (role markers of a chat template).
const ESTIMATED_PER_MESSAGE: u64 = 4;
/// Once per request, for models counted by bytes: a chat template's preamble (a default system
/// prompt some templates add).
const ESTIMATED_TEMPLATE: u64 = 32;
/// Bytes of ASCII per token, for models counted by bytes (English averages about 4).
const BYTES_PER_TOKEN: u64 = 3;

/// An estimate of a request's input tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputEstimate {
    /// The tokens the prompt will be billed as, estimated.
    pub tokens: u64,
    /// Whether the text was counted with the model's own tokenizer (OpenAI-family models);
    /// otherwise it is the byte estimate.
    pub tokenizer: bool,
}

/// Estimate the input tokens of `request`, a canonical LLM request (`docs/providers.md`).
///
/// Errors: `INVALID_ARGUMENT` when it is not one (the error of `LlmRequest::from_value`).
pub fn estimate_input_tokens(request: &Value) -> Result<InputEstimate, crate::CallError> {
    let req = LlmRequest::from_value(request)?;
    let bpe = tiktoken_rs::tokenizer::get_tokenizer(&req.model)
        .map(tiktoken_rs::bpe_for_tokenizer)
        .and_then(Result::ok);
    let count = |text: &str| -> u64 {
        match bpe {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            None => bytes_estimate(text),
        }
    };
    let (per_message, fixed) = match bpe {
        Some(_) => (TOKENS_PER_MESSAGE, REPLY_PRIMING),
        None => (ESTIMATED_PER_MESSAGE, ESTIMATED_TEMPLATE),
    };
    let mut tokens = fixed;
    for m in &req.messages {
        tokens += per_message + count(role(m.role));
        if let Some(c) = &m.content {
            tokens += count(c);
        }
        for call in &m.tool_calls {
            tokens += per_message + count(&call.name) + count(&call.arguments.to_string());
        }
        if let Some(id) = &m.tool_call_id {
            tokens += count(id);
        }
    }
    for tool in &req.tools {
        tokens += per_message + count(&tool.name);
        if let Some(d) = &tool.description {
            tokens += count(d);
        }
        if let Some(p) = &tool.parameters {
            tokens += count(&p.to_string());
        }
    }
    if let Some(format) = &req.response_format {
        tokens += count(&serde_json::to_string(format).unwrap_or_default());
    }
    Ok(InputEstimate {
        tokens,
        tokenizer: bpe.is_some(),
    })
}

/// A token per 3 bytes of ASCII, and one per byte of anything else: byte-fallback
/// vocabularies spend up to a token per byte on scripts they saw little of (CJK on a small
/// English model), so this stays above what they count.
fn bytes_estimate(text: &str) -> u64 {
    let ascii = text.bytes().filter(u8::is_ascii).count() as u64;
    ascii.div_ceil(BYTES_PER_TOKEN) + (text.len() as u64 - ascii)
}

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ask(model: &str, text: &str) -> Value {
        json!({"model": model, "messages": [{"role": "user", "content": text}]})
    }

    #[test]
    fn openai_models_are_counted_with_their_tokenizer_and_framing() {
        // "hello world" is 2 tokens in o200k_base and cl100k_base.
        for model in ["gpt-4o", "gpt-4o-mini", "gpt-4", "o3-mini"] {
            let e = estimate_input_tokens(&ask(model, "hello world")).unwrap();
            assert!(e.tokenizer, "{model}");
            // 3 framing + 1 ("user") + 2 + 3 priming.
            assert_eq!(e.tokens, 3 + 1 + 2 + 3, "{model}");
        }
    }

    #[test]
    fn other_models_get_the_byte_estimate() {
        let e = estimate_input_tokens(&ask("claude-sonnet-4-5", "hello world")).unwrap();
        assert!(!e.tokenizer);
        // 32 template + 4 per message + ceil(4/3) for "user" + ceil(11/3).
        assert_eq!(e.tokens, 32 + 4 + 2 + 4);
    }

    #[test]
    fn tools_tool_calls_and_schemas_count() {
        let plain = estimate_input_tokens(&ask("gpt-4o", "weather?"))
            .unwrap()
            .tokens;
        let with_tools = estimate_input_tokens(&json!({"model": "gpt-4o", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "toolCalls": [{"id": "c1", "name": "weather", "arguments": {"city": "Lyon"}}]},
            {"role": "tool", "toolCallId": "c1", "content": "{\"celsius\": 21}"}],
            "tools": [{"name": "weather", "description": "Current weather", "parameters": {"type": "object"}}]}))
        .unwrap()
        .tokens;
        assert!(with_tools > plain + 20, "{with_tools} vs {plain}");
    }

    #[test]
    fn a_request_that_is_not_one_is_refused() {
        assert!(estimate_input_tokens(&json!({"messages": "no"})).is_err());
    }
}
