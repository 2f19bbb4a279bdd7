//! Shared helpers of the AgentMesh benchmarks: the benchmark workflows, agents and drivers, used
//! by the criterion benches (`benches/`) and by the `figures` binary alike, so both measure
//! exactly the same work.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentmesh_core::{
    Completion, Error, ErrorKind, FsyncMode, Mesh, Outcome, Result, Run, RunOptions, RunStatus,
    Workflow,
};
use serde_json::{json, Value};

/// Agent name every benchmark workflow uses.
pub const AGENT: &str = "noop";

/// An `IO` error naming what was being done.
pub fn io_error(context: impl std::fmt::Display, err: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{context}: {err}"))
}

/// An `INTERNAL` error: a benchmark run did not do what the benchmark expects.
pub fn internal(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Internal, message)
}

fn workflow(value: Value) -> Workflow {
    // The benchmark workflows are fixed and valid; a failure here is a bug in this file.
    Workflow::from_value(value).expect("benchmark workflow is valid")
}

/// A chain `n0 → n1 → … → n{len-1}`: one activation per superstep.
pub fn chain(len: usize) -> Workflow {
    let nodes: Vec<Value> = (0..len)
        .map(|i| {
            if i == 0 {
                json!({"id": "n0", "type": "agent", "agent": AGENT})
            } else {
                json!({"id": format!("n{i}"), "type": "agent", "agent": AGENT,
                       "after": [format!("n{}", i - 1)]})
            }
        })
        .collect();
    workflow(json!({"name": format!("chain-{len}"), "nodes": nodes}))
}

/// `width` independent agents in step 1 and a `join` after all of them in step 2.
pub fn fanout(width: usize) -> Workflow {
    let mut nodes: Vec<Value> = (0..width)
        .map(|i| json!({"id": format!("w{i}"), "type": "agent", "agent": AGENT}))
        .collect();
    let after: Vec<String> = (0..width).map(|i| format!("w{i}")).collect();
    nodes.push(json!({"id": "join", "type": "agent", "agent": AGENT, "after": after}));
    workflow(json!({"name": format!("fanout-{width}"), "nodes": nodes}))
}

/// A map over the run input's `items` and a `join` after it: the dynamic form of
/// [`fanout`] (one activation per item in step 1, the join in step 2). Run it with
/// [`map_options`].
pub fn map_fanout() -> Workflow {
    workflow(json!({"name": "map-fanout", "nodes": [
        {"id": "w", "type": "map", "agent": AGENT, "over": "/input/items"},
        {"id": "join", "type": "agent", "agent": AGENT, "after": ["w"]}
    ]}))
}

/// [`options`] whose input holds `width` items for [`map_fanout`].
pub fn map_options(width: usize, run_id: Option<String>, log_dir: Option<&Path>) -> RunOptions {
    let items: Vec<Value> = (0..width).map(|i| json!({"q": i})).collect();
    RunOptions {
        input: json!({"topic": "bench", "items": items}),
        ..options(run_id, log_dir)
    }
}

/// One agent and a branch that loops back to it until it has run `iterations` times: one
/// superstep per iteration, with a workflow of constant size however long the run is.
pub fn counter_loop(iterations: u64) -> Workflow {
    workflow(json!({"name": "loop", "nodes": [
        {"id": "work", "type": "agent", "agent": AGENT, "maxVisits": iterations},
        {"id": "again", "type": "branch", "after": ["work"],
         "cases": [{"when": {"path": "/visits/work", "lt": iterations}, "goto": "work"}]}
    ]}))
}

/// Events a [`counter_loop`] run of `iterations` writes: `runStarted`, per iteration
/// `stepStarted`, `agentScheduled`, `agentCompleted` and `branchDecided`, then `runCompleted`.
pub fn counter_loop_events(iterations: u64) -> u64 {
    4 * iterations + 2
}

/// Iterations of [`counter_loop`] whose log holds at least `events` events.
pub fn iterations_for_events(events: u64) -> u64 {
    events.saturating_sub(2).div_ceil(4).max(1)
}

