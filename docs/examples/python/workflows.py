"""One workflow written four ways: a dict, JSON text, a file, and the builder.

Each is validated by the core; all four are the same workflow, so they have the same hash.
An invalid definition raises InvalidWorkflowError naming the node and the field.
"""
import json
import os
import tempfile

import agentmesh
from agentmesh import Retry, Workflow

spec = {
    "name": "publish",
    "maxSteps": 50,
    "nodes": [
        {"id": "draft", "type": "agent", "agent": "writer"},
        {"id": "check", "type": "tool", "tool": "linter", "after": ["draft"],
         "timeoutMs": 5000, "retry": {"maxAttempts": 3, "backoffMs": 100, "backoffMultiplier": 2}},
        {"id": "approve", "type": "human", "prompt": "Publish?", "after": ["check"]},
        {"id": "route", "type": "branch", "after": ["approve"],
         "cases": [{"when": {"path": "/outputs/approve/approved", "eq": True}, "goto": "publish"}]},
        {"id": "publish", "type": "agent", "agent": "publisher"},
    ],
}

from_dict = Workflow.from_dict(spec)
from_json = Workflow.from_json(json.dumps(spec, indent=2))
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "publish.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    from_file = Workflow.from_file(path)

built = (
    Workflow.builder("publish")
    .agent("draft", "writer")
    .tool("check", "linter", after=["draft"], timeout_ms=5000,
          retry=Retry(max_attempts=3, backoff_ms=100, backoff_multiplier=2))
    .human("approve", "Publish?", after=["check"])
    .branch("route", [({"path": "/outputs/approve/approved", "eq": True}, "publish")],
            after=["approve"])
    .agent("publish", "publisher")
    .max_steps(50)
    .build()
)

print(built)
print("nodes:  ", built.node_ids())
print("agents: ", built.agent_names(), "tools:", built.tool_names())
print("same hash, four ways:", len({w.hash for w in (from_dict, from_json, from_file, built)}) == 1)
print("canonical:", built.to_json()[:72], "...")

try:
    Workflow.from_dict({"name": "w", "nodes": [
        {"id": "a", "type": "agent", "agent": "x", "after": ["zz"]}]})
except agentmesh.InvalidWorkflowError as e:
    print(e.code, e.node, e.field)
    print(e)
