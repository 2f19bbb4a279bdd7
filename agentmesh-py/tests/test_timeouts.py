"""The one timeout rule of every host: an activation's deadline is ``timeout_ms`` after it
starts running (after its ``delay_ms``). Time queued behind busy workers does not count; the
core writes the timeout failure."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import agentmesh


def wf(nodes: List[Dict[str, Any]], name: str = "t") -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict({"name": name, "nodes": nodes})


def events(path: Any) -> List[Dict[str, Any]]:
    return list(agentmesh.read_log(path))


@pytest.fixture
def forever() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # lets stuck worker threads end with the test


def sleepers(count: int, timeout_ms: int) -> agentmesh.Workflow:
    nodes = [{"id": f"s{i}", "type": "agent", "agent": "sleep", "timeoutMs": timeout_ms} for i in range(count)]
    nodes.append({"id": "join", "type": "agent", "agent": "join", "after": [f"s{i}" for i in range(count)]})
    return wf(nodes, name="sleepers")


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_time_queued_behind_busy_workers_does_not_count(tmp_path: Path, driver: str) -> None:
    # 40 agents of 50 ms on 2 workers take about 1 s, twice their 500 ms deadline: each
    # deadline starts when its agent starts, so all complete.
    mesh = agentmesh.Mesh(log_dir=tmp_path, max_workers=2)
    mesh.add_agent("sleep", lambda act: time.sleep(0.05) or act.node)
    mesh.add_agent("join", lambda act: len(act.deps))
    w = sleepers(40, 500)
    if driver == "threads":
        r = mesh.run(w, run_id="queued")
    else:
        r = asyncio.run(mesh.run_async(w, run_id="queued"))
    assert r.status == "completed", r.error
    assert r.output == {"join": 40}
    assert not [e for e in events(r.log_path) if e["type"] == "agentFailed"]


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_work_queued_behind_a_timed_out_agent_still_runs(tmp_path: Path, forever: threading.Event, driver: str) -> None:
    # One worker, taken by an agent that never returns: once it times out, the agent queued
    # behind it still gets a thread (the stuck one no longer counts).
    mesh = agentmesh.Mesh(log_dir=tmp_path, max_workers=1)
    mesh.add_agent("stuck", lambda act: forever.wait())
    mesh.add_agent("quick", lambda act: "quick")
    w = wf([
        {"id": "a", "type": "agent", "agent": "stuck", "timeoutMs": 100},
        {"id": "b", "type": "agent", "agent": "quick", "timeoutMs": 100},
    ])
    if driver == "threads":
        r = mesh.run(w, run_id="stuck")
    else:
        r = asyncio.run(mesh.run_async(w, run_id="stuck"))
    assert r.status == "failed" and r.error["code"] == "TIMEOUT" and r.error["node"] == "a"
    by_node = {e["node"]: e for e in events(r.log_path) if e["type"] in ("agentFailed", "agentCompleted")}
    assert by_node["b"]["type"] == "agentCompleted" and by_node["b"]["data"]["output"] == "quick"
    assert by_node["a"]["data"]["error"] == {
        "kind": "timeout", "type": "Timeout", "message": "no result within 100 ms", "retryable": True
    }


def test_deadline_starts_after_the_retry_delay(tmp_path: Path) -> None:
    # Attempt 2 waits 300 ms of backoff, then answers within its 200 ms: not a timeout.
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def flaky(act: agentmesh.Activation) -> Any:
        if act.attempt == 1:
            raise agentmesh.ActivationError("Busy", "try later")
        time.sleep(0.05)
        return "ok"

    mesh.add_agent("a", flaky)
    w = wf([{"id": "n", "type": "agent", "agent": "a", "timeoutMs": 200,
             "retry": {"maxAttempts": 2, "backoffMs": 300}}])
    r = mesh.run(w)
    assert r.status == "completed" and r.output == {"n": "ok"}


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_an_overrunning_agent_gets_the_cores_timeout_failure(tmp_path: Path, driver: str) -> None:
    # Its late result is dropped; the failure text is the core's.
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("slow", lambda act: time.sleep(0.15) or "late")
    mesh.add_agent("quick", lambda act: "quick")
    w = wf([
        {"id": "s", "type": "agent", "agent": "slow", "timeoutMs": 50},
        {"id": "q", "type": "agent", "agent": "quick"},
    ])
    r = mesh.run(w) if driver == "threads" else asyncio.run(mesh.run_async(w))
    assert r.status == "failed" and r.error["code"] == "TIMEOUT"
    failed = [e for e in events(r.log_path) if e["type"] == "agentFailed"]
    assert [f["data"]["error"]["message"] for f in failed] == ["no result within 50 ms"]
    assert not [e for e in events(r.log_path) if e["type"] == "agentCompleted" and e["node"] == "s"]
