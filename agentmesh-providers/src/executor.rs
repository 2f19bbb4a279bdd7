//! The built-in calls as the core's [`CallExecutor`]s: what a mesh registers so agents'
//! `llm` and `tool` calls go through the run's call protocol (recorded before they run,
//! answered from the log after a resume).

use std::sync::Arc;
use std::time::Instant;

use agentmesh_core::{
    Attempt as CoreAttempt, CallAsk, CallError as CoreError, CallExecutor, CallMeta, CallOutcome,
    CallTicket, ErrorKind,
};
use serde_json::{json, Value};

use crate::llm::{CallOptions, Chunk, LlmProvider, ProviderMeta};
use crate::mcp::McpServer;
use crate::{
    estimate_input_tokens, CallError, Fallback, HttpProvider, LlmRequest, ProviderConfig,
    ProviderKind,
};

/// An LLM provider as a [`CallExecutor`]: requests are validated and normalised
/// ([`LlmRequest`]) before they are recorded, tool calls get the ticket's ids, and the
/// ticket's idempotency key is sent.
pub struct LlmExecutor {
    provider: Arc<dyn LlmProvider>,
    /// The price table's provider id for this provider's models.
    priced_as: String,
    /// The `maxTokens` the provider's adapter sends when a request has none (Anthropic's).
    default_max_tokens: Option<u64>,
}

impl LlmExecutor {
    /// Wrap `provider`, priced under its name (see [`LlmExecutor::priced_as`]).
    pub fn new(provider: Arc<dyn LlmProvider>) -> LlmExecutor {
        LlmExecutor {
            priced_as: provider.name().to_owned(),
            provider,
            default_max_tokens: None,
        }
    }

    /// Price this provider's calls under `id` in the price table (`openai`, `anthropic`, or
    /// the name a user table gives a local server).
    pub fn priced_as(mut self, id: &str) -> LlmExecutor {
        self.priced_as = id.to_owned();
        self
    }

    /// The executor for `cfg`'s provider, registered as `name`: priced as `openai` or
    /// `anthropic` when it is that vendor's own API, else under `name`.
    fn for_config(provider: Arc<dyn LlmProvider>, name: &str, cfg: &ProviderConfig) -> LlmExecutor {
        let host = cfg
            .base_url
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split(['/', ':'])
            .next()
            .unwrap_or_default();
        let (vendor, default_max) = match cfg.kind {
            ProviderKind::OpenAi => ("openai", None),
            ProviderKind::Anthropic => (
                "anthropic",
                Some(crate::anthropic::DEFAULT_MAX_TOKENS as u64),
            ),
        };
        let official = host == format!("api.{vendor}.com");
        LlmExecutor {
            provider,
            priced_as: if official { vendor } else { name }.to_owned(),
            default_max_tokens: default_max,
        }
    }
}

/// The core's form of a call error (the kind is said by the error type).
pub fn core_error(e: &CallError) -> CoreError {
    CoreError {
        error_type: e.error_type.clone(),
        message: e.message.clone(),
        retryable: e.retryable,
        status: e.status,
    }
}

fn core_attempts(attempts: &[crate::Attempt]) -> Vec<CoreAttempt> {
    attempts
        .iter()
        .map(|a| CoreAttempt {
            provider: a.provider.clone(),
            error: core_error(&a.error),
        })
        .collect()
}

/// A streamed chunk as the agent sees it: `{"text"}`, or
/// `{"toolCall": {"index", "name"}}` / `{"toolCall": {"index", "arguments"}}` deltas.
pub fn chunk_value(chunk: &Chunk) -> Value {
    match chunk {
        Chunk::Text(t) => json!({ "text": t }),
        Chunk::ToolCallStart { index, name } => {
            json!({"toolCall": {"index": index, "name": name}})
        }
        Chunk::ToolCallArguments { index, delta } => {
            json!({"toolCall": {"index": index, "arguments": delta}})
        }
        #[allow(unreachable_patterns)]
        _ => json!({}),
    }
}

impl CallExecutor for LlmExecutor {
    fn prepare(&self, request: Value) -> Result<Value, CoreError> {
        LlmRequest::from_value(&request)
            .map(|r| r.to_value())
            .map_err(|e| core_error(&e))
    }

    fn ask(&self, request: &Value) -> Option<CallAsk> {
        let estimate = estimate_input_tokens(request).ok()?;
        let field = |k: &str| request.get(k).and_then(Value::as_u64);
        Some(CallAsk {
            provider: self.priced_as.clone(),
            model: request.get("model")?.as_str()?.to_owned(),
            input_tokens: estimate.tokens,
            max_tokens: field("maxTokens").or(self.default_max_tokens),
            min_tokens: field("minTokens"),
        })
    }

