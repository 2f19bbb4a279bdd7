//! Durability of the file log: torn tails at every offset, damage before the tail, file
//! permissions and run ids, single writer, fsync modes, lost decisions, oversized records.

use std::fs;
use std::path::{Path, PathBuf};

use agentmesh_core::model::limits::MAX_EVENT_BYTES;
use agentmesh_core::{
    canonical_log, check_log, read_log, verify_log, Completion, Error, ErrorDetail, ErrorKind,
    Event, FsyncMode, Run, RunOptions, RunStatus, Workflow, MAX_VALUE_DEPTH,
};
use serde_json::{json, Value};

use crate::common::*;

const RUN_ID: &str = "durable";

fn options(dir: &Path, fsync: FsyncMode) -> RunOptions {
    RunOptions {
        input: json!({"topic": "logs"}),
        seed: 11,
        run_id: Some(RUN_ID.into()),
        log_dir: Some(dir.to_owned()),
        fsync,
        ..Default::default()
    }
}

/// Run `workflow` to the end in `dir`, completing work in the order drawn from `order_seed`.
fn full_run(dir: &Path, workflow: &Workflow, fsync: FsyncMode, order_seed: u64) -> PathBuf {
    let mut run = Run::start(workflow, options(dir, fsync)).expect("run starts");
    drive_shuffled(&mut run, &mut SplitMix64(order_seed), |_| {});
    assert_eq!(
        run.status().unwrap(),
        RunStatus::Completed,
        "{:?}",
        run.outcome().unwrap()
    );
    run.log_path().expect("file log").to_owned()
}

fn expect_err<T>(r: agentmesh_core::Result<T>, kind: ErrorKind, what: &str) -> Error {
    match r {
        Ok(_) => panic!("{what}: expected {}, got Ok", kind.code()),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: {e}");
            e
        }
    }
}

fn corrupt_offset(e: &Error) -> u64 {
    match e.detail() {
        Some(ErrorDetail::LogCorrupt { offset }) => *offset,
        other => panic!("LOG_CORRUPT without an offset: {e} ({other:?})"),
    }
}

fn broken_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.broken", path.display()))
}

/// Parse one physical line of a format-2 log of run [`RUN_ID`] (chain field included) into
/// its event: the file leaves out the run and trace ids, which the header determines.
fn parse_line(line: &[u8]) -> Event {
    let mut v: serde_json::Map<String, Value> = serde_json::from_slice(line).expect("event line");
    v.remove("crc");
    v.insert("runId".into(), json!(RUN_ID));
    v.insert(
        "traceId".into(),
        json!(agentmesh_core::trace_id_for(RUN_ID)),
    );
    Event::from_json(&Value::Object(v).to_string()).expect("event line")
}

fn canonical_bytes(path: &Path) -> agentmesh_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    canonical_log(path, &mut out).map(|_| out)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// A small finished log of [`fanout_workflow`] whose fan-out completions are physically out of
/// seq order (checked, so the reorder paths of the readers are exercised).
fn small_log(dir: &Path) -> (PathBuf, Vec<u8>) {
    for order_seed in 0.. {
        let sub = dir.join(format!("order-{order_seed}"));
        let path = full_run(&sub, &fanout_workflow(), FsyncMode::Never, order_seed);
        let bytes = fs::read(&path).unwrap();
        let seqs: Vec<u64> = line_spans(&bytes)[1..]
            .iter()
            .map(|s| parse_line(&bytes[s.clone()]).seq)
            .collect();
        if seqs.windows(2).any(|w| w[1] < w[0]) {
            return (path, bytes);
        }
    }
    unreachable!()
}

/// The original log of the truncation test and what is derived from it.
struct Original {
    bytes: Vec<u8>,
    spans: Vec<std::ops::Range<usize>>,
    /// Events in file order (`events[i]` is line `i + 1`).
    events: Vec<Event>,
    canonical: Vec<u8>,
}

