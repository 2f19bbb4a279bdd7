//! End to end against the real llama-server: a multi-agent workflow whose agents call the LLM
//! through the run (`Context::llm`), killed with SIGKILL mid-run and resumed; a counting
//! proxy in front of the server shows that no call whose result was recorded is sent again,
//! and the final log is byte-identical to an uninterrupted run's. Then re-execute replay runs
//! the agents again with the server stopped: zero requests.
#![cfg(unix)]

#[path = "llm_support/asker.rs"]
mod asker;
mod llm_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentmesh_core::{Mesh, RunOptions, RunStatus, Workflow};
use serde_json::{json, Value};

const RUN_ID: &str = "llm-e2e";

fn workflow() -> Workflow {
    Workflow::from_value(json!({"name": "llm-e2e", "nodes": [
        {"id": "plan", "type": "agent", "agent": "asker"},
        {"id": "research_a", "type": "agent", "agent": "asker", "after": ["plan"]},
        {"id": "research_b", "type": "agent", "agent": "asker", "after": ["plan"]},
        {"id": "write", "type": "agent", "agent": "asker", "after": ["research_a", "research_b"]}]}))
    .unwrap()
}

/// A mesh whose agent asks the LLM behind `base_url` a few short questions (3 on the research
/// nodes: 8 calls in all).
fn mesh(base_url: &str, log_dir: &Path) -> Mesh {
    asker::asker_mesh(base_url, log_dir, 3)
}

