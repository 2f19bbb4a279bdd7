//! The Rust host driver: register agents and tools as closures, run workflows to completion.
//!
//! It is the reference for the Python and Node drivers: poll, execute a step's activations in
//! parallel (one inline when it is alone and has no deadline), complete them as they arrive,
//! enforce timeouts, honour cancellation, stop when only human decisions are outstanding.

mod context;
mod pool;
pub mod scripted;
mod tool_access;

pub use context::{
    provider_error, refused_request, replayed_chunk, CallExecutor, CallReply, Context,
};
use context::{CallMsg, Executors};
pub use tool_access::ToolAccess;

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::budget::PriceTable;
use crate::error::{Error, ErrorKind, Result};
use crate::log::FsyncMode;
use crate::model::activation::{Activation, Completion, RunStatus};
use crate::model::event::Event;
use crate::model::failure::{Failure, RunError, Usage};
use crate::model::workflow::{ActivationKind, Workflow};
use crate::run::{ForkOptions, ResumeOptions, Run, RunLog, RunOptions};
use pool::Pool;

/// What an agent or tool returns on success.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOutput {
    /// Any JSON value.
    pub output: Value,
    /// Token usage, if known.
    pub usage: Option<Usage>,
}

impl From<Value> for AgentOutput {
    fn from(output: Value) -> AgentOutput {
        AgentOutput {
            output,
            usage: None,
        }
    }
}

/// What an agent or tool returns on failure: the failure, and the tokens the failed attempt
/// spent (recorded with it). `Err(Failure::error(..).into())` when nothing was spent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentError {
    /// Type, message, whether it may be retried.
    pub failure: Failure,
    /// Token usage of the failed attempt, if known.
    pub usage: Option<Usage>,
}

impl AgentError {
    /// Attach the tokens the failed attempt spent.
    pub fn with_usage(mut self, usage: Usage) -> AgentError {
        self.usage = Some(usage);
        self
    }
}

/// An AgentMesh error an agent lets through (`ctx.llm(...)?`) fails its activation as the
/// Python and Node bindings record an uncaught AgentMesh exception: its class name
/// ([`ErrorKind::class_name`]) and `[CODE] message`, retryable.
impl From<Error> for AgentError {
    fn from(e: Error) -> AgentError {
        Failure::error(e.kind().class_name(), e.to_string()).into()
    }
}

impl From<Failure> for AgentError {
    fn from(failure: Failure) -> AgentError {
        AgentError {
            failure,
            usage: None,
        }
    }
}

/// Result of an agent or tool call.
pub type AgentResult = std::result::Result<AgentOutput, AgentError>;

type AgentFn = Arc<dyn Fn(&Activation, &Context) -> AgentResult + Send + Sync>;

pub(crate) enum Msg {
    Done(u64, Completion),
    Call(CallMsg),
    Cancel,
}

#[derive(Default)]
struct CancelInner {
    reason: Option<String>,
    tx: Option<Sender<Msg>>,
}

/// Cancels a run from any thread (or from inside an agent via [`Context::cancel_run`]).
#[derive(Clone, Default)]
pub struct CancelHandle {
    inner: Arc<Mutex<CancelInner>>,
}

impl CancelHandle {
    /// A handle not yet cancelled.
    pub fn new() -> CancelHandle {
        CancelHandle::default()
    }

    /// Request cancellation; the first reason wins.
    pub fn cancel(&self, reason: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.reason.is_none() {
            g.reason = Some(reason.to_owned());
        }
        if let Some(tx) = &g.tx {
            let _ = tx.send(Msg::Cancel);
        }
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.reason().is_some()
    }

    fn reason(&self) -> Option<String> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reason
            .clone()
    }

    fn attach(&self, tx: Option<Sender<Msg>>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).tx = tx;
    }
}

/// The outcome of driving a run, with where to find its log.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Run id.
    pub run_id: String,
    /// Final status (`waiting` when a person must decide).
    pub status: RunStatus,
    /// Outputs of the terminal nodes (completed runs).
    pub output: Option<Value>,
    /// Why the run failed or was cancelled.
    pub error: Option<RunError>,
    /// Human activations waiting for a decision.
    pub waiting: Vec<Activation>,
    /// Activations left outstanding because this mesh has no agent or tool for them (only
    /// with [`Mesh::stop_at_missing`]; the status is then `running`): the program that
    /// registers them should resume the run.
    pub needs: Vec<Activation>,
    /// The log file, for file-backed runs.
    pub log_path: Option<PathBuf>,
    /// The log (file or in-memory events), for [`RunResult::fingerprint`] on request.
    log: RunLog,
}

