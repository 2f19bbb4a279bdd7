//! Logs of file format 1, written by AgentMesh 0.1 and committed under `tests/data/format-v1`
//! (with the workflows and scripts that made them, and the canonical logs 0.1 printed for
//! them), still verify, read, replay and resume — and resuming one appends in format 1.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentmesh_core::{
    anchor, canonical_log, check_log, fingerprint, history, read_header, read_log, replay,
    verify_anchor, verify_log, FsyncMode, Mesh, RunOptions, RunStatus, Script, Workflow,
    LOG_VERSION,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/format-v1")
        .join(name)
}

/// A copy of a committed log in `dir` (verification may repair; the committed file stays).
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

fn scripted(example: &str, dir: Option<&Path>) -> Mesh {
    let wf = Workflow::from_file(data(&format!("{example}.workflow.json"))).unwrap();
    let script = Script::from_file(data(&format!("{example}.script.json"))).unwrap();
    let mut mesh = Mesh::new().with_fsync(FsyncMode::Never);
    if let Some(d) = dir {
        mesh = mesh.with_log_dir(d);
    }
    Arc::new(script).register(&mut mesh, &wf);
    mesh
}

const LOGS: [(&str, &str); 3] = [
    ("research-1", "research"),
    ("approval-1", "approval"),
    ("retry-1", "retry-backoff"),
];

#[test]
fn format_one_logs_verify_read_and_replay_with_the_canonical_bytes_of_0_1() {
    let dir = tempfile::tempdir().unwrap();
    for (log, _) in LOGS {
        let path = copy(dir.path(), log);
        let before = fs::read(&path).unwrap();
        assert_eq!(read_header(&path).unwrap().version, 1, "{log}");
        let checked = check_log(&path).unwrap();
        assert_eq!((checked.version, checked.torn_at), (1, None), "{log}");
        let report = verify_log(&path).unwrap();
        assert!(report.repaired.is_none(), "{log}");
        assert_eq!(fs::read(&path).unwrap(), before, "{log}: verify changed it");
        assert_eq!(
            canonical_bytes(&path),
            fs::read(data(&format!("{log}.canonical.jsonl"))).unwrap(),
            "{log}: canonical bytes differ from what 0.1 printed"
        );
        let (_, events) = read_log(&path).unwrap();
        assert_eq!(events.len() as u64, report.events, "{log}");
        let replayed = replay(&path, None).unwrap();
        assert_eq!(replayed.events, report.events, "{log}");
        let states = history(&path).unwrap();
        assert!(states.len() >= 2, "{log}");
        let a = anchor(&path, None).unwrap();
        verify_anchor(&path, &a, None).unwrap();
    }
}

#[test]
fn a_run_has_one_fingerprint_whichever_file_format_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    for (log, example) in [("research-1", "research"), ("retry-1", "retry-backoff")] {
        let script = Script::from_file(data(&format!("{example}.script.json"))).unwrap();
        let wf = Workflow::from_file(data(&format!("{example}.workflow.json"))).unwrap();
        let result = scripted(example, Some(dir.path()))
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
        let new_log = result.log_path.clone().unwrap();
        assert_eq!(read_header(&new_log).unwrap().version, LOG_VERSION);
        let first = fs::read_to_string(&new_log).unwrap();
        assert!(
            !first.lines().nth(1).unwrap().contains("\"runId\""),
            "format 2 records leave out the run id"
        );
        assert_eq!(
            canonical_bytes(&new_log),
            canonical_bytes(&data(&format!("{log}.jsonl"))),
            "{log}"
        );
        assert_eq!(
            fingerprint(&new_log).unwrap(),
            fingerprint(data(&format!("{log}.jsonl"))).unwrap()
        );
    }
}

#[test]
fn a_waiting_format_one_log_resumes_in_format_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(dir.path(), "approval-1");
    let before = fs::read(&path).unwrap();
    let script = Script::from_file(data("approval.script.json")).unwrap();
    let result = scripted("approval", None)
        .resume(&path, script.approvals.clone())
        .unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    let after = fs::read(&path).unwrap();
    assert_eq!(&after[..before.len()], &before[..], "the prefix is kept");
    let appended = String::from_utf8(after[before.len()..].to_vec()).unwrap();
    assert!(appended.lines().count() >= 4);
    for line in appended.lines() {
        assert!(
            line.contains(",\"prev\":\"") && line.contains("\"runId\":\"approval-1\""),
            "appended in format 1: {line}"
        );
    }
    assert_eq!(read_header(&path).unwrap().version, 1);
    assert!(verify_log(&path).unwrap().repaired.is_none());
    assert_eq!(
        canonical_bytes(&path),
        fs::read(data("approval-1.resumed.canonical.jsonl")).unwrap(),
        "the resumed run is the one 0.1 made"
    );
    replay(&path, None).unwrap();
}

#[test]
fn a_torn_format_one_log_is_repaired_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(dir.path(), "research-1");
    let full = fs::read(&path).unwrap();
    // Cut inside the last record: its bytes go to .broken, the run resumes from the rest.
    let cut = full.len() - 40;
    fs::write(&path, &full[..cut]).unwrap();
    let checked = check_log(&path).unwrap();
    assert!(checked.torn_at.is_some());
    let report = verify_log(&path).unwrap();
    let repair = report.repaired.expect("repaired");
    assert!(repair.broken_path.unwrap().exists());
    let result = scripted("research", None)
        .resume(&path, Default::default())
        .unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(
        canonical_bytes(&path),
        fs::read(data("research-1.canonical.jsonl")).unwrap(),
        "the lost runCompleted is decided again, in format 1"
    );
}

#[test]
fn a_fork_of_a_format_one_log_is_written_in_the_current_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy(dir.path(), "research-1");
    let fork = scripted("research", Some(dir.path()))
        .fork(&path, 1, Default::default(), Some("research-fork".into()))
        .unwrap();
    assert_eq!(fork.status, RunStatus::Completed);
    let header = read_header(fork.log_path.unwrap()).unwrap();
    assert_eq!(header.version, LOG_VERSION);
    assert_eq!(header.parent.unwrap().run_id, "research-1");
}
