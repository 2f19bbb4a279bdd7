//! End-to-end tests of the `agentmesh` binary, each in its own temporary directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agentmesh_core::{
    read_header, read_log, Completion, EventData, Mesh, Run, RunOptions, RunStatus, Workflow,
};
use serde_json::{json, Value};

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    raw_stdout: Vec<u8>,
}

fn agentmesh(dir: &Path, args: &[&str]) -> Ran {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_agentmesh"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run agentmesh");
    Ran {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        raw_stdout: out.stdout,
    }
}

#[track_caller]
fn expect_code(r: &Ran, code: i32) {
    assert_eq!(
        r.code, code,
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        r.stdout, r.stderr
    );
}

fn write_json(dir: &Path, name: &str, value: Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    path
}

/// plan → (a, b, c in parallel) → join.
fn fan_out_workflow(dir: &Path) -> PathBuf {
    write_json(
        dir,
        "fan.json",
        json!({"name": "fan", "nodes": [
            {"id": "plan", "type": "agent", "agent": "planner"},
            {"id": "a", "type": "agent", "agent": "worker", "after": ["plan"]},
            {"id": "b", "type": "agent", "agent": "worker", "after": ["plan"]},
            {"id": "c", "type": "tool", "tool": "lookup", "after": ["plan"]},
            {"id": "join", "type": "agent", "agent": "writer", "after": ["a", "b", "c"]}
        ]}),
    )
}

/// check → route: ok → yes, otherwise → no.
fn branch_workflow(dir: &Path) -> PathBuf {
    write_json(
        dir,
        "branch.json",
        json!({"name": "branchy", "nodes": [
            {"id": "check", "type": "agent", "agent": "checker"},
            {"id": "route", "type": "branch", "after": ["check"],
             "cases": [{"when": {"path": "/outputs/check/ok", "eq": true}, "goto": "yes"}],
             "default": "no"},
            {"id": "yes", "type": "agent", "agent": "doer"},
            {"id": "no", "type": "agent", "agent": "doer"}
        ]}),
    )
}

fn approval_workflow(dir: &Path) -> PathBuf {
    write_json(
        dir,
        "approval.json",
        json!({"name": "approval", "nodes": [
            {"id": "draft", "type": "agent", "agent": "writer"},
            {"id": "approve", "type": "human", "prompt": "Ship it?", "after": ["draft"]},
            {"id": "ship", "type": "agent", "agent": "shipper", "after": ["approve"]}
        ]}),
    )
}

fn log_path_from(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("log          "))
        .unwrap_or_else(|| panic!("no log line in\n{stdout}"))
        .trim()
        .to_owned()
}

fn canonical_text(dir: &Path, log: &str) -> String {
    let r = agentmesh(dir, &["canonical", log]);
    expect_code(&r, 0);
    r.stdout
}

#[test]
fn finish_order_does_not_change_the_canonical_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = fan_out_workflow(dir);
    let outputs = |delays: [u64; 3]| {
        json!({"agents": {
            "a": [{"output": {"part": "a"}, "delayMs": delays[0]}],
            "b": [{"output": {"part": "b"}, "delayMs": delays[1]}],
            "c": [{"output": {"part": "c"}, "delayMs": delays[2]}]
        }})
    };
    // First a finishes first, then last: the physical completion order differs.
    write_json(dir, "fast-a.json", outputs([0, 30, 60]));
    write_json(dir, "slow-a.json", outputs([60, 30, 0]));
    let wf = wf.to_str().unwrap();
    let r1 = agentmesh(
        dir,
        &[
            "run",
            wf,
            "--script",
            "fast-a.json",
            "--seed",
            "7",
            "--log-dir",
            "one",
        ],
    );
    expect_code(&r1, 0);
    let r2 = agentmesh(
        dir,
        &[
            "run",
            wf,
            "--script",
            "slow-a.json",
            "--seed",
            "7",
            "--log-dir",
            "two",
        ],
    );
    expect_code(&r2, 0);
    let (log1, log2) = (log_path_from(&r1.stdout), log_path_from(&r2.stdout));
    assert!(log1.starts_with("one/") && log2.starts_with("two/"));
    let c1 = agentmesh(dir, &["canonical", &log1]);
    let c2 = agentmesh(dir, &["canonical", &log2]);
    expect_code(&c1, 0);
    expect_code(&c2, 0);
    assert_eq!(c1.raw_stdout, c2.raw_stdout, "canonical logs differ");
    // The CLI prints exactly what the library computes, and it is sorted by seq without
    // wall-clock or chain fields.
    let mut lib = Vec::new();
    agentmesh_core::canonical_log(dir.join(&log1), &mut lib).unwrap();
    assert_eq!(c1.raw_stdout, lib);
    let text = c1.stdout;
    for line in text.lines().skip(1) {
        assert!(
            !line.contains(r#""meta""#) && !line.contains(r#""hash""#),
            "{line}"
        );
    }
    let seqs: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // Both runs print the same fingerprint too.
    let fp = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("fingerprint"))
            .map(str::to_owned)
    };
    assert_eq!(fp(&r1.stdout), fp(&r2.stdout));
    assert!(fp(&r1.stdout).is_some());
}

#[test]
fn run_prints_a_timeline_and_a_failed_run_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = fan_out_workflow(dir);
    write_json(
        dir,
        "s.json",
        json!({"runId": "bad", "agents": {"b": [{"error": {"type": "Boom", "message": "no luck", "retryable": false}}]}}),
    );
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--script", "s.json"]);
    expect_code(&r, 1);
    assert!(r.stdout.contains("status       failed"), "{}", r.stdout);
    assert!(r.stdout.contains("[AGENT_FAILED]"), "{}", r.stdout);
    let failed_row = r
        .stdout
        .lines()
        .find(|l| l.contains("agentFailed"))
        .expect("a row for the failure");
    assert!(
        failed_row.contains("Boom: no luck (permanent)"),
        "{failed_row}"
    );
    assert!(
        failed_row.split_whitespace().nth(2) == Some("b"),
        "{failed_row}"
    );
    assert_eq!(log_path_from(&r.stdout), "agentmesh-logs/bad.jsonl");

    write_json(
        dir,
        "c.json",
        json!({"runId": "cancelled", "agents": {"plan": [{"cancel": true}]}}),
    );
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--script", "c.json"]);
    expect_code(&r, 1);
    assert!(r.stdout.contains("status       cancelled"), "{}", r.stdout);
    assert!(r.stdout.contains("runCancelled"), "{}", r.stdout);
}

#[test]
fn a_second_run_with_the_same_id_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = fan_out_workflow(dir);
    let wf = wf.to_str().unwrap();
    expect_code(&agentmesh(dir, &["run", wf, "--run-id", "r1"]), 0);
    let again = agentmesh(dir, &["run", wf, "--run-id", "r1"]);
    expect_code(&again, 4);
    assert!(again.stderr.starts_with("[RUN_EXISTS]"), "{}", again.stderr);
}

