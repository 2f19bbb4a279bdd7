//! End-to-end smoke test: every node kind, file log, resume, replay, fork.

use std::collections::BTreeMap;

use agentmesh_core::{read_header, replay, state_at, verify_log, ErrorKind, RunOptions, RunStatus};
use serde_json::json;

use crate::common::*;

#[test]
fn demo_like_workflow_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let w = wf(json!({"name": "demo", "nodes": [
        {"id": "plan", "type": "agent", "agent": "planner"},
        {"id": "search", "type": "tool", "tool": "search", "after": ["plan"], "retry": {"maxAttempts": 3, "backoffMs": 5}},
        {"id": "facts", "type": "agent", "agent": "researcher", "after": ["plan"]},
        {"id": "draft", "type": "agent", "agent": "writer", "after": ["search", "facts"], "maxVisits": 3},
        {"id": "review", "type": "agent", "agent": "critic", "after": ["draft"]},
        {"id": "route", "type": "branch", "after": ["review"],
         "cases": [{"when": {"path": "/outputs/review/ok", "eq": false}, "goto": "draft"}], "default": "approve"},
        {"id": "approve", "type": "human", "prompt": "Publish?"},
        {"id": "publish", "type": "agent", "agent": "publisher", "after": ["approve"]}
    ]}));
    let script = json!({"seed": 3, "agents": {
        "search": [{"attempt": 1, "error": {"type": "Flaky", "message": "503"}}, {"output": {"hits": 2}, "delayMs": 10}],
        "facts": [{"output": {"facts": 1}, "delayMs": 1}],
        "review": [{"visit": 1, "output": {"ok": false}}, {"output": {"ok": true}}]
    }});
    let (mesh, _) = scripted_mesh(dir.path(), &w, script);
    let r = mesh
        .run(
            &w,
            RunOptions {
                seed: 3,
                run_id: Some("demo-1".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.status, RunStatus::Waiting, "{r:?}");
    assert_eq!(r.waiting.len(), 1);
    let path = r.log_path.clone().unwrap();
    let header = read_header(&path).unwrap();
    assert_eq!((header.run_id.as_str(), header.seed), ("demo-1", 3));
    let not_a_log = dir.path().join("notes.txt");
    std::fs::write(&not_a_log, "hello\n").unwrap();
    assert_eq!(
        read_header(&not_a_log).unwrap_err().kind(),
        ErrorKind::LogCorrupt
    );
    let report = verify_log(&path).unwrap();
    assert_eq!(
        report.holes,
        Vec::<u64>::new(),
        "human completion is the last reserved seq"
    );
    let r2 = mesh
        .resume(
            &path,
            BTreeMap::from([("approve".to_owned(), json!({"approved": true}))]),
        )
        .unwrap();
    assert_eq!(r2.status, RunStatus::Completed, "{r2:?}");
    assert_eq!(
        r2.output.as_ref().unwrap()["publish"],
        json!({"node": "publish", "visit": 1, "attempt": 1})
    );
    let text = canonical(&path);
    assert!(text.contains("\"type\":\"branchDecided\""));
    assert!(text.contains("\"loop\":true"));
    let rep = replay(&path, None).unwrap();
    assert_eq!(rep.outcome.status, RunStatus::Completed);
    let st = state_at(&path, 5).unwrap();
    assert!(st.completed.contains_key("plan") || !st.pending.is_empty());
    eprintln!("{text}");
}
