//! What the log's readers accept: one set of rules on every read path, anchors against
//! truncation and recomputed chains, files that are not logs, the last record's newline,
//! read-only checks, behaviour flags and versions.

use std::fs;
use std::path::{Path, PathBuf};

use agentmesh_core::{
    anchor, canonical_log, check_log, fingerprint, history, read_header, read_log, replay,
    state_at, verify_anchor, verify_log, Anchor, AnchorKey, Error, ErrorDetail, ErrorKind,
    FsyncMode, Run, RunOptions,
};

use crate::common::*;

const RUN_ID: &str = "integrity";

/// A finished log of [`looping_workflow`] (fan-outs, a retry, a loop, a skip) in `dir`.
fn finished_log(dir: &Path) -> PathBuf {
    let mut run = Run::start(
        &looping_workflow(),
        RunOptions {
            run_id: Some(RUN_ID.into()),
            log_dir: Some(dir.to_owned()),
            fsync: FsyncMode::Never,
            ..Default::default()
        },
    )
    .unwrap();
    drive_shuffled(&mut run, &mut SplitMix64(7), |_| {});
    run.log_path().unwrap().to_owned()
}

fn kind_of<T: std::fmt::Debug>(r: agentmesh_core::Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

fn anchor_field(e: &Error) -> (&str, &str, &str) {
    match e.detail() {
        Some(ErrorDetail::Anchor {
            field,
            expected,
            found,
        }) => (field, expected, found),
        other => panic!("no anchor detail on {e}: {other:?}"),
    }
}

/// Every read function, and resume, on `path`: each must fail with `kind`.
fn every_reader_fails(path: &Path, kind: ErrorKind, ctx: &str) {
    let mut sink = Vec::new();
    let results: Vec<(&str, ErrorKind)> = vec![
        ("check_log", kind_of(check_log(path))),
        ("canonical_log", kind_of(canonical_log(path, &mut sink))),
        ("read_log", kind_of(read_log(path))),
        ("fingerprint", kind_of(fingerprint(path))),
        ("replay", kind_of(replay(path, None))),
        ("state_at", kind_of(state_at(path, 1))),
        ("history", kind_of(history(path))),
        ("anchor", kind_of(anchor(path, None))),
        ("verify_log", kind_of(verify_log(path))),
        ("resume", kind_of(Run::resume(path, FsyncMode::Never))),
    ];
    for (what, got) in results {
        assert_eq!(got, kind, "{ctx}: {what}");
    }
}

#[test]
fn every_truncation_at_a_record_boundary_is_detected_by_an_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = finished_log(dir.path());
    let bytes = fs::read(&path).unwrap();
    let key = AnchorKey::from_material(b"a key held by the auditor, not the host").unwrap();
    let plain = anchor(&path, None).unwrap();
    let keyed = anchor(&path, Some(&key)).unwrap();
    assert!(plain.mac.is_none() && keyed.mac.is_some());
    verify_anchor(&path, &plain, None).unwrap();
    verify_anchor(&path, &keyed, Some(&key)).unwrap();
    let spans = line_spans(&bytes);
    let work = dir.path().join("cut.jsonl");
    // Keep the header and 1..records events: each is a valid, shorter log.
    for (kept, span) in spans
        .iter()
        .enumerate()
        .take(plain.records as usize)
        .skip(1)
    {
        let end = span.end;
        fs::write(&work, &bytes[..end]).unwrap();
        let ctx = format!("cut after {kept} events");
        let report = check_log(&work).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(
            report.events, kept as u64,
            "{ctx}: the chain alone sees nothing"
        );
        for (a, k) in [(&plain, None), (&keyed, Some(&key))] {
            let e = verify_anchor(&work, a, k).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::LogTruncated, "{ctx}: {e}");
            assert_eq!(
                anchor_field(&e),
                ("records", &*plain.records.to_string(), &*kept.to_string()),
                "{ctx}"
            );
        }
    }
    // The header alone is no log at all.
    fs::write(&work, &bytes[..spans[0].end]).unwrap();
    assert_eq!(
        kind_of(verify_anchor(&work, &plain, None)),
        ErrorKind::LogCorrupt
    );
    // Records appended after the anchor are fine: the anchor covers a prefix.
    let early = dir.path().join("early.jsonl");
    fs::write(&early, &bytes[..spans[3].end]).unwrap();
    let a3 = anchor(&early, None).unwrap();
    assert_eq!(a3.records, 3);
    verify_anchor(&path, &a3, None).unwrap();
}

