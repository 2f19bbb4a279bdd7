//! `NativeWorkflow` and `NativeRun`: the core's `Workflow` and `Run` for the Python driver.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agentmesh_core::{
    Error, ErrorDetail, ErrorKind, ForkOptions, FsyncMode, Recorded, ResumeOptions, Run,
    RunOptions, Workflow,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use serde_json::Value;

use crate::activation::{wrap_all, Activation};
use crate::budget::{budget_option, NativePrices};
use crate::calls::SharedRun;
use crate::completion::NativeCompletion;
use crate::errors::{detached, to_py};
use crate::policy::policy_option;
use crate::pyjson;
use crate::pyser::Strings;
use crate::stream::event_to_py;

/// A validated workflow.
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativeWorkflow {
    pub inner: Workflow,
}

#[pymethods]
impl NativeWorkflow {
    /// Parse and validate workflow JSON text.
    #[staticmethod]
    fn from_json(py: Python<'_>, text: &Bound<'_, PyString>) -> PyResult<NativeWorkflow> {
        let text = workflow_text(text)?;
        let inner = detached(py, || Workflow::from_json(&text))?;
        Ok(NativeWorkflow { inner })
    }

    /// Read, parse and validate a workflow file.
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<NativeWorkflow> {
        let inner = detached(py, || Workflow::from_file(&path))?;
        Ok(NativeWorkflow { inner })
    }

    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// blake3 of the canonical workflow JSON (recorded in log headers).
    #[getter]
    fn hash(&self) -> &str {
        self.inner.hash()
    }

    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    fn node_ids(&self) -> Vec<String> {
        self.inner.node_ids().map(str::to_owned).collect()
    }

    fn agent_names(&self) -> Vec<String> {
        self.inner
            .agent_names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    fn tool_names(&self) -> Vec<String> {
        self.inner
            .tool_names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Hints about a valid workflow that probably does not do what its author meant (a node
    /// after only branches gets no deps); they never change a run.
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }

    /// Raise `UnknownAgentError` unless `agents` and `tools` (the registered names) cover
    /// every name this workflow uses: the core's one wording in every host.
    fn check_registered(
        &self,
        py: Python<'_>,
        agents: Vec<String>,
        tools: Vec<String>,
    ) -> PyResult<()> {
        let agents: Vec<&str> = agents.iter().map(String::as_str).collect();
        let tools: Vec<&str> = tools.iter().map(String::as_str).collect();
        self.inner
            .check_registered(&agents, &tools)
            .map_err(|e| to_py(py, &e))
    }
}

/// One run. The Python driver is its single writer; the mutex only makes the class `Sync`.
/// `None` once closed: a file log's writer lock is released so another mesh can resume it.
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativeRun {
    /// Shared with the activations it hands out, whose calls it records.
    run: SharedRun,
    /// Python strings shared by the events handed to a watching host (only used with the GIL).
    strings: Mutex<Strings>,
}

fn fsync_mode(text: &str) -> agentmesh_core::Result<FsyncMode> {
    FsyncMode::parse(text)
}

impl NativeRun {
    fn new(run: Run) -> NativeRun {
        NativeRun {
            run: Arc::new(Mutex::new(Some(run))),
            strings: Mutex::new(Strings::default()),
        }
    }

    /// Work on the run with the GIL released. A poisoned mutex means an earlier call panicked
    /// half-way, so the run's state is unknown: refuse with `INTERNAL` rather than go on.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Run) -> agentmesh_core::Result<T> + Send,
    ) -> PyResult<T> {
        detached(py, || {
            let mut guard = self.run.lock().map_err(|_| {
                Error::new(
                    ErrorKind::Internal,
                    "the run is unusable after an internal panic",
                )
            })?;
            match guard.as_mut() {
                Some(run) => f(run),
                None => Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "the run is closed (its log was released)",
                )),
            }
        })
    }
}

