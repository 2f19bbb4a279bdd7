"""Calls inside activations through the public API: host providers and tools, recorded
answers after a crash (a child process SIGKILLed mid-agent), NONDETERMINISM, late calls,
ProviderError, streaming, batches, asyncio. Native providers against the real llama-server
live in test_calls_llm.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import agentmesh

WF = {"name": "calls", "nodes": [{"id": "a", "type": "agent", "agent": "w"}]}


def calls_of(log: bytes) -> List[Dict[str, Any]]:
    return [e for e in map(json.loads, log.splitlines()[1:]) if e["type"].startswith("call")]


def test_host_provider_and_tool_are_recorded_with_usage() -> None:
    mesh = agentmesh.Mesh()
    seen: List[Tuple[Dict[str, Any], str, int]] = []

    def provider(request: Dict[str, Any], ticket: agentmesh.CallTicket) -> Any:
        seen.append((request, ticket.idempotency_key, ticket.call))
        return {"text": "hi", "finishReason": "stop"}, {"prompt_tokens": 3, "completion_tokens": 2}

    mesh.provider("p", provider)
    mesh.call_tool("search", lambda args: ({"hits": [args["q"]]},), description="Search")

    @mesh.agent("w")
    def w(act: agentmesh.Activation) -> Any:
        r = act.llm("p", {"model": "m"}, messages=[{"role": "user", "content": "x"}], max_tokens=5)
        hits = act.tool("search", {"q": "z"})
        return {"text": r.text, "finish": r.finish_reason, "usage": r.usage, "recorded": r.recorded, "hits": hits}

    res = mesh.run(agentmesh.Workflow.from_dict(WF))
    assert res.output["a"] == {
        "text": "hi",
        "finish": "stop",
        "usage": {"inputTokens": 3, "outputTokens": 2},
        "recorded": False,
        "hits": [{"hits": ["z"]}],  # a tuple is recorded (and returned) as the list it is in JSON
    }
    assert seen[0][0] == {"model": "m", "messages": [{"role": "user", "content": "x"}], "maxTokens": 5}
    assert seen[0][2] == 1 and len(seen[0][1]) == 32
    recs = calls_of(res.canonical())
    assert [(e["type"], e["sub"], e["data"]["call"]) for e in recs] == [
        ("callStarted", 1, 1),
        ("callCompleted", 2, 1),
        ("callStarted", 3, 2),
        ("callCompleted", 4, 2),
    ]
    assert recs[0]["data"]["request"]["maxTokens"] == 5 and recs[2]["data"]["kind"] == "tool"
    assert recs[1]["data"]["usage"] == {"inputTokens": 3, "outputTokens": 2}
    assert res.usage["total"]["inputTokens"] == 3


def test_unknown_provider_bad_options_and_bad_config_record_nothing() -> None:
    mesh = agentmesh.Mesh()
    with pytest.raises(agentmesh.InvalidArgumentError, match="kind"):
        mesh.provider("x", {"kind": "nosuch", "baseUrl": "http://127.0.0.1:9/v1"})
    with pytest.raises(agentmesh.InvalidArgumentError):
        mesh.provider("x", 42)  # type: ignore[arg-type]
    errors: List[BaseException] = []

    @mesh.agent("w")
    def w(act: agentmesh.Activation) -> Any:
        for call in (lambda: act.llm("nope", {}), lambda: act.tool("nope", {}), lambda: act.llm("nope", maxtokens=1)):
            try:
                call()
            except agentmesh.AgentMeshError as e:
                errors.append(e)
        return 1

    res = mesh.run(agentmesh.Workflow.from_dict(WF))
    assert [type(e) for e in errors] == [agentmesh.UnknownAgentError] * 3
    assert "no provider registered as 'nope'" in str(errors[0])
    assert "no tool registered as 'nope'" in str(errors[1])
    assert calls_of(res.canonical()) == []


def test_a_raising_host_function_is_a_recorded_provider_error() -> None:
    mesh = agentmesh.Mesh()

    def broken(request: Dict[str, Any], ticket: Any) -> Any:
        raise ValueError("no model loaded")

    mesh.provider("p", broken)
    got: List[agentmesh.ProviderError] = []

    @mesh.agent("w")
    def w(act: agentmesh.Activation) -> Any:
        try:
            act.llm("p", {"messages": []})
        except agentmesh.ProviderError as e:
            got.append(e)
            assert isinstance(e.__cause__, ValueError)
        t = act.call_start("llm", "q", {"x": 1})
        act.call_complete(t, error={"type": "RateLimited", "message": "slow down", "retryable": False, "status": 429})
        return 1

    res = mesh.run(agentmesh.Workflow.from_dict(WF))
    (e,) = got
    assert e.code == "PROVIDER_ERROR" and e.error_type == "ValueError"
    assert e.retryable is True and e.status is None
    assert str(e) == "[PROVIDER_ERROR] ValueError: no model loaded"
    recs = calls_of(res.canonical())
    assert recs[1]["type"] == "callFailed"
    assert recs[1]["data"]["error"] == {"type": "ValueError", "message": "no model loaded", "retryable": True}
    assert recs[3]["data"]["error"] == {"type": "RateLimited", "message": "slow down", "retryable": False, "status": 429}


def test_call_complete_checks_what_it_gets() -> None:
    mesh = agentmesh.Mesh()
    errors: List[str] = []

    @mesh.agent("w")
    def w(act: agentmesh.Activation) -> Any:
        t = act.call_start("tool", "t", {})
        for kwargs in ({"response": {1, 2}}, {"error": {"type": "X"}}, {"response": 1, "error": {"type": "X", "message": "m"}}):
            try:
                act.call_complete(t, **kwargs)
            except agentmesh.InvalidArgumentError as e:
                errors.append(str(e))
        act.call_complete(t, response="ok")
        try:
            act.call_complete(t, response="again")
        except agentmesh.InvalidCompletionError as e:
            errors.append(str(e))
        return 1

    mesh.run(agentmesh.Workflow.from_dict(WF))
    assert len(errors) == 4, errors
    assert "not JSON data" in errors[0] and "message" in errors[1] and "not both" in errors[2]


def test_batches_are_numbered_in_list_order_whatever_the_completion_order() -> None:
    mesh = agentmesh.Mesh()

    @mesh.agent("w")
    def w(act: agentmesh.Activation) -> Any:
        ts = act.call_start_many([("tool", "t", {"i": 0}), {"kind": "llm", "name": "p", "request": {"i": 1}}, ("tool", "t", {"i": 2})])
        assert [t.call for t in ts] == [1, 2, 3] and all(t.live for t in ts)
        assert ts[2].tool_call_id(0) == f"call_{ts[2].seq}_3_0"
        for t in reversed(ts):
            act.call_complete(t, response=t.call)
        return [t.call for t in ts]

    res = mesh.run(agentmesh.Workflow.from_dict(WF))
    recs = calls_of(res.canonical())
    assert [(e["type"], e["sub"], e["data"]["call"]) for e in recs] == [
        ("callStarted", 1, 1),
        ("callCompleted", 2, 1),
        ("callStarted", 3, 2),
        ("callCompleted", 4, 2),
        ("callStarted", 5, 3),
        ("callCompleted", 6, 3),
    ]


def test_host_stream_is_one_chunk_then_the_reply() -> None:
    mesh = agentmesh.Mesh()
    mesh.provider("p", lambda req, t: {"text": "whole", "toolCalls": [], "finishReason": "stop"})

    @mesh.agent("w")
    def w(act: agentmesh.Activation) -> Any:
        s = act.llm_stream("p", {"messages": []})
        chunks = list(s)
        return {"chunks": chunks, "text": s.reply.text, "call": s.ticket.call}

    out = mesh.run(agentmesh.Workflow.from_dict(WF)).output["a"]
    assert out == {"chunks": [{"text": "whole", "toolCalls": []}], "text": "whole", "call": 1}


def test_a_late_call_is_refused_and_logs_nothing(tmp_path: Path) -> None:
    for log_dir in (None, tmp_path):
        mesh = agentmesh.Mesh(log_dir=log_dir)
        mesh.call_tool("t", lambda args: 1)
        ended = threading.Event()
        got: List[BaseException] = []

        def late(act: agentmesh.Activation) -> None:
            ended.wait(10)
            for call in (lambda: act.tool("t", {}), lambda: act.call_start("tool", "t", {})):
                try:
                    call()
                except BaseException as e:  # noqa: BLE001
                    got.append(e)

        threads: List[threading.Thread] = []

        @mesh.agent("w")
        def w(act: agentmesh.Activation) -> Any:
            threads.append(threading.Thread(target=late, args=(act,)))
            threads[0].start()
            return 1

        res = mesh.run(agentmesh.Workflow.from_dict(WF))
        before = res.canonical()
        ended.set()
        threads[0].join(10)
        assert [type(e) for e in got] == [agentmesh.InvalidCompletionError] * 2, got
        assert res.canonical() == before and calls_of(before) == []


def test_asyncio_agents_make_concurrent_calls() -> None:
    mesh = agentmesh.Mesh()
    order: List[int] = []

    async def slow(request: Dict[str, Any], ticket: Any) -> Dict[str, Any]:
        # The first call answers last: numbering must not follow completion order.
        await asyncio.sleep(0.05 * (3 - request["i"]))
        order.append(request["i"])
        return {"text": str(request["i"])}

    mesh.provider("p", slow)
    mesh.call_tool("t", lambda args: args["i"] * 10)

    @mesh.agent("w")
    async def w(act: agentmesh.Activation) -> Any:
        replies = await asyncio.gather(*(act.llm_async("p", {"i": i}) for i in range(3)))
        tools = await asyncio.gather(*(act.tool_async("t", {"i": i}) for i in range(2)))
        ts = act.call_start_many([("tool", "x", {"n": n}) for n in range(2)])

        async def finish(t: agentmesh.CallTicket, delay: float) -> None:
            await asyncio.sleep(delay)
            act.call_complete(t, response=t.call)

        await asyncio.gather(finish(ts[0], 0.03), finish(ts[1], 0.0))
        return {"llm": [r.text for r in replies], "tools": tools}

    res = asyncio.run(mesh.run_async(agentmesh.Workflow.from_dict(WF)))
    assert order == [2, 1, 0]
    assert res.output["a"] == {"llm": ["0", "1", "2"], "tools": [0, 10]}
    started = [e["data"] for e in calls_of(res.canonical()) if e["type"] == "callStarted"]
    assert [(d["call"], d["request"]) for d in started] == [
        (1, {"i": 0}),
        (2, {"i": 1}),
        (3, {"i": 2}),
        (4, {"i": 0}),
        (5, {"i": 1}),
        (6, {"n": 0}),
        (7, {"n": 1}),
    ]


def test_sync_calls_of_async_host_functions_are_refused() -> None:
    mesh = agentmesh.Mesh()

    async def p(request: Dict[str, Any], ticket: Any) -> Dict[str, Any]:
        return {}

    mesh.provider("p", p)
    got: List[BaseException] = []

    @mesh.agent("w")
    def w(act: agentmesh.Activation) -> Any:
        try:
            act.llm("p", {})
        except agentmesh.InvalidArgumentError as e:
            got.append(e)
        return 1

    res = mesh.run(agentmesh.Workflow.from_dict(WF))
    assert len(got) == 1 and "llm_async" in str(got[0]) and calls_of(res.canonical()) == []


# crash recovery ---------------------------------------------------------------------------

# A child process: an agent making 4 calls (llm, tool, streamed llm, llm) to host functions
# that append one line per invocation to a counting file; with KILL_AT=k the provider
# SIGKILLs its own process during invocation k (that call is in flight).
CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    import agentmesh

    log_dir, count, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    kill_at = int(os.environ.get("KILL_AT", "0"))
    first = os.environ.get("FIRST", "one")

    def note(kind, request, ticket):
        with open(count, "a") as f:
            f.write(json.dumps({"kind": kind, "call": ticket.call, "key": ticket.idempotency_key}) + "\\n")
        with open(count) as f:
            n = len(f.readlines())
        if n == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    tickets = {}

    def provider(request, ticket):
        note("llm", request, ticket)
        return {"text": "re:" + request["messages"][0]["content"], "finishReason": "stop"}, {"inputTokens": 2, "outputTokens": 1}

    class Tool:
        def __call__(self, args):
            note("tool", args, tickets["last"])
            return {"hits": [args["q"]]}

    mesh = agentmesh.Mesh(log_dir=log_dir, fsync="never")
    mesh.provider("p", provider)
    mesh.call_tool("search", Tool())
    seen = []

    @mesh.agent("w")
    def w(act):
        r1 = act.llm("p", messages=[{"role": "user", "content": first}])
        seen.append(r1.recorded)
        # The tool's ticket, for the counting file: started by hand as act.tool would.
        t = act.call_start("tool", "search", {"q": r1.text})
        tickets["last"] = t
        hits = t.outcome["response"] if t.recorded else Tool()({"q": r1.text})
        if t.live:
            act.call_complete(t, response=hits)
        seen.append(t.recorded)
        s = act.llm_stream("p", messages=[{"role": "user", "content": "two"}])
        chunks = list(s)
        seen.append(s.reply.recorded)
        r3 = act.llm("p", messages=[{"role": "user", "content": "three"}])
        seen.append(r3.recorded)
        return {"hits": hits, "chunks": chunks, "last": r3.text}

    wf = agentmesh.Workflow.from_dict({"name": "calls", "nodes": [{"id": "a", "type": "agent", "agent": "w"}]})
    try:
        if mode == "run":
            res = mesh.run(wf, run_id="crash")
        else:
            res = mesh.resume(os.path.join(log_dir, "crash.jsonl"))
    except agentmesh.AgentFailedError as e:
        print(json.dumps({"failed": repr(e.__cause__), "field": getattr(e.__cause__, "field", None)}))
        sys.exit(0)
    print(json.dumps({"status": res.status, "output": res.output, "recorded": seen}))
    """
)


