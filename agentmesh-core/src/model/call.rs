//! Calls inside an activation: the LLM requests and tool calls an agent makes while it runs,
//! each recorded as it happens (docs/calls.md).
//!
//! A call is identified by `(activation, call)`: `call` numbers run 1, 2, … in the order the
//! activation issues them. Its records sit under the activation's reserved completion seq
//! with a `sub` number (`callStarted` at an odd sub, its result at the next one), so they
//! precede the completion in canonical order and parallel activations never interleave.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::failure::Usage;
use crate::budget::Amounts;

/// Most calls one activation may make (a runaway agent loop ends with a typed error).
pub const MAX_CALLS_PER_ACTIVATION: u32 = 10_000;

/// What a call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    /// A request to a language model (`name` is the provider).
    Llm,
    /// A tool (`name` is the tool).
    Tool,
}

impl CallKind {
    /// `llm` or `tool`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Llm => "llm",
            CallKind::Tool => "tool",
        }
    }

    /// Parse `llm` or `tool`.
    ///
    /// Errors: `INVALID_ARGUMENT`.
    pub fn parse(text: &str) -> crate::Result<CallKind> {
        match text {
            "llm" => Ok(CallKind::Llm),
            "tool" => Ok(CallKind::Tool),
            other => Err(crate::Error::invalid_argument(format!(
                "call kind must be llm or tool, not '{other}'"
            ))),
        }
    }
}

/// A call an activation is about to make: what the log records before it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRequest {
    /// LLM or tool.
    pub kind: CallKind,
    /// The provider (LLM calls) or tool name.
    pub name: String,
    /// The canonical request: what is sent, without secrets (any JSON).
    pub request: Value,
    /// What the call may cost, when its executor can say before it is sent (an LLM call):
    /// what a budget reserves. `None`: it reserves one call and is charged what it reports.
    pub ask: Option<CallAsk>,
}

/// What an LLM call may spend, estimated before it is sent (docs/budgets.md "Reserving a
/// call"): a budget reserves its worst case, and may clamp `max_tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAsk {
    /// The price table's provider id for the model (`openai`, `anthropic`, or the name a
    /// user table prices a local server under).
    pub provider: String,
    /// The model asked for.
    pub model: String,
    /// Estimated prompt tokens.
    pub input_tokens: u64,
    /// The request's `maxTokens` (`None`: the provider's default, so a limited budget
    /// clamps it to what fits).
    pub max_tokens: Option<u64>,
    /// The smallest `maxTokens` the call accepts when a budget clamps it (`None`: a call
    /// with `maxTokens` is not clamped; one without takes any that fits from 1 up).
    pub min_tokens: Option<u64>,
}

impl CallRequest {
    /// An LLM request to `provider`.
    pub fn llm(provider: impl Into<String>, request: Value) -> CallRequest {
        CallRequest {
            kind: CallKind::Llm,
            name: provider.into(),
            request,
            ask: None,
        }
    }

    /// A call of tool `name` with `arguments`.
    pub fn tool(name: impl Into<String>, arguments: Value) -> CallRequest {
        CallRequest {
            kind: CallKind::Tool,
            name: name.into(),
            request: arguments,
            ask: None,
        }
    }
}

/// Why a call failed, as the log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallError {
    /// Error type (`ProviderError`, `RateLimited`, `Timeout`, a host exception class, ...).
    #[serde(rename = "type")]
    pub error_type: String,
    /// Message (never a secret).
    pub message: String,
    /// Whether trying again may help.
    pub retryable: bool,
    /// HTTP status, when a service answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl CallError {
    /// A retryable error of `error_type`.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> CallError {
        CallError {
            error_type: error_type.into(),
            message: message.into(),
            retryable: true,
            status: None,
        }
    }

    /// Mark as not retryable.
    pub fn permanent(mut self) -> CallError {
        self.retryable = false;
        self
    }
}

