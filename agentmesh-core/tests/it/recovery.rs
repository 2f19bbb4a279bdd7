//! Recovery: retry of failed and cancelled runs (`runReopened`), non-retryable error types,
//! forks under a fixed workflow, meshes that stop at agents they lack, event watching and
//! the host recorded in the header.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use agentmesh_core::{
    read_log, replay, verify_log, AgentError, Event, Failure, ForkOptions, Mesh, RunOptions,
    RunStatus, Workflow,
};
use serde_json::{json, Value};

use crate::common::*;

fn opts(run_id: &str) -> RunOptions {
    RunOptions {
        run_id: Some(run_id.into()),
        ..Default::default()
    }
}

/// plan → fetch (flaky, 2 attempts) → write.
fn pipeline() -> Workflow {
    wf(json!({"name": "recover", "nodes": [
        {"id": "plan", "type": "agent", "agent": "plan"},
        {"id": "fetch", "type": "tool", "tool": "fetch", "after": ["plan"],
         "retry": {"maxAttempts": 2}},
        {"id": "write", "type": "agent", "agent": "write", "after": ["fetch"]}]}))
}

/// A mesh whose `fetch` fails while `down` is set; counts every call per name.
fn mesh(dir: &std::path::Path, down: Arc<Mutex<bool>>, calls: Arc<Mutex<Vec<String>>>) -> Mesh {
    let mut mesh = Mesh::new().with_log_dir(dir);
    for name in ["plan", "write"] {
        let calls = calls.clone();
        mesh.agent(name, move |act, _| {
            calls.lock().unwrap().push(act.node.to_string());
            Ok(json!({"by": &*act.node}).into())
        });
    }
    let c = calls.clone();
    mesh.tool("fetch", move |act, _| {
        c.lock().unwrap().push(format!("fetch#{}", act.attempt));
        if *down.lock().unwrap() {
            Err(Failure::error("ConnectionError", "the server is down").into())
        } else {
            Ok(json!({"hits": 3}).into())
        }
    });
    mesh
}

fn types(path: &std::path::Path) -> Vec<String> {
    let (_, events) = read_log(path).unwrap();
    events.iter().map(|e| e.type_name().to_owned()).collect()
}

#[test]
fn a_failed_run_is_retried_keeping_finished_work() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Mutex::new(true));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let m = mesh(dir.path(), down.clone(), calls.clone());
    let first = m.run(&pipeline(), opts("outage")).unwrap();
    assert_eq!(first.status, RunStatus::Failed);
    let log = first.log_path.clone().unwrap();
    assert_eq!(*calls.lock().unwrap(), ["plan", "fetch#1", "fetch#2"]);

    // The outage is over: retry from another mesh, as a new process would.
    *down.lock().unwrap() = false;
    calls.lock().unwrap().clear();
    let m = mesh(dir.path(), down, calls.clone());
    let done = m.retry(&log).unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(
        *calls.lock().unwrap(),
        ["fetch#3", "write"],
        "plan is not run again; fetch gets attempt 3"
    );
    let t = types(&log);
    let reopened = t.iter().position(|t| t == "runReopened").unwrap();
    assert_eq!(t[reopened - 1], "runFailed");
    assert_eq!(t.last().unwrap(), "runCompleted");
    // The log is a normal log: it verifies and replays equal.
    verify_log(&log).unwrap();
    let report = replay(&log, None).unwrap();
    assert_eq!(report.outcome.status, RunStatus::Completed);
    // The retry attempt links the failure it retries.
    let (_, events) = read_log(&log).unwrap();
    let retried = events
        .iter()
        .find(|e| e.type_name() == "toolScheduled" && e.attempt == Some(3))
        .unwrap();
    let Some(Value::Object(data)) = serde_json::to_value(retried)
        .ok()
        .map(|v| v["data"].clone())
    else {
        panic!()
    };
    let failed_seq = events
        .iter()
        .filter(|e| e.type_name() == "toolFailed")
        .map(|e| e.seq)
        .max()
        .unwrap();
    assert_eq!(data["retryOf"], json!(failed_seq));
}

