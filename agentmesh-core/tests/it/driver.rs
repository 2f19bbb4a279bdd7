//! The Rust driver (`Mesh`): parallelism, timeouts, panics, registration checks, cancellation
//! and `RunResult::into_output`.
//!
//! Agents that must wait for something wait with a generous bound and fail when it passes, so
//! a broken driver fails these tests instead of hanging them.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use agentmesh_core::{
    replay, CancelHandle, ErrorKind, Failure, Mesh, RunOptions, RunResult, RunStatus, Workflow,
};
use serde_json::{json, Value};

use crate::common::*;

/// How long an agent waits for an event the test guarantees will happen.
const PATIENCE: Duration = Duration::from_secs(10);

fn opts(run_id: &str) -> RunOptions {
    RunOptions {
        run_id: Some(run_id.into()),
        ..Default::default()
    }
}

/// A one-shot signal that can be waited on from inside an agent (`Receiver` is not `Sync`).
#[derive(Clone)]
struct Signal(Arc<Mutex<Receiver<()>>>, Sender<()>);

impl Signal {
    fn new() -> Signal {
        let (tx, rx) = channel();
        Signal(Arc::new(Mutex::new(rx)), tx)
    }
    fn fire(&self) {
        let _ = self.1.send(());
    }
    fn wait(&self) -> bool {
        self.0.lock().unwrap().recv_timeout(PATIENCE).is_ok()
    }
}

fn result_events(r: &RunResult) -> Vec<Value> {
    log_events(r.log_path.as_ref().expect("file log"))
}

#[test]
fn activations_of_one_step_run_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "par", "nodes": [
        {"id": "left", "type": "agent", "agent": "meet"},
        {"id": "right", "type": "agent", "agent": "meet"},
        {"id": "after", "type": "agent", "agent": "meet", "after": ["left", "right"]}
    ]}));
    // Each activation of step 1 waits until both have started: a serial driver fails here.
    let arrived = Arc::new((Mutex::new(0u32), Condvar::new()));
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    mesh.agent("meet", move |act, _| {
        if &*act.node == "after" {
            return Ok(json!("joined").into());
        }
        let (count, cv) = &*arrived;
        let mut n = count.lock().unwrap();
        *n += 1;
        cv.notify_all();
        let (n, wait) = cv.wait_timeout_while(n, PATIENCE, |n| *n < 2).unwrap();
        drop(n);
        if wait.timed_out() {
            Err(
                Failure::error("NoOverlap", "the other activation never started")
                    .permanent()
                    .into(),
            )
        } else {
            Ok(json!("met").into())
        }
    });
    let r = mesh.run(&w, opts("par")).unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(r.output, Some(json!({"after": "joined"})));
    let ev = result_events(&r);
    assert_eq!(ev[4]["data"], json!({"output": "met"}));
    assert_eq!(ev[5]["data"], json!({"output": "met"}));
}

#[test]
fn a_timeout_is_enforced_while_the_agent_sleeps_and_its_late_result_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "slow", "nodes": [
        {"id": "slow", "type": "agent", "agent": "sleepy", "timeoutMs": 50}
    ]}));
    let release = Signal::new();
    let returned = Signal::new();
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    let (rel, ret) = (release.clone(), returned.clone());
    mesh.agent("sleepy", move |_, _| {
        rel.wait();
        ret.fire();
        Ok(json!("late").into())
    });
    let r = mesh.run(&w, opts("slow")).unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    let err = r.error.clone().unwrap();
    assert_eq!(err.code, "TIMEOUT");
    assert_eq!(err.node.as_deref(), Some("slow"));
    assert_eq!(
        err.message,
        "node 'slow' failed on attempt 1/1: Timeout: no result within 50 ms"
    );
    let path = r.log_path.clone().unwrap();
    let ev = log_events(&path);
    assert_eq!(
        summary(&ev),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled slow",
            "4 agentFailed slow",
            "5 runFailed"
        ]
    );
    assert_eq!(
        ev[3]["data"]["error"],
        json!({"kind": "timeout", "type": "Timeout", "message": "no result within 50 ms", "retryable": true})
    );
    // The agent is still running: let it finish and check its result went nowhere.
    let bytes = std::fs::read(&path).unwrap();
    release.fire();
    assert!(returned.wait(), "the agent did not return");
    thread::sleep(Duration::from_millis(20));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(
        replay(&path, None).unwrap().outcome.status,
        RunStatus::Failed
    );
}

