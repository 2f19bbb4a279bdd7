"""Fixing a failed run without redoing its work: fork it at its last step end with the fixed
workflow. The history up to there must replay equal under the new workflow; then only the
nodes after the fork point run.

The bug: `publish` runs after the branch `gate` only, and a node gets the outputs of its
direct `after` entries (a branch has none), so `act.deps["write"]` is a KeyError. The fix
lists `write` in `publish`'s `after`. Loading the buggy workflow already warns about it
(an AgentMeshWarning, and `Workflow.warnings`).
"""
import tempfile
from typing import Any, Dict, List

import agentmesh
from agentmesh import Activation


def brief(fixed: bool) -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict({"name": "brief", "nodes": [
        {"id": "write", "type": "agent", "agent": "writer"},
        {"id": "gate", "type": "branch", "after": ["write"],
         "cases": [{"when": {"path": "/outputs/write/ok", "eq": True}, "goto": "publish"}],
         "default": "archive"},
        {"id": "publish", "type": "agent", "agent": "publisher",
         "after": ["gate", "write"] if fixed else ["gate"]},
        {"id": "archive", "type": "agent", "agent": "publisher", "after": ["gate", "write"]},
    ]})


calls: List[str] = []

with tempfile.TemporaryDirectory() as logs:
    mesh = agentmesh.Mesh(log_dir=logs)

    @mesh.agent("writer")
    def writer(act: Activation) -> Dict[str, Any]:
        calls.append(act.node)  # an expensive LLM call
        return {"ok": True, "text": "Bees eat nectar."}

    @mesh.agent("publisher")
    def publisher(act: Activation) -> Dict[str, Any]:
        calls.append(act.node)
        return {"published": act.deps["write"]["text"]}

    buggy = brief(fixed=False)  # warns on stderr: AgentMeshWarning
    print("warning:", buggy.warnings[0].split(", and")[0])
    try:
        mesh.run(buggy, run_id="brief-1")
    except agentmesh.AgentFailedError as e:
        print("failed:", e.message)
        log = e.result.log_path or ""

    # The last step end before the failure: the fork point that keeps all finished work.
    at = max(s["seq"] for s in agentmesh.history(log) if s["forkPoint"] and not s["failed"])
    calls.clear()
    fixed = mesh.fork(log, at, workflow=brief(fixed=True))
    print(f"fork at seq {at}:", fixed.status, fixed.output, "| agents called:", calls)
    print("parent:", agentmesh.read_header(fixed.log_path or "")["parent"])
