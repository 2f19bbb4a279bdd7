//! How to reach one LLM provider: its API, address, key variable, limits and timeouts.

use std::fmt;
use std::time::Duration;

use agentmesh_core::ErrorKind;
use serde::Deserialize;
use serde_json::Value;

use crate::error::CallError;

/// The wire API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI Chat Completions (`POST {base_url}/chat/completions`): OpenAI and the many
    /// compatible servers (llama-server, vLLM, ...).
    OpenAi,
    /// Anthropic Messages (`POST {base_url}/messages`).
    Anthropic,
}

/// One provider's configuration. Build it with [`ProviderConfig::openai`] or
/// [`ProviderConfig::anthropic`] and adjust the public fields, or read it from JSON with
/// [`ProviderConfig::from_value`].
#[derive(Clone, PartialEq)]
pub struct ProviderConfig {
    /// A name for errors, attempts and [`crate::ProviderMeta`] (e.g. `"openai"`).
    pub name: String,
    /// The wire API.
    pub kind: ProviderKind,
    /// The API root, `/v1` included: `https://api.openai.com/v1`, `https://api.anthropic.com/v1`,
    /// `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The environment variable holding the API key, read at every call; `None` sends no key
    /// (local servers).
    pub api_key_env: Option<String>,
    /// When set, sent instead of the request's `model` (a fallback provider that serves
    /// other models). The usage records the model that answered either way.
    pub model: Option<String>,
    /// Most time to open a connection (per attempt).
    pub connect_timeout: Duration,
    /// Most time for the whole call: every attempt, every backoff, every stream chunk.
    pub total_timeout: Duration,
    /// Most time between two reads of a streamed answer (also the wait for its first byte).
    pub chunk_timeout: Duration,
    /// Retries after the first attempt (on 408, 409, 429, 5xx, connection errors, timeouts).
    pub max_retries: u32,
    /// First backoff; it doubles on each retry, with jitter.
    pub backoff_base: Duration,
    /// Longest backoff (a `Retry-After` from the server may be longer: it is honoured while
    /// the total timeout allows).
    pub backoff_max: Duration,
    /// Most calls in flight through this provider at once; `None` for no limit.
    pub max_concurrency: Option<usize>,
    /// Extra request headers (e.g. `anthropic-beta`, `OpenAI-Organization`).
    pub headers: Vec<(String, String)>,
    /// Requests and tokens per minute, per model (calls wait; the wait is in `meta` only).
    pub rate_limits: crate::rate::RateLimits,
    /// Share the rate limits with every provider of this group in the process (one API key
    /// or organisation used by several meshes); `None`: this provider's own.
    pub rate_limit_group: Option<String>,
}

impl ProviderConfig {
    /// An OpenAI-compatible provider with the default limits (connect 10 s, total 300 s,
    /// chunk 60 s, 2 retries, backoff 500 ms doubling to 20 s, no concurrency limit).
    pub fn openai(name: &str, base_url: &str) -> ProviderConfig {
        ProviderConfig::new(name, ProviderKind::OpenAi, base_url)
    }

    /// An Anthropic provider with the same defaults as [`ProviderConfig::openai`].
    pub fn anthropic(name: &str, base_url: &str) -> ProviderConfig {
        ProviderConfig::new(name, ProviderKind::Anthropic, base_url)
    }

    fn new(name: &str, kind: ProviderKind, base_url: &str) -> ProviderConfig {
        ProviderConfig {
            name: name.to_owned(),
            kind,
            base_url: base_url.to_owned(),
            api_key_env: None,
            model: None,
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(300),
            chunk_timeout: Duration::from_secs(60),
            max_retries: 2,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(20),
            max_concurrency: None,
            headers: Vec::new(),
            rate_limits: crate::rate::RateLimits::default(),
            rate_limit_group: None,
        }
    }

    /// Read a configuration from JSON (camelCase; durations in milliseconds):
    /// `{"name", "kind": "openai"|"anthropic", "baseUrl", "apiKeyEnv"?, "model"?,
    /// "connectTimeoutMs"?, "totalTimeoutMs"?, "chunkTimeoutMs"?, "maxRetries"?,
    /// "backoffBaseMs"?, "backoffMaxMs"?, "maxConcurrency"?, "requestsPerMinute"?,
    /// "tokensPerMinute"?, "rateLimitGroup"?, "headers"?: {name: value}}`.
    /// Absent fields take the defaults of [`ProviderConfig::openai`].
    ///
    /// Errors: `INVALID_ARGUMENT` naming the field.
    pub fn from_value(value: &Value) -> Result<ProviderConfig, CallError> {
        let w: Wire = serde_path_to_error::deserialize(value)
            .map_err(|e| invalid(format!("provider config {}: {}", e.path(), e.inner())))?;
        let mut c = ProviderConfig::new(&w.name, w.kind, &w.base_url);
        c.api_key_env = w.api_key_env;
        c.model = w.model;
        let ms = Duration::from_millis;
        c.connect_timeout = w.connect_timeout_ms.map_or(c.connect_timeout, ms);
        c.total_timeout = w.total_timeout_ms.map_or(c.total_timeout, ms);
        c.chunk_timeout = w.chunk_timeout_ms.map_or(c.chunk_timeout, ms);
        c.max_retries = w.max_retries.unwrap_or(c.max_retries);
        c.backoff_base = w.backoff_base_ms.map_or(c.backoff_base, ms);
        c.backoff_max = w.backoff_max_ms.map_or(c.backoff_max, ms);
        c.max_concurrency = w.max_concurrency;
        c.rate_limits = crate::rate::RateLimits {
            requests_per_minute: w.requests_per_minute,
            tokens_per_minute: w.tokens_per_minute,
        };
        c.rate_limit_group = w.rate_limit_group;
        c.headers = w.headers.into_iter().collect();
        c.check()?;
        Ok(c)
    }

