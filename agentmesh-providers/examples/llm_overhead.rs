//! How much time the adapters add to an LLM call: the same wire request sent by
//! [`HttpProvider`] and by a bare `ureq` POST, median of each, the difference being the
//! adapter's own work (checking the canonical request, encoding it, decoding the answer,
//! reading usage).
//!
//! ```text
//! cargo run -p agentmesh-providers --example llm_overhead                 # loopback only
//! cargo run -p agentmesh-providers --example llm_overhead -- http://127.0.0.1:8080/v1
//! ```
//!
//! Without an argument it measures against a trivial loopback listener that answers every
//! request with one recorded chat completion; with a llama-server base URL it also measures
//! real calls and prints the server's own reported time (`timings`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use agentmesh_providers::{CallOptions, HttpProvider, LlmProvider, ProviderConfig};
use serde_json::{json, Value};

const ANSWER: &str = include_str!("../tests/fixtures/openai_tool_calls.json");

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A listener answering every request with `ANSWER` (one request per connection).
fn trivial_listener() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in l.incoming() {
            let Ok(mut sock) = sock else { continue };
            let mut r = BufReader::new(sock.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                ANSWER.len()
            );
            let _ = sock.write_all(head.as_bytes());
            let _ = sock.write_all(ANSWER.as_bytes());
        }
    });
    port
}

/// Median time of the provider's call and of a bare POST of the same wire body; the
/// server's own time (prompt + generation) when it reports one.
fn measure(
    base_url: &str,
    n: usize,
    request: &Value,
    wire: &Value,
) -> (Duration, Duration, Option<f64>) {
    let p = HttpProvider::new(ProviderConfig::openai("m", base_url)).unwrap();
    let opts = CallOptions {
        idempotency_key: None,
        tool_call_prefix: "call_1_0",
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{base_url}/chat/completions");
    let bytes = serde_json::to_vec(wire).unwrap();
    let (mut ours, mut bare, mut server) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n + 2 {
        let t = Instant::now();
        p.complete(request, &opts, None).unwrap();
        let a = t.elapsed();
        let t = Instant::now();
        let mut resp = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(&bytes[..])
            .unwrap();
        let text = resp.body_mut().read_to_vec().unwrap();
        let b = t.elapsed();
        let v: Value = serde_json::from_slice(&text).unwrap();
        if i >= 2 {
            // The first two warm up connections and the server.
            ours.push(a);
            bare.push(b);
            if let Some(t) = v.get("timings") {
                server.push(t["prompt_ms"].as_f64().unwrap() + t["predicted_ms"].as_f64().unwrap());
            }
        }
    }
    server.sort_by(f64::total_cmp);
    (
        median(ours),
        median(bare),
        server.get(server.len() / 2).copied(),
    )
}

fn main() {
    let request = json!({"model": "smollm2", "maxTokens": 16, "temperature": 0,
        "messages": [{"role": "system", "content": "You are a concise assistant."},
                     {"role": "user", "content": "What is the capital of France?"}]});
    // The wire body HttpProvider sends for `request` (checked equal in tests/llm_wire.rs).
    let wire = json!({"model": "smollm2", "max_completion_tokens": 16, "temperature": 0.0,
        "messages": [{"role": "system", "content": "You are a concise assistant."},
                     {"role": "user", "content": "What is the capital of France?"}]});
    let port = trivial_listener();
    let (ours, bare, _) = measure(&format!("http://127.0.0.1:{port}/v1"), 500, &request, &wire);
    println!(
        "loopback listener, 500 calls: provider {ours:?}, bare POST {bare:?}, adapter overhead {:?} per call",
        ours.saturating_sub(bare)
    );
    if let Some(base) = std::env::args().nth(1) {
        let (ours, bare, server) = measure(&base, 20, &request, &wire);
        println!(
            "llama-server, 20 calls: provider {ours:?}, bare POST {bare:?}, adapter overhead {:?} per call, server's own time {:.1} ms",
            ours.saturating_sub(bare),
            server.unwrap_or(f64::NAN)
        );
    }
}