/// Truncate a copy of the original log at `k` in `work`, check the readers, the repair and
/// resume. Returns whether a repair was made.
fn check_truncation(orig: &Original, k: usize, work: &Path) -> bool {
    let path = work.join(format!("{RUN_ID}.jsonl"));
    let broken = broken_path(&path);
    let _ = fs::remove_file(&broken);
    fs::write(&path, &orig.bytes[..k]).unwrap();
    let lines = orig.spans.iter().take_while(|s| s.end <= k).count();
    // Cut just before a newline: the record is whole, and readers keep it.
    let no_newline = lines < orig.spans.len() && k + 1 == orig.spans[lines].end;
    let whole = lines + usize::from(no_newline);
    let boundary = if lines == 0 {
        0
    } else {
        orig.spans[lines - 1].end
    };
    let events = whole.saturating_sub(1);
    let ctx = format!("truncated at {k} (line boundary {boundary}, {lines} whole lines)");

    if whole < 2 {
        // No complete event: every reader refuses the file, none changes it, and starting
        // the run again takes it over (keeping any bytes in .broken).
        expect_err(canonical_bytes(&path), ErrorKind::LogCorrupt, &ctx);
        expect_err(read_log(&path), ErrorKind::LogCorrupt, &ctx);
        expect_err(check_log(&path), ErrorKind::LogCorrupt, &ctx);
        expect_err(verify_log(&path), ErrorKind::LogCorrupt, &ctx);
        expect_err(
            Run::resume(&path, FsyncMode::Never),
            ErrorKind::LogCorrupt,
            &ctx,
        );
        assert_eq!(fs::read(&path).unwrap(), &orig.bytes[..k], "{ctx}: changed");
        assert!(!broken.exists(), "{ctx}: a reader repaired the log");
        let run = Run::start(&fanout_workflow(), options(work, FsyncMode::Never))
            .unwrap_or_else(|e| panic!("{ctx}: start over the leftover: {e}"));
        drop(run);
        assert_eq!(broken.exists(), k > 0, "{ctx}: leftover bytes kept");
        if k > 0 {
            assert_eq!(
                fs::read(&broken).unwrap(),
                &orig.bytes[..k],
                "{ctx}: .broken"
            );
        }
        check_log(&path).unwrap_or_else(|e| panic!("{ctx}: the new log: {e}"));
        let _ = fs::remove_file(&broken);
        return false;
    }

    // Read-only readers ignore the torn tail and leave the file alone.
    let canon = canonical_bytes(&path);
    let (header, mut got) = read_log(&path).unwrap_or_else(|e| panic!("{ctx}: read_log: {e}"));
    assert_eq!(header.run_id, RUN_ID, "{ctx}");
    let mut want = orig.events[..events].to_vec();
    want.sort_by_key(|e| e.seq);
    got.iter_mut()
        .chain(want.iter_mut())
        .for_each(|e| e.meta = None);
    assert_eq!(got, want, "{ctx}: read_log");
    let canon = canon.unwrap_or_else(|e| panic!("{ctx}: canonical_log: {e}"));
    let checked = check_log(&path).unwrap_or_else(|e| panic!("{ctx}: check_log: {e}"));
    assert_eq!(checked.events, events as u64, "{ctx}");
    assert_eq!(checked.torn_at.is_some(), k != boundary, "{ctx}: torn_at");
    assert_eq!(
        fs::read(&path).unwrap(),
        &orig.bytes[..k],
        "{ctx}: a reader modified the log"
    );
    assert!(!broken.exists(), "{ctx}: a reader repaired the log");

    let report = verify_log(&path).unwrap_or_else(|e| panic!("{ctx}: verify_log: {e}"));
    let end = match &report.repaired {
        None => {
            assert_eq!(k, boundary, "{ctx}: torn tail not repaired");
            k
        }
        Some(r) if no_newline => {
            assert_eq!((r.offset, r.bytes), (k as u64, 0), "{ctx}");
            assert!(
                r.newline_restored && r.broken_path.is_none(),
                "{ctx}: {r:?}"
            );
            k + 1
        }
        Some(r) => {
            assert_ne!(k, boundary, "{ctx}: repair at a line boundary: {r:?}");
            assert_eq!(r.offset, boundary as u64, "{ctx}");
            assert_eq!(r.bytes, (k - boundary) as u64, "{ctx}");
            assert_eq!(r.broken_path.as_ref(), Some(&broken), "{ctx}");
            assert_eq!(
                fs::read(&broken).unwrap(),
                &orig.bytes[boundary..k],
                "{ctx}: .broken holds the cut bytes"
            );
            #[cfg(unix)]
            assert_eq!(mode(&broken), 0o600, "{ctx}: .broken mode");
            boundary
        }
    };
    // The remaining records are exactly the first whole lines of the original.
    assert_eq!(
        fs::read(&path).unwrap(),
        &orig.bytes[..end],
        "{ctx}: repaired log"
    );
    assert_eq!(report.events, events as u64, "{ctx}");
    assert_eq!(report.bytes, end as u64, "{ctx}");
    assert_eq!(report.run_id, RUN_ID, "{ctx}");
    assert_eq!(
        canonical_bytes(&path).unwrap(),
        canon,
        "{ctx}: repair changed the canonical log"
    );

    let mut run =
        Run::resume(&path, FsyncMode::Never).unwrap_or_else(|e| panic!("{ctx}: resume: {e}"));
    // Each distinct prefix (one per line boundary) is also driven to the end.
    if k == boundary || no_newline {
        drive_shuffled(&mut run, &mut SplitMix64(k as u64), |_| {});
        assert_eq!(run.status().unwrap(), RunStatus::Completed, "{ctx}");
        drop(run);
        assert_eq!(
            canonical_bytes(&path).unwrap(),
            orig.canonical,
            "{ctx}: resumed run differs from the original"
        );
    }
    report.repaired.is_some()
}

