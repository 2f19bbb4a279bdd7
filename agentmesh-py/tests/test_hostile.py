"""Hostile input to the Python binding: every case ends in a typed error that names the node
(or a recorded outcome), never a crash, a hang or a lost event."""

from __future__ import annotations

import _thread
import asyncio
import gc
import json
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import agentmesh


def wf(nodes: List[Dict[str, Any]], name: str = "t", **extra: Any) -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict({"name": name, "nodes": nodes, **extra})


def agent_node(id: str, agent: str, **extra: Any) -> Dict[str, Any]:
    return {"id": id, "type": "agent", "agent": agent, **extra}


def events(path: Any) -> List[Dict[str, Any]]:
    return list(agentmesh.read_log(path))


def types(path: Any) -> List[str]:
    return [e["type"] for e in agentmesh.read_log(path)]


def in_thread(call: Callable[[], Any], limit: float = 5.0) -> Tuple[Any, Optional[BaseException]]:
    """Run ``call`` on a daemon thread; fail (instead of hanging the suite) when it does not
    return within ``limit`` seconds."""
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = call()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        pytest.fail(f"the call did not return within {limit} s (hang)")
    return box.get("result"), box.get("error")


@pytest.fixture
def forever() -> Iterator[threading.Event]:
    """An event no agent sees set during its test (released afterwards, so stuck worker
    threads end with the test)."""
    event = threading.Event()
    yield event
    event.set()


# outputs that are not JSON data --------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def self_referencing() -> Any:
    value: List[Any] = []
    value.append(value)
    return value


def generator() -> Any:
    yield 1


BAD_OUTPUTS: Dict[str, Tuple[Callable[[], Any], str]] = {
    "set": (lambda: {1, 2}, "set at $ is not JSON data"),
    "object": (lambda: object(), "object at $ is not JSON data"),
    "bytes": (lambda: b"bytes", "bytes at $ is not JSON data"),
    "nan": (lambda: float("nan"), "nan at $ is not a JSON number"),
    "inf": (lambda: float("inf"), "inf at $ is not a JSON number"),
    "int-key": (lambda: {1: "x"}, "key 1 (int) at $ is not a string"),
    "deep-200": (lambda: nested(200), "nesting deeper than 100 lists/dicts"),
    "self-reference": (self_referencing, "nesting deeper than 100 lists/dicts"),
    "lone-surrogate": (lambda: "\ud800", "lone surrogate"),
    "nested-nan": (lambda: {"a": [1, {"b": float("-inf")}]}, "-inf at $['a'][1]['b'] is not a JSON number"),
    "nested-object": (lambda: {"x": [object()]}, "object at $['x'][0] is not JSON data"),
    "generator": (generator, "generator at $ is not JSON data"),
}


def check_invalid_output(e: agentmesh.AgentFailedError, node: str, why: str) -> None:
    cause = e.__cause__
    assert isinstance(cause, agentmesh.InvalidOutputError), repr(cause)
    assert cause.code == "INVALID_OUTPUT" and cause.node == node
    assert f"node '{node}'" in str(cause) and why in str(cause)
    assert e.node == node and e.result.status == "failed"
    assert e.result.error["code"] == "AGENT_FAILED" and e.result.error["node"] == node
    log = events(e.result.log_path)
    failed = [ev for ev in log if ev["type"] == "agentFailed"]
    assert len(failed) == 1 and failed[0]["node"] == node  # not retryable, despite the policy
    error = failed[0]["data"]["error"]
    assert error["kind"] == "error" and error["type"] == "InvalidOutput" and error["retryable"] is False
    assert why in error["message"]
    assert log[-1]["type"] == "runFailed"
    report = agentmesh.verify_log(e.result.log_path)
    assert report["finished"] == "runFailed" and report["events"] == len(log) and report["holes"] == []


@pytest.mark.parametrize("name", list(BAD_OUTPUTS))
def test_non_json_output_fails_the_node_with_invalid_output(tmp_path: Path, name: str) -> None:
    make, why = BAD_OUTPUTS[name]
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("bad", lambda act: make())
    mesh.add_agent("good", lambda act: "fine")
    w = wf([agent_node("emit", "bad", retry={"maxAttempts": 3}), agent_node("other", "good")])
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(w, run_id="bad")
    check_invalid_output(info.value, "emit", why)
    # The healthy activation of the same step is still recorded.
    done = [e for e in events(info.value.result.log_path) if e["type"] == "agentCompleted"]
    assert [(e["node"], e["data"]["output"]) for e in done] == [("other", "fine")]


