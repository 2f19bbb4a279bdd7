"""Map nodes through the public API, with both drivers (threads and asyncio): one activation
per item of an array an earlier node produced, ``act.item``, outputs in item order whatever
the finish order, the ``concurrency`` window, maps over tools, collected failures, per-item
retries, and the typed errors of a bad array."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

import agentmesh
from agentmesh import Retry, Workflow

DRIVERS = ["threads", "asyncio"]
WAIT_S = 10.0  # how long a synchronised agent waits for its peers before failing the test


def drive(mesh: agentmesh.Mesh, driver: str, wf: Workflow, **kw: Any) -> agentmesh.RunResult:
    if driver == "threads":
        return mesh.run(wf, **kw)
    return asyncio.run(mesh.run_async(wf, **kw))


def research(**map_options: Any) -> Workflow:
    """planner → map(researcher) over the planner's questions → writer."""
    return (
        Workflow.builder("research")
        .agent("plan", "planner")
        .map("research", agent="researcher", over="/outputs/plan/questions", after="plan", **map_options)
        .agent("write", "writer", after="research")
        .build()
    )


def planner(act: agentmesh.Activation) -> Dict[str, Any]:
    n = act.input["n"]
    return {"questions": [{"id": f"q{i}", "text": f"question {i}"} for i in range(n)]}


def writer(act: agentmesh.Activation) -> Dict[str, Any]:
    assert act.item is None  # not a map's item
    return {"answers": act.deps["research"]}


def events(path: Any, kind: Optional[str] = None) -> List[Dict[str, Any]]:
    return [e for e in agentmesh.read_log(path) if kind is None or e["type"] == kind]


# item order, index, key, value ----------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_writer_gets_the_items_outputs_in_item_order_when_they_finish_in_reverse(
    tmp_path: Path, driver: str
) -> None:
    n = 5
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("planner", planner)
    mesh.add_agent("writer", writer)
    finished: List[int] = []
    seen: List[agentmesh.Activation] = []

    def answer(act: agentmesh.Activation) -> Dict[str, Any]:
        item = act.item
        assert isinstance(item, agentmesh.Item)
        finished.append(item.index)
        return {"q": item.key, "a": item.value["text"].upper()}

    # Item i finishes only once item i + 1 has: the reverse of item order, whatever the timing.
    if driver == "threads":
        done_t = [threading.Event() for _ in range(n)]

        @mesh.agent("researcher")
        def researcher(act: agentmesh.Activation) -> Any:
            seen.append(act)
            i = act.item.index  # type: ignore[union-attr]
            if i + 1 < n:
                assert done_t[i + 1].wait(WAIT_S), f"item {i + 1} never finished"
            out = answer(act)
            done_t[i].set()
            return out

    else:
        done_a: List[asyncio.Event] = []

        @mesh.agent("researcher")
        async def researcher_async(act: agentmesh.Activation) -> Any:
            if not done_a:
                done_a.extend(asyncio.Event() for _ in range(n))
            seen.append(act)
            i = act.item.index  # type: ignore[union-attr]
            if i + 1 < n:
                await asyncio.wait_for(done_a[i + 1].wait(), WAIT_S)
            out = answer(act)
            done_a[i].set()
            return out

    r = drive(mesh, driver, research(item_key="/id"), input={"n": n}, run_id="order")
    assert r.status == "completed", r.error
    assert finished == [4, 3, 2, 1, 0]
    expected = [{"q": f"q{i}", "a": f"QUESTION {i}"} for i in range(n)]
    assert r.output == {"write": {"answers": expected}}

    # What each item's activation carried.
    by_index = sorted(seen, key=lambda a: a.item.index)  # type: ignore[union-attr]
    assert [a.item.index for a in by_index] == list(range(n))  # type: ignore[union-attr]
    for i, act in enumerate(by_index):
        assert (act.node, act.kind, act.name, act.attempt, act.visit) == ("research", "agent", "researcher", 1, 1)
        assert act.item == act.item and act.item is act.item  # one object, converted once
        assert act.item.key == f"q{i}"  # type: ignore[union-attr]
        assert act.item.value == {"id": f"q{i}", "text": f"question {i}"}  # type: ignore[union-attr]
        assert act.deps == {"plan": planner(act)} and act.reads == {}
    assert len({a.step for a in seen}) == 1  # all items in one step

    scheduled = events(r.log_path, "agentScheduled")
    items = [e["data"]["item"] for e in scheduled if e["node"] == "research"]
    assert items == [{"index": i, "key": f"q{i}"} for i in range(n)]
    assert [e["data"] for e in events(r.log_path, "mapCompleted")] == [{"items": n}]
    assert agentmesh.replay(r.log_path)["outcome"]["output"] == r.output


