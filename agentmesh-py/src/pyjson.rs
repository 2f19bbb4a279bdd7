//! Python values ↔ `serde_json::Value`, directly (no JSON text in between).
//!
//! Every value that enters the core from Python (agent outputs, usage, run input, approvals,
//! overrides) goes through [`from_py`], which accepts only JSON data and names the first
//! offending place; the core then records it with serde, so wire JSON is never produced in
//! Python. Accepted, as `json.dumps` would write them: `None`, `bool`, `int`, finite `float`,
//! `str`, `list`/`tuple` and `dict` with `str` keys (subclasses included, e.g. `IntEnum`,
//! `OrderedDict`). An `int` beyond 64 bits is recorded as the nearest double, as the core
//! reads such a number in JSON text. More than [`MAX_VALUE_DEPTH`] nested lists/dicts are
//! refused, as the core refuses them (a log could not read them back).

use agentmesh_core::MAX_VALUE_DEPTH;
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Where in the value a problem is, built while the error unwinds (innermost first).
enum Step {
    Index(usize),
    /// `repr()` of the key, taken only on the error path.
    Key(String),
}

struct Bad {
    steps: Vec<Step>,
    /// Message with `{at}` where the path goes.
    what: String,
}

impl Bad {
    fn new(what: String) -> Bad {
        Bad {
            steps: Vec::new(),
            what,
        }
    }

    fn within(mut self, step: Step) -> Bad {
        self.steps.push(step);
        self
    }

    fn describe(self) -> String {
        let mut path = String::from("$");
        for step in self.steps.iter().rev() {
            match step {
                Step::Index(i) => path.push_str(&format!("[{i}]")),
                Step::Key(k) => path.push_str(&format!("[{k}]")),
            }
        }
        self.what.replace("{at}", &path)
    }
}

/// The value as JSON data, or why it is not (`"set at $['a'][2] is not JSON data"`).
pub fn from_py(obj: &Bound<'_, PyAny>) -> Result<Value, String> {
    walk(obj, 0).map_err(Bad::describe)
}

/// The Python type name of `obj`, for error messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned())
}

fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr()
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

fn string(s: &Bound<'_, PyString>) -> Result<String, Bad> {
    s.to_cow()
        .map(|c| c.into_owned())
        .map_err(|_| Bad::new("string at {at} is not valid UTF-8 (lone surrogate)".to_owned()))
}

/// `depth`: how many lists/dicts enclose `obj`.
fn walk(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, Bad> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        // Beyond 64 bits: the nearest double (Python's float() rounds correctly).
        return match obj.extract::<f64>() {
            Ok(f) => Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| Bad::new("int at {at} is too large for a JSON number".into())),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(Bad::new(
                "int at {at} is too large for a JSON number".to_owned(),
            )),
            Err(_) => Err(Bad::new(format!(
                "{} at {{at}} is not JSON data",
                type_name(obj)
            ))),
        };
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| Bad::new(format!("{} at {{at}} is not a JSON number", repr(obj))));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return string(s).map(Value::String);
    }
    if let Ok(list) = obj.cast::<PyList>() {
        too_deep(depth)?;
        let mut out = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            out.push(walk(&item, depth + 1).map_err(|b| b.within(Step::Index(i)))?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        too_deep(depth)?;
        let mut out = Vec::with_capacity(tuple.len());
        for (i, item) in tuple.iter().enumerate() {
            out.push(walk(&item, depth + 1).map_err(|b| b.within(Step::Index(i)))?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        too_deep(depth)?;
        let mut out = Map::new();
        for (k, item) in dict.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(Bad::new(format!(
                    "key {} ({}) at {{at}} is not a string",
                    repr(&k),
                    type_name(&k)
                )));
            };
            let key_text = string(key)?;
            let value = walk(&item, depth + 1).map_err(|b| b.within(Step::Key(repr(&k))))?;
            out.insert(key_text, value);
        }
        return Ok(Value::Object(out));
    }
    Err(Bad::new(format!(
        "{} at {{at}} is not JSON data{}",
        type_name(obj),
        model_hint(obj)
    )))
}

/// A pydantic model (an LLM SDK's response or message object) is the usual non-JSON value:
/// say how to convert it, and that its ids and timestamps would make every run's log differ.
/// Looked up on the type, so no user `__getattr__` runs.
fn model_hint(obj: &Bound<'_, PyAny>) -> &'static str {
    if obj.get_type().hasattr("model_dump").unwrap_or(false) {
        "; convert it first, e.g. pick fields, or .model_dump(mode='json') (drop id and created)"
    } else {
        ""
    }
}

/// A container at `depth` would be the `depth + 1`-th nested one.
fn too_deep(depth: usize) -> Result<(), Bad> {
    if depth >= MAX_VALUE_DEPTH {
        return Err(Bad::new(format!(
            "nesting deeper than {MAX_VALUE_DEPTH} lists/dicts at {{at}}"
        )));
    }
    Ok(())
}

/// A JSON value as Python data (`dict`, `list`, `str`, `int`, `float`, `bool`, `None`).
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                // Not an integer: serde_json numbers are finite f64 otherwise.
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, to_py(py, v)?)?;
            }
            dict.into_any()
        }
    })
}

/// JSON text of a Python value (checked as [`from_py`] does): `(text, None)` or
/// `(None, why)`. The one converter the pure-Python layer uses for workflow dicts and the
/// like, so there is a single definition of "JSON data".
#[pyfunction]
pub fn to_json_text(obj: &Bound<'_, PyAny>) -> (Option<String>, Option<String>) {
    match from_py(obj) {
        Ok(v) => (Some(v.to_string()), None),
        Err(why) => (None, Some(why)),
    }
}
