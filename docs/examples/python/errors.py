"""Errors: every AgentMesh error is an AgentMeshError with a stable .code, and some carry facts
(node, field, seq, offset). A failed run is a result, unless a Python exception failed it.
"""
import tempfile
from typing import Any, Callable, List, Tuple

import agentmesh
from agentmesh import Activation, ActivationError

wf = agentmesh.Workflow.from_dict({"name": "pay", "nodes": [
    {"id": "charge", "type": "tool", "tool": "payments", "retry": {"maxAttempts": 3}},
]})

with tempfile.TemporaryDirectory() as logs:
    mesh = agentmesh.Mesh(log_dir=logs)

    @mesh.tool("payments")
    def payments(act: Activation) -> Any:
        if act.input["card"] == "expired":
            raise ActivationError("CardDeclined", "card expired", retryable=False)
        return {1, 2}  # a set is not JSON data: InvalidOutput, not retryable

    # An exception that fails the run: AgentFailedError, with the exception as __cause__.
    paths = []
    for card in ("expired", "odd"):
        try:
            mesh.run(wf, input={"card": card})
        except agentmesh.AgentFailedError as e:
            print(f"{e.code} node={e.node}: {e.message}")
            print(f"  __cause__ {type(e.__cause__).__name__}: {e.__cause__}")
            print(f"  .result.status {e.result.status!r}, .result.error['code'] {e.result.error['code']!r}")
            paths.append(e.result.log_path)

    # Errors of the call itself: nothing is run.
    calls: List[Tuple[str, Callable[[], object]]] = [
        ("unknown tool", lambda: mesh.run(agentmesh.Workflow.from_dict(
            {"name": "w", "nodes": [{"id": "a", "type": "tool", "tool": "payment"}]}))),
        ("same run twice", lambda: mesh.run(wf, input={"card": "expired"})),
        ("input not JSON", lambda: mesh.run(wf, input={"card": b"4242"})),
        ("wrong run id", lambda: mesh.resume(paths[0], run_id="someone-else")),
    ]
    for what, call in calls:
        try:
            call()
        except agentmesh.AgentMeshError as e:
            print(f"{what}: {type(e).__name__} {str(e).replace(logs, '<logs>')}")

    # A changed byte inside a log: LogCorruptError with the offset of the damaged record.
    with open(paths[0], "r+b") as f:
        data = f.read()
        f.seek(data.index(b'"expired"') + 1)
        f.write(b"E")  # inside the runStarted record, the second line
    second_line = data.index(b"\n") + 1
    try:
        agentmesh.verify_log(paths[0])
    except agentmesh.LogCorruptError as e:
        print(f"{type(e).__name__} offset={e.offset}, where line 2 starts: {e.offset == second_line}")