#[test]
fn truncation_at_every_offset_is_repaired_to_a_resumable_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (orig_path, bytes) = small_log(dir.path());
    let spans = line_spans(&bytes);
    assert_eq!(
        spans.last().unwrap().end,
        bytes.len(),
        "log ends with a newline"
    );
    let orig = Original {
        events: spans[1..]
            .iter()
            .map(|s| parse_line(&bytes[s.clone()]))
            .collect(),
        canonical: canonical_bytes(&orig_path).unwrap(),
        spans,
        bytes,
    };
    // Each repair fsyncs twice; threads overlap those waits.
    const THREADS: usize = 8;
    let repairs: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let orig = &orig;
                let work = dir.path().join(format!("work-{t}"));
                fs::create_dir(&work).unwrap();
                s.spawn(move || {
                    (t..=orig.bytes.len())
                        .step_by(THREADS)
                        .filter(|&k| check_truncation(orig, k, &work))
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    // Every offset from the newline of runStarted on, but the line ends, tears a record (or
    // only its newline); before that no event is complete and nothing is repaired.
    let first_event_end = orig.spans[1].end;
    let expected = (first_event_end - 1..=orig.bytes.len())
        .filter(|&k| !orig.spans.iter().any(|s| s.end == k))
        .count();
    assert_eq!(repairs, expected);
}

/// Expect `LOG_CORRUPT` at `offset` from every reader of `damaged`, and no change to the file.
fn assert_corrupt_at(path: &Path, damaged: &[u8], offset: usize, what: &str) {
    let _ = fs::remove_file(broken_path(path));
    fs::write(path, damaged).unwrap();
    let ctx = format!("{what} (damaged record at {offset})");
    let e = expect_err(verify_log(path), ErrorKind::LogCorrupt, &ctx);
    assert_eq!(corrupt_offset(&e), offset as u64, "{ctx}: verify_log: {e}");
    assert!(
        e.message().contains(&format!("at byte {offset}")),
        "{ctx}: {e}"
    );
    let e = expect_err(
        Run::resume(path, FsyncMode::Never),
        ErrorKind::LogCorrupt,
        &ctx,
    );
    assert_eq!(corrupt_offset(&e), offset as u64, "{ctx}: resume: {e}");
    let e = expect_err(canonical_bytes(path), ErrorKind::LogCorrupt, &ctx);
    assert_eq!(
        corrupt_offset(&e),
        offset as u64,
        "{ctx}: canonical_log: {e}"
    );
    let e = expect_err(read_log(path), ErrorKind::LogCorrupt, &ctx);
    assert_eq!(corrupt_offset(&e), offset as u64, "{ctx}: read_log: {e}");
    assert_eq!(fs::read(path).unwrap(), damaged, "{ctx}: file changed");
    assert!(
        !broken_path(path).exists(),
        "{ctx}: damage treated as a torn tail"
    );
}

#[test]
fn damage_before_the_tail_is_log_corrupt_at_the_damaged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_, orig) = small_log(dir.path());
    let spans = line_spans(&orig);
    let line_of = |p: usize| spans.iter().position(|s| s.contains(&p)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join(format!("{RUN_ID}.jsonl"));

    // Every byte but the final newline (flipping that one only tears the tail).
    for p in 0..orig.len() - 1 {
        let mut d = orig.clone();
        d[p] ^= 0x01;
        assert_corrupt_at(
            &path,
            &d,
            spans[line_of(p)].start,
            &format!("byte {p} flipped"),
        );
    }
    // Insertions before every byte of a middle line, and at its start.
    let mid = spans.len() / 2;
    for p in spans[mid].clone() {
        for b in [b'x', b'\n'] {
            let mut d = orig.clone();
            d.insert(p, b);
            let what = format!("{:?} inserted at {p}", b as char);
            // A newline just before the line's own newline leaves the line whole and adds an
            // empty record after it.
            let damaged = if b == b'\n' && p == spans[mid].end - 1 {
                spans[mid].end
            } else {
                spans[mid].start
            };
            assert_corrupt_at(&path, &d, damaged, &what);
        }
    }
    // A whole line deleted, or two adjacent lines swapped: the record now at that offset does
    // not chain to its predecessor.
    for i in 0..spans.len() - 1 {
        let mut d = orig[..spans[i].start].to_vec();
        d.extend_from_slice(&orig[spans[i].end..]);
        assert_corrupt_at(&path, &d, spans[i].start, &format!("line {i} deleted"));

        let mut d = orig[..spans[i].start].to_vec();
        d.extend_from_slice(&orig[spans[i + 1].clone()]);
        d.extend_from_slice(&orig[spans[i].clone()]);
        d.extend_from_slice(&orig[spans[i + 1].end..]);
        assert_corrupt_at(
            &path,
            &d,
            spans[i].start,
            &format!("lines {i} and {} swapped", i + 1),
        );
    }
    // Deleting the last line is not damage: it is a shorter, valid log.
    fs::write(&path, &orig[..spans.last().unwrap().start]).unwrap();
    let report = verify_log(&path).unwrap();
    assert!(
        report.repaired.is_none() && report.finished.is_none(),
        "{report:?}"
    );
}

