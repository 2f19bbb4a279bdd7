//! `NativeWorkflow` and `NativeRun`: the core's `Workflow` and `Run` for the TypeScript driver.
//!
//! The driver owns a `NativeRun` and is its single writer: `start` → loop { `poll` → run the
//! activations → `completeAll` of their `NativeCompletion`s } → `outcome`. Every call is
//! synchronous and short (a burst of completions is one write); the heavy whole-log reads are
//! in `log.rs`, with Promise variants. The per-step methods (`poll`, `outstanding`,
//! `completeAll`) are plain Node-API methods added to the class at load ([`install`]; see
//! `raw.rs`), typed in `native-raw.d.ts`. No method of `NativeRun` runs JavaScript while it
//! holds the run (values are converted before the run is touched), so these and the napi-rs
//! methods never hold the run at the same time.

use std::collections::{BTreeMap, HashMap};

use agentmesh_core::{
    Error, ErrorDetail, ErrorKind, ForkOptions, Recorded, ResumeOptions, Run, RunOptions, Workflow,
};
use napi::bindgen_prelude::{Buffer, ClassInstance, FromNapiValue, Unknown};
use napi::sys;
use napi::Env;
use napi_derive::napi;
use serde_json::Value;

use crate::activation;
use crate::args::{self, SeedArg};
use crate::calls::NativeCalls;
use crate::completion;
use crate::errors::{guard, invalid_argument, to_js, OrThrow};
use crate::json::{JsText, TextPosition};
use crate::objects::{LogEvent, Outcome, UsageReport};
use crate::policy::{self, NativePolicy};
use crate::prices::{self, NativePriceTable};
use crate::raw::{self, RawEnv, Value as JsValue, R};
use crate::shared::{self, SharedRun};
use crate::telemetry::{self, NativeTelemetry};

/// What the logs this binding creates record as their host (`meta.host` of the header).
const HOST: &str = "node";

/// A validated workflow.
#[napi]
pub struct NativeWorkflow {
    pub(crate) inner: Workflow,
}

#[napi]
impl NativeWorkflow {
    /// Parse and validate workflow JSON text. Errors: `INVALID_WORKFLOW` (with
    /// `details.node`/`details.field`).
    /// A lone surrogate in the text (a JS string need not be valid Unicode) is
    /// `INVALID_WORKFLOW` naming its line and column, as `Workflow.fromObject` refuses one.
    #[napi(factory, catch_unwind)]
    pub fn from_json(
        env: &Env,
        #[napi(ts_arg_type = "string")] text: JsText,
    ) -> napi::Result<NativeWorkflow> {
        if let Some(at) = text.lone_surrogate {
            return Err(to_js(env, &lone_surrogate_in_workflow(at)));
        }
        let inner = guard(|| Workflow::from_json(&text.text)).or_throw(env)?;
        Ok(NativeWorkflow { inner })
    }

    /// Read, parse and validate a workflow file. Errors: `IO`, `INVALID_WORKFLOW`.
    #[napi(factory, catch_unwind)]
    pub fn from_file(env: &Env, path: String) -> napi::Result<NativeWorkflow> {
        let inner = guard(|| Workflow::from_file(&path)).or_throw(env)?;
        Ok(NativeWorkflow { inner })
    }

    /// The workflow's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// blake3 (hex) of the canonical workflow JSON (recorded in log headers).
    #[napi(getter)]
    pub fn hash(&self) -> String {
        self.inner.hash().to_owned()
    }

    /// The canonical workflow JSON text.
    #[napi]
    pub fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// Node ids in declaration order.
    #[napi]
    pub fn node_ids(&self) -> Vec<String> {
        self.inner.node_ids().map(str::to_owned).collect()
    }

    /// Agent names the workflow uses, sorted.
    #[napi]
    pub fn agent_names(&self) -> Vec<String> {
        let names = self.inner.agent_names();
        names.into_iter().map(str::to_owned).collect()
    }

    /// Tool names the workflow uses, sorted.
    #[napi]
    pub fn tool_names(&self) -> Vec<String> {
        let names = self.inner.tool_names();
        names.into_iter().map(str::to_owned).collect()
    }