/// An attempt that failed before a call's final result (a retry or a fallback provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attempt {
    /// The provider that was tried.
    pub provider: String,
    /// How it failed.
    pub error: CallError,
}

/// What a call returned: its response, or its error; usage either way.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    /// The canonical response (text, tool calls, finish reason; a tool's result), or the error.
    pub result: Result<Arc<Value>, CallError>,
    /// Tokens spent (a failed call may have spent some).
    pub usage: Option<Usage>,
    /// Failed attempts before this result (retries, fallbacks), in order.
    pub attempts: Vec<Attempt>,
    /// Answered from the response cache: no call was made, nothing was spent.
    pub cached: bool,
    /// How long the call took, for `meta.durUs` (not canonical).
    pub duration_us: Option<u64>,
    /// What the provider said about its answer beyond the canonical response (`meta.call`,
    /// not canonical).
    pub meta: Option<Arc<CallMeta>>,
}

/// A call result's non-canonical facts, recorded in the record's `meta.call`: the provider's
/// own ids and timestamps and the time to the first streamed chunk. They differ between two
/// runs of the same call, so they stay out of the canonical log (and its fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallMeta {
    /// The provider that answered (after a fallback, not the first one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider's response id (`chatcmpl-...`, `msg_...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// The provider's creation time of the response (OpenAI's `created`, Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// OpenAI's `system_fingerprint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    /// The provider's id of each tool call, in the canonical response's order (the canonical
    /// ids are derived from the call's seq and number).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_call_ids: Vec<String>,
    /// Microseconds from sending the request to the first streamed chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_us: Option<u64>,
    /// Microseconds the call waited for rate limits (a provider's requests or tokens per
    /// minute, a tool's calls per period) before it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_wait_us: Option<u64>,
}

impl CallMeta {
    /// Nothing to record.
    pub fn is_empty(&self) -> bool {
        *self == CallMeta::default()
    }
}

impl CallOutcome {
    /// A response.
    pub fn ok(response: Value) -> CallOutcome {
        CallOutcome {
            result: Ok(Arc::new(response)),
            usage: None,
            attempts: Vec::new(),
            cached: false,
            duration_us: None,
            meta: None,
        }
    }

    /// An error.
    pub fn err(error: CallError) -> CallOutcome {
        CallOutcome {
            result: Err(error),
            usage: None,
            attempts: Vec::new(),
            cached: false,
            duration_us: None,
            meta: None,
        }
    }

    /// With the tokens spent.
    pub fn with_usage(mut self, usage: Usage) -> CallOutcome {
        self.usage = Some(usage);
        self
    }

    /// With the measured duration.
    pub fn with_duration_us(mut self, us: u64) -> CallOutcome {
        self.duration_us = Some(us);
        self
    }

    /// With the provider's facts about its answer (`meta.call`; an empty one is dropped).
    pub fn with_meta(mut self, meta: CallMeta) -> CallOutcome {
        self.meta = (!meta.is_empty()).then(|| Arc::new(meta));
        self
    }
}

/// What [`crate::Run::call_start`] hands back: the call's number, and whether the host must
/// make the call (`Live`) or the log already holds its result (`Recorded`, after a resume or
/// in re-execute replay — nothing is sent, nothing is written).
#[derive(Debug, Clone, PartialEq)]
pub struct CallTicket {
    /// The activation.
    pub activation: u64,
    /// The call's number in its activation (1-based).
    pub call: u32,
    /// The seq its records sit under (the activation's completion seq).
    pub seq: u64,
    /// Make the call, or take the recorded result.
    pub state: TicketState,
    /// `blake3(runId, seq, call)`: the same for a call re-issued after a crash, so providers
    /// that honour an idempotency key can drop the duplicate.
    pub idempotency_key: String,
    /// The `maxTokens` a budget allows this call: send it instead of the request's.
    pub max_tokens: Option<u64>,
    /// The request as the run's policy redacted it, when it did: send this one, never the
    /// original.
    pub request: Option<Arc<Value>>,
    /// The run's policy judges the response: hand it to the agent only as
    /// [`crate::Run::call_complete`] returns it, and stream nothing before (a streamed
    /// response reaches the agent as one chunk of the recorded response).
    pub hold_response: bool,
}