#[cfg(unix)]
#[test]
fn log_files_are_created_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = full_run(dir.path(), &fanout_workflow(), FsyncMode::Batch, 1);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn invalid_run_ids_are_rejected_before_any_file_exists() {
    let dir = tempfile::tempdir().unwrap();
    let parent = full_run(
        &dir.path().join("parent"),
        &fanout_workflow(),
        FsyncMode::Never,
        1,
    );
    let logs = dir.path().join("logs");
    let long = "x".repeat(129);
    let bad = [
        "a/b",
        "/abs",
        "a\\b",
        "..",
        "../up",
        ".",
        ".hidden",
        "a\u{0}b",
        "a\nb",
        "a\u{7f}b",
        "tab\tid",
        "",
        long.as_str(),
        "sp ace",
        "é",
    ];
    for id in bad {
        let mut o = options(&logs, FsyncMode::Always);
        o.run_id = Some(id.to_owned());
        let what = format!("run id {id:?}");
        expect_err(
            Run::start(&fanout_workflow(), o),
            ErrorKind::InvalidArgument,
            &what,
        );
        expect_err(
            Run::fork(
                &parent,
                1,
                Default::default(),
                Some(id.to_owned()),
                Some(logs.clone()),
                FsyncMode::Never,
            ),
            ErrorKind::InvalidArgument,
            &what,
        );
        expect_err(
            agentmesh_core::log::log_path(&logs, id),
            ErrorKind::InvalidArgument,
            &what,
        );
        assert!(!logs.exists(), "{what}: something was created");
    }
    let entries: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        ["parent"],
        "nothing but the parent's directory exists"
    );

    // The longest accepted id.
    let mut o = options(&logs, FsyncMode::Never);
    o.run_id = Some("x".repeat(128));
    let run = Run::start(&fanout_workflow(), o).unwrap();
    assert_eq!(
        run.log_path().unwrap(),
        logs.join(format!("{}.jsonl", "x".repeat(128)))
    );
}

