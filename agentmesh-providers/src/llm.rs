//! The LLM provider interface: one blocking call from a canonical request to a canonical
//! response, with the failed attempts (retries, fallbacks) it took to get there.

use std::fmt;

use agentmesh_core::Usage;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::error::CallError;

/// A provider of LLM completions. Calls block; the caller runs them on its own thread.
pub trait LlmProvider: Send + Sync {
    /// The provider's configured name (recorded in [`Attempt`]s and [`ProviderMeta`]).
    fn name(&self) -> &str;

    /// Complete a canonical request (`docs/providers.md`). With `on_chunk`, the answer is
    /// streamed and each piece passed to it as it arrives; the returned answer is the same
    /// as without streaming.
    ///
    /// Errors: [`CallFailed`] with the final error (`INVALID_ARGUMENT` for a malformed request
    /// or a missing API key variable, `PROVIDER_ERROR`, `TIMEOUT`) and every attempt made.
    fn complete(
        &self,
        request: &Value,
        opts: &CallOptions<'_>,
        on_chunk: Option<&mut dyn FnMut(&Chunk)>,
    ) -> Result<LlmAnswer, CallFailed>;
}

/// Per-call options.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions<'a> {
    /// Sent as the `Idempotency-Key` header on every attempt of this call.
    pub idempotency_key: Option<&'a str>,
    /// Canonical tool-call ids are `{tool_call_prefix}_{i}` (letters, digits, `_`, `-`).
    pub tool_call_prefix: &'a str,
}

/// A piece of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Chunk {
    /// More text.
    Text(String),
    /// The model starts tool call `index` (0-based, canonical order).
    ToolCallStart {
        /// The call's index in the response's `toolCalls`.
        index: usize,
        /// The tool's name.
        name: String,
    },
    /// More of tool call `index`'s arguments, as JSON text.
    ToolCallArguments {
        /// The call's index in the response's `toolCalls`.
        index: usize,
        /// The next piece of the arguments' JSON text.
        delta: String,
    },
}

/// A successful call.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmAnswer {
    /// The canonical response ([`crate::LlmResponse::to_value`]).
    pub response: Value,
    /// Token usage, when the provider reported it; `model` is the model that answered.
    pub usage: Option<Usage>,
    /// Failed attempts before this answer (retries, then fallbacks), in order.
    pub attempts: Vec<Attempt>,
    /// The provider's own ids (never canonical: they differ on every call).
    pub meta: ProviderMeta,
}

/// A failed attempt: which provider, and how it failed (also failures before anything was
/// sent, such as a missing API key variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The provider's configured name.
    pub provider: String,
    /// What went wrong.
    pub error: CallError,
}

impl Serialize for Attempt {
    /// `{"provider", "code", "errorType", "message", "status"?, "retryable"}`: the form the
    /// log records.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.error;
        let mut st = s.serialize_struct("Attempt", 6)?;
        st.serialize_field("provider", &self.provider)?;
        st.serialize_field("code", e.kind.code())?;
        st.serialize_field("errorType", &e.error_type)?;
        st.serialize_field("message", &e.message)?;
        if let Some(status) = e.status {
            st.serialize_field("status", &status)?;
        }
        st.serialize_field("retryable", &e.retryable)?;
        st.end()
    }
}

/// A call that failed: the final error and every attempt made (the last one's error is
/// `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailed {
    /// The error to report.
    pub error: CallError,
    /// Every failed attempt, in order; never empty.
    pub attempts: Vec<Attempt>,
}

impl CallFailed {
    /// A failure of `provider` before or without retries.
    pub(crate) fn once(provider: &str, error: CallError) -> CallFailed {
        CallFailed {
            attempts: vec![Attempt {
                provider: provider.to_owned(),
                error: error.clone(),
            }],
            error,
        }
    }
}

impl fmt::Display for CallFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if self.attempts.len() > 1 {
            write!(f, " (after {} attempts)", self.attempts.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for CallFailed {}

/// What the provider said about itself: useful for support tickets and traces, never
/// recorded in the canonical log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderMeta {
    /// The provider that answered (after a fallback, not the first one).
    pub provider: String,
    /// The provider's response id (`chatcmpl-...`, `msg_...`).
    pub response_id: Option<String>,
    /// The model the provider said answered.
    pub model: Option<String>,
    /// OpenAI's `created` (Unix seconds).
    pub created: Option<i64>,
    /// OpenAI's `system_fingerprint`.
    pub system_fingerprint: Option<String>,
    /// The provider's id of each tool call, in canonical order.
    pub tool_call_ids: Vec<String>,
    /// Microseconds the call waited for its provider's rate limits.
    pub rate_wait_us: Option<u64>,
}