impl RunResult {
    /// blake3 (hex) of the canonical log: equal for equal runs, whichever host ran them.
    /// Computed on request (it serializes or re-reads the whole log).
    ///
    /// Errors: `IO`, `LOG_CORRUPT` (a file log changed since the run).
    pub fn fingerprint(&self) -> Result<String> {
        self.log.fingerprint()
    }

    /// The canonical log (see [`crate::canonical_log`]).
    ///
    /// Errors: `IO`, `LOG_CORRUPT`.
    pub fn canonical(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.log.write_canonical(&mut out)?;
        Ok(out)
    }

    /// The outcome of a run driven as far as it went (by [`Mesh::drive`], or a host's own
    /// loop over the [`Run`] API): status, output or error, who is waiting, what is left for
    /// another program ([`Mesh::stop_at_missing`]). Closes the run (a file log's lock is
    /// released).
    ///
    /// Errors: the commit failure that poisoned the run.
    pub fn of_run(run: Run) -> Result<RunResult> {
        result_of(run)
    }

    /// What the run spent, by run, node, agent, tool and model (see [`crate::UsageReport`]);
    /// computed from the log on request.
    ///
    /// Errors: `IO`, `LOG_CORRUPT`.
    pub fn usage(&self) -> Result<crate::UsageReport> {
        self.log.usage()
    }

    /// The output of a completed run, or the run's error as an [`Error`] with its code.
    ///
    /// Errors: the run's code (`AGENT_FAILED`, `TIMEOUT`, `LIMIT_EXCEEDED`, `CANCELLED`), or
    /// `INVALID_ARGUMENT` when the run is waiting for a person.
    pub fn into_output(self) -> Result<Value> {
        match (self.status, self.error) {
            (RunStatus::Completed, _) => Ok(self.output.unwrap_or(Value::Null)),
            (_, Some(e)) => {
                let kind = ErrorKind::from_code(&e.code).unwrap_or(ErrorKind::Internal);
                Err(Error::new(kind, e.message))
            }
            (status, None) => Err(Error::invalid_argument(format!(
                "run '{}' is {}",
                self.run_id,
                status.as_str()
            ))),
        }
    }
}

type EventFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// Registers agents and tools, and runs workflows with them.
pub struct Mesh {
    agents: HashMap<String, AgentFn>,
    tools: HashMap<String, AgentFn>,
    log_dir: Option<PathBuf>,
    fsync: FsyncMode,
    pool: Pool,
    host: String,
    on_event: Option<EventFn>,
    stop_at_missing: bool,
    executors: Arc<Executors>,
    prices: Option<PriceTable>,
    policy: Option<crate::policy::Policy>,
    observer: Option<Arc<dyn crate::run::Observer>>,
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh::new()
    }
}

impl Mesh {
    /// A mesh keeping logs in memory.
    pub fn new() -> Mesh {
        Mesh {
            agents: HashMap::new(),
            tools: HashMap::new(),
            log_dir: None,
            fsync: FsyncMode::Batch,
            pool: Pool::new(),
            host: "rust".to_owned(),
            on_event: None,
            stop_at_missing: false,
            executors: Arc::default(),
            prices: None,
            policy: None,
            observer: None,
        }
    }

    /// Let `observer` see every event of the runs this mesh starts, resumes, retries and
    /// forks, as each is committed: how telemetry is attached (`agentmesh-telemetry`,
    /// docs/telemetry.md). It runs on the committing thread and never changes the run.
    pub fn with_observer(mut self, observer: Arc<dyn crate::run::Observer>) -> Mesh {
        self.observer = Some(observer);
        self
    }

    /// Judge the runs this mesh starts, resumes, retries, forks and re-executes by `policy`
    /// (docs/policy.md). A run goes on only under the policy it was started with.
    pub fn with_policy(mut self, policy: crate::policy::Policy) -> Mesh {
        self.policy = Some(policy);
        self
    }

    /// Price calls with `table` before the bundled one (docs/budgets.md) in the runs this
    /// mesh starts, resumes and retries (a run that accounts for spend goes on only with the
    /// prices it was started with). Runs then account for spend even without a budget.
    pub fn with_prices(mut self, table: PriceTable) -> Mesh {
        self.prices = Some(table);
        self
    }