#[test]
fn bad_input_exits_4_and_bad_usage_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bad = write_json(
        dir,
        "bad.json",
        json!({"name": "x", "nodes": [{"id": "a", "type": "agent", "agent": "p", "after": ["ghost"]}]}),
    );
    let r = agentmesh(dir, &["run", bad.to_str().unwrap()]);
    expect_code(&r, 4);
    assert!(r.stderr.starts_with("[INVALID_WORKFLOW]"), "{}", r.stderr);
    assert!(r.stderr.contains("ghost"), "{}", r.stderr);

    let wf = fan_out_workflow(dir);
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--input", "{not json"]);
    expect_code(&r, 4);
    assert!(r.stderr.starts_with("[INVALID_ARGUMENT]"), "{}", r.stderr);

    let r = agentmesh(dir, &["run", "missing.json"]);
    expect_code(&r, 7);
    assert!(r.stderr.starts_with("[IO]"), "{}", r.stderr);

    let r = agentmesh(dir, &["fork", "x.jsonl"]);
    expect_code(&r, 2);
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--fsync", "sometimes"]);
    expect_code(&r, 2);

    let help = agentmesh(dir, &["--help"]);
    expect_code(&help, 0);
    for line in [
        "3   the run is waiting",
        "5   LOG_CORRUPT",
        "6   NONDETERMINISM",
    ] {
        assert!(help.stdout.contains(line), "{}", help.stdout);
    }
}

/// Offset of the line holding byte `pos`.
fn line_start(bytes: &[u8], pos: usize) -> usize {
    bytes[..pos]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

#[test]
fn verify_reports_good_corrupt_and_torn_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = fan_out_workflow(dir);
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--run-id", "v"]);
    expect_code(&r, 0);
    let good = dir.join("agentmesh-logs/v.jsonl");
    let bytes = std::fs::read(&good).unwrap();

    let ok = agentmesh(dir, &["verify", "agentmesh-logs/v.jsonl"]);
    expect_code(&ok, 0);
    assert!(
        ok.stdout.contains("finished     runCompleted"),
        "{}",
        ok.stdout
    );
    assert!(ok.stdout.contains("repaired     nothing"), "{}", ok.stdout);
    let js = agentmesh(dir, &["verify", "agentmesh-logs/v.jsonl", "--json"]);
    expect_code(&js, 0);
    let report: Value = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(report["bytes"], json!(bytes.len()));
    assert_eq!(report["holes"], json!([]));

    // A flipped byte in the middle of the file: the record holding it is named by offset.
    let mut flipped = bytes.clone();
    let mut pos = flipped.len() / 2;
    while flipped[pos] == b'\n' {
        pos += 1;
    }
    flipped[pos] = if flipped[pos] == b'7' { b'8' } else { b'7' };
    std::fs::write(dir.join("flipped.jsonl"), &flipped).unwrap();
    let r = agentmesh(dir, &["verify", "flipped.jsonl"]);
    expect_code(&r, 5);
    assert!(r.stderr.starts_with("[LOG_CORRUPT]"), "{}", r.stderr);
    let offset = line_start(&flipped, pos);
    assert!(
        r.stderr.contains(&format!("at byte {offset}:")),
        "offset {offset} not in {}",
        r.stderr
    );
    assert_eq!(
        std::fs::read(dir.join("flipped.jsonl")).unwrap(),
        flipped,
        "damage before the tail is never repaired"
    );

    // A torn final record (a crash mid-write) is cut off after being copied aside.
    let cut = bytes.len() - 10;
    std::fs::write(dir.join("torn.jsonl"), &bytes[..cut]).unwrap();
    let r = agentmesh(dir, &["verify", "torn.jsonl"]);
    expect_code(&r, 0);
    let last_line = line_start(&bytes, bytes.len() - 1);
    assert!(
        r.stdout.contains(&format!(
            "torn tail cut at byte {last_line}: {} bytes moved to torn.jsonl.broken",
            cut - last_line
        )),
        "{}",
        r.stdout
    );
    assert_eq!(
        std::fs::read(dir.join("torn.jsonl")).unwrap(),
        &bytes[..last_line]
    );
    assert_eq!(
        std::fs::read(dir.join("torn.jsonl.broken")).unwrap(),
        &bytes[last_line..cut]
    );
}

#[test]
fn replay_names_the_divergence_of_a_changed_workflow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = fan_out_workflow(dir);
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--run-id", "rp"]);
    expect_code(&r, 0);
    let log = "agentmesh-logs/rp.jsonl";

    let same = agentmesh(dir, &["replay", log]);
    expect_code(&same, 0);
    assert!(
        same.stdout.contains("replay       equal"),
        "{}",
        same.stdout
    );
    let same = agentmesh(dir, &["replay", log, "--workflow", wf.to_str().unwrap()]);
    expect_code(&same, 0);

    let mut spec: Value = serde_json::from_slice(&std::fs::read(&wf).unwrap()).unwrap();
    spec["nodes"][4]["agent"] = json!("editor");
    write_json(dir, "changed.json", spec);
    let r = agentmesh(dir, &["replay", log, "--workflow", "changed.json"]);
    expect_code(&r, 6);
    assert!(r.stderr.starts_with("[NONDETERMINISM]"), "{}", r.stderr);
    // join is scheduled at seq 13: runStarted, step 1 (2..4), step 2 (5..11), stepStarted 12.
    for line in [
        "seq       13",
        "node      join",
        "field     data.agent",
        "expected  \"writer\"",
        "actual    \"editor\"",
    ] {
        assert!(r.stderr.contains(line), "{line:?} not in\n{}", r.stderr);
    }
}

