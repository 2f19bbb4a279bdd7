"""Retrying a failed or cancelled run from its log: ``Mesh.retry`` and ``Mesh.retry_async``
(``runReopened``, then the failed nodes again with a fresh allowance of attempts)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import agentmesh

Event = Dict[str, Any]

# plan → fetch (a tool that fails during an outage, 2 attempts) → write.
BRIEF = {"name": "brief", "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "fetch", "type": "tool", "tool": "http", "after": ["plan"], "retry": {"maxAttempts": 2}},
    {"id": "write", "type": "agent", "agent": "writer", "after": ["fetch"]},
]}


class Outage:
    """The agents of BRIEF; ``http`` raises ``ConnectionError`` while ``down`` is set."""

    def __init__(self) -> None:
        self.down = True
        self.calls: List[str] = []
        self.lock = threading.Lock()

    def mesh(self, log_dir: Path) -> agentmesh.Mesh:
        mesh = agentmesh.Mesh(log_dir=log_dir)
        mesh.add_agent("planner", self.planner)
        mesh.add_tool("http", self.http)
        mesh.add_agent("writer", self.writer)
        return mesh

    def note(self, act: agentmesh.Activation) -> None:
        with self.lock:
            self.calls.append(f"{act.node}#{act.attempt}")

    def planner(self, act: agentmesh.Activation) -> Any:
        self.note(act)
        return {"q": act.input}

    def http(self, act: agentmesh.Activation) -> Any:
        self.note(act)
        if self.down:
            raise ConnectionError("connection refused")
        return {"status": 200, "q": act.deps["plan"]["q"]}

    def writer(self, act: agentmesh.Activation) -> Any:
        self.note(act)
        return {"text": f"brief on {act.deps['fetch']['q']}"}


def brief() -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict(BRIEF)


def events(path: Any) -> List[Event]:
    return list(agentmesh.read_log(path))


def types(path: Any) -> List[str]:
    return [e["type"] for e in events(path)]


def failed_run(outage: Outage, log_dir: Path, run_id: str = "brief-1") -> agentmesh.RunResult:
    with pytest.raises(agentmesh.AgentFailedError) as info:
        outage.mesh(log_dir).run(brief(), input="outages", run_id=run_id)
    result = info.value.result
    assert isinstance(result, agentmesh.RunResult) and result.status == "failed"
    assert isinstance(info.value.__cause__, ConnectionError)
    return result


def replays_to(result: agentmesh.RunResult) -> None:
    """The log verifies and replays, without calling any agent, to the result's outcome."""
    assert result.log_path is not None
    assert agentmesh.verify_log(result.log_path)["repaired"] is None
    outcome = agentmesh.replay(result.log_path)["outcome"]
    assert outcome["status"] == result.status
    assert outcome.get("output") == result.output
    assert outcome.get("error") == result.error


def test_retry_runs_only_the_failed_node_again(tmp_path: Path) -> None:
    outage = Outage()
    first = failed_run(outage, tmp_path)
    assert outage.calls == ["plan#1", "fetch#1", "fetch#2"]
    assert first.error is not None and first.error["node"] == "fetch"
    path = first.log_path
    before = events(path)

    outage.down = False  # the server is back
    # A new mesh, as a new process would retry the run.
    done = outage.mesh(tmp_path).retry(path)
    assert done.status == "completed" and done.error is None
    assert done.output == {"write": {"text": "brief on outages"}}
    # `plan` was not called again; `fetch` got a fresh allowance (attempt 3 of a new 2).
    assert outage.calls == ["plan#1", "fetch#1", "fetch#2", "fetch#3", "write#1"]
    assert done.run_id == first.run_id and done.log_path == path

    after = events(path)
    assert after[: len(before)] == before  # the failure stays in the history
    reopened = after[len(before)]
    assert reopened["type"] == "runReopened" and reopened["data"] == {"reason": "retry"}
    assert reopened["parentSeq"] == before[-1]["seq"] and before[-1]["type"] == "runFailed"
    rescheduled = after[len(before) + 2]
    assert rescheduled["type"] == "toolScheduled" and rescheduled["node"] == "fetch"
    assert rescheduled["attempt"] == 3 and rescheduled["data"]["retryOf"] == before[-2]["seq"]
    replays_to(done)


