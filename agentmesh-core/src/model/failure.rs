//! What a host reports besides outputs: token usage and failures; and the error a failed run
//! records.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Token usage an activation reports, on success or failure (a failed paid call still spent
/// its tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Read usage as a host gives it: an object with optional non-negative integer
    /// `inputTokens` and `outputTokens` (each 0 when absent) and nothing else. A list, a
    /// float or an unknown key is refused, never guessed at.
    ///
    /// Errors: a message naming what is wrong (hosts report it as `INVALID_OUTPUT`).
    pub fn from_value(value: &Value) -> Result<Usage, String> {
        Usage::deserialize(value).map_err(|e| {
            format!("usage must be {{\"inputTokens\": int, \"outputTokens\": int}}: {e}")
        })
    }
}

// By hand: serde's derive would also accept a sequence (`[1, 2]` as both counts).
impl<'de> Deserialize<'de> for Usage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Usage, D::Error> {
        struct UsageVisitor;
        impl<'de> Visitor<'de> for UsageVisitor {
            type Value = Usage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with inputTokens and outputTokens")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Usage, A::Error> {
                let mut usage = Usage::default();
                let (mut input, mut output) = (false, false);
                while let Some(key) = map.next_key::<String>()? {
                    let (seen, slot) = match key.as_str() {
                        "inputTokens" => (&mut input, &mut usage.input_tokens),
                        "outputTokens" => (&mut output, &mut usage.output_tokens),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["inputTokens", "outputTokens"],
                            ))
                        }
                    };
                    if std::mem::replace(seen, true) {
                        return Err(de::Error::custom(format!("duplicate field `{key}`")));
                    }
                    *slot = map.next_value()?;
                }
                Ok(usage)
            }
        }
        deserializer.deserialize_map(UsageVisitor)
    }
}

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_is_an_object_of_counts() {
        let u = Usage::from_value(&json!({"inputTokens": 3})).unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (3, 0));
        assert_eq!(
            Usage::from_value(&json!({})).unwrap(),
            Usage::default(),
            "both counts default to 0"
        );
        for bad in [
            json!([1, 2]),
            json!(5),
            json!(null),
            json!({"inputTokens": -1}),
            json!({"inputTokens": 1.5}),
            json!({"inputTokens": 1, "cost": 2}),
        ] {
            assert!(Usage::from_value(&bad).is_err(), "{bad} accepted");
        }
        let dup = serde_json::from_str::<Usage>(r#"{"inputTokens":1,"inputTokens":2}"#);
        assert!(dup.is_err(), "duplicate key accepted");
    }

    #[test]
    fn failure_kind_parses_wire_names() {
        assert_eq!(FailureKind::parse("timeout").unwrap(), FailureKind::Timeout);
        let e = FailureKind::parse("oops").unwrap_err();
        assert_eq!(e.code(), "INVALID_ARGUMENT");
    }
}