    /// Register an LLM provider under `name`, for agents' [`Context::llm`] calls.
    pub fn provider(&mut self, name: &str, executor: Arc<dyn CallExecutor>) -> &mut Mesh {
        Arc::make_mut(&mut self.executors)
            .providers
            .insert(name.to_owned(), executor);
        self
    }

    /// Register a tool any agent may call with [`Context::tool`] (a tool *node* of a
    /// workflow is registered with [`Mesh::tool`]).
    pub fn call_tool(&mut self, name: &str, executor: Arc<dyn CallExecutor>) -> &mut Mesh {
        self.call_tool_with(name, executor, ToolAccess::any())
    }

    /// Register a tool with access rules: the agents allowed to call it and a rate limit
    /// ([`ToolAccess`]). A call by another agent is `POLICY_DENIED` before anything is
    /// recorded.
    pub fn call_tool_with(
        &mut self,
        name: &str,
        executor: Arc<dyn CallExecutor>,
        access: ToolAccess,
    ) -> &mut Mesh {
        Arc::make_mut(&mut self.executors)
            .tools
            .insert(name.to_owned(), (executor, access));
        self
    }

    /// Drive only the activations this mesh has an agent or tool for: one it lacks stays
    /// outstanding (as after a crash) for the program that registers it, and its step cannot
    /// end; the mesh runs the rest of that step and returns with the run still `running` and
    /// [`RunResult::needs`] naming what is left. Without this, a mesh refuses
    /// (`UNKNOWN_AGENT`) to run a workflow it lacks agents for. The CLI uses it so it never
    /// invents the work of a program's agents.
    pub fn stop_at_missing(mut self) -> Mesh {
        self.stop_at_missing = true;
        self
    }

    /// Name the host recorded in the headers of the logs this mesh creates (`rust` unless
    /// set; the CLI records `cli`).
    pub fn with_host(mut self, host: impl Into<String>) -> Mesh {
        self.host = host.into();
        self
    }

    /// Call `f` with every event of the runs this mesh drives, in commit order, once it is
    /// committed (durable per the fsync mode), as the log holds it. `f` runs on the driving
    /// thread: a slow `f` slows the run but never changes it; a panic in `f` is caught and
    /// ends the delivery of that run's events, not the run.
    pub fn on_event<F>(&mut self, f: F) -> &mut Mesh
    where
        F: Fn(&Event) + Send + Sync + 'static,
    {
        self.on_event = Some(Arc::new(f));
        self
    }

    /// Hand the run's newly committed events to `on_event`.
    fn deliver(&self, run: &mut Run, delivering: &mut bool) {
        let Some(f) = &self.on_event else { return };
        let events = run.take_committed();
        if !*delivering {
            return;
        }
        let delivered = catch_unwind(AssertUnwindSafe(|| {
            for e in &events {
                f(e);
            }
        }));
        if delivered.is_err() {
            *delivering = false;
        }
    }

    /// Write logs to `<dir>/<runId>.jsonl`.
    pub fn with_log_dir(mut self, dir: impl Into<PathBuf>) -> Mesh {
        self.log_dir = Some(dir.into());
        self
    }

    /// Set the durability mode of file logs.
    pub fn with_fsync(mut self, fsync: FsyncMode) -> Mesh {
        self.fsync = fsync;
        self
    }

    /// Register an agent under `name`.
    pub fn agent<F>(&mut self, name: &str, f: F) -> &mut Mesh
    where
        F: Fn(&Activation, &Context) -> AgentResult + Send + Sync + 'static,
    {
        self.agents.insert(name.to_owned(), Arc::new(f));
        self
    }

    /// Register a tool under `name`.
    pub fn tool<F>(&mut self, name: &str, f: F) -> &mut Mesh
    where
        F: Fn(&Activation, &Context) -> AgentResult + Send + Sync + 'static,
    {
        self.tools.insert(name.to_owned(), Arc::new(f));
        self
    }

    fn check_registered(&self, wf: &Workflow) -> Result<()> {
        if self.stop_at_missing {
            return Ok(());
        }
        let agents: Vec<&str> = self.agents.keys().map(String::as_str).collect();
        let tools: Vec<&str> = self.tools.keys().map(String::as_str).collect();
        wf.check_registered(&agents, &tools)
    }

