//! The providers against a tiny local HTTP listener (a real loopback socket) that serves
//! recorded provider answers (`tests/fixtures/`) and scripted failures, and captures what
//! the adapters sent: tool-call parsing, headers, Retry-After, timeouts, concurrency.

mod llm_support;

use std::sync::Arc;
use std::time::Duration;

use agentmesh_core::ErrorKind;
use agentmesh_providers::{
    CallFailed, CallOptions, Chunk, Fallback, HttpProvider, LlmAnswer, LlmProvider, ProviderConfig,
};
use llm_support::{fixture, free_port, Canned, Listener};
use serde_json::{json, Value};

const OPTS: CallOptions<'static> = CallOptions {
    idempotency_key: None,
    tool_call_prefix: "call_7_1",
};

fn request() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Weather in Paris and Bogotá?"}],
           "maxTokens": 64, "temperature": 0,
           "tools": [{"name": "get_weather", "parameters": {"type": "object",
               "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}}}]})
}

fn quick(mut c: ProviderConfig) -> ProviderConfig {
    c.backoff_base = Duration::from_millis(10);
    c.backoff_max = Duration::from_millis(50);
    c.total_timeout = Duration::from_secs(20);
    c
}

fn openai(l: &Listener) -> HttpProvider {
    HttpProvider::new(quick(ProviderConfig::openai("oa", &l.base_url()))).unwrap()
}

fn anthropic(l: &Listener) -> HttpProvider {
    HttpProvider::new(quick(ProviderConfig::anthropic("an", &l.base_url()))).unwrap()
}

fn stream(p: &dyn LlmProvider, req: &Value) -> (Result<LlmAnswer, CallFailed>, Vec<Chunk>) {
    let mut chunks = Vec::new();
    let mut on = |c: &Chunk| chunks.push(c.clone());
    let r = p.complete(req, &OPTS, Some(&mut on));
    (r, chunks)
}

#[test]
fn openai_tool_calls_whole_and_streamed_give_one_canonical_response() {
    let whole = Listener::start(vec![Canned::json(200, &fixture("openai_tool_calls.json"))]);
    let a = openai(&whole).complete(&request(), &OPTS, None).unwrap();
    assert_eq!(
        a.response,
        json!({"text": "", "finishReason": "tool_calls", "toolCalls": [
            {"id": "call_7_1_0", "name": "get_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}},
            {"id": "call_7_1_1", "name": "get_weather", "arguments": {"location": "Bogotá, Colombia", "unit": "celsius"}}]})
    );
    let u = a.usage.clone().unwrap();
    assert_eq!((u.input_tokens, u.output_tokens), (82, 51));
    assert_eq!(u.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(
        a.meta.tool_call_ids,
        [
            "call_Dn2RJJSxzDm49vlVTehseJ0k",
            "call_Xq7lJmV0rQpQ6cBzW3tIhN2e"
        ]
    );
    assert_eq!(
        a.meta.response_id.as_deref(),
        Some("chatcmpl-AyPNinnUqUDYo9SAdA52NobMflmj2")
    );
    assert_eq!(a.meta.created, Some(1738960610));
    assert_eq!(a.meta.system_fingerprint.as_deref(), Some("fp_50cad350e4"));
    let sent = whole.captured()[0].clone();
    assert_eq!(sent.request_line, "POST /v1/chat/completions HTTP/1.1");
    let body = sent.json();
    assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(body["max_completion_tokens"], 64);
    assert!(body.get("stream").is_none());

    let streamed = Listener::start(vec![Canned::sse(&fixture("openai_tool_calls.sse"))]);
    let (s, chunks) = stream(&openai(&streamed), &request());
    let s = s.unwrap();
    assert_eq!(s.response, a.response);
    assert_eq!(s.usage, a.usage);
    assert_eq!(s.meta, a.meta);
    assert_eq!(
        chunks[0],
        Chunk::ToolCallStart {
            index: 0,
            name: "get_weather".into()
        }
    );
    let args1: String = chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::ToolCallArguments { index: 1, delta } => Some(delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(args1, r#"{"location":"Bogotá, Colombia","unit":"celsius"}"#);
    let body = streamed.captured()[0].json();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        streamed.captured()[0].header("accept"),
        Some("text/event-stream")
    );
}

#[test]
fn anthropic_tool_use_whole_and_streamed_give_one_canonical_response() {
    let whole = Listener::start(vec![Canned::json(200, &fixture("anthropic_tool_use.json"))]);
    let a = anthropic(&whole).complete(&request(), &OPTS, None).unwrap();
    assert_eq!(
        a.response,
        json!({"text": "I'll check the current weather in San Francisco for you.",
               "finishReason": "tool_calls", "toolCalls": [{"id": "call_7_1_0", "name": "get_weather",
               "arguments": {"location": "San Francisco, CA", "unit": "celsius"}}]})
    );
    let u = a.usage.clone().unwrap();
    assert_eq!(
        u.input_tokens,
        472 + 2048,
        "cache reads count as prompt tokens"
    );
    assert_eq!((u.cached_input_tokens, u.output_tokens), (2048, 89));
    assert_eq!(u.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
    assert_eq!(a.meta.tool_call_ids, ["toolu_01A09q90qw90lq917835lq9"]);
    let sent = whole.captured()[0].clone();
    assert_eq!(sent.request_line, "POST /v1/messages HTTP/1.1");
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.json()["tools"][0]["input_schema"]["type"], "object");

    let streamed = Listener::start(vec![Canned::sse(&fixture("anthropic_tool_use.sse"))]);
    let (s, chunks) = stream(&anthropic(&streamed), &request());
    let s = s.unwrap();
    assert_eq!(s.response, a.response);
    assert_eq!(s.usage, a.usage);
    assert_eq!(s.meta, a.meta);
    let text: String = chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, a.response["text"]);
    assert!(chunks.contains(&Chunk::ToolCallStart {
        index: 0,
        name: "get_weather".into()
    }));
}

#[test]
fn idempotency_key_and_api_key_are_sent_on_every_attempt() {
    std::env::set_var("AGENTMESH_TEST_WIRE_KEY", "sk-wire-test-4f9a8b7c6d5e");
    let l = Listener::start(vec![
        Canned::json(
            500,
            r#"{"error":{"message":"try again","type":"server_error"}}"#,
        ),
        Canned::json(200, &fixture("openai_tool_calls.json")),
    ]);
    let mut c = quick(ProviderConfig::openai("oa", &l.base_url()));
    c.api_key_env = Some("AGENTMESH_TEST_WIRE_KEY".into());
    c.headers = vec![("OpenAI-Organization".into(), "org-test".into())];
    let p = HttpProvider::new(c).unwrap();
    let opts = CallOptions {
        idempotency_key: Some("run-1/call_7_1"),
        ..OPTS
    };
    let a = p.complete(&request(), &opts, None).unwrap();
    assert_eq!(a.attempts.len(), 1);
    assert_eq!(a.attempts[0].error.status, Some(500));
    let got = l.captured();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.header("idempotency-key"), Some("run-1/call_7_1"));
        assert_eq!(
            r.header("authorization"),
            Some("Bearer sk-wire-test-4f9a8b7c6d5e")
        );
        assert_eq!(r.header("openai-organization"), Some("org-test"));
    }
    assert_eq!(got[0].body, got[1].body, "a retry sends the same request");

    let l = Listener::start(vec![Canned::json(200, &fixture("anthropic_tool_use.json"))]);
    let mut c = quick(ProviderConfig::anthropic("an", &l.base_url()));
    c.api_key_env = Some("AGENTMESH_TEST_WIRE_KEY".into());
    HttpProvider::new(c)
        .unwrap()
        .complete(&request(), &OPTS, None)
        .unwrap();
    let r = &l.captured()[0];
    assert_eq!(r.header("x-api-key"), Some("sk-wire-test-4f9a8b7c6d5e"));
    assert_eq!(r.header("idempotency-key"), None, "sent only when given");
    assert_eq!(r.header("authorization"), None);
}

#[test]
fn retry_after_is_honoured() {
    let l = Listener::start(vec![
        Canned::json(429, r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#)
            .header("Retry-After", "1"),
        Canned::json(200, &fixture("openai_tool_calls.json")),
    ]);
    let a = openai(&l).complete(&request(), &OPTS, None).unwrap();
    assert_eq!(a.attempts.len(), 1);
    let e = &a.attempts[0].error;
    assert_eq!(
        (e.error_type.as_str(), e.status, e.retryable),
        ("RateLimited", Some(429), true)
    );
    assert!(
        e.message
            .contains("Rate limit reached (requests, rate_limit_exceeded)"),
        "{}",
        e.message
    );
    let got = l.captured();
    // The backoff alone is at most 50 ms here: only Retry-After explains a second's wait.
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
}

#[test]
fn retry_after_beyond_the_total_timeout_gives_up_at_once() {
    let l = Listener::start(vec![Canned::json(
        529,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    )
    .header("Retry-After", "3600")]);
    let f = anthropic(&l).complete(&request(), &OPTS, None).unwrap_err();
    assert_eq!(f.error.error_type, "Overloaded");
    assert_eq!(f.error.message, "`an`: Overloaded (overloaded_error)");
    assert_eq!(f.attempts.len(), 1);
    assert_eq!(l.captured().len(), 1);
}

#[test]
fn client_errors_are_not_retried_and_read_both_shapes() {
    let l = Listener::start(vec![Canned::json(
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#,
    )]);
    let f = anthropic(&l).complete(&request(), &OPTS, None).unwrap_err();
    assert_eq!(
        (f.error.kind, f.error.status),
        (ErrorKind::ProviderError, Some(400))
    );
    assert_eq!(f.error.error_type, "BadRequest");
    assert!(!f.error.retryable);
    assert_eq!(
        f.to_string(),
        "[PROVIDER_ERROR] HTTP 400: `an`: max_tokens: Field required (invalid_request_error)"
    );
    assert_eq!(l.captured().len(), 1);
    let l = Listener::start(vec![Canned::json(
        401,
        r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
    )]);
    let f = openai(&l).complete(&request(), &OPTS, None).unwrap_err();
    assert_eq!(f.error.error_type, "AuthenticationError");
    assert_eq!(l.captured().len(), 1);
}

#[test]
fn a_stream_cut_after_chunks_is_final_and_one_cut_before_is_retried() {
    let sse = fixture("openai_tool_calls.sse");
    let half = &sse[..sse.len() / 2];
    let cut = &half[..half.rfind("\n\n").unwrap() + 2];
    let l = Listener::start(vec![Canned::sse(cut), Canned::sse(&sse)]);
    let (r, chunks) = stream(&openai(&l), &request());
    let f = r.unwrap_err();
    assert!(!chunks.is_empty());
    assert_eq!(
        (f.error.error_type.as_str(), f.error.retryable),
        ("ConnectionError", true)
    );
    assert_eq!(
        f.attempts.len(),
        1,
        "no retry once chunks reached the caller"
    );
    assert_eq!(l.captured().len(), 1);

    // Cut before the first chunk: nothing reached the caller, so it is retried.
    let l = Listener::start(vec![Canned::sse(": keep-alive\n\n"), Canned::sse(&sse)]);
    let (r, _) = stream(&openai(&l), &request());
    let a = r.unwrap();
    assert_eq!(a.attempts.len(), 1);
    assert_eq!(a.response["toolCalls"][1]["id"], "call_7_1_1");
}

#[test]
fn chunk_and_total_timeouts() {
    let sse = fixture("anthropic_tool_use.sse");
    let (first, rest) = sse.split_at(sse.find("\n\n").unwrap() + 2);
    let mut stall = Canned::sse(first);
    stall
        .parts
        .push((Duration::from_millis(1500), rest.as_bytes().to_vec()));
    let l = Listener::start(vec![stall]);
    let mut c = quick(ProviderConfig::anthropic("an", &l.base_url()));
    c.chunk_timeout = Duration::from_millis(300);
    c.max_retries = 0;
    let (r, _) = stream(&HttpProvider::new(c).unwrap(), &request());
    let f = r.unwrap_err();
    assert_eq!(
        (f.error.kind, f.error.error_type.as_str()),
        (ErrorKind::Timeout, "Timeout")
    );
    assert!(f.error.retryable);

    let mut slow = Canned::json(200, &fixture("openai_tool_calls.json"));
    slow.delay = Duration::from_millis(1500);
    let l = Listener::start(vec![slow]);
    let mut c = quick(ProviderConfig::openai("oa", &l.base_url()));
    c.total_timeout = Duration::from_millis(400);
    let f = HttpProvider::new(c)
        .unwrap()
        .complete(&request(), &OPTS, None)
        .unwrap_err();
    assert_eq!(f.error.kind, ErrorKind::Timeout);
    assert!(!f.error.retryable, "no time is left for a retry");
    assert!(
        f.error.message.contains("total timeout of 400ms"),
        "{}",
        f.error.message
    );
    assert_eq!(f.attempts.len(), 1);
}

#[test]
fn concurrency_limit_holds_across_threads() {
    let mut slow = Canned::json(200, &fixture("openai_tool_calls.json"));
    slow.delay = Duration::from_millis(150);
    let l = Listener::start(vec![slow]);
    let mut c = quick(ProviderConfig::openai("oa", &l.base_url()));
    c.max_concurrency = Some(1);
    let p = HttpProvider::new(c).unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| p.complete(&request(), &OPTS, None).unwrap());
        }
    });
    assert_eq!(l.captured().len(), 3);
    assert_eq!(
        l.most_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn key_never_appears_in_errors_or_debug() {
    let key = "sk-secret-do-not-print-9f8e7d6c5b4a";
    std::env::set_var("AGENTMESH_TEST_SECRET_KEY", key);
    let dead = free_port();
    let mut c = quick(ProviderConfig::openai(
        "dead",
        &format!("http://127.0.0.1:{dead}/v1"),
    ));
    c.api_key_env = Some("AGENTMESH_TEST_SECRET_KEY".into());
    c.headers = vec![("x-extra-secret".into(), key.into())];
    c.max_retries = 1;
    let p = HttpProvider::new(c.clone()).unwrap();
    let f = p.complete(&request(), &OPTS, None).unwrap_err();
    assert_eq!(
        (f.error.error_type.as_str(), f.error.retryable),
        ("ConnectionError", true)
    );
    assert_eq!(f.attempts.len(), 2, "retried once");
    // A server that echoes the key back in its error message.
    let echo = format!(r#"{{"error":{{"message":"Incorrect API key provided: {key}"}}}}"#);
    let l = Listener::start(vec![Canned::json(401, &echo)]);
    c.base_url = l.base_url();
    let p2 = HttpProvider::new(c.clone()).unwrap();
    let f2 = p2.complete(&request(), &OPTS, None).unwrap_err();
    assert!(
        f2.error.message.contains("[REDACTED]"),
        "{}",
        f2.error.message
    );
    for text in [
        f.to_string(),
        format!("{f:?}"),
        f2.to_string(),
        format!("{f2:?}"),
        format!("{:?}", f2.attempts),
        serde_json::to_string(&f2.attempts).unwrap(),
        format!("{p:?}"),
        format!("{c:?}"),
    ] {
        assert!(!text.contains(key), "key leaked: {text}");
        assert!(!text.contains("9f8e7d6c5b4a"), "key leaked: {text}");
    }
}

#[test]
fn a_missing_key_variable_is_named_and_nothing_is_sent() {
    let l = Listener::start(vec![Canned::json(200, &fixture("openai_tool_calls.json"))]);
    let mut c = quick(ProviderConfig::openai("oa", &l.base_url()));
    c.api_key_env = Some("AGENTMESH_TEST_UNSET_KEY_VAR".into());
    std::env::remove_var("AGENTMESH_TEST_UNSET_KEY_VAR");
    let f = HttpProvider::new(c)
        .unwrap()
        .complete(&request(), &OPTS, None)
        .unwrap_err();
    assert_eq!(f.error.kind, ErrorKind::InvalidArgument);
    assert_eq!(
        f.error.message,
        "`oa`: environment variable AGENTMESH_TEST_UNSET_KEY_VAR is not set (it should hold the API key)"
    );
    assert_eq!(f.attempts.len(), 1);
    assert!(l.captured().is_empty());
}

#[test]
fn bad_requests_and_prefixes_fail_before_sending() {
    let l = Listener::start(vec![Canned::json(200, &fixture("openai_tool_calls.json"))]);
    let p = openai(&l);
    let f = p
        .complete(
            &json!({"model": "m", "messages": [{"role": "user"}]}),
            &OPTS,
            None,
        )
        .unwrap_err();
    assert_eq!(f.error.kind, ErrorKind::InvalidArgument);
    assert!(
        f.error.message.contains("messages[0].content"),
        "{}",
        f.error.message
    );
    let bad = CallOptions {
        idempotency_key: None,
        tool_call_prefix: "call 7",
    };
    assert!(p.complete(&request(), &bad, None).is_err());
    let an = anthropic(&l);
    let mut req = request();
    req["responseFormat"] = json!({"type": "json_object"});
    let f = an.complete(&req, &OPTS, None).unwrap_err();
    assert_eq!(
        (f.error.kind, f.error.error_type.as_str()),
        (ErrorKind::InvalidArgument, "Unsupported")
    );
    assert!(l.captured().is_empty());
}

#[test]
fn fallback_records_the_failed_provider_and_answers_from_the_next() {
    let down = Listener::start(vec![Canned::json(503, r#"{"error":{"message":"down"}}"#)]);
    let up = Listener::start(vec![Canned::json(200, &fixture("anthropic_tool_use.json"))]);
    let mut first = quick(ProviderConfig::openai("primary", &down.base_url()));
    first.max_retries = 1;
    let chain = Fallback::new(
        "chain",
        vec![
            Arc::new(HttpProvider::new(first).unwrap()) as Arc<dyn LlmProvider>,
            Arc::new(anthropic(&up)),
        ],
    )
    .unwrap();
    let a = chain.complete(&request(), &OPTS, None).unwrap();
    assert_eq!(a.meta.provider, "an");
    let who: Vec<_> = a
        .attempts
        .iter()
        .map(|t| (t.provider.as_str(), t.error.status))
        .collect();
    assert_eq!(who, [("primary", Some(503)), ("primary", Some(503))]);
    assert_eq!(
        serde_json::to_value(&a.attempts[0]).unwrap(),
        json!({"provider": "primary", "code": "PROVIDER_ERROR", "errorType": "ProviderError",
               "message": "`primary`: down", "status": 503, "retryable": true})
    );
    // A malformed request is not passed down the chain.
    let f = chain
        .complete(&json!({"model": "m"}), &OPTS, None)
        .unwrap_err();
    assert_eq!(f.attempts.len(), 1);
    assert!(Fallback::new("empty", vec![]).is_err());
}

#[test]
fn the_wire_bodies_of_a_simple_request() {
    // The request of docs/providers.md and examples/llm_overhead.rs.
    let req = json!({"model": "smollm2", "maxTokens": 16, "temperature": 0,
        "messages": [{"role": "system", "content": "You are a concise assistant."},
                     {"role": "user", "content": "What is the capital of France?"}]});
    let l = Listener::start(vec![Canned::json(200, &fixture("openai_tool_calls.json"))]);
    openai(&l).complete(&req, &OPTS, None).unwrap();
    assert_eq!(
        l.captured()[0].json(),
        json!({"model": "smollm2", "max_completion_tokens": 16, "temperature": 0.0,
            "messages": [{"role": "system", "content": "You are a concise assistant."},
                         {"role": "user", "content": "What is the capital of France?"}]})
    );
    let l = Listener::start(vec![Canned::json(200, &fixture("anthropic_tool_use.json"))]);
    anthropic(&l).complete(&req, &OPTS, None).unwrap();
    assert_eq!(
        l.captured()[0].json(),
        json!({"model": "smollm2", "max_tokens": 16, "temperature": 0.0,
            "system": "You are a concise assistant.",
            "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    );
}

#[test]
fn tokens_per_minute_hold_a_call_and_say_so_only_in_meta() {
    let l = Listener::start(vec![
        Canned::json(200, &fixture("openai_tool_calls.json")),
        Canned::json(200, &fixture("openai_tool_calls.json")),
    ]);
    let mut c = quick(ProviderConfig::openai("oa", &l.base_url()));
    // 6,000 a minute is 100 a second: the first call's worst case (a minute's worth, capped)
    // empties the bucket, so the second waits for its ~100 tokens.
    c.rate_limits.tokens_per_minute = Some(6_000);
    let p = HttpProvider::new(c).unwrap();
    let mut big = request();
    big["maxTokens"] = json!(10_000);
    let first = p.complete(&big, &OPTS, None).unwrap();
    assert_eq!(first.meta.rate_wait_us, None);
    let second = p.complete(&request(), &OPTS, None).unwrap();
    assert!(second.meta.rate_wait_us.unwrap() > 0);
    assert_eq!(
        second.response, first.response,
        "the answer does not depend on the wait"
    );
    // Zero is not a limit.
    let mut bad = quick(ProviderConfig::openai("oa", &l.base_url()));
    bad.rate_limits.requests_per_minute = Some(0);
    let e = HttpProvider::new(bad).unwrap_err();
    assert!(
        e.message.contains("requestsPerMinute must be at least 1"),
        "{}",
        e.message
    );
}
