"""The asyncio driver: ``Mesh.run_async`` / ``resume_async`` / ``fork_async``."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, TypeVar

import pytest

import agentmesh

T = TypeVar("T")


def arun(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(main())  # type: ignore[arg-type]


def wf(nodes: List[Dict[str, Any]], name: str = "t", **extra: Any) -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict({"name": name, "nodes": nodes, **extra})


def events(path: Any) -> List[Dict[str, Any]]:
    return list(agentmesh.read_log(path))


def types(path: Any) -> List[str]:
    return [e["type"] for e in agentmesh.read_log(path)]


def agent_node(id: str, agent: str, **extra: Any) -> Dict[str, Any]:
    return {"id": id, "type": "agent", "agent": agent, **extra}


# concurrency and threads ---------------------------------------------------------------------


def test_async_agents_of_a_step_run_concurrently(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    active = 0
    peak = 0

    @mesh.agent("slow")
    async def slow(act: agentmesh.Activation) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.2)
        active -= 1
        return act.node

    w = wf([agent_node(f"s{i}", "slow") for i in range(5)])

    async def main() -> agentmesh.RunResult:
        started = time.perf_counter()
        r = await mesh.run_async(w, run_id="conc")
        assert time.perf_counter() - started < 0.9  # sequential would take 1 s
        return r

    r = arun(main)
    assert r.status == "completed"
    assert r.output == {f"s{i}": f"s{i}" for i in range(5)}
    assert peak == 5
    step = [e for e in events(r.log_path) if e["type"] == "stepStarted"]
    assert [e["data"]["activations"] for e in step] == [5]


def test_plain_agents_run_off_the_loop_and_do_not_block_it(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    threads: Dict[str, int] = {}
    signal = threading.Event()

    @mesh.agent("waiter")
    def waiter(act: agentmesh.Activation) -> Any:
        # Blocks its thread until the async agent of the same step runs: on the loop thread
        # this would deadlock the step (and time out after 5 s).
        threads[act.node] = threading.get_ident()
        return {"signalled": signal.wait(5)}

    @mesh.agent("signaller")
    async def signaller(act: agentmesh.Activation) -> Any:
        threads[act.node] = threading.get_ident()
        await asyncio.sleep(0.01)
        signal.set()
        return "sent"

    @mesh.agent("joiner")
    async def joiner(act: agentmesh.Activation) -> Any:
        threads[act.node] = threading.get_ident()
        return {"deps": act.deps}

    @mesh.agent("plain_join")
    def plain_join(act: agentmesh.Activation) -> Any:
        threads[act.node] = threading.get_ident()
        return sorted(act.deps["join"]["deps"])

    w = wf([
        agent_node("wait", "waiter"),
        agent_node("signal", "signaller"),
        agent_node("join", "joiner", after=["wait", "signal"]),
        agent_node("last", "plain_join", after=["join"]),
    ])

    async def main() -> Any:
        return await mesh.run_async(w, run_id="mixed"), threading.get_ident()

    r, loop_thread = arun(main)
    assert r.status == "completed"
    assert r.output == {"last": ["signal", "wait"]}
    assert events(r.log_path)[-1]["data"]["output"] == {"last": ["signal", "wait"]}
    join_out = [e for e in events(r.log_path) if e["type"] == "agentCompleted" and e["node"] == "join"]
    assert join_out[0]["data"]["output"] == {"deps": {"signal": "sent", "wait": {"signalled": True}}}
    assert threads["signal"] == threads["join"] == loop_thread
    assert threads["wait"] != loop_thread and threads["last"] != loop_thread


def test_plain_agent_returning_a_coroutine_is_awaited(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    async def later(act: agentmesh.Activation) -> Any:
        await asyncio.sleep(0)
        return {"later": act.node, "on_loop": asyncio.get_running_loop() is not None}

    mesh.add_agent("indirect", lambda act: later(act))
    r = arun(lambda: mesh.run_async(wf([agent_node("n", "indirect")]), run_id="aw"))
    assert r.status == "completed" and r.output == {"n": {"later": "n", "on_loop": True}}


def test_output_with_usage_from_an_async_agent(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("counted")
    async def counted(act: agentmesh.Activation) -> Any:
        return agentmesh.Output({"text": "hi"}, usage={"inputTokens": 12, "outputTokens": 3})

    r = arun(lambda: mesh.run_async(wf([agent_node("n", "counted")]), run_id="usage"))
    done = [e for e in events(r.log_path) if e["type"] == "agentCompleted"][0]
    assert done["data"]["output"] == {"text": "hi"}
    assert done["data"]["usage"] == {"inputTokens": 12, "outputTokens": 3}


# the same log as the thread driver -----------------------------------------------------------

SHARED = [
    agent_node("a", "worker"),
    agent_node("b", "flaky", retry={"maxAttempts": 2, "backoffMs": 5}),
    {"id": "c", "type": "tool", "tool": "lookup"},
    agent_node("join", "joiner", after=["a", "b", "c"], maxVisits=3),
    {"id": "again", "type": "branch", "after": ["join"],
     "cases": [{"when": {"path": "/visits/join", "lt": 2}, "goto": "join"}], "default": "end"},
    agent_node("end", "worker"),
]


def shared_worker(act: agentmesh.Activation) -> Any:
    return {"node": act.node, "seed": act.seed, "input": act.input}


def shared_flaky(act: agentmesh.Activation) -> Any:
    if act.attempt == 1:
        raise agentmesh.ActivationError("Flaky", "first try fails")
    return agentmesh.Output(act.attempt, usage={"inputTokens": 5, "outputTokens": 1})


SHARED_AGENTS: Dict[str, Callable[[agentmesh.Activation], Any]] = {
    "worker": shared_worker,
    "flaky": shared_flaky,
    "joiner": lambda act: {"deps": sorted(act.deps), "visit": act.visit},
}
SHARED_TOOLS: Dict[str, Callable[[agentmesh.Activation], Any]] = {
    "lookup": lambda act: [1, 2.5, "x", None, True],
}


def shared_sync_mesh(log_dir: Path) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    for name, fn in SHARED_AGENTS.items():
        mesh.add_agent(name, fn)
    for name, fn in SHARED_TOOLS.items():
        mesh.add_tool(name, fn)
    return mesh


def shared_async_mesh(log_dir: Path, delays: Dict[str, float]) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)

    def wrap(fn: Callable[[agentmesh.Activation], Any]) -> Callable[[agentmesh.Activation], Any]:
        async def agent(act: agentmesh.Activation) -> Any:
            await asyncio.sleep(delays.get(act.node, 0))
            return fn(act)

        return agent

    for name, fn in SHARED_AGENTS.items():
        mesh.add_agent(name, wrap(fn))
    for name, fn in SHARED_TOOLS.items():
        mesh.add_tool(name, wrap(fn))
    return mesh


def test_run_async_writes_the_same_canonical_log_as_run(tmp_path: Path) -> None:
    w = wf(SHARED, name="shared")
    kwargs: Dict[str, Any] = {"input": {"q": "x", "n": [1, -0.5]}, "seed": 99, "run_id": "same"}
    sync = shared_sync_mesh(tmp_path / "sync").run(w, **kwargs)
    fast_a = arun(lambda: shared_async_mesh(tmp_path / "async1", {"a": 0.03, "c": 0.01}).run_async(w, **kwargs))
    fast_c = arun(lambda: shared_async_mesh(tmp_path / "async2", {"a": 0.01, "c": 0.03}).run_async(w, **kwargs))
    # Plain functions under run_async (the executor path).
    plain = arun(lambda: shared_sync_mesh(tmp_path / "async3").run_async(w, **kwargs))
    assert sync.status == "completed"
    assert sync.output == {"end": {"node": "end", "seed": sync.output["end"]["seed"], "input": kwargs["input"]}}
    expected = agentmesh.canonical_log(sync.log_path)
    assert b'"type":"agentFailed"' in expected and b'"loop":true' in expected
    for r in (fast_a, fast_c, plain):
        assert r.status == "completed" and r.output == sync.output
        assert agentmesh.canonical_log(r.log_path) == expected
        assert r.fingerprint == sync.fingerprint


# failures ------------------------------------------------------------------------------------


def test_async_retries_record_each_failure(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    attempts: List[int] = []

    @mesh.agent("flaky")
    async def flaky(act: agentmesh.Activation) -> Any:
        attempts.append(act.attempt)
        await asyncio.sleep(0)
        if act.attempt < 3:
            raise ConnectionError(f"try {act.attempt}")
        return "ok"

    w = wf([agent_node("f", "flaky", retry={"maxAttempts": 3, "backoffMs": 5})])
    r = arun(lambda: mesh.run_async(w, run_id="retry"))
    assert r.status == "completed" and r.output == {"f": "ok"}
    assert attempts == [1, 2, 3]
    failed = [e["data"]["error"] for e in events(r.log_path) if e["type"] == "agentFailed"]
    assert failed == [
        {"kind": "error", "type": "ConnectionError", "message": "try 1", "retryable": True},
        {"kind": "error", "type": "ConnectionError", "message": "try 2", "retryable": True},
    ]
    scheduled = [e["data"] for e in events(r.log_path) if e["type"] == "agentScheduled"]
    assert [s.get("delayMs", 0) for s in scheduled] == [0, 5, 5]


def test_async_activation_error_is_recorded_exactly(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("deny")
    async def deny(act: agentmesh.Activation) -> Any:
        raise agentmesh.ActivationError("Denied", "policy says no", retryable=False)

    w = wf([agent_node("x", "deny", retry={"maxAttempts": 3})])
    with pytest.raises(agentmesh.AgentFailedError) as info:
        arun(lambda: mesh.run_async(w, run_id="deny"))
    e = info.value
    assert isinstance(e.__cause__, agentmesh.ActivationError)
    assert e.__cause__.error_type == "Denied" and e.node == "x"
    failed = [ev["data"]["error"] for ev in events(e.result.log_path) if ev["type"] == "agentFailed"]
    assert failed == [{"kind": "error", "type": "Denied", "message": "policy says no", "retryable": False}]
    assert e.result.error == {
        "code": "AGENT_FAILED",
        "message": "node 'x' failed on attempt 1/3 (not retryable): Denied: policy says no",
        "node": "x",
    }


def test_async_exception_is_the_cause_of_agent_failed(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    raised: List[BaseException] = []

    @mesh.agent("boom")
    async def boom(act: agentmesh.Activation) -> Any:
        await asyncio.sleep(0)
        exc = ValueError("bad input")
        raised.append(exc)
        raise exc

    mesh.add_agent("fine", lambda act: "fine")
    w = wf([agent_node("ok", "fine"), agent_node("x", "boom")])
    with pytest.raises(agentmesh.AgentFailedError) as info:
        arun(lambda: mesh.run_async(w, run_id="boom"))
    e = info.value
    assert e.__cause__ is raised[0]
    assert e.code == "AGENT_FAILED" and e.node == "x"
    assert e.result.status == "failed" and e.result.error["node"] == "x"
    log = events(e.result.log_path)
    assert [ev["type"] for ev in log] == [
        "runStarted", "stepStarted", "agentScheduled", "agentScheduled",
        "agentCompleted", "agentFailed", "runFailed",
    ]
    assert log[5]["data"]["error"] == {"kind": "error", "type": "ValueError", "message": "bad input", "retryable": True}
    assert agentmesh.verify_log(e.result.log_path)["finished"] == "runFailed"


# timeouts ------------------------------------------------------------------------------------


def test_timeout_cancels_a_never_returning_async_agent(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    async def main() -> Any:
        cancelled = asyncio.Event()

        @mesh.agent("never")
        async def never(act: agentmesh.Activation) -> Any:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        started = time.perf_counter()
        r = await mesh.run_async(wf([agent_node("n", "never", timeoutMs=50)]), run_id="to")
        elapsed = time.perf_counter() - started
        await asyncio.wait_for(cancelled.wait(), 2)
        return r, elapsed

    r, elapsed = arun(main)
    assert elapsed < 5
    assert r.status == "failed"
    assert r.error == {
        "code": "TIMEOUT",
        "message": "node 'n' failed on attempt 1/1: Timeout: no result within 50 ms",
        "node": "n",
    }
    failed = [e for e in events(r.log_path) if e["type"] == "agentFailed"]
    assert failed[0]["node"] == "n"
    assert failed[0]["data"]["error"] == {
        "kind": "timeout", "type": "Timeout", "message": "no result within 50 ms", "retryable": True
    }
    assert agentmesh.verify_log(r.log_path)["finished"] == "runFailed"


def test_timed_out_attempt_is_retried(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("slow_once")
    async def slow_once(act: agentmesh.Activation) -> Any:
        if act.attempt == 1:
            await asyncio.sleep(10)
        return {"attempt": act.attempt}

    mesh.add_agent("quick", lambda act: "quick")
    w = wf([agent_node("s", "slow_once", timeoutMs=50, retry={"maxAttempts": 2}), agent_node("q", "quick")])
    r = arun(lambda: mesh.run_async(w, run_id="retry-to"))
    assert r.status == "completed" and r.output == {"s": {"attempt": 2}, "q": "quick"}
    assert [(e["type"], e.get("node")) for e in events(r.log_path) if e["type"].startswith("agent")] == [
        ("agentScheduled", "s"), ("agentScheduled", "q"), ("agentFailed", "s"), ("agentCompleted", "q"),
        ("agentScheduled", "s"), ("agentCompleted", "s"),
    ]


def test_timeout_of_a_blocking_plain_agent_under_run_async(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    release = threading.Event()
    mesh.add_agent("stuck", lambda act: release.wait(30) and "late")
    try:
        started = time.perf_counter()
        r = arun(lambda: mesh.run_async(wf([agent_node("n", "stuck", timeoutMs=50)]), run_id="stuck"))
        assert time.perf_counter() - started < 5
    finally:
        release.set()
    assert r.status == "failed" and r.error["code"] == "TIMEOUT" and r.error["node"] == "n"
    assert types(r.log_path)[-2:] == ["agentFailed", "runFailed"]
    # The mesh stays usable: its next run gets fresh workers.
    mesh.add_agent("stuck", lambda act: "fast")
    r = arun(lambda: mesh.run_async(wf([agent_node("n", "stuck", timeoutMs=1000)]), run_id="after"))
    assert r.status == "completed" and r.output == {"n": "fast"}


# cancellation --------------------------------------------------------------------------------


def test_cancel_token_from_inside_an_async_agent(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    token = agentmesh.CancelToken()
    seen: List[str] = []

    @mesh.agent("quitter")
    async def quitter(act: agentmesh.Activation) -> Any:
        await asyncio.sleep(0.01)
        token.cancel("enough from inside")
        return "never recorded"

    @mesh.agent("long")
    async def long(act: agentmesh.Activation) -> Any:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "never"

    mesh.add_agent("next", lambda act: seen.append("next ran"))
    w = wf([agent_node("q", "quitter"), agent_node("l", "long"), agent_node("n", "next", after=["q", "l"])])

    async def main() -> agentmesh.RunResult:
        r = await mesh.run_async(w, run_id="inside", cancel=token)
        await asyncio.sleep(0)  # let the cancelled agent task finish
        return r

    r = arun(main)
    assert r.status == "cancelled" and r.error["code"] == "CANCELLED"
    assert seen == ["cancelled"]
    assert token.cancelled and token.reason == "enough from inside"
    log = events(r.log_path)
    assert [e["type"] for e in log][-3:] == ["activationCancelled", "activationCancelled", "runCancelled"]
    assert log[-1]["data"]["reason"] == "enough from inside"
    assert "agentCompleted" not in [e["type"] for e in log]
    assert agentmesh.verify_log(r.log_path)["finished"] == "runCancelled"


def test_cancel_token_from_another_task(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    async def main() -> agentmesh.RunResult:
        started = asyncio.Event()
        token = agentmesh.CancelToken()

        @mesh.agent("long")
        async def long(act: agentmesh.Activation) -> Any:
            started.set()
            await asyncio.sleep(10)

        async def canceller() -> None:
            await started.wait()
            token.cancel("from another task")

        run_start = time.perf_counter()
        c = asyncio.ensure_future(canceller())
        r = await mesh.run_async(wf([agent_node("l", "long")]), run_id="other-task", cancel=token)
        await c
        assert time.perf_counter() - run_start < 5
        return r

    r = arun(main)
    assert r.status == "cancelled"
    assert r.error == {"code": "CANCELLED", "message": "from another task"}
    assert types(r.log_path) == ["runStarted", "stepStarted", "agentScheduled", "activationCancelled", "runCancelled"]


def test_cancel_token_from_another_thread(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    token = agentmesh.CancelToken()
    started = threading.Event()

    @mesh.agent("long")
    async def long(act: agentmesh.Activation) -> Any:
        started.set()
        await asyncio.sleep(10)

    t = threading.Thread(target=lambda: (started.wait(10), token.cancel("from a thread")))
    t.start()
    r = arun(lambda: mesh.run_async(wf([agent_node("l", "long"), agent_node("m", "long")]), run_id="thr", cancel=token))
    t.join()
    assert r.status == "cancelled" and r.error["message"] == "from a thread"


def test_activation_cancel_run_in_an_async_agent(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    ran: List[str] = []

    @mesh.agent("quit")
    async def quit(act: agentmesh.Activation) -> Any:
        await asyncio.sleep(0)
        act.cancel_run("enough")
        return "never recorded"

    mesh.add_agent("next", lambda act: ran.append(act.node))
    w = wf([agent_node("q", "quit"), agent_node("n", "next", after=["q"])])
    r = arun(lambda: mesh.run_async(w, run_id="cancel-run"))
    assert r.status == "cancelled" and r.error == {"code": "CANCELLED", "message": "enough"}
    assert ran == []
    assert types(r.log_path)[-2:] == ["activationCancelled", "runCancelled"]


@pytest.mark.parametrize("width", [1, 2], ids=["lone-activation", "two-activations"])
def test_cancelling_the_awaiting_task_leaves_the_run_resumable(tmp_path: Path, width: int) -> None:
    # What Ctrl-C does under asyncio.run: the driving task is cancelled. Nothing is written;
    # the agent tasks are cancelled and the run is resumed as after a crash.
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    observed: List[str] = []

    async def main() -> None:
        started = asyncio.Event()

        @mesh.agent("long")
        async def long(act: agentmesh.Activation) -> Any:
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                observed.append(act.node)
                raise
            return "never"

        w = wf([agent_node(f"l{i}", "long") for i in range(width)])
        task = asyncio.ensure_future(mesh.run_async(w, run_id="outer"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        await asyncio.sleep(0)

    arun(main)
    assert sorted(observed) == [f"l{i}" for i in range(width)]
    path = tmp_path / "outer.jsonl"
    assert types(path) == ["runStarted", "stepStarted"] + ["agentScheduled"] * width
    # The log was released (verify takes the writer lock) and the run is not finished.
    report = agentmesh.verify_log(path)
    assert report["finished"] is None and report["repaired"] is None

    @mesh.agent("long")
    async def quick(act: agentmesh.Activation) -> Any:
        return act.node

    r = arun(lambda: mesh.resume_async(path))
    assert r.status == "completed" and r.output == {f"l{i}": f"l{i}" for i in range(width)}
    clean = arun(lambda: clean_run(tmp_path, width))
    assert r.fingerprint == clean.fingerprint


async def clean_run(tmp_path: Path, width: int) -> agentmesh.RunResult:
    """The run of the test above, never interrupted."""
    mesh = agentmesh.Mesh(log_dir=tmp_path / "clean")

    @mesh.agent("long")
    async def quick(act: agentmesh.Activation) -> Any:
        return act.node

    return await mesh.run_async(wf([agent_node(f"l{i}", "long") for i in range(width)]), run_id="outer")


def test_wait_for_timeout_on_run_async_stops_driving(tmp_path: Path) -> None:
    # asyncio.wait_for bounds how long this call drives the run, not the run: on expiry the
    # run stays resumable (use a CancelToken or timeoutMs to end a run for good).
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("long")
    async def long(act: agentmesh.Activation) -> Any:
        await asyncio.sleep(10)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(mesh.run_async(wf([agent_node("l", "long")]), run_id="wf"), 0.05)

    arun(main)
    assert types(tmp_path / "wf.jsonl") == ["runStarted", "stepStarted", "agentScheduled"]
    assert agentmesh.check_log(tmp_path / "wf.jsonl")["finished"] is None


def test_async_agent_raising_cancelled_error_itself_is_a_failure(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("self_cancel")
    async def self_cancel(act: agentmesh.Activation) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future  # raises CancelledError in this agent only

    mesh.add_agent("fine", lambda act: "fine")
    w = wf([agent_node("s", "self_cancel"), agent_node("f", "fine")])

    async def main() -> Optional[BaseException]:
        try:
            await asyncio.wait_for(mesh.run_async(w, run_id="self"), 1)
        except agentmesh.AgentFailedError as e:
            return e
        return None

    e = arun(main)
    assert isinstance(e, agentmesh.AgentFailedError) and e.node == "s"
    assert isinstance(e.__cause__, asyncio.CancelledError)
    failed = [ev for ev in events(tmp_path / "self.jsonl") if ev["type"] == "agentFailed"]
    assert failed[0]["node"] == "s" and failed[0]["data"]["error"]["type"] == "CancelledError"


# resume and fork -----------------------------------------------------------------------------

HUMAN = [
    agent_node("draft", "writer"),
    {"id": "approve", "type": "human", "prompt": "ok?", "after": ["draft"]},
    agent_node("publish", "publisher", after=["approve"]),
]


def human_mesh(log_dir: Path, calls: List[str]) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)

    @mesh.agent("writer")
    async def writer(act: agentmesh.Activation) -> Any:
        calls.append(act.node)
        await asyncio.sleep(0)
        return "text"

    @mesh.agent("publisher")
    async def publisher(act: agentmesh.Activation) -> Any:
        calls.append(act.node)
        return {"published": act.deps["approve"], "draft": act.input}

    return mesh


def test_resume_async_with_approvals(tmp_path: Path) -> None:
    calls: List[str] = []
    r = arun(lambda: human_mesh(tmp_path, calls).run_async(wf(HUMAN), input="in", run_id="h"))
    assert r.status == "waiting" and calls == ["draft"]
    assert [(a.node, a.kind, a.prompt) for a in r.waiting] == [("approve", "human", "ok?")]
    before = Path(r.log_path).read_bytes()
    with pytest.raises(agentmesh.InvalidArgumentError, match="typo"):
        arun(lambda: human_mesh(tmp_path, calls).resume_async(r.log_path, {"typo": True}))
    with pytest.raises(agentmesh.InvalidArgumentError, match="'h'.*'other'"):
        arun(lambda: human_mesh(tmp_path, calls).resume_async(r.log_path, {"approve": True}, run_id="other"))
    assert Path(r.log_path).read_bytes() == before

    # Nothing approved: still waiting, and nothing runs again.
    again = arun(lambda: human_mesh(tmp_path, calls).resume_async(r.log_path))
    assert again.status == "waiting" and calls == ["draft"]

    done = arun(lambda: human_mesh(tmp_path, calls).resume_async(r.log_path, {"approve": {"ok": True}}, run_id="h"))
    assert done.status == "completed"
    assert done.output == {"publish": {"published": {"ok": True}, "draft": "in"}}
    assert calls == ["draft", "publish"]
    resolved = [e for e in events(done.log_path) if e["type"] == "humanResolved"]
    assert resolved[0]["node"] == "approve" and resolved[0]["data"]["output"] == {"ok": True}
    assert agentmesh.verify_log(done.log_path)["finished"] == "runCompleted"


def test_resume_async_equals_sync_resume(tmp_path: Path) -> None:
    calls: List[str] = []
    r1 = arun(lambda: human_mesh(tmp_path / "a", calls).run_async(wf(HUMAN), input="in", run_id="h"))
    done1 = arun(lambda: human_mesh(tmp_path / "a", calls).resume_async(r1.log_path, {"approve": "yes"}))
    sync = agentmesh.Mesh(log_dir=tmp_path / "s")
    sync.add_agent("writer", lambda act: "text")
    sync.add_agent("publisher", lambda act: {"published": act.deps["approve"], "draft": act.input})
    r2 = sync.run(wf(HUMAN), input="in", run_id="h")
    done2 = sync.resume(r2.log_path, {"approve": "yes"})
    assert agentmesh.canonical_log(done1.log_path) == agentmesh.canonical_log(done2.log_path)


def test_fork_async_replaces_an_output_and_reruns_only_later_nodes(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    calls: List[str] = []

    @mesh.agent("a")
    async def a(act: agentmesh.Activation) -> Any:
        calls.append(act.node)
        return {"n": act.node, "deps": act.deps}

    chain = [agent_node("one", "a"), agent_node("two", "a", after=["one"])]
    r = arun(lambda: mesh.run_async(wf(chain, name="chain"), run_id="base"))
    assert r.output == {"two": {"n": "two", "deps": {"one": {"n": "one", "deps": {}}}}}
    assert calls == ["one", "two"]

    forked = arun(lambda: mesh.fork_async(r.log_path, 4, {"one": "changed"}, run_id="fork1"))
    assert forked.status == "completed" and forked.run_id == "fork1"
    assert forked.output == {"two": {"n": "two", "deps": {"one": "changed"}}}
    assert calls == ["one", "two", "two"]
    assert agentmesh.read_header(forked.log_path)["parent"] == {"runId": "base", "seq": 4}
    overridden = [e for e in events(forked.log_path) if e["type"] == "outputOverridden"]
    assert [e["node"] for e in overridden] == ["one"]
    with pytest.raises(agentmesh.InvalidArgumentError):
        arun(lambda: mesh.fork_async(r.log_path, 3, {}, run_id="fork2"))
    assert not (tmp_path / "fork2.jsonl").exists()


# re-entrancy ---------------------------------------------------------------------------------


def test_reentrant_run_async_from_an_async_agent(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    inner = wf([agent_node("i1", "leaf"), agent_node("i2", "leaf")], name="inner")

    @mesh.agent("leaf")
    async def leaf(act: agentmesh.Activation) -> Any:
        await asyncio.sleep(0.01)
        return {"leaf": act.node, "input": act.input}

    @mesh.agent("outer")
    async def outer(act: agentmesh.Activation) -> Any:
        r = await mesh.run_async(inner, input=act.node, run_id=f"inner-{act.node}")
        return r.output

    w = wf([agent_node("o1", "outer"), agent_node("o2", "outer")], name="outer")
    r = arun(lambda: mesh.run_async(w, run_id="outer"))
    assert r.status == "completed"
    for o in ("o1", "o2"):
        assert r.output[o] == {"i1": {"leaf": "i1", "input": o}, "i2": {"leaf": "i2", "input": o}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inner-o1.jsonl", "inner-o2.jsonl", "outer.jsonl"]
    for p in tmp_path.iterdir():
        assert agentmesh.verify_log(p)["finished"] == "runCompleted"
        assert agentmesh.replay(p)["outcome"]["status"] == "completed"


def test_plain_agent_under_run_async_can_run_a_sync_run(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path, max_workers=2)
    inner = wf([agent_node("i1", "leaf"), agent_node("i2", "leaf")], name="inner")
    mesh.add_agent("leaf", lambda act: act.node)
    mesh.add_agent("outer", lambda act: mesh.run(inner, run_id=f"inner-{act.node}").output)
    w = wf([agent_node("o1", "outer"), agent_node("o2", "outer")], name="outer")
    r = arun(lambda: mesh.run_async(w, run_id="outer"))
    assert r.status == "completed"
    assert r.output == {"o1": {"i1": "i1", "i2": "i2"}, "o2": {"i1": "i1", "i2": "i2"}}
    for p in tmp_path.iterdir():
        assert agentmesh.verify_log(p)["finished"] == "runCompleted"


def test_two_runs_at_once_on_one_loop(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("echo")
    async def echo(act: agentmesh.Activation) -> Any:
        await asyncio.sleep(0.02)
        return act.input

    w = wf([agent_node("a", "echo"), agent_node("b", "echo", after=["a"])])

    async def main() -> List[agentmesh.RunResult]:
        return list(await asyncio.gather(*(mesh.run_async(w, input=i, run_id=f"r{i}") for i in range(4))))

    results = arun(main)
    assert [r.output for r in results] == [{"b": i} for i in range(4)]
    for i, r in enumerate(results):
        assert agentmesh.read_header(r.log_path)["runId"] == f"r{i}"
        assert agentmesh.verify_log(r.log_path)["finished"] == "runCompleted"


def test_run_async_rejects_bad_arguments_before_writing(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: 1)
    w = wf([agent_node("n", "a")])
    with pytest.raises(agentmesh.InvalidArgumentError):
        arun(lambda: mesh.run_async(w, seed=-1))
    with pytest.raises(agentmesh.InvalidArgumentError):
        arun(lambda: mesh.run_async(w, input={"x": float("nan")}))
    with pytest.raises(agentmesh.UnknownAgentError):
        arun(lambda: mesh.run_async(wf([agent_node("n", "nobody")])))
    assert list(tmp_path.iterdir()) == []
