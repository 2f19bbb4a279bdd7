//! Calls inside activations: numbering, canonical order, durability before the call runs,
//! answers from the log after a resume, refusals (docs/calls.md).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agentmesh_core::{
    canonical_log, read_log, verify_log, CallExecutor, CallOutcome, CallRequest, CallTicket,
    Completion, ErrorDetail, EventData, FsyncMode, Mesh, Run, RunOptions, RunStatus, TicketState,
    ToolAccess, Usage,
};
use serde_json::{json, Value};

use crate::common::wf;

/// Answers `{"text": "<prompt>!"}` and counts how often it was really called.
struct Echo {
    calls: AtomicUsize,
}

impl Echo {
    fn new() -> Arc<Echo> {
        Arc::new(Echo {
            calls: AtomicUsize::new(0),
        })
    }
    fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl CallExecutor for Echo {
    fn execute(
        &self,
        request: &Value,
        _ticket: &CallTicket,
        on_chunk: Option<&mut dyn FnMut(&Value)>,
    ) -> CallOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let text = format!("{}!", request["prompt"].as_str().unwrap_or(""));
        if let Some(f) = on_chunk {
            for c in text.chars() {
                f(&json!({ "text": c.to_string() }));
            }
        }
        CallOutcome::ok(json!({"text": text, "finishReason": "stop"}))
            .with_usage(Usage::tokens(3, 1))
    }
}

fn two_agents() -> agentmesh_core::Workflow {
    wf(json!({"name": "calls", "nodes": [
        {"id": "a", "type": "agent", "agent": "talker"},
        {"id": "b", "type": "agent", "agent": "talker"},
        {"id": "c", "type": "agent", "agent": "talker", "after": ["a", "b"]}]}))
}

fn talker_mesh(echo: &Arc<Echo>, calls: usize) -> Mesh {
    let mut mesh = Mesh::new();
    mesh.provider("echo", echo.clone());
    mesh.agent("talker", move |act, ctx| {
        let mut out = Vec::new();
        for i in 0..calls {
            let r = ctx
                .llm("echo", json!({"prompt": format!("{}-{i}", act.node)}))
                .map_err(|e| agentmesh_core::Failure::error("E", e.to_string()))?;
            out.push(r.text().to_owned());
        }
        Ok(json!(out).into())
    });
    mesh
}

#[test]
fn parallel_agents_calls_sit_under_their_own_completion_in_canonical_order() {
    let echo = Echo::new();
    let dir = tempfile::tempdir().unwrap();
    let mesh = talker_mesh(&echo, 3).with_log_dir(dir.path());
    let r = mesh.run(&two_agents(), RunOptions::default()).unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(echo.count(), 9);
    // Calls' usage counts for their node and agent, and the model they name.
    let usage = r.usage().unwrap();
    assert_eq!(
        (usage.total.input_tokens, usage.total.output_tokens),
        (27, 9)
    );
    assert_eq!(usage.by_node["a"].input_tokens, 9);
    assert_eq!(usage.by_agent["talker"].output_tokens, 9);
    let path = r.log_path.clone().unwrap();
    verify_log(&path).unwrap();
    let (_, events) = read_log(&path).unwrap();
    // a and b run in parallel: their calls sit under seqs 5 and 6, before each completion.
    let keys: Vec<(u64, Option<u32>, &str)> = events
        .iter()
        .map(|e| (e.seq, e.sub, e.type_name()))
        .filter(|(s, _, _)| *s == 5 || *s == 6)
        .collect();
    let mut expected = Vec::new();
    for seq in [5, 6] {
        for sub in 1..=6u32 {
            let t = if sub % 2 == 1 {
                "callStarted"
            } else {
                "callCompleted"
            };
            expected.push((seq, Some(sub), t));
        }
        expected.push((seq, None, "agentCompleted"));
    }
    assert_eq!(keys, expected);
    // Same bytes from a run in memory, however the threads interleaved.
    let mut file = Vec::new();
    canonical_log(&path, &mut file).unwrap();
    for _ in 0..5 {
        let mem = talker_mesh(&echo, 3)
            .run(&two_agents(), RunOptions::default())
            .unwrap();
        assert_eq!(mem.canonical().unwrap(), file);
    }
}