    /// Hints about a valid workflow that probably does not do what its author meant (a node
    /// whose every `after` entry is a branch receives no deps); they never change a run.
    #[napi]
    pub fn warnings(&self) -> Vec<String> {
        self.inner.warnings()
    }

    /// Throw `UNKNOWN_AGENT` unless `agents` and `tools` (the registered names) cover every
    /// name this workflow uses: the core's one wording in every host.
    #[napi]
    pub fn check_registered(
        &self,
        env: &Env,
        agents: Vec<String>,
        tools: Vec<String>,
    ) -> napi::Result<()> {
        let agents: Vec<&str> = agents.iter().map(String::as_str).collect();
        let tools: Vec<&str> = tools.iter().map(String::as_str).collect();
        self.inner.check_registered(&agents, &tools).or_throw(env)
    }
}

/// `INVALID_WORKFLOW` for workflow JSON text holding a lone surrogate, in the form of the
/// core's document-level workflow errors (`field '(document)': …`; the core's constructor for
/// them is crate-private).
fn lone_surrogate_in_workflow(at: TextPosition) -> Error {
    let TextPosition {
        index,
        line,
        column,
    } = at;
    Error::new(
        ErrorKind::InvalidWorkflow,
        format!(
            "field '(document)': not valid JSON: a lone surrogate (not valid Unicode) at line \
             {line} column {column} (index {index} of the text)"
        ),
    )
    .with_detail(ErrorDetail::Workflow {
        node: None,
        field: "(document)".to_owned(),
    })
}

/// How to start a run.
#[napi(object, object_to_js = false)]
pub struct StartOptions {
    /// Run seed, 0 to 2^64-1 (default 0): a number up to 2^53-1, a bigint or a decimal string.
    #[napi(ts_type = "number | bigint | string")]
    pub seed: Option<SeedArg>,
    /// Run id; derived from workflow, input and seed when absent.
    pub run_id: Option<String>,
    /// Directory for `<runId>.jsonl`; absent keeps the log in memory.
    pub log_dir: Option<String>,
    /// Durability of the file log (default `batch`).
    #[napi(ts_type = "'always' | 'batch' | 'never'")]
    pub fsync: Option<String>,
    /// Tenant recorded in the header.
    pub tenant: Option<String>,
    /// The input as JSON text, recorded as the core parses it (exact `1.0`, `-0`, 64-bit
    /// integers); `input` must then be absent or `null`.
    pub input_json: Option<String>,
    /// Keep the committed events for `takeCommitted`, from the first one on.
    pub watch: Option<bool>,
    /// The run's `budget` (replacing the workflow's) as JSON text: an object of limits
    /// (`{"microUsd": 5000000, "calls": 10}`), recorded in `runStarted`; `{}` accounts for
    /// spend without limiting anything.
    pub budget_json: Option<String>,
}

/// How to reopen a run (`NativeRun.resume`).
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct ResumeArgs {
    /// Durability of what is appended (default `batch`).
    #[napi(ts_type = "'always' | 'batch' | 'never'")]
    pub fsync: Option<String>,
    /// The run the log must hold.
    pub run_id: Option<String>,
    /// Decisions as JSON text, by node id.
    pub approvals_json: Option<HashMap<String, String>>,
    /// Keep the events resume appends (and every later one) for `takeCommitted`.
    pub watch: Option<bool>,
}

/// How to reopen a failed or cancelled run (`NativeRun.retry`).
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct RetryArgs {
    /// Durability of what is appended (default `batch`).
    #[napi(ts_type = "'always' | 'batch' | 'never'")]
    pub fsync: Option<String>,
    /// The run the log must hold.
    pub run_id: Option<String>,
    /// Keep the events retry appends (`runReopened` first, and every later one) for
    /// `takeCommitted`.
    pub watch: Option<bool>,
}

/// One run. `close()` releases its log file (the writer lock) so another process can resume it;
/// every later call throws `INVALID_ARGUMENT`. After a caught panic every call throws `INTERNAL`.
#[napi]
pub struct NativeRun {
    /// The run, shared with its call protocol (`calls()`, native calls' threads).
    cell: SharedRun,
    /// The run input as JSON text, kept from the first activation polled.
    input_json: Option<String>,
}

