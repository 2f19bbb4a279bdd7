//! What a host reports besides outputs: failures (and token usage, in [`super::usage`]); and
//! the error a failed run records.

use serde::{Deserialize, Serialize};

pub use super::usage::Usage;

/// Why an activation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// The agent returned or raised an error.
    Error,
    /// The driver's deadline (`timeoutMs`) passed first.
    Timeout,
}

impl FailureKind {
    /// Parse `error` or `timeout`.
    ///
    /// Errors: `INVALID_ARGUMENT`.
    pub fn parse(text: &str) -> crate::Result<FailureKind> {
        match text {
            "error" => Ok(FailureKind::Error),
            "timeout" => Ok(FailureKind::Timeout),
            other => Err(crate::Error::invalid_argument(format!(
                "failure kind must be error or timeout, not '{other}'"
            ))),
        }
    }
}

/// A failed activation: what the host reports and what the log records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failure {
    /// Error or timeout.
    pub kind: FailureKind,
    /// Error type name (a Python exception class, a JS error name, a Rust type).
    #[serde(rename = "type")]
    pub error_type: String,
    /// Message.
    pub message: String,
    /// Whether the node's retry policy may retry it.
    pub retryable: bool,
}

impl Failure {
    /// A retryable error of `error_type`.
    pub fn error(error_type: impl Into<String>, message: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Error,
            error_type: error_type.into(),
            message: message.into(),
            retryable: true,
        }
    }

    /// Mark as not retryable.
    pub fn permanent(mut self) -> Failure {
        self.retryable = false;
        self
    }

    /// The failure recorded when an activation's `timeoutMs` passed (retryable). The core
    /// writes it for every host: see [`crate::Completion::timed_out`].
    pub fn timeout(timeout_ms: u64) -> Failure {
        Failure {
            kind: FailureKind::Timeout,
            error_type: "Timeout".to_owned(),
            message: format!("no result within {timeout_ms} ms"),
            retryable: true,
        }
    }
}

/// The error a failed run records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunError {
    /// Stable error code (`AGENT_FAILED`, `TIMEOUT`, `LIMIT_EXCEEDED`, ...).
    pub code: String,
    /// Message.
    pub message: String,
    /// The node that failed the run, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The refusal that failed the run (`BUDGET_EXCEEDED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::model::budget::BudgetRefusal>,
    /// The policy verdict that failed the run (`POLICY_DENIED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::model::verdict::Verdict>,
    /// The map item that failed the run (its index), when a map item did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kind_parses_wire_names() {
        assert_eq!(FailureKind::parse("timeout").unwrap(), FailureKind::Timeout);
        let e = FailureKind::parse("oops").unwrap_err();
        assert_eq!(e.code(), "INVALID_ARGUMENT");
    }
}
