//! Free functions over log files: verify (and check without writing), anchors, canonical
//! form, read, fingerprint, replay, time travel, history, usage (streaming reads: `stream.rs`). The whole-log reads also come as `…Async` functions returning Promises that run on
//! libuv's thread pool (see `task.rs`); both forms share one body and throw/reject the same
//! errors.

use agentmesh_core::{AnchorKey, Workflow};
use napi::bindgen_prelude::{AsyncTask, Buffer, Either, FromNapiValue, Uint8Array, Unknown};
use napi::{Env, JsValue};
use napi_derive::napi;

use crate::args;
use crate::errors::{guard, OrThrow};
use crate::objects::{
    num, LogContents, LogEvent, LogHeader, ReplayReport, RunState, UsageReport, VerifyReport,
};
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

/// The header and the events in seq order (canonical form), all at once (`readLogSync`;
/// `readLog` streams, `stream.rs`). Errors: `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn read_log(env: &Env, path: String) -> napi::Result<LogContents> {
    guard(|| read(&path)).or_throw(env)
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

fn usage(path: &str) -> Result<UsageReport> {
    Ok(agentmesh_core::usage_report(path)?.into())
}

/// What the run in a log spent: token usage by run, node, agent, tool and model; a fork's
/// events copied from its parent are reported apart (`inherited`), never in `total`.
/// Read-only. Errors: `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn usage_report(env: &Env, path: String) -> napi::Result<UsageReport> {
    guard(|| usage(&path)).or_throw(env)
}