#[test]
fn every_edit_with_the_chain_recomputed_is_detected_by_an_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = finished_log(dir.path());
    let bytes = fs::read(&path).unwrap();
    let key = AnchorKey::from_material(b"a key held by the auditor, not the host").unwrap();
    let plain = anchor(&path, None).unwrap();
    let keyed = anchor(&path, Some(&key)).unwrap();
    let records = unseal_v2(&bytes);
    assert_eq!(reseal_v2(&records), bytes, "the test's chain is the log's");
    let work = dir.path().join("edited.jsonl");
    let mut edits = 0;
    for i in 0..records.len() {
        // Two edits per record that keep a valid log: its wall time (every record has one),
        // and for completions the output the host reported.
        let mut variants = vec![records[i].replacen("\"at\":", "\"at\":1", 1)];
        if records[i].contains("\"type\":\"agentCompleted\"") {
            variants.push(records[i].replacen("\"output\":{", "\"output\":{\"forged\":1,", 1));
        }
        for edited in variants {
            assert_ne!(edited, records[i]);
            let mut forged = records.clone();
            forged[i] = edited;
            fs::write(&work, reseal_v2(&forged)).unwrap();
            let ctx = format!("record {i} edited");
            check_log(&work).unwrap_or_else(|e| panic!("{ctx}: the chain was recomputed: {e}"));
            let e = verify_anchor(&work, &plain, None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::LogHeadMismatch, "{ctx}: {e}");
            assert!(matches!(anchor_field(&e).0, "head" | "bytes"), "{ctx}: {e}");
            // An attacker who can rewrite the anchor too cannot forge its MAC without the key.
            let mut rewritten = anchor(&work, None).unwrap();
            rewritten.mac = keyed.mac.clone();
            let e = verify_anchor(&work, &rewritten, Some(&key)).unwrap_err();
            assert_eq!(
                (e.kind(), anchor_field(&e).0),
                (ErrorKind::LogHeadMismatch, "mac"),
                "{ctx}"
            );
            edits += 1;
        }
    }
    assert!(edits > records.len(), "{edits} edits");
    // The wrong key, a keyed anchor without its key, a key for an unkeyed anchor.
    let other = AnchorKey::from_material(b"k3y-m4t3r14l-7f2a").unwrap();
    let e = verify_anchor(&path, &keyed, Some(&other)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LogHeadMismatch);
    let shown = format!("{e} {:?} {other:?}", e.detail());
    assert!(
        !shown.contains("k3y-m4t3r14l"),
        "no key material in messages: {shown}"
    );
    assert_eq!(
        kind_of(verify_anchor(&path, &keyed, None)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(verify_anchor(&path, &plain, Some(&key))),
        ErrorKind::InvalidArgument
    );
    // Another run's anchor.
    let foreign = Anchor {
        run_id: "someone-else".into(),
        ..plain.clone()
    };
    let e = verify_anchor(&path, &foreign, None).unwrap_err();
    assert_eq!(
        (e.kind(), anchor_field(&e).0),
        (ErrorKind::LogHeadMismatch, "runId")
    );
    assert_eq!(Anchor::from_json(&plain.to_json()).unwrap(), plain);
}

#[test]
fn forged_structures_are_log_corrupt_on_every_read_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = finished_log(dir.path());
    let records = unseal_v2(&fs::read(&path).unwrap());
    let completion = records
        .iter()
        .position(|r| r.contains("\"type\":\"agentCompleted\""))
        .unwrap();
    let step = records
        .iter()
        .rposition(|r| r.contains("\"type\":\"stepStarted\""))
        .unwrap();
    let mut cases: Vec<(&str, Vec<String>)> = Vec::new();
    // A duplicated completion (the forged duplicate canonical_log used to accept).
    let mut dup = records.clone();
    dup.insert(completion + 1, records[completion].clone());
    cases.push(("duplicated seq", dup));
    // A seq jump (the 32 KB log that made verify allocate 2.8 GB).
    let mut jump = records.clone();
    let last = jump.len() - 1;
    jump[last] = jump[last].replacen("{\"seq\":", "{\"seq\":1000000", 1);
    cases.push(("seq jump", jump));
    // Absurd activation counts (the overflow in replay), and a zero.
    let re = regex::Regex::new(r#""activations":\d+"#).unwrap();
    for n in ["9223372036854775808", "100001", "0"] {
        let mut big = records.clone();
        big[step] = re
            .replace(&big[step], format!("\"activations\":{n}"))
            .into_owned();
        cases.push(("absurd activations", big));
    }
    // A decision before the open step's completions; an event after the end.
    let mut early = records.clone();
    let moved = early.remove(step + 2);
    early.push(moved);
    cases.push(("reordered", early));
    let mut after_end = records.clone();
    after_end.push(records[completion].replacen(
        &format!("{{\"seq\":{}", seq_of(&records[completion])),
        "{\"seq\":999",
        1,
    ));
    cases.push(("after the end", after_end));
    // A format-2 record that carries the run id (its canonical form would have it twice).
    let mut with_id = records.clone();
    with_id[1] = with_id[1].replacen(
        "\"type\":\"runStarted\"",
        "\"type\":\"runStarted\",\"runId\":\"integrity\"",
        1,
    );
    cases.push(("runId in a format-2 record", with_id));
    for (what, forged) in cases {
        let p = dir.path().join(format!("{}.jsonl", what.replace(' ', "-")));
        fs::write(&p, reseal_v2(&forged)).unwrap();
        every_reader_fails(&p, ErrorKind::LogCorrupt, what);
    }
}