#[test]
fn a_retried_run_gets_a_fresh_allowance_and_can_fail_again() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Mutex::new(true));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let m = mesh(dir.path(), down, calls.clone());
    let log = m
        .run(&pipeline(), opts("still-down"))
        .unwrap()
        .log_path
        .unwrap();
    let again = m.retry(&log).unwrap();
    assert_eq!(again.status, RunStatus::Failed);
    assert!(
        again
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("failed on attempt 4 (2/2 since the run was retried)"),
        "{:?}",
        again.error
    );
    assert!(calls
        .lock()
        .unwrap()
        .ends_with(&["fetch#3".into(), "fetch#4".into()]));
    // A second retry works the same way, and the log still replays.
    let third = m.retry(&log).unwrap();
    assert_eq!(third.status, RunStatus::Failed);
    assert_eq!(
        types(&log).iter().filter(|t| *t == "runReopened").count(),
        2
    );
    replay(&log, None).unwrap();
}

#[test]
fn a_cancelled_run_is_retried_and_keeps_what_its_step_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "c", "nodes": [
        {"id": "a", "type": "agent", "agent": "a"},
        {"id": "b", "type": "agent", "agent": "b"},
        {"id": "j", "type": "agent", "agent": "a", "after": ["a", "b"]}]}));
    let b_calls = Arc::new(AtomicU32::new(0));
    let make = |cancel: bool| {
        let mut m = Mesh::new().with_log_dir(dir.path());
        m.agent("a", |act, _| Ok(json!(act.node.to_string()).into()));
        let bc = b_calls.clone();
        m.agent("b", move |_, ctx| {
            bc.fetch_add(1, Ordering::SeqCst);
            if cancel {
                ctx.cancel_run("stop");
            }
            Ok(json!("b").into())
        });
        m
    };
    let first = make(true).run(&w, opts("cancelled")).unwrap();
    assert_eq!(first.status, RunStatus::Cancelled);
    let log = first.log_path.unwrap();
    let done = make(false).retry(&log).unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output, Some(json!({"j": "j"})));
    replay(&log, None).unwrap();
}

#[test]
fn retry_refuses_runs_it_cannot_help() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let m = mesh(dir.path(), Arc::new(Mutex::new(false)), calls);
    let done = m.run(&pipeline(), opts("fine")).unwrap();
    let e = m.retry(done.log_path.as_ref().unwrap()).unwrap_err();
    assert_eq!(e.code(), "INVALID_ARGUMENT");
    assert!(e.message().contains("completed"), "{e}");
    assert!(e.message().contains("fork"), "{e}");

    let limited = wf(json!({"name": "l", "maxSteps": 1, "nodes": [
        {"id": "plan", "type": "agent", "agent": "plan"},
        {"id": "write", "type": "agent", "agent": "write", "after": ["plan"]}]}));
    let mut lm = Mesh::new().with_log_dir(dir.path());
    for n in ["plan", "write"] {
        lm.agent(n, |_, _| Ok(json!(1).into()));
    }
    let failed = lm.run(&limited, opts("limit")).unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let log = failed.log_path.unwrap();
    let before = std::fs::read(&log).unwrap();
    let e = lm.retry(&log).unwrap_err();
    assert_eq!(e.code(), "INVALID_ARGUMENT");
    assert!(e.message().contains("limit"), "{e}");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        before,
        "a refused retry writes nothing"
    );
}

#[test]
fn programming_errors_are_not_retried_unless_asked() {
    let w = |retry: Value| {
        wf(json!({"name": "p", "nodes": [
            {"id": "a", "type": "agent", "agent": "a", "retry": retry}]}))
    };
    let attempts = |w: &Workflow, error_type: &'static str| {
        let n = Arc::new(AtomicU32::new(0));
        let mut m = Mesh::new();
        let c = n.clone();
        m.agent("a", move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
            Err(AgentError::from(Failure::error(error_type, "bug")))
        });
        let r = m.run(w, RunOptions::default()).unwrap();
        assert_eq!(r.status, RunStatus::Failed);
        (n.load(Ordering::SeqCst), r.error.unwrap().message)
    };
    let plain = w(json!({"maxAttempts": 3}));
    let (n, message) = attempts(&plain, "AttributeError");
    assert_eq!(n, 1, "an AttributeError is a bug: no retry");
    assert!(message.contains("(not retryable)"), "{message}");
    assert_eq!(attempts(&plain, "ReferenceError").0, 1);
    assert_eq!(attempts(&plain, "ConnectionError").0, 3);
    let listed = w(json!({"maxAttempts": 3, "nonRetryable": ["AuthenticationError"]}));
    assert_eq!(attempts(&listed, "AuthenticationError").0, 1);
    assert_eq!(
        attempts(&listed, "TypeError").0,
        1,
        "the defaults still apply"
    );
    let opted_out = w(json!({"maxAttempts": 3, "retryProgrammingErrors": true}));
    assert_eq!(attempts(&opted_out, "TypeError").0, 3);
}

