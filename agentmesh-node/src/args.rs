//! Arguments from JavaScript: ids and seqs, seeds, fsync modes, JSON data.
//!
//! **u64 values.** Ids, seqs and durations are JS numbers: integers from 0 to 2^53-1
//! (`Number.MAX_SAFE_INTEGER`), anything else is `INVALID_ARGUMENT` (never silently rounded).
//! A seed may use all 64 bits, so it is accepted as a `number` (a safe integer), a `bigint`
//! (0 to 2^64-1) or a decimal string of digits; seeds come back as `bigint` (see `objects.rs`).

use agentmesh_core::{FsyncMode, Result};
use napi::bindgen_prelude::{BigInt, Either3, Unknown};
use napi::Env;
use serde_json::Value;

use crate::errors::{invalid_argument, to_js};
use crate::json::{from_js, Refused};

/// `Number.MAX_SAFE_INTEGER`.
pub const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// A seed as JavaScript passes it.
pub type SeedArg = Either3<f64, BigInt, String>;

/// A non-negative safe integer (`what` names it in the error).
pub fn uint(what: &str, n: f64) -> Result<u64> {
    if n.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&n) {
        Ok(n as u64)
    } else {
        Err(invalid_argument(format!(
            "{what} must be an integer from 0 to 2^53-1, not {n}"
        )))
    }
}

/// A seed: 0 when absent.
pub fn seed(arg: Option<SeedArg>) -> Result<u64> {
    const WHAT: &str = "seed must be an integer from 0 to 2^64-1 (a number up to 2^53-1, a \
                        bigint or a decimal string)";
    match arg {
        None => Ok(0),
        Some(Either3::A(n)) => {
            uint("seed", n).map_err(|_| invalid_argument(format!("{WHAT}, not {n}")))
        }
        Some(Either3::B(big)) => {
            let (negative, value, lossless) = big.get_u64();
            if negative || !lossless {
                Err(invalid_argument(format!(
                    "{WHAT}; this bigint is out of range"
                )))
            } else {
                Ok(value)
            }
        }
        Some(Either3::C(text)) => {
            let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
            match text.parse::<u64>() {
                Ok(v) if digits => Ok(v),
                _ => Err(invalid_argument(format!("{WHAT}, not {text:?}"))),
            }
        }
    }
}

/// `always`, `batch` (the default) or `never`.
pub fn fsync(mode: Option<&str>) -> Result<FsyncMode> {
    match mode {
        None => Ok(FsyncMode::default()),
        Some(text) => FsyncMode::parse(text),
    }
}

/// A JSON-data argument (`input`, `overrides`); absent, `undefined` and `null` are JSON null.
/// Data that is not JSON is `INVALID_ARGUMENT` naming the place; a JS exception thrown while
/// reading it (a getter) is passed on.
pub fn json(env: &Env, what: &str, value: Option<&Unknown<'_>>) -> napi::Result<Value> {
    match value {
        None => Ok(Value::Null),
        Some(v) => from_js(env, v).map_err(|refused| match refused {
            Refused::NotJson(why) => to_js(
                env,
                &invalid_argument(format!("{what} is not JSON data: {why}")),
            ),
            Refused::Js(e) => e,
        }),
    }
}