/// Whether a call must be made.
#[derive(Debug, Clone, PartialEq)]
pub enum TicketState {
    /// Make the call, then report it with [`crate::Run::call_complete`].
    Live,
    /// The log holds the result: use it; do not call and do not report.
    Recorded(CallOutcome),
    /// A budget refused it (`callDenied` is recorded): nothing may be sent.
    Denied(crate::model::budget::BudgetRefusal),
    /// The run's policy refused it (`callDenied` is recorded with the verdict): nothing may be
    /// sent, the tool must not run.
    PolicyDenied(crate::model::verdict::Verdict),
}

impl CallTicket {
    /// Whether the host must make the call.
    pub fn is_live(&self) -> bool {
        matches!(self.state, TicketState::Live)
    }

    /// The id the `i`-th tool call of an LLM response gets (`call_<seq>_<call>_<i>`): the
    /// provider's own ids are random, these keep logs byte-identical.
    pub fn tool_call_id(&self, i: usize) -> String {
        format!("call_{}_{}_{i}", self.seq, self.call)
    }
}

/// `blake3(runId, seq, call)` in hex: the idempotency key of a call.
pub fn idempotency_key(run_id: &str, seq: u64, call: u32) -> String {
    let mut h = blake3::Hasher::new();
    h.update(run_id.as_bytes());
    h.update(&[0]);
    h.update(&seq.to_le_bytes());
    h.update(&call.to_le_bytes());
    h.finalize().to_hex()[..32].to_owned()
}

/// Body of `callStarted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallStarted {
    /// The call's number in its activation.
    pub call: u32,
    /// LLM or tool.
    pub kind: CallKind,
    /// Provider or tool name.
    pub name: Arc<str>,
    /// The canonical request.
    pub request: Arc<Value>,
    /// What a budget reserved for it (its worst case), when the run accounts for spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<Amounts>,
    /// The `maxTokens` the budget allowed, sent instead of the request's (it was clamped,
    /// or the request had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// What the run's policy decided about the request (it is recorded and sent redacted) (docs/policy.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::model::verdict::Verdict>,
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Body of `callCompleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallCompleted {
    /// The call's number.
    pub call: u32,
    /// The canonical response.
    pub response: Arc<Value>,
    /// Tokens spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Answered from the response cache (nothing spent).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cached: bool,
    /// Failed attempts before the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// What the budget charged for it (its usage, priced), when the run accounts for spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<Amounts>,
    /// What the run's policy decided about the response (it is recorded and handed on redacted) (docs/policy.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::model::verdict::Verdict>,
}

/// Body of `callFailed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallFailed {
    /// The call's number.
    pub call: u32,
    /// Why it failed.
    pub error: CallError,
    /// Tokens spent before it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Failed attempts before the last one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// What the budget charged for it (its reported usage priced, or its whole reservation
    /// when it reported none), when the run accounts for spend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<Amounts>,
    /// What the run's policy decided about the response or error (a blocked response is this failure) (docs/policy.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::model::verdict::Verdict>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_depend_on_run_seq_and_call() {
        let k = idempotency_key("r", 7, 1);
        assert_eq!(k.len(), 32);
        assert_eq!(k, idempotency_key("r", 7, 1));
        assert_ne!(k, idempotency_key("r", 7, 2));
        assert_ne!(k, idempotency_key("r", 8, 1));
        assert_ne!(k, idempotency_key("s", 7, 1));
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(CallKind::parse("llm").unwrap(), CallKind::Llm);
        assert_eq!(CallKind::parse("tool").unwrap().as_str(), "tool");
        assert_eq!(
            CallKind::parse("LLM").unwrap_err().code(),
            "INVALID_ARGUMENT"
        );
    }
}