def test_retry_async_with_on_event(tmp_path: Path) -> None:
    outage = Outage()
    path = failed_run(outage, tmp_path).log_path
    assert path is not None
    outage.down = False
    seen: List[Event] = []

    async def watch(event: Event) -> None:
        seen.append(event)

    done = asyncio.run(outage.mesh(tmp_path).retry_async(path, run_id="brief-1", on_event=watch))
    assert done.status == "completed"
    assert outage.calls[3:] == ["fetch#3", "write#1"]
    # The watcher gets what the retry appends, from runReopened on, as the log holds it.
    appended = events(path)[-len(seen):]
    assert [e["type"] for e in seen][0] == "runReopened"
    assert [{k: v for k, v in e.items() if k != "meta"} for e in seen] == appended
    assert types(path).count("runReopened") == 1
    replays_to(done)


def test_a_retry_that_fails_again_raises_and_can_be_retried_again(tmp_path: Path) -> None:
    outage = Outage()
    path = failed_run(outage, tmp_path).log_path
    assert path is not None
    with pytest.raises(agentmesh.AgentFailedError) as info:
        outage.mesh(tmp_path).retry(path)  # still down
    again = info.value.result
    assert again.status == "failed" and again.error["node"] == "fetch"
    # A fresh allowance of 2: attempts 3 and 4, the second of the new two.
    assert again.error["message"] == (
        "node 'fetch' failed on attempt 4 (2/2 since the run was retried): "
        "ConnectionError: connection refused"
    )
    assert isinstance(info.value.__cause__, ConnectionError)
    assert outage.calls == ["plan#1", "fetch#1", "fetch#2", "fetch#3", "fetch#4"]

    outage.down = False
    done = outage.mesh(tmp_path).retry(path)
    assert done.status == "completed"
    assert outage.calls[-2:] == ["fetch#5", "write#1"]
    assert types(path).count("runReopened") == 2 and types(path).count("runFailed") == 2
    replays_to(done)


def test_retry_of_a_cancelled_run(tmp_path: Path) -> None:
    ran: List[str] = []
    stop = [True]

    def fetch(act: agentmesh.Activation) -> Any:
        ran.append(act.node)
        if stop[0]:
            act.cancel_run("operator pressed stop")
        return {"status": 200}

    def mesh() -> agentmesh.Mesh:
        m = agentmesh.Mesh(log_dir=tmp_path)
        m.add_agent("planner", lambda act: ran.append(act.node) or {"q": 1})
        m.add_tool("http", fetch)
        m.add_agent("writer", lambda act: ran.append(act.node) or {"text": act.deps["fetch"]})
        return m

    cancelled = mesh().run(brief(), run_id="c")
    assert cancelled.status == "cancelled"
    assert cancelled.error == {"code": "CANCELLED", "message": "operator pressed stop"}
    # A resume of a cancelled run runs nothing (cancellation is final) ...
    assert mesh().resume(cancelled.log_path or "").status == "cancelled"
    assert ran == ["plan", "fetch"]

    stop[0] = False  # ... a retry is the decision to go on anyway
    done = mesh().retry(cancelled.log_path or "")
    assert done.status == "completed" and done.output == {"write": {"text": {"status": 200}}}
    assert ran == ["plan", "fetch", "fetch", "write"]
    assert types(done.log_path)[-9:] == [
        "runCancelled", "runReopened", "stepStarted", "toolScheduled", "toolCompleted",
        "stepStarted", "agentScheduled", "agentCompleted", "runCompleted",
    ]
    replays_to(done)