impl NativeRun {
    fn new(run: Run) -> NativeRun {
        NativeRun {
            cell: shared::shared(run),
            input_json: None,
        }
    }

    /// Work on the open run ([`shared::with`]).
    fn with<T>(
        &mut self,
        env: &Env,
        f: impl FnOnce(&mut Run) -> agentmesh_core::Result<T>,
    ) -> napi::Result<T> {
        self.try_with(f).or_throw(env)
    }

    fn try_with<T>(
        &mut self,
        f: impl FnOnce(&mut Run) -> agentmesh_core::Result<T>,
    ) -> agentmesh_core::Result<T> {
        shared::with(&self.cell, f)
    }
}

/// What a re-execution checked.
#[napi(object)]
pub struct ReexecReport {
    /// The recorded run id.
    pub run_id: String,
    /// Activations whose agents or tools ran again.
    pub activations: f64,
    /// Calls answered from the log.
    pub calls: f64,
    /// Events compared.
    pub events: f64,
}

#[napi]
impl NativeRun {
    /// Start a run with `input` (JSON data; absent is `null`): writes the header and
    /// `runStarted` and decides the first step; `prices` are looked at before the bundled
    /// table (their hash is recorded); `telemetry` observes the run (as it does every run
    /// resumed, retried or forked with it). Errors: `INVALID_ARGUMENT` (input, seed, run id,
    /// tenant, fsync, budget naming its field), `RUN_EXISTS`, `IO`.
    #[napi(factory, catch_unwind)]
    pub fn start(
        env: &Env,
        workflow: &NativeWorkflow,
        #[napi(ts_arg_type = "unknown")] input: Option<Unknown<'_>>,
        options: Option<StartOptions>,
        prices: Option<&NativePriceTable>,
        policy: Option<&NativePolicy>,
        telemetry: Option<&NativeTelemetry>,
    ) -> napi::Result<NativeRun> {
        let input = args::json(env, "input", input.as_ref())?;
        let StartOptions {
            seed,
            run_id,
            log_dir,
            fsync,
            tenant,
            input_json,
            watch,
            budget_json,
        } = options.unwrap_or(StartOptions {
            seed: None,
            run_id: None,
            log_dir: None,
            fsync: None,
            tenant: None,
            input_json: None,
            watch: None,
            budget_json: None,
        });
        let input = match input_json {
            None => input,
            Some(_) if !input.is_null() => {
                return Err(to_js(
                    env,
                    &invalid_argument("give the input either as a value or as JSON text, not both"),
                ))
            }
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                to_js(
                    env,
                    &invalid_argument(format!("inputJson is not valid JSON: {e}")),
                )
            })?,
        };
        let run = guard(|| {
            let options = RunOptions {
                input,
                seed: args::seed(seed)?,
                run_id,
                log_dir: log_dir.map(Into::into),
                fsync: args::fsync(fsync.as_deref())?,
                tenant,
                host: Some(HOST.to_owned()),
                watch: watch.unwrap_or(false),
                observer: telemetry::observer(telemetry),
                budget: prices::budget(budget_json)?,
                prices: prices::table(prices),
                policy: policy::of(policy),
            };
            Run::start(&workflow.inner, options)
        })
        .or_throw(env)?;
        Ok(NativeRun::new(run))
    }

    /// Reopen a run from its log file (verifying it and repairing a torn tail), checking that
    /// it holds run `runId` (when given) and resolving waiting human nodes with `approvals`
    /// (node id → decision, JSON data) and `approvalsJson` (node id → decision as JSON text,
    /// recorded as the core parses it); the core checks every approval before it records
    /// any. Errors: `LOG_CORRUPT`, `IO` (also when another process holds the log),
    /// `INVALID_ARGUMENT` (another run's log, an approval for a node that is not waiting,
    /// approvals that are not JSON data, `prices` other than those the run was started with),
    /// `INVALID_OUTPUT` (an approval too deep).
    #[napi(factory, catch_unwind)]
    pub fn resume(
        env: &Env,
        path: String,
        options: Option<ResumeArgs>,
        #[napi(ts_arg_type = "Record<string, unknown> | null")] approvals: Option<Unknown<'_>>,
        prices: Option<&NativePriceTable>,
        policy: Option<&NativePolicy>,
        telemetry: Option<&NativeTelemetry>,
    ) -> napi::Result<NativeRun> {
        let ResumeArgs {
            fsync,
            run_id,
            approvals_json,
            watch,
        } = options.unwrap_or_default();
        let mut decided: BTreeMap<String, Value> =
            match args::json(env, "approvals", approvals.as_ref())? {
                Value::Null => BTreeMap::new(),
                Value::Object(map) => map.into_iter().collect(),
                other => {
                    return Err(to_js(
                        env,
                        &invalid_argument(format!(
                            "approvals must map node id → decision, not {other}"
                        )),
                    ))
                }
            };
        for (node, text) in approvals_json.unwrap_or_default() {
            let value = serde_json::from_str(&text).map_err(|e| {
                to_js(
                    env,
                    &invalid_argument(format!("the approval of '{node}' is not valid JSON: {e}")),
                )
            })?;
            decided.insert(node, value);
        }
        let run = guard(|| {
            let options = ResumeOptions {
                fsync: args::fsync(fsync.as_deref())?,
                run_id,
                approvals: decided,
                watch: watch.unwrap_or(false),
                observer: telemetry::observer(telemetry),
                prices: prices::table(prices),
                policy: policy::of(policy),
            };
            Run::resume_with(&path, options)
        })
        .or_throw(env)?;
        Ok(NativeRun::new(run))
    }

    /// Reopen a failed or cancelled run from its log file (as `resume` does) and continue it:
    /// `runReopened` is appended and the nodes that failed the run (and the activations a
    /// cancel closed) are scheduled again with a fresh allowance of attempts; finished work
    /// is kept. Errors: as `resume`; `INVALID_ARGUMENT` (another run's log, a run that is
    /// running or waiting, completed, or failed on a limit: the message names the way out),
    /// with nothing written; `prices` as for `resume`.
    #[napi(factory, catch_unwind)]
    pub fn retry(
        env: &Env,
        path: String,
        options: Option<RetryArgs>,
        prices: Option<&NativePriceTable>,
        policy: Option<&NativePolicy>,
        telemetry: Option<&NativeTelemetry>,
    ) -> napi::Result<NativeRun> {
        let RetryArgs {
            fsync,
            run_id,
            watch,
        } = options.unwrap_or_default();
        let run = guard(|| {
            let options = ResumeOptions {
                fsync: args::fsync(fsync.as_deref())?,
                run_id,
                approvals: BTreeMap::new(),
                watch: watch.unwrap_or(false),
                observer: telemetry::observer(telemetry),
                prices: prices::table(prices),
                policy: policy::of(policy),
            };
            Run::retry(&path, options)
        })
        .or_throw(env)?;
        Ok(NativeRun::new(run))
    }

    /// Re-execute the run recorded in `path`: a run in memory with the recorded workflow,
    /// input, seed and run id, whose every call is answered from the log and whose
    /// completions are compared with the recorded ones (drive it, then `reexecReport`).
    /// Errors: `LOG_CORRUPT`, `IO`, `INVALID_ARGUMENT` (a fork's log, a retried run).
    #[napi(factory, catch_unwind)]
    pub fn reexecute(
        env: &Env,
        path: String,
        policy: Option<&NativePolicy>,
    ) -> napi::Result<NativeRun> {
        let run = guard(|| Run::reexecute_with(&path, policy::of(policy))).or_throw(env)?;
        Ok(NativeRun::new(run))
    }

    /// After driving a re-executed run: what was checked, or `NONDETERMINISM` at the first
    /// difference from the log.
    #[napi(catch_unwind)]
    pub fn reexec_report(&mut self, env: &Env) -> napi::Result<ReexecReport> {
        self.with(env, |r| {
            let rep = r.reexec_report()?;
            Ok(ReexecReport {
                run_id: rep.run_id,
                activations: rep.activations as f64,
                calls: rep.calls as f64,
                events: rep.events as f64,
            })
        })
    }

    /// Fork the run in `path` at step end `seq` into a new run; `overrides` maps node id →
    /// output (JSON data); `workflow` continues under a changed workflow (the parent's events
    /// up to `seq` must replay equal under it); `watch` keeps the committed events (the copied
    /// prefix included) for `takeCommitted`; `prices` are the parent's (as for `resume`).
    /// Errors: `INVALID_ARGUMENT` (seq not a fork point, unknown node, overrides, prices),
    /// `NONDETERMINISM` (the prefix under `workflow`),
    /// `RUN_EXISTS`, `LOG_CORRUPT`, `IO`.
    #[napi(factory, catch_unwind)]
    #[allow(clippy::too_many_arguments)] // positional, as the JS driver calls it
    pub fn fork(
        env: &Env,
        path: String,
        seq: f64,
        #[napi(ts_arg_type = "Record<string, unknown> | null")] overrides: Option<Unknown<'_>>,
        run_id: Option<String>,
        log_dir: Option<String>,
        #[napi(ts_arg_type = "'always' | 'batch' | 'never'")] fsync: Option<String>,
        workflow: Option<&NativeWorkflow>,
        watch: Option<bool>,
        prices: Option<&NativePriceTable>,
        policy: Option<&NativePolicy>,
        telemetry: Option<&NativeTelemetry>,
    ) -> napi::Result<NativeRun> {
        let overrides: BTreeMap<String, Value> =
            match args::json(env, "overrides", overrides.as_ref())? {
                Value::Null => BTreeMap::new(),
                Value::Object(map) => map.into_iter().collect(),
                other => {
                    return Err(to_js(
                        env,
                        &invalid_argument(format!(
                            "overrides must map node id → output, not {other}"
                        )),
                    ))
                }
            };
        let run = guard(|| {
            let options = ForkOptions {
                seq: args::uint("seq", seq)?,
                overrides,
                run_id,
                log_dir: log_dir.map(Into::into),
                fsync: args::fsync(fsync.as_deref())?,
                workflow: workflow.map(|w| w.inner.clone()),
                host: Some(HOST.to_owned()),
                watch: watch.unwrap_or(false),
                observer: telemetry::observer(telemetry),
                prices: prices::table(prices),
                policy: policy::of(policy),
            };
            Run::fork_with(&path, options)
        })
        .or_throw(env)?;
        Ok(NativeRun::new(run))
    }

    /// The events committed since the last call, in commit order, each as the log holds it
    /// (with `meta`) and otherwise the object `readLog` gives; empty unless the run was
    /// opened with `watch`.
    #[napi(catch_unwind)]
    pub fn take_committed(&mut self, env: &Env) -> napi::Result<Vec<LogEvent>> {
        self.with(env, |r| {
            r.take_committed()
                .into_iter()
                .map(LogEvent::with_meta)
                .collect()
        })
    }

    /// Cancel the run (outstanding activations are recorded as cancelled, then
    /// `runCancelled`); `false` if it had already finished.
    #[napi(catch_unwind)]
    pub fn cancel(&mut self, env: &Env, reason: String) -> napi::Result<bool> {
        self.with(env, |r| r.cancel(&reason))
    }

    /// `running`, `waiting`, `completed`, `failed` or `cancelled`.
    #[napi(
        catch_unwind,
        ts_return_type = "'running' | 'waiting' | 'completed' | 'failed' | 'cancelled'"
    )]
    pub fn status(&mut self, env: &Env) -> napi::Result<&'static str> {
        self.with(env, |r| Ok(r.status()?.as_str()))
    }

    /// Status, output (completed runs) and error (failed or cancelled runs).
    #[napi(catch_unwind)]
    pub fn outcome(&mut self, env: &Env) -> napi::Result<Outcome> {
        self.with(env, |r| Ok(r.outcome()?.into()))
    }

    /// fsyncs this run's log writer made so far (file and directory; 0 in memory): what
    /// durability cost, for group-commit checks and benchmarks.
    #[napi(catch_unwind)]
    pub fn fsync_count(&mut self, env: &Env) -> napi::Result<i64> {
        self.with(env, |r| Ok(crate::objects::num(r.fsync_count())))
    }

    /// The run input as JSON text (what every activation's `input` is `JSON.parse` of);
    /// `null` until an activation was polled (the core hands the input out with them).
    #[napi(ts_return_type = "string | null")]
    pub fn input_json(&self) -> Option<String> {
        self.input_json.clone()
    }

    /// The run id.
    #[napi(catch_unwind)]
    pub fn run_id(&mut self, env: &Env) -> napi::Result<String> {
        self.with(env, |r| Ok(r.run_id().to_owned()))
    }

    /// The log file, or `null` for an in-memory run.
    #[napi(catch_unwind)]
    pub fn log_path(&mut self, env: &Env) -> napi::Result<Option<String>> {
        self.with(env, |r| {
            Ok(r.log_path().map(|p| p.to_string_lossy().into_owned()))
        })
    }

    /// blake3 (hex) of the canonical log.
    #[napi(catch_unwind)]
    pub fn fingerprint(&mut self, env: &Env) -> napi::Result<String> {
        self.with(env, |r| r.fingerprint())
    }

    /// What the run spent so far, from its events (see `usageReport`).
    #[napi(catch_unwind)]
    pub fn usage(&mut self, env: &Env) -> napi::Result<UsageReport> {
        self.with(env, |r| Ok(r.usage()?.into()))
    }

    /// The canonical log bytes: header, then events sorted by seq, without meta or chain.
    #[napi(catch_unwind)]
    pub fn canonical(&mut self, env: &Env) -> napi::Result<Buffer> {
        self.with(env, |r| r.canonical()).map(Buffer::from)
    }

    /// Release the run and its log file (the writer lock), so another run or process can
    /// resume it. Idempotent.
    #[napi(catch_unwind)]
    pub fn close(&mut self, env: &Env) -> napi::Result<()> {
        let run = shared::lock(&self.cell).take();
        guard(move || {
            drop(run);
            Ok(())
        })
        .or_throw(env)
    }

    /// The run's call protocol (calls inside activations), for the driver's activations.
    #[napi]
    pub fn calls(&self) -> NativeCalls {
        NativeCalls::new(self.cell.clone())
    }

    /// The workflow being run.
    #[napi(catch_unwind)]
    pub fn workflow(&mut self, env: &Env) -> napi::Result<NativeWorkflow> {
        let inner = self.with(env, |r| Ok(r.workflow().clone()))?;
        Ok(NativeWorkflow { inner })
    }
}