#[pymethods]
impl NativeRun {
    /// Start a run with `input` (JSON data). `watch`: keep committed events for
    /// `take_committed`, from the first one on. `budget`: the run's limits, replacing the
    /// workflow's `budget` (`INVALID_ARGUMENT` naming the field); `prices`: the user price
    /// table calls are priced with before the bundled one. `policy` (a `Policy`, path or
    /// dict): the run's policy, recorded by hash in the header.
    #[staticmethod]
    #[pyo3(signature = (workflow, input=None, seed=0, run_id=None, log_dir=None, fsync="batch", tenant=None, watch=false, budget=None, prices=None, policy=None, telemetry=None))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        py: Python<'_>,
        workflow: PyRef<'_, NativeWorkflow>,
        input: Option<&Bound<'_, PyAny>>,
        seed: u64,
        run_id: Option<String>,
        log_dir: Option<PathBuf>,
        fsync: &str,
        tenant: Option<String>,
        watch: bool,
        budget: Option<&Bound<'_, PyAny>>,
        prices: Option<PyRef<'_, NativePrices>>,
        policy: Option<&Bound<'_, PyAny>>,
        telemetry: Option<PyRef<'_, crate::telemetry::Telemetry>>,
    ) -> PyResult<NativeRun> {
        let observer = telemetry.map(|t| t.inner.observer());
        let wf = workflow.inner.clone();
        let policy = policy_option(py, policy)?;
        let input = json_arg(py, "input", input)?;
        let budget = budget
            .filter(|b| !b.is_none())
            .map(|b| budget_option(py, b))
            .transpose()?;
        let prices = prices.map(|p| p.inner.clone());
        let run = detached(py, || {
            let options = RunOptions {
                input,
                seed,
                run_id,
                log_dir,
                fsync: fsync_mode(fsync)?,
                tenant,
                host: Some("python".to_owned()),
                watch,
                observer: observer.clone(),
                budget,
                prices,
                policy,
            };
            Run::start(&wf, options)
        })?;
        Ok(NativeRun::new(run))
    }

    /// Reopen a run from its log file. The core checks `run_id` (the run the log must hold)
    /// and resolves waiting human nodes with `approvals` (node id → decision, JSON data),
    /// every one checked before any is recorded. `watch`: keep committed events for
    /// `take_committed`, what resume appends included. `prices`: the user price table; a
    /// run that accounts for spend goes on only with the prices it was started with
    /// (`INVALID_ARGUMENT` otherwise, nothing written). `policy`: a run goes on only under
    /// the policy its header names, and one started without a policy only without one
    /// (`INVALID_ARGUMENT` naming the policy otherwise, nothing written).
    #[staticmethod]
    #[pyo3(signature = (path, fsync="batch", run_id=None, approvals=None, watch=false, prices=None, policy=None, telemetry=None))]
    #[allow(clippy::too_many_arguments)]
    fn resume(
        py: Python<'_>,
        path: PathBuf,
        fsync: &str,
        run_id: Option<String>,
        approvals: Option<&Bound<'_, PyDict>>,
        watch: bool,
        prices: Option<PyRef<'_, NativePrices>>,
        policy: Option<&Bound<'_, PyAny>>,
        telemetry: Option<PyRef<'_, crate::telemetry::Telemetry>>,
    ) -> PyResult<NativeRun> {
        let observer = telemetry.map(|t| t.inner.observer());
        let prices = prices.map(|p| p.inner.clone());
        let policy = policy_option(py, policy)?;
        let mut decided = BTreeMap::new();
        if let Some(approvals) = approvals {
            for (node, decision) in approvals.iter() {
                let node: String = node.extract().map_err(|_| {
                    to_py(
                        py,
                        &Error::new(
                            ErrorKind::InvalidArgument,
                            format!(
                                "approvals map node ids (str) to decisions, not {}",
                                node.repr().map(|r| r.to_string()).unwrap_or_default()
                            ),
                        ),
                    )
                })?;
                let value = pyjson::from_py(&decision).map_err(|why| {
                    to_py(
                        py,
                        &Error::invalid_output(&node, &format!("approval is not JSON data: {why}")),
                    )
                })?;
                decided.insert(node, value);
            }
        }
        let run = detached(py, || {
            let options = ResumeOptions {
                fsync: fsync_mode(fsync)?,
                run_id,
                approvals: decided,
                watch,
                observer: observer.clone(),
                prices,
                policy,
            };
            Run::resume_with(&path, options)
        })?;
        Ok(NativeRun::new(run))
    }

    /// Reopen a failed or cancelled run and reschedule the nodes that failed it (and the
    /// activations a cancel closed) with a fresh allowance of attempts: `runReopened`, then
    /// the new activations. `INVALID_ARGUMENT`, nothing written, for a run that is running or
    /// waiting (resume it), completed, or failed on a limit (fork it). `run_id`, `watch`
    /// `prices` and `policy` as for `resume`.
    #[staticmethod]
    #[pyo3(signature = (path, fsync="batch", run_id=None, watch=false, prices=None, policy=None, telemetry=None))]
    #[allow(clippy::too_many_arguments)]
    fn retry(
        py: Python<'_>,
        path: PathBuf,
        fsync: &str,
        run_id: Option<String>,
        watch: bool,
        prices: Option<PyRef<'_, NativePrices>>,
        policy: Option<&Bound<'_, PyAny>>,
        telemetry: Option<PyRef<'_, crate::telemetry::Telemetry>>,
    ) -> PyResult<NativeRun> {
        let observer = telemetry.map(|t| t.inner.observer());
        let prices = prices.map(|p| p.inner.clone());
        let policy = policy_option(py, policy)?;
        let run = detached(py, || {
            let options = ResumeOptions {
                fsync: fsync_mode(fsync)?,
                run_id,
                approvals: BTreeMap::new(),
                watch,
                observer: observer.clone(),
                prices,
                policy,
            };
            Run::retry(&path, options)
        })?;
        Ok(NativeRun::new(run))
    }

    /// Re-execute the run recorded in `path`: a run in memory with the recorded workflow,
    /// input, seed and run id, whose every call is answered from the log (nothing is sent)
    /// and whose completions are compared with the recorded ones. Drive it as usual, then
    /// `reexec_report`. Errors: `LOG_CORRUPT`, `IO`, `INVALID_ARGUMENT` (a fork's log, a
    /// retried run: not supported yet).
    /// `policy`: the one the run was recorded under (`INVALID_ARGUMENT` otherwise).
    #[staticmethod]
    #[pyo3(signature = (path, policy=None))]
    fn reexecute(
        py: Python<'_>,
        path: PathBuf,
        policy: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<NativeRun> {
        let policy = policy_option(py, policy)?;
        let run = detached(py, || Run::reexecute_with(&path, policy))?;
        Ok(NativeRun::new(run))
    }

    /// After driving a re-executed run: `(run_id, activations, calls, events)` — what was
    /// checked — or `NondeterminismError` naming seq, node and field at the first difference
    /// from the log. `INVALID_ARGUMENT` for a run that is not a re-execution.
    fn reexec_report(&self, py: Python<'_>) -> PyResult<(String, u64, u64, u64)> {
        self.with(py, |r| {
            let rep = r.reexec_report()?;
            Ok((rep.run_id, rep.activations, rep.calls, rep.events))
        })
    }

    /// Fork the run in `path` at step end `seq`; `overrides` maps node id → output.
    /// `workflow`: continue under it instead of the recorded one (the prefix must replay
    /// equal under it). `watch`: keep committed events for `take_committed`, the copied
    /// prefix included. `prices` and `policy`: the parent's, as for `resume`.
    #[staticmethod]
    #[pyo3(signature = (path, seq, overrides=None, run_id=None, log_dir=None, fsync="batch", workflow=None, watch=false, prices=None, policy=None, telemetry=None))]
    #[allow(clippy::too_many_arguments)]
    fn fork(
        py: Python<'_>,
        path: PathBuf,
        seq: &Bound<'_, PyAny>,
        overrides: Option<&Bound<'_, PyAny>>,
        run_id: Option<String>,
        log_dir: Option<PathBuf>,
        fsync: &str,
        workflow: Option<PyRef<'_, NativeWorkflow>>,
        watch: bool,
        prices: Option<PyRef<'_, NativePrices>>,
        policy: Option<&Bound<'_, PyAny>>,
        telemetry: Option<PyRef<'_, crate::telemetry::Telemetry>>,
    ) -> PyResult<NativeRun> {
        let observer = telemetry.map(|t| t.inner.observer());
        let seq = crate::log::seq_arg(seq)?;
        let policy = policy_option(py, policy)?;
        let prices = prices.map(|p| p.inner.clone());
        let overrides: BTreeMap<String, Value> = match json_arg(py, "overrides", overrides)? {
            Value::Null => BTreeMap::new(),
            Value::Object(map) => map.into_iter().collect(),
            other => {
                return Err(to_py(
                    py,
                    &Error::new(
                        ErrorKind::InvalidArgument,
                        format!("overrides must map node id → output, not {other}"),
                    ),
                ))
            }
        };
        let workflow = workflow.map(|w| w.inner.clone());
        let run = detached(py, || {
            let options = ForkOptions {
                seq,
                overrides,
                run_id,
                log_dir,
                fsync: fsync_mode(fsync)?,
                workflow,
                host: Some("python".to_owned()),
                watch,
                observer: observer.clone(),
                prices,
                policy,
            };
            Run::fork_with(&path, options)
        })?;
        Ok(NativeRun::new(run))
    }

    /// Activations not yet handed out, each carrying `token` for `cancel_run` and `calls`
    /// (the mesh's providers and tools) for the calls it makes.
    #[pyo3(signature = (token=None, calls=None))]
    fn poll(
        &self,
        py: Python<'_>,
        token: Option<Py<PyAny>>,
        calls: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Py<Activation>>> {
        let acts = self.with(py, |r| r.poll())?;
        wrap_all(
            py,
            acts,
            token.as_ref(),
            calls.as_ref().map(|c| (&self.run, c)),
        )
    }

    /// Events committed since the last call, in commit order, each the dict `read_log`
    /// gives for it plus its `meta` as the log holds it; always empty unless the run was
    /// opened with `watch=True`.
    fn take_committed(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let events = self.with(py, |r| Ok(r.take_committed()))?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut strings = self.strings.lock().unwrap_or_else(|p| p.into_inner());
        events
            .iter()
            .map(|e| event_to_py(py, &mut strings, e))
            .collect()
    }

    /// Activations still waiting for a completion.
    fn outstanding(&self, py: Python<'_>) -> PyResult<Vec<Py<Activation>>> {
        let acts = self.with(py, |r| r.outstanding())?;
        wrap_all(py, acts, None, None)
    }

    /// Record a burst of results in one commit (one write; one fsync in `always` mode):
    /// `items` are `(activation id, Completion)` pairs. One entry per item: `None` when it
    /// was recorded as given, else the error — `InvalidOutputError` when the output could not
    /// be recorded and a permanent `InvalidOutput` failure was recorded instead (the cause to
    /// report), `InvalidCompletionError` when nothing was recorded (unknown, late or
    /// duplicate activation). An `IO` failure raises and poisons the run.
    fn complete_all(
        &self,
        py: Python<'_>,
        items: Vec<(u64, PyRef<'_, NativeCompletion>)>,
    ) -> PyResult<Vec<Option<Py<PyAny>>>> {
        let completions = items
            .iter()
            .map(|(id, c)| c.take().map(|c| (*id, c)))
            .collect::<agentmesh_core::Result<Vec<_>>>()
            .map_err(|e| to_py(py, &e))?;
        let recorded = self.with(py, move |r| r.complete_all(completions))?;
        Ok(recorded
            .into_iter()
            .map(|r| match r {
                Recorded::AsFailure(e) | Recorded::Refused(e) => {
                    Some(to_py(py, &e).into_value(py).into_any())
                }
                _ => None,
            })
            .collect())
    }

    /// fsyncs the run's log writer made so far (file and directory; 0 in memory).
    fn fsync_count(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |r| Ok(r.fsync_count()))
    }

    /// Cancel the run; `False` if it had already finished.
    fn cancel(&self, py: Python<'_>, reason: &str) -> PyResult<bool> {
        self.with(py, |r| r.cancel(reason))
    }

    /// `running`, `waiting`, `completed`, `failed` or `cancelled`.
    fn status(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.with(py, |r| Ok(r.status()?.as_str()))
    }

    /// Status, output and error (a dict).
    fn outcome(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let outcome = self.with(py, |r| r.outcome())?;
        Ok(crate::pyser::to_py(py, &outcome)?.unbind())
    }

    fn run_id(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |r| Ok(r.run_id().to_owned()))
    }

    /// The log file, or `None` for an in-memory run.
    fn log_path(&self, py: Python<'_>) -> PyResult<Option<PathBuf>> {
        self.with(py, |r| Ok(r.log_path().map(|p| p.to_path_buf())))
    }

    /// blake3 (hex) of the canonical log.
    fn fingerprint(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |r| r.fingerprint())
    }

    /// What the run spent so far, from its events (the `UsageReport` as a dict).
    fn usage(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let report = self.with(py, |r| r.usage())?;
        Ok(crate::pyser::to_py(py, &report)?.unbind())
    }

    /// The canonical log bytes.
    fn canonical<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.with(py, |r| r.canonical())?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Release the run and its log file (the writer lock), so another mesh or process can
    /// resume it. Every later call raises `InvalidArgumentError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || {
            let mut guard = self.run.lock().unwrap_or_else(|p| p.into_inner());
            drop(guard.take());
            Ok(())
        })
    }

    /// The workflow being run.
    fn workflow(&self, py: Python<'_>) -> PyResult<NativeWorkflow> {
        let inner = self.with(py, |r| Ok(r.workflow().clone()))?;
        Ok(NativeWorkflow { inner })
    }
}

