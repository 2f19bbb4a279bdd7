//! [`HttpProvider`]: an [`LlmProvider`] over HTTP for either wire API, with the retry loop,
//! the concurrency limit, the API key and the idempotency key.

use std::fmt;
use std::io::BufReader;
use std::time::{Duration, Instant};

use agentmesh_core::ErrorKind;
use serde_json::Value;
use ureq::Agent;

use crate::config::{ProviderConfig, ProviderKind};
use crate::error::CallError;
use crate::http::{self, Ctx, Failure, MAX_BODY};
use crate::llm::{Attempt, CallFailed, CallOptions, Chunk, LlmAnswer, LlmProvider};
use crate::request::LlmRequest;
use crate::response::Draft;
use crate::retry::backoff;
use crate::semaphore::Semaphore;
use crate::sse::SseReader;
use crate::{anthropic, openai};

/// An LLM provider reached over HTTP: OpenAI Chat Completions or Anthropic Messages,
/// configured by a [`ProviderConfig`]. Cheap to share (`Arc`) across threads; its
/// connection pool and concurrency limit are per provider.
pub struct HttpProvider {
    config: ProviderConfig,
    agent: Agent,
    url: String,
    slots: Option<Semaphore>,
    limiter: std::sync::Arc<crate::rate::Limiter>,
}

