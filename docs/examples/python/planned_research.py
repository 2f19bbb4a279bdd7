"""Planner -> map(researcher) -> writer: the planner decides how many researchers run.

The planner answers as a model often does, with almost-JSON in a code fence; the node's output
contract repairs it and checks it against a schema. One researcher runs per question, at most
two at once. The run is killed (SIGKILL, in a child process) after two researchers finished;
resuming the log runs only the questions without a recorded answer.
The Node version, docs/examples/node/planned_research.mjs, prints the same lines.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List

import agentmesh
from agentmesh import Activation

wf = agentmesh.Workflow.from_dict({"name": "planned-research", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner", "retry": {"maxAttempts": 2},
     "output": {"repair": True, "schema": {
         "type": "object", "required": ["questions"], "additionalProperties": False,
         "properties": {"questions": {"type": "array", "minItems": 1, "maxItems": 8,
                                      "items": {"type": "string", "minLength": 1}}}}}},
    {"id": "research", "type": "map", "agent": "researcher", "after": ["plan"],
     "over": "/outputs/plan/questions", "concurrency": 2, "retry": {"maxAttempts": 3}},
    {"id": "write", "type": "agent", "agent": "writer", "after": ["research"],
     "reads": ["/input/topic"]},
]})

ANSWERS = {
    "What must survive a crash?": "the log of every decision and result",
    "What may a replay never redo?": "a call whose result is recorded",
    "Who pays for a retried call?": "the run's budget, once per attempt",
    "How many researchers run?": "as many as the planner asks for",
}


def make_mesh(log_dir: str, ran: str, hang_on: int = -1) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)

    @mesh.agent("planner")
    def planner(act: Activation) -> str:
        # What a model writes: prose, a code fence, single quotes, a trailing comma.
        questions = ", ".join(f"'{q}'" for q in ANSWERS)
        return f"Here is my plan:\n```json\n{{'questions': [{questions},]}}\n```"

    @mesh.agent("researcher")
    def researcher(act: Activation) -> Dict[str, Any]:
        assert act.item is not None
        with open(ran, "a", encoding="utf-8") as f:
            f.write(f"{act.item.index}\n")
        if act.item.index == hang_on:
            threading.Event().wait()  # still working when the process is killed
        return {"question": act.item.value, "notes": ANSWERS[act.item.value]}

    @mesh.agent("writer")
    def writer(act: Activation) -> str:
        lines = [f"{i + 1}. {r['question']} {r['notes']}." for i, r in enumerate(act.deps["research"])]
        return f"Brief on {act.reads['/input/topic']}:\n" + "\n".join(lines)

    return mesh


if sys.argv[1:2] == ["--child"]:
    make_mesh(sys.argv[2], sys.argv[3], hang_on=2).run(
        wf, run_id="planned", input={"topic": "durable agents"})
    sys.exit("unreachable: the parent kills this process")


def answered(log: str) -> List[int]:
    done = []
    scheduled: Dict[int, int] = {}
    for e in agentmesh.read_log(log):
        if e["type"] == "agentScheduled" and "item" in e["data"]:
            scheduled[e["seq"]] = e["data"]["item"]["index"]
        if e["type"] == "agentCompleted" and e.get("parentSeq") in scheduled:
            done.append(scheduled[e["parentSeq"]])
    return sorted(done)


with tempfile.TemporaryDirectory() as logs:
    log = os.path.join(logs, "planned.jsonl")
    ran = os.path.join(logs, "ran.txt")
    child = subprocess.Popen([sys.executable, __file__, "--child", logs, ran])
    deadline = time.monotonic() + 20
    done: List[int] = []
    while time.monotonic() < deadline and len(done) < 3:  # 0, 1, then 3 (2 hangs)
        time.sleep(0.01)
        try:
            done = answered(log)
        except (agentmesh.AgentMeshIOError, agentmesh.LogCorruptError):
            pass  # not created yet
    child.kill()
    child.wait()
    print("killed the run after these items were answered:", done)
    plan = next(e for e in agentmesh.read_log(log) if e["type"] == "agentCompleted")
    print("the planner's text was repaired:", ", ".join(plan["data"]["repaired"]["fixes"]))

    open(ran, "w").close()
    result = make_mesh(logs, ran).resume(log)
    with open(ran, encoding="utf-8") as f:
        again = sorted(int(line) for line in f)
    print("items run again after the resume:", [i for i in again if i not in done])
    print("items not run again:", done)
    print("status:", result.status)
    print(result.output["write"])
    assert result.status == "completed" and not set(again) & set(done)
    print("fingerprint of the resumed log:", agentmesh.fingerprint(log)[:16])
