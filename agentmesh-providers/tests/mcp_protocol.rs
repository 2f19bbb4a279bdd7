//! Protocol corners the reference servers never show, against a scripted peer (a few lines
//! of Node that speak JSON-RPC over stdio): older and unknown protocol versions, `tools/list`
//! pagination, a late answer to a request that timed out, requests from the server, tool list
//! changes, and a peer that breaks the protocol mid-session. Needs `node` on PATH.

use std::time::Duration;

use agentmesh_core::ErrorKind;
use agentmesh_providers::mcp::{McpOptions, McpServer, MAX_TOOL_PAGES};
use serde_json::{json, Value};

/// The peer. `process.argv[1]` picks the protocol version it answers (`old`, `future`) or
/// an endless `tools/list`; the tool name picks the behaviour of `tools/call`.
const PEER: &str = r#"
const mode = process.argv[1] || "normal";
const out = (m) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...m }) + "\n");
const seen = [];
const replies = {};
let slowId = null;
let askId = null;
function handle(m) {
  if (m.method === undefined) {
    replies[m.id] = m;
    if (askId !== null && Object.keys(replies).length === 2) {
      out({ id: askId, result: { content: [], structuredContent: replies } });
      askId = null;
    }
    return;
  }
  if (m.id === undefined) { seen.push(m); return; }
  const reply = (result) => out({ id: m.id, result });
  const text = (t) => reply({ content: [{ type: "text", text: t }] });
  if (m.method === "initialize") {
    const v = { old: "2024-11-05", future: "2099-01-01" }[mode] || "2025-06-18";
    return reply({ protocolVersion: v, capabilities: { tools: { listChanged: true } },
                   serverInfo: { name: "scripted", version: "1.0" } });
  }
  if (m.method === "tools/list") {
    const cursor = m.params && m.params.cursor;
    if (mode === "endless") return reply({ tools: [], nextCursor: "again" });
    if (!cursor) return reply({ tools: [{ name: "a", inputSchema: { type: "object" } }], nextCursor: "page-2" });
    if (cursor === "page-2") return reply({ tools: [{ name: "b", description: "second page", inputSchema: { type: "object" } }] });
    return out({ id: m.id, error: { code: -32602, message: "bad cursor " + cursor } });
  }
  switch (m.params.name) {
    case "slow": slowId = m.id; return;
    case "fast":
      if (slowId !== null) out({ id: slowId, result: { content: [{ type: "text", text: "late" }] } });
      return text("fast");
    case "ask-client":
      askId = m.id;
      out({ id: "srv-ping", method: "ping" });
      return out({ id: 41, method: "sampling/createMessage", params: { messages: [], maxTokens: 1 } });
    case "change-tools":
      out({ method: "notifications/tools/list_changed" });
      return text("changed");
    case "noisy":
      out({ method: "notifications/message", params: { level: "info", data: "working" } });
      out({ method: "notifications/progress", params: { progressToken: 1, progress: 1 } });
      return text("quiet now");
    case "notifications": return reply({ content: [], structuredContent: { seen } });
    case "not-jsonrpc": return process.stdout.write(JSON.stringify({ id: m.id, result: {} }) + "\n");
    case "no-result": return out({ id: m.id });
    case "die": process.stderr.write("dying on purpose\n"); return process.exit(7);
    default: return reply({ content: [{ type: "text", text: "unknown " + m.params.name }], isError: true });
  }
}
let buf = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  buf += chunk;
  for (let i; (i = buf.indexOf("\n")) >= 0; ) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    if (line.trim()) handle(JSON.parse(line));
  }
});
process.stdin.on("end", () => process.exit(0));
"#;

fn peer(mode: &str) -> Result<McpServer, agentmesh_providers::CallError> {
    let command = ["node", "-e", PEER, mode].map(String::from);
    let options = McpOptions {
        init_timeout: Duration::from_secs(20),
        call_timeout: Duration::from_secs(20),
        ..McpOptions::default()
    };
    McpServer::spawn(&command, &[], None, options)
}

fn text(server: &McpServer, tool: &str) -> String {
    server.call_tool(tool, json!({})).unwrap().text()
}

