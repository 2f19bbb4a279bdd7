//! A log of file format 3, written by AgentMesh before budgets (format 4) and committed under
//! `tests/data/format-v3` with the canonical log that version printed, still verifies, reads
//! and replays to the same bytes; cut mid-step (calls in flight), it resumes in format 3 to
//! the same canonical log.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentmesh_core::{
    canonical_log, check_log, read_header, replay, verify_log, FsyncMode, Mesh, RunStatus, Script,
    Workflow,
};

const LOG: &str = "calls-in-activations";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/format-v3")
        .join(name)
}

fn canonical_bytes(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    canonical_log(path, &mut out).unwrap();
    out
}

#[test]
fn a_format_three_log_reads_and_replays_to_the_bytes_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{LOG}.jsonl"));
    fs::copy(data(&format!("{LOG}.jsonl")), &path).unwrap();
    assert_eq!(read_header(&path).unwrap().version, 3);
    assert_eq!(check_log(&path).unwrap().version, 3);
    assert!(verify_log(&path).unwrap().repaired.is_none());
    assert_eq!(
        canonical_bytes(&path),
        fs::read(data(&format!("{LOG}.canonical.jsonl"))).unwrap(),
        "canonical bytes differ from what format 3's AgentMesh printed"
    );
    assert!(replay(&path, None).unwrap().events > 0);
}

#[test]
fn a_format_three_log_cut_mid_step_resumes_in_format_three() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{LOG}.jsonl"));
    let text = fs::read_to_string(data(&format!("{LOG}.jsonl"))).unwrap();
    // The header and 19 records: research_a's three calls started, none answered.
    let mut cut = fs::File::create(&path).unwrap();
    for line in text.lines().take(20) {
        writeln!(cut, "{line}").unwrap();
    }
    drop(cut);
    let wf = Workflow::from_file(data(&format!("{LOG}.workflow.json"))).unwrap();
    let script = Script::from_file(data(&format!("{LOG}.script.json"))).unwrap();
    let mut mesh = Mesh::new()
        .with_fsync(FsyncMode::Never)
        .with_log_dir(dir.path());
    Arc::new(script).register(&mut mesh, &wf);
    let result = mesh.resume(&path, Default::default()).unwrap();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(read_header(&path).unwrap().version, 3);
    assert_eq!(
        canonical_bytes(&path),
        fs::read(data(&format!("{LOG}.canonical.jsonl"))).unwrap()
    );
}
