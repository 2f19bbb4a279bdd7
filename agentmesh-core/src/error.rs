//! One error type for the whole library, with a stable code per kind.
//!
//! The SCREAMING_SNAKE code returned by [`ErrorKind::code`] is the contract shared with the
//! Python and Node bindings: the same string appears as `exc.code` and `err.code` there.
//! Codes are never renamed or reused.

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of an [`Error`]; each kind has a stable string code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The workflow definition is invalid (`INVALID_WORKFLOW`).
    InvalidWorkflow,
    /// An argument (run id, input, option, seq) is invalid (`INVALID_ARGUMENT`).
    InvalidArgument,
    /// An activation result is not valid JSON data or is too large (`INVALID_OUTPUT`).
    InvalidOutput,
    /// A completion names an unknown, finished or already completed activation
    /// (`INVALID_COMPLETION`). The run is unchanged.
    InvalidCompletion,
    /// A re-driven run disagrees with its log (`NONDETERMINISM`).
    Nondeterminism,
    /// The log file is damaged before its tail, or is not an AgentMesh log (`LOG_CORRUPT`).
    LogCorrupt,
    /// The log holds fewer records than an anchor taken earlier (`LOG_TRUNCATED`).
    LogTruncated,
    /// The log's records do not hash to an anchor taken earlier, or belong to another run
    /// (`LOG_HEAD_MISMATCH`).
    LogHeadMismatch,
    /// A log for this run id already exists (`RUN_EXISTS`).
    RunExists,
    /// An agent, tool or human activation failed and the run failed with it (`AGENT_FAILED`).
    AgentFailed,
    /// An activation timed out and the run failed with it (`TIMEOUT`).
    Timeout,
    /// `maxSteps` or a node's `maxVisits` was exceeded (`LIMIT_EXCEEDED`).
    LimitExceeded,
    /// The run was cancelled (`CANCELLED`).
    Cancelled,
    /// No agent or tool is registered under a name the workflow uses (`UNKNOWN_AGENT`).
    UnknownAgent,
    /// A built-in call's service (an LLM provider, an MCP server) failed or refused the call
    /// (`PROVIDER_ERROR`); the error carries the HTTP status and whether a retry may help.
    ProviderError,
    /// A rule refused a call or an output before it happened (`POLICY_DENIED`): an agent not
    /// allowed to call a tool.
    PolicyDenied,
    /// A policy file or value is invalid (`POLICY_INVALID`): the error names the rule, the
    /// field and, for a file, the line and column. Nothing of it applies.
    PolicyInvalid,
    /// A budget refused a call before anything was sent, or the run failed on that refusal
    /// (`BUDGET_EXCEEDED`); the error carries the scope, dimension, limit, spent and
    /// requested amounts.
    BudgetExceeded,
    /// An operating-system I/O error, including a failed fsync that poisoned a writer (`IO`).
    Io,
    /// A bug inside AgentMesh, such as a caught panic (`INTERNAL`).
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order (used by the bindings to check their code lists).
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::InvalidWorkflow,
        ErrorKind::InvalidArgument,
        ErrorKind::InvalidOutput,
        ErrorKind::InvalidCompletion,
        ErrorKind::Nondeterminism,
        ErrorKind::LogCorrupt,
        ErrorKind::LogTruncated,
        ErrorKind::LogHeadMismatch,
        ErrorKind::RunExists,
        ErrorKind::AgentFailed,
        ErrorKind::Timeout,
        ErrorKind::LimitExceeded,
        ErrorKind::Cancelled,
        ErrorKind::UnknownAgent,
        ErrorKind::ProviderError,
        ErrorKind::PolicyDenied,
        ErrorKind::PolicyInvalid,
        ErrorKind::BudgetExceeded,
        ErrorKind::Io,
        ErrorKind::Internal,
    ];

    /// The stable code, identical in Rust, Python and Node.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidWorkflow => "INVALID_WORKFLOW",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::InvalidOutput => "INVALID_OUTPUT",
            ErrorKind::InvalidCompletion => "INVALID_COMPLETION",
            ErrorKind::Nondeterminism => "NONDETERMINISM",
            ErrorKind::LogCorrupt => "LOG_CORRUPT",
            ErrorKind::LogTruncated => "LOG_TRUNCATED",
            ErrorKind::LogHeadMismatch => "LOG_HEAD_MISMATCH",
            ErrorKind::RunExists => "RUN_EXISTS",
            ErrorKind::AgentFailed => "AGENT_FAILED",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorKind::Cancelled => "CANCELLED",
            ErrorKind::UnknownAgent => "UNKNOWN_AGENT",
            ErrorKind::ProviderError => "PROVIDER_ERROR",
            ErrorKind::PolicyDenied => "POLICY_DENIED",
            ErrorKind::PolicyInvalid => "POLICY_INVALID",
            ErrorKind::BudgetExceeded => "BUDGET_EXCEEDED",
            ErrorKind::Io => "IO",
            ErrorKind::Internal => "INTERNAL",
        }
    }

    /// The class the Python and Node bindings raise for this kind (`BudgetExceededError`):
    /// what an activation's failure records when its agent lets the error through, in every
    /// host.
    pub fn class_name(self) -> &'static str {
        match self {
            ErrorKind::InvalidWorkflow => "InvalidWorkflowError",
            ErrorKind::InvalidArgument => "InvalidArgumentError",
            ErrorKind::InvalidOutput => "InvalidOutputError",
            ErrorKind::InvalidCompletion => "InvalidCompletionError",
            ErrorKind::Nondeterminism => "NondeterminismError",
            ErrorKind::LogCorrupt => "LogCorruptError",
            ErrorKind::LogTruncated => "LogTruncatedError",
            ErrorKind::LogHeadMismatch => "LogHeadMismatchError",
            ErrorKind::RunExists => "RunExistsError",
            ErrorKind::AgentFailed => "AgentFailedError",
            ErrorKind::Timeout => "AgentTimeoutError",
            ErrorKind::LimitExceeded => "LimitExceededError",
            ErrorKind::Cancelled => "RunCancelledError",
            ErrorKind::UnknownAgent => "UnknownAgentError",
            ErrorKind::ProviderError => "ProviderError",
            ErrorKind::PolicyDenied => "PolicyDeniedError",
            ErrorKind::PolicyInvalid => "PolicyInvalidError",
            ErrorKind::BudgetExceeded => "BudgetExceededError",
            ErrorKind::Io => "AgentMeshIOError",
            ErrorKind::Internal => "InternalError",
        }
    }

    /// The kind for a code, if the code is known.
    pub fn from_code(code: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.code() == code)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Structured facts attached to some errors, so callers need not parse messages.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorDetail {
    /// Where an invalid workflow is wrong.
    Workflow {
        /// Node id, when the problem belongs to one node.
        node: Option<String>,
        /// The field, as a dotted path (`retry.maxAttempts`, `cases[1].when`).
        field: String,
    },
    /// The first disagreement between a re-driven run and its log.
    Nondeterminism {
        /// Sequence number of the first divergent event.
        seq: u64,
        /// Node of the divergent event, if any.
        node: Option<String>,
        /// The field that differs (`type`, `node`, `data.agent`, ...).
        field: String,
        /// What the log holds (JSON text; `null` when the log has no event there).
        expected: String,
        /// What the workflow produced (JSON text; `null` when it produced nothing).
        actual: String,
    },
    /// Where a log is damaged.
    LogCorrupt {
        /// Byte offset of the first damaged record.
        offset: u64,
    },
    /// The node whose activation failed the run.
    Node {
        /// Node id.
        node: String,
    },
    /// A failed call's service (`PROVIDER_ERROR`).
    Provider {
        /// The recorded error type (`ProviderError`, `RateLimited`, `Timeout`, ...).
        error_type: String,
        /// HTTP status, when the service answered.
        status: Option<u16>,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// Why a budget refused a call (`BUDGET_EXCEEDED`).
    Budget(crate::model::budget::BudgetRefusal),
    /// Where a policy is invalid (`POLICY_INVALID`).
    Policy {
        /// The rule's id, when the problem is in one (`tools` for the tool allowlist).
        rule: Option<String>,
        /// The field, as a dotted path (`rules[2].regex`).
        field: Option<String>,
        /// Line in the file (from 1), when it was read from text.
        line: Option<usize>,
        /// Column in the file (from 1).
        column: Option<usize>,
    },
    /// The policy verdict that refused a call or an output (`POLICY_DENIED`).
    Verdict(crate::model::verdict::Verdict),
    /// How a log differs from its anchor (`LOG_TRUNCATED`, `LOG_HEAD_MISMATCH`).
    Anchor {
        /// What differs: `records`, `bytes`, `head`, `mac` or `runId`.
        field: String,
        /// What the anchor says.
        expected: String,
        /// What the log (or the key) gives.
        found: String,
    },
}

impl ErrorDetail {
    /// The details as a JSON object (`{"node": …, "field": …}`, `{"seq": …, …}`,
    /// `{"offset": …}`): what the bindings expose as `exc.details` / `err.details`, built once.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            ErrorDetail::Workflow { node, field } => json!({"node": node, "field": field}),
            ErrorDetail::Nondeterminism {
                seq,
                node,
                field,
                expected,
                actual,
            } => json!({
                "seq": seq, "node": node, "field": field, "expected": expected, "actual": actual
            }),
            ErrorDetail::LogCorrupt { offset } => json!({ "offset": offset }),
            ErrorDetail::Node { node } => json!({ "node": node }),
            ErrorDetail::Provider {
                error_type,
                status,
                retryable,
            } => json!({"type": error_type, "status": status, "retryable": retryable}),
            ErrorDetail::Budget(r) => serde_json::to_value(r).expect("a refusal serializes"),
            ErrorDetail::Policy {
                rule,
                field,
                line,
                column,
            } => json!({"rule": rule, "field": field, "line": line, "column": column}),
            ErrorDetail::Verdict(v) => serde_json::to_value(v).expect("a verdict serializes"),
            ErrorDetail::Anchor {
                field,
                expected,
                found,
            } => json!({"field": field, "expected": expected, "found": found}),
        }
    }
}

