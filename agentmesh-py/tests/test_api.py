"""API tests of the Python binding (the conformance vectors are in bindings-tests/python)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import agentmesh
from agentmesh import _agentmesh, errors


def wf(nodes: List[Dict[str, Any]], name: str = "t", **extra: Any) -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict({"name": name, "nodes": nodes, **extra})


def events(path: Any) -> List[Dict[str, Any]]:
    return list(agentmesh.read_log(path))


# errors ------------------------------------------------------------------------------------


def test_error_table_matches_core_codes() -> None:
    codes = agentmesh.error_codes()
    assert codes == list(errors._TABLE)
    for code in codes:
        cls = errors.error_class(code)
        assert issubclass(cls, agentmesh.AgentMeshError)
        assert cls.code == code
    assert errors.error_class("NO_SUCH_CODE") is agentmesh.InternalError


def test_invalid_workflow_has_class_code_node_and_field() -> None:
    with pytest.raises(agentmesh.InvalidWorkflowError) as info:
        wf([{"id": "a", "type": "agent", "agent": "x"}, {"id": "b", "type": "agent", "agent": "x", "after": ["zz"]}])
    e = info.value
    assert e.code == "INVALID_WORKFLOW"
    assert e.node == "b" and e.field == "after[0]"
    assert "zz" in str(e) and str(e).startswith("[INVALID_WORKFLOW]")


def test_workflow_from_json_and_file(tmp_path: Path) -> None:
    with pytest.raises(agentmesh.InvalidWorkflowError):
        agentmesh.Workflow.from_json("{not json")
    with pytest.raises(agentmesh.InvalidWorkflowError):
        agentmesh.Workflow.from_dict({"name": "x", "nodes": [{"id": "a", "type": "agent", "agent": {1, 2}}]})
    p = tmp_path / "wf.json"
    p.write_text(json.dumps({"name": "f", "nodes": [{"id": "a", "type": "tool", "tool": "t"}]}))
    w = agentmesh.Workflow.from_file(p)
    assert w.name == "f" and w.tool_names() == ["t"] and w.agent_names() == []
    assert w.to_dict()["nodes"][0]["id"] == "a"
    assert len(w.hash) == 64
    with pytest.raises(agentmesh.AgentMeshIOError):
        agentmesh.Workflow.from_file(tmp_path / "missing.json")


# runs --------------------------------------------------------------------------------------


FAN = [
    {"id": "a", "type": "agent", "agent": "worker"},
    {"id": "b", "type": "agent", "agent": "worker"},
    {"id": "c", "type": "tool", "tool": "lookup"},
    {"id": "join", "type": "agent", "agent": "joiner", "after": ["a", "b", "c"]},
]


def fan_mesh(log_dir: Any, delays: Dict[str, float]) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)

    @mesh.agent("worker")
    def worker(act: agentmesh.Activation) -> Any:
        time.sleep(delays[act.node])
        return {"from": act.node, "thread": threading.current_thread().name.startswith("agentmesh")}

    mesh.add_tool("lookup", lambda act: (time.sleep(delays[act.node]), [1, 2.5, "x"])[1])
    mesh.add_agent("joiner", lambda act: sorted(act.deps))
    return mesh


def test_fan_out_is_parallel_and_order_independent(tmp_path: Path) -> None:
    w = wf(FAN, name="fan")
    r1 = fan_mesh(tmp_path / "1", {"a": 0.05, "b": 0.03, "c": 0.01}).run(w, input={"k": 1}, run_id="fan")
    r2 = fan_mesh(tmp_path / "2", {"a": 0.01, "b": 0.03, "c": 0.05}).run(w, input={"k": 1}, run_id="fan")
    for r in (r1, r2):
        assert r.status == "completed"
        assert r.output == {"join": ["a", "b", "c"]}
        assert r.error is None and r.waiting == []
    assert r1.canonical() == r2.canonical()
    assert r1.fingerprint == r2.fingerprint == agentmesh.fingerprint(r1.log_path)
    step1 = [e for e in events(r1.log_path) if e["type"] == "stepStarted"][0]
    assert step1["data"]["activations"] == 3


def test_in_memory_run_has_canonical_log() -> None:
    mesh = fan_mesh(None, {"a": 0, "b": 0, "c": 0})
    r = mesh.run(wf(FAN), seed=3)
    assert r.status == "completed" and r.log_path is None
    lines = r.canonical().decode().splitlines()
    assert json.loads(lines[0])["seed"] == 3
    assert len(r.fingerprint) == 64


def test_retries_record_failures_then_success(tmp_path: Path) -> None:
    calls: List[int] = []
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("flaky")
    def flaky(act: agentmesh.Activation) -> Any:
        calls.append(act.attempt)
        if act.attempt < 3:
            raise ConnectionError(f"try {act.attempt}")
        return "ok"

    w = wf([{"id": "f", "type": "agent", "agent": "flaky", "retry": {"maxAttempts": 3, "backoffMs": 5}}])
    r = mesh.run(w)
    assert r.status == "completed" and r.output == {"f": "ok"}
    assert calls == [1, 2, 3]
    failed = [e for e in events(r.log_path) if e["type"] == "agentFailed"]
    assert [f["data"]["error"]["type"] for f in failed] == ["ConnectionError", "ConnectionError"]
    assert failed[1]["data"]["error"]["message"] == "try 2"


def test_agent_exception_failing_the_run_is_the_cause(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def boom(act: agentmesh.Activation) -> Any:
        raise ValueError("bad input")

    mesh.add_agent("boom", boom)
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([{"id": "x", "type": "agent", "agent": "boom"}]))
    e = info.value
    assert isinstance(e.__cause__, ValueError) and str(e.__cause__) == "bad input"
    assert e.code == "AGENT_FAILED" and e.node == "x"
    assert e.result.status == "failed" and e.result.error["code"] == "AGENT_FAILED"
    failed = [ev for ev in events(e.result.log_path) if ev["type"] == "agentFailed"]
    assert failed[0]["data"]["error"] == {
        "kind": "error", "type": "ValueError", "message": "bad input", "retryable": True
    }


def test_activation_error_sets_exact_failure_fields(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def deny(act: agentmesh.Activation) -> Any:
        raise agentmesh.ActivationError("Denied", "no", retryable=False)

    mesh.add_agent("deny", deny)
    w = wf([{"id": "x", "type": "agent", "agent": "deny", "retry": {"maxAttempts": 3}}])
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(w)
    log = events(info.value.result.log_path)
    failed = [ev for ev in log if ev["type"] == "agentFailed"]
    assert len(failed) == 1 and failed[0]["data"]["error"]["retryable"] is False


@pytest.mark.parametrize(
    "bad",
    [{1, 2}, b"bytes", float("nan"), math.inf, {1: "int key"}, {"x": [object()]}],
    ids=["set", "bytes", "nan", "inf", "int-key", "object"],
)
def test_non_json_output_is_invalid_output_naming_node(tmp_path: Path, bad: Any) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: bad)
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([{"id": "emit", "type": "agent", "agent": "a"}]))
    cause = info.value.__cause__
    assert isinstance(cause, agentmesh.InvalidOutputError)
    assert cause.code == "INVALID_OUTPUT" and cause.node == "emit" and "'emit'" in str(cause)
    failed = [e for e in events(info.value.result.log_path) if e["type"] == "agentFailed"]
    assert failed[0]["data"]["error"]["type"] == "InvalidOutput"


def test_native_completions_of_bad_results_are_invalid_output(tmp_path: Path) -> None:
    # The driver's protocol: results become native completions; what cannot be recorded is
    # the core's InvalidOutput failure, with an InvalidOutputError naming the node as cause.
    w = wf([{"id": "n", "type": "agent", "agent": "a"}])
    run = _agentmesh.NativeRun.start(w._native, None, 0, "nat", str(tmp_path))
    (act,) = run.poll()
    C = _agentmesh.Completion
    bad = [C.ok_json(act, text) for text in ("NaN", "{1: 2}", "[1,", "Infinity")]
    bad += [C.ok(act, value) for value in ({1, 2}, float("nan"), {"k": [b"x"]})]
    bad.append(C.ok(act, 1, {"inputTokens": "many"}))
    for c in bad:
        assert c.failed
        assert isinstance(c.cause, agentmesh.InvalidOutputError) and c.cause.node == "n"
    assert "usage must be" in str(bad[-1].cause)
    good = C.ok_json(act, "-0")
    assert not good.failed and good.cause is None
    assert run.complete_all([(act.id + 100, C.ok(act, 1))])[0].__class__ is agentmesh.InvalidCompletionError
    assert run.complete_all([(act.id, good)]) == [None]
    with pytest.raises(agentmesh.InvalidArgumentError, match="already"):
        run.complete_all([(act.id, good)])
    assert run.status() == "completed"
    run.close()
    with pytest.raises(agentmesh.InvalidArgumentError):
        run.status()


def test_bad_input_seed_and_unknown_agent(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: 1)
    w = wf([{"id": "n", "type": "agent", "agent": "a"}])
    with pytest.raises(agentmesh.InvalidArgumentError):
        mesh.run(w, input={"x": float("nan")})
    with pytest.raises(agentmesh.InvalidArgumentError):
        mesh.run(w, seed=-1)
    with pytest.raises(agentmesh.UnknownAgentError):
        mesh.run(wf([{"id": "n", "type": "agent", "agent": "nobody"}]))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(agentmesh.InvalidArgumentError):
        agentmesh.Mesh(fsync="sometimes")


def test_run_exists(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: 1)
    w = wf([{"id": "n", "type": "agent", "agent": "a"}])
    mesh.run(w, run_id="same")
    with pytest.raises(agentmesh.RunExistsError):
        mesh.run(w, run_id="same")


def test_raw_json_and_usage_reach_the_log_exactly(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: agentmesh.Output(agentmesh.RawJson('{"z":-0,"a":1E3}'), usage={"inputTokens": 7}))
    r = mesh.run(wf([{"id": "n", "type": "agent", "agent": "a"}]))
    line = [l for l in r.canonical().decode().splitlines() if '"agentCompleted"' in l][0]
    assert '"output":{"a":1000.0,"z":-0.0}' in line
    assert '"usage":{"inputTokens":7,"outputTokens":0}' in line


def test_timeout_fails_run_without_waiting_for_agent(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    release = threading.Event()
    mesh.add_tool("slow", lambda act: release.wait(30) and "late")
    w = wf([{"id": "s", "type": "tool", "tool": "slow", "timeoutMs": 50}])
    r = mesh.run(w)
    release.set()
    assert r.status == "failed" and r.error["code"] == "TIMEOUT" and r.error["node"] == "s"
    failed = [e for e in events(r.log_path) if e["type"] == "toolFailed"]
    assert failed[0]["data"]["error"]["kind"] == "timeout"


def test_cancel_from_inside_agent_and_from_outside(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    ran: List[str] = []

    def quitter(act: agentmesh.Activation) -> Any:
        act.cancel_run("enough")
        return "never recorded"

    mesh.add_agent("quit", quitter)
    mesh.add_agent("next", lambda act: ran.append(act.node))
    w = wf([{"id": "q", "type": "agent", "agent": "quit"}, {"id": "n", "type": "agent", "agent": "next", "after": ["q"]}])
    r = mesh.run(w, run_id="c1")
    assert r.status == "cancelled" and ran == []
    types = [e["type"] for e in events(r.log_path)]
    assert types[-2:] == ["activationCancelled", "runCancelled"]
    assert "agentCompleted" not in types

    token = agentmesh.CancelToken()
    started = threading.Event()
    mesh.add_agent("quit", lambda act: (started.set(), time.sleep(0.3))[1])
    threading.Thread(target=lambda: (started.wait(10), token.cancel("from outside"))).start()
    r = mesh.run(w, run_id="c2", cancel=token)
    assert r.status == "cancelled"
    assert "from outside" in json.dumps(events(r.log_path)[-1])


HUMAN = [
    {"id": "draft", "type": "agent", "agent": "writer"},
    {"id": "approve", "type": "human", "prompt": "ok?", "after": ["draft"]},
    {"id": "publish", "type": "agent", "agent": "publisher", "after": ["approve"]},
]


def human_mesh(log_dir: Path) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.add_agent("writer", lambda act: "text")
    mesh.add_agent("publisher", lambda act: {"published": act.deps["approve"]})
    return mesh


def test_human_wait_and_resume_with_new_mesh(tmp_path: Path) -> None:
    r = human_mesh(tmp_path).run(wf(HUMAN), run_id="h")
    assert r.status == "waiting"
    assert [(a.node, a.kind, a.prompt) for a in r.waiting] == [("approve", "human", "ok?")]
    before = Path(r.log_path).read_bytes()
    with pytest.raises(agentmesh.InvalidArgumentError):
        human_mesh(tmp_path).resume(r.log_path, {"typo": True})
    with pytest.raises(agentmesh.InvalidOutputError):
        human_mesh(tmp_path).resume(r.log_path, {"approve": {1, 2}})
    assert Path(r.log_path).read_bytes() == before
    done = human_mesh(tmp_path).resume(r.log_path, {"approve": {"ok": True}})
    assert done.status == "completed"
    assert done.output == {"publish": {"published": {"ok": True}}}
    assert agentmesh.verify_log(done.log_path)["finished"] == "runCompleted"


def test_replay_state_at_fork_and_nondeterminism(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: {"n": act.node, "deps": sorted(act.deps)})
    chain = [
        {"id": "one", "type": "agent", "agent": "a"},
        {"id": "two", "type": "agent", "agent": "a", "after": ["one"]},
    ]
    r = mesh.run(wf(chain, name="chain"), run_id="base")
    rep = agentmesh.replay(r.log_path)
    assert rep["outcome"]["status"] == "completed" and rep["outcome"]["output"] == r.output
    assert agentmesh.recorded_workflow(r.log_path).name == "chain"
    header = agentmesh.read_header(r.log_path)
    assert header["runId"] == "base"

    st = agentmesh.state_at(r.log_path, 4)
    assert st["forkPoint"] is True and st["completed"] == {"one": {"deps": [], "n": "one"}}
    with pytest.raises(agentmesh.InvalidArgumentError):
        agentmesh.state_at(r.log_path, 999)

    forked = mesh.fork(r.log_path, 4, {"one": "changed"}, run_id="fork1")
    assert forked.status == "completed" and forked.run_id == "fork1"
    assert agentmesh.read_header(forked.log_path)["parent"] == {"runId": "base", "seq": 4}
    assert any(e["type"] == "outputOverridden" for e in events(forked.log_path))
    with pytest.raises(agentmesh.InvalidArgumentError):
        mesh.fork(r.log_path, 3, {}, run_id="fork2")

    other = wf([{"id": "one", "type": "agent", "agent": "b"}, chain[1]], name="chain")
    with pytest.raises(agentmesh.NondeterminismError) as info:
        agentmesh.replay(r.log_path, other)
    e = info.value
    assert isinstance(e.seq, int) and e.seq > 0 and e.field
    assert e.expected is not None and e.actual is not None


def test_log_corruption_reports_offset(tmp_path: Path) -> None:
    mesh = fan_mesh(tmp_path, {"a": 0, "b": 0, "c": 0})
    r = mesh.run(wf(FAN), run_id="corrupt")
    data = bytearray(Path(r.log_path).read_bytes())
    second = data.index(b"\n") + 1
    data[second + 10] ^= 0x01
    Path(r.log_path).write_bytes(bytes(data))
    with pytest.raises(agentmesh.LogCorruptError) as info:
        agentmesh.verify_log(r.log_path)
    assert info.value.offset == second


# failures after the fact, fixed workflows -----------------------------------------------------


def brief(fixed: bool) -> agentmesh.Workflow:
    """The newcomer's bug: a node after a branch only gets its direct `after` deps, so v1's
    `publish` (after the branch alone) has no `write` output; the fix lists `write` too."""
    return wf([
        {"id": "write", "type": "agent", "agent": "writer"},
        {"id": "gate", "type": "branch", "after": ["write"],
         "cases": [{"when": {"path": "/outputs/write/ok", "eq": True}, "goto": "publish"}],
         "default": "archive"},
        {"id": "publish", "type": "agent", "agent": "publisher",
         **({"after": ["gate", "write"]} if fixed else {})},
        {"id": "archive", "type": "agent", "agent": "publisher"},
    ], name="brief")


def brief_mesh(log_dir: Path, calls: List[str]) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.add_agent("writer", lambda act: (calls.append(act.node), {"ok": True, "text": "hi"})[1])
    mesh.add_agent("publisher", lambda act: (calls.append(act.node), {"url": act.deps["write"]["text"]})[1])
    return mesh


def test_resume_of_a_failed_log_raises_as_the_run_did(tmp_path: Path) -> None:
    calls: List[str] = []
    mesh = brief_mesh(tmp_path, calls)
    with pytest.raises(agentmesh.AgentFailedError) as first:
        mesh.run(brief(False), run_id="b")
    assert isinstance(first.value.__cause__, KeyError)
    calls.clear()
    # Another process resumes the failed log: the same error (without the exception only the
    # first process had), nothing runs, nothing is written.
    before = (tmp_path / "b.jsonl").read_bytes()
    with pytest.raises(agentmesh.AgentFailedError) as again:
        brief_mesh(tmp_path, calls).resume(tmp_path / "b.jsonl")
    assert again.value.__cause__ is None and again.value.node == "publish"
    assert again.value.message == first.value.message
    assert again.value.result.status == "failed" and again.value.result.error == first.value.result.error
    assert calls == [] and (tmp_path / "b.jsonl").read_bytes() == before


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_fork_with_a_fixed_workflow_reruns_only_the_failed_node(tmp_path: Path, mode: str) -> None:
    calls: List[str] = []
    mesh = brief_mesh(tmp_path, calls)
    with pytest.raises(agentmesh.AgentFailedError):
        mesh.run(brief(False), run_id="b")
    assert calls == ["write", "publish"]
    log = tmp_path / "b.jsonl"
    # The last step end before the failure: write's completion.
    at = max(s["seq"] for s in agentmesh.history(log) if s["forkPoint"] and not s["failed"])
    calls.clear()
    if mode == "sync":
        f = mesh.fork(log, at, workflow=brief(True))
    else:
        f = asyncio.run(mesh.fork_async(log, at, workflow=brief(True)))
    assert f.status == "completed" and f.output == {"publish": {"url": "hi"}}
    assert calls == ["publish"]  # write's output came from the parent
    header = agentmesh.read_header(f.log_path)
    assert header["workflow"]["hash"] == brief(True).hash != agentmesh.read_header(log)["workflow"]["hash"]
    assert header["parent"] == {"runId": "b", "seq": at} and header["meta"]["host"] == "python"
    assert agentmesh.replay(f.log_path)["outcome"]["status"] == "completed"
    # The fork's id depends on the workflow: the same fork without the fix is another run
    # (and fails again).
    with pytest.raises(agentmesh.AgentFailedError) as unfixed:
        mesh.fork(log, at)
    assert unfixed.value.result.run_id != f.run_id


def test_fork_with_a_workflow_that_does_not_replay_the_prefix(tmp_path: Path) -> None:
    calls: List[str] = []
    mesh = brief_mesh(tmp_path, calls)
    with pytest.raises(agentmesh.AgentFailedError):
        mesh.run(brief(False), run_id="b")
    other = json.loads(brief(True).to_json())
    other["nodes"][0]["agent"] = "author"  # write would have been scheduled differently
    mesh.add_agent("author", lambda act: {"ok": True, "text": "hi"})
    with pytest.raises(agentmesh.NondeterminismError):
        mesh.fork(tmp_path / "b.jsonl", 4, workflow=agentmesh.Workflow.from_dict(other), run_id="f")
    assert not (tmp_path / "f.jsonl").exists()
    with pytest.raises(agentmesh.UnknownAgentError, match="'ghost'"):
        other["nodes"][0]["agent"] = "ghost"
        mesh.fork(tmp_path / "b.jsonl", 4, workflow=agentmesh.Workflow.from_dict(other), run_id="f")
    with pytest.raises(agentmesh.InvalidArgumentError, match="workflow must be a Workflow"):
        mesh.fork(tmp_path / "b.jsonl", 4, workflow=other, run_id="f")  # type: ignore[arg-type]


def test_unknown_agent_lists_the_registered_names_and_the_nearest(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    for name in ("planner", "researcher", "writer"):
        mesh.add_agent(name, lambda act: 1)
    mesh.add_tool("save", lambda act: 1)
    w = wf([
        {"id": "p", "type": "agent", "agent": "planer"},
        {"id": "s", "type": "tool", "tool": "sav"},
        {"id": "w", "type": "tool", "tool": "writer"},
    ], name="brief")
    with pytest.raises(agentmesh.UnknownAgentError) as info:
        mesh.run(w)
    assert info.value.message == (
        "workflow 'brief' uses agent 'planer' (did you mean 'planner'?), tool 'sav' (did you "
        "mean 'save'?), tool 'writer' (registered as an agent, not a tool), not registered "
        "with this mesh (registered agents: 'planner', 'researcher', 'writer'; tools: 'save')"
    )
    empty = agentmesh.Mesh(log_dir=tmp_path)
    with pytest.raises(agentmesh.UnknownAgentError, match=r"uses agent 'planer', not registered with this mesh \(registered agents: none; tools: none\)$"):
        empty.run(wf([{"id": "p", "type": "agent", "agent": "planer"}], name="brief"))
    assert list(tmp_path.iterdir()) == []


class ChatCompletionMessage:
    """Stands in for an SDK's pydantic model (openai's message, say): it has model_dump."""

    def __init__(self, content: str) -> None:
        self.content = content

    def model_dump(self, mode: str = "python") -> Dict[str, Any]:
        return {"content": self.content, "role": "assistant"}


def test_an_sdk_model_as_output_gets_a_hint(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("llm", lambda act: {"message": ChatCompletionMessage("hi")})
    mesh.add_agent("plain", lambda act: object())
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([{"id": "ask", "type": "agent", "agent": "llm"}]))
    assert str(info.value.__cause__).endswith(
        "ChatCompletionMessage at $['message'] is not JSON data; convert it first, e.g. pick "
        "fields, or .model_dump(mode='json') (drop id and created)"
    )
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf([{"id": "ask", "type": "agent", "agent": "plain"}]))
    assert str(info.value.__cause__).endswith("object at $ is not JSON data")


def test_approval_for_a_human_node_not_reached_yet_says_so(tmp_path: Path) -> None:
    # A crash while `draft` ran: the run is resumable, but `approve` is not waiting yet.
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def crash(act: agentmesh.Activation) -> Any:
        raise KeyboardInterrupt  # stops driving as a crash would: nothing written

    mesh.add_agent("writer", crash)
    mesh.add_agent("publisher", lambda act: act.deps["approve"])
    with pytest.raises(KeyboardInterrupt):
        mesh.run(wf(HUMAN), run_id="early")
    log = tmp_path / "early.jsonl"
    before = log.read_bytes()
    with pytest.raises(agentmesh.InvalidArgumentError) as info:
        human_mesh(tmp_path).resume(log, {"approve": True})
    assert info.value.message == (
        "node 'approve' has no pending human activation: the run has not reached it yet "
        "(unfinished: draft); resume the run without approvals, then approve it when it waits "
        "(waiting: none)"
    )
    assert log.read_bytes() == before
    waiting = human_mesh(tmp_path).resume(log)
    assert waiting.status == "waiting" and [a.node for a in waiting.waiting] == ["approve"]
    assert human_mesh(tmp_path).resume(log, {"approve": True}).output == {"publish": {"published": True}}


def test_nondeterminism_opens_with_a_line_a_person_reads(tmp_path: Path) -> None:
    def routed(goto: str) -> agentmesh.Workflow:
        return wf([
            {"id": "draft", "type": "agent", "agent": "writer"},
            {"id": "br", "type": "branch", "after": ["draft"],
             "cases": [{"when": {"path": "/outputs/draft", "eq": goto}, "goto": "hi"}], "default": "lo"},
            {"id": "hi", "type": "agent", "agent": "writer"},
            {"id": "lo", "type": "agent", "agent": "writer"},
        ], name="route")

    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("writer", lambda act: "text")
    r = mesh.run(routed("text"), run_id="route")
    with pytest.raises(agentmesh.NondeterminismError) as info:
        agentmesh.replay(r.log_path, routed("other"))
    e = info.value
    assert "the log took case 0 → hi at branch 'br'; this workflow takes the default → lo at branch 'br'" in e.message
    assert f"First difference in '{e.field}'" in e.message and e.node == "br"
