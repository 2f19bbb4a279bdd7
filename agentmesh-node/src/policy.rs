//! `NativePolicy`: a policy (docs/policy.md), loaded once (all or nothing) and handed to
//! every run a mesh starts, resumes, retries, forks and re-executes; `redact` and
//! `checkPolicy` over it. Results that are reports travel as JSON text (`JSON.parse` on the
//! JS side), so the core's camelCase serde form is the one the caller sees.

use std::path::PathBuf;

use agentmesh_core::Policy;
use napi::bindgen_prelude::{AsyncTask, Unknown};
use napi::Env;
use napi_derive::napi;

use crate::args;
use crate::errors::{guard, invalid_argument, OrThrow};
use crate::task::{spawn, CoreTask};

/// A loaded policy.
#[napi]
pub struct NativePolicy {
    pub(crate) inner: Policy,
}

#[napi]
impl NativePolicy {
    /// The policy in file `path` (JSON or YAML, a regular file of at most 1 MiB, read
    /// synchronously). Errors: `POLICY_INVALID` naming the file, the rule, the field, the line
    /// and the column.
    #[napi(factory, catch_unwind)]
    pub fn from_path(env: &Env, path: String) -> napi::Result<NativePolicy> {
        let inner = guard(|| Policy::from_path(&path)).or_throw(env)?;
        Ok(NativePolicy { inner })
    }

    /// The policy `value` (JSON data). Errors: `POLICY_INVALID` naming the rule and field.
    #[napi(factory, catch_unwind)]
    pub fn from_value(
        env: &Env,
        #[napi(ts_arg_type = "unknown")] value: Unknown<'_>,
    ) -> napi::Result<NativePolicy> {
        let value = args::json(env, "policy", Some(&value))?;
        let inner = guard(|| Policy::from_value(value)).or_throw(env)?;
        Ok(NativePolicy { inner })
    }

    /// The policy's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// blake3 (hex) of the policy's canonical form (what a run's log header records).
    #[napi(getter)]
    pub fn hash(&self) -> String {
        self.inner.hash().to_owned()
    }

    /// The policy file format version.
    #[napi(getter)]
    pub fn version(&self) -> u32 {
        self.inner.version()
    }

    /// The rule ids, in order.
    #[napi(getter)]
    pub fn rule_ids(&self) -> Vec<String> {
        self.inner.rule_ids().map(str::to_owned).collect()
    }

    /// The policy in canonical form, as JSON text.
    #[napi]
    pub fn to_json_text(&self) -> String {
        self.inner.to_json().to_string()
    }
}

/// `text` with every match of `policy`'s redact and block rules replaced (every built-in
/// detector without a policy), as JSON text `{text, spans: [{start, end, kind, rule}]}`
/// (offsets in Unicode code points).
#[napi(catch_unwind)]
pub fn redact_json(text: String, policy: Option<&NativePolicy>) -> String {
    let r = match policy {
        Some(p) => p.inner.redact(&text),
        None => Policy::builtin().redact(&text),
    };
    serde_json::to_string(&r).expect("a redaction serializes")
}

fn check(policy: &Policy, logs: &[PathBuf]) -> agentmesh_core::Result<String> {
    Ok(agentmesh_core::check_policy(policy, logs)?
        .to_json()
        .to_string())
}

fn paths(logs: Vec<String>) -> agentmesh_core::Result<Vec<PathBuf>> {
    if logs.is_empty() {
        return Err(invalid_argument("checkPolicy needs at least one log"));
    }
    Ok(logs.into_iter().map(PathBuf::from).collect())
}

/// What `policy` would decide differently on the runs recorded in `logs`, as the JSON text of
/// the report (`agentmesh policy check --json`). Errors: `IO`, `LOG_CORRUPT`,
/// `INVALID_ARGUMENT` (no log).
#[napi(catch_unwind)]
pub fn check_policy_json(
    env: &Env,
    policy: &NativePolicy,
    logs: Vec<String>,
) -> napi::Result<String> {
    guard(|| check(&policy.inner, &paths(logs)?)).or_throw(env)
}

/// `checkPolicyJson` on the thread pool.
#[napi(ts_return_type = "Promise<string>")]
pub fn check_policy_json_async(
    policy: &NativePolicy,
    logs: Vec<String>,
) -> AsyncTask<CoreTask<String>> {
    let policy = policy.inner.clone();
    spawn(move || check(&policy, &paths(logs)?))
}

/// The policy a run takes: the mesh's, shared.
pub(crate) fn of(policy: Option<&NativePolicy>) -> Option<Policy> {
    policy.map(|p| p.inner.clone())
}