#[test]
fn the_non_retryable_verdict_is_recorded_so_replay_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "p", "nodes": [
        {"id": "a", "type": "agent", "agent": "a", "retry": {"maxAttempts": 3}}]}));
    let mut m = Mesh::new().with_log_dir(dir.path());
    m.agent("a", |_, _| Err(Failure::error("KeyError", "'x'").into()));
    let log = m.run(&w, opts("k")).unwrap().log_path.unwrap();
    let (_, events) = read_log(&log).unwrap();
    let failed: Vec<Value> = events
        .iter()
        .filter(|e| e.type_name() == "agentFailed")
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["error"]["retryable"], json!(false));
    // Replay under a policy that would retry KeyError decides from the recorded verdict.
    let lenient = wf(json!({"name": "p", "nodes": [
        {"id": "a", "type": "agent", "agent": "a",
         "retry": {"maxAttempts": 3, "retryProgrammingErrors": true}}]}));
    assert!(replay(&log, Some(&lenient)).unwrap().workflow_changed);
}

#[test]
fn non_retryable_lists_are_validated() {
    for (retry, field) in [
        (
            json!({"maxAttempts": 2, "nonRetryable": [""]}),
            "retry.nonRetryable[0]",
        ),
        (
            json!({"maxAttempts": 2, "nonRetryable": ["A", "A"]}),
            "retry.nonRetryable[1]",
        ),
        (json!({"maxAttempts": 2, "nonRetryable": "A"}), ""),
        (json!({"maxAttempts": 2, "retryProgrammingErrors": 1}), ""),
    ] {
        let e = Workflow::from_value(json!({"name": "v", "nodes": [
            {"id": "a", "type": "agent", "agent": "a", "retry": retry}]}))
        .unwrap_err();
        assert_eq!(e.code(), "INVALID_WORKFLOW", "{e}");
        assert!(e.message().contains(field), "{e} names {field}");
    }
}

#[test]
fn a_fork_continues_under_a_fixed_workflow_without_redoing_work() {
    let dir = tempfile::tempdir().unwrap();
    // The bug: `write` reads `plan`'s output but only lists `fetch` in `after`.
    let buggy = pipeline();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut m = Mesh::new().with_log_dir(dir.path());
    for name in ["plan", "fetch"] {
        let c = calls.clone();
        m.agent(name, move |act, _| {
            c.lock().unwrap().push(act.node.to_string());
            Ok(json!(1).into())
        });
        let c = calls.clone();
        m.tool(name, move |act, _| {
            c.lock().unwrap().push(act.node.to_string());
            Ok(json!(1).into())
        });
    }
    let c = calls.clone();
    m.agent("write", move |act, _| {
        c.lock().unwrap().push(act.node.to_string());
        match act.deps.get("plan") {
            Some(_) => Ok(json!("done").into()),
            None => Err(Failure::error("KeyError", "'plan'").into()),
        }
    });
    let failed = m.run(&buggy, opts("buggy")).unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let log = failed.log_path.unwrap();
    let mut fixed_spec = buggy.spec().clone();
    fixed_spec.nodes[2].after.push("plan".into());
    let fixed = Workflow::from_spec(fixed_spec).unwrap();
    // The last step end before the failing step: fetch's completion.
    let (_, events) = read_log(&log).unwrap();
    let at = events
        .iter()
        .find(|e| e.type_name() == "toolCompleted")
        .unwrap()
        .seq;
    calls.lock().unwrap().clear();
    let fork = m
        .fork_with(
            &log,
            ForkOptions {
                seq: at,
                workflow: Some(fixed.clone()),
                ..ForkOptions::default()
            },
        )
        .unwrap();
    assert_eq!(fork.status, RunStatus::Completed, "{:?}", fork.error);
    assert_eq!(*calls.lock().unwrap(), ["write"]);
    let fork_log = fork.log_path.unwrap();
    let (header, _) = read_log(&fork_log).unwrap();
    assert_eq!(header.workflow.hash, fixed.hash());
    assert_eq!(
        agentmesh_core::recorded_workflow(&fork_log).unwrap().hash(),
        fixed.hash()
    );
    replay(&fork_log, None).unwrap();

    // A workflow that would have decided the prefix differently is refused.
    let mut other = buggy.spec().clone();
    other.nodes.swap(0, 1);
    other.nodes[0].after.clear();
    other.nodes[1].after = vec!["fetch".into()];
    let other = Workflow::from_spec(other).unwrap();
    let e = m
        .fork_with(
            &log,
            ForkOptions {
                seq: at,
                workflow: Some(other),
                ..ForkOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), "NONDETERMINISM", "{e}");
}

