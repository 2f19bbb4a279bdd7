//! `agentmesh.Item`: the item of a map node one activation runs (`Activation.item`).
//!
//! Native and immutable like the activation it belongs to: `value` becomes a Python object
//! only when an agent reads it (then once).

use agentmesh_core::Item as CoreItem;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::pyjson;

/// One item of a map node's array: its `index` (from 0), its `key` (the text at the node's
/// `itemKey`; `None` without one) and its `value`. Read-only.
#[pyclass(frozen, module = "agentmesh", name = "Item")]
pub struct Item {
    inner: CoreItem,
    value: PyOnceLock<Py<PyAny>>,
}

impl Item {
    pub fn new(inner: CoreItem) -> Item {
        Item {
            inner,
            value: PyOnceLock::new(),
        }
    }
}

#[pymethods]
impl Item {
    /// Position in the map's array, from 0.
    #[getter]
    fn index(&self) -> u64 {
        self.inner.index
    }

    /// The value at the map's `itemKey`, as text; `None` when the map has no `itemKey`.
    #[getter]
    fn key(&self) -> Option<&str> {
        self.inner.key.as_deref()
    }

    /// The item itself.
    #[getter]
    fn value(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.value.get_or_try_init(py, || {
            pyjson::to_py(py, &self.inner.value).map(Bound::unbind)
        })?;
        Ok(v.clone_ref(py))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Item>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        let key = match &self.inner.key {
            Some(k) => format!("{k:?}"),
            None => "None".to_owned(),
        };
        // The value as its JSON text: what the log records.
        format!(
            "Item(index={}, key={key}, value={})",
            self.inner.index, self.inner.value
        )
    }
}
