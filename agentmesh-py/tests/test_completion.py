"""What the driver hands the core: one completion per result, snapshotted the moment the
agent returned, committed in bursts (group commit), with usage on successes and failures."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

import agentmesh
from agentmesh import _agentmesh


def wf(nodes: List[Dict[str, Any]], name: str = "t") -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict({"name": name, "nodes": nodes})


def agent_node(id: str, agent: str, **extra: Any) -> Dict[str, Any]:
    return {"id": id, "type": "agent", "agent": agent, **extra}


def events(path: Any) -> List[Dict[str, Any]]:
    return list(agentmesh.read_log(path))


@contextlib.contextmanager
def on_native_call(hook: Callable[[str, Any], None]) -> Iterator[None]:
    """Call ``hook(method name, native run)`` on this thread (the driving one) just before
    each call of a ``NativeRun`` method: test instrumentation to reach a precise point of a
    drive (a profile hook sees calls into C)."""

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call" and isinstance(getattr(arg, "__self__", None), _agentmesh.NativeRun):
            hook(arg.__name__, arg.__self__)

    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(None)


# snapshot at return (defect 18) --------------------------------------------------------------


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_a_dict_mutated_after_return_is_logged_as_returned(tmp_path: Path, driver: str) -> None:
    returned: Dict[str, Any] = {"v": "as returned", "items": [1, 2]}
    armed = threading.Event()  # the agent is returning `returned`
    go = threading.Event()  # the mutator may mutate now
    mutated = threading.Event()
    release_b = threading.Event()

    def mutator() -> None:
        go.wait(10)
        returned["v"] = "mutated"
        returned["items"].append(3)
        mutated.set()

    threading.Thread(target=mutator, daemon=True).start()

    def a(act: agentmesh.Activation) -> Any:
        armed.set()
        return returned

    def b(act: agentmesh.Activation) -> Any:
        release_b.wait(10)  # keeps the step open: a's result is the only one to commit
        return "b"

    def hook(name: str, native: Any) -> None:
        # The driver's first call into the run after `a` returned is what records it: the
        # mutation happens after the return and before that commit.
        if armed.is_set() and not go.is_set():
            go.set()
            assert mutated.wait(10)
            release_b.set()

    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", a)
    mesh.add_agent("b", b)
    w = wf([agent_node("a", "a"), agent_node("b", "b")])
    with on_native_call(hook):
        if driver == "threads":
            r = mesh.run(w, run_id="snap")
        else:  # plain agents on worker threads, driven from the event loop
            r = asyncio.run(mesh.run_async(w, run_id="snap"))
    assert go.is_set() and mutated.is_set()  # the race really happened
    assert returned == {"v": "mutated", "items": [1, 2, 3]}
    assert r.status == "completed"
    assert r.output == {"a": {"v": "as returned", "items": [1, 2]}, "b": "b"}
    done = {e["node"]: e["data"]["output"] for e in events(r.log_path) if e["type"] == "agentCompleted"}
    assert done["a"] == {"v": "as returned", "items": [1, 2]}


# group commit --------------------------------------------------------------------------------


def fsyncs_of_a_fan_out(tmp_path: Path, width: int) -> int:
    counts: List[int] = []

    def hook(name: str, native: Any) -> None:
        if name == "close":
            counts.append(native.fsync_count())

    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="always", max_workers=width)
    all_started = threading.Barrier(width, timeout=10)
    mesh.add_agent("w", lambda act: all_started.wait() * 0 + act.id)
    mesh.add_agent("join", lambda act: len(act.deps))
    nodes = [agent_node(f"w{i}", "w") for i in range(width)]
    nodes.append(agent_node("join", "join", after=[f"w{i}" for i in range(width)]))
    with on_native_call(hook):
        r = mesh.run(wf(nodes, name="fan"), run_id="fan")
    assert r.status == "completed" and r.output == {"join": width}
    assert len(counts) == 1
    return counts[0]


def test_a_burst_of_results_shares_fsyncs(tmp_path: Path) -> None:
    # One fsync per commit in `always` mode: the start, each burst of results, the join,
    # the end. One per result (the old driver) would be more than `width`.
    width = 100
    count = fsyncs_of_a_fan_out(tmp_path, width)
    print(f"fsyncs for a {width}-way fan-out with fsync='always': {count}")
    assert count < width // 2


# usage ---------------------------------------------------------------------------------------


def test_a_failed_attempt_records_the_tokens_it_spent(tmp_path: Path) -> None:
    # Defect 15: a failed paid call still spent tokens.
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def flaky(act: agentmesh.Activation) -> Any:
        if act.attempt == 1:
            raise agentmesh.ActivationError(
                "RateLimited", "429", usage={"inputTokens": 120, "outputTokens": 3}
            )
        return agentmesh.Output("ok", usage={"inputTokens": 100, "outputTokens": 9})

    mesh.add_agent("llm", flaky)
    r = mesh.run(wf([agent_node("ask", "llm", retry={"maxAttempts": 2})]), run_id="paid")
    assert r.status == "completed"
    log = events(r.log_path)
    failed = [e for e in log if e["type"] == "agentFailed"]
    assert failed[0]["data"]["usage"] == {"inputTokens": 120, "outputTokens": 3}
    assert failed[0]["data"]["error"]["type"] == "RateLimited"
    done = [e for e in log if e["type"] == "agentCompleted"]
    assert done[0]["data"]["usage"] == {"inputTokens": 100, "outputTokens": 9}


def test_activation_error_usage_is_optional(tmp_path: Path) -> None:
    e = agentmesh.ActivationError("T", "m")
    assert e.usage is None and e.retryable is True
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def fail(act: agentmesh.Activation) -> Any:
        raise agentmesh.ActivationError("Denied", "no", retryable=False)

    mesh.add_agent("a", fail)
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([agent_node("n", "a")]))
    failed = [e for e in events(info.value.result.log_path) if e["type"] == "agentFailed"]
    assert "usage" not in failed[0]["data"]
    assert isinstance(info.value.__cause__, agentmesh.ActivationError)


BAD_USAGE = {
    "list": [1, 2],
    "float": {"inputTokens": 1.5},
    "whole-float": {"inputTokens": 2.0},
    "negative": {"outputTokens": -1},
    "unknown-key": {"inputTokens": 1, "cost": 2},
    "string": {"inputTokens": "many"},
    "not-a-dict": 5,
    "not-json": {"inputTokens": {1, 2}},
}


@pytest.mark.parametrize("name", list(BAD_USAGE))
@pytest.mark.parametrize("how", ["output", "failure"])
def test_usage_that_is_not_an_object_of_counts_is_invalid_output(tmp_path: Path, name: str, how: str) -> None:
    # Defect 23: the core's strict parser decides, for outputs and failures alike.
    usage = BAD_USAGE[name]
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def agent(act: agentmesh.Activation) -> Any:
        if how == "failure":
            raise agentmesh.ActivationError("Err", "m", usage=usage)
        return agentmesh.Output(1, usage=usage)

    mesh.add_agent("a", agent)
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([agent_node("n", "a", retry={"maxAttempts": 3})]), run_id="u")
    cause = info.value.__cause__
    assert isinstance(cause, agentmesh.InvalidOutputError), repr(cause)
    assert cause.node == "n" and "node 'n'" in str(cause) and "usage" in str(cause)
    failed = [e for e in events(info.value.result.log_path) if e["type"] == "agentFailed"]
    assert len(failed) == 1  # permanent, despite the retry policy
    assert failed[0]["data"]["error"]["type"] == "InvalidOutput"
    assert "usage" not in failed[0]["data"]  # nothing recorded as usage


def test_usage_with_missing_counts_records_zero(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: agentmesh.Output(1, usage={"outputTokens": 4}))
    r = mesh.run(wf([agent_node("n", "a")]))
    done = [e for e in events(r.log_path) if e["type"] == "agentCompleted"]
    assert done[0]["data"]["usage"] == {"inputTokens": 0, "outputTokens": 4}
