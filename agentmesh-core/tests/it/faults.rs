//! Logs under faults: two processes starting the same runs, a full disk (a file size limit,
//! which makes writes fail like ENOSPC does), a leftover file at a log's path, a log
//! deleted, renamed or replaced while its run writes, and a resume after a failed fsync.
//!
//! The child processes are this test binary running [`faults_child`] with
//! `AGENTMESH_FAULTS_CHILD=<mode>:<argument>`; a size-limited child runs under
//! `bash -c 'ulimit -f N; trap "" XFSZ; exec …'`, so a write past the limit fails with EFBIG
//! instead of killing the process.
#![cfg(unix)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use agentmesh_core::{
    check_log, read_log, verify_log, Completion, ErrorKind, EventData, FsyncMode, Mesh, Run,
    RunOptions, RunStatus, Workflow,
};
use serde_json::{json, Value};

use crate::common::*;

const ENV_CHILD: &str = "AGENTMESH_FAULTS_CHILD";

fn one_agent() -> Workflow {
    wf(json!({"name": "one", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}))
}

fn options(dir: &Path, run_id: &str, input: Value, fsync: FsyncMode) -> RunOptions {
    RunOptions {
        input,
        run_id: Some(run_id.to_owned()),
        log_dir: Some(dir.to_owned()),
        fsync,
        ..Default::default()
    }
}

fn say(text: &str) {
    println!("@@{text}");
}

/// Start and finish `race-<i>` for i in 0..n with input `tag`, saying who won each.
fn race_child(dir: &Path, tag: &str, n: u64) {
    // Both children wait for the go file, so their loops run at the same time.
    while !dir.join("go").exists() {
        std::thread::yield_now();
    }
    for i in 0..n {
        let id = format!("race-{i}");
        match Run::start(
            &one_agent(),
            options(dir, &id, json!(tag), FsyncMode::Never),
        ) {
            Ok(mut run) => {
                let act = run.poll().unwrap().remove(0);
                run.complete(act.id, Completion::ok(json!(tag))).unwrap();
                assert_eq!(run.status().unwrap(), RunStatus::Completed);
                say(&format!("won {i}"));
            }
            Err(e) => say(&format!("lost {i} {}", e.code())),
        }
    }
}

#[test]
#[ignore = "child process of the fault tests"]
fn faults_child() {
    let Ok(spec) = std::env::var(ENV_CHILD) else {
        return;
    };
    let (mode, arg) = spec.split_once(':').expect("mode:argument");
    match mode {
        "race" => {
            let (tag, rest) = arg.split_once(':').unwrap();
            let (n, dir) = rest.split_once(':').unwrap();
            race_child(Path::new(dir), tag, n.parse().unwrap());
        }
        "start" => {
            // A run whose first write is past the file size limit.
            let big = json!({"text": "x".repeat(8 * 1024)});
            match Run::start(
                &one_agent(),
                options(Path::new(arg), "limited", big, FsyncMode::Always),
            ) {
                Ok(_) => say("started"),
                Err(e) => say(&format!("err {}", e.code())),
            }
        }
        "verify" => {
            for _ in 0..3 {
                match verify_log(arg) {
                    Ok(r) => say(&format!("ok {:?}", r.repaired)),
                    Err(e) => say(&format!("err {}", e.code())),
                }
            }
        }
        other => panic!("unknown mode {other}"),
    }
}

/// Run [`faults_child`] with `spec`, under a file size limit of `limit_kib` KiB when given;
/// its `@@` lines.
fn child(spec: &str, limit_kib: Option<u32>) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let test_args = [
        "faults::faults_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    let mut cmd = match limit_kib {
        Some(kib) => {
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(format!("ulimit -f {kib}; trap '' XFSZ; exec \"$0\" \"$@\""))
                .arg(exe)
                .args(test_args);
            c
        }
        None => {
            let mut c = Command::new(exe);
            c.args(test_args);
            c
        }
    };
    cmd.env(ENV_CHILD, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the child")
}

fn said(child: std::process::Child) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "child failed: {:?}", out.status);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once("@@").map(|(_, t)| t.to_owned()))
        .collect()
}