fn seq_of(record: &str) -> u64 {
    let rest = record.strip_prefix("{\"seq\":").unwrap();
    rest[..rest.find(',').unwrap()].parse().unwrap()
}

#[test]
fn files_that_hold_no_event_are_log_corrupt_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = finished_log(dir.path());
    let bytes = fs::read(&path).unwrap();
    let header_line = &bytes[..line_spans(&bytes)[0].end];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("no newline", b"{\"a\":1}".to_vec()),
        ("not a log", b"{\"a\":1}\n".to_vec()),
        ("header only", header_line.to_vec()),
        (
            "header without newline",
            header_line[..header_line.len() - 1].to_vec(),
        ),
        (
            "header and a torn event",
            [header_line, b"{\"seq\":1,\"ty"].concat(),
        ),
    ];
    for (what, content) in cases {
        let p = dir.path().join(format!("{}.jsonl", what.replace(' ', "-")));
        fs::write(&p, &content).unwrap();
        every_reader_fails(&p, ErrorKind::LogCorrupt, what);
        assert_eq!(fs::read(&p).unwrap(), content, "{what}: changed");
        let broken = PathBuf::from(format!("{}.broken", p.display()));
        assert!(!broken.exists(), "{what}: a reader cut it");
    }
}

#[test]
fn a_complete_last_record_without_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = finished_log(dir.path());
    let bytes = fs::read(&path).unwrap();
    let want = check_log(&path).unwrap();
    let (_, want_events) = read_log(&path).unwrap();
    for damaged in [None, Some(b'X'), Some(b'\r')] {
        let mut content = bytes[..bytes.len() - 1].to_vec();
        content.extend(damaged);
        fs::write(&path, &content).unwrap();
        let ctx = format!("newline {damaged:?}");
        let checked = check_log(&path).unwrap();
        assert_eq!(checked.events, want.events, "{ctx}: the record is complete");
        assert_eq!(checked.torn_at, Some(bytes.len() as u64 - 1), "{ctx}");
        assert_eq!(read_log(&path).unwrap().1, want_events, "{ctx}");
        assert_eq!(fs::read(&path).unwrap(), content, "{ctx}: a reader wrote");
        let report = verify_log(&path).unwrap();
        let repair = report.repaired.unwrap();
        assert!(repair.newline_restored, "{ctx}");
        assert_eq!(repair.bytes, u64::from(damaged.is_some()), "{ctx}");
        if let Some(b) = damaged {
            assert_eq!(fs::read(repair.broken_path.unwrap()).unwrap(), [b], "{ctx}");
        }
        assert_eq!(fs::read(&path).unwrap(), bytes, "{ctx}: mended exactly");
        for f in fs::read_dir(dir.path()).unwrap() {
            let f = f.unwrap().path();
            if f.to_string_lossy().contains(".broken") {
                fs::remove_file(f).unwrap();
            }
        }
    }
}

#[test]
fn check_log_never_writes_and_works_while_the_writer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = start_in(
        dir.path(),
        &fanout_workflow(),
        serde_json::Value::Null,
        1,
        "live",
    );
    let path = run.log_path().unwrap().to_owned();
    let act = run.poll().unwrap().remove(0);
    run.complete(act.id, durable_completion(&act)).unwrap();
    // The writer holds the lock: verify (which may repair) is refused, check is not.
    let e = verify_log(&path).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    let report = check_log(&path).unwrap();
    assert_eq!(report.finished, None);
    assert_eq!(report.version, agentmesh_core::LOG_VERSION);
    anchor(&path, None).unwrap();
    // A record being written (torn) is reported, not cut.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":99,\"ty").unwrap();
    let before = fs::read(&path).unwrap();
    let report = check_log(&path).unwrap();
    assert!(report.torn_at.is_some());
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn unknown_flags_and_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = finished_log(dir.path());
    let records = unseal_v2(&fs::read(&path).unwrap());
    for (what, header, why) in [
        (
            "flag",
            records[0].replacen("\"flags\":[]", "\"flags\":[7]", 1),
            "unknown core flag 7",
        ),
        (
            "version",
            records[0].replacen("\"version\":6", "\"version\":7", 1),
            "version 7",
        ),
        (
            "v1 layout",
            records[0].replacen("\"version\":6", "\"version\":1", 1),
            "another version",
        ),
    ] {
        let mut forged = records.clone();
        forged[0] = header;
        let p = dir.path().join(format!("{what}.jsonl"));
        fs::write(&p, reseal_v2(&forged)).unwrap();
        every_reader_fails(&p, ErrorKind::LogCorrupt, what);
        let e = read_header(&p).unwrap_err();
        assert!(e.message().contains(why), "{what}: {e}");
    }
}
