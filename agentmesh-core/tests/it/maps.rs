//! Map nodes end to end: a planner chooses how many researchers run, the writer gets their
//! notes in order, and a run cut mid-map (its process gone, its log as the crash left it)
//! resumes without running again the items whose results the log holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentmesh_core::{Completion, FsyncMode, Mesh, Run, RunOptions, RunStatus, Workflow};
use serde_json::{json, Value};

fn planned() -> Workflow {
    Workflow::from_value(json!({"name": "planned", "nodes": [
        {"id": "plan", "type": "agent", "agent": "planner"},
        {"id": "research", "type": "map", "agent": "researcher", "after": ["plan"],
         "over": "/outputs/plan/questions", "concurrency": 3},
        {"id": "write", "type": "agent", "agent": "writer", "after": ["research"],
         "reads": ["/input/topic"]}]}))
    .unwrap()
}

/// A mesh whose researcher counts its runs per item and whose writer joins the notes.
fn mesh(dir: &std::path::Path, n: usize, runs: Arc<Mutex<BTreeMap<u64, usize>>>) -> Mesh {
    let mut mesh = Mesh::new().with_log_dir(dir).with_fsync(FsyncMode::Never);
    mesh.agent("planner", move |_, _| {
        let qs: Vec<String> = (0..n).map(|i| format!("q{i}")).collect();
        Ok(json!({"questions": qs}).into())
    });
    mesh.agent("researcher", move |act, _| {
        let item = act.item.as_ref().expect("a map item");
        *runs.lock().unwrap().entry(item.index).or_default() += 1;
        // Later items finish first.
        std::thread::sleep(std::time::Duration::from_millis(
            5 * (8 - item.index.min(8)),
        ));
        Ok(json!({"notes": format!("about {}", item.value.as_str().unwrap())}).into())
    });
    mesh.agent("writer", |act, _| {
        let notes: Vec<Value> = act.deps["research"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["notes"].clone())
            .collect();
        Ok(json!({"topic": *act.reads["/input/topic"], "notes": notes}).into())
    });
    mesh
}

#[test]
fn the_planner_chooses_how_many_researchers_run() {
    for n in [0, 1, 6] {
        let dir = tempfile::tempdir().unwrap();
        let runs = Arc::new(Mutex::new(BTreeMap::new()));
        let r = mesh(dir.path(), n, runs.clone())
            .run(
                &planned(),
                RunOptions {
                    input: json!({"topic": "maps"}),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
        let notes: Vec<String> = (0..n).map(|i| format!("about q{i}")).collect();
        assert_eq!(
            r.output.unwrap(),
            json!({"write": {"topic": "maps", "notes": notes}})
        );
        assert_eq!(runs.lock().unwrap().len(), n);
        assert!(runs.lock().unwrap().values().all(|&c| c == 1));
    }
}

#[test]
fn a_run_cut_mid_map_resumes_without_redoing_finished_items() {
    let dir = tempfile::tempdir().unwrap();
    let wf = planned();
    // The crashed process: the plan and items 0 and 2 are recorded; items 1 and 3 were
    // running when it died (nothing of them is in the log).
    let mut run = Run::start(
        &wf,
        RunOptions {
            run_id: Some("cut".into()),
            input: json!({"topic": "maps"}),
            log_dir: Some(dir.path().to_owned()),
            fsync: FsyncMode::Always,
            ..Default::default()
        },
    )
    .unwrap();
    let plan = run.poll().unwrap().remove(0);
    run.complete(
        plan.id,
        Completion::ok(json!({"questions": ["q0", "q1", "q2", "q3"]})),
    )
    .unwrap();
    let items = run.poll().unwrap();
    assert_eq!(items.len(), 3, "concurrency 3");
    run.complete(items[0].id, Completion::ok(json!({"notes": "about q0"})))
        .unwrap();
    run.complete(items[2].id, Completion::ok(json!({"notes": "about q2"})))
        .unwrap();
    let log = run.log_path().unwrap().to_owned();
    drop(run);

    let runs = Arc::new(Mutex::new(BTreeMap::new()));
    let r = mesh(dir.path(), 4, runs.clone())
        .resume(&log, Default::default())
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(
        runs.lock().unwrap().keys().copied().collect::<Vec<_>>(),
        [1, 3],
        "only the items without a recorded result ran again"
    );
    let notes: Vec<String> = (0..4).map(|i| format!("about q{i}")).collect();
    assert_eq!(r.output.unwrap()["write"]["notes"], json!(notes));
    // The resumed log is the log of a run never cut.
    let whole = tempfile::tempdir().unwrap();
    let again = mesh(whole.path(), 4, Arc::new(Mutex::new(BTreeMap::new())))
        .run(
            &wf,
            RunOptions {
                run_id: Some("cut".into()),
                input: json!({"topic": "maps"}),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        super::common::canonical(&log),
        super::common::canonical(&again.log_path.unwrap())
    );
}

#[test]
fn the_concurrency_window_bounds_items_running_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut mesh = Mesh::new()
        .with_log_dir(dir.path())
        .with_fsync(FsyncMode::Never);
    let (r2, m2) = (running.clone(), most.clone());
    mesh.agent("a", move |_, _| {
        let now = r2.fetch_add(1, Ordering::SeqCst) + 1;
        m2.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(5));
        r2.fetch_sub(1, Ordering::SeqCst);
        Ok(json!(1).into())
    });
    let wf = Workflow::from_value(json!({"name": "w", "nodes": [
        {"id": "m", "type": "map", "agent": "a", "over": "/input", "concurrency": 2}]}))
    .unwrap();
    let r = mesh
        .run(
            &wf,
            RunOptions {
                input: json!([0, 1, 2, 3, 4, 5, 6, 7]),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[test]
fn a_retried_run_runs_only_the_items_that_failed_it() {
    let dir = tempfile::tempdir().unwrap();
    let wf = Workflow::from_value(json!({"name": "w", "nodes": [
        {"id": "m", "type": "map", "agent": "a", "over": "/input"}]}))
    .unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mk = || {
        let (runs, fixed) = (runs.clone(), fixed.clone());
        let mut mesh = Mesh::new()
            .with_log_dir(dir.path())
            .with_fsync(FsyncMode::Never);
        mesh.agent("a", move |act, _| {
            let k = act.item.as_ref().unwrap().index;
            runs.lock().unwrap().push(k);
            if k == 1 && !fixed.load(Ordering::SeqCst) {
                return Err(agentmesh_core::Failure::error("Bug", "item 1 broke").into());
            }
            Ok(json!(k * 10).into())
        });
        mesh
    };
    let r = mk()
        .run(
            &wf,
            RunOptions {
                input: json!([0, 1, 2]),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.as_ref().unwrap().item, Some(1));
    fixed.store(true, Ordering::SeqCst);
    runs.lock().unwrap().clear();
    let r = mk().retry(r.log_path.unwrap()).unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    assert_eq!(
        *runs.lock().unwrap(),
        [1],
        "the items that succeeded are not run again"
    );
    assert_eq!(r.output.unwrap(), json!({"m": [0, 10, 20]}));
}