/// The message of a caught panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// The error type of AgentMesh: a kind with a stable code, a message, and optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    detail: Option<Box<ErrorDetail>>,
}

impl Error {
    /// A new error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// Attach structured details.
    pub fn with_detail(mut self, detail: ErrorDetail) -> Error {
        self.detail = Some(Box::new(detail));
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code (`INVALID_WORKFLOW`, ...).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The message, without the code prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Structured details, when the kind has them.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        self.detail.as_deref()
    }

    pub(crate) fn invalid_workflow(
        node: Option<&str>,
        field: &str,
        message: impl Into<String>,
    ) -> Error {
        let message = message.into();
        let text = match node {
            Some(n) => format!("node '{n}', field '{field}': {message}"),
            None => format!("field '{field}': {message}"),
        };
        Error::new(ErrorKind::InvalidWorkflow, text).with_detail(ErrorDetail::Workflow {
            node: node.map(str::to_owned),
            field: field.to_owned(),
        })
    }

    /// `INVALID_OUTPUT` for a result of node `node` that cannot be recorded: the message is
    /// `node '<node>': <reason>` and the detail names the node. Hosts that convert a result
    /// before completing use it, so every host reports (and records) the same text.
    pub fn invalid_output(node: &str, reason: &str) -> Error {
        Error::new(ErrorKind::InvalidOutput, format!("node '{node}': {reason}")).with_detail(
            ErrorDetail::Node {
                node: node.to_owned(),
            },
        )
    }

