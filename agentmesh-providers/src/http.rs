//! One HTTP exchange with a provider, and the reading of every way it can fail into a typed
//! [`CallError`]: transport errors, timeouts, and error responses in both the OpenAI shape
//! `{"error": {"message", "type", "code"}}` and the Anthropic shape
//! `{"type": "error", "error": {"type", "message"}}`.

use std::io;
use std::time::{Duration, Instant, SystemTime};

use agentmesh_core::ErrorKind;
use serde_json::Value;
use ureq::http::Response;
use ureq::{Agent, Body};

use crate::error::CallError;
use crate::retry::{parse_retry_after, retryable_status};

/// Largest error body read (error bodies are short; the rest is dropped).
const MAX_ERROR_BODY: u64 = 64 << 10;
/// Largest whole (non-streamed) answer read.
pub(crate) const MAX_BODY: u64 = 64 << 20;

/// Who is calling, for error messages; `secret` is scrubbed from every message.
pub(crate) struct Ctx<'a> {
    pub provider: &'a str,
    pub secret: Option<&'a str>,
    pub total_timeout: Duration,
}

impl Ctx<'_> {
    /// `message` with the API key replaced, should a server or a library ever echo it.
    pub fn scrub(&self, message: String) -> String {
        match self.secret {
            Some(s) if s.len() >= 8 && message.contains(s) => message.replace(s, "[REDACTED]"),
            _ => message,
        }
    }

    pub fn error(
        &self,
        kind: ErrorKind,
        error_type: &str,
        message: String,
        status: Option<u16>,
        retryable: bool,
    ) -> CallError {
        CallError {
            kind,
            error_type: error_type.to_owned(),
            message: self.scrub(format!("`{}`: {message}", self.provider)),
            status,
            retryable,
        }
    }
}

/// A failed exchange: the error, and the server's `Retry-After` when it sent one.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: CallError,
    pub retry_after: Option<Duration>,
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Failure {
        Failure {
            error,
            retry_after: None,
        }
    }
}

/// POST `body` to `url`. A 2xx response is returned for its body to be read; anything else
/// is a [`Failure`]. `per_read` bounds every read (streams); `deadline` the whole exchange.
pub(crate) fn post(
    agent: &Agent,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    deadline: Instant,
    per_read: Option<Duration>,
    ctx: &Ctx<'_>,
) -> Result<Response<Body>, Failure> {
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| total_timeout(ctx))?;
    let mut req = agent.post(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .config()
        .timeout_global(Some(left))
        .timeout_per_read(per_read)
        .build();
    let resp = req
        .send(body)
        .map_err(|e| Failure::from(transport(e, ctx)))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let text = resp
        .into_body()
        .with_config()
        .limit(MAX_ERROR_BODY)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    Err(Failure {
        error: status_error(status, &text, ctx),
        retry_after,
    })
}

/// The error for an HTTP error response.
pub(crate) fn status_error(status: u16, body: &str, ctx: &Ctx<'_>) -> CallError {
    let error_type = match status {
        400 | 404 | 413 | 422 => "BadRequest",
        401 => "AuthenticationError",
        403 => "PermissionDenied",
        409 => "Conflict",
        429 => "RateLimited",
        529 => "Overloaded",
        _ => "ProviderError",
    };
    let message = match provider_message(body) {
        Some(m) => m,
        None if body.trim().is_empty() => "no error message".to_owned(),
        None => cut(body.trim(), 300),
    };
    ctx.error(
        ErrorKind::ProviderError,
        error_type,
        message,
        Some(status),
        retryable_status(status),
    )
}

/// The message of an error body in the OpenAI or the Anthropic shape, with its type/code.
pub(crate) fn provider_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    error_object_message(v.get("error")?)
}