    /// Start a run of `workflow` (log in this mesh's log directory or memory) without driving it.
    ///
    /// Errors: `UNKNOWN_AGENT`, `INVALID_ARGUMENT`, `RUN_EXISTS`, `IO`.
    pub fn start(&self, workflow: &Workflow, mut options: RunOptions) -> Result<Run> {
        self.check_registered(workflow)?;
        if options.log_dir.is_none() {
            options.log_dir = self.log_dir.clone();
        }
        options.fsync = self.fsync;
        if options.host.is_none() {
            options.host = Some(self.host.clone());
        }
        options.watch |= self.on_event.is_some();
        if options.observer.is_none() {
            options.observer = self.observer.clone();
        }
        if options.prices.is_none() {
            options.prices = self.prices.clone();
        }
        if options.policy.is_none() {
            options.policy = self.policy.clone();
        }
        Run::start(workflow, options)
    }

    /// Run `workflow` until it finishes or waits for a person.
    ///
    /// A run that fails or is cancelled is still `Ok`: see [`RunResult::status`] and
    /// [`RunResult::into_output`].
    ///
    /// Errors: `UNKNOWN_AGENT`, `INVALID_ARGUMENT`, `RUN_EXISTS`, `IO`.
    pub fn run(&self, workflow: &Workflow, options: RunOptions) -> Result<RunResult> {
        self.run_with(workflow, options, &CancelHandle::new())
    }

    /// [`Mesh::run`] with a handle that can cancel it.
    ///
    /// Errors: as [`Mesh::run`].
    pub fn run_with(
        &self,
        workflow: &Workflow,
        options: RunOptions,
        cancel: &CancelHandle,
    ) -> Result<RunResult> {
        let mut run = self.start(workflow, options)?;
        self.drive(&mut run, cancel)?;
        result_of(run)
    }

    /// Resume a run from its log, resolving human activations with `approvals` (node → output).
    ///
    /// Errors: `INVALID_ARGUMENT` (no pending human activation for a node), `UNKNOWN_AGENT`,
    /// `LOG_CORRUPT`, `NONDETERMINISM`, `IO`.
    pub fn resume(
        &self,
        path: impl AsRef<Path>,
        approvals: BTreeMap<String, Value>,
    ) -> Result<RunResult> {
        // Check registration before resume touches the file (it may append lost decisions).
        self.check_registered(&crate::replay::recorded_workflow(path.as_ref())?)?;
        let options = ResumeOptions {
            fsync: self.fsync,
            run_id: None,
            approvals,
            watch: self.on_event.is_some(),
            observer: self.observer.clone(),
            prices: self.prices.clone(),
            policy: self.policy.clone(),
        };
        let mut run = Run::resume_with(path, options)?;
        self.drive(&mut run, &CancelHandle::new())?;
        result_of(run)
    }

    /// Retry a failed or cancelled run (see [`Run::retry`]): the nodes that failed it run
    /// again with fresh attempts, finished work is kept, and the run is driven on.
    ///
    /// Errors: as [`Run::retry`], and `UNKNOWN_AGENT`.
    pub fn retry(&self, path: impl AsRef<Path>) -> Result<RunResult> {
        self.check_registered(&crate::replay::recorded_workflow(path.as_ref())?)?;
        let options = ResumeOptions {
            fsync: self.fsync,
            watch: self.on_event.is_some(),
            observer: self.observer.clone(),
            prices: self.prices.clone(),
            policy: self.policy.clone(),
            ..ResumeOptions::default()
        };
        let mut run = Run::retry(path, options)?;
        self.drive(&mut run, &CancelHandle::new())?;
        result_of(run)
    }

    /// Re-execute the run recorded in `path` ([`Run::reexecute`]): this mesh's agents run
    /// again with every call answered from the log (nothing is sent, nothing written), and
    /// the first difference from the record is the error.
    ///
    /// Errors: `NONDETERMINISM` naming seq, node and field of the first difference (a call
    /// whose request changed, a call the log does not have, a changed output),
    /// `UNKNOWN_AGENT`, and the errors of [`Run::reexecute`].
    pub fn reexecute(&self, path: impl AsRef<Path>) -> Result<crate::run::ReexecReport> {
        self.check_registered(&crate::replay::recorded_workflow(path.as_ref())?)?;
        let mut run = Run::reexecute_with(path, self.policy.clone())?;
        let driven = self.drive(&mut run, &CancelHandle::new());
        match run.reexec_report() {
            Err(e) => Err(e),
            Ok(report) => driven.map(|()| report),
        }
    }

