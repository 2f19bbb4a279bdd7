"""Watching a run while it runs: ``on_event`` and the event streams (``Mesh.stream``,
``Mesh.stream_async``)."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import agentmesh

Event = Dict[str, Any]

# plan, then `slow` and `quick` in parallel, then `join`. `slow` returns only once the watcher
# has seen `quick`'s completion, so the log holds quick's completion (the later seq) first:
# commit order differs from seq order.
PARALLEL = {"name": "watched", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "slow", "type": "agent", "agent": "worker", "after": ["plan"]},
    {"id": "quick", "type": "agent", "agent": "worker", "after": ["plan"]},
    {"id": "join", "type": "agent", "agent": "joiner", "after": ["slow", "quick"]},
]}


def workflow() -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict(PARALLEL)


class Agents:
    """The agents of PARALLEL; `seen(event)` is what the watcher calls with each event."""

    def __init__(self) -> None:
        self.quick_done = threading.Event()
        self.calls: List[str] = []  # agent calls and deliveries, in the order they happened
        self.lock = threading.Lock()

    def mesh(self, log_dir: Optional[Path]) -> agentmesh.Mesh:
        mesh = agentmesh.Mesh(log_dir=log_dir)
        mesh.add_agent("planner", self.planner)
        mesh.add_agent("worker", self.worker)
        mesh.add_agent("joiner", self.joiner)
        return mesh

    def note(self, what: str) -> None:
        with self.lock:
            self.calls.append(what)

    def planner(self, act: agentmesh.Activation) -> Any:
        self.note(f"run {act.node}")
        return {"topic": act.input}

    def worker(self, act: agentmesh.Activation) -> Any:
        self.note(f"run {act.node}")
        if act.node == "slow":
            assert self.quick_done.wait(10), "the watcher never saw quick's completion"
        return f"{act.node} on {act.deps['plan']['topic']}"

    def joiner(self, act: agentmesh.Activation) -> Any:
        self.note(f"run {act.node}")
        return sorted(act.deps.values())

    def seen(self, event: Event) -> None:
        self.note(f"event {event['type']} {event.get('node', '-')}")
        if event["type"] == "agentCompleted" and event.get("node") == "quick":
            self.quick_done.set()


def file_records(path: Any) -> List[Event]:
    """The log's records as the file holds them, in file (commit) order, header skipped."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f.read().splitlines()[1:]]


def assert_as_the_log_holds_them(delivered: List[Event], path: Any) -> None:
    """Every committed event, once, in commit order; each the dict read_log gives for it
    plus its meta, which is the file's."""
    records = file_records(path)
    assert [e["seq"] for e in delivered] == [r["seq"] for r in records]
    by_seq = {e["seq"]: e for e in agentmesh.read_log(path)}
    for event, record in zip(delivered, records):
        assert "meta" in event and event["meta"] == record["meta"]
        assert {k: v for k, v in event.items() if k != "meta"} == by_seq[event["seq"]]
        # Same keys and values as the file's record (which leaves the run ids to its header).
        assert {k: v for k, v in event.items() if k not in ("runId", "traceId")} == {
            k: v for k, v in record.items() if k != "crc"
        }


def run_clean(tmp_path: Path, run_id: str) -> agentmesh.RunResult:
    """The run of PARALLEL never interrupted, in a directory of its own."""
    agents = Agents()
    agents.quick_done.set()
    return agents.mesh(tmp_path / "clean").run(workflow(), input="bees", run_id=run_id)


def test_on_event_gets_every_event_in_commit_order_as_read_log_gives_it(tmp_path: Path) -> None:
    agents = Agents()
    threads: List[int] = []

    def on_event(event: Event) -> None:
        threads.append(threading.get_ident())
        agents.seen(event)

    r = agents.mesh(tmp_path).run(workflow(), input="bees", run_id="w", on_event=on_event)
    assert r.status == "completed"
    assert set(threads) == {threading.get_ident()}  # on the thread that called run
    records = file_records(r.log_path)
    seqs = [e["seq"] for e in records]
    assert seqs != sorted(seqs)  # quick's completion was committed before slow's
    delivered = [c for c in agents.calls if c.startswith("event")]
    assert len(delivered) == len(records)
    # Delivered before the run goes on: an agent starts only after its scheduling event was
    # handed out, and the run's last event is the last thing that happened.
    for node in ("plan", "slow", "quick", "join"):
        assert agents.calls.index(f"event agentScheduled {node}") < agents.calls.index(f"run {node}")
    assert agents.calls[-1] == "event runCompleted -"


