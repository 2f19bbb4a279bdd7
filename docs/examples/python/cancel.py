"""Cancelling a run for good, from inside an agent (act.cancel_run) or from another thread
(CancelToken): runCancelled is recorded. Interrupting it with Ctrl-C (KeyboardInterrupt)
writes nothing instead: the run is resumed as after a crash.
"""
import os
import signal
import tempfile
import threading
from typing import List

import agentmesh
from agentmesh import Activation, CancelToken

guarded = agentmesh.Workflow.from_dict({"name": "guarded", "nodes": [
    {"id": "check", "type": "agent", "agent": "guard"},
    {"id": "act", "type": "agent", "agent": "actor", "after": ["check"]},
]})
slow = agentmesh.Workflow.from_dict({"name": "slow", "nodes": [
    {"id": "a", "type": "agent", "agent": "waiter"},
    {"id": "b", "type": "agent", "agent": "waiter"},
]})
done = threading.Event()  # set at the end: lets the abandoned agents return


def last_events(path: str) -> List[str]:
    return [e["type"] for e in agentmesh.read_log(path)][-3:]


with tempfile.TemporaryDirectory() as logs:
    mesh = agentmesh.Mesh(log_dir=logs)

    @mesh.agent("guard")
    def guard(act: Activation) -> str:
        if act.input.get("dangerous"):
            act.cancel_run("guard refused the input")  # before this result is recorded
        return "checked"

    @mesh.agent("actor")
    def actor(act: Activation) -> str:
        return "done"

    @mesh.agent("waiter")
    def waiter(act: Activation) -> str:
        done.wait(5)  # returns when the script ends: agent code is never interrupted
        return act.node

    # 1. From inside an agent.
    r = mesh.run(guarded, input={"dangerous": True})
    print("1.", r.status, r.error, last_events(r.log_path or ""))

    # 2. From another thread (a UI, a signal handler, a supervisor) with a CancelToken.
    token = CancelToken()
    threading.Timer(0.05, token.cancel, args=("operator pressed stop",)).start()
    r = mesh.run(slow, run_id="slow-1", cancel=token)
    print("2.", r.status, r.error, token.reason)

    # 3. Ctrl-C: nothing is written (the activations stay in flight), KeyboardInterrupt goes on.
    threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGINT)).start()  # as Ctrl-C
    path = os.path.join(logs, "slow-2.jsonl")
    try:
        mesh.run(slow, run_id="slow-2")
    except KeyboardInterrupt:
        print("3. KeyboardInterrupt;", last_events(path), agentmesh.check_log(path)["finished"])
    done.set()
    # ... so the run can be resumed: the interrupted activations run again.
    r = mesh.resume(path)
    print("4. resumed:", r.status, r.output)