impl fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpProvider {
    /// A provider for `config`.
    ///
    /// Errors: `INVALID_ARGUMENT` for a bad configuration (see [`ProviderConfig::from_value`]).
    pub fn new(config: ProviderConfig) -> Result<HttpProvider, CallError> {
        config.check()?;
        let path = match config.kind {
            ProviderKind::OpenAi => openai::PATH,
            ProviderKind::Anthropic => anthropic::PATH,
        };
        let url = format!("{}/{path}", config.base_url.trim_end_matches('/'));
        let agent: Agent = Agent::config_builder()
            // Error bodies carry the provider's message: read them, do not turn them into
            // ureq errors.
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            // A POST is never silently re-sent elsewhere.
            .max_redirects(0)
            .user_agent(concat!("agentmesh/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let slots = config.max_concurrency.map(Semaphore::new);
        let limiter =
            crate::rate::Limiter::new(config.rate_limits, config.rate_limit_group.as_deref());
        Ok(HttpProvider {
            config,
            agent,
            url,
            slots,
            limiter,
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The API key from the configured variable, read now (keys can be rotated while the
    /// process runs).
    fn api_key(&self) -> Result<Option<String>, CallError> {
        let Some(var) = &self.config.api_key_env else {
            return Ok(None);
        };
        let bad = |what: &str| CallError {
            kind: ErrorKind::InvalidArgument,
            error_type: "MissingApiKey".into(),
            message: format!(
                "`{}`: environment variable {var} {what} (it should hold the API key)",
                self.config.name
            ),
            status: None,
            retryable: false,
        };
        match std::env::var(var) {
            Ok(k) if k.trim().is_empty() => Err(bad("is empty")),
            // Never echoed: a control character would make an invalid header anyway.
            Ok(k) if k.chars().any(|c| c.is_control() || c == ' ') => {
                Err(bad("holds spaces or control characters"))
            }
            Ok(k) => Ok(Some(k)),
            Err(std::env::VarError::NotPresent) => Err(bad("is not set")),
            Err(std::env::VarError::NotUnicode(_)) => Err(bad("is not valid Unicode")),
        }
    }

    fn headers(
        &self,
        key: Option<&str>,
        opts: &CallOptions<'_>,
        stream: bool,
    ) -> Vec<(String, String)> {
        let mut h = vec![("content-type".to_owned(), "application/json".to_owned())];
        if stream {
            h.push(("accept".into(), "text/event-stream".into()));
        }
        match self.config.kind {
            ProviderKind::OpenAi => {
                if let Some(k) = key {
                    h.push(("authorization".into(), format!("Bearer {k}")));
                }
            }
            ProviderKind::Anthropic => {
                if let Some(k) = key {
                    h.push(("x-api-key".into(), k.to_owned()));
                }
                h.push(("anthropic-version".into(), anthropic::API_VERSION.into()));
            }
        }
        if let Some(k) = opts.idempotency_key {
            h.push(("idempotency-key".into(), k.to_owned()));
        }
        h.extend(self.config.headers.iter().cloned());
        h
    }

    /// One attempt: send, read the answer (streaming it through `emit`), build the draft.
    fn attempt(
        &self,
        body: &[u8],
        headers: &[(String, String)],
        deadline: Instant,
        stream: bool,
        emit: &mut dyn FnMut(Chunk),
        ctx: &Ctx<'_>,
    ) -> Result<Draft, Failure> {
        let per_read = stream.then_some(self.config.chunk_timeout);
        let resp = http::post(
            &self.agent,
            &self.url,
            headers,
            body,
            deadline,
            per_read,
            ctx,
        )?;
        let is_json = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let mut body = resp.into_body();
        if stream && !is_json {
            let reader = body.with_config().limit(MAX_BODY).reader();
            let mut events = SseReader::new(BufReader::new(reader));
            let kind = self.config.kind;
            let mut oa = openai::Stream::default();
            let mut an = anthropic::Stream::default();
            while let Some(ev) = events.next_event().map_err(|e| http::io_error(e, ctx))? {
                let done = match kind {
                    ProviderKind::OpenAi => oa.event(&ev.data, emit, ctx)?,
                    ProviderKind::Anthropic => an.event(&ev.data, emit, ctx)?,
                };
                if done {
                    break;
                }
            }
            return Ok(match kind {
                ProviderKind::OpenAi => oa.finish(ctx)?,
                ProviderKind::Anthropic => an.finish(ctx)?,
            });
        }
        let bytes = body
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| http::transport(e, ctx))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ctx.error(
                ErrorKind::ProviderError,
                "InvalidResponse",
                format!("the answer is not JSON: {e}"),
                None,
                false,
            )
        })?;
        let draft = match self.config.kind {
            ProviderKind::OpenAi => openai::decode(&v, ctx)?,
            ProviderKind::Anthropic => anthropic::decode(&v, ctx)?,
        };
        // A server that ignored `stream: true` answered whole: pass the text on as one chunk.
        if stream && !draft.text.is_empty() {
            emit(Chunk::Text(draft.text.clone()));
        }
        Ok(draft)
    }
}

/// Canonical tool-call ids must be valid for every provider (Anthropic's `tool_use` ids are
/// `[A-Za-z0-9_-]+`).
fn check_prefix(prefix: &str) -> Result<(), CallError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        return Ok(());
    }
    Err(CallError {
        kind: ErrorKind::InvalidArgument,
        error_type: "InvalidRequest".into(),
        message: format!("tool_call_prefix {prefix:?} must be 1 to 64 letters, digits, `_` or `-`"),
        status: None,
        retryable: false,
    })
}

impl LlmProvider for HttpProvider {
    fn name(&self) -> &str {
        &self.config.name
    }