def test_retry_of_a_run_cancelled_with_a_token_keeps_the_token_option(tmp_path: Path) -> None:
    outage = Outage()
    outage.down = False
    token = agentmesh.CancelToken()
    mesh = outage.mesh(tmp_path)

    def planner(act: agentmesh.Activation) -> Any:
        token.cancel("stop")
        return {"q": "x"}

    mesh.add_agent("planner", planner)
    assert mesh.run(brief(), run_id="t", cancel=token).status == "cancelled"
    path = tmp_path / "t.jsonl"
    # Retried under a token cancelled beforehand: reopened, then cancelled again at once.
    again = outage.mesh(tmp_path).retry(path, cancel=token)
    assert again.status == "cancelled" and types(path).count("runReopened") == 1
    assert outage.calls == []
    # Without it the run goes on: the cancelled `plan` runs again, then the rest.
    done = outage.mesh(tmp_path).retry(path)
    assert done.status == "completed"
    # `plan` ran once (its attempt 3: the activation of the first retry was cancelled before
    # it started), and nothing ran twice.
    assert outage.calls == ["plan#3", "fetch#1", "write#1"]
    assert types(path).count("runReopened") == 2
    replays_to(done)


def test_retry_of_a_completed_run_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    outage = Outage()
    outage.down = False
    done = outage.mesh(tmp_path).run(brief(), run_id="ok")
    path = Path(done.log_path or "")
    before = path.read_bytes()
    with pytest.raises(agentmesh.InvalidArgumentError) as info:
        outage.mesh(tmp_path).retry(path)
    assert "completed" in info.value.message and "fork" in info.value.message
    assert path.read_bytes() == before
    with pytest.raises(agentmesh.InvalidArgumentError):
        asyncio.run(outage.mesh(tmp_path).retry_async(path))
    assert path.read_bytes() == before
    assert outage.calls == ["plan#1", "fetch#1", "write#1"]


def test_retry_of_an_interrupted_run_says_to_resume_it(tmp_path: Path) -> None:
    outage = Outage()
    outage.down = False
    mesh = outage.mesh(tmp_path)
    interrupt = [True]

    def http(act: agentmesh.Activation) -> Any:
        if interrupt[0]:
            raise KeyboardInterrupt  # Ctrl-C while the tool runs
        return outage.http(act)

    mesh.add_tool("http", http)
    with pytest.raises(KeyboardInterrupt):
        mesh.run(brief(), run_id="ki")
    path = tmp_path / "ki.jsonl"
    before = path.read_bytes()
    with pytest.raises(agentmesh.InvalidArgumentError) as info:
        outage.mesh(tmp_path).retry(path)
    assert "resume" in info.value.message
    assert path.read_bytes() == before
    interrupt[0] = False
    done = mesh.resume(path)
    assert done.status == "completed" and "runReopened" not in types(path)


def test_retry_of_a_waiting_run_says_to_resume_it(tmp_path: Path) -> None:
    wf = agentmesh.Workflow.from_dict({"name": "gate", "nodes": [
        {"id": "draft", "type": "agent", "agent": "writer"},
        {"id": "approve", "type": "human", "after": ["draft"]}]})
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("writer", lambda act: "text")
    waiting = mesh.run(wf, run_id="w")
    assert waiting.status == "waiting"
    path = Path(waiting.log_path or "")
    before = path.read_bytes()
    with pytest.raises(agentmesh.InvalidArgumentError) as info:
        mesh.retry(path)
    assert "resume" in info.value.message
    assert path.read_bytes() == before
    assert mesh.resume(path, approvals={"approve": True}).status == "completed"