#[test]
fn a_late_result_arriving_during_the_retry_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "slow", "nodes": [
        {"id": "slow", "type": "agent", "agent": "sleepy", "timeoutMs": 500,
         "retry": {"maxAttempts": 2}}
    ]}));
    let release = Signal::new();
    let returned = Signal::new();
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    let (rel, ret) = (release.clone(), returned.clone());
    mesh.agent("sleepy", move |act, _| {
        if act.attempt == 1 {
            // Blocks past its deadline until the retry runs.
            rel.wait();
            ret.fire();
            Ok(json!("late").into())
        } else {
            rel.fire();
            ret.wait();
            Ok(json!("fresh").into())
        }
    });
    let r = mesh.run(&w, opts("retry")).unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(r.output, Some(json!({"slow": "fresh"})));
    let path = r.log_path.clone().unwrap();
    let ev = log_events(&path);
    assert_eq!(
        summary(&ev),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled slow",
            "4 agentFailed slow",
            "5 stepStarted",
            "6 agentScheduled slow",
            "7 agentCompleted slow",
            "8 runCompleted"
        ]
    );
    assert_eq!(ev[3]["data"]["error"]["kind"], "timeout");
    assert_eq!(
        ev[5]["data"],
        json!({"agent": "sleepy", "timeoutMs": 500, "retryOf": 4})
    );
    assert!(!std::fs::read_to_string(&path).unwrap().contains("late"));
}

#[test]
fn a_panicking_agent_fails_the_run_without_unwinding_into_the_host() {
    let dir = tempfile::tempdir().unwrap();
    // Alone in its step (run inline) and beside another activation (run on the pool).
    let alone = wf(json!({"name": "alone", "nodes": [
        {"id": "p", "type": "agent", "agent": "panics", "retry": {"maxAttempts": 3}}
    ]}));
    let paired = wf(json!({"name": "paired", "nodes": [
        {"id": "fine", "type": "agent", "agent": "fine"},
        {"id": "p", "type": "agent", "agent": "panics", "retry": {"maxAttempts": 3}}
    ]}));
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    mesh.agent("panics", |act, _| panic!("boom at {}", act.id));
    mesh.agent("fine", |_, _| Ok(json!(1).into()));
    for (w, id, seq) in [(&alone, 3, 4), (&paired, 4, 6)] {
        let r = mesh.run(w, opts(w.name())).unwrap();
        assert_eq!(r.status, RunStatus::Failed);
        let err = r.error.clone().unwrap();
        assert_eq!(err.code, "AGENT_FAILED");
        assert_eq!(err.node.as_deref(), Some("p"));
        assert_eq!(
            err.message,
            format!("node 'p' failed on attempt 1/3 (not retryable): panic: boom at {id}")
        );
        let ev = result_events(&r);
        let failed = &ev[seq - 1];
        assert_eq!(failed["type"], "agentFailed");
        assert_eq!(
            failed["data"]["error"],
            json!({"kind": "error", "type": "panic", "message": format!("boom at {id}"), "retryable": false})
        );
        assert_eq!(ev.last().unwrap()["type"], "runFailed");
        let e = r.into_output().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AgentFailed);
    }
}

