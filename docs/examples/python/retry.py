"""Retrying a failed or cancelled run: the failed nodes run again with a fresh allowance of
attempts; finished work (the planner's paid LLM call) is kept.

An outage fails `fetch` on both of its attempts, so the run fails. Once the server is back, a
new process (a new Mesh) retries the log: only `fetch` and what follows run.
"""
import tempfile
from typing import Any, Dict, List

import agentmesh
from agentmesh import Activation, Retry

wf = (
    agentmesh.Workflow.builder("brief")
    .agent("plan", "planner")
    .tool("fetch", "http", after=["plan"], retry=Retry(max_attempts=2, backoff_ms=10))
    .agent("write", "writer", after=["fetch"])
    .build()
)

server_up = False
calls: List[str] = []


def make_mesh(logs: str) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=logs)

    @mesh.agent("planner")
    def planner(act: Activation) -> Dict[str, Any]:
        calls.append(f"plan#{act.attempt}")  # an expensive LLM call
        return {"query": act.input}

    @mesh.tool("http")
    def http(act: Activation) -> Dict[str, Any]:
        calls.append(f"fetch#{act.attempt}")
        if not server_up:
            raise ConnectionError("connection refused")
        return {"status": 200, "rows": 118}

    @mesh.agent("writer")
    def writer(act: Activation) -> str:
        calls.append(f"write#{act.attempt}")
        return f"{act.deps['fetch']['rows']} rows"

    return mesh


with tempfile.TemporaryDirectory() as logs:
    try:
        make_mesh(logs).run(wf, input="outages", run_id="brief-1")
    except agentmesh.AgentFailedError as e:
        print("failed:", e.message, "| calls:", calls)
        log = e.result.log_path or ""

    # Starting it again is refused, and the message says what to do.
    try:
        make_mesh(logs).run(wf, input="outages", run_id="brief-1")
    except agentmesh.RunExistsError as e:
        print("run again:", e.message.replace(logs, "<logs>"))

    server_up = True
    calls.clear()
    done = make_mesh(logs).retry(log)
    print("retried:", done.status, done.output, "| calls:", calls)
    types = [e["type"] for e in agentmesh.read_log(log)]
    print("events from the failure on:", types[types.index("runFailed"):][:5], "...")

    # A completed run is final: retry refuses it and writes nothing.
    try:
        make_mesh(logs).retry(log)
    except agentmesh.InvalidArgumentError as e:
        print("retry again:", e.message)
