//! Replay, time travel (`state_at`), fork and resume against file logs written through `Run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agentmesh_core::trace_id_for;
use agentmesh_core::{
    read_log, replay, state_at, Activation, Completion, ErrorDetail, ErrorKind, Failure, FsyncMode,
    Mesh, Run, RunOptions, RunStatus, Workflow,
};
use serde_json::{json, Value};

use crate::common::*;

/// a → (b with retries, c) → br: `hi` when c's score ≥ 5, else `lo`.
fn base_spec() -> Value {
    json!({"name": "base", "nodes": [
        {"id": "a", "type": "agent", "agent": "alpha"},
        {"id": "b", "type": "agent", "agent": "beta", "after": ["a"],
         "retry": {"maxAttempts": 3, "backoffMs": 10}},
        {"id": "c", "type": "agent", "agent": "gamma", "after": ["a"]},
        {"id": "br", "type": "branch", "after": ["b", "c"],
         "cases": [{"when": {"path": "/outputs/c/score", "gte": 5}, "goto": "hi"}], "default": "lo"},
        {"id": "hi", "type": "agent", "agent": "h"},
        {"id": "lo", "type": "agent", "agent": "l"}
    ]})
}

/// b fails its first attempt; c scores 7; everything else echoes.
fn behave(a: &Activation) -> Completion {
    match (&*a.node, a.attempt) {
        ("b", 1) => Completion::err(Failure::error("Flaky", "503")),
        ("c", _) => Completion::ok(json!({"score": 7})),
        _ => echo(a),
    }
}

const BASE_SUMMARY: [&str; 18] = [
    "1 runStarted",
    "2 stepStarted",
    "3 agentScheduled a",
    "4 agentCompleted a",
    "5 stepStarted",
    "6 agentScheduled b",
    "7 agentScheduled c",
    "8 agentFailed b",
    "9 agentCompleted c",
    "10 stepStarted",
    "11 agentScheduled b",
    "12 agentCompleted b",
    "13 branchDecided br",
    "14 nodeSkipped lo",
    "15 stepStarted",
    "16 agentScheduled hi",
    "17 agentCompleted hi",
    "18 runCompleted",
];

/// Step ends of the base log: seq 1 and the last completion seq of each step.
const BASE_FORK_POINTS: [u64; 5] = [1, 4, 9, 12, 17];

/// Run the base workflow into `dir` as run `base`; returns the log path and every activation.
fn base_log(dir: &Path) -> (PathBuf, Vec<Activation>) {
    let mut run = start_in(dir, &wf(base_spec()), json!({"q": 1}), 5, "base");
    let acts = drive_with(&mut run, behave);
    assert_eq!(run.status().unwrap(), RunStatus::Completed);
    let path = run.log_path().unwrap().to_owned();
    assert_eq!(summary(&log_events(&path)), BASE_SUMMARY);
    (path, acts)
}

fn variant(change: impl FnOnce(&mut Value)) -> Workflow {
    let mut spec = base_spec();
    change(&mut spec);
    wf(spec)
}

/// Replay against `w`, which must diverge; returns (seq, node, field, expected, actual).
fn divergence(path: &Path, w: &Workflow) -> (u64, Option<String>, String, String, String) {
    let e = replay(path, Some(w)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Nondeterminism, "{e}");
    match e.detail() {
        Some(ErrorDetail::Nondeterminism {
            seq,
            node,
            field,
            expected,
            actual,
        }) => (
            *seq,
            node.clone(),
            field.clone(),
            expected.clone(),
            actual.clone(),
        ),
        other => panic!("no nondeterminism detail: {other:?}"),
    }
}

fn d(
    seq: u64,
    node: Option<&str>,
    field: &str,
    expected: &str,
    actual: &str,
) -> (u64, Option<String>, String, String, String) {
    (
        seq,
        node.map(str::to_owned),
        field.to_owned(),
        expected.to_owned(),
        actual.to_owned(),
    )
}