/// Workflow JSON text as UTF-8. A `str` holding a lone surrogate has no UTF-8 form: that is
/// an invalid workflow document (as the core reports bad JSON), naming where it is.
fn workflow_text<'a>(text: &'a Bound<'_, PyString>) -> PyResult<std::borrow::Cow<'a, str>> {
    if let Ok(t) = text.to_cow() {
        return Ok(t);
    }
    let py = text.py();
    // Surrogates pass through as 3-byte sequences, so the first invalid byte is the first one.
    let bytes = text.call_method1("encode", ("utf-8", "surrogatepass"))?;
    let bytes = bytes.cast::<PyBytes>()?.as_bytes();
    let at = std::str::from_utf8(bytes)
        .err()
        .map_or(bytes.len(), |e| e.valid_up_to());
    let before = String::from_utf8_lossy(&bytes[..at]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let unit = match bytes.get(at..at + 3) {
        Some([a, b, c]) => {
            (u32::from(a & 0x0f) << 12) | (u32::from(b & 0x3f) << 6) | u32::from(c & 0x3f)
        }
        _ => 0,
    };
    let error = Error::new(
        ErrorKind::InvalidWorkflow,
        format!(
            "field '(document)': not valid JSON: lone surrogate U+{unit:04X} (not Unicode text) at line {line} column {column}"
        ),
    )
    .with_detail(ErrorDetail::Workflow {
        node: None,
        field: "(document)".to_owned(),
    });
    Err(to_py(py, &error))
}

/// A JSON-data argument (`input`, `overrides`); `None` is JSON null.
fn json_arg(py: Python<'_>, what: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Value> {
    match obj {
        None => Ok(Value::Null),
        Some(obj) => pyjson::from_py(obj).map_err(|why| {
            to_py(
                py,
                &Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{what} is not JSON data: {why}"),
                ),
            )
        }),
    }
}
