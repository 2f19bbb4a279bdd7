//! Budgets from Python (docs/budgets.md): a mesh's price table, a run's `budget` option and
//! the `ask` a host-made call reserves. Each is checked before anything is recorded, with an
//! `INVALID_ARGUMENT` naming the field; what JSON cannot hold (NaN, infinities, integers past
//! 64 bits) is worded here, the rest by the core.

use agentmesh_core::{CallAsk, Dimension, Error, ErrorKind, Limits, PriceTable};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use serde_json::{Map, Value};

use crate::errors::{detached, to_py};
use crate::pyjson::{self, type_name};

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

/// A user price table, checked once when the mesh is built and given to every run it opens.
#[pyclass(frozen, module = "agentmesh._agentmesh")]
pub struct NativePrices {
    pub inner: PriceTable,
}

#[pymethods]
impl NativePrices {
    /// Check `table` (a dict in the table format, `{"version": 1, "models": [...]}`):
    /// `INVALID_ARGUMENT` naming the field, as `PriceTable::from_json` words it.
    #[staticmethod]
    fn from_table(py: Python<'_>, table: &Bound<'_, PyAny>) -> PyResult<NativePrices> {
        let value = pyjson::from_py(table)
            .map_err(|why| to_py(py, &invalid(format!("price table: {why}"))))?;
        let text = value.to_string();
        let inner = detached(py, || PriceTable::from_json(&text))?;
        Ok(NativePrices { inner })
    }

    /// How many models the table prices.
    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// A run's `budget` option (what replaces the workflow's `budget`): a dict of limits, read
/// by `Limits::from_option`.
pub fn budget_option(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Limits> {
    let value = budget_value(obj).map_err(|e| to_py(py, &e))?;
    Limits::from_option(&value).map_err(|e| to_py(py, &e))
}

fn option_error(field: &str, why: impl Into<String>) -> Error {
    invalid(format!("run option '{field}': {}", why.into()))
}

fn dimensions() -> String {
    Dimension::ALL.map(Dimension::as_str).join(", ")
}

/// The option as JSON for the core. A limit JSON has no number for (NaN, an infinity, an
/// integer beyond 64 bits) is refused here, naming its field as the core would.
fn budget_value(obj: &Bound<'_, PyAny>) -> Result<Value, Error> {
    let Ok(dict) = obj.cast::<PyDict>() else {
        return pyjson::from_py(obj).map_err(|_| {
            option_error(
                "budget",
                format!(
                    "a budget is an object of limits ({}), not {}",
                    dimensions(),
                    type_name(obj)
                ),
            )
        });
    };
    let mut map = Map::new();
    for (k, v) in dict.iter() {
        let key = match k.cast::<PyString>().map(|s| s.to_cow()) {
            Ok(Ok(key)) => key.into_owned(),
            _ => {
                return Err(option_error(
                    "budget",
                    format!(
                        "a budget's keys are dimension names ({}), not {}",
                        dimensions(),
                        k.repr().map(|r| r.to_string()).unwrap_or_default()
                    ),
                ))
            }
        };
        let field = format!("budget.{key}");
        if let Some(why) = no_json_number(&v) {
            return Err(option_error(&field, why));
        }
        let value = pyjson::from_py(&v).map_err(|_| {
            option_error(
                &field,
                format!(
                    "a limit is a whole number or \"unlimited\", not {}",
                    type_name(&v)
                ),
            )
        })?;
        map.insert(key, value);
    }
    Ok(Value::Object(map))
}

/// Why `v` is a number no limit can be that JSON cannot carry to the core, if it is one.
fn no_json_number(v: &Bound<'_, PyAny>) -> Option<String> {
    if let Ok(f) = v.cast::<PyFloat>() {
        let x = f.value();
        return match x {
            _ if x.is_nan() => Some("a limit is a whole number, not NaN".to_owned()),
            _ if x == f64::NEG_INFINITY => Some("a limit is not negative, not -inf".to_owned()),
            _ if x == f64::INFINITY => Some(format!(
                "a limit is a whole number of at most {}, not inf (leave the dimension out, or write \"unlimited\")",
                u64::MAX
            )),
            _ => None,
        };
    }
    if v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>() {
        if v.extract::<u64>().is_ok() || v.extract::<i64>().is_ok() {
            return None;
        }
        let text = v.repr().map(|r| r.to_string()).unwrap_or_default();
        let negative = v.lt(0).unwrap_or(false);
        return Some(if negative {
            format!("a limit is not negative, not {text}")
        } else {
            format!("a limit is at most {}, not {text}", u64::MAX)
        });
    }
    None
}

const ASK_FIELDS: [&str; 5] = ["provider", "model", "inputTokens", "maxTokens", "minTokens"];

/// The `ask` of a host-made call (`act.call_start(..., ask=...)`): `{"provider", "model",
/// "inputTokens", "maxTokens"?, "minTokens"?}`, token counts non-negative integers.
/// `None` is no ask.
pub fn ask_of(
    kind: &str,
    name: &str,
    obj: Option<&Bound<'_, PyAny>>,
) -> Result<Option<CallAsk>, Error> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let bad =
        |field: &str, why: String| invalid(format!("{kind} call '{name}': field '{field}': {why}"));
    let Ok(dict) = obj.cast::<PyDict>() else {
        return Err(bad(
            "ask",
            format!(
                "an ask is a dict of provider, model, inputTokens, maxTokens?, minTokens?, not {}",
                type_name(obj)
            ),
        ));
    };
    for k in dict.keys() {
        let known = k
            .extract::<String>()
            .ok()
            .filter(|k| ASK_FIELDS.contains(&k.as_str()));
        if known.is_none() {
            let key = k
                .extract::<String>()
                .unwrap_or_else(|_| k.repr().map(|r| r.to_string()).unwrap_or_default());
            return Err(bad(
                &format!("ask.{key}"),
                format!("unknown field (fields: {})", ASK_FIELDS.join(", ")),
            ));
        }
    }
    let get = |k: &str| dict.get_item(k).ok().flatten().filter(|v| !v.is_none());
    let text = |k: &str| -> Result<String, Error> {
        let field = format!("ask.{k}");
        match get(k) {
            None => Err(bad(&field, "missing (a str)".to_owned())),
            Some(v) => v
                .cast::<PyString>()
                .ok()
                .and_then(|s| s.to_cow().ok().map(|c| c.into_owned()))
                .ok_or_else(|| bad(&field, format!("a str, not {}", type_name(&v)))),
        }
    };
    let tokens = |k: &str| -> Result<Option<u64>, Error> {
        let Some(v) = get(k) else { return Ok(None) };
        let is_int = v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>();
        match v.extract::<u64>() {
            Ok(n) if is_int => Ok(Some(n)),
            _ => Err(bad(
                &format!("ask.{k}"),
                format!(
                    "a token count is a non-negative integer, not {}",
                    v.repr().map(|r| r.to_string()).unwrap_or_default()
                ),
            )),
        }
    };
    Ok(Some(CallAsk {
        provider: text("provider")?,
        model: text("model")?,
        input_tokens: tokens("inputTokens")?.ok_or_else(|| {
            bad(
                "ask.inputTokens",
                "missing (a non-negative integer)".to_owned(),
            )
        })?,
        max_tokens: tokens("maxTokens")?,
        min_tokens: tokens("minTokens")?,
    }))
}
