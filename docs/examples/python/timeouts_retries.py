"""Timeouts and retries: attempt 1 fails, attempt 2 overruns timeoutMs, attempt 3 succeeds.
A node that runs out of attempts fails the run: the result has status "failed" and the code.
"""
import tempfile
import threading
from typing import Any, Dict

import agentmesh
from agentmesh import Activation, ActivationError, Retry

release = threading.Event()  # lets the timed-out attempt return (late) once the run is over

wf = (
    agentmesh.Workflow.builder("fetch-report")
    .tool("fetch", "http", timeout_ms=100,
          retry=Retry(max_attempts=3, backoff_ms=20, backoff_multiplier=2))
    .agent("parse", "parser", after=["fetch"])
    .build()
)

with tempfile.TemporaryDirectory() as logs:
    mesh = agentmesh.Mesh(log_dir=logs)

    @mesh.tool("http")
    def http(act: Activation) -> Dict[str, Any]:
        if act.attempt == 1:
            raise ActivationError("HttpError", "503 Service Unavailable")  # retryable
        if act.attempt == 2:
            release.wait(0.2)  # overruns timeoutMs=100: recorded as a timeout, result dropped
            return {"status": 200, "late": True}
        return {"status": 200, "rows": 118}

    @mesh.agent("parser")
    def parser(act: Activation) -> int:
        return int(act.deps["fetch"]["rows"])

    result = mesh.run(wf, seed=1)
    print(result.status, result.output)
    assert result.log_path is not None
    for e in agentmesh.read_log(result.log_path):
        if e.get("node") == "fetch":
            print(f"{e['seq']:3}  {e['type']:15} attempt {e['attempt']}  {e['data']}")

    # Every attempt times out: the run fails with TIMEOUT. mesh.run returns it (no exception:
    # no Python exception caused it).
    @mesh.tool("http")
    def stuck(act: Activation) -> Dict[str, Any]:
        release.wait(0.2)
        return {"status": 200}

    failed = mesh.run(wf, seed=2)
    print(failed.status, failed.error)
    release.set()
