//! `agentmesh demo`: the project's main demo, built from `docs/examples/demo/`.
//!
//! It runs a market-brief workflow (three parallel researchers, a tool that fails once and is
//! retried, a bounded review loop, a human approval) until it waits for the approval, resumes
//! it with a fresh `Mesh` as another process would, then verifies and replays the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use agentmesh_core::{
    fingerprint, read_log, replay, state_at, verify_log, ActivationKind, Error, ErrorKind,
    EventData, Mesh, RunOptions, RunStatus, Script, Workflow,
};
use serde_json::json;

use crate::commands::{print, result_text};
use crate::exit::of_status as status_code;
use crate::hosted::CLI_HOST;
use crate::progress::Progress;
use crate::report::{self, Driven};
use crate::{status, timeline};

const WORKFLOW: &str = include_str!("../../docs/examples/demo/workflow.json");
const SCRIPT: &str = include_str!("../../docs/examples/demo/script.json");

/// The first `<base>/demo-<n>` that does not exist yet, created.
fn fresh_dir(base: &Path) -> Result<PathBuf, Error> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        Error::new(ErrorKind::Io, format!("{what} {}: {e}", p.display()))
    };
    std::fs::create_dir_all(base).map_err(|e| io("creating", base, e))?;
    for n in 1u32.. {
        let dir = base.join(format!("demo-{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("creating", &dir, e)),
        }
    }
    unreachable!("u32 range exhausted")
}

/// A mesh whose agents and tools follow the script and count their calls in `calls`.
fn counting_mesh(script: &Arc<Script>, workflow: &Workflow, calls: &Arc<AtomicU64>) -> Mesh {
    let mut mesh = Mesh::new().with_host(CLI_HOST);
    let names = workflow.agent_names().into_iter().map(|n| (n, false));
    for (name, is_tool) in names.chain(workflow.tool_names().into_iter().map(|n| (n, true))) {
        let (s, c) = (script.clone(), calls.clone());
        let f = move |act: &agentmesh_core::Activation, ctx: &agentmesh_core::Context| {
            c.fetch_add(1, Ordering::Relaxed);
            s.perform(act, ctx)
        };
        if is_tool {
            mesh.tool(name, f);
        } else {
            mesh.agent(name, f);
        }
    }
    mesh
}

fn unexpected(what: &str) -> Error {
    Error::new(ErrorKind::Internal, format!("demo: {what}"))
}

/// `agentmesh demo`.
pub fn demo(base: &Path) -> Result<u8, Error> {
    let workflow = Workflow::from_json(WORKFLOW)?;
    let script = Arc::new(Script::from_json(SCRIPT)?);
    let dir = fresh_dir(base)?;
    let calls = Arc::new(AtomicU64::new(0));

    print(&format!(
        "AgentMesh demo: workflow '{}' (plan -> web + analyst + compliance in parallel -> draft \
         <-> review loop -> human approval -> publish)\nlogs in {}\n\n\
         == 1. Run until a person must decide\n",
        workflow.name(),
        dir.display()
    ))?;
    let mesh = counting_mesh(&script, &workflow, &calls).with_log_dir(&dir);
    let options = RunOptions {
        input: script.input.clone(),
        seed: script.seed,
        run_id: script.run_id.clone(),
        ..RunOptions::default()
    };
    let first: Driven = mesh.run(&workflow, options)?.into();
    drop(mesh);
    print(&result_text(&first, None)?)?;
    if first.status != RunStatus::Waiting {
        return Ok(status_code(first.status));
    }
    let log = first
        .log_path
        .clone()
        .ok_or_else(|| unexpected("the run has no log file"))?;
    let calls_before_resume = calls.load(Ordering::Relaxed);

    // The person answers with the approvals in script.json, through a new Mesh that knows
    // nothing of the first one: everything it needs is in the log.
    let approvals: BTreeMap<String, serde_json::Value> = first
        .waiting
        .iter()
        .filter_map(|a| {
            let v = script.approvals.get(&*a.node)?;
            Some((a.node.to_string(), v.clone()))
        })
        .collect();
    let mut cmd = format!(
        "agentmesh resume {} --script docs/examples/demo/script.json",
        timeline::shell_quote(&log.display().to_string())
    );
    for (node, v) in &approvals {
        cmd.push_str(&format!(
            " --approve {}",
            timeline::shell_quote(&format!("{node}={v}"))
        ));
    }
    print(&format!(
        "\n{} agent and tool calls so far.\n\n\
         == 2. A person approves; a fresh Mesh resumes the run from its log\n\
         (from the repository root, the same as: {cmd})\n",
        calls_before_resume
    ))?;
    let mesh = counting_mesh(&script, &workflow, &calls);
    let done: Driven = mesh.resume(&log, approvals)?.into();
    drop(mesh);
    print(&result_text(&done, None)?)?;
    if done.status != RunStatus::Completed {
        return Ok(status_code(done.status));
    }

    print("\n== 3. Verify the log (hash chain, structure, seqs)\n")?;
    let report = verify_log(&log)?;
    let (header, events) = read_log(&log)?;
    let verdict = status::assess(&log, &Progress::of(&header, &events))?;
    print(&report::render_verify(&report, &verdict, header.host()))?;

    print("\n== 4. Replay the log without calling any agent\n")?;
    let calls_before_replay = calls.load(Ordering::Relaxed);
    let replayed = replay(&log, None)?;
    let replay_calls = calls.load(Ordering::Relaxed) - calls_before_replay;
    if replayed.outcome.status != done.status || replay_calls != 0 {
        return Err(unexpected("replay disagreed with the run"));
    }
    print(&format!(
        "replay       equal: {} events re-driven, {} agent calls (the run made {})\n\
         status       {}\n",
        replayed.events,
        replay_calls,
        calls_before_replay,
        replayed.outcome.status.as_str()
    ))?;

    print("\n== 5. Fingerprint\n")?;
    let fp = fingerprint(&log)?;
    if Some(&fp) != done.fingerprint.as_ref().ok() {
        return Err(unexpected(
            "the fingerprint of the file differs from the run's",
        ));
    }
    print(&format!(
        "fingerprint  {fp}\n             (blake3 of the canonical log: the same on every run of the demo)\n"
    ))?;
    print(&next_steps(&log)?)?;
    Ok(0)
}

/// Commands worth trying on the demo's log, checked against it before they are suggested.
fn next_steps(log: &Path) -> Result<String, Error> {
    let path = timeline::shell_quote(&log.display().to_string());
    let mut text = format!("\nTry next:\n  agentmesh inspect {path}\n");
    let (_, events) = read_log(log)?;
    // The approval's completion ends its step: a consistent point to fork at.
    let resolved = events.iter().find(|e| {
        matches!(e.data, EventData::Completed(ActivationKind::Human, _))
            && e.node.as_deref() == Some("approve")
    });
    if let Some(e) = resolved {
        if state_at(log, e.seq)?.fork_point {
            let set = timeline::shell_quote(&format!("approve={}", json!({"approved": false})));
            text.push_str(&format!(
                "  agentmesh inspect {path} --at {seq}\n  agentmesh fork {path} --at {seq} --set {set}   \
                 (what if the editor had said no?)\n",
                seq = e.seq
            ));
        }
    }
    text.push_str(&format!("  agentmesh replay {path}\n"));
    text.push_str(
        "(`agentmesh` is installed with the Python package (also `python -m agentmesh`) and the Node \
         package (`npx agentmesh`); in a checkout, `cargo run -q -p agentmesh-cli --`)\n",
    );
    Ok(text)
}
