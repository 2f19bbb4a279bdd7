//! Free functions over log files: verify, canonical form, read, fingerprint, replay, time
//! travel. The whole-log reads also come as `…Async` functions returning Promises that run on
//! libuv's thread pool (see `task.rs`); both forms share one body and throw/reject the same
//! errors.

use agentmesh_core::Workflow;
use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi::Env;
use napi_derive::napi;

use crate::args;
use crate::errors::{guard, OrThrow};
use crate::objects::{LogContents, LogEvent, LogHeader, ReplayReport, RunState, VerifyReport};
use crate::run::NativeWorkflow;
use crate::task::{spawn, CoreTask};

type Result<T> = agentmesh_core::Result<T>;

fn verify(path: &str) -> Result<VerifyReport> {
    Ok(agentmesh_core::verify_log(path)?.into())
}

fn canonical(path: &str) -> Result<Buffer> {
    let mut out = Vec::new();
    agentmesh_core::canonical_log(path, &mut out)?;
    Ok(out.into())
}

fn read(path: &str) -> Result<LogContents> {
    let (header, events) = agentmesh_core::read_log(path)?;
    Ok(LogContents {
        header: header.into(),
        events: events
            .into_iter()
            .map(LogEvent::try_from)
            .collect::<Result<_>>()?,
    })
}

fn replay_log(path: &str, workflow: Option<&Workflow>) -> Result<ReplayReport> {
    Ok(agentmesh_core::replay(path, workflow)?.into())
}

fn state(path: &str, seq: u64) -> Result<RunState> {
    Ok(agentmesh_core::state_at(path, seq)?.into())
}

/// Verify a log: hash chain, header, event structure; a torn tail is cut off after being
/// copied to `<log>.broken`. Errors: `LOG_CORRUPT` (`details.offset`), `IO` (also when another
/// process is writing the log).
#[napi(catch_unwind)]
pub fn verify_log(env: &Env, path: String) -> napi::Result<VerifyReport> {
    guard(|| verify(&path)).or_throw(env)
}

/// `verifyLog` on the thread pool.
#[napi(ts_return_type = "Promise<VerifyReport>")]
pub fn verify_log_async(path: String) -> AsyncTask<CoreTask<VerifyReport>> {
    spawn(move || verify(&path))
}

/// The canonical log: header, then events sorted by seq, without meta/prev/hash.
/// Errors: `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn canonical_log(env: &Env, path: String) -> napi::Result<Buffer> {
    guard(|| canonical(&path)).or_throw(env)
}

/// `canonicalLog` on the thread pool.
#[napi(ts_return_type = "Promise<Buffer>")]
pub fn canonical_log_async(path: String) -> AsyncTask<CoreTask<Buffer>> {
    spawn(move || canonical(&path))
}

/// The log header (reads only the first line). Errors: `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn read_header(env: &Env, path: String) -> napi::Result<LogHeader> {
    guard(|| Ok(agentmesh_core::read_header(&path)?.into())).or_throw(env)
}

/// The header and the events in seq order (canonical form). Errors: `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn read_log(env: &Env, path: String) -> napi::Result<LogContents> {
    guard(|| read(&path)).or_throw(env)
}

/// `readLog` on the thread pool.
#[napi(ts_return_type = "Promise<LogContents>")]
pub fn read_log_async(path: String) -> AsyncTask<CoreTask<LogContents>> {
    spawn(move || read(&path))
}

/// blake3 (hex) of the canonical log. Errors: `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn fingerprint(env: &Env, path: String) -> napi::Result<String> {
    guard(|| agentmesh_core::fingerprint(&path)).or_throw(env)
}

/// `fingerprint` on the thread pool.
#[napi(ts_return_type = "Promise<string>")]
pub fn fingerprint_async(path: String) -> AsyncTask<CoreTask<String>> {
    spawn(move || agentmesh_core::fingerprint(&path))
}

/// Re-drive a log against `workflow` (the recorded one when absent) without calling any agent.
/// Errors: `NONDETERMINISM` (`details.seq/node/field/expected/actual`), `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn replay(
    env: &Env,
    path: String,
    workflow: Option<&NativeWorkflow>,
) -> napi::Result<ReplayReport> {
    guard(|| replay_log(&path, workflow.map(|w| &w.inner))).or_throw(env)
}

/// `replay` on the thread pool (the workflow is copied first).
#[napi(ts_return_type = "Promise<ReplayReport>")]
pub fn replay_async(
    path: String,
    workflow: Option<&NativeWorkflow>,
) -> AsyncTask<CoreTask<ReplayReport>> {
    let workflow = workflow.map(|w| w.inner.clone());
    spawn(move || replay_log(&path, workflow.as_ref()))
}

/// Time travel: the run's state as of `seq`. Errors: `INVALID_ARGUMENT` (seq outside the
/// log), `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn state_at(env: &Env, path: String, seq: f64) -> napi::Result<RunState> {
    guard(|| state(&path, args::uint("seq", seq)?)).or_throw(env)
}

/// `stateAt` on the thread pool.
#[napi(ts_return_type = "Promise<RunState>")]
pub fn state_at_async(path: String, seq: f64) -> AsyncTask<CoreTask<RunState>> {
    spawn(move || state(&path, args::uint("seq", seq)?))
}

/// The workflow recorded in a log's `runStarted` event. Errors: `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn recorded_workflow(env: &Env, path: String) -> napi::Result<NativeWorkflow> {
    let inner = guard(|| agentmesh_core::recorded_workflow(&path)).or_throw(env)?;
    Ok(NativeWorkflow { inner })
}

/// Parse JSON text as the core does and write it back: what the log would record (`-0` →
/// `-0.0`, integers beyond 64 bits → doubles, keys sorted). Errors: `INVALID_ARGUMENT`.
#[napi(catch_unwind)]
pub fn normalize_json(env: &Env, text: String) -> napi::Result<String> {
    guard(|| {
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| crate::errors::invalid_argument(format!("text is not valid JSON: {e}")))?;
        Ok(value.to_string())
    })
    .or_throw(env)
}