#[test]
fn a_mesh_without_some_agents_stops_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut full = Mesh::new().with_log_dir(dir.path());
    full.agent("plan", |_, _| Ok(json!(1).into()));
    let w = wf(json!({"name": "h", "nodes": [
        {"id": "plan", "type": "agent", "agent": "plan"},
        {"id": "ok", "type": "human", "after": ["plan"]},
        {"id": "write", "type": "agent", "agent": "write", "after": ["ok"]}]}));
    let mut partial = Mesh::new().with_log_dir(dir.path()).stop_at_missing();
    partial.agent("plan", |_, _| Ok(json!(1).into()));
    let waiting = partial.run(&w, opts("partial")).unwrap();
    assert_eq!(waiting.status, RunStatus::Waiting);
    let log = waiting.log_path.unwrap();
    let approvals = [("ok".to_owned(), json!({"approved": true}))].into();
    let stopped = partial.resume(&log, approvals).unwrap();
    assert_eq!(stopped.status, RunStatus::Running);
    let needs: Vec<&str> = stopped.needs.iter().map(|a| &*a.node).collect();
    assert_eq!(needs, ["write"]);
    assert!(
        types(&log).last().unwrap() == "agentScheduled",
        "left outstanding, nothing invented"
    );
    // The program that has `write` finishes it.
    full.agent("write", |_, _| Ok(json!("real").into()));
    let done = full.resume(&log, Default::default()).unwrap();
    assert_eq!(done.output, Some(json!({"write": "real"})));
}

#[test]
fn on_event_sees_every_committed_event_as_the_log_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let mut m = Mesh::new().with_log_dir(dir.path());
    m.agent("plan", |_, _| Ok(json!(1).into()));
    m.agent("write", |_, _| Ok(json!(2).into()));
    m.tool("fetch", |_, _| Ok(json!(3).into()));
    let s = seen.clone();
    m.on_event(move |e| s.lock().unwrap().push(e.clone()));
    let r = m.run(&pipeline(), opts("watched")).unwrap();
    let (header, events) = read_log(r.log_path.as_ref().unwrap()).unwrap();
    assert_eq!(header.host(), Some("rust"));
    assert_eq!(
        *seen.lock().unwrap(),
        events,
        "same events, same meta, file order"
    );

    // A panicking consumer stops its own delivery, never the run.
    let mut p = Mesh::new().with_log_dir(dir.path());
    p.agent("plan", |_, _| Ok(json!(1).into()));
    p.agent("write", |_, _| Ok(json!(2).into()));
    p.tool("fetch", |_, _| Ok(json!(3).into()));
    p.on_event(|_| panic!("consumer bug"));
    let r = p.run(&pipeline(), opts("panicky")).unwrap();
    assert_eq!(r.status, RunStatus::Completed);
}

#[test]
fn run_exists_names_the_way_out_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Mutex::new(true));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let m = mesh(dir.path(), down.clone(), calls);
    m.run(&pipeline(), opts("again")).unwrap();
    let e = m.run(&pipeline(), opts("again")).unwrap_err();
    assert_eq!(e.code(), "RUN_EXISTS");
    assert!(e.message().contains("failed at node 'fetch'"), "{e}");
    assert!(e.message().contains("retry it"), "{e}");
    assert!(e.message().contains("fork it at seq 4"), "{e}");
    *down.lock().unwrap() = false;
    m.retry(dir.path().join("again.jsonl")).unwrap();
    let e = m.run(&pipeline(), opts("again")).unwrap_err();
    assert!(e.message().contains("completed, which is final"), "{e}");
}