    /// Fork the run in `path` at `seq` with some node outputs replaced, and drive the fork.
    ///
    /// Errors: as [`Run::fork`], and `UNKNOWN_AGENT`.
    pub fn fork(
        &self,
        path: impl AsRef<Path>,
        seq: u64,
        overrides: BTreeMap<String, Value>,
        run_id: Option<String>,
    ) -> Result<RunResult> {
        self.fork_with(
            path,
            ForkOptions {
                seq,
                overrides,
                run_id,
                ..ForkOptions::default()
            },
        )
    }

    /// [`Mesh::fork`] with every fork option, among them a changed workflow (see
    /// [`Run::fork_with`]); log directory, fsync mode and host are this mesh's.
    ///
    /// Errors: as [`Run::fork_with`], and `UNKNOWN_AGENT`.
    pub fn fork_with(&self, path: impl AsRef<Path>, mut options: ForkOptions) -> Result<RunResult> {
        let workflow = match &options.workflow {
            Some(w) => w.clone(),
            None => crate::replay::recorded_workflow(path.as_ref())?,
        };
        self.check_registered(&workflow)?;
        options.log_dir = self.log_dir.clone();
        options.fsync = self.fsync;
        options.host = Some(self.host.clone());
        options.watch = self.on_event.is_some();
        if options.observer.is_none() {
            options.observer = self.observer.clone();
        }
        if options.policy.is_none() {
            options.policy = self.policy.clone();
        }
        let mut run = Run::fork_with(path, options)?;
        self.drive(&mut run, &CancelHandle::new())?;
        result_of(run)
    }

    /// Drive a started run until it finishes or only human activations remain.
    ///
    /// Errors: `IO` from the log; the run's own failures are in its outcome.
    pub fn drive(&self, run: &mut Run, cancel: &CancelHandle) -> Result<()> {
        let (tx, rx) = channel::<Msg>();
        cancel.attach(Some(tx.clone()));
        if self.on_event.is_some() {
            run.watch();
        }
        let mut delivering = true;
        let result = self.drive_inner(run, cancel, &tx, &rx, &mut delivering);
        cancel.attach(None);
        self.deliver(run, &mut delivering);
        result
    }

