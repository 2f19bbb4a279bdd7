//! `agentmesh redact`, `agentmesh policy check|show` and `--policy` on the run commands, end
//! to end through the binary (docs/policy.md, docs/cli.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

fn agentmesh_with_stdin(dir: &Path, args: &[&str], stdin: impl AsRef<[u8]>) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentmesh"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agentmesh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_ref())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn agentmesh(dir: &Path, args: &[&str]) -> Ran {
    agentmesh_with_stdin(dir, args, "")
}

#[track_caller]
fn expect_code(r: &Ran, code: i32) {
    assert_eq!(
        r.code, code,
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        r.stdout, r.stderr
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const POLICY: &str = "\
version: 1
name: cli-test
rules:
  - id: pii-email
    detect: email
    action: redact
  - id: no-ssn
    detect: ssn
    action: block
";

fn workflow(dir: &Path) -> PathBuf {
    write(
        dir,
        "wf.json",
        &json!({"name": "cli-policy", "nodes": [
            {"id": "a", "type": "agent", "agent": "writer"},
            {"id": "ok", "type": "human", "after": ["a"]}
        ]})
        .to_string(),
    )
}

fn script(dir: &Path) -> PathBuf {
    write(
        dir,
        "script.json",
        &json!({"runId": "cli-policy",
            "input": {"to": "ann@example.com"},
            "agents": {"a": [{"output": {"text": "write to bob@example.org"}}]}})
        .to_string(),
    )
}

#[test]
fn redact_prints_the_text_or_the_spans_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let r = agentmesh_with_stdin(dir.path(), &["redact"], "mail é ann@example.com now");
    expect_code(&r, 0);
    assert_eq!(r.stdout, "mail é [REDACTED:email] now");
    let r = agentmesh_with_stdin(dir.path(), &["redact", "--json"], "é ann@example.com");
    expect_code(&r, 0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v,
        json!({"text": "é [REDACTED:email]", "spans": [
            {"start": 2, "end": 17, "kind": "email", "rule": "email"}]})
    );
    // With a policy: its rules, named by id.
    let p = write(dir.path(), "p.yaml", POLICY);
    let r = agentmesh_with_stdin(
        dir.path(),
        &["redact", "--json", "--policy", p.to_str().unwrap()],
        "ssn 219-09-9999",
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["spans"][0]["rule"], "no-ssn");
    assert!(!r.stdout.contains("219-09-9999"));
    // Not UTF-8 on stdin: a typed error, exit 4.
    let r = agentmesh_with_stdin(dir.path(), &["redact"], b"ab\xff");
    expect_code(&r, 4);
    assert!(
        r.stderr.contains("stdin is not UTF-8 (byte 2)"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_invalid_policy_names_the_rule_and_position_and_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.yaml",
        "version: 1\nname: x\nrules:\n  - id: r1\n    regex: '(?<=a)b'\n    action: warn\n",
    );
    let r = agentmesh(dir.path(), &["policy", "show", p.to_str().unwrap()]);
    expect_code(&r, 4);
    assert!(r.stderr.starts_with("[POLICY_INVALID] "), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("line 5 column 12: rule 'r1': rules[0].regex"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("  rule      r1"), "{}", r.stderr);
    let good = write(dir.path(), "p.yaml", POLICY);
    let r = agentmesh(dir.path(), &["policy", "show", good.to_str().unwrap()]);
    expect_code(&r, 0);
    assert!(
        r.stdout.contains("policy       cli-test (version 1)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("no-ssn"), "{}", r.stdout);
}

#[test]
fn runs_go_on_only_under_their_policy_and_check_reports_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (w, s) = (workflow(dir.path()), script(dir.path()));
    let p = write(dir.path(), "p.yaml", POLICY);
    let logs = dir.path().join("logs");
    let run = |logs: &Path, policy: Option<&Path>| {
        let mut a = vec![
            "run",
            w.to_str().unwrap(),
            "--script",
            s.to_str().unwrap(),
            "--log-dir",
            logs.to_str().unwrap(),
            "--fsync",
            "never",
        ];
        if let Some(p) = policy {
            a.extend(["--policy", p.to_str().unwrap()]);
        }
        agentmesh(dir.path(), &a)
    };
    let r = run(&logs, Some(&p));
    expect_code(&r, 3);
    assert!(
        r.stdout.contains("--policy"),
        "the resume hint names the policy: {}",
        r.stdout
    );
    let log = logs.join("cli-policy.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("ann@example.com") && !text.contains("bob@example.org"));
    // Resuming without the policy is refused; with it, the run finishes.
    let r = agentmesh(
        dir.path(),
        &["resume", log.to_str().unwrap(), "--approve", "ok"],
    );
    expect_code(&r, 4);
    assert!(
        r.stderr.contains("was started under policy 'cli-test'"),
        "{}",
        r.stderr
    );
    let r = agentmesh(
        dir.path(),
        &[
            "resume",
            log.to_str().unwrap(),
            "--approve",
            "ok",
            "--policy",
            p.to_str().unwrap(),
        ],
    );
    expect_code(&r, 0);
    // Replay with the run's policy is equal; with another it is refused.
    let r = agentmesh(
        dir.path(),
        &[
            "replay",
            log.to_str().unwrap(),
            "--policy",
            p.to_str().unwrap(),
        ],
    );
    expect_code(&r, 0);
    let other = write(
        dir.path(),
        "other.yaml",
        "version: 1\nname: other\nrules: []\n",
    );
    let r = agentmesh(
        dir.path(),
        &[
            "replay",
            log.to_str().unwrap(),
            "--policy",
            other.to_str().unwrap(),
        ],
    );
    expect_code(&r, 4);
    assert!(r.stderr.contains("agentmesh policy check"), "{}", r.stderr);
    // The same policy changes nothing (exit 0); one without the email rule would no longer
    // redact what this run redacted (exit 1), and the JSON says where.
    let r = agentmesh(
        dir.path(),
        &[
            "policy",
            "check",
            p.to_str().unwrap(),
            log.to_str().unwrap(),
        ],
    );
    expect_code(&r, 0);
    assert!(
        r.stdout.contains("no decision would change"),
        "{}",
        r.stdout
    );
    let r = agentmesh(
        dir.path(),
        &[
            "policy",
            "check",
            other.to_str().unwrap(),
            log.to_str().unwrap(),
            "--json",
        ],
    );
    expect_code(&r, 1);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let changes = v["logs"][0]["changes"].as_array().unwrap();
    let first = &changes[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["subject"], "input");
    assert_eq!(first["change"], "noLongerRedact");
    assert_eq!(first["path"], "/to");
    // A log recorded without a policy: what the policy would now do.
    let plain_logs = dir.path().join("plain");
    let r = run(&plain_logs, None);
    expect_code(&r, 3);
    let plain = plain_logs.join("cli-policy.jsonl");
    let r = agentmesh(
        dir.path(),
        &[
            "policy",
            "check",
            p.to_str().unwrap(),
            plain.to_str().unwrap(),
        ],
    );
    expect_code(&r, 1);
    assert!(
        r.stdout.contains("(recorded without a policy)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("input       would now REDACT: email at /to (rule 'pii-email')"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("seq 4 node 'a'"), "{}", r.stdout);
}
