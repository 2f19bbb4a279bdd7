"""Cost of one recorded call from Python, network excluded: an agent makes N calls to a host
provider that answers at once (act.llm: start, the Python function, complete: two records),
and N low-level call_start/call_complete pairs. Prints µs per call (best and median of 5).

    python benches/calls/python_calls.py   # against a release build of the package
"""
import statistics
import tempfile
import time

import agentmesh

N = 2000


def run(low_level: bool, log_dir=None) -> float:
    mesh = agentmesh.Mesh(log_dir=log_dir) if log_dir else agentmesh.Mesh()
    mesh.provider("p", lambda request, ticket: {"text": "hi", "finishReason": "stop"})

    @mesh.agent("a")
    def agent(act):
        for i in range(N):
            req = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "i": i}
            if low_level:
                t = act.call_start("llm", "p", req)
                act.call_complete(t, response={"text": "hi"})
            else:
                act.llm("p", req)
        return 1

    wf = agentmesh.Workflow.from_dict({"name": "calls", "nodes": [{"id": "n", "type": "agent", "agent": "a"}]})
    t = time.perf_counter()
    mesh.run(wf)
    return (time.perf_counter() - t) / N * 1e6


for label, low, disk in [("act.llm, host provider, memory", False, False),
                         ("call_start + call_complete, memory", True, False),
                         ("act.llm, host provider, file (batch)", False, True)]:
    times = []
    for _ in range(5):
        with tempfile.TemporaryDirectory() as d:
            times.append(run(low, d if disk else None))
    print(f"{label}: best {min(times):.2f} µs, median {statistics.median(times):.2f} µs per call")