def test_retry_of_a_limit_failure_names_the_fork_point(tmp_path: Path) -> None:
    wf = agentmesh.Workflow.from_dict({"name": "loop", "maxSteps": 3, "nodes": [
        {"id": "a", "type": "agent", "agent": "w"},
        {"id": "b", "type": "agent", "agent": "w", "after": ["a"]},
        {"id": "c", "type": "agent", "agent": "w", "after": ["b"]},
        {"id": "d", "type": "agent", "agent": "w", "after": ["c"]}]})
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("w", lambda act: act.node)
    failed = mesh.run(wf, run_id="lim")
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "LIMIT_EXCEEDED"
    path = Path(failed.log_path or "")
    before = path.read_bytes()
    with pytest.raises(agentmesh.InvalidArgumentError) as info:
        mesh.retry(path)
    assert "fork" in info.value.message and "seq" in info.value.message
    assert path.read_bytes() == before


def test_retry_checks_registration_and_run_id_before_touching_the_log(tmp_path: Path) -> None:
    outage = Outage()
    path = Path(failed_run(outage, tmp_path).log_path or "")
    before = path.read_bytes()
    bare = agentmesh.Mesh(log_dir=tmp_path)
    bare.add_agent("planner", outage.planner)
    with pytest.raises(agentmesh.UnknownAgentError) as unknown:
        bare.retry(path)
    assert "tool 'http'" in unknown.value.message
    with pytest.raises(agentmesh.InvalidArgumentError) as other:
        outage.mesh(tmp_path).retry(path, run_id="someone-else")
    assert "brief-1" in other.value.message
    with pytest.raises(agentmesh.InvalidArgumentError):
        outage.mesh(tmp_path).retry(path, run_id=7)  # type: ignore[arg-type]
    with pytest.raises(agentmesh.AgentMeshIOError):
        outage.mesh(tmp_path).retry(tmp_path / "missing.jsonl")
    assert path.read_bytes() == before
    assert outage.calls == ["plan#1", "fetch#1", "fetch#2"]


def test_a_retry_interrupted_by_ctrl_c_resumes(tmp_path: Path) -> None:
    outage = Outage()
    path = Path(failed_run(outage, tmp_path).log_path or "")
    outage.down = False
    mesh = outage.mesh(tmp_path)
    interrupted: List[Optional[str]] = []

    def writer(act: agentmesh.Activation) -> Any:
        if not interrupted:
            interrupted.append(act.node)
            raise KeyboardInterrupt
        return outage.writer(act)

    mesh.add_agent("writer", writer)
    with pytest.raises(KeyboardInterrupt):
        mesh.retry(path)
    # The retry reopened the run and `fetch` succeeded; `write` stays in flight.
    assert agentmesh.check_log(path)["finished"] is None
    with pytest.raises(agentmesh.InvalidArgumentError):
        mesh.retry(path)  # running again, not failed: resume it
    done = mesh.resume(path)
    assert done.status == "completed" and done.output == {"write": {"text": "brief on outages"}}
    assert outage.calls == ["plan#1", "fetch#1", "fetch#2", "fetch#3", "write#1"]
    replays_to(done)


def test_run_exists_names_the_way_out_by_status(tmp_path: Path) -> None:
    outage = Outage()
    path = Path(failed_run(outage, tmp_path).log_path or "")
    with pytest.raises(agentmesh.RunExistsError) as failed:
        outage.mesh(tmp_path).run(brief(), input="outages", run_id="brief-1")
    message = failed.value.message
    assert "failed at node 'fetch' (AGENT_FAILED)" in message and "retry it" in message
    # The last step end before fetch's first failure: forking later would only fail again.
    first_failure = min(e["seq"] for e in events(path) if e["type"] == "toolFailed")
    fork_at = max(s["seq"] for s in agentmesh.history(path) if s["forkPoint"] and s["seq"] < first_failure)
    assert agentmesh.state_at(path, fork_at)["completed"] == {"plan": {"q": "outages"}}
    assert f"fork it at seq {fork_at}" in message
    outage.down = False
    outage.mesh(tmp_path).retry(path)
    with pytest.raises(agentmesh.RunExistsError) as completed:
        outage.mesh(tmp_path).run(brief(), input="outages", run_id="brief-1")
    assert "completed, which is final" in completed.value.message
    assert "retry" not in completed.value.message
