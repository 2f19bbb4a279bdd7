"""Resume after a crash: a child process runs a fan-out and is killed (SIGKILL) while one
agent is still working. Resuming from the log runs only the work that was lost.
"""
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import List

import agentmesh
from agentmesh import Activation

wf = agentmesh.Workflow.from_dict({"name": "fan-out", "nodes": [
    {"id": "plan", "type": "agent", "agent": "worker"},
    {"id": "slow", "type": "agent", "agent": "worker", "after": ["plan"]},
    {"id": "a", "type": "agent", "agent": "worker", "after": ["plan"]},
    {"id": "b", "type": "agent", "agent": "worker", "after": ["plan"]},
    {"id": "join", "type": "agent", "agent": "worker", "after": ["a", "b", "slow"]},
]})
calls: List[str] = []


def make_mesh(log_dir: str, hang_on: str = "") -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)

    @mesh.agent("worker")
    def worker(act: Activation) -> str:
        calls.append(act.node)
        if act.node == hang_on:
            threading.Event().wait()  # still working when the process is killed
        return "+".join(sorted(act.deps)) if act.deps else act.node

    return mesh


if sys.argv[1:2] == ["--child"]:
    make_mesh(sys.argv[2], hang_on="slow").run(wf, run_id="crashy")
    sys.exit("unreachable: the parent kills this process")

with tempfile.TemporaryDirectory() as logs:
    log = os.path.join(logs, "crashy.jsonl")
    child = subprocess.Popen([sys.executable, __file__, "--child", logs])
    # Wait until a and b are committed to the log, then kill the child as a crash would.
    deadline = time.monotonic() + 10
    done: List[str] = []
    while time.monotonic() < deadline and not {"a", "b"} <= set(done):
        time.sleep(0.01)
        try:
            done = [e["node"] for e in agentmesh.read_log(log) if e["type"] == "agentCompleted"]
        except (agentmesh.AgentMeshIOError, agentmesh.LogCorruptError):
            pass  # not created yet, or the header is not written yet
    child.kill()
    child.wait()
    print("killed the child after it committed:", done)

    report = agentmesh.verify_log(log)
    print(f"log intact: last seq {report['lastSeq']}, holes {report['holes']}, finished {report['finished']}")

    result = make_mesh(logs).resume(log)
    print("agents called on resume:", calls)
    print(result.status, result.output)