#[test]
fn unknown_agents_and_tools_are_rejected_before_any_file_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "names", "nodes": [
        {"id": "a", "type": "agent", "agent": "known"},
        {"id": "b", "type": "agent", "agent": "ghost"},
        {"id": "c", "type": "tool", "tool": "hammer"}
    ]}));
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    mesh.agent("known", |_, _| Ok(json!(1).into()));
    // An agent of the tool's name does not count as the tool.
    mesh.agent("hammer", |_, _| Ok(json!(1).into()));
    let files = || std::fs::read_dir(dir.path()).unwrap().count();

    let e = mesh.run(&w, opts("names")).unwrap_err();
    assert_eq!(e.code(), "UNKNOWN_AGENT");
    assert_eq!(
        e.message(),
        "workflow 'names' uses agent 'ghost', tool 'hammer' (registered as an agent, not a tool), not registered with this mesh (registered agents: 'hammer', 'known'; tools: none)"
    );
    let e = mesh.start(&w, opts("names")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownAgent);
    assert_eq!(files(), 0);

    mesh.agent("ghost", |_, _| Ok(json!(1).into()));
    let e = mesh.run(&w, opts("names")).unwrap_err();
    assert_eq!(e.code(), "UNKNOWN_AGENT");
    assert_eq!(
        e.message(),
        "workflow 'names' uses tool 'hammer' (registered as an agent, not a tool), not registered with this mesh (registered agents: 'ghost', 'hammer', 'known'; tools: none)"
    );
    assert_eq!(files(), 0);

    mesh.tool("hammer", |_, _| Ok(json!(2).into()));
    let r = mesh.run(&w, opts("names")).unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.output, Some(json!({"a": 1, "b": 1, "c": 2})));
    assert_eq!(files(), 1);
}

#[test]
fn a_cancel_handle_stops_a_run_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "cancel", "nodes": [
        {"id": "x", "type": "agent", "agent": "block"},
        {"id": "y", "type": "agent", "agent": "block"},
        {"id": "z", "type": "agent", "agent": "block", "after": ["x", "y"]}
    ]}));
    let (started_tx, started_rx) = channel::<()>();
    let started_tx = Arc::new(Mutex::new(started_tx));
    let release = Signal::new();
    let finished = Signal::new();
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    let (rel, fin) = (release.clone(), finished.clone());
    mesh.agent("block", move |_, _| {
        started_tx.lock().unwrap().send(()).unwrap();
        let released = rel.wait();
        rel.fire(); // pass the release on to the other agent
        fin.fire();
        if released {
            Ok(json!("too late").into())
        } else {
            Err(Failure::error("Stuck", "never released").into())
        }
    });
    let handle = CancelHandle::new();
    let canceller = {
        let handle = handle.clone();
        thread::spawn(move || {
            for _ in 0..2 {
                started_rx.recv_timeout(PATIENCE).expect("agents start");
            }
            handle.cancel("user stop");
            handle.cancel("second reason is ignored");
        })
    };
    let r = mesh.run_with(&w, opts("cancel"), &handle).unwrap();
    canceller.join().unwrap();
    assert!(handle.is_cancelled());
    assert_eq!(r.status, RunStatus::Cancelled);
    let err = r.error.clone().unwrap();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("CANCELLED", "user stop")
    );
    let path = r.log_path.clone().unwrap();
    let ev = log_events(&path);
    assert_eq!(
        summary(&ev),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled x",
            "4 agentScheduled y",
            "5 activationCancelled x",
            "6 activationCancelled y",
            "7 runCancelled"
        ]
    );
    assert_eq!(ev[6]["data"], json!({"reason": "user stop"}));
    // The agents finish after the run ended; nothing they return reaches the log.
    let bytes = std::fs::read(&path).unwrap();
    release.fire();
    assert!(finished.wait() && finished.wait());
    thread::sleep(Duration::from_millis(20));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let e = r.into_output().unwrap_err();
    assert_eq!((e.code(), e.message()), ("CANCELLED", "user stop"));
}

