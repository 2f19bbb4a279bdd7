//! `NativePriceTable`: a user price table (docs/budgets.md), checked once when a mesh is built
//! and handed to every run it starts, resumes, retries and forks (`RunOptions.prices`,
//! `ResumeOptions.prices`, `ForkOptions.prices`), and the run budget option's parser.

use agentmesh_core::{Limits, PriceTable};
use napi::bindgen_prelude::Unknown;
use napi::Env;
use napi_derive::napi;

use crate::args;
use crate::errors::{guard, invalid_argument, OrThrow};

/// A user price table, looked at before the bundled one.
#[napi]
pub struct NativePriceTable {
    pub(crate) inner: PriceTable,
}

#[napi]
impl NativePriceTable {
    /// The table `value` (JSON data: `{version: 1, models: [{provider, model, match,
    /// prices}]}`). Errors: `INVALID_ARGUMENT` naming the field (`price table: at
    /// models[0].prices.input: …`).
    #[napi(factory, catch_unwind)]
    pub fn from_value(
        env: &Env,
        #[napi(ts_arg_type = "unknown")] value: Unknown<'_>,
    ) -> napi::Result<NativePriceTable> {
        let value = args::json(env, "prices", Some(&value))?;
        NativePriceTable::from_json(env, value.to_string())
    }

    /// The table in JSON text (exact numbers). Errors: as `fromValue`.
    #[napi(factory, catch_unwind)]
    pub fn from_json(env: &Env, text: String) -> napi::Result<NativePriceTable> {
        let inner = guard(|| PriceTable::from_json(&text)).or_throw(env)?;
        Ok(NativePriceTable { inner })
    }

    /// blake3 (hex) of the table (a run records the hash of the bundled table merged with it).
    #[napi(getter)]
    pub fn hash(&self) -> String {
        self.inner.hash().to_owned()
    }
}

/// A run's `budget` option from its JSON text (the JS side writes it: exact integers, floats
/// for numbers past 2^53, as the core reads a float). Errors: `INVALID_ARGUMENT` naming the
/// field (`run option 'budget.calls': …`).
pub(crate) fn budget(text: Option<String>) -> agentmesh_core::Result<Option<Limits>> {
    let Some(text) = text else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| invalid_argument(format!("run option 'budget' is not valid JSON: {e}")))?;
    Limits::from_option(&value).map(Some)
}

/// The table a run takes: the mesh's, cloned (the core merges it with the bundled one).
pub(crate) fn table(prices: Option<&NativePriceTable>) -> Option<PriceTable> {
    prices.map(|p| p.inner.clone())
}

/// Check a run's `budget` option in JSON text without starting anything (the JS side checks
/// the limits before a value only JavaScript can hold, to report the first bad field in the
/// core's order). Errors: as `NativeRun.start` for its budget.
#[napi(catch_unwind)]
pub fn check_budget(env: &Env, text: String) -> napi::Result<()> {
    guard(|| budget(Some(text)).map(|_| ())).or_throw(env)
}
