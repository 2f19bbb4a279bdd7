"""Watching a run while it runs: Mesh.run(on_event=...) calls a function with every event the
run commits, and Mesh.stream(...) hands the same events to a for loop, driving the run as the
loop asks for them. Leaving the loop early writes nothing: the run is resumed later.
"""
import asyncio
import tempfile
from typing import Any, Dict

import agentmesh
from agentmesh import Activation, Output

wf = agentmesh.Workflow.from_dict({"name": "watched", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "write", "type": "agent", "agent": "writer", "after": ["plan"]},
]})


def make_mesh(logs: str) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=logs)

    @mesh.agent("planner")
    def planner(act: Activation) -> Dict[str, Any]:
        return {"question": f"What do {act.input['topic']} eat?"}

    @mesh.agent("writer")
    def writer(act: Activation) -> Output:
        return Output(f"Notes on: {act.deps['plan']['question']}",
                      usage={"inputTokens": 12, "outputTokens": 5})

    return mesh


def show(event: Dict[str, Any]) -> None:
    # The dict read_log gives for the event, plus its meta (wall-clock `at`, `durUs`).
    data = {k: v for k, v in event["data"].items() if k != "workflow"}
    print(f"  {event['seq']:2} {event['type']:15} {event.get('node', '-'):6} {data}")


async def count_async(mesh: agentmesh.Mesh) -> None:
    async with mesh.stream_async(wf, input={"topic": "moths"}, run_id="async") as events:
        n = 0
        async for _ in events:
            n += 1
    print(f"4. async: {n} events, then {events.result.status}")


with tempfile.TemporaryDirectory() as logs:
    mesh = make_mesh(logs)

    # 1. A callback, called on this thread right after each commit (the run waits for it).
    r = mesh.run(wf, input={"topic": "bees"}, run_id="watched", on_event=show)
    print("1.", r.status)

    # 2. An iterator: the run advances as the loop asks for events; .result at the end.
    stream = mesh.stream(wf, input={"topic": "wasps"}, run_id="streamed")
    kinds = [event["type"] for event in stream]
    print("2.", len(kinds), "events, then", stream.result.status, stream.result.output)

    # 3. Leaving the loop early stops driving and writes nothing: the run resumes later.
    for event in mesh.stream(wf, input={"topic": "ants"}, run_id="left"):
        if event["type"] == "agentScheduled" and event["node"] == "write":
            break
    print("3. left before write ran; finished:", agentmesh.check_log(f"{logs}/left.jsonl")["finished"])
    print("   resumed:", mesh.resume(f"{logs}/left.jsonl").status)

    # 4. The same for asyncio.
    asyncio.run(count_async(mesh))
