//! `NativeWorkflow` and `NativeRun`: the core's `Workflow` and `Run` for the Python driver.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use agentmesh_core::{
    Completion, Error, ErrorKind, Failure, FailureKind, FsyncMode, Run, RunOptions, Usage, Workflow,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde_json::Value;

use crate::activation::{wrap_all, Activation};
use crate::errors::{detached, to_json, to_py};
use crate::pyjson;

/// A validated workflow.
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativeWorkflow {
    pub inner: Workflow,
}

#[pymethods]
impl NativeWorkflow {
    /// Parse and validate workflow JSON text.
    #[staticmethod]
    fn from_json(py: Python<'_>, text: &str) -> PyResult<NativeWorkflow> {
        let inner = detached(py, || Workflow::from_json(text))?;
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
}

/// One run. The Python driver is its single writer; the mutex only makes the class `Sync`.
/// `None` once closed: a file log's writer lock is released so another mesh can resume it.
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativeRun {
    run: Mutex<Option<Run>>,
}

fn fsync_mode(text: &str) -> agentmesh_core::Result<FsyncMode> {
    FsyncMode::parse(text)
}

impl NativeRun {
    fn new(run: Run) -> NativeRun {
        NativeRun {
            run: Mutex::new(Some(run)),
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
    /// Start a run with `input` (JSON data).
    #[staticmethod]
    #[pyo3(signature = (workflow, input=None, seed=0, run_id=None, log_dir=None, fsync="batch", tenant=None))]
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
    ) -> PyResult<NativeRun> {
        let wf = workflow.inner.clone();
        let input = json_arg(py, "input", input)?;
        let run = detached(py, || {
            let options = RunOptions {
                input,
                seed,
                run_id,
                log_dir,
                fsync: fsync_mode(fsync)?,
                tenant,
            };
            Run::start(&wf, options)
        })?;
        Ok(NativeRun::new(run))
    }

    /// Reopen a run from its log file.
    #[staticmethod]
    #[pyo3(signature = (path, fsync="batch"))]
    fn resume(py: Python<'_>, path: PathBuf, fsync: &str) -> PyResult<NativeRun> {
        let run = detached(py, || Run::resume(&path, fsync_mode(fsync)?))?;
        Ok(NativeRun::new(run))
    }

    /// Fork the run in `path` at step end `seq`; `overrides` maps node id → output.
    #[staticmethod]
    #[pyo3(signature = (path, seq, overrides=None, run_id=None, log_dir=None, fsync="batch"))]
    fn fork(
        py: Python<'_>,
        path: PathBuf,
        seq: u64,
        overrides: Option<&Bound<'_, PyAny>>,
        run_id: Option<String>,
        log_dir: Option<PathBuf>,
        fsync: &str,
    ) -> PyResult<NativeRun> {
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
        let run = detached(py, || {
            Run::fork(&path, seq, overrides, run_id, log_dir, fsync_mode(fsync)?)
        })?;
        Ok(NativeRun::new(run))
    }

    /// Activations not yet handed out, each carrying `token` for `cancel_run`.
    #[pyo3(signature = (token=None))]
    fn poll(&self, py: Python<'_>, token: Option<Py<PyAny>>) -> PyResult<Vec<Py<Activation>>> {
        let acts = self.with(py, |r| r.poll())?;
        wrap_all(py, acts, token.as_ref())
    }

    /// Activations still waiting for a completion.
    fn outstanding(&self, py: Python<'_>) -> PyResult<Vec<Py<Activation>>> {
        let acts = self.with(py, |r| r.outstanding())?;
        wrap_all(py, acts, None)
    }

    /// Complete activation `id` with `output` (JSON data) and optional `usage`
    /// (`{"inputTokens": n, "outputTokens": n}`). Data that is not JSON raises
    /// `InvalidOutputError` naming the node and changes nothing.
    #[pyo3(signature = (id, output, usage=None, duration_us=None))]
    fn complete_ok(
        &self,
        py: Python<'_>,
        id: u64,
        output: &Bound<'_, PyAny>,
        usage: Option<&Bound<'_, PyAny>>,
        duration_us: Option<u64>,
    ) -> PyResult<()> {
        let output =
            pyjson::from_py(output).map_err(|why| format!("output is not JSON data: {why}"));
        let usage = usage
            .map(|u| pyjson::from_py(u).map_err(|why| format!("usage is not JSON data: {why}")));
        self.with(py, |r| {
            let output = output.map_err(|m| r.invalid_output(id, &m))?;
            let usage = usage.transpose().map_err(|m| r.invalid_output(id, &m))?;
            let completion = completion_ok(r, id, output, usage, duration_us)?;
            r.complete(id, completion)
        })
    }

    /// `complete_ok` with the output as JSON text (`RawJson`): recorded as the core parses it.
    #[pyo3(signature = (id, output_json, usage=None, duration_us=None))]
    fn complete_ok_json(
        &self,
        py: Python<'_>,
        id: u64,
        output_json: &str,
        usage: Option<&Bound<'_, PyAny>>,
        duration_us: Option<u64>,
    ) -> PyResult<()> {
        let usage = usage
            .map(|u| pyjson::from_py(u).map_err(|why| format!("usage is not JSON data: {why}")));
        self.with(py, |r| {
            let output: Value = serde_json::from_str(output_json)
                .map_err(|e| r.invalid_output(id, &format!("output is not valid JSON: {e}")))?;
            let usage = usage.transpose().map_err(|m| r.invalid_output(id, &m))?;
            let completion = completion_ok(r, id, output, usage, duration_us)?;
            r.complete(id, completion)
        })
    }

    /// Complete activation `id` with a failure; `kind` is `error` or `timeout`.
    #[pyo3(signature = (id, kind, error_type, message, retryable=true, duration_us=None))]
    #[allow(clippy::too_many_arguments)]
    fn complete_err(
        &self,
        py: Python<'_>,
        id: u64,
        kind: &str,
        error_type: String,
        message: String,
        retryable: bool,
        duration_us: Option<u64>,
    ) -> PyResult<()> {
        self.with(py, |r| {
            let kind = match kind {
                "error" => FailureKind::Error,
                "timeout" => FailureKind::Timeout,
                other => {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!("failure kind must be error or timeout, not '{other}'"),
                    ))
                }
            };
            let mut completion = Completion::err(Failure {
                kind,
                error_type,
                message,
                retryable,
            });
            if let Some(us) = duration_us {
                completion = completion.with_duration_us(us);
            }
            r.complete(id, completion)
        })
    }

    /// Cancel the run; `False` if it had already finished.
    fn cancel(&self, py: Python<'_>, reason: &str) -> PyResult<bool> {
        self.with(py, |r| r.cancel(reason))
    }

    /// `running`, `waiting`, `completed`, `failed` or `cancelled`.
    fn status(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.with(py, |r| Ok(r.status()?.as_str()))
    }

    /// Status, output and error, as JSON text.
    fn outcome(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |r| to_json(&r.outcome()?))
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

fn completion_ok(
    run: &Run,
    id: u64,
    output: Value,
    usage: Option<Value>,
    duration_us: Option<u64>,
) -> agentmesh_core::Result<Completion> {
    let mut completion = Completion::ok(output);
    if let Some(usage) = usage {
        let usage: Usage = serde_json::from_value(usage).map_err(|e| {
            run.invalid_output(
                id,
                &format!("usage must be {{\"inputTokens\": int, \"outputTokens\": int}}: {e}"),
            )
        })?;
        completion = completion.with_usage(usage);
    }
    if let Some(us) = duration_us {
        completion = completion.with_duration_us(us);
    }
    Ok(completion)
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