def test_item_key_is_text_and_absent_without_item_key(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    got: Dict[str, List[Any]] = {"keyed": [], "plain": []}

    def record(act: agentmesh.Activation) -> int:
        item = act.item
        assert item is not None
        got[act.node].append((item.index, item.key, item.value))
        return item.index

    mesh.add_agent("a", record)
    wf = (
        Workflow.builder("keys")
        .map("keyed", agent="a", over="/input/rows", item_key="/n")
        .map("plain", agent="a", over="/input/rows")
        .build()
    )
    rows = [{"n": 7}, {"n": -1}, {"n": 30}]
    r = mesh.run(wf, input={"rows": rows}, run_id="keys")
    assert r.status == "completed"
    assert r.output == {"keyed": [0, 1, 2], "plain": [0, 1, 2]}
    assert sorted(got["keyed"]) == [(0, "7", rows[0]), (1, "-1", rows[1]), (2, "30", rows[2])]
    assert sorted(got["plain"]) == [(0, None, rows[0]), (1, None, rows[1]), (2, None, rows[2])]
    assert "Item" in agentmesh.__all__


def test_item_is_read_only_and_compares_by_content(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    items: List[agentmesh.Item] = []

    def keep(act: agentmesh.Activation) -> None:
        assert act.item is not None
        items.append(act.item)

    mesh.add_agent("a", keep)
    wf = Workflow.builder("ro").map("m", agent="a", over="/input", item_key="/k").build()
    mesh.run(wf, input=[{"k": "x", "v": [1, 2.5, None]}, {"k": "y"}], run_id="ro")
    first, second = sorted(items, key=lambda i: i.index)
    assert repr(first) == 'Item(index=0, key="x", value={"k":"x","v":[1,2.5,null]})'
    assert first != second and first == first and first != "x"
    with pytest.raises(AttributeError):
        first.index = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(first)  # unhashable, as its value may be a dict


def test_an_empty_array_completes_the_map_without_running_its_agent(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("planner", planner)
    mesh.add_agent("writer", writer)
    calls: List[int] = []
    mesh.add_agent("researcher", lambda act: calls.append(1))
    r = mesh.run(research(), input={"n": 0}, run_id="empty")
    assert r.status == "completed" and r.output == {"write": {"answers": []}}
    assert calls == []
    assert [e["data"] for e in events(r.log_path, "mapCompleted")] == [{"items": 0}]


# the concurrency window -------------------------------------------------------------------


class Peak:
    """Counts the agents running at once (a counter, not a clock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


class AsyncBarrier:
    """``threading.Barrier`` for coroutines (``asyncio.Barrier`` is Python 3.11+)."""

    def __init__(self, parties: int) -> None:
        self.parties, self.arrived = parties, 0
        self.event: Optional[asyncio.Event] = None

    async def wait(self) -> None:
        if self.event is None:
            self.event = asyncio.Event()
        self.arrived += 1
        if self.arrived == self.parties:
            self.event.set()
        await asyncio.wait_for(self.event.wait(), WAIT_S)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("concurrency", [2, None])
def test_concurrency_bounds_the_items_running_at_once(
    tmp_path: Path, driver: str, concurrency: Optional[int]
) -> None:
    n = 6
    # With the window, items meet in pairs (0 and 1, 2 and 3, ...): two do run at once. Without
    # it, all six must run at once to pass their barrier.
    group = 2 if concurrency else n
    peak = Peak()
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("planner", planner)
    mesh.add_agent("writer", writer)
    if driver == "threads":
        barriers_t = [threading.Barrier(group, timeout=WAIT_S) for _ in range(n // group)]

        @mesh.agent("researcher")
        def researcher(act: agentmesh.Activation) -> int:
            i = act.item.index  # type: ignore[union-attr]
            peak.enter()
            try:
                barriers_t[i // group].wait()
            finally:
                peak.leave()
            return i

    else:
        barriers_a = [AsyncBarrier(group) for _ in range(n // group)]

        @mesh.agent("researcher")
        async def researcher_async(act: agentmesh.Activation) -> int:
            i = act.item.index  # type: ignore[union-attr]
            peak.enter()
            try:
                await barriers_a[i // group].wait()
            finally:
                peak.leave()
            return i

    r = drive(mesh, driver, research(concurrency=concurrency), input={"n": n}, run_id="window")
    assert r.status == "completed", r.error
    assert r.output == {"write": {"answers": list(range(n))}}
    assert peak.peak == (2 if concurrency else n)
    # The window changes when items are handed out, never the log: one step, all scheduled.
    steps = [e["data"] for e in events(r.log_path, "stepStarted")]
    assert steps[1] == {"step": 2, "activations": n}


# maps over tools, failures, retries --------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_map_over_a_tool_calls_it_once_per_item(tmp_path: Path, driver: str) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    kinds: List[str] = []

    def fetch(act: agentmesh.Activation) -> Dict[str, Any]:
        kinds.append(f"{act.kind}:{act.name}:{act.node}")
        item = act.item
        assert item is not None
        return {"url": item.value, "len": len(item.value)}

    mesh.add_tool("http_get", fetch)
    mesh.add_agent("summarise", lambda act: [p["len"] for p in act.deps["fetch"]])
    wf = (
        Workflow.builder("fetch")
        .map("fetch", tool="http_get", over="/input/urls")
        .agent("sum", "summarise", after="fetch")
        .build()
    )
    assert wf.tool_names() == ["http_get"]
    urls = ["a.example", "bb.example", "ccc.example"]
    r = drive(mesh, driver, wf, input={"urls": urls}, run_id="tool")
    assert r.status == "completed" and r.output == {"sum": [9, 10, 11]}
    assert kinds == ["tool:http_get:fetch"] * 3
    scheduled = events(r.log_path, "toolScheduled")
    assert [e["data"]["item"] for e in scheduled] == [{"index": 0}, {"index": 1}, {"index": 2}]


@pytest.mark.parametrize("driver", DRIVERS)
def test_collect_keeps_every_items_outcome_in_item_order(tmp_path: Path, driver: str) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("planner", planner)
    mesh.add_agent("writer", writer)

    def researcher(act: agentmesh.Activation) -> Any:
        i = act.item.index  # type: ignore[union-attr]
        if i == 1:
            raise agentmesh.ActivationError("NoSource", "nothing found", retryable=False)
        if i == 3:
            raise LookupError("index gone")
        return i * 10

    mesh.add_agent("researcher", researcher)
    r = drive(mesh, driver, research(on_item_failure="collect"), input={"n": 4}, run_id="collect")
    assert r.status == "completed", r.error
    assert r.output == {"write": {"answers": [
        {"ok": True, "output": 0},
        {"ok": False, "error": {"type": "NoSource", "message": "nothing found"}},
        {"ok": True, "output": 20},
        {"ok": False, "error": {"type": "LookupError", "message": "index gone"}},
    ]}}
    assert [e["data"] for e in events(r.log_path, "mapCompleted")] == [{"items": 4, "failed": 2}]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_failed_item_fails_the_run_with_its_own_exception_as_cause(tmp_path: Path, driver: str) -> None:
    # The failing item finishes first and its siblings succeed after it: the cause raised is
    # still the failing item's exception.
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("planner", planner)
    mesh.add_agent("writer", writer)
    failed = threading.Event()
    boom = KeyError("q1")

    def researcher(act: agentmesh.Activation) -> Any:
        if act.item.index == 1:  # type: ignore[union-attr]
            failed.set()
            raise boom
        assert failed.wait(WAIT_S)
        return "fine"

    mesh.add_agent("researcher", researcher)  # plain functions: on worker threads in both drivers
    with pytest.raises(agentmesh.AgentFailedError) as info:
        drive(mesh, driver, research(), input={"n": 4}, run_id="fail")
    e = info.value
    assert e.__cause__ is boom
    assert e.node == "research" and "item 1" in str(e) and "KeyError" in str(e)
    assert e.result is not None and e.result.status == "failed"
    assert e.result.error is not None and e.result.error["item"] == 1  # RunError.item
    completed = [e for e in events(e.result.log_path, "agentCompleted") if e["node"] == "research"]
    assert len(completed) == 3  # the siblings in the same step still finished and were recorded


def test_retries_rerun_only_the_failed_items(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("planner", planner)
    mesh.add_agent("writer", writer)
    runs: List[Tuple[int, int]] = []
    lock = threading.Lock()

    def researcher(act: agentmesh.Activation) -> Any:
        i = act.item.index  # type: ignore[union-attr]
        with lock:
            runs.append((i, act.attempt))
        if i == 2 and act.attempt == 1:
            raise agentmesh.ActivationError("Flaky", "try again")
        return f"{i}@{act.attempt}"

    mesh.add_agent("researcher", researcher)
    r = mesh.run(research(retry=Retry(3, backoff_ms=1)), input={"n": 4}, run_id="retry")
    assert r.status == "completed"
    assert r.output == {"write": {"answers": ["0@1", "1@1", "2@2", "3@1"]}}
    assert sorted(runs) == [(0, 1), (1, 1), (2, 1), (2, 2), (3, 1)]


# a bad array fails the run with a typed error ----------------------------------------------


@pytest.mark.parametrize(
    "questions, options, code, words",
    [
        ("not a list", {}, "INVALID_OUTPUT", "/outputs/plan/questions is a string, not an array"),
        ({"q": 1}, {}, "INVALID_OUTPUT", "/outputs/plan/questions is an object, not an array"),
        (None, {}, "INVALID_OUTPUT", "/outputs/plan/questions"),
        ([{"id": "a"}, {"id": "a"}], {"item_key": "/id"}, "INVALID_OUTPUT", "a"),
        ([{"id": "a"}, {"x": 1}], {"item_key": "/id"}, "INVALID_OUTPUT", "item 1"),
        ([1, 2, 3], {"max_items": 2}, "LIMIT_EXCEEDED", "/outputs/plan/questions holds 3 items; maxItems is 2"),
    ],
    ids=["string", "object", "missing", "duplicate-key", "missing-key", "too-many"],
)
def test_a_bad_array_fails_the_run_naming_the_map_and_path(
    tmp_path: Path, questions: Any, options: Dict[str, Any], code: str, words: str
) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    plan: Callable[[agentmesh.Activation], Any] = (
        (lambda act: {"other": 1}) if questions is None else (lambda act: {"questions": questions})
    )
    mesh.add_agent("planner", plan)
    mesh.add_agent("writer", writer)
    ran: List[int] = []
    mesh.add_agent("researcher", lambda act: ran.append(1))
    r = mesh.run(research(**options), run_id="bad")
    assert r.status == "failed"
    assert r.error is not None
    assert r.error["code"] == code and r.error["node"] == "research"
    assert r.error["message"].startswith("map 'research': ") and words in r.error["message"]
    assert ran == []
    assert agentmesh.verify_log(r.log_path)["finished"] == "runFailed"