#[test]
fn starting_a_run_whose_log_exists_is_run_exists() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Run::start(&fanout_workflow(), options(dir.path(), FsyncMode::Batch)).unwrap();
    let path = live.log_path().unwrap().to_owned();
    let before = fs::read(&path).unwrap();
    // While the first run holds the log, and after it has finished.
    let e = expect_err(
        Run::start(&fanout_workflow(), options(dir.path(), FsyncMode::Batch)),
        ErrorKind::RunExists,
        "second start",
    );
    assert_eq!(e.code(), "RUN_EXISTS");
    assert_eq!(fs::read(&path).unwrap(), before);
    drive_shuffled(&mut live, &mut SplitMix64(3), |_| {});
    drop(live);
    let after = fs::read(&path).unwrap();
    expect_err(
        Run::start(&looping_workflow(), options(dir.path(), FsyncMode::Never)),
        ErrorKind::RunExists,
        "start after finish",
    );
    assert_eq!(fs::read(&path).unwrap(), after);
}

/// A crash inside `Run::start` can leave a log with only its header (or a torn header):
/// nothing is committed, so starting the run again takes the file over.
#[test]
fn start_takes_over_a_log_that_holds_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::start(&fanout_workflow(), options(dir.path(), FsyncMode::Never)).unwrap();
    let path = run.log_path().unwrap().to_owned();
    drop(run);
    let full = fs::read(&path).unwrap();
    let header_len = line_spans(&full)[0].end;
    let reference = canonical(&path);
    for cut in [0, header_len / 2, header_len] {
        fs::write(&path, &full[..cut]).unwrap();
        let mut again = Run::start(&fanout_workflow(), options(dir.path(), FsyncMode::Never))
            .unwrap_or_else(|e| panic!("restart over a {cut}-byte log: {e}"));
        drop(again.poll().unwrap());
        drop(again);
        assert_eq!(canonical(&path), reference, "cut at {cut}");
    }
}

#[test]
fn a_second_writer_is_refused_while_a_run_holds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Run::start(&fanout_workflow(), options(dir.path(), FsyncMode::Batch)).unwrap();
    let path = live.log_path().unwrap().to_owned();
    let mut rng = SplitMix64(5);
    // Complete the first step and part of the fan-out, so the log has out-of-order records.
    let mut pending = live.poll().unwrap();
    for _ in 0..3 {
        let a = pending.swap_remove(rng.below(pending.len() as u64) as usize);
        live.complete(a.id, durable_completion(&a)).unwrap();
        pending.extend(live.poll().unwrap());
    }
    let before = fs::read(&path).unwrap();
    let e = expect_err(
        Run::resume(&path, FsyncMode::Always),
        ErrorKind::Io,
        "resume",
    );
    assert!(e.message().contains("locked"), "{e}");
    let e = expect_err(verify_log(&path), ErrorKind::Io, "verify_log");
    assert!(e.message().contains("locked"), "{e}");
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "the refused writer changed the log"
    );
    // Readers do not take the lock.
    assert!(canonical_bytes(&path).is_ok());

    // The holder is unaffected and finishes; then the log can be reopened.
    for a in pending {
        live.complete(a.id, durable_completion(&a)).unwrap();
    }
    drive_shuffled(&mut live, &mut rng, |_| {});
    assert_eq!(live.status().unwrap(), RunStatus::Completed);
    drop(live);
    let resumed = Run::resume(&path, FsyncMode::Always).unwrap();
    assert_eq!(resumed.status().unwrap(), RunStatus::Completed);
    assert!(verify_log(&path).is_err(), "the resumed run holds the lock");
    drop(resumed);
    assert_eq!(
        verify_log(&path).unwrap().finished.as_deref(),
        Some("runCompleted")
    );
}

