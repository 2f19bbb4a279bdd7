//! Policies from Python (docs/policy.md): `agentmesh.Policy` (a loaded policy file or dict),
//! `redact` (a policy's redaction of one text) and `check_policy` (what a policy would decide
//! differently in recorded logs). Loading and judging are the core's; this file only turns
//! Python arguments into them, with the GIL released for file reads.

use std::path::PathBuf;

use agentmesh_core::policy::{check_policy as core_check_policy, Policy as CorePolicy};
use agentmesh_core::{Error, ErrorDetail, ErrorKind};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::{detached, to_py};
use crate::pyjson::{self, type_name};

/// A loaded policy: its rules compiled, its hash computed. Immutable.
#[pyclass(frozen, module = "agentmesh", name = "Policy")]
pub struct Policy {
    pub inner: CorePolicy,
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

/// `POLICY_INVALID` for a dict the core cannot even read as JSON (a set, NaN...).
fn not_json(why: String) -> Error {
    Error::new(
        ErrorKind::PolicyInvalid,
        format!("the policy is not JSON data: {why}"),
    )
    .with_detail(ErrorDetail::Policy {
        rule: None,
        field: None,
        line: None,
        column: None,
    })
}

/// Load `source`: a dict or other mapping (the policy's JSON form) or a path (str or `os.PathLike`) to a
/// JSON or YAML file. A policy file is at most 1 MiB, read with the GIL released.
fn load(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<CorePolicy> {
    // Any other mapping is read as the dict of its items.
    let mapping = py.import("collections.abc")?.getattr("Mapping")?;
    let as_dict = if source.is_instance_of::<PyDict>() {
        Some(source.clone())
    } else if source.is_instance(&mapping)? {
        Some(py.import("builtins")?.getattr("dict")?.call1((source,))?)
    } else {
        None
    };
    if let Some(dict) = as_dict {
        let value = pyjson::from_py(&dict).map_err(|why| to_py(py, &not_json(why)))?;
        return detached(py, || CorePolicy::from_value(value));
    }
    let is_path =
        source.is_instance_of::<PyString>() || source.hasattr("__fspath__").unwrap_or(false);
    let path: Option<PathBuf> = if is_path { source.extract().ok() } else { None };
    let Some(path) = path else {
        return Err(to_py(
            py,
            &invalid(format!(
                "a policy is a Policy, a path to a policy file (str or os.PathLike) or a dict, not {}",
                type_name(source)
            )),
        ));
    };
    detached(py, || CorePolicy::from_path(&path))
}

/// The policy an argument names: a `Policy`, a path or a dict.
pub fn policy_of(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<CorePolicy> {
    if let Ok(p) = source.cast::<Policy>() {
        return Ok(p.get().inner.clone());
    }
    load(py, source)
}

/// An optional policy argument (`None`: no policy).
pub fn policy_option(
    py: Python<'_>,
    source: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<CorePolicy>> {
    source
        .filter(|s| !s.is_none())
        .map(|s| policy_of(py, s))
        .transpose()
}

#[pymethods]
impl Policy {
    /// Load a policy from `source`: a path (str or `os.PathLike`) to a JSON or YAML policy
    /// file (a regular file, no symlink, at most 1 MiB; read synchronously, GIL released),
    /// or a dict in the same form. `PolicyInvalidError` naming the rule, field, line and
    /// column.
    #[new]
    fn new(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<Policy> {
        Ok(Policy {
            inner: policy_of(py, source)?,
        })
    }

    /// The policy's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// blake3 (hex) of the canonical form: what a run's log header records.
    #[getter]
    fn hash(&self) -> &str {
        self.inner.hash()
    }

    /// The policy file format version.
    #[getter]
    fn version(&self) -> u32 {
        self.inner.version()
    }

    /// The content rules' ids, in order.
    #[getter]
    fn rule_ids(&self) -> Vec<String> {
        self.inner.rule_ids().map(str::to_owned).collect()
    }

    /// The policy in canonical form (a fresh dict each time).
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(pyjson::to_py(py, &self.inner.to_json())?.unbind())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Policy>()
            .is_ok_and(|o| o.get().inner.hash() == self.inner.hash())
    }

    fn __hash__(&self) -> u64 {
        // The first 8 bytes of the blake3 hash: equal policies hash alike.
        u64::from_str_radix(&self.inner.hash()[..16], 16).unwrap_or(0)
    }

    fn __repr__(&self) -> String {
        format!(
            "Policy(name={:?}, hash={:?})",
            self.inner.name(),
            &self.inner.hash()[..12]
        )
    }
}

/// `text` redacted by `policy` (a `Policy`, path or dict; `None`: the built-in detectors):
/// `{"text", "spans": [{"start", "end", "kind", "rule"}]}`, offsets in code points.
#[pyfunction]
#[pyo3(signature = (text, policy=None))]
pub fn redact(
    py: Python<'_>,
    text: &Bound<'_, PyAny>,
    policy: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let Ok(s) = text.cast::<PyString>() else {
        return Err(to_py(
            py,
            &invalid(format!("redact takes a str, not {}", type_name(text))),
        ));
    };
    let text = s.to_cow().map_err(|_| {
        to_py(
            py,
            &invalid("the text is not valid UTF-8 (lone surrogate)".to_owned()),
        )
    })?;
    let policy = policy_option(py, policy)?.unwrap_or_else(CorePolicy::builtin);
    let redaction = detached(py, || Ok(policy.redact(&text)))?;
    Ok(crate::pyser::to_py(py, &redaction)?.unbind())
}

/// What `policy` would decide differently in the logs at `logs` (paths): the report as a dict
/// (`{"policy": {"name", "hash"}, "logs": [...]}`). Reads the logs with the GIL released.
#[pyfunction]
pub fn check_policy(
    py: Python<'_>,
    policy: &Bound<'_, PyAny>,
    logs: Vec<PathBuf>,
) -> PyResult<Py<PyAny>> {
    let policy = policy_of(py, policy)?;
    let report = detached(py, || core_check_policy(&policy, &logs))?;
    Ok(pyjson::to_py(py, &report.to_json())?.unbind())
}