#[test]
fn approving_a_node_the_run_has_not_reached_says_so_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "early", "nodes": [
        {"id": "draft", "type": "agent", "agent": "a"},
        {"id": "approve", "type": "human", "after": ["draft"]}]}));
    // A crash while `draft` runs: the log ends with its scheduling.
    let run = start_in(dir.path(), &w, json!(null), 1, "early");
    let log = run.log_path().unwrap().to_owned();
    drop(run);
    let before = std::fs::read(&log).unwrap();
    let approvals = [("approve".to_owned(), json!({"approved": true}))].into();
    let e = agentmesh_core::Run::resume_with(
        &log,
        agentmesh_core::ResumeOptions {
            approvals,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "INVALID_ARGUMENT");
    assert_eq!(
        e.message(),
        "node 'approve' has no pending human activation: the run has not reached it yet (unfinished: draft); resume the run without approvals, then approve it when it waits (waiting: none)"
    );
    assert_eq!(std::fs::read(&log).unwrap(), before);
}

#[test]
fn a_node_after_only_branches_gets_a_warning() {
    let w = wf(json!({"name": "warn", "nodes": [
        {"id": "write", "type": "agent", "agent": "a"},
        {"id": "gate", "type": "branch", "after": ["write"],
         "cases": [{"when": {"path": "/outputs/write/ok", "eq": true}, "goto": "publish"}],
         "default": "fine"},
        {"id": "publish", "type": "tool", "tool": "save", "after": ["gate"]},
        {"id": "fine", "type": "tool", "tool": "save", "after": ["gate", "write"]}]}));
    let warnings = w.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("node 'publish': every 'after' entry is a branch (gate)"));
    assert!(pipeline().warnings().is_empty());
}

#[test]
fn approving_a_finished_run_says_nothing_waits() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "done", "nodes": [
        {"id": "approve", "type": "human"}]}));
    let m = Mesh::new().with_log_dir(dir.path());
    let waiting = m.run(&w, opts("done")).unwrap();
    let log = waiting.log_path.unwrap();
    let yes = || [("approve".to_owned(), json!({"approved": true}))].into();
    m.resume(&log, yes()).unwrap();
    let e = m.resume(&log, yes()).unwrap_err();
    assert_eq!(
        e.message(),
        "node 'approve' has no pending human activation: the run is completed, so nothing waits for a person (waiting: none)"
    );
}

#[test]
fn retry_of_a_crashed_run_says_resume_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = start_in(dir.path(), &pipeline(), json!(null), 1, "crashed");
    let log = run.log_path().unwrap().to_owned();
    drop(run);
    let before = std::fs::read(&log).unwrap();
    let e = agentmesh_core::Run::retry(&log, Default::default()).unwrap_err();
    assert_eq!(e.code(), "INVALID_ARGUMENT");
    assert!(
        e.message()
            .contains("the run is running, not failed or cancelled: resume it instead"),
        "{e}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), before);
}

#[test]
fn a_mesh_without_some_agents_runs_the_rest_of_their_step() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "half", "nodes": [
        {"id": "mine", "type": "agent", "agent": "mine"},
        {"id": "theirs", "type": "tool", "tool": "theirs"},
        {"id": "after", "type": "agent", "agent": "mine", "after": ["mine", "theirs"]}]}));
    let calls = Arc::new(AtomicU32::new(0));
    let mut partial = Mesh::new().with_log_dir(dir.path()).stop_at_missing();
    let c = calls.clone();
    partial.agent("mine", move |act, _| {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(json!(act.node.to_string()).into())
    });
    let r = partial.run(&w, opts("half")).unwrap();
    assert_eq!(r.status, RunStatus::Running);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "`mine` ran; `after` waits for the step"
    );
    let needs: Vec<&str> = r.needs.iter().map(|a| &*a.node).collect();
    assert_eq!(needs, ["theirs"]);
    let t = types(r.log_path.as_ref().unwrap());
    assert_eq!(t.iter().filter(|t| *t == "agentCompleted").count(), 1);
    assert!(!t.iter().any(|t| t == "toolCompleted"));
}