    /// Retries (on retryable errors, while `max_retries` and the total timeout allow) wait
    /// for the server's `Retry-After` when it sent one, else an exponential backoff. Once a
    /// streamed chunk has been passed to `on_chunk`, a failure is final: a retry would
    /// repeat text the caller already has.
    fn complete(
        &self,
        request: &Value,
        opts: &CallOptions<'_>,
        mut on_chunk: Option<&mut dyn FnMut(&Chunk)>,
    ) -> Result<LlmAnswer, CallFailed> {
        let name = self.config.name.as_str();
        let start = Instant::now();
        let deadline = start + self.config.total_timeout;
        let fail = |e| CallFailed::once(name, e);
        check_prefix(opts.tool_call_prefix).map_err(fail)?;
        let req = LlmRequest::from_value(request).map_err(fail)?;
        let key = self.api_key().map_err(fail)?;
        let ctx = Ctx {
            provider: name,
            secret: key.as_deref(),
            total_timeout: self.config.total_timeout,
        };
        let model = self.config.model.as_deref().unwrap_or(&req.model);
        let stream = on_chunk.is_some();
        let wire = match self.config.kind {
            ProviderKind::OpenAi => openai::encode(&req, model, stream),
            ProviderKind::Anthropic => {
                anthropic::encode(&req, model, stream, &ctx).map_err(fail)?
            }
        };
        let body = serde_json::to_vec(&wire).expect("JSON values serialize");
        let headers = self.headers(key.as_deref(), opts, stream);

        // What the call spends against tokens-per-minute: its estimated prompt and the most
        // it may answer.
        let tokens = if self.config.rate_limits.tokens_per_minute.is_some() {
            let prompt = crate::estimate_input_tokens(request).map_or(0, |e| e.tokens);
            let answer = req.max_tokens.map_or(
                match self.config.kind {
                    ProviderKind::Anthropic => u64::from(anthropic::DEFAULT_MAX_TOKENS),
                    ProviderKind::OpenAi => 0,
                },
                u64::from,
            );
            prompt.saturating_add(answer)
        } else {
            0
        };
        let mut rate_wait = Duration::ZERO;
        let mut attempts = Vec::new();
        let mut delivered = false;
        // A wait the total timeout cannot hold ends the call: a final, recorded attempt.
        let timed_out = |mut attempts: Vec<Attempt>, why: String| {
            let error = ctx.error(ErrorKind::Timeout, "Timeout", why, None, false);
            attempts.push(Attempt {
                provider: name.to_owned(),
                error: error.clone(),
            });
            Err(CallFailed { error, attempts })
        };
        for n in 0.. {
            let wait = self.limiter.wait_for(model, tokens, n == 0);
            if !wait.is_zero() {
                if Instant::now() + wait > deadline {
                    return timed_out(attempts, format!(
                        "the rate limits (requestsPerMinute {:?}, tokensPerMinute {:?}) would hold the call {} ms, past its total timeout of {:?}",
                        self.config.rate_limits.requests_per_minute,
                        self.config.rate_limits.tokens_per_minute,
                        wait.as_millis(),
                        self.config.total_timeout
                    ));
                }
                std::thread::sleep(wait);
                rate_wait += wait;
            }
            let result = {
                let _slot = match &self.slots {
                    None => None,
                    Some(s) => match s.acquire(deadline) {
                        Some(p) => Some(p),
                        None => {
                            return timed_out(
                                attempts,
                                format!(
                                "no free slot (maxConcurrency {}) within the total timeout of {:?}",
                                self.config.max_concurrency.unwrap_or(0),
                                self.config.total_timeout
                            ),
                            );
                        }
                    },
                };
                let mut emit = |c: Chunk| {
                    if let Some(f) = on_chunk.as_mut() {
                        delivered = true;
                        f(&c);
                    }
                };
                self.attempt(&body, &headers, deadline, stream, &mut emit, &ctx)
            };
            let failure = match result.and_then(|d| {
                d.finish(name, opts.tool_call_prefix, model)
                    .map_err(Failure::from)
            }) {
                Ok((response, usage, mut meta)) => {
                    meta.rate_wait_us =
                        (!rate_wait.is_zero()).then_some(rate_wait.as_micros() as u64);
                    return Ok(LlmAnswer {
                        response: response.to_value(),
                        usage,
                        attempts,
                        meta,
                    });
                }
                Err(f) => f,
            };
            attempts.push(Attempt {
                provider: name.to_owned(),
                error: failure.error.clone(),
            });
            let wait = failure
                .retry_after
                .unwrap_or_else(|| backoff(n, self.config.backoff_base, self.config.backoff_max));
            let left = deadline.saturating_duration_since(Instant::now());
            let retry =
                failure.error.retryable && n < self.config.max_retries && !delivered && wait < left;
            if !retry {
                return Err(CallFailed {
                    error: failure.error,
                    attempts,
                });
            }
            std::thread::sleep(wait.max(Duration::from_millis(1)));
        }
        unreachable!("the loop returns")
    }
}