// The per-step methods, in plain Node-API ----------------------------------------------------

/// The `NativeRun` behind `this`.
///
/// # Safety
///
/// As for `raw` (the current call's environment); the reference must not outlive the call,
/// and no JavaScript may run while it is held.
unsafe fn this_run<'a>(env: RawEnv, this: JsValue) -> R<&'a mut NativeRun> {
    // SAFETY: per this function's contract; napi-rs checks that `this` is a NativeRun.
    unsafe {
        let mut instance = raw::napi(env, ClassInstance::<NativeRun>::from_napi_value(env, this))?;
        Ok(&mut *(&mut *instance as *mut NativeRun))
    }
}

/// `run.poll()`: activations not yet handed out (each is returned once), as records
/// (`activation.rs`).
unsafe extern "C" fn poll(env: RawEnv, info: sys::napi_callback_info) -> JsValue {
    // SAFETY: Node-API calls this with its environment and call info.
    unsafe { activations(env, info, Run::poll) }
}

/// `run.outstanding()`: activations still waiting for a completion.
unsafe extern "C" fn outstanding(env: RawEnv, info: sys::napi_callback_info) -> JsValue {
    // SAFETY: Node-API calls this with its environment and call info.
    unsafe { activations(env, info, |r| r.outstanding()) }
}