@pytest.mark.parametrize("name", ["set", "nan", "deep-200", "lone-surrogate"])
def test_non_json_output_of_an_async_agent(tmp_path: Path, name: str) -> None:
    make, why = BAD_OUTPUTS[name]
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    async def bad(act: agentmesh.Activation) -> Any:
        return make()

    mesh.add_agent("bad", bad)
    with pytest.raises(agentmesh.AgentFailedError) as info:
        asyncio.run(mesh.run_async(wf([agent_node("emit", "bad")]), run_id="bad"))
    check_invalid_output(info.value, "emit", why)


def test_non_json_usage_and_tool_output_name_the_node(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: agentmesh.Output(1, usage={"inputTokens": -1}))
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([agent_node("u", "a")]), run_id="usage")
    check_invalid_output(info.value, "u", "usage must be")

    mesh.add_tool("t", lambda act: {"k": {1, 2}})
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([{"id": "tool", "type": "tool", "tool": "t"}]), run_id="tool")
    cause = info.value.__cause__
    assert isinstance(cause, agentmesh.InvalidOutputError) and cause.node == "tool"
    failed = [e for e in events(info.value.result.log_path) if e["type"] == "toolFailed"]
    assert failed[0]["node"] == "tool" and failed[0]["data"]["error"]["type"] == "InvalidOutput"


def test_integers_beyond_64_bits_are_recorded_as_the_core_reads_them(tmp_path: Path) -> None:
    # Deterministic across hosts: the same value as the JSON text read by the core.
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: [2**70, -(2**64), 2**64 - 1, -(2**63)])
    r = mesh.run(wf([agent_node("n", "a")]), run_id="big-int")
    raw = agentmesh.Mesh(log_dir=tmp_path / "raw")
    raw.add_agent("a", lambda act: agentmesh.RawJson(
        "[1180591620717411303424, -18446744073709551616, 18446744073709551615, -9223372036854775808]"
    ))
    r2 = raw.run(wf([agent_node("n", "a")]), run_id="big-int")
    assert r.output == {"n": [float(2**70), -float(2**64), 2**64 - 1, -(2**63)]}
    assert agentmesh.canonical_log(r.log_path) == agentmesh.canonical_log(r2.log_path)


# large records -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oversized_record(tmp_path_factory: pytest.TempPathFactory) -> agentmesh.AgentFailedError:
    """One run (shared: it moves 64 MiB) whose agent returns a record over the 64 MiB limit."""
    mesh = agentmesh.Mesh(log_dir=tmp_path_factory.mktemp("oversized"), fsync="never")
    mesh.add_agent("huge", lambda act: "z" * (64 << 20))
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([agent_node("big", "huge", retry={"maxAttempts": 2})]), run_id="huge")
    return info.value


def test_record_over_64_mib_fails_the_node(oversized_record: agentmesh.AgentFailedError) -> None:
    e = oversized_record
    cause = e.__cause__
    assert isinstance(cause, agentmesh.InvalidOutputError)
    assert "node 'big'" in str(cause) and "67108864" in str(cause)
    assert e.node == "big" and e.result.error["node"] == "big"
    log = events(e.result.log_path)
    assert [ev["type"] for ev in log] == ["runStarted", "stepStarted", "agentScheduled", "agentFailed", "runFailed"]
    assert log[3]["data"]["error"]["type"] == "InvalidOutput" and log[3]["data"]["error"]["retryable"] is False
    assert agentmesh.verify_log(e.result.log_path)["finished"] == "runFailed"


def test_record_over_64_mib_error_has_node_attribute(oversized_record: agentmesh.AgentFailedError) -> None:
    cause = oversized_record.__cause__
    assert isinstance(cause, agentmesh.InvalidOutputError) and cause.node == "big"