/// `usageReport` on the thread pool.
#[napi(ts_return_type = "Promise<UsageReport>")]
pub fn usage_report_async(path: String) -> AsyncTask<CoreTask<UsageReport>> {
    spawn(move || usage(&path))
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

// Check without writing; anchors; history ---------------------------------------------------

fn check(path: &str) -> Result<VerifyReport> {
    Ok(agentmesh_core::check_log(path)?.into())
}

/// Verify a log without ever writing to it: a damaged tail is reported (`tornAt`), not
/// repaired; works on a read-only file system and while the run's writer runs. Errors:
/// `LOG_CORRUPT` (`details.offset`), `IO`.
#[napi(catch_unwind)]
pub fn check_log(env: &Env, path: String) -> napi::Result<VerifyReport> {
    guard(|| check(&path)).or_throw(env)
}

/// `checkLog` on the thread pool.
#[napi(ts_return_type = "Promise<VerifyReport>")]
pub fn check_log_async(path: String) -> AsyncTask<CoreTask<VerifyReport>> {
    spawn(move || check(&path))
}

/// The head of a log's hash chain, to keep somewhere else (`anchor`, `verifyAnchor`).
#[napi(object)]
pub struct Anchor {
    /// Anchor format.
    pub version: u32,
    /// Run id of the log.
    pub run_id: String,
    /// Events in the log when the anchor was taken.
    pub records: i64,
    /// Bytes of the log up to the end of those records (the last one's newline not counted).
    pub bytes: i64,
    /// blake3 (hex) of those bytes: the head.
    pub head: String,
    /// blake3 keyed hash (hex) of the facts above, when the anchor was taken with a key.
    pub mac: Option<String>,
}

impl From<agentmesh_core::Anchor> for Anchor {
    fn from(a: agentmesh_core::Anchor) -> Anchor {
        let agentmesh_core::Anchor {
            version,
            run_id,
            records,
            bytes,
            head,
            mac,
        } = a;
        Anchor {
            version,
            run_id,
            records: num(records),
            bytes: num(bytes),
            head,
            mac,
        }
    }
}

/// Key material as JavaScript gives it: a string (its UTF-8 bytes) or bytes.
type KeyArg = Either<String, Uint8Array>;

fn key_material(key: Option<KeyArg>) -> Option<Vec<u8>> {
    key.map(|k| match k {
        Either::A(text) => text.into_bytes(),
        Either::B(bytes) => bytes.to_vec(),
    })
}

fn key_of(material: Option<Vec<u8>>) -> Result<Option<AnchorKey>> {
    material.map(|m| AnchorKey::from_material(&m)).transpose()
}

fn take_anchor(path: &str, material: Option<Vec<u8>>) -> Result<Anchor> {
    let key = key_of(material)?;
    Ok(agentmesh_core::anchor(path, key.as_ref())?.into())
}

/// Take an anchor of a log (read-only); with key material (a string or bytes, never shown
/// in any message) the anchor carries a MAC. Errors: `LOG_CORRUPT`, `IO`, `INVALID_ARGUMENT`
/// (empty key material).
#[napi(catch_unwind)]
pub fn anchor(
    env: &Env,
    path: String,
    #[napi(ts_arg_type = "string | Uint8Array | null")] key: Option<KeyArg>,
) -> napi::Result<Anchor> {
    let material = key_material(key);
    guard(|| take_anchor(&path, material)).or_throw(env)
}

/// `anchor` on the thread pool.
#[napi(ts_return_type = "Promise<Anchor>")]
pub fn anchor_async(
    path: String,
    #[napi(ts_arg_type = "string | Uint8Array | null")] key: Option<KeyArg>,
) -> AsyncTask<CoreTask<Anchor>> {
    let material = key_material(key);
    spawn(move || take_anchor(&path, material))
}

/// An anchor argument: its JSON text, or an object (as `anchor` returns). Errors:
/// `INVALID_ARGUMENT`.
fn anchor_arg(env: &Env, value: &Unknown<'_>) -> napi::Result<agentmesh_core::Anchor> {
    let text = match value.get_type()? {
        napi::ValueType::String => {
            // SAFETY: checked to be a string of the current call.
            unsafe { String::from_napi_value(env.raw(), value.raw())? }
        }
        _ => args::json(env, "anchor", Some(value))?.to_string(),
    };
    agentmesh_core::Anchor::from_json(&text).or_throw(env)
}

fn check_anchor(
    path: &str,
    anchor: &agentmesh_core::Anchor,
    material: Option<Vec<u8>>,
) -> Result<VerifyReport> {
    let key = key_of(material)?;
    Ok(agentmesh_core::verify_anchor(path, anchor, key.as_ref())?.into())
}

/// Check a log against an anchor taken earlier (read-only): the anchored records must still
/// be there, ending at the anchored length with the anchored head; a keyed anchor needs its
/// key. Errors: `LOG_TRUNCATED`, `LOG_HEAD_MISMATCH` (`details.field/expected/found`),
/// `INVALID_ARGUMENT` (not an anchor, a key missing or not expected), `LOG_CORRUPT`, `IO`.
#[napi(catch_unwind)]
pub fn verify_anchor(
    env: &Env,
    path: String,
    #[napi(ts_arg_type = "Anchor | string")] anchor: Unknown<'_>,
    #[napi(ts_arg_type = "string | Uint8Array | null")] key: Option<KeyArg>,
) -> napi::Result<VerifyReport> {
    let anchor = anchor_arg(env, &anchor)?;
    let material = key_material(key);
    guard(|| check_anchor(&path, &anchor, material)).or_throw(env)
}

/// `verifyAnchor` on the thread pool (the anchor is read first).
#[napi(ts_return_type = "Promise<VerifyReport>")]
pub fn verify_anchor_async(
    env: &Env,
    path: String,
    #[napi(ts_arg_type = "Anchor | string")] anchor: Unknown<'_>,
    #[napi(ts_arg_type = "string | Uint8Array | null")] key: Option<KeyArg>,
) -> napi::Result<AsyncTask<CoreTask<VerifyReport>>> {
    let anchor = anchor_arg(env, &anchor)?;
    let material = key_material(key);
    Ok(spawn(move || check_anchor(&path, &anchor, material)))
}

/// The state of the run at seq 1, after every step, and at the end of the log, in one pass.
/// Errors: `LOG_CORRUPT`, `NONDETERMINISM`, `IO`.
#[napi(catch_unwind)]
pub fn history(env: &Env, path: String) -> napi::Result<Vec<RunState>> {
    guard(|| {
        Ok(agentmesh_core::history(&path)?
            .into_iter()
            .map(RunState::from)
            .collect())
    })
    .or_throw(env)
}