/// `poll` and `outstanding`: the activations `get` returns, as records; the run input is kept
/// from the first one seen (the core has no accessor for it).
///
/// # Safety
/// `env` and `info` are those Node-API passed to the callback.
unsafe fn activations(
    env: RawEnv,
    info: sys::napi_callback_info,
    get: impl FnOnce(&mut Run) -> agentmesh_core::Result<Vec<agentmesh_core::Activation>>,
) -> JsValue {
    // SAFETY: as the caller's.
    unsafe {
        raw::callback(env, || {
            let run = this_run(env, raw::args::<0>(env, info)?.this)?;
            let (acts, input) = raw::core(env, run.try_with(|r| Ok((get(r)?, r.input().clone()))))?;
            if run.input_json.is_none() {
                run.input_json = Some(input.to_string());
            }
            activation::records(env, acts, &input)
        })
    }
}

/// `run.completeAll(completions)`: record a burst of completions in one commit — one write,
/// and with fsync `always` one fsync (group commit). Returns `null` when every one was
/// recorded as given; otherwise one entry per completion: `null`, or the error that explains
/// it — `INVALID_OUTPUT` (recorded as the permanent `InvalidOutput` failure: not JSON data, too
/// deep or too large for the log) or `INVALID_COMPLETION` (unknown, late or duplicate
/// activation: nothing recorded). Errors: `INVALID_ARGUMENT` (not an array of completions, one
/// recorded already or given twice), `IO` (nothing of the burst is durable; the run refuses
/// every later call).
///
/// `run.completeAll(completions, true)` also polls (a driver records, then polls, every
/// round: one call instead of two) and returns the `poll` text, or `[notes, text]` when there
/// are notes.
unsafe extern "C" fn complete_all(env: RawEnv, info: sys::napi_callback_info) -> JsValue {
    // SAFETY: Node-API calls this with its environment and call info.
    unsafe {
        raw::callback(env, || {
            let args = raw::args::<2>(env, info)?;
            let list = args.argv[0];
            let mut is_array = false;
            raw::check(env, sys::napi_is_array(env, list, &mut is_array))?;
            if !is_array {
                let e = invalid_argument("completeAll takes an array of NativeCompletion");
                return Err(raw::throw(env, &e));
            }
            let mut len = 0u32;
            raw::check(env, sys::napi_get_array_length(env, list, &mut len))?;
            let mut items = Vec::with_capacity(len as usize);
            for i in 0..len {
                let mut item = std::ptr::null_mut();
                raw::check(env, sys::napi_get_element(env, list, i, &mut item))?;
                items.push(completion::unwrap(env, item)?);
            }
            // Every JS value is read: from here on no JavaScript runs until the results.
            let run = this_run(env, args.this)?;
            let taken = raw::core(env, completion::take_all(&items))?;
            let mut refused = Vec::with_capacity(taken.len());
            let batch = taken
                .into_iter()
                .map(|(id, completion, why)| {
                    refused.push(why);
                    (id, completion)
                })
                .collect();
            let recorded = raw::core(env, run.try_with(|r| r.complete_all(batch)))?;
            let mut poll_too = false;
            // Anything but `true` (undefined, a non-boolean) is false; no exception is set.
            let _ = sys::napi_get_value_bool(env, args.argv[1], &mut poll_too);
            let polled = if poll_too {
                let (acts, input) =
                    raw::core(env, run.try_with(|r| Ok((r.poll()?, r.input().clone()))))?;
                if run.input_json.is_none() {
                    run.input_json = Some(input.to_string());
                }
                Some(raw::string(env, &activation::poll_text(&acts, &input))?)
            } else {
                None
            };
            let notes: Vec<Option<Error>> = recorded
                .into_iter()
                .zip(refused)
                .map(|(r, why)| match r {
                    Recorded::AsFailure(e) | Recorded::Refused(e) => Some(e),
                    _ => why,
                })
                .collect();
            if notes.iter().all(Option::is_none) {
                return match polled {
                    Some(text) => Ok(text),
                    None => raw::null(env),
                };
            }
            let notes = raw::array(
                env,
                notes.iter().map(|note| match note {
                    Some(e) => raw::napi(env, crate::errors::error_value(env, e)),
                    None => raw::null(env),
                }),
            )?;
            match polled {
                Some(text) => raw::array(env, [Ok(notes), Ok(text)].into_iter()),
                None => Ok(notes),
            }
        })
    }
}

/// Add the per-step methods to `NativeRun.prototype` (at module load).
///
/// # Safety
///
/// As for `raw`; `class` is the `NativeRun` constructor.
pub unsafe fn install(env: RawEnv, class: JsValue) -> R<()> {
    let methods: [(&std::ffi::CStr, raw::Callback); 3] = [
        (c"poll", poll),
        (c"outstanding", outstanding),
        (c"completeAll", complete_all),
    ];
    // SAFETY: per this function's contract.
    unsafe {
        let prototype = raw::get(env, class, c"prototype")?;
        for (name, cb) in methods {
            let f = raw::function(env, name, cb)?;
            raw::set(env, prototype, name, f)?;
        }
    }
    Ok(())
}
