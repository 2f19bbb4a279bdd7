//! Both adapters against a real LLM: llama.cpp's llama-server (built by
//! `.ci/llama-server.sh`) running SmolLM2-135M-Instruct, which serves OpenAI
//! `/v1/chat/completions` and Anthropic `/v1/messages`. Each test starts its own server on a
//! free port (one at a time) and kills it on drop. Temperature 0 and one thread make the
//! answers repeatable; assertions are on structure, usage and equality, never on wisdom.

mod llm_support;

use std::sync::Arc;
use std::time::Duration;

use agentmesh_core::{idempotency_key, CallExecutor, CallTicket, ErrorKind, TicketState};
use agentmesh_providers::{
    estimate_input_tokens, CallOptions, Chunk, Fallback, HttpProvider, LlmExecutor, LlmProvider,
    ProviderConfig, ProviderKind,
};
use llm_support::{free_port, llama_paths, one_at_a_time, LlamaServer};
use serde_json::{json, Value};

const OPTS: CallOptions<'static> = CallOptions {
    idempotency_key: None,
    tool_call_prefix: "call_1_0",
};

fn config(kind: ProviderKind, base_url: &str) -> ProviderConfig {
    let mut c = match kind {
        ProviderKind::OpenAi => ProviderConfig::openai("local-openai", base_url),
        ProviderKind::Anthropic => ProviderConfig::anthropic("local-anthropic", base_url),
    };
    c.total_timeout = Duration::from_secs(60);
    c.backoff_base = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(200);
    c
}

fn provider(kind: ProviderKind, s: &LlamaServer) -> HttpProvider {
    HttpProvider::new(config(kind, &s.base_url())).unwrap()
}

fn ask(max_tokens: u32) -> Value {
    json!({"model": "smollm2", "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "What is the capital of France?"}],
           "maxTokens": max_tokens, "temperature": 0, "seed": 1})
}

const KINDS: [ProviderKind; 2] = [ProviderKind::OpenAi, ProviderKind::Anthropic];

#[test]
fn plain_calls_answer_with_sane_usage_and_repeat() {
    let Some(paths) = llama_paths() else { return };
    let _one = one_at_a_time();
    let s = LlamaServer::start(&paths);
    for kind in KINDS {
        let p = provider(kind, &s);
        let a = p.complete(&ask(16), &OPTS, None).unwrap();
        let text = a.response["text"].as_str().unwrap();
        assert!(!text.trim().is_empty(), "{kind:?}: empty answer");
        let finish = a.response["finishReason"].as_str().unwrap();
        assert!(["stop", "length"].contains(&finish), "{kind:?}: {finish}");
        assert!(a.response.get("toolCalls").is_none());
        assert_eq!(
            a.response.as_object().unwrap().len(),
            2,
            "only text and finishReason"
        );
        let u = a.usage.clone().unwrap();
        // The prompt (a system and a user message in ChatML) is 20 to 60 tokens for SmolLM2.
        assert!((10..200).contains(&u.input_tokens), "{kind:?}: {u:?}");
        assert!((1..=16).contains(&u.output_tokens), "{kind:?}: {u:?}");
        assert_eq!(finish == "length", u.output_tokens == 16, "{kind:?}: {u:?}");
        assert_eq!(u.model.as_deref(), Some("smollm2"));
        assert!(a.attempts.is_empty());
        assert_eq!(a.meta.provider, p.name());
        assert!(a.meta.response_id.is_some());
        let again = p.complete(&ask(16), &OPTS, None).unwrap();
        assert_eq!(
            again.response, a.response,
            "{kind:?}: temperature 0 repeats"
        );
        assert_eq!(again.usage, a.usage);
    }
}

#[test]
fn streaming_assembles_the_same_answer_and_usage() {
    let Some(paths) = llama_paths() else { return };
    let _one = one_at_a_time();
    let s = LlamaServer::start(&paths);
    for kind in KINDS {
        let p = provider(kind, &s);
        let whole = p.complete(&ask(24), &OPTS, None).unwrap();
        let mut chunks = Vec::new();
        let mut on = |c: &Chunk| chunks.push(c.clone());
        let streamed = p.complete(&ask(24), &OPTS, Some(&mut on)).unwrap();
        assert!(chunks.len() > 1, "{kind:?}: {} chunks", chunks.len());
        let text: String = chunks
            .iter()
            .map(|c| match c {
                Chunk::Text(t) => t.as_str(),
                other => panic!("{kind:?}: unexpected {other:?}"),
            })
            .collect();
        assert_eq!(text, streamed.response["text"]);
        assert_eq!(streamed.response, whole.response, "{kind:?}");
        assert_eq!(streamed.usage, whole.usage, "{kind:?}");
        assert!(streamed.usage.unwrap().output_tokens > 0);
    }
}

