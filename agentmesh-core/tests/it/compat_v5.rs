//! A log of file format 5, written by AgentMesh before workflow shapes (format 6: map items,
//! reads, sub-workflows, structured outputs) and committed under `tests/data/format-v5` with
//! the canonical logs that version printed (the vector `policy_block_redact_warn`, waiting for
//! its approval), still verifies, reads and replays to the same bytes, and resumes in format 5
//! to the same canonical log.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentmesh_core::{
    canonical_log, check_log, read_header, replay, verify_log, FsyncMode, Mesh, RunStatus, Script,
    Workflow,
};

const LOG: &str = "policy-block-redact-warn";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/format-v5")
        .join(name)
}

fn canonical_bytes(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    canonical_log(path, &mut out).unwrap();
    out
}

fn copied(dir: &Path) -> PathBuf {
    let path = dir.join(format!("{LOG}.jsonl"));
    fs::copy(data(&format!("{LOG}.waiting.jsonl")), &path).unwrap();
    path
}

#[test]
fn a_format_five_log_reads_and_replays_to_the_bytes_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let path = copied(dir.path());
    assert_eq!(read_header(&path).unwrap().version, 5);
    assert_eq!(check_log(&path).unwrap().version, 5);
    assert!(verify_log(&path).unwrap().repaired.is_none());
    assert_eq!(
        canonical_bytes(&path),
        fs::read(data(&format!("{LOG}.waiting.canonical.jsonl"))).unwrap(),
        "canonical bytes differ from what format 5's AgentMesh printed"
    );
    assert!(replay(&path, None).unwrap().events > 0);
}

#[test]
fn a_waiting_format_five_log_resumes_in_format_five() {
    let dir = tempfile::tempdir().unwrap();
    let path = copied(dir.path());
    let wf = Workflow::from_file(data(&format!("{LOG}.workflow.json"))).unwrap();
    let script = Script::from_file(data(&format!("{LOG}.script.json"))).unwrap();
    let mut mesh = Mesh::new()
        .with_fsync(FsyncMode::Never)
        .with_log_dir(dir.path());
    if let Some(policy) = script.policy().unwrap() {
        mesh = mesh.with_policy(policy);
    }
    let approvals: BTreeMap<String, serde_json::Value> = script.approvals.clone();
    Arc::new(script).register(&mut mesh, &wf);
    let result = mesh.resume(&path, approvals).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(read_header(&path).unwrap().version, 5);
    assert_eq!(
        canonical_bytes(&path),
        fs::read(data(&format!("{LOG}.canonical.jsonl"))).unwrap()
    );
}
