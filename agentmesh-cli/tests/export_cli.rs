//! `agentmesh export`: the pictures and spans of a log, and its spans sent to a collector after
//! the fact, end to end through the binary (docs/telemetry.md, docs/cli.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn agentmesh(dir: &Path, args: &[&str]) -> Ran {
    let out = Command::new(env!("CARGO_BIN_EXE_agentmesh"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run agentmesh");
    Ran {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The retry example's log: a flaky tool retried, then the rest of the workflow.
fn example_log(dir: &Path) -> PathBuf {
    let ex = repo().join("docs/examples/retry-backoff");
    let ran = agentmesh(
        dir,
        &[
            "run",
            ex.join("workflow.json").to_str().unwrap(),
            "--script",
            ex.join("script.json").to_str().unwrap(),
            "--log-dir",
            "logs",
            "--run-id",
            "export-me",
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    dir.join("logs/export-me.jsonl")
}

#[test]
fn every_format_of_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = example_log(dir.path());
    let log = log.to_str().unwrap();
    let spans = agentmesh(dir.path(), &["export", log, "--format", "spans"]);
    assert_eq!(spans.code, 0, "{}", spans.stderr);
    let spans: Vec<Value> = spans
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        spans.iter().filter(|s| s["parentSpanId"].is_null()).count(),
        1
    );
    assert!(
        spans
            .iter()
            .any(|s| !s["links"].as_array().unwrap().is_empty()),
        "the retry's link"
    );
    let chrome = agentmesh(dir.path(), &["export", log, "--format", "chrome"]);
    let chrome: Value = serde_json::from_str(&chrome.stdout).unwrap();
    assert!(chrome["traceEvents"].as_array().unwrap().len() > spans.len());
    let html = agentmesh(
        dir.path(),
        &["export", log, "--format", "html", "-o", "t.html"],
    );
    assert_eq!(html.code, 0, "{}", html.stderr);
    assert!(std::fs::read_to_string(dir.path().join("t.html"))
        .unwrap()
        .contains("id=\"run-data\""));
    let dag = agentmesh(dir.path(), &["export", log, "--format", "mermaid"]);
    assert!(dag.stdout.starts_with("flowchart TD"));
}

#[test]
fn bad_input_and_an_unreachable_collector_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let log = example_log(dir.path());
    let log = log.to_str().unwrap();
    let no_format = agentmesh(dir.path(), &["export", log]);
    assert_eq!(
        no_format.code, 2,
        "a usage error: neither --format nor --otlp"
    );
    let bad = agentmesh(dir.path(), &["export", log, "--otlp", "not a url"]);
    assert_eq!(bad.code, 4, "{}", bad.stderr);
    assert!(
        bad.stderr
            .starts_with("[INVALID_ARGUMENT] the OTLP endpoint 'not a url'"),
        "{}",
        bad.stderr
    );
    // A port nobody listens on (held closed: bound, then dropped, is racy; port 1 is never ours).
    let down = agentmesh(dir.path(), &["export", log, "--otlp", "http://127.0.0.1:1"]);
    assert_eq!(down.code, 7, "{}", down.stderr);
    assert!(down.stderr.starts_with("[IO] exporting"), "{}", down.stderr);
    let missing = agentmesh(dir.path(), &["export", "nope.jsonl", "--format", "spans"]);
    assert_ne!(missing.code, 0);
}