#[test]
fn the_executor_keeps_provider_ids_and_time_to_first_chunk_out_of_the_response() {
    let Some(paths) = llama_paths() else { return };
    let _one = one_at_a_time();
    let s = LlamaServer::start(&paths);
    for kind in KINDS {
        let exec = LlmExecutor::new(Arc::new(provider(kind, &s)));
        let ticket = CallTicket {
            activation: 3,
            call: 1,
            seq: 4,
            state: TicketState::Live,
            idempotency_key: idempotency_key("run", 4, 1),
            max_tokens: None,
            request: None,
            hold_response: false,
        };
        let request = exec.prepare(ask(16)).unwrap();
        let whole = exec.execute(&request, &ticket, None);
        let mut n = 0;
        let streamed = exec.execute(&request, &ticket, Some(&mut |_| n += 1));
        assert!(n > 1);
        assert_eq!(streamed.result, whole.result, "{kind:?}");
        for (o, streams) in [(&whole, false), (&streamed, true)] {
            let meta = o.meta.as_ref().expect("meta");
            assert!(meta.provider.as_deref().unwrap().starts_with("local-"));
            let id = meta.response_id.as_deref().expect("a response id");
            assert!(!o.result.as_ref().unwrap().to_string().contains(id));
            assert_eq!(meta.ttft_us.is_some(), streams, "{kind:?} {meta:?}");
        }
    }
}

#[test]
fn the_byte_estimate_of_input_tokens_is_never_below_what_the_real_server_counts() {
    let Some(paths) = llama_paths() else { return };
    let _one = one_at_a_time();
    let s = LlamaServer::start(&paths);
    let p = provider(ProviderKind::OpenAi, &s);
    let prompts = [
        "What is the capital of France?",
        "Résumé of naïve café façades, in two words.",
        "日本の首都はどこですか？簡単に答えてください。",
        "emoji 🦀🦀🦀 and code: fn main() { println!(\"{}\", 1 + 1); }",
        "",
    ];
    for (i, text) in prompts.iter().enumerate() {
        let mut messages = vec![json!({"role": "user", "content": text})];
        if i % 2 == 1 {
            messages.insert(0, json!({"role": "system", "content": "Answer tersely."}));
        }
        let request =
            json!({"model": "smollm2", "messages": messages, "maxTokens": 1, "temperature": 0});
        let estimate = estimate_input_tokens(&request).unwrap();
        assert!(!estimate.tokenizer);
        let counted = p
            .complete(&request, &OPTS, None)
            .unwrap()
            .usage
            .unwrap()
            .input_tokens;
        assert!(
            estimate.tokens >= counted,
            "{text:?}: estimated {} < counted {counted}",
            estimate.tokens
        );
        eprintln!("{text:?}: estimated {}, counted {counted}", estimate.tokens);
    }
}

#[test]
fn a_bad_request_is_a_typed_4xx_that_is_not_retried() {
    let Some(paths) = llama_paths() else { return };
    let _one = one_at_a_time();
    let s = LlamaServer::start(&paths);
    let key = "sk-real-test-key-0b1c2d3e4f5a6b7c";
    std::env::set_var("AGENTMESH_TEST_REAL_KEY", key);
    // Longer than the server's 2048-token context.
    let long = json!({"model": "smollm2", "maxTokens": 4,
        "messages": [{"role": "user", "content": "hello ".repeat(2500)}]});
    for kind in KINDS {
        let mut c = config(kind, &s.base_url());
        c.api_key_env = Some("AGENTMESH_TEST_REAL_KEY".into());
        let p = HttpProvider::new(c).unwrap();
        let f = p.complete(&long, &OPTS, None).unwrap_err();
        assert_eq!(f.error.kind, ErrorKind::ProviderError, "{kind:?}");
        assert_eq!(f.error.status, Some(400));
        assert_eq!(f.error.error_type, "BadRequest");
        assert!(!f.error.retryable);
        assert_eq!(f.attempts.len(), 1, "a 400 is not retried");
        // llama-server's error bodies are OpenAI-shaped on both endpoints.
        assert!(
            f.error
                .message
                .contains("exceeds the available context size")
                && f.error.message.contains("exceed_context_size_error"),
            "{}",
            f.error.message
        );
        for text in [f.to_string(), format!("{f:?}"), format!("{p:?}")] {
            assert!(!text.contains(key), "key leaked: {text}");
        }
    }
}

