//! `agentmesh resume` and `agentmesh fork`: continue a run from its log, doing only the work
//! the CLI may do on it (see [`crate::hosted`]).

use std::path::{Path, PathBuf};

use agentmesh_core::{
    read_header, read_log, recorded_workflow, CancelHandle, Error, ForkOptions, FsyncMode,
    ResumeOptions, Run, Script, Workflow,
};
use serde_json::json;

use crate::commands::{load_script, parse_assignments, print, result_text};
use crate::exit;
use crate::hosted::{self, Host, Partial};
use crate::progress::Progress;
use crate::report::Driven;

/// Arguments of `agentmesh fork`.
pub struct ForkArgs {
    pub log: PathBuf,
    pub at: u64,
    pub set: Vec<String>,
    pub run_id: Option<String>,
    pub log_dir: Option<PathBuf>,
    pub script: Option<PathBuf>,
    pub workflow: Option<PathBuf>,
    pub fsync: FsyncMode,
    pub policy: Option<PathBuf>,
}

/// Arguments of `agentmesh resume`.
pub struct ResumeArgs {
    pub log: PathBuf,
    pub approve: Vec<String>,
    pub script: Option<PathBuf>,
    pub fsync: FsyncMode,
    pub policy: Option<PathBuf>,
}

/// Arguments of `agentmesh retry`.
pub struct RetryArgs {
    pub log: PathBuf,
    pub script: Option<PathBuf>,
    pub fsync: FsyncMode,
    pub policy: Option<PathBuf>,
}

/// Print the outcome of a continued run; the exit code of its status.
fn show(
    r: &Driven,
    host: &Host,
    partial: &Partial,
    script: Option<&Path>,
    policy: Option<&Path>,
) -> Result<u8, Error> {
    let resume = r
        .log_path
        .as_deref()
        .map(|p| hosted::resume_command(p, script, policy));
    let mut text = result_text(r, resume.as_deref())?;
    if let (true, Some(log)) = (r.needs_host(), r.log_path.as_deref()) {
        text.push_str(&hosted::needs_advice(host, log, &r.needs, partial));
    }
    print(&text)?;
    Ok(exit::of_driven(r))
}

/// `agentmesh resume`.
pub fn resume(a: ResumeArgs) -> Result<u8, Error> {
    let mut approvals =
        parse_assignments("--approve", &a.approve, Some(&json!({"approved": true})))?;
    let script = load_script(a.script.as_deref())?;
    let host = Host::of(&read_header(&a.log)?);
    let workflow = recorded_workflow(&a.log)?;
    // The script's approvals answer the human nodes now waiting that no --approve names.
    if !script.approvals.is_empty() {
        let (header, events) = read_log(&a.log)?;
        let progress = Progress::of(&header, &events);
        for act in progress.waiting() {
            if let Some(v) = script.approvals.get(&act.node) {
                approvals
                    .entry(act.node.clone())
                    .or_insert_with(|| v.clone());
            }
        }
    }
    let policy = hosted::policy_for(a.policy.as_deref(), &script)?;
    let (mesh, partial) = hosted::mesh_for(&host, script, &workflow, a.fsync, policy.clone())?;
    let options = ResumeOptions {
        fsync: a.fsync,
        approvals,
        policy,
        ..ResumeOptions::default()
    };
    let mut run = Run::resume_with(&a.log, options)?;
    mesh.drive(&mut run, &CancelHandle::new())?;
    let driven = Driven::of_run(run)?;
    show(
        &driven,
        &host,
        &partial,
        a.script.as_deref(),
        a.policy.as_deref(),
    )
}

/// `agentmesh fork`.
pub fn fork(a: ForkArgs) -> Result<u8, Error> {
    let overrides = parse_assignments("--set", &a.set, None)?;
    let script: Script = load_script(a.script.as_deref())?;
    let host = Host::of(&read_header(&a.log)?);
    let given = a.workflow.as_deref().map(Workflow::from_file).transpose()?;
    let workflow = match &given {
        Some(w) => w.clone(),
        None => recorded_workflow(&a.log)?,
    };
    // Forks live beside their parent unless told otherwise.
    let dir = a.log_dir.unwrap_or_else(|| match a.log.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    });
    let policy = hosted::policy_for(a.policy.as_deref(), &script)?;
    let (mesh, partial) = hosted::mesh_for(&host, script, &workflow, a.fsync, policy.clone())?;
    let options = ForkOptions {
        seq: a.at,
        overrides,
        run_id: a.run_id,
        log_dir: Some(dir),
        fsync: a.fsync,
        workflow: given,
        host: host.for_fork(),
        watch: false,
        observer: None,
        prices: None,
        policy,
    };
    let mut run = Run::fork_with(&a.log, options)?;
    mesh.drive(&mut run, &CancelHandle::new())?;
    let driven = Driven::of_run(run)?;
    show(
        &driven,
        &host,
        &partial,
        a.script.as_deref(),
        a.policy.as_deref(),
    )
}

/// `agentmesh retry`.
pub fn retry(a: RetryArgs) -> Result<u8, Error> {
    let script = load_script(a.script.as_deref())?;
    let host = Host::of(&read_header(&a.log)?);
    let workflow = recorded_workflow(&a.log)?;
    let policy = hosted::policy_for(a.policy.as_deref(), &script)?;
    let (mesh, partial) = hosted::mesh_for(&host, script, &workflow, a.fsync, policy.clone())?;
    let options = ResumeOptions {
        fsync: a.fsync,
        policy,
        ..ResumeOptions::default()
    };
    let mut run = Run::retry(&a.log, options)?;
    mesh.drive(&mut run, &CancelHandle::new())?;
    let driven = Driven::of_run(run)?;
    show(
        &driven,
        &host,
        &partial,
        a.script.as_deref(),
        a.policy.as_deref(),
    )
}