#[test]
fn replay_of_an_unchanged_log_calls_no_agent() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(base_spec());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    for name in w.agent_names() {
        let calls = calls.clone();
        mesh.agent(name, move |a, _| {
            calls.fetch_add(1, Ordering::SeqCst);
            match behave(a).result {
                Ok(v) => Ok(v.into()),
                Err(f) => Err(f.into()),
            }
        });
    }
    let r = mesh
        .run(
            &w,
            RunOptions {
                input: json!({"q": 1}),
                seed: 5,
                run_id: Some("base".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    let path = r.log_path.unwrap();
    assert_eq!(summary(&log_events(&path)), BASE_SUMMARY);
    let live_calls = calls.load(Ordering::SeqCst);
    assert_eq!(live_calls, 5);

    for given in [None, Some(&w)] {
        let rep = replay(&path, given).unwrap();
        assert_eq!(rep.run_id, "base");
        assert_eq!(rep.events, 18);
        assert!(!rep.workflow_changed);
        assert_eq!(rep.outcome.status, RunStatus::Completed);
        assert_eq!(rep.outcome.output, r.output);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        live_calls,
        "replay ran an agent"
    );
    // The same definition written differently has the same hash.
    let reformatted = Workflow::from_json(&format!("{:#}", base_spec())).unwrap();
    assert!(!replay(&path, Some(&reformatted)).unwrap().workflow_changed);
}

#[test]
fn replay_reports_the_first_divergence_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = base_log(dir.path());

    // Adding a node that joins step 2.
    let added = variant(|s| {
        s["nodes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "d", "type": "agent", "agent": "delta", "after": ["a"]}))
    });
    assert_eq!(
        divergence(&path, &added),
        d(5, None, "data.activations", "2", "3")
    );
    // Adding a node after the last one: the run no longer ends at seq 18.
    let appended = variant(|s| {
        s["nodes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "z", "type": "agent", "agent": "zeta", "after": ["hi"]}))
    });
    assert_eq!(
        divergence(&path, &appended),
        d(18, None, "type", "\"runCompleted\"", "\"stepStarted\"")
    );
    // A branch condition that now goes the other way.
    let cond = variant(|s| s["nodes"][3]["cases"][0]["when"]["gte"] = json!(8));
    assert_eq!(
        divergence(&path, &cond),
        d(13, Some("br"), "data.case", "0", "null")
    );
    let e = replay(&path, Some(&cond)).unwrap_err();
    assert_eq!(
        e.message(),
        "seq 13 (node 'br'): the log took case 0 → hi at branch 'br'; this workflow takes the default → lo at branch 'br'. First difference in 'data.case': expected 0, actual null"
    );
    // A dependency: c now waits for b, so step 2 schedules only b.
    let after = variant(|s| s["nodes"][2]["after"] = json!(["b"]));
    assert_eq!(
        divergence(&path, &after),
        d(5, None, "data.activations", "2", "1")
    );
    // Retry policy: one attempt only, so the run fails where step 3 started.
    let attempts = variant(|s| s["nodes"][1]["retry"]["maxAttempts"] = json!(1));
    assert_eq!(
        divergence(&path, &attempts),
        d(10, None, "type", "\"stepStarted\"", "\"runFailed\"")
    );
    // Retry policy: a different backoff.
    let backoff = variant(|s| s["nodes"][1]["retry"]["backoffMs"] = json!(20));
    assert_eq!(
        divergence(&path, &backoff),
        d(11, Some("b"), "data.delayMs", "10", "20")
    );
    // An agent renamed.
    let renamed = variant(|s| s["nodes"][4]["agent"] = json!("h2"));
    assert_eq!(
        divergence(&path, &renamed),
        d(16, Some("hi"), "data.agent", "\"h\"", "\"h2\"")
    );
    // timeoutMs is recorded in the scheduling event, so it is not a silent change.
    let timeout = variant(|s| s["nodes"][0]["timeoutMs"] = json!(5000));
    assert_eq!(
        divergence(&path, &timeout),
        d(3, Some("a"), "data.timeoutMs", "null", "5000")
    );
}

#[test]
fn workflow_changed_without_changed_events_replays() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = base_log(dir.path());
    // None of these is recorded in an event of this run: maxSteps and maxVisits that are
    // never reached, a retry policy on a node that never fails, the workflow name.
    let changed = variant(|s| {
        s["name"] = json!("base-v2");
        s["maxSteps"] = json!(100);
        s["nodes"][4]["maxVisits"] = json!(3);
        s["nodes"][0]["retry"] = json!({"maxAttempts": 4, "backoffMs": 7});
    });
    assert_ne!(changed.hash(), wf(base_spec()).hash());
    let rep = replay(&path, Some(&changed)).unwrap();
    assert!(rep.workflow_changed);
    assert_eq!(rep.events, 18);
    assert_eq!(rep.outcome.status, RunStatus::Completed);
    assert_eq!(
        rep.outcome.output,
        Some(json!({"hi": {"node": "hi", "visit": 1, "attempt": 1}}))
    );
}

#[test]
fn state_at_reports_pending_completed_and_fork_points_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (path, acts) = base_log(dir.path());
    let act = |id: u64| acts.iter().find(|a| a.id == id).unwrap().clone();
    let a_out = json!({"node": "a", "visit": 1, "attempt": 1});
    let b_out = json!({"node": "b", "visit": 1, "attempt": 2});
    let hi_out = json!({"node": "hi", "visit": 1, "attempt": 1});

    for seq in 1..=18 {
        let st = state_at(&path, seq).unwrap();
        assert_eq!(st.seq, seq);
        assert_eq!(
            st.fork_point,
            BASE_FORK_POINTS.contains(&seq),
            "fork_point at seq {seq}"
        );
        let want = if seq == 18 {
            RunStatus::Completed
        } else {
            RunStatus::Running
        };
        assert_eq!(st.status, want, "status at seq {seq}");
        assert!(st.failed.is_empty(), "b's failure was retried");
    }

    let pending = |seq| state_at(&path, seq).unwrap().pending;
    let none: Vec<Activation> = Vec::new();
    assert_eq!(pending(1), none);
    assert_eq!(
        pending(2),
        none,
        "the step started but nothing is scheduled yet"
    );
    assert_eq!(pending(3), [act(3)]);
    assert_eq!(pending(6), [act(6)]);
    assert_eq!(pending(7), [act(6), act(7)]);
    assert_eq!(pending(8), [act(7)]);
    assert_eq!(pending(9), none);
    assert_eq!(pending(11), [act(11)]);
    assert_eq!(pending(11)[0].attempt, 2);
    assert_eq!(pending(11)[0].delay_ms, 10);
    assert_eq!(pending(16), [act(16)]);
    assert_eq!(pending(17), none);

    let st = state_at(&path, 4).unwrap();
    assert_eq!(st.step, 1);
    assert_eq!(st.completed, BTreeMap::from([("a".into(), a_out.clone())]));
    assert_eq!(st.visits, BTreeMap::from([("a".into(), 1)]));
    let st = state_at(&path, 8).unwrap();
    assert_eq!(st.completed, BTreeMap::from([("a".into(), a_out.clone())]));
    let st = state_at(&path, 9).unwrap();
    assert_eq!(st.step, 2);
    assert_eq!(
        st.completed,
        BTreeMap::from([
            ("a".into(), a_out.clone()),
            ("c".into(), json!({"score": 7}))
        ])
    );
    let st = state_at(&path, 12).unwrap();
    assert_eq!(st.step, 3);
    assert_eq!(st.completed.len(), 3);
    assert_eq!(st.completed["b"], b_out);
    assert_eq!(
        st.visits,
        BTreeMap::from([("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]),
        "a retry is not a new visit"
    );
    assert!(st.skipped.is_empty());
    let st = state_at(&path, 14).unwrap();
    assert_eq!(st.skipped, ["lo"]);
    assert!(!st.completed.contains_key("br"), "branches have no output");
    let st = state_at(&path, 17).unwrap();
    assert_eq!(st.step, 4);
    assert_eq!(st.completed["hi"], hi_out);
    let st = state_at(&path, 18).unwrap();
    assert_eq!(st.status, RunStatus::Completed);
    assert_eq!(st.completed.len(), 4);

    for seq in [0, 19] {
        let e = state_at(&path, seq).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            e.message(),
            format!("seq {seq} is outside the log (1..=18)")
        );
    }
}

fn fork_into(dir: &Path, path: &Path, seq: u64, overrides: Value) -> agentmesh_core::Result<Run> {
    let overrides: BTreeMap<String, Value> = serde_json::from_value(overrides).unwrap();
    Run::fork(
        path,
        seq,
        overrides,
        Some("fork-1".into()),
        Some(dir.to_owned()),
        FsyncMode::Never,
    )
}

#[test]
fn fork_with_an_override_flips_a_later_branch_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let forks = tempfile::tempdir().unwrap();
    let (path, _) = base_log(dir.path());
    let w = wf(base_spec());

    let mut fork = fork_into(forks.path(), &path, 9, json!({"c": {"score": 1}})).unwrap();
    assert_eq!(fork.run_id(), "fork-1");
    let parent = fork.header().parent.clone().unwrap();
    assert_eq!((parent.run_id.as_str(), parent.seq), ("base", 9));
    assert_eq!(fork.header().seed, 5);
    assert_eq!(fork.header().workflow.hash, w.hash());
    let acts = drive_with(&mut fork, behave);
    assert_eq!(
        acts.iter()
            .map(|a| (a.id, a.node.to_string(), a.attempt))
            .collect::<Vec<_>>(),
        [(12, "b".into(), 2), (17, "lo".into(), 1)]
    );
    assert_eq!(
        deps_of(&acts[0]),
        BTreeMap::from([("a".into(), json!({"node": "a", "visit": 1, "attempt": 1}))])
    );
    assert_eq!(fork.status().unwrap(), RunStatus::Completed);
    assert_eq!(
        fork.outcome().unwrap().output,
        Some(json!({"lo": {"node": "lo", "visit": 1, "attempt": 1}}))
    );

    let fork_path = fork.log_path().unwrap().to_owned();
    let ev = log_events(&fork_path);
    assert_eq!(
        summary(&ev)[9..],
        [
            "10 outputOverridden c",
            "11 stepStarted",
            "12 agentScheduled b",
            "13 agentCompleted b",
            "14 branchDecided br",
            "15 nodeSkipped hi",
            "16 stepStarted",
            "17 agentScheduled lo",
            "18 agentCompleted lo",
            "19 runCompleted"
        ]
    );
    assert_eq!(ev[9]["parentSeq"], 9);
    assert_eq!(ev[9]["data"], json!({"output": {"score": 1}}));
    assert_eq!(ev[10]["parentSeq"], 5);
    assert_eq!(
        ev[11]["data"],
        json!({"agent": "beta", "delayMs": 10, "retryOf": 8})
    );
    assert_eq!(ev[13]["data"], json!({"case": null, "goto": "lo"}));

    // The copied prefix is the parent's first 9 events under the new run id.
    let (_, parent_events) = read_log(&path).unwrap();
    let (header, fork_events) = read_log(&fork_path).unwrap();
    assert_eq!(header.parent.unwrap().seq, 9);
    let trace = trace_id_for("fork-1");
    assert_ne!(trace, trace_id_for("base"));
    for (p, f) in parent_events.iter().zip(&fork_events).take(9) {
        assert_eq!(&*f.run_id, "fork-1");
        assert_eq!(*f.trace_id, *trace);
        let mut renamed = p.clone();
        renamed.run_id = f.run_id.clone();
        renamed.trace_id = f.trace_id.clone();
        assert!(renamed.same_canonical(f), "seq {}", p.seq);
    }
    assert!(fork_events.iter().all(|e| &*e.run_id == "fork-1"));

    for given in [None, Some(&w)] {
        let rep = replay(&fork_path, given).unwrap();
        assert_eq!(rep.run_id, "fork-1");
        assert_eq!(rep.events, 19);
        assert!(!rep.workflow_changed);
        assert_eq!(rep.outcome, fork.outcome().unwrap());
    }
    assert_eq!(
        state_at(&fork_path, 10).unwrap().completed["c"],
        json!({"score": 1})
    );
    // The parent is untouched.
    assert_eq!(summary(&log_events(&path)), BASE_SUMMARY);
}

#[test]
fn fork_ids_are_derived_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = base_log(dir.path());
    let fork_id = |seq: u64, overrides: Value| {
        let out = tempfile::tempdir().unwrap();
        let run = Run::fork(
            &path,
            seq,
            serde_json::from_value(overrides).unwrap(),
            None,
            Some(out.path().to_owned()),
            FsyncMode::Never,
        )
        .unwrap();
        run.run_id().to_owned()
    };
    let id = fork_id(9, json!({"c": {"score": 1}}));
    assert!(id.starts_with("fork-") && id.len() == 5 + 16, "{id}");
    assert_eq!(fork_id(9, json!({"c": {"score": 1}})), id);
    assert_ne!(fork_id(9, json!({"c": {"score": 2}})), id);
    assert_ne!(fork_id(12, json!({"c": {"score": 1}})), id);
}

#[test]
fn fork_rejects_bad_points_and_overrides_without_creating_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let forks = tempfile::tempdir().unwrap();
    let (path, _) = base_log(dir.path());
    let cases = [
        (7, json!({}), "seq 7 is not a step end, so there is no consistent point to fork at; step ends near it: 4 and 9"),
        (13, json!({}), "seq 13 is not a step end, so there is no consistent point to fork at; step ends near it: 12 and 17"),
        (18, json!({}), "seq 18 is not a step end, so there is no consistent point to fork at; step ends near it: 17"),
        (0, json!({}), "seq 0 is outside the log (1..=18)"),
        (19, json!({}), "seq 19 is outside the log (1..=18)"),
        (9, json!({"zz": 1}), "override: unknown node 'zz'"),
        (9, json!({"hi": 1}), "override: node 'hi' has no output at this point"),
        (9, json!({"b": 1}), "override: node 'b' has no output at this point"),
        (9, json!({"c": 1, "lo": 2}), "override: node 'lo' has no output at this point"),
    ];
    for (seq, overrides, message) in cases {
        let e = fork_into(forks.path(), &path, seq, overrides).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(e.message(), message);
        assert_eq!(
            std::fs::read_dir(forks.path()).unwrap().count(),
            0,
            "a failed fork left a file"
        );
    }
    // A fork whose run id already has a log.
    let e = Run::fork(
        &path,
        9,
        BTreeMap::new(),
        Some("base".into()),
        Some(dir.path().to_owned()),
        FsyncMode::Never,
    )
    .unwrap_err();
    assert_eq!(e.code(), "RUN_EXISTS");
    assert_eq!(summary(&log_events(&path)), BASE_SUMMARY);
}

