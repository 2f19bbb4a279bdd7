//! Logs of file format 2, written by AgentMesh 0.2 (before call records) and committed under
//! `tests/data/format-v2` with the canonical logs 0.2 printed for them, still verify, read,
//! replay and resume — resuming appends in format 2 — and refuse calls with a clear error.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentmesh_core::{
    canonical_log, check_log, read_header, read_log, replay, verify_log, CallRequest, FsyncMode,
    Mesh, Run, RunOptions, RunStatus, Script, Workflow, LOG_VERSION,
};
use serde_json::json;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/format-v2")
        .join(name)
}

fn copy(dir: &Path, log: &str) -> PathBuf {
    let to = dir.join(format!("{log}.jsonl"));
    fs::copy(data(&format!("{log}.jsonl")), &to).unwrap();
    to
}

fn canonical_bytes(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    canonical_log(path, &mut out).unwrap();
    out
}

fn scripted(example: &str, dir: &Path) -> Mesh {
    let wf = Workflow::from_file(data(&format!("{example}.workflow.json"))).unwrap();
    let script = Script::from_file(data(&format!("{example}.script.json"))).unwrap();
    let mut mesh = Mesh::new().with_fsync(FsyncMode::Never).with_log_dir(dir);
    Arc::new(script).register(&mut mesh, &wf);
    mesh
}

#[test]
fn format_two_logs_read_replay_and_give_the_canonical_bytes_of_0_2() {
    let dir = tempfile::tempdir().unwrap();
    for log in ["research-1", "approval-1", "retry-1"] {
        let path = copy(dir.path(), log);
        assert_eq!(read_header(&path).unwrap().version, 2, "{log}");
        assert_eq!(check_log(&path).unwrap().version, 2);
        let report = verify_log(&path).unwrap();
        assert!(report.repaired.is_none(), "{log}");
        assert_eq!(
            canonical_bytes(&path),
            fs::read(data(&format!("{log}.canonical.jsonl"))).unwrap(),
            "{log}: canonical bytes differ from what 0.2 printed"
        );
        let (_, events) = read_log(&path).unwrap();
        assert_eq!(events.len() as u64, report.events);
        assert_eq!(replay(&path, None).unwrap().events, report.events);
    }
}

#[test]
fn a_format_two_log_resumes_in_format_two_and_a_new_run_in_format_three_has_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(dir.path(), "approval-1");
    let script = Script::from_file(data("approval.script.json")).unwrap();
    let r = scripted("approval", dir.path())
        .resume(&path, script.approvals.clone())
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(
        read_header(&path).unwrap().version,
        2,
        "appended in its own format"
    );
    verify_log(&path).unwrap();
    assert_eq!(
        canonical_bytes(&path),
        fs::read(data("approval-1.resumed.canonical.jsonl")).unwrap()
    );
    // The same run today, in format 3: one fingerprint.
    let new_dir = tempfile::tempdir().unwrap();
    let wf = Workflow::from_file(data("research.workflow.json")).unwrap();
    let script = Script::from_file(data("research.script.json")).unwrap();
    let r = scripted("research", new_dir.path())
        .run(
            &wf,
            RunOptions {
                input: script.input.clone(),
                seed: script.seed,
                run_id: script.run_id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    let new_log = r.log_path.clone().unwrap();
    assert_eq!(read_header(&new_log).unwrap().version, LOG_VERSION);
    assert_eq!(
        canonical_bytes(&new_log),
        fs::read(data("research-1.canonical.jsonl")).unwrap()
    );
}

#[test]
fn a_call_in_a_resumed_format_two_log_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(dir.path(), "approval-1");
    let mut run = Run::resume(&path, FsyncMode::Never).unwrap();
    let before = fs::read(&path).unwrap();
    let act = run.outstanding().unwrap().remove(0);
    let e = run
        .call_start(act.id, CallRequest::tool("t", json!({})))
        .unwrap_err();
    assert_eq!(e.code(), "INVALID_ARGUMENT");
    assert!(e.message().contains("format 2"), "{e}");
    assert_eq!(fs::read(&path).unwrap(), before);
}