/// `"message (type, code)"` of an `error` object in either shape (Anthropic's also arrives as
/// an `error` event in a stream).
pub(crate) fn error_object_message(e: &Value) -> Option<String> {
    let message = e.get("message").and_then(Value::as_str);
    let tags: Vec<String> = ["type", "code"]
        .iter()
        .filter_map(|k| match e.get(*k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    let message = match (message, e.as_str()) {
        (Some(m), _) => m.to_owned(),
        (None, Some(s)) => s.to_owned(), // `{"error": "text"}`, as some servers send
        (None, None) if tags.is_empty() => return None,
        (None, None) => "no error message".to_owned(),
    };
    let message = cut(&message, 500);
    Some(if tags.is_empty() {
        message
    } else {
        format!("{message} ({})", tags.join(", "))
    })
}

fn cut(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

fn total_timeout(ctx: &Ctx<'_>) -> CallError {
    ctx.error(
        ErrorKind::Timeout,
        "Timeout",
        format!(
            "no answer within the total timeout of {:?}",
            ctx.total_timeout
        ),
        None,
        false,
    )
}

/// The error for a failed transport (connect, send, receive, read a body).
pub(crate) fn transport(e: ureq::Error, ctx: &Ctx<'_>) -> CallError {
    use ureq::Error as E;
    let conn = |msg: String, retryable| {
        ctx.error(
            ErrorKind::ProviderError,
            "ConnectionError",
            msg,
            None,
            retryable,
        )
    };
    match e {
        E::Timeout(ureq::Timeout::Global) => total_timeout(ctx),
        E::Timeout(t) => ctx.error(
            ErrorKind::Timeout,
            "Timeout",
            format!("timed out ({t})"),
            None,
            true,
        ),
        E::Io(io) => io_error(io, ctx),
        E::HostNotFound => conn("host not found".into(), false),
        E::ConnectionFailed => conn("connection failed".into(), true),
        E::BadUri(u) => ctx.error(
            ErrorKind::InvalidArgument,
            "InvalidConfig",
            format!("bad URL: {u}"),
            None,
            false,
        ),
        E::Protocol(p) => conn(format!("HTTP protocol error: {p}"), true),
        E::BodyExceedsLimit(n) => ctx.error(
            ErrorKind::ProviderError,
            "InvalidResponse",
            format!("answer larger than {n} bytes"),
            None,
            false,
        ),
        other => conn(other.to_string(), false),
    }
}

/// The error for an I/O error, from a socket or from reading a body (ureq wraps its own
/// errors, timeouts included, in `io::Error` there).
pub(crate) fn io_error(e: io::Error, ctx: &Ctx<'_>) -> CallError {
    if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
        return transport(ureq::Error::from(e), ctx);
    }
    use io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => ctx.error(
            ErrorKind::Timeout,
            "Timeout",
            format!("timed out: {e}"),
            None,
            true,
        ),
        K::InvalidData => ctx.error(
            ErrorKind::ProviderError,
            "InvalidResponse",
            e.to_string(),
            None,
            false,
        ),
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::Interrupted => ctx.error(
            ErrorKind::ProviderError,
            "ConnectionError",
            e.to_string(),
            None,
            true,
        ),
        _ => ctx.error(
            ErrorKind::ProviderError,
            "ConnectionError",
            e.to_string(),
            None,
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx {
            provider: "p",
            secret: Some("sk-test-0123456789"),
            total_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn both_error_shapes() {
        let openai = r#"{"error":{"message":"bad model","type":"invalid_request_error","code":"model_not_found"}}"#;
        assert_eq!(
            provider_message(openai).unwrap(),
            "bad model (invalid_request_error, model_not_found)"
        );
        let anthropic =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            provider_message(anthropic).unwrap(),
            "Overloaded (overloaded_error)"
        );
        let llama = r#"{"error":{"code":400,"message":"x","type":"invalid_request_error"}}"#;
        assert_eq!(
            provider_message(llama).unwrap(),
            "x (invalid_request_error, 400)"
        );
        assert_eq!(provider_message(r#"{"error":"nope"}"#).unwrap(), "nope");
        assert_eq!(provider_message("<html>"), None);
    }

    #[test]
    fn statuses_are_typed_and_secrets_scrubbed() {
        let e = status_error(429, r#"{"error":{"message":"slow down"}}"#, &ctx());
        assert_eq!((e.error_type.as_str(), e.retryable), ("RateLimited", true));
        assert_eq!(e.to_string(), "[PROVIDER_ERROR] HTTP 429: `p`: slow down");
        let e = status_error(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-test-0123456789"}}"#,
            &ctx(),
        );
        assert_eq!(e.error_type, "AuthenticationError");
        assert!(!e.retryable);
        assert!(e.message.contains("[REDACTED]") && !e.message.contains("0123456789"));
        let e = status_error(502, "<html>bad gateway</html>", &ctx());
        assert!(e.retryable && e.message.contains("bad gateway"));
        assert_eq!(status_error(400, "", &ctx()).error_type, "BadRequest");
    }

    #[test]
    fn io_errors() {
        let refused = io_error(io::Error::from(io::ErrorKind::ConnectionRefused), &ctx());
        assert_eq!(
            (refused.error_type.as_str(), refused.retryable),
            ("ConnectionError", true)
        );
        let t = io_error(io::Error::from(io::ErrorKind::TimedOut), &ctx());
        assert_eq!(t.kind, ErrorKind::Timeout);
        let wrapped = io::Error::other(ureq::Error::Timeout(ureq::Timeout::Global));
        let g = io_error(wrapped, &ctx());
        assert_eq!((g.kind, g.retryable), (ErrorKind::Timeout, false));
    }
}