def test_on_event_events_equal_the_log(tmp_path: Path) -> None:
    agents = Agents()
    events: List[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        agents.seen(event)

    r = agents.mesh(tmp_path).run(workflow(), input="bees", run_id="w", on_event=on_event)
    assert_as_the_log_holds_them(events, r.log_path)
    assert events[0]["type"] == "runStarted" and events[-1]["type"] == "runCompleted"


def test_on_event_with_resume_and_fork_gets_what_they_append(tmp_path: Path) -> None:
    w = agentmesh.Workflow.from_dict({"name": "approval", "nodes": [
        {"id": "draft", "type": "agent", "agent": "writer"},
        {"id": "ok", "type": "human", "prompt": "publish?", "after": ["draft"]},
        {"id": "publish", "type": "agent", "agent": "writer", "after": ["ok"]},
    ]})
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("writer", lambda act: {"node": act.node, "deps": act.deps})
    first: List[Event] = []
    waiting = mesh.run(w, run_id="h", on_event=first.append)
    assert waiting.status == "waiting"
    assert_as_the_log_holds_them(first, waiting.log_path)

    later: List[Event] = []
    done = mesh.resume(waiting.log_path or "", approvals={"ok": {"yes": True}}, on_event=later.append)
    assert done.status == "completed"
    records = file_records(done.log_path)
    assert [e["seq"] for e in later] == [r["seq"] for r in records[len(first):]]
    assert later[0]["type"] == "humanResolved"
    assert_as_the_log_holds_them(first + later, done.log_path)

    # A fork hands out the events it copies from its parent too: its whole log.
    forked: List[Event] = []
    seq = max(e["seq"] for e in first if e["type"] == "agentCompleted")
    f = mesh.fork(done.log_path or "", seq, {"draft": "other"}, run_id="f", on_event=forked.append)
    assert f.status == "waiting"
    assert_as_the_log_holds_them(forked, f.log_path)
    assert agentmesh.read_header(f.log_path or "")["meta"]["host"] == "python"


def test_on_event_that_raises_stops_the_run_resumably(tmp_path: Path) -> None:
    agents = Agents()

    class Full(Exception):
        pass

    def on_event(event: Event) -> None:
        agents.seen(event)
        if event["type"] == "agentScheduled" and event["node"] == "join":
            raise Full("the watcher's disk is full")

    mesh = agents.mesh(tmp_path)
    with pytest.raises(Full):
        mesh.run(workflow(), input="bees", run_id="w", on_event=on_event)
    assert "run join" not in agents.calls  # the run stopped at the failing delivery
    path = tmp_path / "w.jsonl"
    kinds = [e["type"] for e in agentmesh.read_log(path)]
    assert kinds[-1] == "agentScheduled" and "runCancelled" not in kinds
    assert agentmesh.verify_log(path)["finished"] is None  # the lock was released
    r = mesh.resume(path)
    assert r.status == "completed" and r.fingerprint == run_clean(tmp_path, "w").fingerprint


def test_sync_run_refuses_an_async_on_event(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: 1)
    w = agentmesh.Workflow.builder("w").agent("n", "a").build()

    async def on_event(event: Event) -> None:
        pass

    with pytest.raises(agentmesh.InvalidArgumentError, match="async callback needs Mesh.run_async"):
        mesh.run(w, run_id="w", on_event=on_event)
    assert agentmesh.verify_log(tmp_path / "w.jsonl")["finished"] is None
    with pytest.raises(agentmesh.InvalidArgumentError, match="on_event must be callable"):
        mesh.run(w, run_id="x", on_event="print")  # type: ignore[arg-type]
    assert not (tmp_path / "x.jsonl").exists()


def test_on_event_in_run_async_may_be_async(tmp_path: Path) -> None:
    agents = Agents()
    events: List[Event] = []

    async def on_event(event: Event) -> None:
        await asyncio.sleep(0)
        events.append(event)
        agents.seen(event)

    async def main() -> agentmesh.RunResult:
        return await agents.mesh(tmp_path).run_async(workflow(), input="bees", run_id="w", on_event=on_event)

    r = asyncio.run(main())
    assert r.status == "completed"
    assert_as_the_log_holds_them(events, r.log_path)
    assert r.fingerprint == run_clean(tmp_path, "w").fingerprint


# streams -------------------------------------------------------------------------------------


def test_stream_yields_every_event_and_then_has_the_result(tmp_path: Path) -> None:
    agents = Agents()
    stream = agents.mesh(tmp_path).stream(workflow(), input="bees", run_id="w")
    with pytest.raises(agentmesh.InvalidArgumentError, match="no result"):
        stream.result
    events = []
    for event in stream:
        events.append(event)
        agents.seen(event)
    assert stream.result.status == "completed" and stream.result.output == {"join": ["quick on bees", "slow on bees"]}
    assert_as_the_log_holds_them(events, stream.result.log_path)
    assert stream.result.fingerprint == run_clean(tmp_path, "w").fingerprint
    stream.close()  # a no-op once finished
    assert stream.result.status == "completed"


def test_stream_in_memory(tmp_path: Path) -> None:
    agents = Agents()
    agents.quick_done.set()
    stream = agents.mesh(None).stream(workflow(), input="bees", run_id="w")
    kinds = [e["type"] for e in stream]
    assert kinds[0] == "runStarted" and kinds[-1] == "runCompleted"
    assert stream.result.log_path is None
    assert stream.result.fingerprint == run_clean(tmp_path, "w").fingerprint


@pytest.mark.parametrize("how", ["break", "raise", "close", "with"])
def test_leaving_a_stream_early_leaves_the_run_resumable(tmp_path: Path, how: str) -> None:
    agents = Agents()
    mesh = agents.mesh(tmp_path)
    path = tmp_path / "w.jsonl"

    def stop_at(event: Event) -> bool:
        # `quick` has completed, `slow` is still running on a worker thread.
        return event["type"] == "agentCompleted" and event["node"] == "quick"

    if how == "break":
        for event in mesh.stream(workflow(), input="bees", run_id="w"):
            if stop_at(event):
                break
    elif how == "raise":
        with pytest.raises(KeyError):
            for event in mesh.stream(workflow(), input="bees", run_id="w"):
                if stop_at(event):
                    raise KeyError("the consumer's bug")
    elif how == "close":
        stream = mesh.stream(workflow(), input="bees", run_id="w")
        for event in stream:
            if stop_at(event):
                break
        stream.close()  # the stream is still referenced: close releases the run
        with pytest.raises(agentmesh.InvalidArgumentError, match="resume the run"):
            stream.result
    else:
        with mesh.stream(workflow(), input="bees", run_id="w") as events:
            for event in events:
                if stop_at(event):
                    break
    # Released at once (verify takes the writer lock); nothing final written.
    report = agentmesh.verify_log(path)
    assert report["finished"] is None
    before = path.read_bytes()
    agents.quick_done.set()  # `slow` returns now: its result reaches no log
    gc.collect()
    kinds = [e["type"] for e in agentmesh.read_log(path)]
    assert "runCancelled" not in kinds and "activationCancelled" not in kinds
    r = mesh.resume(path)
    assert r.status == "completed" and r.fingerprint == run_clean(tmp_path, "w").fingerprint
    assert path.read_bytes().startswith(before)


def test_a_stream_never_iterated_holds_no_lock_once_closed(tmp_path: Path) -> None:
    agents = Agents()
    agents.quick_done.set()
    mesh = agents.mesh(tmp_path)
    stream = mesh.stream(workflow(), input="bees", run_id="w")  # started: runStarted is written
    with pytest.raises(agentmesh.AgentMeshIOError, match="locked"):
        mesh.resume(tmp_path / "w.jsonl")
    stream.close()
    assert mesh.resume(tmp_path / "w.jsonl").status == "completed"


def test_stream_of_a_failing_run_raises_agent_failed_and_keeps_the_result(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def broken(act: agentmesh.Activation) -> Any:
        raise AttributeError("'Message' object has no attribute 'contents'")

    mesh.add_agent("a", broken)
    stream = mesh.stream(agentmesh.Workflow.builder("w").agent("n", "a").build(), run_id="w")
    kinds: List[str] = []
    with pytest.raises(agentmesh.AgentFailedError) as info:
        for event in stream:
            kinds.append(event["type"])
    assert kinds[-1] == "runFailed"  # every event was handed out before the error
    assert isinstance(info.value.__cause__, AttributeError)
    assert stream.result is info.value.result and stream.result.status == "failed"


def test_stream_async(tmp_path: Path) -> None:
    agents = Agents()

    async def main() -> None:
        mesh = agents.mesh(tmp_path)
        events = []
        stream = mesh.stream_async(workflow(), input="bees", run_id="w")
        async for event in stream:
            events.append(event)
            agents.seen(event)
        assert stream.result.status == "completed"
        assert_as_the_log_holds_them(events, stream.result.log_path)

    asyncio.run(main())
    assert agentmesh.fingerprint(tmp_path / "w.jsonl") == run_clean(tmp_path, "w").fingerprint


@pytest.mark.parametrize("how", ["break", "async-with"])
def test_leaving_an_async_stream_early_releases_the_run_at_once(tmp_path: Path, how: str) -> None:
    cancelled: List[str] = []

    async def main() -> agentmesh.RunResult:
        mesh = agentmesh.Mesh(log_dir=tmp_path)

        @mesh.agent("a")
        async def a(act: agentmesh.Activation) -> Any:
            if act.node == "slow":
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    cancelled.append(act.node)
                    raise
            return act.node

        w = agentmesh.Workflow.builder("w").agent("slow", "a").agent("quick", "a").build()
        if how == "break":
            async for event in mesh.stream_async(w, run_id="w"):
                if event["type"] == "agentCompleted":
                    break
        else:
            async with mesh.stream_async(w, run_id="w") as events:
                async for event in events:
                    if event["type"] == "agentCompleted":
                        break
        # Resumable right away, in the same loop iteration: the log was released.
        assert agentmesh.verify_log(tmp_path / "w.jsonl")["finished"] is None
        await asyncio.sleep(0)

        @mesh.agent("a")
        async def again(act: agentmesh.Activation) -> Any:
            return act.node

        return await mesh.resume_async(tmp_path / "w.jsonl")

    r = asyncio.run(main())
    assert cancelled == ["slow"]
    assert r.status == "completed" and r.output == {"slow": "slow", "quick": "quick"}
    kinds = [e["type"] for e in agentmesh.read_log(tmp_path / "w.jsonl")]
    assert "runCancelled" not in kinds and "activationCancelled" not in kinds


# streams of resume, retry and fork -------------------------------------------------------------

FLAKY = {"name": "flaky", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "fetch", "type": "tool", "tool": "http", "after": ["plan"]},
]}