def repeat(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def test_ten_megabyte_input_and_outputs_reach_agents_and_log_intact(tmp_path: Path) -> None:
    mb10 = 10 * 1024 * 1024
    big_input = {"doc": repeat("input é \"quoted\" \\ \n", mb10)}
    big_output = repeat("日志 log\t\u0001", mb10)
    seen: Dict[str, Any] = {}
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync="never")
    mesh.add_agent("producer", lambda act: big_output)

    def consumer(act: agentmesh.Activation) -> Any:
        seen["dep"] = act.deps["produce"] == big_output
        seen["input"] = act.input == big_input
        return {"len": len(act.deps["produce"]), "input_len": len(act.input["doc"])}

    mesh.add_agent("consumer", consumer)
    w = wf([agent_node("produce", "producer"), agent_node("consume", "consumer", after=["produce"])])
    r = mesh.run(w, input=big_input, run_id="big")
    assert r.status == "completed"
    assert r.output == {"consume": {"len": mb10, "input_len": mb10}}
    assert seen == {"dep": True, "input": True}
    # The canonical log, parsed here (read_log gives the same events, but its native
    # conversion takes seconds on 30 MB in a debug build).
    header, *log = [json.loads(line) for line in agentmesh.canonical_log(r.log_path).splitlines()]
    assert header["runId"] == "big"
    assert [e["type"] for e in log] == [
        "runStarted", "stepStarted", "agentScheduled", "agentCompleted",
        "stepStarted", "agentScheduled", "agentCompleted", "runCompleted",
    ]
    assert log[0]["data"]["input"] == big_input
    assert log[3]["node"] == "produce" and log[3]["data"]["output"] == big_output
    assert agentmesh.verify_log(r.log_path)["finished"] == "runCompleted"


def test_run_output_over_32_mib_fails_with_limit_exceeded() -> None:
    # Each output fits a record; together the terminal outputs exceed half the record limit.
    part = "y" * (17 << 20)
    mesh = agentmesh.Mesh()
    mesh.add_agent("p", lambda act: part)
    r = mesh.run(wf([agent_node("a", "p"), agent_node("b", "p")]), run_id="too-big")
    assert r.status == "failed" and r.output is None
    assert r.error["code"] == "LIMIT_EXCEEDED" and "node" not in r.error
    assert "terminal nodes a, b" in r.error["message"] and "33554432" in r.error["message"]
    lines = r.canonical().split(b"\n")
    assert lines[-1] == b""
    assert b'"type":"agentCompleted"' in lines[-3] and b'"type":"agentCompleted"' in lines[-4]
    assert lines[-2].startswith(b'{"seq":7,"type":"runFailed"') and b"LIMIT_EXCEEDED" in lines[-2]