#[test]
fn fsync_modes_produce_identical_canonical_logs() {
    let workflow = looping_workflow();
    let dir = tempfile::tempdir().unwrap();
    let mut logs = Vec::new();
    for (i, mode) in [FsyncMode::Always, FsyncMode::Batch, FsyncMode::Never]
        .into_iter()
        .enumerate()
    {
        // A different completion order per mode as well: canonical order must not care.
        let path = full_run(&dir.path().join(mode.as_str()), &workflow, mode, i as u64);
        let report = verify_log(&path).unwrap();
        assert_eq!(report.finished.as_deref(), Some("runCompleted"));
        assert!(report.holes.is_empty());
        logs.push((mode, canonical_bytes(&path).unwrap()));
    }
    let mut mem = Run::start(
        &workflow,
        RunOptions {
            log_dir: None,
            ..options(dir.path(), FsyncMode::Never)
        },
    )
    .unwrap();
    drive_shuffled(&mut mem, &mut SplitMix64(9), |_| {});
    let memory = mem.canonical().unwrap();
    for (mode, log) in &logs {
        assert_eq!(
            String::from_utf8_lossy(log),
            String::from_utf8_lossy(&memory),
            "fsync {} differs from the memory log",
            mode.as_str()
        );
    }
}

#[test]
fn resume_rederives_decisions_lost_after_a_steps_last_completion() {
    let workflow = looping_workflow();
    let dir = tempfile::tempdir().unwrap();
    let orig_path = full_run(&dir.path().join("orig"), &workflow, FsyncMode::Never, 21);
    let orig = fs::read(&orig_path).unwrap();
    let full_canonical = canonical_bytes(&orig_path).unwrap();
    let spans = line_spans(&orig);
    let events: Vec<Event> = spans[1..]
        .iter()
        .map(|s| parse_line(&orig[s.clone()]))
        .collect();
    let canon = |e: &Event| e.to_canonical_json();

    let mut cuts = 0;
    // events[j] is line j + 1. A step's last completion is followed by the step's decisions.
    for j in 0..events.len() - 1 {
        if !events[j].data.is_completion() || events[j + 1].data.is_completion() {
            continue;
        }
        cuts += 1;
        let lost: Vec<String> = events[j + 1..]
            .iter()
            .take_while(|e| !e.data.is_completion())
            .map(canon)
            .collect();
        let cut = spans[j + 1].end;
        let ctx = format!("cut after seq {} at byte {cut}", events[j].seq);
        let work = dir.path().join(format!("cut-{cut}"));
        fs::create_dir(&work).unwrap();
        let path = work.join(format!("{RUN_ID}.jsonl"));
        fs::write(&path, &orig[..cut]).unwrap();
        let report = verify_log(&path).unwrap();
        assert!(report.repaired.is_none(), "{ctx}");

        let mut run = Run::resume(&path, FsyncMode::Batch).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        // The decisions reach the file again, identical and in the same order.
        let now = fs::read(&path).unwrap();
        assert_eq!(
            &now[..cut],
            &orig[..cut],
            "{ctx}: resume rewrote the prefix"
        );
        let appended: Vec<String> = line_spans(&now[cut..])
            .iter()
            .map(|s| canon(&parse_line(&now[cut..][s.clone()])))
            .collect();
        assert_eq!(appended, lost, "{ctx}: re-derived decisions");
        let scheduled = lost.iter().filter(|l| l.contains("Scheduled\"")).count();
        let outstanding = run.outstanding().unwrap();
        assert_eq!(outstanding.len(), scheduled, "{ctx}: {outstanding:?}");

        drive_shuffled(&mut run, &mut SplitMix64(cut as u64), |_| {});
        assert_eq!(run.status().unwrap(), RunStatus::Completed, "{ctx}");
        drop(run);
        assert_eq!(
            String::from_utf8_lossy(&canonical_bytes(&path).unwrap()),
            String::from_utf8_lossy(&full_canonical),
            "{ctx}"
        );
    }
    // One cut per step (10 steps; the last one loses runCompleted).
    assert_eq!(cuts, 10);
}