/// Forwards HTTP requests to `upstream` one by one and keeps their bodies.
struct CountingProxy {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl CountingProxy {
    fn start(upstream: String) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (up, seen) = (upstream.clone(), seen.clone());
                std::thread::spawn(move || serve(conn, &up, &seen));
            }
        });
        CountingProxy { port, bodies }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, upstream: &str, seen: &Mutex<Vec<String>>) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        seen.lock().unwrap().push(text.clone());
        let url = format!("{upstream}{}", path.trim_start_matches("/v1"));
        let (status, answer) = match agent
            .post(&url)
            .header("content-type", "application/json")
            .send(text.as_bytes())
        {
            Ok(mut resp) => (
                resp.status().as_u16(),
                resp.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(_) => (
                502,
                "{\"error\":{\"message\":\"upstream down\"}}".to_owned(),
            ),
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn prompt_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["messages"][0]["content"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn completed_calls(log: &Path) -> Vec<String> {
    let (_, events) = agentmesh_core::read_log(log).unwrap();
    let mut started = std::collections::HashMap::new();
    let mut done = Vec::new();
    for e in events {
        match &e.data {
            agentmesh_core::EventData::CallStarted(s) => {
                started.insert((e.seq, s.call), prompt_of(&s.request.to_string()));
            }
            agentmesh_core::EventData::CallCompleted(c) => {
                done.push(started[&(e.seq, c.call)].clone());
            }
            _ => {}
        }
    }
    done
}

/// The child process: run the workflow until the parent kills it.
#[test]
fn e2e_child() {
    let (Ok(dir), Ok(url)) = (
        std::env::var("AGENTMESH_E2E_DIR"),
        std::env::var("AGENTMESH_E2E_URL"),
    ) else {
        return;
    };
    let _ = mesh(&url, Path::new(&dir)).run(
        &workflow(),
        RunOptions {
            run_id: Some(RUN_ID.into()),
            ..Default::default()
        },
    );
}

#[test]
fn sigkill_mid_run_resends_no_recorded_call_and_replay_needs_no_server() {
    let Some(paths) = llm_support::llama_paths() else {
        return;
    };
    let _one = llm_support::one_at_a_time();
    let mut server = llm_support::LlamaServer::start(&paths);
    let proxy = CountingProxy::start(format!("http://127.0.0.1:{}/v1", server.port));

    // Uninterrupted, for reference.
    let clean = tempfile::tempdir().unwrap();
    let r = mesh(&proxy.base_url(), clean.path())
        .run(
            &workflow(),
            RunOptions {
                run_id: Some(RUN_ID.into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(proxy.bodies().len(), 8);
    let reference = r.canonical().unwrap();
    // The provider's own ids stay out of the canonical log, in each result's `meta.call`
    // (no time to first chunk: nothing streamed).
    let (_, events) = agentmesh_core::read_log(r.log_path.as_ref().unwrap()).unwrap();
    let mut results = 0;
    for e in &events {
        if let agentmesh_core::EventData::CallCompleted(_) = &e.data {
            results += 1;
            let call = e
                .meta
                .as_ref()
                .and_then(|m| m.call.clone())
                .expect("meta.call");
            assert_eq!(call.provider.as_deref(), Some("local"));
            let id = call.response_id.as_deref().unwrap_or("");
            assert!(id.starts_with("chatcmpl"), "{call:?}");
            assert!(!String::from_utf8_lossy(&reference).contains(id));
            assert_eq!(call.ttft_us, None);
        }
    }
    assert_eq!(results, 8);

    // Killed at several points (after k recorded calls, plus a random delay, so the kill
    // also lands mid-call), each resumed in this process.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill-point seed {seed}");
    let mut rng = seed | 1;
    let mut last_dir = None;
    for k in [1usize, 3, 5, 7] {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let jitter = Duration::from_millis(rng % 400);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(format!("{RUN_ID}.jsonl"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["e2e_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("AGENTMESH_E2E_DIR", dir.path())
            .env("AGENTMESH_E2E_URL", proxy.base_url())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = std::fs::read_to_string(&log)
                .map(|t| t.matches("\"callCompleted\"").count())
                .unwrap_or(0);
            if n >= k {
                break;
            }
            assert!(Instant::now() < deadline, "the child made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(jitter);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let recorded = completed_calls(&log);
        assert!(recorded.len() >= k, "{recorded:?}");

        let before_resume = proxy.bodies().len();
        let r = mesh(&proxy.base_url(), dir.path())
            .resume(&log, Default::default())
            .unwrap();
        assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
        let resent: Vec<String> = proxy.bodies()[before_resume..]
            .iter()
            .map(|b| prompt_of(b))
            .collect();
        for p in &recorded {
            assert!(
                !resent.contains(p),
                "kill after {k} (+{jitter:?}): the recorded call {p:?} was sent again: {resent:?}"
            );
        }
        assert_eq!(
            resent.len(),
            8 - recorded.len(),
            "kill after {k} (+{jitter:?}): only the calls without a recorded result went out"
        );
        assert_eq!(
            r.canonical().unwrap(),
            reference,
            "kill after {k} (+{jitter:?}): the resumed log is byte-identical to the uninterrupted one"
        );
        last_dir = Some((dir, log));
    }
    let (dir, log) = last_dir.unwrap();

    // Re-execute replay with the server stopped: the agents run, nothing is sent.
    server.stop();
    let requests = proxy.bodies().len();
    let report = mesh(&proxy.base_url(), dir.path()).reexecute(&log).unwrap();
    assert_eq!(report.calls, 8);
    assert_eq!(proxy.bodies().len(), requests, "zero requests");
}

/// The price a user gives the local model: 1 µUSD a prompt token, 2 a completion token.
fn local_prices() -> agentmesh_core::PriceTable {
    agentmesh_core::PriceTable::from_json(
        r#"{"version": 1, "source": "test", "models": [{"provider": "local", "model": "smollm2",
            "match": {"equals": "smollm2"}, "prices": {"input": 1000000, "output": 2000000}}]}"#,
    )
    .unwrap()
}

fn one_asker(budget: Value) -> Workflow {
    Workflow::from_value(json!({"name": "llm-budget", "budget": budget, "nodes": [
        {"id": "plan", "type": "agent", "agent": "asker"},
        {"id": "write", "type": "agent", "agent": "asker", "after": ["plan"]}]}))
    .unwrap()
}

#[test]
fn budgets_refuse_before_the_real_server_is_asked_and_charge_what_it_reports() {
    let Some(paths) = llm_support::llama_paths() else {
        return;
    };
    let _one = llm_support::one_at_a_time();
    let server = llm_support::LlamaServer::start(&paths);
    let proxy = CountingProxy::start(format!("http://127.0.0.1:{}/v1", server.port));
    let dir = tempfile::tempdir().unwrap();

    // Too small for the worst case (the estimated prompt plus 8 completion tokens at 2 µUSD):
    // refused before anything is sent, and the run fails on it.
    let r = asker::asker_mesh(&proxy.base_url(), dir.path(), 1)
        .with_prices(local_prices())
        .run(&one_asker(json!({"microUsd": 20})), RunOptions::default())
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.clone().unwrap();
    assert_eq!(err.code, "BUDGET_EXCEEDED", "{err:?}");
    assert_eq!(proxy.bodies().len(), 0, "nothing reached the server");
    let refusal = err.budget.unwrap();
    assert_eq!(refusal.left, 20);
    assert!(refusal.requested > 20);

    // Within budget: both calls are made and charged exactly what the server reported.
    let r = asker::asker_mesh(&proxy.base_url(), dir.path(), 1)
        .with_prices(local_prices())
        .run(&one_asker(json!({"microUsd": 1000})), RunOptions::default())
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(proxy.bodies().len(), 2);
    let (_, events) = agentmesh_core::read_log(r.log_path.as_ref().unwrap()).unwrap();
    let mut expected = 0;
    for e in &events {
        if let agentmesh_core::EventData::CallCompleted(c) = &e.data {
            let u = c.usage.as_ref().expect("the server reports usage");
            let charge = c.charge.expect("charged");
            assert_eq!(
                charge,
                agentmesh_core::Amounts::of(
                    u.input_tokens,
                    u.output_tokens,
                    u.input_tokens + 2 * u.output_tokens,
                    1
                )
            );
            expected += u.input_tokens + 2 * u.output_tokens;
        }
    }
    let usage = r.usage().unwrap();
    assert_eq!(usage.total.micro_usd, Some(expected));
    assert_eq!(usage.total.calls, 2);
}

#[test]
fn a_policy_keeps_blocked_requests_from_the_real_server_and_redacts_what_it_sends_and_returns() {
    let Some(paths) = llm_support::llama_paths() else {
        return;
    };
    let _one = llm_support::one_at_a_time();
    let server = llm_support::LlamaServer::start(&paths);
    let proxy = CountingProxy::start(format!("http://127.0.0.1:{}/v1", server.port));
    let dir = tempfile::tempdir().unwrap();
    let policy = agentmesh_core::policy::Policy::from_value(json!({
        "version": 1, "name": "e2e",
        "rules": [
            {"id": "no-ssn", "detect": "ssn", "action": "block", "on": ["llmRequest"]},
            {"id": "pii-email", "detect": "email", "action": "redact"},
            {"id": "words", "regex": "[A-Za-z]{2,}", "action": "redact", "on": ["llmResponse"]}
        ]
    }))
    .unwrap();
    let mut mesh = Mesh::new().with_log_dir(dir.path()).with_policy(policy);
    let provider = agentmesh_providers::executor_from_config(
        "local",
        &json!({"kind": "openai", "baseUrl": proxy.base_url(), "maxRetries": 0}),
    )
    .unwrap();
    mesh.provider("local", provider);
    mesh.agent("asker", |_, ctx| {
        let ask = |content: &str| {
            json!({"model": "smollm2", "messages": [{"role": "user", "content": content}],
                   "maxTokens": 8, "temperature": 0, "seed": 1})
        };
        let e = ctx
            .llm("local", ask("My SSN is 219-09-9999, remember it."))
            .unwrap_err();
        assert_eq!(e.kind(), agentmesh_core::ErrorKind::PolicyDenied);
        let mut chunks = Vec::new();
        let reply = ctx
            .llm_stream("local", ask("Say hello to ann@example.com."), &mut |c| {
                chunks.push(c.clone())
            })
            .map_err(|e| agentmesh_core::Failure::error("LlmError", e.to_string()))?;
        // The response rule redacts every word (keys are judged too) before the agent sees
        // it, streamed or not.
        let shown = reply.response.to_string();
        let rest = shown.replace("[REDACTED:words]", "");
        assert!(
            !rest
                .as_bytes()
                .windows(2)
                .any(|w| w.iter().all(u8::is_ascii_alphabetic)),
            "{shown}"
        );
        assert!(shown.contains("[REDACTED:words]"), "{shown}");
        assert_eq!(chunks.len(), 1, "a judged response streams once, recorded");
        let text = shown;
        Ok(json!({"reply": text}).into())
    });
    let wf = Workflow::from_value(json!({"name": "llm-policy", "nodes": [
        {"id": "ask", "type": "agent", "agent": "asker"}]}))
    .unwrap();
    let r = mesh.run(&wf, RunOptions::default()).unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    let bodies = proxy.bodies();
    assert_eq!(
        bodies.len(),
        1,
        "the blocked request reached the server: {bodies:?}"
    );
    assert!(!bodies[0].contains("219-09-9999") && !bodies[0].contains("ann@example.com"));
    assert!(bodies[0].contains("[REDACTED:email]"), "{}", bodies[0]);
    let log = std::fs::read_to_string(r.log_path.as_ref().unwrap()).unwrap();
    assert!(!log.contains("219-09-9999") && !log.contains("ann@example.com"));
}