/// a → approve (human) → b, with agents counting their calls.
fn approval_mesh(dir: &Path, calls: &Arc<[AtomicUsize; 2]>) -> Mesh {
    let mut mesh = Mesh::new().with_log_dir(dir);
    let c = calls.clone();
    mesh.agent("A", move |_, _| {
        c[0].fetch_add(1, Ordering::SeqCst);
        Ok(json!("drafted").into())
    });
    let c = calls.clone();
    mesh.agent("B", move |act, _| {
        c[1].fetch_add(1, Ordering::SeqCst);
        Ok(json!({"published": act.deps["approve"].clone()}).into())
    });
    mesh
}

#[test]
fn a_waiting_run_resumes_in_a_new_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "approval", "nodes": [
        {"id": "a", "type": "agent", "agent": "A"},
        {"id": "approve", "type": "human", "prompt": "OK?", "after": ["a"]},
        {"id": "b", "type": "agent", "agent": "B", "after": ["approve"]}
    ]}));
    let first = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let options = RunOptions {
        run_id: Some("wait-1".into()),
        ..Default::default()
    };
    let r = approval_mesh(dir.path(), &first).run(&w, options).unwrap();
    assert_eq!(r.status, RunStatus::Waiting);
    assert_eq!(r.error, None);
    assert_eq!(r.waiting.len(), 1);
    assert_eq!(&*r.waiting[0].node, "approve");
    assert_eq!(r.waiting[0].id, 6);
    let path = r.log_path.clone().unwrap();
    let rep = replay(&path, None).unwrap();
    assert_eq!(rep.outcome.status, RunStatus::Waiting);
    assert_eq!(rep.events, 6);

    // The human's reserved seq 7 is not written yet, so it is no step end to fork at.
    let forks = tempfile::tempdir().unwrap();
    let e = Run::fork(
        &path,
        6,
        BTreeMap::new(),
        None,
        Some(forks.path().to_owned()),
        FsyncMode::Never,
    )
    .unwrap_err();
    assert_eq!(
        e.message(),
        "seq 6 is not a step end, so there is no consistent point to fork at; step ends near it: 4"
    );

    // The protocol-level resume sees the same outstanding activation.
    {
        let run = Run::resume(&path, FsyncMode::Never).unwrap();
        assert_eq!(run.status().unwrap(), RunStatus::Waiting);
        assert_eq!(run.outstanding().unwrap(), r.waiting);
    }

    let second = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mesh = approval_mesh(dir.path(), &second);
    let before = canonical(&path);
    let e = mesh
        .resume(&path, BTreeMap::from([("nope".to_owned(), json!(true))]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        e.message(),
        "node 'nope' has no pending human activation (waiting: approve)"
    );
    assert_eq!(canonical(&path), before);

    let done = mesh
        .resume(
            &path,
            BTreeMap::from([("approve".to_owned(), json!({"ok": true}))]),
        )
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.run_id, "wait-1");
    assert_eq!(done.output, Some(json!({"b": {"published": {"ok": true}}})));
    assert_eq!(first[0].load(Ordering::SeqCst), 1);
    assert_eq!(first[1].load(Ordering::SeqCst), 0);
    assert_eq!(second[0].load(Ordering::SeqCst), 0, "a was not re-run");
    assert_eq!(second[1].load(Ordering::SeqCst), 1);
    let ev = log_events(&path);
    assert_eq!(
        summary(&ev)[5..],
        [
            "6 humanRequested approve",
            "7 humanResolved approve",
            "8 stepStarted",
            "9 agentScheduled b",
            "10 agentCompleted b",
            "11 runCompleted"
        ]
    );
    let rep = replay(&path, None).unwrap();
    assert_eq!(rep.events, 11);
    assert_eq!(rep.outcome.status, RunStatus::Completed);
}

#[test]
fn state_at_the_largest_seq_is_outside_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = start_in(dir.path(), &fanout_workflow(), Value::Null, 1, "far");
    drive_shuffled(&mut run, &mut SplitMix64(3), |_| {});
    let path = run.log_path().unwrap().to_owned();
    drop(run);
    for seq in [0, 1_000, u64::MAX] {
        let e = agentmesh_core::state_at(&path, seq).unwrap_err();
        assert_eq!(
            e.kind(),
            agentmesh_core::ErrorKind::InvalidArgument,
            "seq {seq}: {e}"
        );
    }
}