#[test]
fn a_resumed_agent_gets_recorded_answers_and_only_new_calls_go_out() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "one", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}));
    let mut run = Run::start(
        &w,
        RunOptions {
            log_dir: Some(dir.path().into()),
            fsync: FsyncMode::Always,
            run_id: Some("resume-calls".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let act = run.poll().unwrap().remove(0);
    // Call 1 completes, call 2 is in flight when the process "dies".
    let t1 = run
        .call_start(act.id, CallRequest::llm("p", json!({"prompt": "one"})))
        .unwrap();
    assert!(t1.is_live());
    assert_eq!((t1.call, t1.seq), (1, 4));
    run.call_complete(act.id, 1, CallOutcome::ok(json!({"text": "1"})))
        .unwrap();
    let t2 = run
        .call_start(act.id, CallRequest::llm("p", json!({"prompt": "two"})))
        .unwrap();
    let path = run.log_path().unwrap().to_owned();
    drop(run);

    let mut run = Run::resume(&path, FsyncMode::Always).unwrap();
    let act = run.poll().unwrap().remove(0);
    let again = run
        .call_start(act.id, CallRequest::llm("p", json!({"prompt": "one"})))
        .unwrap();
    match &again.state {
        TicketState::Recorded(o) => {
            assert_eq!(*o.result.as_ref().unwrap().as_ref(), json!({"text": "1"}))
        }
        other => panic!("a recorded call is {other:?}"),
    }
    let late = run
        .call_complete(act.id, 1, CallOutcome::ok(json!(1)))
        .unwrap_err();
    assert_eq!(late.code(), "INVALID_COMPLETION", "{late}");
    // The in-flight call is live again under the same number and idempotency key.
    let t2b = run
        .call_start(act.id, CallRequest::llm("p", json!({"prompt": "two"})))
        .unwrap();
    assert!(t2b.is_live());
    assert_eq!((t2b.call, &t2b.idempotency_key), (2, &t2.idempotency_key));
    run.call_complete(act.id, 2, CallOutcome::ok(json!({"text": "2"})))
        .unwrap();
    let t3 = run
        .call_start(act.id, CallRequest::tool("t", json!({"q": 1})))
        .unwrap();
    assert_eq!(t3.call, 3);
    run.call_complete(act.id, 3, CallOutcome::ok(json!(3)))
        .unwrap();
    run.complete(act.id, Completion::ok(json!("done"))).unwrap();
    assert_eq!(run.status().unwrap(), RunStatus::Completed);
    // One callStarted per call: the re-issued call wrote nothing new.
    let started = read_log(&path)
        .unwrap()
        .1
        .iter()
        .filter(|e| matches!(e.data, EventData::CallStarted(_)))
        .count();
    assert_eq!(started, 3);
    // Calls after the completion are refused and never logged.
    let before = std::fs::read(&path).unwrap();
    let e = run
        .call_start(act.id, CallRequest::llm("p", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "INVALID_COMPLETION");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_different_call_after_a_resume_is_nondeterminism_naming_seq_sub_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "one", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}));
    let mut run = Run::start(
        &w,
        RunOptions {
            log_dir: Some(dir.path().into()),
            run_id: Some("diverge".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let act = run.poll().unwrap().remove(0);
    let req = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    run.call_start(act.id, CallRequest::llm("p", req)).unwrap();
    run.call_complete(act.id, 1, CallOutcome::ok(json!({"text": "x"})))
        .unwrap();
    let path = run.log_path().unwrap().to_owned();
    drop(run);
    let mut run = Run::resume(&path, FsyncMode::Never).unwrap();
    let act = run.poll().unwrap().remove(0);
    let changed = json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]});
    let e = run
        .call_start(act.id, CallRequest::llm("p", changed))
        .unwrap_err();
    assert_eq!(e.code(), "NONDETERMINISM");
    assert!(e.message().contains("seq 4 sub 1"), "{e}");
    match e.detail() {
        Some(ErrorDetail::Nondeterminism {
            seq,
            field,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(*seq, 4);
            assert_eq!(field, "data.request.messages[0].content");
            assert_eq!(
                (expected.as_str(), actual.as_str()),
                ("\"hi\"", "\"hello\"")
            );
        }
        other => panic!("{other:?}"),
    }
    // An agent that stops short of its recorded calls fails, not retryably.
    run.complete(act.id, Completion::ok(json!(1))).unwrap();
    let o = run.outcome().unwrap();
    assert_eq!(o.status, RunStatus::Failed);
    assert!(o.error.unwrap().message.contains("NondeterminismError"));
}

#[test]
fn batches_fix_numbers_and_results_land_at_reserved_subs_in_any_order() {
    let w = wf(json!({"name": "one", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}));
    let mut canon = Vec::new();
    for order in [[1u32, 2, 3], [3, 1, 2], [2, 3, 1]] {
        let mut run = Run::start(&w, RunOptions::default()).unwrap();
        let act = run.poll().unwrap().remove(0);
        let tickets = run
            .call_start_many(
                act.id,
                (0..3)
                    .map(|i| CallRequest::tool("t", json!({ "i": i })))
                    .collect(),
            )
            .unwrap();
        assert_eq!(
            tickets.iter().map(|t| t.call).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        for c in order {
            run.call_complete(act.id, c, CallOutcome::ok(json!(c)))
                .unwrap();
        }
        run.complete(act.id, Completion::ok(json!(0))).unwrap();
        canon.push(run.canonical().unwrap());
    }
    assert_eq!(canon[0], canon[1]);
    assert_eq!(canon[0], canon[2]);
    // A batch with one bad request records nothing.
    let mut run = Run::start(&w, RunOptions::default()).unwrap();
    let act = run.poll().unwrap().remove(0);
    let e = run
        .call_start_many(
            act.id,
            vec![
                CallRequest::tool("t", json!(1)),
                CallRequest::tool("", json!(2)),
            ],
        )
        .unwrap_err();
    assert_eq!(e.code(), "INVALID_ARGUMENT");
    let t = run
        .call_start(act.id, CallRequest::tool("t", json!(1)))
        .unwrap();
    assert_eq!(t.call, 1, "the refused batch took no numbers");
}

#[test]
fn a_timed_out_activation_refuses_its_late_call_result() {
    let w = wf(json!({"name": "one", "nodes": [
        {"id": "a", "type": "agent", "agent": "x", "timeoutMs": 10}]}));
    let mut run = Run::start(&w, RunOptions::default()).unwrap();
    let act = run.poll().unwrap().remove(0);
    run.call_start(act.id, CallRequest::tool("t", json!(1)))
        .unwrap();
    run.complete(act.id, Completion::timed_out()).unwrap();
    let e = run
        .call_complete(act.id, 1, CallOutcome::ok(json!(1)))
        .unwrap_err();
    assert_eq!(e.code(), "INVALID_COMPLETION");
    let events = run.events().unwrap();
    assert!(!events
        .iter()
        .any(|e| matches!(e.data, EventData::CallCompleted(_))));
    // The canonical log keeps the unanswered call before the timeout.
    let text = String::from_utf8(run.canonical().unwrap()).unwrap();
    let started = text.find("callStarted").unwrap();
    assert!(started < text.find("agentFailed").unwrap());
}

#[test]
fn a_crash_mid_agent_is_resumed_without_repeating_paid_calls() {
    let dir = tempfile::tempdir().unwrap();
    let echo = Echo::new();
    let w = wf(json!({"name": "one", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}));
    // First process: the agent makes 2 calls, then "dies" (the agent panics after them and
    // the test drops the run before the failure could matter: we drive by hand).
    let mut run = Run::start(
        &w,
        RunOptions {
            log_dir: Some(dir.path().into()),
            run_id: Some("crash".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let act = run.poll().unwrap().remove(0);
    for p in ["a", "b"] {
        let t = run
            .call_start(act.id, CallRequest::llm("echo", json!({ "prompt": p })))
            .unwrap();
        let out = echo.execute(&json!({ "prompt": p }), &t, None);
        run.call_complete(act.id, t.call, out).unwrap();
    }
    let path = run.log_path().unwrap().to_owned();
    drop(run);
    assert_eq!(echo.count(), 2);
    // Second process: the mesh re-runs the agent, which makes 3 calls; 2 come from the log.
    let mut mesh = Mesh::new();
    mesh.provider("echo", echo.clone());
    let chunks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = chunks.clone();
    mesh.agent("x", move |_, ctx| {
        let mut texts = Vec::new();
        for p in ["a", "b", "c"] {
            let mut on = |c: &Value| seen.lock().unwrap().push(c.clone());
            let r = ctx
                .llm_stream("echo", json!({ "prompt": p }), &mut on)
                .map_err(|e| agentmesh_core::Failure::error("E", e.to_string()))?;
            texts.push(r.text().to_owned());
        }
        Ok(json!(texts).into())
    });
    let r = mesh.resume(&path, Default::default()).unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output.unwrap()["a"], json!(["a!", "b!", "c!"]));
    assert_eq!(echo.count(), 3, "only the third call was made");
    // Recorded answers stream as one chunk each; the live one char by char.
    let chunks = chunks.lock().unwrap();
    assert_eq!(chunks[0], json!({"text": "a!"}));
    assert_eq!(chunks[1], json!({"text": "b!"}));
    assert_eq!(chunks.len(), 4);
    verify_log(&path).unwrap();
}

#[test]
fn unknown_providers_are_typed_errors() {
    let mut mesh = Mesh::new();
    mesh.agent("x", |_, ctx| match ctx.llm("nope", json!({})) {
        Err(e) => Ok(json!(e.code()).into()),
        Ok(_) => Ok(json!("called").into()),
    });
    let w = wf(json!({"name": "one", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}));
    let r = mesh.run(&w, RunOptions::default()).unwrap();
    assert_eq!(r.output.unwrap()["a"], json!("UNKNOWN_AGENT"));
}

#[test]
fn a_tool_refuses_agents_outside_its_allowlist_before_anything_is_recorded() {
    let echo = Echo::new();
    let mut mesh = Mesh::new();
    mesh.call_tool_with("search", echo.clone(), ToolAccess::only(["researcher"]));
    let agent = |act: &agentmesh_core::Activation, ctx: &agentmesh_core::Context<'_>| {
        let prompt = act.node.to_string();
        Ok(match ctx.tool("search", json!({ "prompt": prompt })) {
            Ok(r) => json!(r.text()),
            Err(e) => json!([e.code(), e.message()]),
        }
        .into())
    };
    mesh.agent("researcher", agent);
    mesh.agent("writer", agent);
    let w = wf(json!({"name": "allow", "nodes": [
        {"id": "r", "type": "agent", "agent": "researcher"},
        {"id": "w", "type": "agent", "agent": "writer"}]}));
    let dir = tempfile::tempdir().unwrap();
    let mesh = mesh.with_log_dir(dir.path());
    let r = mesh.run(&w, RunOptions::default()).unwrap();
    let out = r.output.clone().unwrap();
    assert_eq!(out["r"], json!("r!"));
    assert_eq!(out["w"][0], json!("POLICY_DENIED"));
    assert_eq!(
        out["w"][1],
        json!("agent 'writer' may not call tool 'search' (agents allowed: researcher); nothing was recorded")
    );
    // The tool ran once (for the researcher), and only its call is in the log.
    assert_eq!(echo.count(), 1);
    let started = read_log(r.log_path.as_ref().unwrap())
        .unwrap()
        .1
        .iter()
        .filter(|e| matches!(e.data, EventData::CallStarted(_)))
        .count();
    assert_eq!(started, 1);
}

#[test]
fn a_rate_limited_tool_spaces_its_live_calls() {
    let echo = Echo::new();
    let mut mesh = Mesh::new();
    let per = std::time::Duration::from_millis(150);
    mesh.call_tool_with(
        "search",
        echo.clone(),
        ToolAccess::any().rate_limit(1, per).unwrap(),
    );
    mesh.agent("x", |_, ctx| {
        let mut out = Vec::new();
        for i in 0..3 {
            let r = ctx
                .tool("search", json!({ "prompt": i.to_string() }))
                .map_err(|e| agentmesh_core::Failure::error("E", e.to_string()))?;
            out.push(r.text().to_owned());
        }
        Ok(json!(out).into())
    });
    let w = wf(json!({"name": "rate", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}));
    let started = std::time::Instant::now();
    let r = mesh.run(&w, RunOptions::default()).unwrap();
    // A lower bound only: one call per window, so the third starts two windows in.
    assert!(started.elapsed() >= 2 * per);
    assert_eq!(r.output.unwrap()["a"], json!(["0!", "1!", "2!"]));
    assert_eq!(echo.count(), 3);
}

fn reexec_mesh(echo: &Arc<Echo>, prompt: &'static str, calls: usize, suffix: &'static str) -> Mesh {
    let mut mesh = Mesh::new();
    mesh.provider("echo", echo.clone());
    mesh.agent("talker", move |act, ctx| {
        let mut out = Vec::new();
        for i in 0..calls {
            let r = ctx
                .llm(
                    "echo",
                    json!({"prompt": format!("{}-{prompt}{i}", act.node)}),
                )
                .map_err(|e| agentmesh_core::Failure::error("E", e.to_string()))?;
            out.push(format!("{}{suffix}", r.text()));
        }
        Ok(json!(out).into())
    });
    mesh
}

#[test]
fn re_execute_replay_runs_agents_against_recorded_answers_and_names_the_first_change() {
    let dir = tempfile::tempdir().unwrap();
    let echo = Echo::new();
    let r = reexec_mesh(&echo, "", 2, "")
        .with_log_dir(dir.path())
        .run(&two_agents(), RunOptions::default())
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    let path = r.log_path.unwrap();
    assert_eq!(echo.count(), 6);
    let before = std::fs::read(&path).unwrap();

    // The same agents: equal, and not one call made.
    let replayer = Echo::new();
    let report = reexec_mesh(&replayer, "", 2, "").reexecute(&path).unwrap();
    assert_eq!((report.calls, report.activations), (6, 3));
    assert_eq!(replayer.count(), 0);

    // A changed prompt: reported at its call.
    let e = reexec_mesh(&replayer, "v2-", 2, "")
        .reexecute(&path)
        .unwrap_err();
    assert_eq!(e.code(), "NONDETERMINISM", "{e}");
    match e.detail() {
        Some(ErrorDetail::Nondeterminism { field, seq, .. }) => {
            assert_eq!(field, "data.request.prompt");
            assert!([5, 6].contains(seq), "{seq}");
        }
        other => panic!("{other:?}"),
    }
    // One call more than recorded; a changed output.
    let e = reexec_mesh(&replayer, "", 3, "")
        .reexecute(&path)
        .unwrap_err();
    assert_eq!(e.code(), "NONDETERMINISM");
    assert!(e.message().contains("the log holds 2"), "{e}");
    let e = reexec_mesh(&replayer, "", 2, "?")
        .reexecute(&path)
        .unwrap_err();
    assert_eq!(e.code(), "NONDETERMINISM");
    match e.detail() {
        Some(ErrorDetail::Nondeterminism { field, .. }) => {
            assert!(field.starts_with("data.output"), "{field}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(replayer.count(), 0, "re-execution never calls");
    assert_eq!(std::fs::read(&path).unwrap(), before, "and never writes");
}
