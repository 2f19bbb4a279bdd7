//! A log of file format 4, written by AgentMesh before policies (format 5) and committed under
//! `tests/data/format-v4` with the canonical log that version printed (the vector
//! `budget_clamp_warn_exhaust`), still verifies, reads and replays to the same bytes; cut with a
//! call in flight, it resumes in format 4 to the same canonical log.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentmesh_core::{
    canonical_log, check_log, read_header, replay, verify_log, ErrorKind, FsyncMode, Mesh,
    RunStatus, Script, Workflow,
};

const LOG: &str = "budget-clamp-warn-exhaust";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/format-v4")
        .join(name)
}

fn canonical_bytes(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    canonical_log(path, &mut out).unwrap();
    out
}

#[test]
fn a_format_four_log_reads_and_replays_to_the_bytes_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{LOG}.jsonl"));
    fs::copy(data(&format!("{LOG}.jsonl")), &path).unwrap();
    assert_eq!(read_header(&path).unwrap().version, 4);
    assert_eq!(check_log(&path).unwrap().version, 4);
    assert!(verify_log(&path).unwrap().repaired.is_none());
    assert_eq!(
        canonical_bytes(&path),
        fs::read(data(&format!("{LOG}.canonical.jsonl"))).unwrap(),
        "canonical bytes differ from what format 4's AgentMesh printed"
    );
    assert!(replay(&path, None).unwrap().events > 0);
}

#[test]
fn a_format_four_log_cut_with_a_call_in_flight_resumes_in_format_four() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{LOG}.jsonl"));
    let text = fs::read_to_string(data(&format!("{LOG}.jsonl"))).unwrap();
    // The header and 17 records: polish's first call started, not answered.
    let mut cut = fs::File::create(&path).unwrap();
    for line in text.lines().take(18) {
        writeln!(cut, "{line}").unwrap();
    }
    drop(cut);
    let wf = Workflow::from_file(data(&format!("{LOG}.workflow.json"))).unwrap();
    let script = Script::from_file(data(&format!("{LOG}.script.json"))).unwrap();
    let mut mesh = Mesh::new()
        .with_fsync(FsyncMode::Never)
        .with_log_dir(dir.path());
    if let Some(prices) = script.price_table().unwrap() {
        mesh = mesh.with_prices(prices);
    }
    Arc::new(script).register(&mut mesh, &wf);
    let result = mesh.resume(&path, Default::default()).unwrap();
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_ref().map(|e| e.code.as_str()),
        Some(ErrorKind::BudgetExceeded.code())
    );
    assert_eq!(read_header(&path).unwrap().version, 4);
    assert_eq!(
        canonical_bytes(&path),
        fs::read(data(&format!("{LOG}.canonical.jsonl"))).unwrap()
    );
}
