"""Where agents run: the activations of a step in parallel on worker threads; a step of one
activation (without timeoutMs, and without a cancel= token) on the thread that called run.
"""
import threading
from typing import Any, Dict, List, Tuple

import agentmesh
from agentmesh import Activation

wf = agentmesh.Workflow.from_dict({"name": "fan-out", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "web", "type": "tool", "tool": "fetch", "after": ["plan"]},
    {"id": "papers", "type": "tool", "tool": "fetch", "after": ["plan"]},
    {"id": "experts", "type": "tool", "tool": "fetch", "after": ["plan"]},
    {"id": "join", "type": "agent", "agent": "joiner", "after": ["web", "papers", "experts"]},
]})
mesh = agentmesh.Mesh()  # at most max_workers=32 worker threads, shared by this mesh's runs
seen: List[Tuple[int, str, str]] = []
all_three = threading.Barrier(3, timeout=5)  # passes only when three fetches run at once


def record(act: Activation) -> None:
    main = threading.current_thread() is threading.main_thread()
    seen.append((act.step, act.node, "the calling thread" if main else "a worker thread"))


@mesh.agent("planner")
def planner(act: Activation) -> str:
    record(act)
    return "plan"


@mesh.tool("fetch")
def fetch(act: Activation) -> Dict[str, Any]:
    record(act)
    all_three.wait()  # would raise BrokenBarrierError if the fetches ran one after another
    return {"source": act.node}


@mesh.agent("joiner")
def joiner(act: Activation) -> str:
    record(act)
    return "+".join(sorted(act.deps))


result = mesh.run(wf)
order = wf.node_ids()
for step, node, thread in sorted(seen, key=lambda s: (s[0], order.index(s[1]))):
    print(f"step {step}  {node:8} ran on {thread}")
print(result.status, result.output)
