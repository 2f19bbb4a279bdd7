"""Tools agents call, with access rules, from Python and from an MCP server; then the run
re-executed against its log.

1. A host tool with an argument schema, an allowlist and a rate limit: the allowed agent's
   calls run (spaced by the limit), another agent is refused with PolicyDeniedError, bad
   arguments with InvalidArgumentError naming the path — neither is recorded.
2. The MCP reference server `server-everything` started with `Mesh.mcp`: its tools are
   listed (`Mesh.call_tools`, the form to offer them to an LLM) and called from an agent;
   the log records each call and its MCP result.
3. `Mesh.reexecute`: the same agents run again with every call answered from the log (the
   provider and the tools count what reaches them: nothing), then a changed prompt is
   NondeterminismError naming seq, sub and field.

It needs the MCP reference servers: set AGENTMESH_MCP_SERVERS to the folder they are
installed in (`.ci/run` installs them into target/mcp-servers):

    npm install --prefix target/mcp-servers --no-save @modelcontextprotocol/server-everything@2026.8.31
    AGENTMESH_MCP_SERVERS=target/mcp-servers python docs/examples/python/tools_mcp.py
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import agentmesh
from agentmesh import Activation, CallTicket

servers = os.environ.get("AGENTMESH_MCP_SERVERS")
if servers is None:
    print(
        "tools_mcp.py needs the MCP reference servers: set AGENTMESH_MCP_SERVERS to the folder "
        "they are installed in (npm install --prefix target/mcp-servers "
        "@modelcontextprotocol/server-everything@2026.8.31), then run it again."
    )
    # Skipped here; in CI the servers must be there.
    sys.exit(1 if os.environ.get("CI") else 0)
everything = Path(servers) / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
if not everything.is_file():
    sys.exit(f"{everything} is missing: install @modelcontextprotocol/server-everything there")

reached: List[str] = []  # what really reached the provider and the host tool


def provider(request: Dict[str, Any], ticket: CallTicket) -> Any:
    """A stand-in LLM (a native one is {"kind": "openai", "baseUrl": ...})."""
    reached.append("llm")
    return {"text": f"a note on: {request['messages'][0]['content']}", "finishReason": "stop"}


def search(arguments: Dict[str, Any]) -> List[str]:
    reached.append(f"search {arguments['q']}")
    return [f"{arguments['q']}: result {i}" for i in range(arguments.get("limit", 2))]


def make_mesh(log_dir: Any, prompt: str = "Summarise {sum}", say: bool = False) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.provider("llm", provider)
    mesh.call_tool(
        "search",
        search,
        description="Search the notes",
        schema={
            "type": "object",
            "properties": {"q": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
            "required": ["q"],
        },
        agents=["researcher"],  # only this agent may call it
        rate_limit=(1, 0.2),  # at most one live call per 0.2 s
    )
    # Every tool of the server, under its MCP name; the restriction applies to each of them.
    mesh.mcp(["node", str(everything), "stdio"], agents=["researcher"])

    @mesh.agent("researcher")
    def researcher(act: Activation) -> Dict[str, Any]:
        hits = [act.tool("search", {"q": q}) for q in ("logs", "replay", "forks")]
        echo = act.tool("echo", {"message": "hello MCP"})
        total = act.tool("get-sum", {"a": 2, "b": 3})
        try:
            act.tool("get-sum", {"a": "two", "b": 3})
        except agentmesh.InvalidArgumentError as e:
            if say:
                print("   bad arguments:", e)
        return {"hits": len(hits), "echo": echo["content"][0]["text"], "sum": total["content"][0]["text"]}

    @mesh.agent("writer")
    def writer(act: Activation) -> Dict[str, Any]:
        try:
            act.tool("search", {"q": "anything"})
        except agentmesh.PolicyDeniedError as e:
            if say:
                print("   writer:", e)
        reply = act.llm("llm", messages=[{"role": "user", "content": prompt.format(**act.deps["research"])}])
        return {"note": reply.text}

    return mesh


wf = agentmesh.Workflow.from_dict({"name": "tools-mcp", "nodes": [
    {"id": "research", "type": "agent", "agent": "researcher"},
    {"id": "write", "type": "agent", "agent": "writer", "after": ["research"]}]})

with tempfile.TemporaryDirectory() as logs:
    mesh = make_mesh(logs, say=True)
    tools = mesh.call_tools()
    print(f"1. {len(tools)} tools, e.g. get-sum: {tools['get-sum']['description']!r}")
    offer = [{"name": n, "description": t["description"], "parameters": t["schema"]} for n, t in tools.items()]
    print("   as LLM tools:", json.dumps(offer[0])[:90] + " ...")

    t0 = time.monotonic()
    result = mesh.run(wf, run_id="tools")
    took = time.monotonic() - t0
    print("2.", result.status, json.dumps(result.output))
    print(f"   three rate-limited searches took at least two windows: {took >= 0.4}")
    started = [e for e in agentmesh.read_log(f"{logs}/tools.jsonl") if e["type"] == "callStarted"]
    print("   calls recorded:", [(e["node"], e["data"]["name"]) for e in started])
    mesh.close()  # ends the MCP server (it would also end when the mesh is collected)

    print("3. re-executed against the log")
    reached.clear()
    again = make_mesh(None)
    report = again.reexecute(f"{logs}/tools.jsonl")
    print(f"   {report.activations} activations, {report.calls} calls answered from the log; reached: {reached}")
    assert reached == [], reached
    try:
        make_mesh(None, prompt="Summarise briefly {sum}").reexecute(f"{logs}/tools.jsonl")
    except agentmesh.NondeterminismError as e:
        print(f"   changed prompt: seq={e.seq} node={e.node} field={e.field}")
        print("  ", e.message.split(":")[0])