/// The output every benchmark agent returns: small, like a short status object.
pub fn small_output(visit: u64) -> Value {
    json!({"ok": true, "visit": visit})
}

/// How benchmark agents answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `null`: measures the runtime alone.
    Null,
    /// [`small_output`]: a realistic small payload.
    Small,
}

impl Payload {
    /// The output for an activation of `visit`.
    pub fn output(self, visit: u64) -> Value {
        match self {
            Payload::Null => Value::Null,
            Payload::Small => small_output(visit),
        }
    }
}

/// A [`Mesh`] with the benchmark agent registered, logging to `log_dir` (memory when `None`)
/// with batch fsync.
pub fn mesh(payload: Payload, log_dir: Option<&Path>) -> Mesh {
    let mut mesh = Mesh::new().with_fsync(FsyncMode::Batch);
    if let Some(dir) = log_dir {
        mesh = mesh.with_log_dir(dir);
    }
    mesh.agent(AGENT, move |act, _| Ok(payload.output(act.visit).into()));
    mesh
}

/// Options of a benchmark run: fixed seed and input, the given run id and log directory, batch
/// fsync.
pub fn options(run_id: Option<String>, log_dir: Option<&Path>) -> RunOptions {
    RunOptions {
        input: json!({"topic": "bench"}),
        seed: 7,
        run_id,
        log_dir: log_dir.map(Path::to_path_buf),
        fsync: FsyncMode::Batch,
        ..RunOptions::default()
    }
}

/// Drive a run through the raw host API ([`Run::poll`] / [`Run::complete`]) on this thread,
/// completing every activation at once in poll order. Returns the outcome.
///
/// Errors: whatever [`Run::complete`] returns, and `INTERNAL` when the run stalls (it waits
/// for a person, which no benchmark workflow has).
pub fn drive_raw(run: &mut Run, payload: Payload) -> Result<Outcome> {
    while !run.is_finished()? {
        let acts = run.poll()?;
        if acts.is_empty() {
            return Err(internal(format!(
                "run '{}' is {} with nothing to do",
                run.run_id(),
                run.status()?.as_str()
            )));
        }
        for act in acts {
            run.complete(act.id, Completion::ok(payload.output(act.visit)))?;
        }
    }
    run.outcome()
}

/// Start `wf` and drive it with [`drive_raw`]; fails unless the run completes.
///
/// Errors: as [`Run::start`] and [`drive_raw`]; `INTERNAL` for a run that did not complete.
pub fn run_raw(wf: &Workflow, options: RunOptions, payload: Payload) -> Result<Run> {
    let mut run = Run::start(wf, options)?;
    let outcome = drive_raw(&mut run, payload)?;
    if outcome.status != RunStatus::Completed {
        return Err(internal(format!(
            "benchmark run ended {}: {:?}",
            outcome.status.as_str(),
            outcome.error
        )));
    }
    Ok(run)
}

/// Run `wf` with `mesh`; fails unless the run completes.
///
/// Errors: as [`Mesh::run`]; `INTERNAL` for a run that did not complete.
pub fn run_mesh(mesh: &Mesh, wf: &Workflow, options: RunOptions) -> Result<()> {
    let result = mesh.run(wf, options)?;
    if result.status != RunStatus::Completed {
        return Err(internal(format!(
            "benchmark run ended {}: {:?}",
            result.status.as_str(),
            result.error
        )));
    }
    Ok(())
}

/// Write the file log of a [`counter_loop`] run with at least `events` events (small payloads)
/// into `dir` and return its path and exact event count.
///
/// Errors: as [`run_raw`]; `RUN_EXISTS` when `dir` already holds it.
pub fn build_loop_log(dir: &Path, events: u64) -> Result<(PathBuf, u64)> {
    let iterations = iterations_for_events(events);
    let wf = counter_loop(iterations);
    let run = run_raw(
        &wf,
        options(Some(format!("loop-{iterations}")), Some(dir)),
        Payload::Small,
    )?;
    let path = run
        .log_path()
        .ok_or_else(|| internal("file run has no log path"))?
        .to_path_buf();
    Ok((path, counter_loop_events(iterations)))
}