#[test]
fn two_processes_racing_to_start_the_same_runs_never_both_win() {
    let dir = tempfile::tempdir().unwrap();
    let n = 2000;
    let spec = |tag: &str| format!("race:{tag}:{n}:{}", dir.path().display());
    let a = child(&spec("A"), None);
    let b = child(&spec("B"), None);
    fs::write(dir.path().join("go"), b"").unwrap();
    let (a, b) = (said(a), said(b));
    let winners = |lines: &[String]| -> Vec<u64> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("won ").map(|i| i.parse().unwrap()))
            .collect()
    };
    for line in a.iter().chain(&b) {
        assert!(
            line.starts_with("won ") || line.ends_with(" RUN_EXISTS"),
            "a loser must get RUN_EXISTS: {line}"
        );
    }
    let (wa, wb) = (winners(&a), winners(&b));
    assert_eq!(
        wa.len() + wb.len(),
        n as usize,
        "exactly one winner per run id"
    );
    for i in 0..n {
        let tag = match (wa.contains(&i), wb.contains(&i)) {
            (true, false) => "A",
            (false, true) => "B",
            other => panic!("race-{i}: winners {other:?}"),
        };
        // Nothing the winner was told is committed was lost or overwritten.
        let path = dir.path().join(format!("race-{i}.jsonl"));
        let (_, events) = read_log(&path).unwrap();
        let EventData::RunStarted(started) = &events[0].data else {
            panic!("race-{i}: {:?}", events[0])
        };
        assert_eq!(*started.input, json!(tag), "race-{i}");
        assert_eq!(
            events.last().unwrap().type_name(),
            "runCompleted",
            "race-{i}"
        );
    }
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn a_start_that_cannot_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let lines = said(child(&format!("start:{}", dir.path().display()), Some(4)));
    assert_eq!(lines, ["err IO"]);
    let left: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "a failed start left {left:?}");
    // The run id stays usable.
    let big = json!({"text": "x".repeat(8 * 1024)});
    Run::start(
        &one_agent(),
        options(dir.path(), "limited", big, FsyncMode::Always),
    )
    .unwrap();
}

#[test]
fn a_repair_that_cannot_copy_the_tail_leaves_no_copy_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = start_in(dir.path(), &one_agent(), Value::Null, 1, "torn");
    let path = run.log_path().unwrap().to_owned();
    let act = run.poll().unwrap().remove(0);
    run.complete(act.id, Completion::ok(json!(1))).unwrap();
    drop(run);
    // A torn tail bigger than what the child may write.
    let mut bytes = fs::read(&path).unwrap();
    let intact = bytes.clone();
    bytes.extend_from_slice(b"{\"seq\":4,\"type\":\"agentCompleted\",\"data\":{\"output\":\"");
    bytes.extend(std::iter::repeat_n(b'x', 16 * 1024));
    fs::write(&path, &bytes).unwrap();
    let lines = said(child(&format!("verify:{}", path.display()), Some(8)));
    assert_eq!(lines, ["err IO", "err IO", "err IO"]);
    let copies: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".broken"))
        .collect();
    assert!(copies.is_empty(), "failed repairs left {copies:?}");
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "nothing was cut without a copy"
    );
    // With room, the same repair works.
    let report = verify_log(&path).unwrap();
    assert!(report.repaired.unwrap().broken_path.unwrap().exists());
    assert_eq!(fs::read(&path).unwrap(), intact);
}

#[test]
fn only_an_unfinished_start_of_the_same_run_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken.jsonl");
    let broken = PathBuf::from(format!("{}.broken", path.display()));
    let start = || {
        Run::start(
            &one_agent(),
            options(dir.path(), "taken", Value::Null, FsyncMode::Never),
        )
    };
    // Data that is not a log of ours: refused and never touched.
    let foreign = "notes I keep here\n".repeat(3000);
    for content in [foreign.as_bytes(), b"{\"a\":1}\n{\"b\":2}\n"] {
        fs::write(&path, content).unwrap();
        let e = start().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RunExists, "{e}");
        assert_eq!(fs::read(&path).unwrap(), content);
        assert!(!broken.exists());
    }
    // An empty file (0.1 hit a full disk in its start): taken over, nothing to keep.
    fs::write(&path, b"").unwrap();
    drop(start().unwrap());
    assert!(!broken.exists());
    check_log(&path).unwrap();
    // A torn header (0.1 crashed in its start): taken over, its bytes kept.
    let torn = b"{\"format\":\"agentmesh-log\",\"version\":1,\"fla";
    fs::write(&path, torn).unwrap();
    drop(start().unwrap());
    assert_eq!(fs::read(&broken).unwrap(), torn);
    check_log(&path).unwrap();
    // A finished run: RUN_EXISTS.
    assert_eq!(start().unwrap_err().kind(), ErrorKind::RunExists);
}

