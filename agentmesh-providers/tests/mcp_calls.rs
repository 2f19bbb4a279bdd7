//! MCP tools called by agents through the run: discovered from the real server-everything,
//! arguments validated against their schemas, calls recorded and answered from the log on
//! resume. Needs `AGENTMESH_MCP_SERVERS` (see tests/mcp_real.rs); skips without it unless CI.
#![cfg(unix)]

use std::path::PathBuf;
use std::sync::Arc;

use agentmesh_core::{read_log, EventData, Mesh, RunOptions, RunStatus, Workflow};
use agentmesh_providers::mcp::{McpOptions, McpServer};
use agentmesh_providers::mcp_tools;
use serde_json::json;

fn everything() -> Option<Arc<McpServer>> {
    let dir = match std::env::var_os("AGENTMESH_MCP_SERVERS") {
        Some(d) => PathBuf::from(d),
        None if std::env::var_os("CI").is_some() => panic!("AGENTMESH_MCP_SERVERS is not set"),
        None => {
            eprintln!("skipped: AGENTMESH_MCP_SERVERS is not set");
            return None;
        }
    };
    let entry = dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let cmd = [
        "node".to_string(),
        entry.display().to_string(),
        "stdio".into(),
    ];
    Some(Arc::new(
        McpServer::spawn(&cmd, &[], None, McpOptions::default()).unwrap(),
    ))
}

fn mesh(server: &Arc<McpServer>, dir: &std::path::Path) -> Mesh {
    let mut mesh = Mesh::new().with_log_dir(dir);
    for (name, tool) in mcp_tools(server).unwrap() {
        mesh.call_tool(&name, tool);
    }
    mesh.agent("adder", |_, ctx| {
        let sum = ctx
            .tool("get-sum", json!({"a": 17, "b": 25}))
            .map_err(|e| agentmesh_core::Failure::error("ToolError", e.to_string()))?;
        // Bad arguments never reach the server: a typed error naming the path.
        let bad = ctx.tool("get-sum", json!({"a": "seventeen", "b": 25})).unwrap_err();
        let missing = ctx.tool("no-such-tool", json!({})).unwrap_err();
        Ok(json!({"sum": *sum.response, "bad": [bad.code(), bad.message()], "missing": missing.code()}).into())
    });
    mesh
}

#[test]
fn mcp_tools_are_discovered_validated_recorded_and_answered_from_the_log() {
    let Some(server) = everything() else { return };
    let dir = tempfile::tempdir().unwrap();
    let wf = Workflow::from_value(json!({"name": "mcp", "nodes": [
        {"id": "add", "type": "agent", "agent": "adder"}]}))
    .unwrap();
    let r = mesh(&server, dir.path())
        .run(&wf, RunOptions::default())
        .unwrap();
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.error);
    let out = r.output.clone().unwrap()["add"].clone();
    assert!(out["sum"].to_string().contains("42"), "{out}");
    assert_eq!(out["bad"][0], "INVALID_ARGUMENT");
    assert!(out["bad"][1].as_str().unwrap().contains("at /a"), "{out}");
    assert_eq!(out["missing"], "UNKNOWN_AGENT");
    let log = r.log_path.clone().unwrap();
    let (_, events) = read_log(&log).unwrap();
    let calls: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::CallStarted(s) => Some((s.name.to_string(), s.request.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "the refused calls were never recorded: {calls:?}"
    );
    assert_eq!(calls[0].0, "get-sum");
    // Re-execute against a fresh server: the recorded answer serves the agent (the core
    // tests count that an answered call never reaches its executor).
    drop(server);
    let gone = everything().unwrap();
    let report = mesh(&gone, dir.path()).reexecute(&log).unwrap();
    assert_eq!(report.calls, 1);
}