#[test]
fn resume_with_approve_completes_a_waiting_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = approval_workflow(dir);
    write_json(
        dir,
        "s.json",
        json!({"runId": "ap", "agents": {"ship": [{"output": {"shipped": true}}]}}),
    );
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--script", "s.json"]);
    expect_code(&r, 3);
    assert!(r.stdout.contains("status       waiting"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("waiting for  approve (asks \"Ship it?\")"),
        "{}",
        r.stdout
    );
    let cmd = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("to approve:  "))
        .expect("the resume command is printed");
    assert_eq!(
        cmd,
        "agentmesh resume agentmesh-logs/ap.jsonl --script s.json --approve approve"
    );
    // Run exactly the printed command.
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    let done = agentmesh(dir, &args);
    expect_code(&done, 0);
    assert!(
        done.stdout.contains("status       completed"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout
            .contains(r#"output       {"ship":{"shipped":true}}"#),
        "{}",
        done.stdout
    );
    let text = canonical_text(dir, "agentmesh-logs/ap.jsonl");
    assert!(text.contains(r#""type":"humanResolved""#) && text.contains(r#"{"approved":true}"#));

    // Approving a node that is not waiting changes nothing and is an invalid argument.
    let again = agentmesh(
        dir,
        &["resume", "agentmesh-logs/ap.jsonl", "--approve", "approve"],
    );
    expect_code(&again, 4);
    assert!(
        again.stderr.starts_with("[INVALID_ARGUMENT]"),
        "{}",
        again.stderr
    );
}

#[test]
fn resume_takes_approvals_from_the_script() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = approval_workflow(dir);
    write_json(
        dir,
        "s.json",
        json!({"runId": "sa", "approvals": {"approve": {"approved": true, "by": "script"}}}),
    );
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--script", "s.json"]);
    expect_code(&r, 3);
    let r = agentmesh(
        dir,
        &["resume", "agentmesh-logs/sa.jsonl", "--script", "s.json"],
    );
    expect_code(&r, 0);
    assert!(
        canonical_text(dir, "agentmesh-logs/sa.jsonl").contains(r#""by":"script""#),
        "{}",
        r.stdout
    );
}

#[test]
fn inspect_at_and_fork_with_set_change_a_branch_decision() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = branch_workflow(dir);
    write_json(
        dir,
        "s.json",
        json!({"runId": "br", "agents": {"check": [{"output": {"ok": true}}]}}),
    );
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--script", "s.json"]);
    expect_code(&r, 0);
    let log = "agentmesh-logs/br.jsonl";
    assert!(canonical_text(dir, log).contains(r#""data":{"case":0,"goto":"yes"}"#));

    // The timeline: one row per event, the branch decision readable.
    let t = agentmesh(dir, &["inspect", log]);
    expect_code(&t, 0);
    assert!(
        t.stdout.starts_with("run br  workflow branchy"),
        "{}",
        t.stdout
    );
    let branch_row = t
        .stdout
        .lines()
        .find(|l| l.contains("branchDecided"))
        .unwrap();
    assert!(branch_row.contains("case 0 -> yes"), "{branch_row}");
    // One row per event, then the legend of the step-end mark.
    let lines: Vec<&str> = t.stdout.lines().skip(2).collect();
    let events = canonical_text(dir, log).lines().count() - 1;
    assert_eq!(lines.len(), events + 1);
    assert!(
        lines[events].starts_with("★ step end: a fork point"),
        "{}",
        t.stdout
    );
    let tj = agentmesh(dir, &["inspect", log, "--json"]);
    let tj: Value = serde_json::from_str(&tj.stdout).unwrap();
    assert_eq!(tj["events"].as_array().unwrap().len(), events);
    assert_eq!(tj["events"][4]["type"], json!("branchDecided"));

    // Seq 4 (check's completion) ends step 1: a fork point, with check's output known.
    let at = agentmesh(dir, &["inspect", log, "--at", "4"]);
    expect_code(&at, 0);
    assert!(at.stdout.contains("fork point   yes"), "{}", at.stdout);
    assert!(
        at.stdout.contains(r#"completed    check  {"ok":true}"#),
        "{}",
        at.stdout
    );
    assert!(at.stdout.contains("pending      -"), "{}", at.stdout);
    let mid = agentmesh(dir, &["inspect", log, "--at", "3", "--json"]);
    expect_code(&mid, 0);
    let st: Value = serde_json::from_str(&mid.stdout).unwrap();
    assert_eq!(st["forkPoint"], json!(false));
    assert_eq!(st["pending"][0]["node"], json!("check"));
    let out_of_range = agentmesh(dir, &["inspect", log, "--at", "999"]);
    expect_code(&out_of_range, 4);

    // Forking where no step ends is refused; at seq 4 with another output, the branch turns.
    let bad = agentmesh(
        dir,
        &["fork", log, "--at", "3", "--set", r#"check={"ok":false}"#],
    );
    expect_code(&bad, 4);
    assert!(bad.stderr.contains("not a step end"), "{}", bad.stderr);
    let f = agentmesh(
        dir,
        &[
            "fork",
            log,
            "--at",
            "4",
            "--set",
            r#"check={"ok":false}"#,
            "--run-id",
            "br2",
        ],
    );
    expect_code(&f, 0);
    assert_eq!(log_path_from(&f.stdout), "agentmesh-logs/br2.jsonl");
    assert!(f.stdout.contains("forked from br at seq 4"), "{}", f.stdout);
    let text = canonical_text(dir, "agentmesh-logs/br2.jsonl");
    assert!(text.contains(r#""type":"outputOverridden""#), "{text}");
    let decisions: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(r#""type":"branchDecided""#))
        .collect();
    assert_eq!(decisions.len(), 1, "{text}");
    assert!(
        decisions[0].contains(r#""data":{"case":null,"goto":"no"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""type":"nodeSkipped","runId":"br2""#),
        "{text}"
    );
    expect_code(&agentmesh(dir, &["verify", "agentmesh-logs/br2.jsonl"]), 0);
    expect_code(&agentmesh(dir, &["replay", "agentmesh-logs/br2.jsonl"]), 0);
}

fn fingerprint_of(stdout: &str) -> String {
    let fp = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("fingerprint  "))
        .next_back()
        .unwrap_or_else(|| panic!("no fingerprint in\n{stdout}"))
        .trim()
        .to_owned();
    assert_eq!(fp.len(), 64);
    assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
    fp
}

#[test]
fn demo_runs_twice_with_the_same_fingerprint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let first = agentmesh(dir, &["demo", "--log-dir", "logs"]);
    expect_code(&first, 0);
    for part in [
        "status       waiting",
        "waiting for  approve",
        "toolFailed",
        "retry of #",
        "(loop)",
        "status       completed",
        "ok           the log is intact",
        "0 agent calls",
    ] {
        assert!(
            first.stdout.contains(part),
            "{part:?} not in\n{}",
            first.stdout
        );
    }
    let second = agentmesh(dir, &["demo", "--log-dir", "logs"]);
    expect_code(&second, 0);
    assert!(dir.join("logs/demo-1/demo.jsonl").exists());
    assert!(dir.join("logs/demo-2/demo.jsonl").exists());
    assert_eq!(
        fingerprint_of(&first.stdout),
        fingerprint_of(&second.stdout)
    );

    // The fork the demo suggests works as printed.
    let fork = first
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("agentmesh fork "))
        .expect("a fork suggestion");
    let fork = fork.split("   (").next().unwrap();
    let mut args = vec!["fork"];
    args.extend(fork.split_whitespace().map(|a| a.trim_matches('\'')));
    let r = agentmesh(dir, &args);
    expect_code(&r, 0);
    assert!(r.stdout.contains("default -> no successor"), "{}", r.stdout);
}

#[test]
fn anchors_catch_truncation_and_recomputed_chains_and_keys_stay_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = fan_out_workflow(dir);
    let ran = agentmesh(
        dir,
        &[
            "run",
            wf.to_str().unwrap(),
            "--run-id",
            "anch",
            "--log-dir",
            "logs",
        ],
    );
    expect_code(&ran, 0);
    let log = "logs/anch.jsonl";
    let plain = agentmesh(dir, &["anchor", log]);
    expect_code(&plain, 0);
    let anchor: Value = serde_json::from_str(&plain.stdout).unwrap();
    assert_eq!(anchor["runId"], "anch");
    assert!(anchor.get("mac").is_none());
    std::fs::write(dir.join("key"), b"k3y-f1l3-m4t3r14l").unwrap();
    let keyed = agentmesh(dir, &["anchor", log, "--key-file", "key"]);
    expect_code(&keyed, 0);
    std::fs::write(dir.join("plain.anchor"), &plain.stdout).unwrap();
    std::fs::write(dir.join("keyed.anchor"), &keyed.stdout).unwrap();
    expect_code(
        &agentmesh(dir, &["verify", log, "--anchor", "plain.anchor"]),
        0,
    );
    expect_code(
        &agentmesh(
            dir,
            &[
                "verify",
                log,
                "--anchor",
                "keyed.anchor",
                "--key-file",
                "key",
            ],
        ),
        0,
    );
    // A key file's one final newline is not key material: it gives the same anchor as the
    // variable holding the text without it.
    std::fs::write(dir.join("key-nl"), b"k3y-f1l3-m4t3r14l\n").unwrap();
    let from_nl = agentmesh(dir, &["anchor", log, "--key-file", "key-nl"]);
    let from_env = Command::new(env!("CARGO_BIN_EXE_agentmesh"))
        .args(["anchor", log])
        .env("AGENTMESH_ANCHOR_KEY", "k3y-f1l3-m4t3r14l")
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(from_nl.stdout, keyed.stdout);
    assert_eq!(String::from_utf8_lossy(&from_env.stdout), keyed.stdout);
    // The key from the environment; the wrong key exits 8 and never shows the material.
    let wrong = Command::new(env!("CARGO_BIN_EXE_agentmesh"))
        .args(["verify", log, "--anchor", "keyed.anchor"])
        .env("AGENTMESH_ANCHOR_KEY", "s3cr3t-3nv-m4t3r14l")
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(8));
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&wrong.stdout),
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(
        shown.contains("[LOG_HEAD_MISMATCH]") && !shown.contains("s3cr3t"),
        "{shown}"
    );
    // Cut the last record off: a valid, shorter log, caught only by the anchor.
    let bytes = std::fs::read(dir.join(log)).unwrap();
    let last_line = line_start(&bytes, bytes.len() - 1);
    std::fs::write(dir.join("logs/cut.jsonl"), &bytes[..last_line]).unwrap();
    expect_code(&agentmesh(dir, &["verify", "logs/cut.jsonl", "--check"]), 0);
    let cut = agentmesh(
        dir,
        &["verify", "logs/cut.jsonl", "--anchor", "plain.anchor"],
    );
    expect_code(&cut, 8);
    assert!(
        cut.stderr.contains("[LOG_TRUNCATED]") && cut.stderr.contains("records"),
        "{}",
        cut.stderr
    );
    // Inline anchor JSON works too.
    expect_code(
        &agentmesh(dir, &["verify", log, "--anchor", plain.stdout.trim()]),
        0,
    );
    // Edit each record and recompute the chain: verify alone passes, the anchor does not.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for i in 0..lines.len() {
        let mut records: Vec<String> = lines.iter().map(|l| unsealed(l)).collect();
        records[i] = records[i].replacen("\"at\":", "\"at\":9", 1);
        std::fs::write(dir.join("logs/edited.jsonl"), resealed(&records)).unwrap();
        expect_code(
            &agentmesh(dir, &["verify", "logs/edited.jsonl", "--check"]),
            0,
        );
        let edited = agentmesh(
            dir,
            &["verify", "logs/edited.jsonl", "--anchor", "plain.anchor"],
        );
        expect_code(&edited, 8);
        assert!(
            edited.stderr.contains("[LOG_HEAD_MISMATCH]"),
            "record {i}: {}",
            edited.stderr
        );
    }
}

/// A format-2 line without its `,"crc":"…"` field (closing brace kept).
fn unsealed(line: &str) -> String {
    format!("{}}}", &line[..line.rfind(",\"crc\":\"").unwrap()])
}

/// Format-2 lines with the chain (a running CRC32C) recomputed.
fn resealed(records: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut crc = 0u32;
    for r in records {
        crc = crc32c::crc32c_append(crc, r.as_bytes());
        out.extend_from_slice(&r.as_bytes()[..r.len() - 1]);
        out.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
    }
    out
}

#[test]
fn verify_check_never_writes_and_inspect_steps_shows_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = fan_out_workflow(dir);
    expect_code(
        &agentmesh(
            dir,
            &[
                "run",
                wf.to_str().unwrap(),
                "--run-id",
                "ro",
                "--log-dir",
                "logs",
            ],
        ),
        0,
    );
    let log = dir.join("logs/ro.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"{\"seq\":99,\"ty");
    std::fs::write(&log, &bytes).unwrap();
    let checked = agentmesh(dir, &["verify", "logs/ro.jsonl", "--check", "--json"]);
    expect_code(&checked, 0);
    let report: Value = serde_json::from_str(&checked.stdout).unwrap();
    assert!(
        report["tornAt"].is_u64() && report["repaired"].is_null(),
        "{report}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "--check wrote");
    let steps = agentmesh(dir, &["inspect", "logs/ro.jsonl", "--steps", "--json"]);
    expect_code(&steps, 0);
    let states: Vec<Value> = serde_json::from_str(&steps.stdout).unwrap();
    // seq 1, three step ends, and the end of the run.
    assert_eq!(states.len(), 5, "{}", steps.stdout);
    assert_eq!(states.last().unwrap()["status"], "completed");
    let text = agentmesh(dir, &["inspect", "logs/ro.jsonl", "--steps"]);
    expect_code(&text, 0);
    assert!(text.stdout.contains("+join"), "{}", text.stdout);
}

#[test]
fn a_workflow_file_that_is_not_utf8_exits_4_naming_the_offset() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("w.json"), b"{\"name\": \"\xff\"}").unwrap();
    let r = agentmesh(tmp.path(), &["run", "w.json"]);
    expect_code(&r, 4);
    assert!(
        r.stderr.contains("[INVALID_WORKFLOW]") && r.stderr.contains("offset 10"),
        "{}",
        r.stderr
    );
}

// Logs a program hosts: the CLI never invents their work ---------------------------------------

/// No placeholder output (the scripted default `{"node", "visit", "attempt"}`) in a log.
#[track_caller]
fn assert_no_placeholder(dir: &Path, log: &str) {
    for line in canonical_text(dir, log).lines().skip(1) {
        let e: Value = serde_json::from_str(line).unwrap();
        let out = &e["data"]["output"];
        let fabricated = out.is_object()
            && out.as_object().unwrap().len() == 3
            && out.get("node").is_some()
            && out.get("visit").is_some()
            && out.get("attempt").is_some();
        assert!(!fabricated, "placeholder output in {log}: {line}");
    }
}

fn approval_spec() -> Workflow {
    Workflow::from_value(json!({"name": "approval", "nodes": [
        {"id": "draft", "type": "agent", "agent": "writer"},
        {"id": "approve", "type": "human", "prompt": "Ship it?", "after": ["draft"]},
        {"id": "ship", "type": "tool", "tool": "save", "after": ["approve", "draft"]}
    ]}))
    .unwrap()
}

/// A Rust program's mesh (host `rust`) with real agents for the approval workflow.
fn rust_mesh(dir: &Path) -> Mesh {
    let mut mesh = Mesh::new().with_log_dir(dir);
    mesh.agent("writer", |_, _| {
        Ok(json!({"text": "written by Rust"}).into())
    });
    mesh.tool("save", |act, _| {
        Ok(json!({"saved": act.deps["draft"]["text"], "by": "rust"}).into())
    });
    mesh
}

#[test]
fn a_rust_hosted_waiting_run_approved_from_the_cli_is_finished_by_its_program() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = approval_spec();
    let first = rust_mesh(&dir.join("logs"))
        .run(
            &wf,
            RunOptions {
                run_id: Some("rs".into()),
                ..RunOptions::default()
            },
        )
        .unwrap();
    assert_eq!(first.status, RunStatus::Waiting);
    let log = "logs/rs.jsonl";
    assert_eq!(read_header(dir.join(log)).unwrap().host(), Some("rust"));

    // Approving from the CLI records the decision and stops where the program's tool runs.
    let r = agentmesh(
        dir,
        &[
            "resume",
            log,
            "--approve",
            r#"approve={"approved":true,"by":"ops"}"#,
        ],
    );
    expect_code(&r, 9);
    for part in [
        "status       running (stopped: the next work is its host program's)",
        "needs        ship: tool save",
        "this run was started by a rust program",
        r#"mesh.resume("logs/rs.jsonl", approvals)   (Rust)"#,
        "  -      3  ship",
    ] {
        assert!(r.stdout.contains(part), "{part:?} not in\n{}", r.stdout);
    }
    let text = canonical_text(dir, log);
    assert!(
        text.contains(r#""type":"humanResolved""#) && text.contains(r#""by":"ops""#),
        "{text}"
    );
    assert!(
        text.contains(r#""type":"toolScheduled""#) && !text.contains("toolCompleted"),
        "{text}"
    );
    assert_no_placeholder(dir, log);
    let v: Value =
        serde_json::from_str(&agentmesh(dir, &["verify", log, "--check", "--json"]).stdout)
            .unwrap();
    assert_eq!(
        (v["status"].as_str(), v["inFlight"].clone()),
        (Some("crashed"), json!(["ship"]))
    );
    // Nothing more to approve: another resume without a script changes nothing.
    let before = std::fs::read(dir.join(log)).unwrap();
    expect_code(&agentmesh(dir, &["resume", log]), 9);
    assert_eq!(std::fs::read(dir.join(log)).unwrap(), before);

    // The program resumes and its own tool finishes the run.
    let done = rust_mesh(&dir.join("logs"))
        .resume(dir.join(log), BTreeMap::new())
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(
        done.output.unwrap()["ship"],
        json!({"saved": "written by Rust", "by": "rust"})
    );
    assert_no_placeholder(dir, log);
    let v = agentmesh(dir, &["verify", log]);
    expect_code(&v, 0);
    assert!(
        v.stdout
            .contains("status       completed\nhost         rust\n"),
        "{}",
        v.stdout
    );
}

/// fan-out workflow run by a Rust program that "crashes" after plan and a: the log keeps b and
/// c scheduled with no completion, and no writer holds it.
fn crashed_rust_log(dir: &Path) -> PathBuf {
    let wf = Workflow::from_file(fan_out_workflow(dir)).unwrap();
    let mut run = Run::start(
        &wf,
        RunOptions {
            run_id: Some("crashed".into()),
            log_dir: Some(dir.join("logs")),
            host: Some("rust".into()),
            ..RunOptions::default()
        },
    )
    .unwrap();
    let plan = run.poll().unwrap().remove(0);
    run.complete(plan.id, Completion::ok(json!({"plan": "p"})))
        .unwrap();
    let step = run.poll().unwrap();
    assert_eq!(
        step.iter().map(|a| &*a.node).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    run.complete(step[0].id, Completion::ok(json!("a done")))
        .unwrap();
    drop(run); // the process dies: b and c stay outstanding
    dir.join("logs/crashed.jsonl")
}

#[test]
fn a_crashed_rust_run_runs_only_what_the_script_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    crashed_rust_log(dir);
    let log = "logs/crashed.jsonl";

    let v = agentmesh(dir, &["verify", log, "--check"]);
    expect_code(&v, 0);
    assert!(
        v.stdout.contains(
            "status       crashed (no writer holds the lock), 2 activations in flight — resume it"
        ),
        "{}",
        v.stdout
    );
    let t = agentmesh(dir, &["inspect", log]);
    let in_flight: Vec<&str> = t
        .stdout
        .lines()
        .filter(|l| l.contains(" in flight "))
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(in_flight, ["b", "c"], "{}", t.stdout);
    assert!(
        t.stdout
            .contains("tool lookup, scheduled at seq 8, no completion yet"),
        "{}",
        t.stdout
    );
    let tj: Value =
        serde_json::from_str(&agentmesh(dir, &["inspect", log, "--json"]).stdout).unwrap();
    assert_eq!(
        tj["pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [7, 8]
    );

    // No script: nothing runs.
    let before = std::fs::read(dir.join(log)).unwrap();
    let r = agentmesh(dir, &["resume", log]);
    expect_code(&r, 9);
    assert!(
        r.stdout
            .contains("needs        b: agent worker\n             c: tool lookup"),
        "{}",
        r.stdout
    );
    assert_eq!(std::fs::read(dir.join(log)).unwrap(), before);

    // The script gives node b by id, but agent worker also runs a: worker is not the CLI's,
    // so b stays outstanding; the script's tool lookup (c) runs, and the step waits for b.
    write_json(
        dir,
        "b-only.json",
        json!({"agents": {"b": [{"output": "b by script"}], "lookup": [{"output": "c by script"}]}}),
    );
    let r = agentmesh(dir, &["resume", log, "--script", "b-only.json"]);
    expect_code(&r, 9);
    assert!(
        r.stdout
            .contains("agent 'worker' also runs a, which the script does not give"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("needs        b: agent worker\n"),
        "{}",
        r.stdout
    );
    let after = std::fs::read_to_string(dir.join(log)).unwrap();
    assert!(after.contains(r#""output":"c by script""#), "{after}");
    assert!(!after.contains("b by script"), "{after}");

    // An entry that would leave some attempt to the default output is refused up front.
    write_json(
        dir,
        "partial.json",
        json!({"agents": {"worker": [{"attempt": 1, "output": 1}]}}),
    );
    let r = agentmesh(dir, &["resume", log, "--script", "partial.json"]);
    expect_code(&r, 4);
    assert!(
        r.stderr
            .starts_with("[INVALID_ARGUMENT] the script gives node 'a' behaviours only for some"),
        "{}",
        r.stderr
    );

    // The agent named: b runs, and the run stops again at join, the writer's.
    write_json(
        dir,
        "worker.json",
        json!({"agents": {"worker": [{"output": "by script"}], "lookup": [{"output": "c by script"}]}}),
    );
    let r = agentmesh(dir, &["resume", log, "--script", "worker.json"]);
    expect_code(&r, 9);
    assert!(
        r.stdout.contains("needs        join: agent writer"),
        "{}",
        r.stdout
    );
    let text = canonical_text(dir, log);
    assert!(text.contains(r#""output":"c by script""#), "{text}");
    assert_no_placeholder(dir, log);

    // A fork of the program's log never runs its unscripted nodes either, and stays its.
    let f = agentmesh(dir, &["fork", log, "--at", "4", "--run-id", "f1"]);
    expect_code(&f, 9);
    assert_eq!(
        read_header(dir.join("logs/f1.jsonl")).unwrap().host(),
        Some("rust")
    );
    let (_, events) = read_log(dir.join("logs/f1.jsonl")).unwrap();
    assert!(events
        .iter()
        .filter(|e| e.seq > 4)
        .all(|e| !matches!(e.data, EventData::Completed(..))));
    assert_no_placeholder(dir, "logs/f1.jsonl");
}

#[test]
fn the_cli_s_own_runs_keep_their_default_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = approval_workflow(dir);
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--run-id", "own"]);
    expect_code(&r, 3);
    assert_eq!(
        read_header(dir.join("agentmesh-logs/own.jsonl"))
            .unwrap()
            .host(),
        Some("cli")
    );
    let r = agentmesh(
        dir,
        &["resume", "agentmesh-logs/own.jsonl", "--approve", "approve"],
    );
    expect_code(&r, 0);
    assert!(
        r.stdout
            .contains(r#"{"ship":{"attempt":1,"node":"ship","visit":1}}"#),
        "{}",
        r.stdout
    );
}

#[test]
fn verify_says_running_while_a_writer_holds_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = Workflow::from_file(fan_out_workflow(dir)).unwrap();
    let run = Run::start(
        &wf,
        RunOptions {
            run_id: Some("live".into()),
            log_dir: Some(dir.join("logs")),
            ..RunOptions::default()
        },
    )
    .unwrap();
    let v = agentmesh(dir, &["verify", "logs/live.jsonl", "--check", "--json"]);
    expect_code(&v, 0);
    let v: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(v["status"], "running");
    assert_eq!(
        v["summary"],
        "running (a writer holds the lock), 1 activation in flight"
    );
    let listed = agentmesh(dir, &["runs", "logs"]);
    assert!(
        listed.stdout.contains("running (1 in flight)"),
        "{}",
        listed.stdout
    );
    drop(run);
    let v: Value = serde_json::from_str(
        &agentmesh(dir, &["verify", "logs/live.jsonl", "--check", "--json"]).stdout,
    )
    .unwrap();
    assert_eq!(v["status"], "crashed");
}

// Watching runs: timeline marks, show, runs, follow --------------------------------------------

/// plan → draft (retried once, long output) → review, with usage.
fn retry_workflow(dir: &Path) -> (PathBuf, PathBuf) {
    let wf = write_json(
        dir,
        "retry.json",
        json!({"name": "retry", "nodes": [
            {"id": "plan", "type": "agent", "agent": "planner"},
            {"id": "draft", "type": "agent", "agent": "writer", "after": ["plan"],
             "retry": {"maxAttempts": 2, "backoffMs": 5}},
            {"id": "review", "type": "agent", "agent": "reviewer", "after": ["draft"]}
        ]}),
    );
    let long =
        "a draft much longer than sixty characters, so that the timeline has to cut it short";
    let script = write_json(
        dir,
        "retry-script.json",
        json!({"runId": "rt", "agents": {
            "plan": [{"output": {"topic": "t"}, "usage": {"inputTokens": 10, "outputTokens": 2}}],
            "draft": [
                {"attempt": 1, "error": {"type": "Flaky", "message": "503"}, "usage": {"inputTokens": 5, "outputTokens": 0}},
                {"output": {"text": long}, "usage": {"inputTokens": 100, "outputTokens": 40}}
            ]
        }}),
    );
    (wf, script)
}

#[test]
fn step_ends_are_marked_where_fork_points_are_and_json_values_are_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (wf, script) = retry_workflow(dir);
    let r = agentmesh(
        dir,
        &[
            "run",
            wf.to_str().unwrap(),
            "--script",
            script.to_str().unwrap(),
        ],
    );
    expect_code(&r, 0);
    let log = "agentmesh-logs/rt.jsonl";
    let tj: Value =
        serde_json::from_str(&agentmesh(dir, &["inspect", log, "--json"]).stdout).unwrap();
    let events = tj["events"].as_array().unwrap();
    let text = agentmesh(dir, &["inspect", log]).stdout;
    for e in events {
        let seq = e["seq"].as_u64().unwrap();
        let state = agentmesh_core::state_at(dir.join(log), seq).unwrap();
        assert_eq!(e["forkPoint"], json!(state.fork_point), "seq {seq}");
        let marked = text
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{seq}★")));
        assert_eq!(marked, state.fork_point, "seq {seq}\n{text}");
    }
    assert!(events.iter().filter(|e| e["forkPoint"] == true).count() >= 4);
    // --json keeps whole values: the detail and the event's data.
    let draft = events
        .iter()
        .find(|e| e["type"] == "agentCompleted" && e["node"] == "draft")
        .unwrap();
    assert!(draft["detail"]
        .as_str()
        .unwrap()
        .contains("so that the timeline has to cut it short"));
    assert_eq!(
        draft["data"]["usage"],
        json!({"inputTokens": 100, "outputTokens": 40})
    );
    assert!(
        text.contains("than sixty characters, so th..."),
        "the text timeline still cuts: {text}"
    );
}

#[test]
fn show_prints_a_visit_whole_with_its_attempts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (wf, script) = retry_workflow(dir);
    expect_code(
        &agentmesh(
            dir,
            &[
                "run",
                wf.to_str().unwrap(),
                "--script",
                script.to_str().unwrap(),
            ],
        ),
        0,
    );
    let log = "agentmesh-logs/rt.jsonl";
    let s = agentmesh(dir, &["show", log, "draft", "--json"]);
    expect_code(&s, 0);
    let d: Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(
        (d["node"].as_str(), d["type"].as_str(), d["name"].as_str()),
        (Some("draft"), Some("agent"), Some("writer"))
    );
    assert_eq!(
        (d["visit"].as_u64(), d["visits"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(d["deps"], json!({"plan": {"topic": "t"}}));
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["status"], "failed");
    assert_eq!(attempts[0]["error"]["type"], "Flaky");
    assert_eq!(
        attempts[0]["usage"],
        json!({"inputTokens": 5, "outputTokens": 0})
    );
    assert_eq!(
        (
            attempts[1]["status"].as_str(),
            attempts[1]["delayMs"].as_u64()
        ),
        (Some("completed"), Some(5))
    );
    assert!(d["output"]["text"]
        .as_str()
        .unwrap()
        .ends_with("cut it short"));

    let t = agentmesh(dir, &["show", log, "draft"]);
    expect_code(&t, 0);
    for part in [
        "node         draft (agent writer)",
        r#"deps         plan: {"topic":"t"}"#,
        "attempt 1    scheduled at seq 6 (step 2); agentFailed at seq 7",
        ": Flaky: 503 (retryable), 5 in / 0 out tokens",
        "attempt 2    scheduled at seq 9 (step 3), retry of #7, after 5 ms backoff; agentCompleted at seq 10",
        "so that the timeline has to cut it short",
    ] {
        assert!(t.stdout.contains(part), "{part:?} not in\n{}", t.stdout);
    }
    // A node that has not run, a visit it did not have, a node that does not exist.
    let e = agentmesh(dir, &["show", log, "draft", "--visit", "2"]);
    expect_code(&e, 4);
    assert!(
        e.stderr
            .contains("node 'draft' has 1 visit in this log, not 2"),
        "{}",
        e.stderr
    );
    let e = agentmesh(dir, &["show", log, "ghost"]);
    expect_code(&e, 4);
    assert!(
        e.stderr.contains("no node 'ghost'") && e.stderr.contains("plan, draft, review"),
        "{}",
        e.stderr
    );
}

#[test]
fn runs_lists_a_directory_and_counts_only_a_fork_s_own_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (wf, script) = retry_workflow(dir);
    let wf = wf.to_str().unwrap();
    expect_code(
        &agentmesh(
            dir,
            &[
                "run",
                wf,
                "--script",
                script.to_str().unwrap(),
                "--log-dir",
                "logs",
            ],
        ),
        0,
    );
    write_json(
        dir,
        "again.json",
        json!({"agents": {"review": [{"output": 1, "usage": {"inputTokens": 7, "outputTokens": 3}}]}}),
    );
    // Seq 11 ends draft's step: the fork copies plan's and draft's usage, spends only review's.
    let f = agentmesh(
        dir,
        &[
            "fork",
            "logs/rt.jsonl",
            "--at",
            "10",
            "--run-id",
            "rt-fork",
            "--script",
            "again.json",
        ],
    );
    expect_code(&f, 0);
    crashed_rust_log(dir);
    std::fs::write(dir.join("logs/notes.jsonl"), b"not a log\n").unwrap();
    std::fs::write(dir.join("logs/README.md"), b"ignored").unwrap();

    let r = agentmesh(dir, &["runs", "logs", "--json"]);
    expect_code(&r, 0);
    let listed: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    let files: Vec<&str> = listed.iter().map(|l| l["file"].as_str().unwrap()).collect();
    assert_eq!(
        files,
        ["crashed.jsonl", "notes.jsonl", "rt-fork.jsonl", "rt.jsonl"]
    );
    let [crashed, notes, fork, rt] = &listed[..] else {
        unreachable!()
    };
    assert_eq!(rt["status"], "completed");
    assert_eq!(rt["usage"], json!({"inputTokens": 115, "outputTokens": 42}));
    assert_eq!(
        (rt["steps"].as_u64(), rt["host"].as_str()),
        (Some(4), Some("cli"))
    );
    assert!(rt["lastEventAt"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(fork["usage"], json!({"inputTokens": 7, "outputTokens": 3}));
    assert_eq!(fork["parent"], json!({"runId": "rt", "seq": 10}));
    assert_eq!(
        (crashed["status"].as_str(), crashed["host"].as_str()),
        (Some("crashed"), Some("rust"))
    );
    assert_eq!(crashed["inFlight"], json!(["b", "c"]));
    assert!(
        notes["error"]
            .as_str()
            .unwrap()
            .starts_with("[LOG_CORRUPT]"),
        "{notes}"
    );

    let t = agentmesh(dir, &["runs", "logs"]);
    expect_code(&t, 0);
    assert!(
        t.stdout.lines().next().unwrap().starts_with("log "),
        "{}",
        t.stdout
    );
    assert!(
        t.stdout.contains("crashed (2 in flight)") && t.stdout.contains("115 / 42"),
        "{}",
        t.stdout
    );
    assert!(
        t.stdout.contains("notes.jsonl  unreadable: [LOG_CORRUPT]"),
        "{}",
        t.stdout
    );
    assert!(
        t.stdout.ends_with("3 runs, 1 unreadable log\n"),
        "{}",
        t.stdout
    );
    expect_code(&agentmesh(dir, &["runs", "missing-dir"]), 7);
}

/// Start `agentmesh inspect --follow LOG` in `dir`, its stdout piped.
fn follow(dir: &Path, log: &str, json: bool) -> std::process::Child {
    let mut args = vec!["inspect", "--follow", log];
    if json {
        args.push("--json");
    }
    Command::new(env!("CARGO_BIN_EXE_agentmesh"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a child (at most a minute: a hang fails the test instead of blocking it).
fn finish(mut child: std::process::Child) -> Output {
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("agentmesh inspect --follow did not stop");
}

#[test]
fn follow_prints_a_live_run_until_it_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = Workflow::from_file(fan_out_workflow(dir)).unwrap();
    // Started before the log exists; the run is driven from this process step by step.
    let child = follow(dir, "logs/live.jsonl", false);
    let pause = || std::thread::sleep(std::time::Duration::from_millis(250));
    pause();
    let mut run = Run::start(
        &wf,
        RunOptions {
            run_id: Some("live".into()),
            log_dir: Some(dir.join("logs")),
            host: Some("rust".into()),
            ..RunOptions::default()
        },
    )
    .unwrap();
    loop {
        let acts = run.poll().unwrap();
        if acts.is_empty() {
            break;
        }
        // Completions arrive one at a time, the last activation's first.
        for act in acts.iter().rev() {
            pause();
            run.complete(act.id, Completion::ok(json!(format!("{} done", act.node))))
                .unwrap();
        }
    }
    assert!(run.is_finished().unwrap());
    let out = finish(child);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("run live  workflow fan"), "{text}");
    let events = read_log(dir.join("logs/live.jsonl")).unwrap().1;
    for e in &events {
        let rows = text.lines().filter(|l| {
            l.split_whitespace().next().map(|s| s.trim_end_matches('★')) == Some(&e.seq.to_string())
        });
        assert_eq!(rows.count(), 1, "seq {} once in\n{text}", e.seq);
    }
    assert!(text.contains("\nstatus       completed\n"), "{text}");
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("waiting for logs/live.jsonl to appear"));
}

#[test]
fn follow_stops_when_the_run_waits_and_prints_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    rust_mesh(&dir.join("logs"))
        .run(
            &approval_spec(),
            RunOptions {
                run_id: Some("w".into()),
                ..RunOptions::default()
            },
        )
        .unwrap();
    let out = finish(follow(dir, "logs/w.jsonl", false));
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("approve  waiting"), "{text}");
    assert!(
        text.ends_with("status       waiting for a person (approve)\n"),
        "{text}"
    );
    let out = finish(follow(dir, "logs/w.jsonl", true));
    assert_eq!(out.status.code(), Some(3));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        read_log(dir.join("logs/w.jsonl")).unwrap().1.len()
    );
    assert_eq!(
        lines[3]["data"],
        json!({"output": {"text": "written by Rust"}})
    );
}

#[cfg(unix)]
#[test]
fn follow_stops_on_ctrl_c() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    crashed_rust_log(dir); // never finishes: only Ctrl-C ends the follow
    let mut child = follow(dir, "logs/crashed.jsonl", false);
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 3];
    stdout.read_exact(&mut first).unwrap(); // it has printed the timeline
    assert_eq!(&first, b"run");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = finish(child);
    assert_eq!(out.status.signal(), Some(2), "{:?}", out.status);
}

#[test]
fn retry_continues_a_failed_run_and_usage_counts_what_it_spent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = write_json(
        dir,
        "w.json",
        json!({"name": "outage", "nodes": [
            {"id": "plan", "type": "agent", "agent": "planner"},
            {"id": "fetch", "type": "tool", "tool": "http", "after": ["plan"],
             "retry": {"maxAttempts": 2}}]}),
    );
    // The outage: fetch fails twice; attempt 3 (after the retry) succeeds.
    write_json(
        dir,
        "s.json",
        json!({"runId": "outage", "agents": {
            "plan": [{"output": {"q": 1}, "usage": {"inputTokens": 10, "outputTokens": 2, "model": "m"}}],
            "fetch": [{"attempt": 1, "error": {"type": "ConnectionError", "message": "refused"}, "usage": {"inputTokens": 5}},
                      {"attempt": 2, "error": {"type": "ConnectionError", "message": "refused"}},
                      {"attempt": 3, "output": {"status": 200}}]}}),
    );
    let r = agentmesh(dir, &["run", wf.to_str().unwrap(), "--script", "s.json"]);
    expect_code(&r, 1);
    let log = log_path_from(&r.stdout);
    // Running it again names the way out.
    let again = agentmesh(dir, &["run", wf.to_str().unwrap(), "--script", "s.json"]);
    expect_code(&again, 4);
    assert!(again.stderr.contains("retry it"), "{}", again.stderr);
    let r = agentmesh(dir, &["retry", &log, "--script", "s.json"]);
    expect_code(&r, 0);
    assert!(r.stdout.contains("runReopened"), "{}", r.stdout);
    assert!(r.stdout.contains("status       completed"), "{}", r.stdout);
    let r = agentmesh(dir, &["retry", &log]);
    expect_code(&r, 4);
    assert!(
        r.stderr.contains("completed, which is final"),
        "{}",
        r.stderr
    );

    let u = agentmesh(dir, &["usage", &log, "--json"]);
    expect_code(&u, 0);
    let report: Value = serde_json::from_str(&u.stdout).unwrap();
    assert_eq!(report["total"]["inputTokens"], json!(15));
    assert_eq!(report["total"]["attempts"], json!(4));
    assert_eq!(report["byModel"]["m"]["inputTokens"], json!(10));
    assert_eq!(report["byTool"]["http"]["attempts"], json!(3));
    let text = agentmesh(dir, &["usage", &log]);
    expect_code(&text, 0);
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("total") && l.split_whitespace().nth(1) == Some("15")),
        "{}",
        text.stdout
    );
}

#[test]
fn cost_prints_what_the_calls_of_a_budgeted_run_cost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let vector = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bindings-tests/vectors/budget_clamp_warn_exhaust");
    let wf = vector.join("workflow.json");
    let script = vector.join("script.json");
    let r = agentmesh(
        dir,
        &[
            "run",
            wf.to_str().unwrap(),
            "--script",
            script.to_str().unwrap(),
        ],
    );
    expect_code(&r, 1);
    assert!(r.stdout.contains("BUDGET_EXCEEDED"), "{}", r.stdout);
    let log = log_path_from(&r.stdout);
    let c = agentmesh(dir, &["cost", &log]);
    expect_code(&c, 0);
    let total = c.stdout.lines().find(|l| l.starts_with("total")).unwrap();
    // 3 calls, 1 refused, 90 tokens in, 105 out, 300 µUSD.
    let cols: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(
        cols,
        ["total", "3", "1", "90", "105", "0", "0", "300", "100.0%"]
    );
    assert!(c.stdout.contains("1 call(s) refused"), "{}", c.stdout);
    let j = agentmesh(dir, &["cost", &log, "--json"]);
    expect_code(&j, 0);
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["total"]["microUsd"], json!(300));
    assert_eq!(v["lines"][1]["node"], json!("draft"));
    assert_eq!(v["lines"][1]["spent"]["microUsd"], json!(200));
    // A run without budget or prices records no money: the column says so.
    let plain = write_json(
        dir,
        "p.json",
        json!({"name": "plain", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}),
    );
    let r = agentmesh(dir, &["run", plain.to_str().unwrap()]);
    expect_code(&r, 0);
    let c = agentmesh(dir, &["cost", &log_path_from(&r.stdout)]);
    expect_code(&c, 0);
    assert!(
        c.stdout.contains("does not account for spend"),
        "{}",
        c.stdout
    );
}

