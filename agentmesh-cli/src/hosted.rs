//! Whose work the CLI may do on a log it continues (`resume`, `fork`).
//!
//! A run the CLI started (header host `cli`) has scripted agents throughout: the CLI continues
//! it with the script and the default output for whatever the script does not give. A run a
//! program hosts (`python`, `node`, `rust`, or a log too old to say) has real agents and
//! tools: the CLI runs only the nodes a `--script` gives a behaviour for, never a default
//! output, and stops where the program's own agents and tools are needed, leaving that work
//! outstanding (as after a crash) for the program to resume.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use agentmesh_core::{
    Activation, Error, ErrorKind, FsyncMode, LogHeader, Mesh, NodeKind, Script, Workflow,
};

use crate::timeline::shell_quote;

/// The host the CLI records for the runs it starts.
pub const CLI_HOST: &str = "cli";

/// What hosts a log's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// The CLI: scripted agents, default outputs allowed.
    Cli,
    /// A program (`python`, `node`, `rust`, ...); `None` for a log that does not say.
    Program(Option<String>),
}

impl Host {
    /// The host recorded in a log's header.
    pub fn of(header: &LogHeader) -> Host {
        match header.host() {
            Some(CLI_HOST) => Host::Cli,
            other => Host::Program(other.map(str::to_owned)),
        }
    }

    /// The host to record in the header of a fork of this run: the fork's remaining work
    /// belongs to the same program, so the CLI never labels it as its own.
    pub fn for_fork(&self) -> Option<String> {
        match self {
            Host::Cli => Some(CLI_HOST.to_owned()),
            Host::Program(h) => h.clone(),
        }
    }
}

/// Whether the script gives node `id` (using agent or tool `name`) a behaviour for every visit
/// and attempt; `Ok(false)` when it names neither.
///
/// Errors: `INVALID_ARGUMENT` when it names the node but some visit or attempt would fall back
/// to the default output.
fn gives(script: &Script, id: &str, name: &str) -> Result<bool, Error> {
    let entries: Vec<_> = [id, name]
        .iter()
        .filter_map(|k| script.agents.get(*k))
        .collect();
    if entries.is_empty() {
        return Ok(false);
    }
    let catch_all = entries
        .iter()
        .flat_map(|list| list.iter())
        .any(|b| b.visit.is_none() && b.attempt.is_none());
    if catch_all {
        return Ok(true);
    }
    Err(Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "the script gives node '{id}' behaviours only for some visits or attempts; on a log a \
         program hosts the CLI never uses the default output, so add an entry without \
         \"visit\" and \"attempt\" to \"{id}\" or \"{name}\""
        ),
    ))
}

/// The agents and tools a mesh for this log may have: for the CLI's own runs, all of them;
/// for a program's run, each name whose every node the script gives.
#[derive(Debug)]
struct Allowed {
    agents: Vec<String>,
    tools: Vec<String>,
    /// Names left out although the script gives some of their nodes: name → nodes it lacks.
    partial: BTreeMap<String, Vec<String>>,
}

/// Nodes of one agent or tool name that the script gives, and those it does not.
type Coverage<'a> = (Vec<&'a str>, Vec<&'a str>);