#[test]
fn an_oversized_completion_is_invalid_output_and_writes_nothing() {
    let workflow = fanout_workflow();
    let dir = tempfile::tempdir().unwrap();
    let reference = full_run(&dir.path().join("ref"), &workflow, FsyncMode::Never, 2);
    let mut run = Run::start(
        &workflow,
        options(&dir.path().join("big"), FsyncMode::Always),
    )
    .unwrap();
    let path = run.log_path().unwrap().to_owned();
    let mut pending = run.poll().unwrap();
    // plan, then all of the fan-out but a1, so the oversized completion would end the step.
    while pending.iter().any(|a| a.node.as_ref() != "a1") {
        let i = pending
            .iter()
            .position(|a| a.node.as_ref() != "a1")
            .unwrap();
        let a = pending.remove(i);
        run.complete(a.id, durable_completion(&a)).unwrap();
        pending.extend(run.poll().unwrap());
    }
    let a1 = pending.pop().expect("a1 outstanding");
    assert!(pending.is_empty());
    let before = fs::read(&path).unwrap();

    let huge = Value::String("y".repeat(MAX_EVENT_BYTES));
    let e = expect_err(
        run.complete(a1.id, Completion::ok(huge)),
        ErrorKind::InvalidOutput,
        "oversized output",
    );
    assert!(e.message().contains(&MAX_EVENT_BYTES.to_string()), "{e}");
    // The log knows no nodes; the run names the node for every host.
    assert!(e.message().starts_with("node 'a1': "), "{e}");
    assert_eq!(
        e.detail(),
        Some(&ErrorDetail::Node {
            node: "a1".to_owned()
        })
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), before.len() as u64);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(run.status().unwrap(), RunStatus::Running);
    assert_eq!(
        run.outstanding()
            .unwrap()
            .iter()
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        [a1.id]
    );

    // The same activation then completes normally, and the run is as if nothing happened.
    run.complete(a1.id, durable_completion(&a1)).unwrap();
    drive_shuffled(&mut run, &mut SplitMix64(4), |_| {});
    assert_eq!(run.status().unwrap(), RunStatus::Completed);
    drop(run);
    assert_eq!(
        canonical_bytes(&path).unwrap(),
        canonical_bytes(&reference).unwrap()
    );
}

/// Every completion fits in a record but the run output (all terminal outputs, repeated in
/// `runCompleted`) would not: the run fails with LIMIT_EXCEEDED, and the log stays consistent.
#[test]
fn an_oversized_run_output_fails_the_run_with_limit_exceeded() {
    let w = wf(json!({"name": "two", "nodes": [
        {"id": "t1", "type": "agent", "agent": "x"},
        {"id": "t2", "type": "agent", "agent": "x"}
    ]}));
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::start(&w, options(dir.path(), FsyncMode::Never)).unwrap();
    let path = run.log_path().unwrap().to_owned();
    let acts = run.poll().unwrap();
    let big = |mib: usize| Completion::ok(Value::String("z".repeat(mib << 20)));
    run.complete(acts[0].id, big(20)).unwrap();
    run.complete(acts[1].id, big(20)).unwrap();
    assert_eq!(run.status().unwrap(), RunStatus::Failed);
    let error = run
        .outcome()
        .unwrap()
        .error
        .expect("a failed run has an error");
    assert_eq!(error.code, "LIMIT_EXCEEDED");
    assert!(
        error.message.contains("terminal nodes t1, t2"),
        "{}",
        error.message
    );
    drop(run);
    assert_eq!(
        verify_log(&path).unwrap().finished.as_deref(),
        Some("runFailed")
    );
    assert_eq!(
        agentmesh_core::replay(&path, None).unwrap().outcome.status,
        RunStatus::Failed
    );
}

