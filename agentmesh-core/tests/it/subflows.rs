//! Sub-workflows end to end: the child's nodes run under the workflow node's id, see the
//! node's `input` as theirs, wait for a person by their prefixed id, and resume and fork like
//! any node; the builder writes what the JSON says.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use agentmesh_core::{
    canonical_log, FsyncMode, Mesh, NodeOptions, RunOptions, RunStatus, Workflow,
};
use serde_json::{json, Value};

fn child() -> Value {
    json!({"name": "review", "nodes": [
        {"id": "draft", "type": "agent", "agent": "writer"},
        {"id": "approve", "type": "human", "prompt": "ok?", "after": ["draft"]},
        {"id": "polish", "type": "agent", "agent": "writer", "after": ["approve"]}]})
}

fn parent() -> Workflow {
    Workflow::from_value(json!({"name": "parent", "nodes": [
        {"id": "plan", "type": "agent", "agent": "planner"},
        {"id": "review", "type": "workflow", "after": ["plan"], "input": "/outputs/plan",
         "workflow": child()},
        {"id": "send", "type": "agent", "agent": "sender", "after": ["review"]}]}))
    .unwrap()
}

fn mesh(dir: &std::path::Path, seen: Arc<Mutex<Vec<(String, Value)>>>) -> Mesh {
    let mut mesh = Mesh::new().with_log_dir(dir).with_fsync(FsyncMode::Never);
    mesh.agent("planner", |_, _| Ok(json!({"topic": "maps"}).into()));
    let s = seen.clone();
    mesh.agent("writer", move |act, _| {
        s.lock()
            .unwrap()
            .push((act.node.to_string(), (*act.input).clone()));
        Ok(json!({"text": format!("{} on {}", act.node, act.input["topic"])}).into())
    });
    mesh.agent("sender", |act, _| Ok((*act.deps["review"]).clone().into()));
    mesh
}

#[test]
fn a_child_waits_by_its_prefixed_id_resumes_and_hands_its_output_up() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let r = mesh(dir.path(), seen.clone())
        .run(
            &parent(),
            RunOptions {
                run_id: Some("p".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.status, RunStatus::Waiting);
    assert_eq!(&*r.waiting[0].node, "review/approve");
    let log = r.log_path.unwrap();
    // Another process resumes it with the person's decision.
    let approvals = BTreeMap::from([("review/approve".to_owned(), json!({"ok": true}))]);
    let r = mesh(dir.path(), seen.clone())
        .resume(&log, approvals)
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(
        r.output.unwrap(),
        json!({"send": {"polish": {"text": "review/polish on \"maps\""}}}),
        "the workflow node's output is its child's terminal outputs"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        [
            ("review/draft".to_owned(), json!({"topic": "maps"})),
            ("review/polish".to_owned(), json!({"topic": "maps"}))
        ],
        "each child activation ran once, with the node's input as its input"
    );
    // Replay agrees with the log; so does re-executing its agents; the events name the
    // child's nodes.
    let report = agentmesh_core::replay(&log, None).unwrap();
    assert_eq!(report.outcome.status, RunStatus::Completed);
    drop(seen);
    let again = mesh(dir.path(), Arc::new(Mutex::new(Vec::new())))
        .reexecute(&log)
        .unwrap();
    assert_eq!(
        again.activations, 4,
        "plan, draft, polish and send ran again; the decision is taken from the log"
    );
    let mut text = Vec::new();
    canonical_log(&log, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(r#""type":"workflowStarted""#) && text.contains(r#""node":"review/draft""#)
    );
}

#[test]
fn a_workflow_named_from_a_registry_is_written_inline() {
    let review = Workflow::from_value(child()).unwrap();
    let named = json!({"name": "parent", "nodes": [
        {"id": "plan", "type": "agent", "agent": "planner"},
        {"id": "review", "type": "workflow", "after": ["plan"], "input": "/outputs/plan",
         "workflow": "review"},
        {"id": "send", "type": "agent", "agent": "sender", "after": ["review"]}]});
    let w = Workflow::from_value_in(named.clone(), &[review]).unwrap();
    assert_eq!(
        w.hash(),
        parent().hash(),
        "the same definition as the inline one"
    );
    let e = Workflow::from_value(named).unwrap_err();
    assert_eq!(e.code(), "INVALID_WORKFLOW");
    assert!(e.message().contains("no workflow named 'review'"), "{e}");
}

#[test]
fn the_builder_writes_a_workflow_node_like_json() {
    let child = Workflow::from_value(child()).unwrap();
    let built = Workflow::builder("parent")
        .agent("plan", "planner", NodeOptions::default())
        .workflow(
            "review",
            &child,
            Some("/outputs/plan"),
            NodeOptions::after(&["plan"]),
        )
        .agent("send", "sender", NodeOptions::after(&["review"]))
        .build()
        .unwrap();
    assert_eq!(built.hash(), parent().hash());
}

#[test]
fn a_fork_inside_a_child_replaces_a_child_output_and_runs_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let r = mesh(dir.path(), seen.clone())
        .run(
            &parent(),
            RunOptions {
                run_id: Some("p".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let log = r.log_path.unwrap();
    // The step end after review/draft completed: fork there with another draft.
    let (_, events) = agentmesh_core::read_log(&log).unwrap();
    let at = events
        .iter()
        .find(|e| e.node.as_deref() == Some("review/draft") && e.data.is_completion())
        .unwrap()
        .seq;
    let overrides = BTreeMap::from([("review/draft".to_owned(), json!({"text": "forked"}))]);
    let f = mesh(dir.path(), seen)
        .fork(&log, at, overrides, Some("f".into()))
        .unwrap();
    assert_eq!(
        f.status,
        RunStatus::Waiting,
        "the child's person is asked again in the fork"
    );
    assert_eq!(&*f.waiting[0].node, "review/approve");
    assert_eq!(
        *f.waiting[0].deps["review/draft"],
        json!({"text": "forked"})
    );
}