    fn execute(
        &self,
        request: &Value,
        ticket: &CallTicket,
        on_chunk: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        // A budget that clamped the call: send its `maxTokens`.
        let clamped;
        let request = match ticket.max_tokens {
            Some(n) => {
                let mut r = request.clone();
                r["maxTokens"] = Value::from(n);
                clamped = r;
                &clamped
            }
            None => request,
        };
        let prefix = format!("call_{}_{}", ticket.seq, ticket.call);
        let opts = CallOptions {
            idempotency_key: Some(&ticket.idempotency_key),
            tool_call_prefix: &prefix,
        };
        let sent = Instant::now();
        let mut ttft_us = None;
        let result = match on_chunk {
            Some(f) => {
                let mut each = |c: &Chunk| {
                    ttft_us.get_or_insert_with(|| sent.elapsed().as_micros() as u64);
                    f(&chunk_value(c))
                };
                self.provider.complete(request, &opts, Some(&mut each))
            }
            None => self.provider.complete(request, &opts, None),
        };
        match result {
            Ok(answer) => {
                let meta = call_meta(answer.meta, ttft_us);
                let mut o = CallOutcome::ok(answer.response).with_meta(meta);
                o.usage = answer.usage;
                o.attempts = core_attempts(&answer.attempts);
                o
            }
            Err(failed) => {
                let mut o = CallOutcome::err(core_error(&failed.error));
                // The last attempt is the error itself.
                let n = failed.attempts.len().saturating_sub(1);
                o.attempts = core_attempts(&failed.attempts[..n]);
                o
            }
        }
    }
}

/// What the log's `meta.call` keeps of a provider's answer (never canonical).
fn call_meta(m: ProviderMeta, ttft_us: Option<u64>) -> CallMeta {
    CallMeta {
        provider: (!m.provider.is_empty()).then_some(m.provider),
        response_id: m.response_id,
        created: m.created,
        system_fingerprint: m.system_fingerprint,
        tool_call_ids: m.tool_call_ids,
        ttft_us,
        rate_wait_us: m.rate_wait_us,
    }
}

fn invalid(message: String) -> agentmesh_core::Error {
    agentmesh_core::Error::new(ErrorKind::InvalidArgument, message)
}

fn config_named(name: &str, value: &Value) -> Result<ProviderConfig, agentmesh_core::Error> {
    let mut v = value.clone();
    let Some(obj) = v.as_object_mut() else {
        return Err(invalid(format!(
            "provider '{name}': a configuration is an object (or a list of them for a fallback chain)"
        )));
    };
    obj.entry("name").or_insert_with(|| Value::from(name));
    ProviderConfig::from_value(&v).map_err(|e| invalid(e.message))
}

/// The executor a host registers as provider `name`: an object is one HTTP provider
/// ([`ProviderConfig::from_value`]), a list is a fallback chain of them (each entry's
/// `name` defaults to `<name>-<i>`, i from 1).
///
/// Errors: `INVALID_ARGUMENT` naming the field.
pub fn executor_from_config(
    name: &str,
    config: &Value,
) -> Result<Arc<dyn CallExecutor>, agentmesh_core::Error> {
    // Priced as the first provider of a chain (what the call asks for).
    let (provider, first): (Arc<dyn LlmProvider>, ProviderConfig) = match config {
        Value::Array(list) => {
            let mut chain: Vec<Arc<dyn LlmProvider>> = Vec::with_capacity(list.len());
            let mut first = None;
            for (i, c) in list.iter().enumerate() {
                let cfg = config_named(&format!("{name}-{}", i + 1), c)?;
                first.get_or_insert_with(|| cfg.clone());
                chain.push(Arc::new(
                    HttpProvider::new(cfg).map_err(|e| invalid(e.message))?,
                ));
            }
            let chain = Fallback::new(name, chain).map_err(|e| invalid(e.message))?;
            (Arc::new(chain), first.expect("a chain is not empty"))
        }
        other => {
            let cfg = config_named(name, other)?;
            let provider = HttpProvider::new(cfg.clone()).map_err(|e| invalid(e.message))?;
            (Arc::new(provider), cfg)
        }
    };
    Ok(Arc::new(LlmExecutor::for_config(provider, name, &first)))
}

/// A tool of an MCP server as a [`CallExecutor`]: its result is recorded in canonical form
/// ([`crate::mcp::McpToolResult::to_canonical`]); a result with `isError` is recorded as a
/// failed call (`ToolError`, not retryable).
pub struct McpToolExecutor {
    server: Arc<McpServer>,
    tool: String,
}

impl McpToolExecutor {
    /// Tool `tool` of `server`.
    pub fn new(server: Arc<McpServer>, tool: impl Into<String>) -> McpToolExecutor {
        McpToolExecutor {
            server,
            tool: tool.into(),
        }
    }
}

impl CallExecutor for McpToolExecutor {
    fn prepare(&self, request: Value) -> Result<Value, CoreError> {
        match request {
            Value::Null => Ok(json!({})),
            Value::Object(_) => Ok(request),
            _ => Err(CoreError::new(
                "InvalidArgument",
                format!("MCP tool '{}' takes an object of arguments", self.tool),
            )
            .permanent()),
        }
    }

    fn execute(
        &self,
        request: &Value,
        _ticket: &CallTicket,
        _on_chunk: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        match self.server.call_tool(&self.tool, request.clone()) {
            Ok(r) if r.is_error => {
                let e = r
                    .tool_error()
                    .map(|e| core_error(&e))
                    .unwrap_or_else(|| CoreError::new("ToolError", r.text()).permanent());
                CallOutcome::err(e)
            }
            Ok(r) => CallOutcome::ok(r.to_canonical()),
            Err(e) => CallOutcome::err(core_error(&e)),
        }
    }
}