fn allowed(host: &Host, script: &Script, workflow: &Workflow) -> Result<Allowed, Error> {
    let mut out = Allowed {
        agents: Vec::new(),
        tools: Vec::new(),
        partial: BTreeMap::new(),
    };
    if *host == Host::Cli {
        out.agents = workflow
            .agent_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        out.tools = workflow
            .tool_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        return Ok(out);
    }
    // (is a tool, name) → (nodes the script gives, nodes it does not)
    let mut by_name: BTreeMap<(bool, &str), Coverage> = BTreeMap::new();
    for node in &workflow.spec().nodes {
        let (is_tool, name) = match (node.kind, &node.agent, &node.tool) {
            (NodeKind::Agent, Some(a), _) => (false, a.as_str()),
            (NodeKind::Tool, _, Some(t)) => (true, t.as_str()),
            _ => continue,
        };
        let entry = by_name.entry((is_tool, name)).or_default();
        if gives(script, &node.id, name)? {
            entry.0.push(&node.id);
        } else {
            entry.1.push(&node.id);
        }
    }
    for ((is_tool, name), (given, missing)) in by_name {
        match (given.is_empty(), missing.is_empty()) {
            (false, true) => {
                let list = if is_tool {
                    &mut out.tools
                } else {
                    &mut out.agents
                };
                list.push(name.to_owned());
            }
            (false, false) => {
                out.partial.insert(
                    name.to_owned(),
                    missing.into_iter().map(str::to_owned).collect(),
                );
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A mesh to continue a log of `host` with `script` (see the module docs). For a program's
/// log it stops where an agent or tool the script does not give is needed.
///
/// Errors: `INVALID_ARGUMENT` (a script entry that would fall back to the default output on
/// a program's log).
pub fn mesh_for(
    host: &Host,
    script: Script,
    workflow: &Workflow,
    fsync: FsyncMode,
    policy: Option<agentmesh_core::policy::Policy>,
) -> Result<(Mesh, Partial), Error> {
    let allowed = allowed(host, &script, workflow)?;
    let mut mesh = Mesh::new().with_fsync(fsync).with_host(CLI_HOST);
    if let Some(prices) = script.price_table()? {
        mesh = mesh.with_prices(prices);
    }
    if let Some(p) = policy {
        mesh = mesh.with_policy(p);
    }
    if *host != Host::Cli {
        mesh = mesh.stop_at_missing();
    }
    let script = Arc::new(script);
    for name in &allowed.agents {
        let s = script.clone();
        mesh.agent(name, move |act, ctx| s.perform(act, ctx));
    }
    for name in &allowed.tools {
        let s = script.clone();
        mesh.tool(name, move |act, ctx| s.perform(act, ctx));
    }
    Ok((mesh, Partial(allowed.partial)))
}

/// The policy of a CLI run: `--policy`'s file, else the script's `policy`.
///
/// Errors: `POLICY_INVALID`.
pub fn policy_for(
    arg: Option<&Path>,
    script: &Script,
) -> Result<Option<agentmesh_core::policy::Policy>, Error> {
    match arg {
        Some(p) => agentmesh_core::policy::Policy::from_path(p).map(Some),
        None => script.policy(),
    }
}

/// Agent and tool names the script gives only some nodes of (name → the nodes it lacks).
#[derive(Debug, Default)]
pub struct Partial(BTreeMap<String, Vec<String>>);

/// How the program that hosts `host`'s logs resumes the one at `log`.
fn resume_calls(host: &Host, log: &Path) -> Vec<String> {
    let path = serde_json::Value::String(log.display().to_string()).to_string();
    let python = format!("mesh.resume({path})   (Python)");
    let node = format!("await mesh.resume({path})   (Node)");
    let rust = format!("mesh.resume({path}, approvals)   (Rust)");
    match host {
        Host::Program(Some(h)) if h == "python" => vec![python],
        Host::Program(Some(h)) if h == "node" => vec![node],
        Host::Program(Some(h)) if h == "rust" => vec![rust],
        _ => vec![python, node, rust],
    }
}

/// What to do when the CLI stopped where the host program's agents and tools are needed:
/// which program should resume the run, and how.
pub fn needs_advice(host: &Host, log: &Path, needs: &[Activation], partial: &Partial) -> String {
    let who = match host {
        Host::Program(Some(h)) => format!("a {h} program"),
        Host::Program(None) => "a program (the log does not say which)".to_owned(),
        Host::Cli => "the CLI".to_owned(),
    };
    let mut out = format!(
        "next         this run was started by {who}: the program that registers the agents and \
         tools above should resume it,\n"
    );
    for call in resume_calls(host, log) {
        let _ = writeln!(out, "               {call}");
    }
    let _ = writeln!(
        out,
        "             (the CLI runs only the nodes a --script gives on a log a program hosts; \
         it never invents their outputs)"
    );
    for a in needs {
        if let Some(missing) = partial.0.get(&*a.name) {
            let _ = writeln!(
                out,
                "             {} '{}' also runs {}, which the script does not give: script \
                 the name, or every node that uses it",
                a.kind.as_str(),
                a.name,
                missing.join(", ")
            );
        }
    }
    out
}

/// `agentmesh resume LOG [--script S]`: the start of the command that continues a run.
pub fn resume_command(log: &Path, script: Option<&Path>, policy: Option<&Path>) -> String {
    let mut cmd = format!(
        "agentmesh resume {}",
        shell_quote(&log.display().to_string())
    );
    if let Some(s) = script {
        cmd.push_str(" --script ");
        cmd.push_str(&shell_quote(&s.display().to_string()));
    }
    if let Some(p) = policy {
        cmd.push_str(" --policy ");
        cmd.push_str(&shell_quote(&p.display().to_string()));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workflow() -> Workflow {
        Workflow::from_value(json!({"name": "w", "nodes": [
            {"id": "a", "type": "agent", "agent": "worker"},
            {"id": "b", "type": "agent", "agent": "worker"},
            {"id": "t", "type": "tool", "tool": "save", "after": ["a", "b"]},
            {"id": "h", "type": "human", "after": ["t"]}
        ]}))
        .unwrap()
    }

    fn script(agents: serde_json::Value) -> Script {
        Script::from_json(&json!({ "agents": agents }).to_string()).unwrap()
    }

    #[test]
    fn the_cli_s_own_runs_get_every_agent_and_tool() {
        let a = allowed(&Host::Cli, &Script::default(), &workflow()).unwrap();
        assert_eq!(
            (a.agents, a.tools),
            (vec!["worker".into()], vec!["save".into()])
        );
    }

    #[test]
    fn a_program_s_run_gets_only_names_the_script_gives_for_every_node() {
        let host = Host::Program(Some("python".into()));
        let a = allowed(&host, &Script::default(), &workflow()).unwrap();
        assert!(a.agents.is_empty() && a.tools.is_empty() && a.partial.is_empty());

        let a = allowed(
            &host,
            &script(json!({"a": [{"output": 1}], "save": [{"output": 2}]})),
            &workflow(),
        )
        .unwrap();
        assert!(
            a.agents.is_empty(),
            "b uses worker too and has no behaviour"
        );
        assert_eq!(a.partial["worker"], ["b"]);
        assert_eq!(a.tools, ["save"]);

        let s =
            script(json!({"a": [{"output": 1}], "b": [{"visit": 1, "output": 2}, {"output": 3}]}));
        assert_eq!(allowed(&host, &s, &workflow()).unwrap().agents, ["worker"]);
        let s = script(json!({"worker": [{"output": 1}]}));
        assert_eq!(allowed(&host, &s, &workflow()).unwrap().agents, ["worker"]);
    }

    #[test]
    fn an_entry_that_would_fall_back_to_the_default_output_is_refused() {
        let host = Host::Program(None);
        let s = script(json!({"t": [{"attempt": 1, "error": {"type": "E", "message": "m"}}]}));
        let e = allowed(&host, &s, &workflow()).unwrap_err();
        assert_eq!(e.code(), "INVALID_ARGUMENT");
        assert!(e.to_string().contains("node 't'"), "{e}");
        // The CLI's own runs keep the default outputs.
        assert!(allowed(&Host::Cli, &s, &workflow()).is_ok());
    }

    #[test]
    fn forks_keep_the_program_as_their_host() {
        assert_eq!(Host::Cli.for_fork().as_deref(), Some("cli"));
        assert_eq!(
            Host::Program(Some("node".into())).for_fork().as_deref(),
            Some("node")
        );
        assert_eq!(Host::Program(None).for_fork(), None);
    }

    #[test]
    fn resume_command_quotes_paths_and_names_the_script() {
        assert_eq!(
            resume_command(
                Path::new("logs/r.jsonl"),
                Some(Path::new("my script.json")),
                None
            ),
            "agentmesh resume logs/r.jsonl --script 'my script.json'"
        );
    }
}