# coroutines returned to the synchronous driver -----------------------------------------------


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("kind", ["agent", "tool"])
def test_coroutine_returned_to_sync_run_is_invalid_output(tmp_path: Path, kind: str) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    async def needs_a_loop(act: agentmesh.Activation) -> Any:
        return "never awaited"

    if kind == "agent":
        mesh.add_agent("a", needs_a_loop)
        node = agent_node("n", "a", retry={"maxAttempts": 3})
    else:
        mesh.add_tool("a", needs_a_loop)
        node = {"id": "n", "type": "tool", "tool": "a", "retry": {"maxAttempts": 3}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(agentmesh.AgentFailedError) as info:
            mesh.run(wf([node]), run_id="coro")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    e = info.value
    cause = e.__cause__
    assert isinstance(cause, agentmesh.InvalidOutputError)
    assert cause.node == "n" and "run_async" in str(cause) and "coroutine" in str(cause)
    assert e.result.error["node"] == "n" and e.result.error["code"] == "AGENT_FAILED"
    failed = [ev for ev in events(e.result.log_path) if ev["type"] == f"{kind}Failed"]
    assert len(failed) == 1
    assert failed[0]["data"]["error"]["type"] == "InvalidOutput" and failed[0]["data"]["error"]["retryable"] is False
    assert agentmesh.verify_log(e.result.log_path)["finished"] == "runFailed"


def test_unawaited_coroutine_detection_works() -> None:
    # The check above is only meaningful if a coroutine that is not closed is reported.
    async def f() -> None:
        pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coro = f()
        del coro
        gc.collect()
    assert any("never awaited" in str(w.message) for w in caught)


# agents that misbehave -----------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2], ids=["lone", "with-sibling"])
def test_never_returning_agent_times_out_promptly(tmp_path: Path, forever: threading.Event, width: int) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("stuck", lambda act: forever.wait())
    mesh.add_agent("quick", lambda act: "quick")
    nodes = [agent_node("n", "stuck", timeoutMs=100)] + [agent_node("q", "quick")] * (width - 1)
    started = time.perf_counter()
    r, err = in_thread(lambda: mesh.run(wf(nodes), run_id="stuck"))
    assert err is None
    assert time.perf_counter() - started < 3
    assert r.status == "failed"
    assert r.error == {"code": "TIMEOUT", "message": "node 'n' failed on attempt 1/1: Timeout: no result within 100 ms", "node": "n"}
    failed = [e for e in events(r.log_path) if e["type"] == "agentFailed"]
    assert failed[0]["node"] == "n" and failed[0]["data"]["error"]["kind"] == "timeout"
    assert agentmesh.verify_log(r.log_path)["finished"] == "runFailed"
    # The stuck worker does not hold up the next run of the mesh.
    r, err = in_thread(lambda: mesh.run(wf([agent_node("q", "quick")]), run_id="next"))
    assert err is None and r.status == "completed"


def test_agent_raising_system_exit_is_a_recorded_failure(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def leave(act: agentmesh.Activation) -> Any:
        raise SystemExit(3)

    mesh.add_agent("leave", leave)
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([agent_node("x", "leave", retry={"maxAttempts": 2})]), run_id="exit")
    assert isinstance(info.value.__cause__, SystemExit)
    failed = [e["data"]["error"] for e in events(info.value.result.log_path) if e["type"] == "agentFailed"]
    assert failed == [{"kind": "error", "type": "SystemExit", "message": "3", "retryable": False}]


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


@pytest.mark.parametrize("width", [1, 2], ids=["lone", "with-sibling"])
def test_exception_with_broken_str_is_a_recorded_failure(tmp_path: Path, width: int) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def evil(act: agentmesh.Activation) -> Any:
        raise UnprintableError()

    mesh.add_agent("evil", evil)
    mesh.add_agent("fine", lambda act: 1)
    nodes = [agent_node("x", "evil")] + [agent_node("f", "fine")] * (width - 1)
    _, err = in_thread(lambda: mesh.run(wf(nodes), run_id="evil"), limit=1)
    assert isinstance(err, agentmesh.AgentFailedError) and err.node == "x"
    assert isinstance(err.__cause__, UnprintableError)
    assert agentmesh.verify_log(tmp_path / "evil.jsonl")["finished"] == "runFailed"


def test_cancel_that_is_not_a_token_is_rejected_before_writing(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: 1)
    with pytest.raises(agentmesh.InvalidArgumentError):
        mesh.run(wf([agent_node("n", "a")]), run_id="c", cancel="yes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# re-entrancy and concurrency -----------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2], ids=["lone-outer", "parallel-outer"])
def test_reentrant_run_from_a_sync_agent(tmp_path: Path, width: int) -> None:
    # One worker: a nested run must not wait for the workers its caller occupies.
    mesh = agentmesh.Mesh(log_dir=tmp_path, max_workers=1)
    inner = wf([agent_node("i1", "leaf"), agent_node("i2", "leaf")], name="inner")
    mesh.add_agent("leaf", lambda act: {"leaf": act.node, "input": act.input})
    mesh.add_agent("outer", lambda act: mesh.run(inner, input=act.node, run_id=f"inner-{act.node}").output)
    outer = wf([agent_node(f"o{i}", "outer") for i in range(width)], name="outer")
    r, err = in_thread(lambda: mesh.run(outer, run_id="outer"))
    assert err is None and r.status == "completed"
    for i in range(width):
        o = f"o{i}"
        assert r.output[o] == {"i1": {"leaf": "i1", "input": o}, "i2": {"leaf": "i2", "input": o}}
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["outer.jsonl"] + [f"inner-o{i}.jsonl" for i in range(width)])
    for p in tmp_path.iterdir():
        assert agentmesh.verify_log(p)["finished"] == "runCompleted"
        assert agentmesh.replay(p)["outcome"]["status"] == "completed"


FAN = [
    agent_node("a", "worker"),
    agent_node("b", "worker"),
    agent_node("c", "worker"),
    agent_node("join", "joiner", after=["a", "b", "c"]),
]


def fan_agents(mesh: agentmesh.Mesh) -> agentmesh.Mesh:
    def worker(act: agentmesh.Activation) -> Any:
        time.sleep(0.01 * (ord(act.node) - ord("a")))
        return {"node": act.node, "input": act.input, "seed": act.seed}

    mesh.add_agent("worker", worker)
    mesh.add_agent("joiner", lambda act: {k: v["input"] for k, v in sorted(act.deps.items())})
    return mesh


@pytest.mark.parametrize("meshes", [1, 2], ids=["one-mesh", "two-meshes"])
def test_two_runs_at_once_from_two_threads(tmp_path: Path, meshes: int) -> None:
    shared = fan_agents(agentmesh.Mesh(log_dir=tmp_path / "live"))
    pool = [shared] if meshes == 1 else [shared, fan_agents(agentmesh.Mesh(log_dir=tmp_path / "live"))]
    barrier = threading.Barrier(2)
    results: Dict[int, Any] = {}

    def go(k: int) -> None:
        barrier.wait()
        try:
            results[k] = pool[k % meshes].run(wf(FAN), input={"who": k}, seed=k, run_id=f"run{k}")
        except BaseException as e:  # noqa: BLE001
            results[k] = e

    threads = [threading.Thread(target=go, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    reference = fan_agents(agentmesh.Mesh(log_dir=tmp_path / "reference"))
    for k in range(2):
        r = results[k]
        assert isinstance(r, agentmesh.RunResult), repr(r)
        assert r.status == "completed" and r.output == {"join": {n: {"who": k} for n in "abc"}}
        log = events(r.log_path)
        assert {e["runId"] for e in log} == {f"run{k}"} and len(log) == 12
        # Exactly the log a run alone would have written.
        alone = reference.run(wf(FAN), input={"who": k}, seed=k, run_id=f"run{k}")
        assert agentmesh.canonical_log(r.log_path) == agentmesh.canonical_log(alone.log_path)


@pytest.mark.parametrize("meshes", [1, 2], ids=["one-mesh", "two-meshes"])
def test_same_run_id_twice_at_once_gives_run_exists(tmp_path: Path, meshes: int) -> None:
    pool = [agentmesh.Mesh(log_dir=tmp_path) for _ in range(meshes)]
    for m in pool:
        m.add_agent("a", lambda act: (time.sleep(0.02), act.input)[1])
    barrier = threading.Barrier(2)
    results: Dict[int, Any] = {}

    def go(k: int) -> None:
        barrier.wait()
        try:
            results[k] = pool[k % meshes].run(wf([agent_node("n", "a")]), input=k, run_id="same")
        except BaseException as e:  # noqa: BLE001
            results[k] = e

    threads = [threading.Thread(target=go, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    done = [r for r in results.values() if isinstance(r, agentmesh.RunResult)]
    refused = [r for r in results.values() if isinstance(r, agentmesh.RunExistsError)]
    assert len(done) == 1 and len(refused) == 1, results
    assert refused[0].code == "RUN_EXISTS" and "same.jsonl" in str(refused[0])
    winner = done[0]
    assert winner.status == "completed"
    log = events(tmp_path / "same.jsonl")
    assert [e["type"] for e in log].count("runStarted") == 1
    assert log[0]["data"]["input"] == winner.output["n"]
    assert agentmesh.verify_log(tmp_path / "same.jsonl")["finished"] == "runCompleted"


# Ctrl-C --------------------------------------------------------------------------------------


def interrupted_log(path: Path, nodes: List[str]) -> None:
    """A run stopped by Ctrl-C: nothing was written after its activations were scheduled
    (they are in flight, as after a crash), the log was released, and the run is unfinished."""
    kinds = types(path)
    assert kinds == ["runStarted", "stepStarted"] + ["agentScheduled"] * len(nodes)
    report = agentmesh.verify_log(path)  # takes the writer lock: the run released the log
    assert report["finished"] is None and report["repaired"] is None
    assert agentmesh.replay(path)["outcome"]["status"] == "running"


def resumes_like_uninterrupted(path: Path, w: agentmesh.Workflow, tmp_path: Path) -> None:
    """Resuming the interrupted run finishes it with the log of a run never interrupted."""
    def fast_mesh(log_dir: Path) -> agentmesh.Mesh:
        m = agentmesh.Mesh(log_dir=log_dir)
        m.add_agent("a", lambda act: f"{act.node} done")
        m.add_agent("b", lambda act: act.deps)
        return m

    resumed = fast_mesh(tmp_path).resume(path)
    assert resumed.status == "completed"
    clean = fast_mesh(tmp_path / "clean").run(w, run_id=path.stem)
    assert resumed.fingerprint == clean.fingerprint
    assert agentmesh.canonical_log(path) == agentmesh.canonical_log(clean.log_path or "")


def test_ctrl_c_raised_by_an_agent_on_the_calling_thread(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    raised: List[BaseException] = []
    threads: List[int] = []

    def interrupt(act: agentmesh.Activation) -> Any:
        threads.append(threading.get_ident())
        exc = KeyboardInterrupt()
        raised.append(exc)
        raise exc

    mesh.add_agent("a", interrupt)
    mesh.add_agent("b", lambda act: "never")
    w = wf([agent_node("n", "a", retry={"maxAttempts": 3}), agent_node("m", "b", after=["n"])])
    with pytest.raises(KeyboardInterrupt) as info:
        mesh.run(w, run_id="ki")
    assert info.value is raised[0]
    assert threads == [threading.get_ident()]
    interrupted_log(tmp_path / "ki.jsonl", ["n"])  # not a failed attempt: no retry either
    resumes_like_uninterrupted(tmp_path / "ki.jsonl", w, tmp_path)


def test_ctrl_c_via_interrupt_main_on_the_calling_thread(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def interrupt(act: agentmesh.Activation) -> Any:
        _thread.interrupt_main()
        time.sleep(2)
        return "never recorded"

    mesh.add_agent("a", interrupt)
    w = wf([agent_node("n", "a")])
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        mesh.run(w, run_id="ki")
    assert time.perf_counter() - started < 1.5  # the agent's sleep was interrupted
    interrupted_log(tmp_path / "ki.jsonl", ["n"])
    resumes_like_uninterrupted(tmp_path / "ki.jsonl", w, tmp_path)


@pytest.mark.parametrize("token", [True, False], ids=["cancel-token", "two-activations"])
def test_ctrl_c_while_agents_run_on_the_pool(tmp_path: Path, token: bool) -> None:
    # A real SIGINT to the main thread, which is waiting for the workers' results.
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    main = threading.main_thread().ident
    assert threading.get_ident() == main
    on_workers: List[bool] = []
    release = threading.Event()
    returned = threading.Semaphore(0)

    def interrupt(act: agentmesh.Activation) -> Any:
        on_workers.append(threading.get_ident() != main)
        if act.node == "n":
            time.sleep(0.05)
            signal.pthread_kill(main, signal.SIGINT)
        release.wait(10)
        returned.release()
        return "late"

    mesh.add_agent("a", interrupt)
    nodes = ["n"] if token else ["n", "m"]
    w = wf([agent_node(n, "a") for n in nodes])
    cancel = agentmesh.CancelToken() if token else None
    with pytest.raises(KeyboardInterrupt):
        mesh.run(w, run_id="ki", cancel=cancel)
    assert not release.is_set()  # raised while the agents were still running
    assert on_workers == [True] * len(nodes)
    assert cancel is None or not cancel.cancelled  # Ctrl-C is not a cancellation
    before = (tmp_path / "ki.jsonl").read_bytes()
    # The agents return after the interruption: their results reach no log.
    release.set()
    for _ in nodes:
        assert returned.acquire(timeout=10)
    time.sleep(0.05)  # time for a result (wrongly) committed by a worker to reach the file
    assert (tmp_path / "ki.jsonl").read_bytes() == before
    interrupted_log(tmp_path / "ki.jsonl", nodes)
    resumes_like_uninterrupted(tmp_path / "ki.jsonl", w, tmp_path)


def test_an_interrupted_run_is_cancelled_for_good_by_a_resume_with_a_cancelled_token(tmp_path: Path) -> None:
    # The documented way to make Ctrl-C final: resume with a token cancelled beforehand.
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    ran: List[str] = []

    def interrupt(act: agentmesh.Activation) -> Any:
        ran.append(act.node)
        raise KeyboardInterrupt

    mesh.add_agent("a", interrupt)
    with pytest.raises(KeyboardInterrupt):
        mesh.run(wf([agent_node("n", "a")]), run_id="ki")
    stop = agentmesh.CancelToken()
    stop.cancel("stopped with Ctrl-C")
    r = mesh.resume(tmp_path / "ki.jsonl", cancel=stop)
    assert r.status == "cancelled" and r.error == {"code": "CANCELLED", "message": "stopped with Ctrl-C"}
    assert ran == ["n"]
    assert types(tmp_path / "ki.jsonl")[-2:] == ["activationCancelled", "runCancelled"]


def test_cancel_token_still_cancels_for_good(tmp_path: Path) -> None:
    # Explicit cancellation stays final: runCancelled, and resume runs nothing.
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    token = agentmesh.CancelToken()
    ran: List[str] = []

    def slow(act: agentmesh.Activation) -> Any:
        ran.append(act.node)
        token.cancel("operator pressed stop")
        time.sleep(0.05)
        return "never recorded"

    mesh.add_agent("a", slow)
    w = wf([agent_node("n", "a"), agent_node("m", "a", after=["n"])])
    r = mesh.run(w, run_id="c", cancel=token)
    assert r.status == "cancelled" and r.error == {"code": "CANCELLED", "message": "operator pressed stop"}
    assert types(r.log_path)[-2:] == ["activationCancelled", "runCancelled"]
    assert agentmesh.verify_log(r.log_path)["finished"] == "runCancelled"
    again = mesh.resume(r.log_path)
    assert again.status == "cancelled" and ran == ["n"]
    assert types(r.log_path)[-1] == "runCancelled"


# resuming what is not this run ---------------------------------------------------------------

HUMAN = [
    agent_node("draft", "writer"),
    {"id": "approve", "type": "human", "prompt": "ok?", "after": ["draft"]},
    agent_node("publish", "publisher", after=["approve"]),
]


def waiting_run(log_dir: Path, run_id: str = "h") -> agentmesh.RunResult:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.add_agent("writer", lambda act: "text")
    mesh.add_agent("publisher", lambda act: "published")
    r = mesh.run(wf(HUMAN), run_id=run_id)
    assert r.status == "waiting"
    return r


def full_mesh(log_dir: Path) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.add_agent("writer", lambda act: pytest.fail("writer must not run again"))
    mesh.add_agent("publisher", lambda act: "published")
    return mesh


def test_resume_with_another_run_id_changes_nothing(tmp_path: Path) -> None:
    r = waiting_run(tmp_path, "alpha")
    before = Path(r.log_path).read_bytes()
    for call in (
        lambda: full_mesh(tmp_path).resume(r.log_path, {"approve": True}, run_id="beta"),
        lambda: asyncio.run(full_mesh(tmp_path).resume_async(r.log_path, {"approve": True}, run_id="beta")),
    ):
        with pytest.raises(agentmesh.InvalidArgumentError) as info:
            call()
        assert "'alpha'" in str(info.value) and "'beta'" in str(info.value)
        assert Path(r.log_path).read_bytes() == before
    done = full_mesh(tmp_path).resume(r.log_path, {"approve": True}, run_id="alpha")
    assert done.status == "completed" and done.output == {"publish": "published"}


@pytest.mark.parametrize(
    "content",
    [b"", b"hello", b"# README\nsome text\n", b'{"not": "a log"}\n', b'{"type":"runStarted","seq":1}\n', b"\x00\xff\xfe"],
    ids=["empty", "word", "text", "json", "fake-event", "binary"],
)
def test_resume_of_a_file_that_is_not_a_log(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "foreign.jsonl"
    path.write_bytes(content)
    mesh = full_mesh(tmp_path)
    for call in (lambda: mesh.resume(path), lambda: mesh.resume(path, run_id="x"), lambda: agentmesh.replay(path)):
        with pytest.raises(agentmesh.LogCorruptError) as info:
            call()
        assert info.value.offset == 0
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.jsonl"]


def test_resume_with_agents_this_mesh_lacks(tmp_path: Path) -> None:
    r = waiting_run(tmp_path)
    before = Path(r.log_path).read_bytes()
    partial = agentmesh.Mesh(log_dir=tmp_path)
    partial.add_agent("writer", lambda act: "text")
    with pytest.raises(agentmesh.UnknownAgentError, match="publisher"):
        partial.resume(r.log_path, {"approve": True})
    with pytest.raises(agentmesh.UnknownAgentError, match="publisher"):
        partial.fork(r.log_path, 4, {"draft": "other"}, run_id="fork")
    assert Path(r.log_path).read_bytes() == before
    assert not (tmp_path / "fork.jsonl").exists()


def test_resume_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(agentmesh.AgentMeshIOError):
        full_mesh(tmp_path).resume(tmp_path / "missing.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_resume_of_a_finished_run_calls_no_agent(tmp_path: Path) -> None:
    r = waiting_run(tmp_path)
    done = full_mesh(tmp_path).resume(r.log_path, {"approve": True})
    before = Path(done.log_path).read_bytes()
    again = full_mesh(tmp_path).resume(done.log_path)
    assert again.status == "completed" and again.output == done.output
    assert Path(done.log_path).read_bytes() == before
    with pytest.raises(agentmesh.InvalidArgumentError):
        full_mesh(tmp_path).resume(done.log_path, {"approve": False})


# invalid arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input": {1, 2}},
        {"input": {"x": float("nan")}},
        {"input": "\ud800"},
        {"input": {(1, 2): 1}},
        {"input": nested(200)},
        {"seed": -1},
        {"seed": True},
        {"seed": 2**64},
        {"seed": 1.0},
        {"seed": "1"},
        {"seed": None},
        {"workflow": "not a workflow"},
        {"workflow": {"name": "x", "nodes": [{"id": "n", "type": "agent", "agent": "a"}]}},
        {"workflow": None},
        {"run_id": "../escape"},
        {"run_id": "a/b"},
        {"run_id": ""},
        {"run_id": ".hidden"},
        {"run_id": "x" * 129},
        {"tenant": ""},
        {"tenant": "a\nb"},
        {"tenant": "t" * 129},
        {"run_id": 5},
        {"tenant": 5},
        {"cancel": "yes"},
    ],
    ids=lambda kw: "-".join(f"{k}={v!r}"[:24] for k, v in kw.items()),
)
def test_invalid_run_arguments_are_rejected_before_writing(tmp_path: Path, kwargs: Dict[str, Any]) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path / "logs")
    mesh.add_agent("a", lambda act: 1)
    args: Dict[str, Any] = {"workflow": wf([agent_node("n", "a")]), **kwargs}
    with pytest.raises(agentmesh.InvalidArgumentError):
        mesh.run(**args)
    with pytest.raises(agentmesh.InvalidArgumentError):
        asyncio.run(mesh.run_async(**args))
    assert sorted(p.name for p in tmp_path.rglob("*")) in ([], ["logs"])


def test_nesting_limit_is_the_cores_and_values_at_it_read_back(tmp_path: Path) -> None:
    # nested(n) is n + 1 lists. 100 is what the core accepts and a log can read back.
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("deep", lambda act: nested(99))
    r = mesh.run(wf([agent_node("d", "deep")]), input=nested(99), run_id="deep")
    assert r.status == "completed" and r.output == {"d": nested(99)}
    assert list(agentmesh.read_log(r.log_path))[-1]["type"] == "runCompleted"
    assert agentmesh.replay(r.log_path)["outcome"]["status"] == "completed"
    with pytest.raises(agentmesh.InvalidArgumentError, match="nesting deeper than 100"):
        mesh.run(wf([agent_node("d", "deep")]), input=nested(100), run_id="deeper")
    mesh.add_agent("deeper", lambda act: nested(100))
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([agent_node("d", "deeper")]), run_id="deepest")
    cause = info.value.__cause__
    assert isinstance(cause, agentmesh.InvalidOutputError) and cause.node == "d"
    assert "nesting deeper than 100 lists/dicts at $[0]" in str(cause)