#[test]
fn older_supported_versions_are_accepted() {
    assert_eq!(
        peer("normal").unwrap().info().protocol_version,
        "2025-06-18"
    );
    let old = peer("old").unwrap();
    assert_eq!(old.info().protocol_version, "2024-11-05");
    assert_eq!(
        (old.info().name.as_str(), old.info().version.as_str()),
        ("scripted", "1.0")
    );
}

#[test]
fn an_unsupported_version_ends_the_session_with_a_typed_error() {
    let e = peer("future").unwrap_err();
    assert_eq!(
        (e.kind, e.error_type.as_str()),
        (ErrorKind::ProviderError, "McpProtocolError")
    );
    assert!(e.message.contains("\"2099-01-01\""), "{}", e.message);
    assert!(
        e.message
            .contains("2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05"),
        "{}",
        e.message
    );
}

#[test]
fn list_tools_follows_next_cursor_and_stops_a_cursor_that_never_ends() {
    let server = peer("normal").unwrap();
    let tools = server.list_tools().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(tools[1].description, "second page");
    assert_eq!(tools[0].description, "");

    let endless = peer("endless").unwrap();
    let e = endless.list_tools().unwrap_err();
    assert_eq!(e.error_type, "McpProtocolError");
    assert!(
        e.message.contains(&format!("after {MAX_TOOL_PAGES} pages")),
        "{}",
        e.message
    );
    // The session itself is fine.
    assert_eq!(text(&endless, "fast"), "fast");
}

#[test]
fn a_late_answer_to_a_timed_out_call_is_dropped_and_the_call_cancelled() {
    let server = peer("normal").unwrap();
    let e = server
        .call_tool_with_timeout("slow", json!({}), Duration::from_millis(200))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    // The peer now answers the slow call ("late") right before this one.
    assert_eq!(text(&server, "fast"), "fast");
    assert_eq!(text(&server, "fast"), "fast");
    let seen = server
        .call_tool("notifications", Value::Null)
        .unwrap()
        .structured_content
        .unwrap();
    let methods: Vec<&str> = seen["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        ["notifications/initialized", "notifications/cancelled"]
    );
    let cancelled = &seen["seen"][1]["params"];
    // Request 1 was initialize, 2 the slow call.
    assert_eq!(cancelled["requestId"], 2);
}

#[test]
fn server_requests_get_ping_answered_and_everything_else_refused() {
    let server = peer("normal").unwrap();
    let result = server.call_tool("ask-client", json!({})).unwrap();
    let replies = result.structured_content.unwrap();
    assert_eq!(replies["srv-ping"]["result"], json!({}));
    assert_eq!(replies["41"]["error"]["code"], -32601);
    let message = replies["41"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("sampling/createMessage"), "{message}");
}

#[test]
fn notifications_between_request_and_response_are_handled() {
    let server = peer("normal").unwrap();
    assert!(server.tools_stale(), "never listed");
    server.list_tools().unwrap();
    assert!(!server.tools_stale());
    assert_eq!(text(&server, "noisy"), "quiet now");
    assert!(
        !server.tools_stale(),
        "logging and progress do not touch the tool list"
    );
    assert_eq!(text(&server, "change-tools"), "changed");
    assert!(server.tools_stale());
    server.list_tools().unwrap();
    assert!(!server.tools_stale());
}

#[test]
fn a_line_that_is_not_jsonrpc_ends_the_session_for_every_caller() {
    for (tool, what) in [
        ("not-jsonrpc", "`jsonrpc` is not \"2.0\""),
        ("no-result", "neither `result` nor `error`"),
    ] {
        let server = peer("normal").unwrap();
        let e = server.call_tool(tool, json!({})).unwrap_err();
        assert_eq!(
            (e.kind, e.error_type.as_str()),
            (ErrorKind::ProviderError, "McpProtocolError")
        );
        assert!(e.message.contains(what), "{}", e.message);
        assert_eq!(server.call_tool("fast", json!({})).unwrap_err(), e);
    }
}

#[test]
fn a_server_that_dies_mid_call_reports_its_exit_code_and_stderr() {
    let server = peer("normal").unwrap();
    assert_eq!(text(&server, "fast"), "fast");
    let e = server.call_tool("die", json!({})).unwrap_err();
    assert_eq!(e.error_type, "McpServerExited");
    assert!(e.message.contains("exit status: 7"), "{}", e.message);
    assert!(e.message.contains("dying on purpose"), "{}", e.message);
}