#[test]
fn a_handle_cancelled_before_the_run_cancels_it_before_any_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "pre", "nodes": [{"id": "a", "type": "agent", "agent": "never"}]}));
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    mesh.agent("never", |_, _| panic!("must not be called"));
    let handle = CancelHandle::new();
    handle.cancel("not today");
    let r = mesh.run_with(&w, opts("pre"), &handle).unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);
    assert_eq!(
        summary(&result_events(&r)),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled a",
            "4 activationCancelled a",
            "5 runCancelled"
        ]
    );
}

#[test]
fn an_agent_can_cancel_its_own_run() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    let release = Signal::new();
    let log = calls.clone();
    let rel = release.clone();
    mesh.agent("stopper", move |act, ctx| {
        log.lock().unwrap().push(act.node.to_string());
        ctx.cancel_run("agent said stop");
        Ok(json!("ignored").into())
    });
    let log = calls.clone();
    mesh.agent("other", move |act, _| {
        log.lock().unwrap().push(act.node.to_string());
        rel.wait();
        Ok(json!("other").into())
    });

    // Inline: the only activation of its step.
    let chain = wf(json!({"name": "chain", "nodes": [
        {"id": "a", "type": "agent", "agent": "stopper"},
        {"id": "b", "type": "agent", "agent": "other", "after": ["a"]}
    ]}));
    let r = mesh.run(&chain, opts("chain")).unwrap();
    assert_eq!(r.status, RunStatus::Cancelled);
    assert_eq!(r.error.clone().unwrap().message, "agent said stop");
    let ev = result_events(&r);
    assert_eq!(
        summary(&ev),
        [
            "1 runStarted",
            "2 stepStarted",
            "3 agentScheduled a",
            "4 activationCancelled a",
            "5 runCancelled"
        ]
    );
    assert_eq!(ev[3]["data"], json!({"reason": "agent said stop"}));
    assert_eq!(*calls.lock().unwrap(), ["a"], "b never ran");

    // On the pool, beside an activation that is still running.
    let pair = wf(json!({"name": "pair", "nodes": [
        {"id": "s", "type": "agent", "agent": "stopper"},
        {"id": "o", "type": "agent", "agent": "other"}
    ]}));
    let r = mesh.run(&pair, opts("pair")).unwrap();
    release.fire();
    assert_eq!(r.status, RunStatus::Cancelled);
    assert_eq!(
        summary(&result_events(&r))[3..],
        [
            "4 agentScheduled o",
            "5 activationCancelled s",
            "6 activationCancelled o",
            "7 runCancelled"
        ]
    );
    assert_eq!(
        replay(r.log_path.as_ref().unwrap(), None)
            .unwrap()
            .outcome
            .status,
        RunStatus::Cancelled
    );
}