#[test]
fn run_warns_about_nodes_that_receive_no_deps() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let wf = write_json(
        dir,
        "w.json",
        json!({"name": "warn", "nodes": [
            {"id": "write", "type": "agent", "agent": "a"},
            {"id": "gate", "type": "branch", "after": ["write"],
             "cases": [{"when": {"path": "/outputs/write", "exists": true}, "goto": "publish"}]},
            {"id": "publish", "type": "tool", "tool": "save", "after": ["gate"]}]}),
    );
    let r = agentmesh(dir, &["run", wf.to_str().unwrap()]);
    expect_code(&r, 0);
    assert!(
        r.stderr
            .contains("warning: node 'publish': every 'after' entry is a branch (gate)"),
        "{}",
        r.stderr
    );
}

#[test]
fn inspect_shows_calls_under_their_activation() {
    let dir = tempfile::tempdir().unwrap();
    let vector = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bindings-tests/vectors/calls_in_activations");
    let wf = vector.join("workflow.json");
    let script = vector.join("script.json");
    let r = agentmesh(
        dir.path(),
        &[
            "run",
            wf.to_str().unwrap(),
            "--script",
            script.to_str().unwrap(),
            "--log-dir",
            "logs",
        ],
    );
    expect_code(&r, 0);
    let log = log_path_from(&r.stdout);
    let r = agentmesh(dir.path(), &["inspect", &log]);
    expect_code(&r, 0);
    for want in [
        "4.1 ",
        "call 1 llm 'local'",
        "call 1 -> \"1. logs 2. replay\" (21 in / 7 out tokens, smollm2)",
        "call 2 failed: ToolError: no results (permanent)",
        "call 1 failed: RateLimited HTTP 429",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?} in\n{}", r.stdout);
    }
    // The canonical log is the vector's.
    let expected = std::fs::read_to_string(vector.join("expected.jsonl")).unwrap();
    assert_eq!(canonical_text(dir.path(), &log), expected);
}
