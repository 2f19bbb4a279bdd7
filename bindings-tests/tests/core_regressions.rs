//! Core bugs found while building the vectors, reproduced deterministically with the `Run` API
//! (the scripted reproduction depends on which agent finishes first, so it cannot be a vector).
//! Each stays here as a regression test now that the core is fixed.

use agentmesh_core::{replay, Completion, Run, RunOptions, RunStatus, Workflow};
use serde_json::json;

#[test]
fn replay_of_a_run_cancelled_after_a_later_sibling_completed() {
    let dir = tempfile::tempdir().unwrap();
    let wf = Workflow::from_value(json!({"name": "probe", "nodes": [
        {"id": "a", "type": "agent", "agent": "w"},
        {"id": "b", "type": "agent", "agent": "w"}
    ]}))
    .unwrap();
    let mut run = Run::start(
        &wf,
        RunOptions {
            run_id: Some("probe".into()),
            log_dir: Some(dir.path().to_owned()),
            ..RunOptions::default()
        },
    )
    .unwrap();
    let acts = run.poll().unwrap();
    // `b` (completion seq 6) finishes; the run is cancelled while `a` (seq 5) still runs.
    run.complete(acts[1].id, Completion::ok(json!(1))).unwrap();
    run.cancel("stop").unwrap();
    let path = run.log_path().unwrap().to_owned();
    drop(run);
    let report = replay(&path, None).expect("a log the core wrote must replay");
    assert_eq!(report.outcome.status, RunStatus::Cancelled);
}
