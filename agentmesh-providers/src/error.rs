//! The one error type of built-in calls.

use std::fmt;

/// A built-in call that failed: an LLM provider or an MCP server. Its `kind` says whose
/// fault it was; `retryable` whether trying again may help (429, 5xx, connection errors,
/// timeouts). Messages never contain API keys or request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// `PROVIDER_ERROR` (the service failed or refused), `INVALID_ARGUMENT` (the request is
    /// malformed before anything is sent), `TIMEOUT`.
    pub kind: agentmesh_core::ErrorKind,
    /// The error type recorded in the log (`ProviderError`, `RateLimited`, `Timeout`, ...).
    pub error_type: String,
    /// What went wrong.
    pub message: String,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "[{}] HTTP {s}: {}", self.kind.code(), self.message),
            None => write!(f, "[{}] {}", self.kind.code(), self.message),
        }
    }
}

impl std::error::Error for CallError {}
