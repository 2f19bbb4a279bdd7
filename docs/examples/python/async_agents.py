"""asyncio: Mesh.run_async runs `async def` agents concurrently on the running event loop and
plain functions on worker threads. Cancelling the task that awaits the run stops driving it
(as Ctrl-C does): nothing is written, and the run is resumed later.
"""
import asyncio
import tempfile
import threading
from typing import Any, Dict

import agentmesh
from agentmesh import Activation

wf = agentmesh.Workflow.from_dict({"name": "async-research", "nodes": [
    {"id": "web", "type": "agent", "agent": "searcher"},
    {"id": "papers", "type": "agent", "agent": "searcher"},
    {"id": "stats", "type": "tool", "tool": "count"},
    {"id": "summary", "type": "agent", "agent": "writer", "after": ["web", "papers", "stats"]},
]})


def thread() -> str:
    return "loop" if threading.current_thread() is threading.main_thread() else "worker"


async def main(logs: str) -> None:
    mesh = agentmesh.Mesh(log_dir=logs)
    started = 0
    both_started = asyncio.Event()

    @mesh.agent("searcher")
    async def searcher(act: Activation) -> Dict[str, Any]:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        # Returns only once both searches are running: they run concurrently on the loop.
        await asyncio.wait_for(both_started.wait(), timeout=5)
        await asyncio.sleep(0.05)  # an HTTP call with an async client, a model API...
        return {"source": act.node, "thread": thread()}

    @mesh.tool("count")
    def count(act: Activation) -> Dict[str, Any]:  # a plain function, in the same step
        return {"rows": 42, "thread": thread()}

    @mesh.agent("writer")
    async def writer(act: Activation) -> str:
        return ", ".join(f"{node} on {out['thread']}" for node, out in sorted(act.deps.items()))

    result = await mesh.run_async(wf, input={"topic": "asyncio"})
    print(result.status, result.output)

    # Cancelling the task that awaits a run stops driving it; nothing is written.
    hang = agentmesh.Workflow.from_dict({"name": "hang", "nodes": [
        {"id": "ask", "type": "agent", "agent": "model"}]})

    @mesh.agent("model")
    async def never(act: Activation) -> str:
        await asyncio.Event().wait()  # a model that never answers
        return "unreachable"

    task = asyncio.create_task(mesh.run_async(hang, run_id="hang-1"))
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print("the task was cancelled; the log ends with:")
    log = f"{logs}/hang-1.jsonl"
    for e in list(agentmesh.read_log(log))[-2:]:
        print(" ", e["seq"], e["type"], e.get("node", "-"), e["data"])

    # The run is resumable: `ask` is in flight, as after a crash, and runs again.
    @mesh.agent("model")
    async def answers(act: Activation) -> str:
        return "an answer"

    resumed = await mesh.resume_async(log)
    print("resumed:", resumed.status, resumed.output)


with tempfile.TemporaryDirectory() as logs:
    asyncio.run(main(logs))