#[test]
fn resume_makes_what_it_read_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = start_in(dir.path(), &one_agent(), Value::Null, 1, "durable");
    let path = run.log_path().unwrap().to_owned();
    let act = run.poll().unwrap().remove(0);
    run.complete(act.id, Completion::ok(json!(1))).unwrap();
    drop(run);
    // The writer may have died with its pages unsynced: resume fsyncs file and directory.
    let resumed = Run::resume(&path, FsyncMode::Batch).unwrap();
    assert_eq!(resumed.status().unwrap(), RunStatus::Completed);
    assert_eq!(resumed.fsync_count(), 2);
    drop(resumed);
    assert_eq!(
        Run::resume(&path, FsyncMode::Never).unwrap().fsync_count(),
        0
    );
}

fn two_steps() -> Workflow {
    wf(json!({"name": "two", "nodes": [
        {"id": "a", "type": "agent", "agent": "x"},
        {"id": "b", "type": "agent", "agent": "x", "after": ["a"]}]}))
}

#[test]
fn a_log_deleted_renamed_or_replaced_mid_run_fails_the_run_and_poisons_it() {
    for fsync in [FsyncMode::Always, FsyncMode::Batch, FsyncMode::Never] {
        for what in ["deleted", "renamed", "replaced"] {
            let ctx = format!("{what}, fsync {}", fsync.as_str());
            let dir = tempfile::tempdir().unwrap();
            let mut run = Run::start(
                &two_steps(),
                options(dir.path(), "gone", Value::Null, fsync),
            )
            .unwrap();
            let path = run.log_path().unwrap().to_owned();
            match what {
                "deleted" => fs::remove_file(&path).unwrap(),
                "renamed" => fs::rename(&path, dir.path().join("elsewhere.jsonl")).unwrap(),
                _ => {
                    let other = dir.path().join("other");
                    fs::write(&other, b"something else").unwrap();
                    fs::rename(&other, &path).unwrap();
                }
            }
            // The run ends at the latest with its last commit, which must not succeed.
            let mut failure = None;
            for _ in 0..2 {
                let acts = match run.poll() {
                    Ok(a) => a,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                if let Some(act) = acts.first() {
                    if let Err(e) = run.complete(act.id, Completion::ok(json!(1))) {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let e = failure.unwrap_or_else(|| panic!("{ctx}: the run did not notice"));
            assert_eq!(e.kind(), ErrorKind::Io, "{ctx}: {e}");
            assert!(e.message().contains("gone.jsonl"), "{ctx}: {e}");
            // Poisoned: nothing reports a state the log does not hold.
            for got in [
                run.status().map(|_| ()),
                run.outcome().map(|_| ()),
                run.poll().map(|_| ()),
                run.outstanding().map(|_| ()),
                run.cancel("x").map(|_| ()),
            ] {
                assert_eq!(got.unwrap_err().kind(), ErrorKind::Io, "{ctx}");
            }
        }
    }
}

#[test]
fn a_mesh_whose_agent_deletes_the_log_returns_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut mesh = Mesh::new().with_log_dir(dir.path());
    let log = dir.path().join("self-deleting.jsonl");
    let target = log.clone();
    mesh.agent("x", move |_, _| {
        let _ = fs::remove_file(&target);
        Ok(json!(1).into())
    });
    let e = mesh
        .run(
            &two_steps(),
            RunOptions {
                run_id: Some("self-deleting".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(!log.exists());
}

#[test]
fn memory_and_file_logs_refuse_the_same_oversized_output() {
    let huge = "y".repeat(70 << 20);
    let dir = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for file in [false, true] {
        let mut mesh = Mesh::new();
        if file {
            mesh = mesh.with_log_dir(dir.path()).with_fsync(FsyncMode::Never);
        }
        let h = huge.clone();
        mesh.agent("x", move |act, _| {
            Ok(if &*act.node == "a" {
                json!(h)
            } else {
                json!(1)
            }
            .into())
        });
        let r = mesh
            .run(
                &two_steps(),
                RunOptions {
                    run_id: Some("huge".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        outcomes.push((
            r.status,
            r.error.clone().map(|e| e.code),
            r.fingerprint().unwrap(),
        ));
    }
    assert_eq!(outcomes[0], outcomes[1], "memory and file differ");
    assert_eq!(outcomes[0].0, RunStatus::Failed);
}
