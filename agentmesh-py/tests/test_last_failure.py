"""``Activation.last_failure``: the failure an attempt retries, as the log records it — an
exception, a timeout, the failure that failed a run being retried — and ``None`` on a first
attempt and for an activation a cancel closed."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import agentmesh
from agentmesh import Retry, Workflow

WAIT_S = 10.0  # how long a stuck agent waits before giving up (the test releases it first)

Seen = List[Tuple[int, Optional[Dict[str, Any]]]]


@pytest.fixture
def forever() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # lets a stuck worker thread end with the test


def recorded_failures(path: Any) -> List[Dict[str, Any]]:
    return [e["data"]["error"] for e in agentmesh.read_log(path) if e["type"] == "agentFailed"]


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_a_retry_gets_the_exception_it_retries(tmp_path: Path, driver: str) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    seen: Seen = []

    def flaky(act: agentmesh.Activation) -> Any:
        seen.append((act.attempt, act.last_failure))
        if act.attempt == 1:
            raise agentmesh.ActivationError("RateLimited", "slow down")
        if act.attempt == 2:
            raise ConnectionError("reset by peer")
        return "ok"

    async def flaky_async(act: agentmesh.Activation) -> Any:
        return flaky(act)

    mesh.add_agent("a", flaky if driver == "threads" else flaky_async)
    wf = Workflow.builder("flaky").agent("a", "a", retry=Retry(3)).build()
    if driver == "threads":
        r = mesh.run(wf, run_id="flaky")
    else:
        r = asyncio.run(mesh.run_async(wf, run_id="flaky"))
    assert r.status == "completed" and r.output == {"a": "ok"}
    first = {"kind": "error", "type": "RateLimited", "message": "slow down", "retryable": True}
    second = {"kind": "error", "type": "ConnectionError", "message": "reset by peer", "retryable": True}
    assert seen == [(1, None), (2, first), (3, second)]
    assert recorded_failures(r.log_path) == [first, second]  # what the log holds, exactly


def test_a_retry_after_a_timeout_gets_a_timeout(tmp_path: Path, forever: threading.Event) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    seen: Seen = []

    def slow_once(act: agentmesh.Activation) -> Any:
        seen.append((act.attempt, act.last_failure))
        if act.attempt == 1:
            forever.wait(WAIT_S)  # past its deadline: the driver records a timeout
        return act.attempt

    mesh.add_agent("a", slow_once)
    wf = Workflow.builder("slow").agent("a", "a", timeout_ms=50, retry=Retry(2)).build()
    r = mesh.run(wf, run_id="slow")
    assert r.status == "completed" and r.output == {"a": 2}
    timeout = {"kind": "timeout", "type": "Timeout", "message": "no result within 50 ms", "retryable": True}
    assert seen == [(1, None), (2, timeout)]


def test_retrying_a_failed_run_hands_on_the_failure_that_failed_it(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    seen: Seen = []

    def once_broken(act: agentmesh.Activation) -> Any:
        seen.append((act.attempt, act.last_failure))
        if len(seen) == 1:
            raise agentmesh.ActivationError("BadCredentials", "key revoked", retryable=False)
        return "ok"

    mesh.add_agent("a", once_broken)
    wf = Workflow.builder("broken").agent("a", "a", retry=Retry(3)).build()
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf, run_id="broken")
    assert info.value.result is not None
    r = mesh.retry(info.value.result.log_path)
    assert r.status == "completed" and r.output == {"a": "ok"}
    failure = {"kind": "error", "type": "BadCredentials", "message": "key revoked", "retryable": False}
    assert seen == [(1, None), (2, failure)]


def test_an_activation_a_cancel_closed_runs_again_without_a_failure(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    seen: Seen = []

    def cancels_once(act: agentmesh.Activation) -> Any:
        seen.append((act.attempt, act.last_failure))
        if len(seen) == 1:
            act.cancel_run("operator")
        return "ok"

    mesh.add_agent("a", cancels_once)
    wf = Workflow.builder("cancel").agent("a", "a").build()
    r = mesh.run(wf, run_id="cancel")
    assert r.status == "cancelled"
    r = mesh.retry(r.log_path)
    assert r.status == "completed" and r.output == {"a": "ok"}
    assert [failure for _, failure in seen] == [None, None]
    assert recorded_failures(r.log_path) == []


def test_a_human_activation_has_no_failure(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    r = mesh.run(Workflow.builder("h").human("ok", "Ship?").build(), run_id="h")
    assert r.status == "waiting"
    [waiting] = r.waiting
    assert waiting.last_failure is None