    fn drive_inner(
        &self,
        run: &mut Run,
        cancel: &CancelHandle,
        tx: &Sender<Msg>,
        rx: &std::sync::mpsc::Receiver<Msg>,
        delivering: &mut bool,
    ) -> Result<()> {
        // In-flight host activations: id → deadline. Every activation gets a thread of its
        // own at once (the pool grows), so its deadline, counted from its dispatch, starts
        // when it is handed out.
        let mut in_flight: HashMap<u64, Option<Instant>> = HashMap::new();
        let mut blocked = false;
        loop {
            self.deliver(run, delivering);
            if let Some(reason) = cancel.reason() {
                run.cancel(&reason)?;
                return Ok(());
            }
            if run.is_finished()? {
                return Ok(());
            }
            let acts: Vec<Activation> = run
                .poll()?
                .into_iter()
                .filter(|a| match a.kind {
                    ActivationKind::Agent | ActivationKind::Tool => true,
                    ActivationKind::Human => false,
                })
                // Without an agent for it, an activation stays outstanding for the program
                // that has one (its step cannot end, so nothing after it starts).
                .filter(|a| {
                    let has = !self.stop_at_missing || self.has(a);
                    blocked |= !has;
                    has
                })
                .collect();
            if acts.len() == 1 && in_flight.is_empty() && acts[0].timeout_ms.is_none() {
                // A lone activation without a deadline runs inline: no thread hop per step.
                let act = &acts[0];
                let f = self.lookup(act);
                let completion = {
                    let direct = Mutex::new(&mut *run);
                    let ctx = Context::direct(
                        cancel.clone(),
                        act.id,
                        act.name.clone(),
                        &direct,
                        self.executors.clone(),
                    );
                    call(&f, act, &ctx)
                };
                if cancel.is_cancelled() {
                    continue;
                }
                run.complete_all(vec![(act.id, completion)])?;
                continue;
            }
            for act in acts {
                let deadline = deadline(&act, Instant::now());
                let id = act.id;
                let f = self.lookup(&act);
                let tx = tx.clone();
                let ctx = Context::driver(
                    cancel.clone(),
                    id,
                    act.name.clone(),
                    tx.clone(),
                    self.executors.clone(),
                );
                let submitted = self.pool.submit(Box::new(move || {
                    let completion = call(&f, &act, &ctx);
                    let _ = tx.send(Msg::Done(act.id, completion));
                }));
                match submitted {
                    Ok(()) => {
                        in_flight.insert(id, deadline);
                    }
                    Err(why) => {
                        let failure = Failure::error("ThreadSpawn", why);
                        run.complete_all(vec![(id, Completion::err(failure))])?;
                    }
                }
            }
            if in_flight.is_empty() {
                if blocked || run.status()? == RunStatus::Waiting {
                    return Ok(());
                }
                continue;
            }
            let next_deadline = in_flight.values().flatten().min().copied();
            let first = match next_deadline {
                Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(Error::internal("driver channel closed"))
                    }
                },
                None => Some(
                    rx.recv()
                        .map_err(|_| Error::internal("driver channel closed"))?,
                ),
            };
            // Every result already sent joins one commit (one fsync in `always` mode);
            // then deadlines that passed. A result for an activation that already timed
            // out is late: dropped.
            let mut batch = Vec::new();
            let mut next = first;
            while let Some(msg) = next {
                match msg {
                    Msg::Done(id, completion) => {
                        if in_flight.remove(&id).is_some() {
                            batch.push((id, completion));
                        }
                    }
                    // Answered at once: the agent waits for its ticket. (A call a thread of
                    // an agent makes after the agent returned is refused once its result
                    // is recorded.)
                    Msg::Call(c) => c.handle(run),
                    Msg::Cancel => {}
                }
                next = rx.try_recv().ok();
            }
            if cancel.is_cancelled() {
                continue;
            }
            let now = Instant::now();
            let mut expired: Vec<u64> = in_flight
                .iter()
                .filter(|(_, d)| d.is_some_and(|at| at <= now))
                .map(|(id, _)| *id)
                .collect();
            expired.sort_unstable();
            for id in expired {
                in_flight.remove(&id);
                batch.push((id, Completion::timed_out()));
            }
            if !batch.is_empty() {
                run.complete_all(batch)?;
            }
        }
    }

    fn has(&self, act: &Activation) -> bool {
        match act.kind {
            ActivationKind::Tool => self.tools.contains_key(&*act.name),
            ActivationKind::Agent => self.agents.contains_key(&*act.name),
            ActivationKind::Human => true,
        }
    }

    fn lookup(&self, act: &Activation) -> AgentFn {
        let table = match act.kind {
            ActivationKind::Tool => &self.tools,
            ActivationKind::Agent | ActivationKind::Human => &self.agents,
        };
        // Registration was checked before the run started.
        table.get(&*act.name).cloned().unwrap_or_else(|| {
            let name = act.name.to_string();
            Arc::new(move |_: &Activation, _: &Context| {
                Err(Failure::error(
                    "UnknownAgent",
                    format!("no agent or tool registered as '{name}'"),
                )
                .permanent()
                .into())
            })
        })
    }
}

/// When activation `act`, dispatched at `dispatched`, times out: its `timeoutMs` counted from
/// the moment it starts running, after its retry backoff (`delayMs`). Every host uses this
/// rule, so the same agents time out alike in Rust, Python and Node.
pub fn deadline(act: &Activation, dispatched: Instant) -> Option<Instant> {
    act.timeout_ms
        .map(|t| dispatched + Duration::from_millis(act.delay_ms.saturating_add(t)))
}

fn call(f: &AgentFn, act: &Activation, ctx: &Context) -> Completion {
    if act.delay_ms > 0 {
        std::thread::sleep(Duration::from_millis(act.delay_ms));
    }
    let started = Instant::now();
    let (result, usage) = match catch_unwind(AssertUnwindSafe(|| f(act, ctx))) {
        Ok(Ok(out)) => (Ok(out.output), out.usage),
        Ok(Err(e)) => (Err(e.failure), e.usage),
        Err(panic) => {
            let msg = crate::error::panic_message(panic.as_ref());
            (Err(Failure::error("panic", msg).permanent()), None)
        }
    };
    let mut completion = match result {
        Ok(v) => Completion::ok(v),
        Err(f) => Completion::err(f),
    };
    completion.usage = usage;
    completion.with_duration_us(started.elapsed().as_micros() as u64)
}

fn result_of(run: Run) -> Result<RunResult> {
    let outcome = run.outcome()?;
    let (waiting, needs) = run
        .outstanding()?
        .into_iter()
        .partition(|a| a.kind == ActivationKind::Human);
    Ok(RunResult {
        run_id: run.run_id().to_owned(),
        status: outcome.status,
        output: outcome.output,
        error: outcome.error,
        waiting,
        needs,
        log_path: run.log_path().map(Path::to_path_buf),
        log: run.into_log(),
    })
}