    /// Errors: `INVALID_ARGUMENT` for an empty name, a base URL that is not http(s), a zero
    /// timeout or concurrency, or an empty key variable name.
    pub(crate) fn check(&self) -> Result<(), CallError> {
        let fail = |what: &str| Err(invalid(format!("provider `{}`: {what}", self.name)));
        if self.name.is_empty() {
            return Err(invalid("provider config: name must not be empty".into()));
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return fail("baseUrl must start with http:// or https://");
        }
        if [self.connect_timeout, self.total_timeout, self.chunk_timeout].contains(&Duration::ZERO)
        {
            return fail("timeouts must be longer than zero");
        }
        if self.max_concurrency == Some(0) {
            return fail("maxConcurrency must be at least 1");
        }
        if self.rate_limits.requests_per_minute == Some(0) {
            return fail("requestsPerMinute must be at least 1");
        }
        if self.rate_limits.tokens_per_minute == Some(0) {
            return fail("tokensPerMinute must be at least 1");
        }
        if self.rate_limit_group.as_deref() == Some("") {
            return fail("rateLimitGroup must not be empty");
        }
        if self.api_key_env.as_deref() == Some("") {
            return fail("apiKeyEnv must name a variable");
        }
        if matches!(&self.model, Some(m) if m.is_empty()) {
            return fail("model must not be empty");
        }
        Ok(())
    }
}

fn invalid(message: String) -> CallError {
    CallError {
        kind: ErrorKind::InvalidArgument,
        error_type: "InvalidConfig".into(),
        message,
        status: None,
        retryable: false,
    }
}

// By hand: header values may be credentials, so only their names are shown.
impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("api_key_env", &self.api_key_env)
            .field("model", &self.model)
            .field("connect_timeout", &self.connect_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("chunk_timeout", &self.chunk_timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("max_concurrency", &self.max_concurrency)
            .field("rate_limits", &self.rate_limits)
            .field("rate_limit_group", &self.rate_limit_group)
            .field("headers", &header_names)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wire {
    name: String,
    kind: ProviderKind,
    base_url: String,
    api_key_env: Option<String>,
    model: Option<String>,
    connect_timeout_ms: Option<u64>,
    total_timeout_ms: Option<u64>,
    chunk_timeout_ms: Option<u64>,
    max_retries: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    max_concurrency: Option<usize>,
    requests_per_minute: Option<u32>,
    tokens_per_minute: Option<u64>,
    rate_limit_group: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_value_defaults_and_errors() {
        let c = ProviderConfig::from_value(&json!({"name": "a", "kind": "anthropic",
            "baseUrl": "https://api.anthropic.com/v1", "apiKeyEnv": "ANTHROPIC_API_KEY",
            "totalTimeoutMs": 5000, "headers": {"anthropic-beta": "secret-ish"}}))
        .unwrap();
        assert_eq!(c.kind, ProviderKind::Anthropic);
        assert_eq!(c.total_timeout, Duration::from_secs(5));
        assert_eq!(c.max_retries, 2);
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("anthropic-beta") && !dbg.contains("secret-ish"),
            "{dbg}"
        );
        for (bad, needle) in [
            (
                json!({"name": "a", "kind": "gemini", "baseUrl": "http://x"}),
                "kind",
            ),
            (
                json!({"name": "a", "kind": "openai", "baseUrl": "ftp://x"}),
                "baseUrl",
            ),
            (
                json!({"name": "a", "kind": "openai", "baseUrl": "http://x", "retries": 1}),
                "retries",
            ),
            (
                json!({"name": "a", "kind": "openai", "baseUrl": "http://x", "maxConcurrency": 0}),
                "maxConcurrency",
            ),
            (
                json!({"name": "a", "kind": "openai", "baseUrl": "http://x", "totalTimeoutMs": 0}),
                "timeouts",
            ),
            (
                json!({"name": "", "kind": "openai", "baseUrl": "http://x"}),
                "name",
            ),
        ] {
            let e = ProviderConfig::from_value(&bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument);
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
        }
    }
}
