//! `agentmesh-node`: the native half of the Node.js package `agentmesh` (napi-rs).
//!
//! The TypeScript layer (the `Mesh` driver, Promise-based agents) is built on these pieces:
//!
//! - [`run::NativeWorkflow`] and [`run::NativeRun`]: the core's `Workflow` and `Run`, the
//!   activation/completion protocol (`start` → `poll` → `completeAll` → `outcome`),
//!   `resume` (run id and approvals checked by the core), `retry` (a failed or cancelled run
//!   reopened), `fork`, `cancel`, `usage`, `close`; a workflow's `warnings`; a run's budget
//!   option and a mesh's price table ([`prices`]);
//! - the per-step path in plain Node-API ([`raw`]): `poll` as one text of activation records
//!   ([`activation`]), [`completion::NativeCompletion`] (a result converted once, when it
//!   settles) and `completeAll` (one commit per burst);
//! - free functions over log files ([`log`]): `verifyLog`, `checkLog`, `anchor`,
//!   `verifyAnchor`, `canonicalLog`, `readHeader`, `readLog`, `fingerprint`, `replay`,
//!   `stateAt`, `history`, `usageReport`, `recordedWorkflow`, `normalizeJson`, and Promise
//!   forms of the heavy reads (`verifyLogAsync`, ...) on libuv's thread pool; streamed reads
//!   ([`stream`]);
//! - `errorCodes()`, the stable codes every error carries;
//! - [`cli::cli_main`]: the `agentmesh` command itself, for the package's `agentmesh` bin.
//!
//! Values into the core cross without JSON text: JS data is checked and converted straight
//! into `serde_json::Value` ([`json`]). Out of it, activations and streamed events cross as
//! the core's JSON text (one string per poll or batch, parsed by JavaScript on demand: faster
//! than building objects through Node-API), reports as plain JS objects ([`objects`]); the
//! core alone writes the log. Core errors become JS `Error`s with `code`,
//! `"[CODE] message"` and `details` ([`errors`]); panics are caught and reported as
//! `INTERNAL`, never unwound into Node. u64 values: see [`args`].

// napi-derive registers exports only under `not(test)`; `cargo clippy --all-targets` checks
// this crate as a test target too, where every export would look unused.
#![cfg_attr(test, allow(dead_code))]

mod activation;
mod args;
mod calls;
mod cli;
mod completion;
mod errors;
mod json;
mod log;
mod objects;
mod policy;
mod prices;
mod raw;
mod run;
mod shared;
mod stream;
mod task;
mod telemetry;
mod tools;

use napi::bindgen_prelude::{AsyncTask, Object};
use napi::{Env, JsValue};
use napi_derive::napi;

use crate::errors::{guard, OrThrow};
use crate::task::{spawn, CoreTask};

/// Test hook (not in the typings): panics inside the guarded core path, synchronously or on
/// the thread pool, so the tests can check that a panic becomes an `INTERNAL` error.
#[napi(js_name = "__panicForTests", skip_typescript, catch_unwind)]
pub fn panic_for_tests(env: &Env, message: String) -> napi::Result<()> {
    guard(|| -> agentmesh_core::Result<()> { panic!("{message}") }).or_throw(env)
}

/// Async form of [`panic_for_tests`] (not in the typings).
#[napi(js_name = "__panicForTestsAsync", skip_typescript)]
pub fn panic_for_tests_async(message: String) -> AsyncTask<CoreTask<bool>> {
    spawn(move || -> agentmesh_core::Result<bool> { panic!("{message}") })
}

/// Module load: the plain Node-API class `NativeCompletion` and the
/// per-step methods of `NativeRun` (see `raw.rs`), after napi-rs registered its exports.
#[napi(module_exports)]
pub fn init(exports: Object, env: Env) -> napi::Result<()> {
    let env = env.raw();
    let exports = exports.raw();
    // SAFETY: module init runs on the environment's thread with its exports object.
    let done = unsafe {
        (|| -> raw::R<()> {
            let completion = completion::define(env)?;
            raw::set(env, exports, c"NativeCompletion", completion)?;
            let run = raw::get(env, exports, c"NativeRun")?;
            run::install(env, run)
        })()
    };
    done.map_err(|raw::Thrown| {
        napi::Error::new(
            napi::Status::PendingException,
            "agentmesh module init failed".to_owned(),
        )
    })
}