/// A temporary log directory for file-log benchmarks: every timed batch of runs gets fresh run
/// ids (a log file is never reused), and their logs are deleted after the clock stops, so long
/// benchmark sessions neither fill the disk nor time the deletion.
pub struct FileRuns {
    dir: tempfile::TempDir,
    next: u64,
}

impl FileRuns {
    /// A new, empty temporary directory (under `$TMPDIR`, else `/tmp`).
    ///
    /// Errors: `IO`.
    pub fn new() -> Result<FileRuns> {
        let dir = tempfile::Builder::new()
            .prefix("agentmesh-bench-")
            .tempdir()
            .map_err(|e| io_error("creating a temporary log directory", e))?;
        Ok(FileRuns { dir, next: 0 })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Time `runs` calls of `f`, each given a fresh run id, then delete their logs.
    ///
    /// Errors: the first error of `f`, or `IO` when a log cannot be deleted.
    pub fn time(
        &mut self,
        runs: usize,
        mut f: impl FnMut(String) -> Result<()>,
    ) -> Result<Duration> {
        let first = self.next;
        self.next += runs as u64;
        let started = Instant::now();
        for n in first..self.next {
            f(format!("bench-{n}"))?;
        }
        let elapsed = started.elapsed();
        for n in first..self.next {
            let path = self.dir.path().join(format!("bench-{n}.jsonl"));
            std::fs::remove_file(&path)
                .map_err(|e| io_error(format!("removing {}", path.display()), e))?;
        }
        Ok(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_fanout_runs_one_activation_per_item() {
        let run = run_raw(&map_fanout(), map_options(7, None, None), Payload::Null).unwrap();
        // runStarted, step 1 (stepStarted + 7 scheduled + 7 completed), mapCompleted, step 2
        // (3 events), runCompleted.
        assert_eq!(run.events().unwrap().len(), 1 + 15 + 1 + 3 + 1);
    }

    #[test]
    fn counter_loop_writes_the_counted_events() {
        let dir = tempfile::tempdir().unwrap();
        let (path, events) = build_loop_log(dir.path(), 40).unwrap();
        assert_eq!(events, 42, "10 iterations");
        let report = agentmesh_core::verify_log(&path).unwrap();
        assert_eq!(report.events, events);
        assert_eq!(report.finished.as_deref(), Some("runCompleted"));
        let replayed = agentmesh_core::replay(&path, None).unwrap();
        assert_eq!(replayed.events, events);
    }

    #[test]
    fn raw_and_mesh_drivers_write_the_same_log() {
        let wf = fanout(5);
        let raw = run_raw(&wf, options(Some("r".into()), None), Payload::Small).unwrap();
        let mesh = mesh(Payload::Small, None);
        let via_mesh = mesh.run(&wf, options(Some("r".into()), None)).unwrap();
        assert_eq!(via_mesh.status, RunStatus::Completed);
        assert_eq!(raw.fingerprint().unwrap(), via_mesh.fingerprint().unwrap());
        // 5 workers + join: runStarted, 2 × stepStarted, 6 scheduled, 6 completed, runCompleted.
        assert_eq!(raw.events().unwrap().len(), 16);
    }

    #[test]
    fn file_runs_get_fresh_ids_and_clean_up() {
        let mut runs = FileRuns::new().unwrap();
        let wf = chain(2);
        let dir = runs.dir().to_path_buf();
        for _ in 0..2 {
            runs.time(3, |id| {
                run_raw(&wf, options(Some(id), Some(&dir)), Payload::Null).map(|_| ())
            })
            .unwrap();
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert_eq!(runs.next, 6);
    }

    #[test]
    fn chain_runs_one_step_per_node() {
        let run = run_raw(&chain(4), options(None, None), Payload::Null).unwrap();
        let steps = run
            .events()
            .unwrap()
            .iter()
            .filter(|e| e.type_name() == "stepStarted")
            .count();
        assert_eq!(steps, 4);
    }
}