def flaky_mesh(tmp_path: Path, down: List[bool]) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("planner", lambda act: {"q": 1})

    def http(act: agentmesh.Activation) -> Any:
        if down[0]:
            raise ConnectionError("refused")
        return {"status": 200}

    mesh.add_tool("http", http)
    return mesh


def test_resume_retry_and_fork_streams_yield_what_they_append(tmp_path: Path) -> None:
    down = [True]
    mesh = flaky_mesh(tmp_path, down)
    with pytest.raises(agentmesh.AgentFailedError):
        mesh.run(agentmesh.Workflow.from_dict(FLAKY), run_id="f")
    path = tmp_path / "f.jsonl"
    before = len(file_records(path))
    down[0] = False
    stream = mesh.stream_retry(path)
    events = list(stream)
    assert events[0]["type"] == "runReopened"
    assert stream.result.status == "completed"
    assert [e["seq"] for e in events] == [r["seq"] for r in file_records(path)[before:]]
    # A fork's stream starts with the events it copied.
    fork = mesh.stream_fork(path, 4, overrides={"plan": {"q": 2}})
    copied = list(fork)
    assert copied[0]["type"] == "runStarted" and fork.result.status == "completed"
    # Resuming a finished run appends nothing: an empty stream with the run's result.
    again = mesh.stream_resume(fork.result.log_path)
    assert list(again) == [] and again.result.status == "completed"


def test_async_streams_of_retry(tmp_path: Path) -> None:
    down = [True]
    mesh = flaky_mesh(tmp_path, down)
    with pytest.raises(agentmesh.AgentFailedError):
        mesh.run(agentmesh.Workflow.from_dict(FLAKY), run_id="a")
    down[0] = False

    async def main() -> List[str]:
        stream = mesh.stream_retry_async(tmp_path / "a.jsonl")
        kinds = [e["type"] async for e in stream]
        assert stream.result.status == "completed"
        resumed = mesh.stream_resume_async(tmp_path / "a.jsonl")
        assert [e async for e in resumed] == []
        forked = mesh.stream_fork_async(tmp_path / "a.jsonl", 1, run_id="a2")
        assert [e["type"] async for e in forked][0] == "runStarted"
        return kinds

    kinds = asyncio.run(main())
    assert kinds[0] == "runReopened" and kinds[-1] == "runCompleted"