/// A child process spawned (by any thread) while a log is open shares the open file until it
/// execs. Closing a log must still release its lock at once, or a resume right after a run
/// ends (or after a refused corrupt log) fails with "locked by another writer".
#[cfg(unix)]
#[test]
fn spawned_processes_do_not_keep_closed_logs_locked() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                std::process::Command::new("true")
                    .status()
                    .expect("spawn true");
            }
        });
        let checks = s.spawn(|| {
            let result = std::panic::catch_unwind(|| {
                for i in 0..150 {
                    let sub = dir.path().join(i.to_string());
                    let path = full_run(&sub, &fanout_workflow(), FsyncMode::Never, i);
                    let what = format!("cycle {i}");
                    verify_log(&path).unwrap_or_else(|e| panic!("{what}: verify: {e}"));
                    drop(
                        Run::resume(&path, FsyncMode::Never)
                            .unwrap_or_else(|e| panic!("{what}: resume: {e}")),
                    );
                    // A refused (corrupt) log is released too.
                    let mut bytes = fs::read(&path).unwrap();
                    let mid = bytes.len() / 2;
                    bytes[mid] ^= 1;
                    fs::write(&path, &bytes).unwrap();
                    expect_err(
                        Run::resume(&path, FsyncMode::Never),
                        ErrorKind::LogCorrupt,
                        &what,
                    );
                    expect_err(verify_log(&path), ErrorKind::LogCorrupt, &what);
                }
            });
            done.store(true, Ordering::Relaxed);
            result
        });
        if let Err(p) = checks.join().unwrap() {
            std::panic::resume_unwind(p);
        }
    });
}

fn nested(levels: usize) -> Value {
    let mut v = json!("leaf");
    for _ in 0..levels {
        v = json!([v]);
    }
    v
}

/// A value as deep as the limit is written and reads back everywhere (`runCompleted` nests it
/// three levels deeper); one level more is refused before anything is written, because
/// serde_json could not read such a record back.
#[test]
fn values_nested_past_the_limit_are_refused_and_at_the_limit_read_back() {
    let w = wf(json!({"name": "deep", "nodes": [{"id": "t", "type": "agent", "agent": "x"}]}));
    let dir = tempfile::tempdir().unwrap();

    let mut opts = options(dir.path(), FsyncMode::Never);
    opts.input = nested(MAX_VALUE_DEPTH + 1);
    expect_err(
        Run::start(&w, opts),
        ErrorKind::InvalidArgument,
        "deep input",
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );

    let mut opts = options(dir.path(), FsyncMode::Never);
    opts.input = nested(MAX_VALUE_DEPTH);
    let mut run = Run::start(&w, opts).unwrap();
    let path = run.log_path().unwrap().to_owned();
    let act = run.poll().unwrap().pop().unwrap();
    let before = fs::read(&path).unwrap();
    let e = expect_err(
        run.complete(act.id, Completion::ok(nested(MAX_VALUE_DEPTH + 1))),
        ErrorKind::InvalidOutput,
        "deep output",
    );
    assert!(e.message().starts_with("node 't': "), "{e}");
    assert_eq!(fs::read(&path).unwrap(), before);

    run.complete(act.id, Completion::ok(nested(MAX_VALUE_DEPTH)))
        .unwrap();
    assert_eq!(run.status().unwrap(), RunStatus::Completed);
    drop(run);
    let (_, events) = read_log(&path).unwrap();
    assert_eq!(events.last().unwrap().data.type_name(), "runCompleted");
    agentmesh_core::replay(&path, None).unwrap();

    let e = expect_err(
        Run::fork(
            &path,
            4,
            std::collections::BTreeMap::from([("t".to_owned(), nested(MAX_VALUE_DEPTH + 1))]),
            None,
            Some(dir.path().to_owned()),
            FsyncMode::Never,
        ),
        ErrorKind::InvalidArgument,
        "deep override",
    );
    assert!(e.message().contains("'t'"), "{e}");
}
