"""Telemetry: a run observed live (metrics, and spans when a collector is configured), then
the same run's log exported as a Mermaid DAG, a Chrome trace and an HTML timeline.

Set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:4318) to send the spans to a collector;
without it nothing leaves the process.
"""
import json
import os
import tempfile
from typing import Any, Dict

import agentmesh

telemetry = agentmesh.Telemetry.from_env()

wf = agentmesh.Workflow.from_dict({"name": "telemetry-demo", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "a", "type": "agent", "agent": "researcher", "after": ["plan"]},
    {"id": "b", "type": "agent", "agent": "researcher", "after": ["plan"],
     "retry": {"maxAttempts": 2, "backoffMs": 0}},
    {"id": "write", "type": "agent", "agent": "writer", "after": ["a", "b"]},
]})


def provider(request: Dict[str, Any], ticket: agentmesh.CallTicket) -> Any:
    return {"text": "notes", "finishReason": "stop"}, {"inputTokens": 20, "outputTokens": 5}


with tempfile.TemporaryDirectory() as logs:
    mesh = agentmesh.Mesh(log_dir=logs, telemetry=telemetry)
    mesh.provider("local", provider)
    mesh.add_agent("planner", lambda act: {"plan": ["a", "b"]})

    @mesh.agent("researcher")
    def researcher(act: agentmesh.Activation) -> Dict[str, Any]:
        if act.node == "b" and act.attempt == 1:
            raise ConnectionError("flaky upstream")  # retried: a second span, linked
        reply = act.llm("local", model="smollm2", messages=[{"role": "user", "content": act.node}])
        return {"notes": reply.text}

    mesh.add_agent("writer", lambda act: {"text": "done"})
    result = mesh.run(wf)
    print("run:", result.status)

    metrics = telemetry.metrics_text()
    for line in metrics.splitlines():
        if line.startswith(("agentmesh_runs_total", "agentmesh_retries_total")):
            print("metric:", line)
    assert result.log_path is not None
    print(agentmesh.export_log(result.log_path, "mermaid").splitlines()[1])
    spans = [json.loads(line) for line in agentmesh.export_log(result.log_path, "spans").splitlines()]
    print("spans:", ", ".join(sorted({s["name"] for s in spans})))
    chrome = json.loads(agentmesh.export_log(result.log_path, "chrome"))
    print("chrome trace events:", str(len(chrome["traceEvents"]) > 0).lower())
    html = agentmesh.export_log(result.log_path, "html")
    print("html timeline bytes > 0:", str(len(html) > 0).lower())
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        telemetry.flush(5.0)
        print("exported:", telemetry.export_stats)