#[test]
fn into_output_maps_each_outcome_to_its_code() {
    let mut mesh = Mesh::new();
    mesh.agent("ok", |act, _| Ok(json!({"from": &*act.node}).into()));
    mesh.agent(
        "fails",
        |_, _| Err(Failure::error("Nope", "no luck").into()),
    );
    mesh.agent("times_out", |_, _| Err(Failure::timeout(20).into()));
    let run = |spec: Value, cancel: &CancelHandle| -> RunResult {
        let w: Workflow = wf(spec);
        mesh.run_with(&w, RunOptions::default(), cancel).unwrap()
    };
    let live = CancelHandle::new();

    let done = run(
        json!({"name": "ok", "nodes": [{"id": "a", "type": "agent", "agent": "ok"}]}),
        &live,
    );
    assert_eq!(done.log_path, None, "no log dir: the log is in memory");
    assert_eq!(done.fingerprint().unwrap().len(), 64);
    assert_eq!(done.into_output().unwrap(), json!({"a": {"from": "a"}}));

    let cases: Vec<(Value, bool, ErrorKind, &str)> = vec![
        (
            json!({"name": "f", "nodes": [{"id": "a", "type": "agent", "agent": "fails"}]}),
            false,
            ErrorKind::AgentFailed,
            "node 'a' failed on attempt 1/1: Nope: no luck",
        ),
        (
            json!({"name": "t", "nodes": [{"id": "a", "type": "agent", "agent": "times_out"}]}),
            false,
            ErrorKind::Timeout,
            "node 'a' failed on attempt 1/1: Timeout: no result within 20 ms",
        ),
        (
            json!({"name": "l", "maxSteps": 1, "nodes": [
                {"id": "a", "type": "agent", "agent": "ok"},
                {"id": "b", "type": "agent", "agent": "ok", "after": ["a"]}
            ]}),
            false,
            ErrorKind::LimitExceeded,
            "the run would start step 2 but maxSteps is 1",
        ),
        (
            json!({"name": "c", "nodes": [{"id": "a", "type": "agent", "agent": "ok"}]}),
            true,
            ErrorKind::Cancelled,
            "stopped",
        ),
    ];
    for (spec, cancelled, kind, message) in cases {
        let handle = CancelHandle::new();
        if cancelled {
            handle.cancel("stopped");
        }
        let r = run(spec, &handle);
        let e = r.into_output().unwrap_err();
        assert_eq!(e.kind(), kind);
        assert_eq!(e.message(), message);
    }

    let waiting = run(
        json!({"name": "w", "nodes": [{"id": "h", "type": "human"}]}),
        &live,
    );
    assert_eq!(waiting.status, RunStatus::Waiting);
    let id = waiting.run_id.clone();
    let e = waiting.into_output().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(e.message(), format!("run '{id}' is waiting"));
}

#[test]
fn fork_and_resume_check_registration_before_touching_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "two", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "b", "type": "agent", "agent": "B", "after": ["a"]}
    ]}));
    let mut full = Mesh::new().with_log_dir(dir.path());
    full.agent("A", |_, _| Ok(json!(1).into()));
    full.agent("B", |_, _| Ok(json!(2).into()));
    let r = full
        .run(
            &w,
            RunOptions {
                run_id: Some("p".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let path = r.log_path.unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut partial = Mesh::new().with_log_dir(dir.path());
    partial.agent("A", |_, _| Ok(json!(1).into()));
    let e = partial
        .fork(&path, 4, Default::default(), Some("f".into()))
        .unwrap_err();
    assert_eq!(e.code(), "UNKNOWN_AGENT");
    assert!(
        !dir.path().join("f.jsonl").exists(),
        "no fork log is created"
    );
    let e = partial.resume(&path, Default::default()).unwrap_err();
    assert_eq!(e.code(), "UNKNOWN_AGENT");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_failed_attempt_records_the_tokens_it_spent() {
    use agentmesh_core::{AgentError, Usage};
    let workflow = wf(json!({"name": "paid", "nodes": [
        {"id": "llm", "type": "agent", "agent": "llm", "retry": {"maxAttempts": 2}}]}));
    let mut mesh = Mesh::new();
    mesh.agent("llm", |act, _| {
        let usage = Usage::tokens(900, 40 * u64::from(act.attempt));
        if act.attempt == 1 {
            Err(AgentError::from(Failure::error("RateLimited", "429")).with_usage(usage))
        } else {
            Ok(agentmesh_core::AgentOutput {
                output: json!("ok"),
                usage: Some(usage),
            })
        }
    });
    let result = mesh.run(&workflow, RunOptions::default()).unwrap();
    let text = String::from_utf8(result.canonical().unwrap()).unwrap();
    let failed = text
        .lines()
        .find(|l| l.contains("\"agentFailed\""))
        .unwrap();
    assert!(
        failed.ends_with(r#""usage":{"inputTokens":900,"outputTokens":40}}}"#),
        "{failed}"
    );
    let completed = text
        .lines()
        .find(|l| l.contains("\"agentCompleted\""))
        .unwrap();
    assert!(completed.contains(r#""usage":{"inputTokens":900,"outputTokens":80}"#));
}
