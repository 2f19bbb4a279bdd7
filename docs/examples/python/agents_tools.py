"""Agents and tools: what an activation carries, what an agent may return, how it fails.

A planner, then two searches in parallel (one tool serving two nodes; the web search fails
once and is retried), then a writer that reports token usage. Prints the log's timeline.
"""
import tempfile
from typing import Any, Dict

import agentmesh
from agentmesh import Activation, ActivationError, Output, RawJson

wf = agentmesh.Workflow.from_dict({"name": "research", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "web", "type": "tool", "tool": "search", "after": ["plan"],
     "retry": {"maxAttempts": 3, "backoffMs": 10}},
    {"id": "papers", "type": "tool", "tool": "search", "after": ["plan"]},
    {"id": "summary", "type": "agent", "agent": "writer", "after": ["web", "papers"]},
]})

with tempfile.TemporaryDirectory() as logs:
    mesh = agentmesh.Mesh(log_dir=logs)

    @mesh.agent("planner")
    def planner(act: Activation) -> Dict[str, Any]:
        print(f"  {act.node}: kind={act.kind} name={act.name} step={act.step} "
              f"attempt={act.attempt} visit={act.visit} input={act.input}")
        return {"query": act.input["topic"]}

    @mesh.tool("search")
    def search(act: Activation) -> Any:
        # `web` and `papers` share this tool; the activation says which node it serves.
        if act.node == "web" and act.attempt == 1:
            raise ActivationError("HttpError", "503 Service Unavailable")  # retryable
        if act.node == "papers":
            # JSON text from elsewhere (an HTTP body, a cache) goes to the log as is.
            return RawJson('{"hits": 3, "source": "arxiv"}')
        return {"hits": 12, "query": act.deps["plan"]["query"], "delay_ms": act.delay_ms}

    @mesh.agent("writer")
    def writer(act: Activation) -> Output:
        hits = act.deps["web"]["hits"] + act.deps["papers"]["hits"]
        return Output(f"{hits} hits", usage={"inputTokens": 120, "outputTokens": 8})

    result = mesh.run(wf, input={"topic": "solid-state batteries"}, seed=1)
    print(result.status, result.output)
    assert result.log_path is not None  # None only for in-memory runs (no log_dir)
    for e in agentmesh.read_log(result.log_path):
        data = {k: v for k, v in e["data"].items() if k != "workflow"}  # skip runStarted's copy
        print(f"{e['seq']:3}  {e['type']:15} {e.get('node', '-'):8} {e.get('attempt', '-')!s:2} {data}")