#[test]
fn a_dead_port_is_a_retryable_connection_error() {
    // No server needed: nothing listens on a free port.
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    for kind in KINDS {
        let mut c = config(kind, &dead);
        c.max_retries = 2;
        let f = HttpProvider::new(c)
            .unwrap()
            .complete(&ask(8), &OPTS, None)
            .unwrap_err();
        assert_eq!(f.error.kind, ErrorKind::ProviderError);
        assert_eq!(
            (f.error.error_type.as_str(), f.error.retryable),
            ("ConnectionError", true)
        );
        assert_eq!(f.error.status, None);
        assert_eq!(f.attempts.len(), 3, "the first attempt and two retries");
    }
}

#[test]
fn retries_reach_a_server_restarted_on_the_same_port() {
    let Some(paths) = llama_paths() else { return };
    let _one = one_at_a_time();
    let mut s = LlamaServer::start(&paths);
    for kind in KINDS {
        let p = provider(kind, &s);
        let before = p.complete(&ask(8), &OPTS, None).unwrap();
        s.stop();
        let mut c = config(kind, &s.base_url());
        // Enough retries to span a restart (the first backoffs are short; later ones 1 s).
        c.max_retries = 30;
        c.backoff_base = Duration::from_millis(100);
        c.backoff_max = Duration::from_secs(1);
        let p = HttpProvider::new(c).unwrap();
        let answer = std::thread::scope(|sc| {
            let call = sc.spawn(|| p.complete(&ask(8), &OPTS, None));
            // The call is already failing against the stopped server; bring it back.
            std::thread::sleep(Duration::from_millis(300));
            s.spawn_again();
            call.join().unwrap()
        });
        let a = answer.unwrap_or_else(|f| panic!("{kind:?}: {f}\n{}", s.log_text()));
        assert!(
            !a.attempts.is_empty(),
            "{kind:?}: the server was down at first"
        );
        for t in &a.attempts {
            // Refused while down; 503 while it loads the model.
            assert!(t.error.retryable, "{t:?}");
            assert_eq!(t.provider, p.name());
        }
        assert_eq!(a.attempts[0].error.error_type, "ConnectionError");
        assert_eq!(
            a.response, before.response,
            "{kind:?}: same answer after the restart"
        );
        s.wait_ready();
    }
}

#[test]
fn fallback_from_a_dead_provider_to_the_real_one() {
    let Some(paths) = llama_paths() else { return };
    let _one = one_at_a_time();
    let s = LlamaServer::start(&paths);
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    let mut first = ProviderConfig::openai("dead-openai", &dead);
    first.max_retries = 0;
    first.model = Some("gpt-4o".into());
    let mut second = config(ProviderKind::Anthropic, &s.base_url());
    second.model = Some("smollm2".into());
    let chain = Fallback::new(
        "chain",
        vec![
            Arc::new(HttpProvider::new(first).unwrap()) as Arc<dyn LlmProvider>,
            Arc::new(HttpProvider::new(second).unwrap()),
        ],
    )
    .unwrap();
    let mut req = ask(8);
    req["model"] = json!("some-model-the-second-provider-replaces");
    let a = chain.complete(&req, &OPTS, None).unwrap();
    assert_eq!(a.meta.provider, "local-anthropic");
    assert_eq!(a.usage.as_ref().unwrap().model.as_deref(), Some("smollm2"));
    assert_eq!(a.attempts.len(), 1);
    assert_eq!(a.attempts[0].provider, "dead-openai");
    assert_eq!(a.attempts[0].error.error_type, "ConnectionError");
    // Streaming through the chain: the dead provider sent nothing, so the next one streams.
    let mut n = 0;
    let mut on = |_: &Chunk| n += 1;
    let b = chain.complete(&req, &OPTS, Some(&mut on)).unwrap();
    assert!(n > 0);
    assert_eq!(b.response, a.response);
    assert_eq!(b.attempts.len(), 1);
}