def child(tmp_path: Path, mode: str, **env: str) -> "subprocess.CompletedProcess[str]":
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "logs"), str(tmp_path / "count.jsonl"), mode],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def counted(tmp_path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "count.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_after_a_crash_no_recorded_call_runs_again(tmp_path: Path, k: int) -> None:
    crashed = child(tmp_path, "run", KILL_AT=str(k))
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    before = counted(tmp_path)
    assert len(before) == k
    resumed = child(tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["status"] == "completed"
    assert result["output"]["a"] == {"hits": {"hits": ["re:one"]}, "chunks": [{"text": "re:two"}], "last": "re:three"}
    # Calls 1..k-1 were answered from the log; call k (in flight at the kill) went out again
    # with the same idempotency key; the rest ran once.
    assert result["recorded"] == [i < k for i in range(1, 5)]
    after = counted(tmp_path)[k:]
    assert after[0] == before[-1]
    assert [c["call"] for c in after] == list(range(k, 5))

    # The log equals an uninterrupted run's, byte for byte.
    clean = tmp_path / "clean"
    clean.mkdir()
    assert child(clean, "run").returncode == 0
    assert agentmesh.canonical_log(clean / "logs" / "crash.jsonl") == agentmesh.canonical_log(
        tmp_path / "logs" / "crash.jsonl"
    )


def test_a_changed_request_after_a_crash_is_nondeterminism_naming_the_field(tmp_path: Path) -> None:
    assert child(tmp_path, "run", KILL_AT="2").returncode == -signal.SIGKILL
    resumed = child(tmp_path, "resume", FIRST="changed")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["failed"].startswith("NondeterminismError(")
    assert out["field"] == "data.request.messages[0].content"
    assert len(counted(tmp_path)) == 2  # nothing was sent for the changed call
