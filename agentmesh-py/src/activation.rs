//! `agentmesh.Activation`: one unit of work handed to an agent, tool or person.
//!
//! A native, immutable object: building it costs a fraction of a microsecond, and `input` and
//! `deps` become Python objects only when an agent reads them (then once per activation).

use agentmesh_core::{Activation as CoreActivation, Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::errors::to_py;
use crate::pyjson;

/// One unit of work handed to an agent, tool or person (fields as in the core). Read-only.
#[pyclass(frozen, module = "agentmesh", name = "Activation")]
pub struct Activation {
    pub(crate) inner: CoreActivation,
    /// The driver's `CancelToken` (`None` for activations reported outside a drive).
    token: Option<Py<PyAny>>,
    input: PyOnceLock<Py<PyAny>>,
    deps: PyOnceLock<Py<PyAny>>,
}

impl Activation {
    pub fn new(inner: CoreActivation, token: Option<Py<PyAny>>) -> Activation {
        Activation {
            inner,
            token,
            input: PyOnceLock::new(),
            deps: PyOnceLock::new(),
        }
    }
}

#[pymethods]
impl Activation {
    /// Activation id (the seq of its scheduling event).
    #[getter]
    fn id(&self) -> u64 {
        self.inner.id
    }

    #[getter]
    fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    #[getter]
    fn node(&self) -> &str {
        &self.inner.node
    }

    /// `agent`, `tool` or `human`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }

    /// Agent or tool name (the node id for a human activation).
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// Attempt within this visit, from 1.
    #[getter]
    fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Visit of the node, from 1 (more than 1 inside loops).
    #[getter]
    fn visit(&self) -> u64 {
        self.inner.visit
    }

    /// Retry backoff the driver waits before starting the agent.
    #[getter]
    fn delay_ms(&self) -> u64 {
        self.inner.delay_ms
    }

    /// Deadline of this attempt, after the delay (enforced by the driver).
    #[getter]
    fn timeout_ms(&self) -> Option<u64> {
        self.inner.timeout_ms
    }

    /// Prompt of a human activation.
    #[getter]
    fn prompt(&self) -> Option<&str> {
        self.inner.prompt.as_deref()
    }

    /// Deterministic per-activation seed, derived from the run seed: use it for sampling.
    #[getter]
    fn seed(&self) -> u64 {
        self.inner.seed
    }

    /// Superstep number.
    #[getter]
    fn step(&self) -> u64 {
        self.inner.step
    }

    /// The run input.
    #[getter]
    fn input(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.input.get_or_try_init(py, || {
            pyjson::to_py(py, &self.inner.input).map(Bound::unbind)
        })?;
        Ok(v.clone_ref(py))
    }

    /// Outputs of the node's completed `after` dependencies, by node id.
    #[getter]
    fn deps(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.deps.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            let dict = PyDict::new(py);
            for (node, output) in &self.inner.deps {
                dict.set_item(&**node, pyjson::to_py(py, output)?)?;
            }
            Ok(dict.into_any().unbind())
        })?;
        Ok(v.clone_ref(py))
    }

    /// Cancel the run. Takes effect before this activation's own result is recorded.
    #[pyo3(signature = (reason = "cancelled"))]
    fn cancel_run(&self, py: Python<'_>, reason: &str) -> PyResult<()> {
        match &self.token {
            Some(token) => token.call_method1(py, "cancel", (reason,)).map(drop),
            None => Err(to_py(
                py,
                &Error::new(
                    ErrorKind::InvalidArgument,
                    "this activation is not being driven by a Mesh",
                ),
            )),
        }
    }

    fn __repr__(&self) -> String {
        let a = &self.inner;
        format!(
            "Activation(id={}, node={:?}, kind={:?}, name={:?}, attempt={}, visit={}, step={})",
            a.id,
            &*a.node,
            a.kind.as_str(),
            &*a.name,
            a.attempt,
            a.visit,
            a.step
        )
    }
}

/// Activations as Python objects for the driver.
pub fn wrap_all(
    py: Python<'_>,
    acts: Vec<CoreActivation>,
    token: Option<&Py<PyAny>>,
) -> PyResult<Vec<Py<Activation>>> {
    acts.into_iter()
        .map(|a| Py::new(py, Activation::new(a, token.map(|t| t.clone_ref(py)))))
        .collect()
}