    /// `BUDGET_EXCEEDED` for a refused call: the refusal's message and its details.
    pub fn budget_exceeded(refusal: &crate::model::budget::BudgetRefusal) -> Error {
        Error::new(ErrorKind::BudgetExceeded, refusal.message())
            .with_detail(ErrorDetail::Budget(refusal.clone()))
    }

    /// `POLICY_DENIED` for a verdict that blocked a call or an output: its message (never the
    /// content) and the verdict.
    pub fn policy_denied(verdict: &crate::model::verdict::Verdict) -> Error {
        Error::new(ErrorKind::PolicyDenied, verdict.message())
            .with_detail(ErrorDetail::Verdict(verdict.clone()))
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn corrupt(offset: u64, message: impl Into<String>) -> Error {
        let message = message.into();
        Error::new(
            ErrorKind::LogCorrupt,
            format!("at byte {offset}: {message}"),
        )
        .with_detail(ErrorDetail::LogCorrupt { offset })
    }

    pub(crate) fn io(context: impl fmt::Display, err: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, format!("{context}: {err}"))
    }

    pub(crate) fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for Error {}

/// Levenshtein distance over chars (names are short: quadratic is fine).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind.code()), "duplicate code {}", kind.code());
            assert_eq!(ErrorKind::from_code(kind.code()), Some(*kind));
        }
    }

    #[test]
    fn display_prefixes_code() {
        let e = Error::invalid_workflow(Some("a"), "after", "unknown node 'b'");
        assert_eq!(
            e.to_string(),
            "[INVALID_WORKFLOW] node 'a', field 'after': unknown node 'b'"
        );
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("planer", "planner"), 1);
    }
}
