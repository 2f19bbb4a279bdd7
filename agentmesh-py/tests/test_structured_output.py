"""Structured outputs through the public API, with both drivers: a node's ``output`` contract
(a JSON Schema, optionally with the repair of almost-JSON text), the retry that re-asks with
``act.last_failure``, a map whose items are re-asked one by one, the typed errors of a
mismatch that fails the run and of a schema that cannot be used, and ``RunResult.error["item"]``
naming the map item that failed the run."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from blake3_ref import digest

import agentmesh
from agentmesh import Retry, Workflow

DRIVERS = ["threads", "asyncio"]

PLAN = {
    "type": "object",
    "required": ["questions"],
    "additionalProperties": False,
    "properties": {"questions": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
}
NOTES = {"type": "object", "required": ["notes"], "properties": {"notes": {"type": "string"}}}


def drive(mesh: agentmesh.Mesh, driver: str, wf: Workflow, **kw: Any) -> agentmesh.RunResult:
    if driver == "threads":
        return mesh.run(wf, **kw)
    return asyncio.run(mesh.run_async(wf, **kw))


def agent_fn(driver: str, fn: Any) -> Any:
    """``fn`` as the driver's kind of agent: a plain function, or a coroutine for asyncio."""
    if driver == "threads":
        return fn

    async def agent(act: agentmesh.Activation) -> Any:
        await asyncio.sleep(0)
        return fn(act)

    return agent


def events(path: Any, kind: Optional[str] = None) -> List[Dict[str, Any]]:
    return [e for e in agentmesh.read_log(path) if kind is None or e["type"] == kind]


def hexdigest(data: bytes) -> str:
    return digest(data).hex()


# a mismatch re-asks, with the failure to fix ------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_retry_reads_last_failure_and_returns_a_valid_output(tmp_path: Path, driver: str) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    asked: List[Tuple[int, Optional[Dict[str, Any]]]] = []

    def planner(act: agentmesh.Activation) -> Any:
        failure = act.last_failure
        assert failure is act.last_failure  # built once
        asked.append((act.attempt, failure))
        if failure is None:
            return {"questions": ["What is a schema?", 7]}  # a wrong type at /questions/1
        assert failure["type"] == "OutputSchemaError"
        assert "/questions/1" in failure["message"]
        return {"questions": ["What is a schema?", "Why seven?"]}

    mesh.add_agent("planner", agent_fn(driver, planner))
    mesh.add_agent("writer", agent_fn(driver, lambda act: len(act.deps["plan"]["questions"])))
    wf = (
        Workflow.builder("reask")
        .agent("plan", "planner", retry=Retry(2), output={"schema": PLAN})
        .agent("write", "writer", after="plan")
        .build()
    )
    r = drive(mesh, driver, wf, run_id="reask")
    assert r.status == "completed", r.error
    assert r.output == {"write": 2}
    message = 'the output does not match the node\'s schema at /questions/1: 7 is not of type "string"'
    failure = {"kind": "error", "type": "OutputSchemaError", "message": message, "retryable": True}
    assert asked == [(1, None), (2, failure)]

    # The log holds the failure, the retry of it, and the completion.
    plan = [e for e in events(r.log_path) if e.get("node") == "plan"]
    assert [(e["type"], e["attempt"]) for e in plan] == [
        ("agentScheduled", 1), ("agentFailed", 1), ("agentScheduled", 2), ("agentCompleted", 2),
    ]
    assert plan[1]["data"]["error"] == failure
    assert plan[2]["data"]["retryOf"] == plan[1]["seq"]
    assert plan[3]["data"]["output"] == {"questions": ["What is a schema?", "Why seven?"]}
    assert "repaired" not in plan[3]["data"]
    assert agentmesh.replay(r.log_path)["outcome"]["output"] == r.output


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_mismatch_without_a_retry_left_fails_the_run(tmp_path: Path, driver: str) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("planner", agent_fn(driver, lambda act: {"questions": []}))
    wf = Workflow.builder("strict").agent("plan", "planner", output={"schema": PLAN}).build()
    with pytest.raises(agentmesh.AgentFailedError) as info:
        drive(mesh, driver, wf, run_id="strict")
    e = info.value
    assert e.code == "AGENT_FAILED" and e.node == "plan"
    assert str(e).endswith(
        "OutputSchemaError: the output does not match the node's schema at /questions: [] has less than 1 item"
    )
    assert e.__cause__ is None  # the agent raised nothing: its output was refused
    assert e.result is not None and e.result.status == "failed"
    error = e.result.error
    assert error is not None and error["code"] == "AGENT_FAILED" and error["node"] == "plan"
    assert "item" not in error  # not a map item
    assert error["message"].startswith("node 'plan' failed on attempt 1/1: OutputSchemaError: ")
    [failed] = events(e.result.log_path, "agentFailed")
    assert failed["data"]["error"]["type"] == "OutputSchemaError"


def test_output_schema_errors_listed_as_non_retryable_are_not_retried(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    attempts: List[int] = []

    def planner(act: agentmesh.Activation) -> str:
        attempts.append(act.attempt)
        return "no plan"

    mesh.add_agent("planner", planner)
    retry = Retry(3, non_retryable="OutputSchemaError")
    wf = Workflow.builder("give-up").agent("plan", "planner", retry=retry, output={"schema": PLAN}).build()
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf, run_id="give-up")
    assert attempts == [1]
    assert "attempt 1/3" in str(info.value) and "OutputSchemaError" in str(info.value)


# repair -------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_repair_records_the_parsed_json_and_the_fixes(tmp_path: Path, driver: str) -> None:
    text = "Here you go:\n```json\n{'questions': ['a', 'b',],}\n```"
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("planner", agent_fn(driver, lambda act: text))
    got: List[Any] = []

    def writer(act: agentmesh.Activation) -> str:
        got.append(act.deps)
        return "done"

    mesh.add_agent("writer", agent_fn(driver, writer))
    wf = (
        Workflow.builder("repair")
        .agent("plan", "planner", output={"schema": PLAN, "repair": True})
        .agent("write", "writer", after="plan")
        .build()
    )
    r = drive(mesh, driver, wf, run_id="repair")
    assert r.status == "completed", r.error
    assert got == [{"plan": {"questions": ["a", "b"]}}]  # the parsed object, not the text

    [completed] = [e for e in events(r.log_path, "agentCompleted") if e["node"] == "plan"]
    data = completed["data"]
    assert data["output"] == {"questions": ["a", "b"]}
    assert data["repaired"] == {
        "from": hexdigest(text.encode()),
        "to": hexdigest(b'{"questions":["a","b"]}'),
        "fixes": ["codeFence", "singleQuotes", "trailingCommas"],
    }
    assert not events(r.log_path, "agentFailed")
    # Replay uses the recorded (repaired) output; the agent is not asked again.
    assert agentmesh.replay(r.log_path)["outcome"] == {"status": "completed", "output": r.output}


def test_repair_is_only_for_text_that_does_not_match_already(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("echo", lambda act: act.input[act.node])
    as_text = {"type": "string", "maxLength": 100}
    wf = (
        Workflow.builder("kept")
        .agent("text", "echo", output={"schema": as_text, "repair": True})
        .agent("json", "echo", output={"schema": PLAN, "repair": True})
        .build()
    )
    kept = "{'not': 'parsed'}"  # a string the string schema accepts is never parsed
    r = mesh.run(wf, input={"text": kept, "json": '{"questions": ["x"]}'}, run_id="kept")
    assert r.status == "completed", r.error
    assert r.output == {"text": kept, "json": {"questions": ["x"]}}
    by_node = {e["node"]: e["data"] for e in events(r.log_path, "agentCompleted")}
    assert "repaired" not in by_node["text"]
    assert by_node["json"]["repaired"]["fixes"] == []  # plain JSON text: parsed, nothing fixed


def test_text_that_repairs_but_still_does_not_match_is_re_asked(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    failures: List[Optional[Dict[str, Any]]] = []

    def planner(act: agentmesh.Activation) -> Any:
        failures.append(act.last_failure)
        return "```json\n{'topics': ['a'],}\n```" if act.attempt == 1 else "not JSON at all"

    mesh.add_agent("planner", planner)
    wf = Workflow.builder("unfixable").agent(
        "plan", "planner", retry=Retry(3), output={"schema": PLAN, "repair": True}
    ).build()
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf, run_id="unfixable")
    assert "attempt 3/3" in str(info.value) and "repair could not make JSON" in str(info.value)
    first, second = failures[1], failures[2]
    assert first is not None and second is not None
    assert first["message"].startswith(
        "after repair (codeFence, singleQuotes, trailingCommas): the output does not match the "
        "node's schema at the root: "
    )
    assert "'topics'" in first["message"]
    assert second["message"].endswith("the output is text that repair could not make JSON")


# maps: each item re-asked alone; the item that failed the run --------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_map_item_that_does_not_match_is_re_asked_alone(tmp_path: Path, driver: str) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    runs: List[Tuple[int, int, Optional[str]]] = []
    lock = threading.Lock()

    def researcher(act: agentmesh.Activation) -> Any:
        item = act.item
        assert item is not None
        failure = act.last_failure
        with lock:
            runs.append((item.index, act.attempt, None if failure is None else failure["message"]))
        if item.index == 2 and failure is None:
            return {"note": "a typo in the key"}
        return {"notes": f"about {item.value}"}

    mesh.add_agent("researcher", agent_fn(driver, researcher))
    mesh.add_agent("writer", agent_fn(driver, lambda act: act.deps["research"]))
    wf = (
        Workflow.builder("map-reask")
        .map("research", agent="researcher", over="/input/questions", retry=Retry(2),
             output={"schema": NOTES})
        .agent("write", "writer", after="research")
        .build()
    )
    questions = ["q0", "q1", "q2", "q3"]
    r = drive(mesh, driver, wf, input={"questions": questions}, run_id="map-reask")
    assert r.status == "completed", r.error
    assert r.output == {"write": [{"notes": f"about {q}"} for q in questions]}
    missing = "the output does not match the node's schema at the root: \"notes\" is a required property"
    assert sorted(runs) == [(0, 1, None), (1, 1, None), (2, 1, None), (2, 2, missing), (3, 1, None)]

    failed = events(r.log_path, "agentFailed")
    assert [(e["attempt"], e["data"]["error"]["type"]) for e in failed] == [(1, "OutputSchemaError")]
    retried = [e for e in events(r.log_path, "agentScheduled") if e["attempt"] == 2]
    assert [e["data"]["item"] for e in retried] == [{"index": 2}]
    assert [e["data"] for e in events(r.log_path, "mapCompleted")] == [{"items": 4}]


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_map_item_that_fails_the_run_is_in_the_error(tmp_path: Path, driver: str) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    def researcher(act: agentmesh.Activation) -> Any:
        assert act.item is not None
        return {"notes": 3} if act.item.index == 1 else {"notes": "fine"}

    mesh.add_agent("researcher", agent_fn(driver, researcher))
    wf = Workflow.builder("map-fail").map(
        "research", agent="researcher", over="/input", output={"schema": NOTES}
    ).build()
    with pytest.raises(agentmesh.AgentFailedError) as info:
        drive(mesh, driver, wf, input=["a", "b", "c"], run_id="map-fail")
    e = info.value
    assert e.node == "research" and e.__cause__ is None
    assert e.result is not None
    error = e.result.error
    assert error is not None
    assert (error["code"], error["node"], error["item"]) == ("AGENT_FAILED", "research", 1)
    assert "item 1" in error["message"] and "at /notes" in error["message"]
    assert "OutputSchemaError" in error["message"]
    # The same error when the log is read back.
    assert agentmesh.replay(e.result.log_path)["outcome"]["error"] == error


def test_collect_keeps_an_items_schema_error_as_its_outcome(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("researcher", lambda act: {"notes": act.item.value} if act.item.index else {})  # type: ignore[union-attr]
    wf = Workflow.builder("map-collect").map(
        "research", agent="researcher", over="/input", on_item_failure="collect",
        output={"schema": NOTES},
    ).build()
    r = mesh.run(wf, input=["a", "b"], run_id="map-collect")
    assert r.status == "completed", r.error
    [first, second] = r.output["research"]
    assert first["ok"] is False and first["error"]["type"] == "OutputSchemaError"
    assert '"notes" is a required property' in first["error"]["message"]
    assert second == {"ok": True, "output": {"notes": "b"}}


# tools and people ----------------------------------------------------------------------------


def test_a_tools_output_is_checked_like_an_agents(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    calls: List[int] = []

    def lookup(act: agentmesh.Activation) -> Any:
        calls.append(act.attempt)
        return 5 if act.attempt == 1 else "five"  # a number first, where text is expected

    mesh.add_tool("lookup", lookup)
    wf = Workflow.builder("tool").tool(
        "look", "lookup", retry=Retry(2), output={"schema": {"type": "string"}}
    ).build()
    r = mesh.run(wf, run_id="tool")
    assert r.status == "completed" and r.output == {"look": "five"}
    assert calls == [1, 2]
    [failed] = events(r.log_path, "toolFailed")
    assert failed["data"]["error"]["type"] == "OutputSchemaError"


def test_a_human_decision_must_match_the_schema(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    decision = {"type": "object", "required": ["approved"], "properties": {"approved": {"type": "boolean"}}}
    wf = Workflow.builder("approve").human("ok", "Ship it?", output={"schema": decision, "repair": True}).build()

    r = mesh.run(wf, run_id="good")
    assert r.status == "waiting" and r.waiting[0].last_failure is None
    r = mesh.resume(r.log_path, {"ok": "{'approved': True}"})  # repaired like an agent's text
    assert r.status == "completed" and r.output == {"ok": {"approved": True}}

    # People are not re-asked by a retry: a decision that does not match is refused, nothing
    # is recorded, and the run still waits for a matching one.
    r = mesh.run(wf, run_id="bad")
    log = Path(r.log_path)
    before = log.read_bytes()
    with pytest.raises(agentmesh.InvalidOutputError) as info:
        mesh.resume(r.log_path, {"ok": {"approved": "yes"}})
    assert "node 'ok'" in str(info.value) and "at /approved" in str(info.value)
    assert agentmesh.state_at(r.log_path, 3)["status"] == "waiting"
    assert log.read_bytes().count(b"humanResolved") == before.count(b"humanResolved") == 0
    r = mesh.resume(r.log_path, {"ok": {"approved": False}})
    assert r.status == "completed" and r.output == {"ok": {"approved": False}}


# a schema that cannot be used ----------------------------------------------------------------


@pytest.mark.parametrize(
    "output, field, words",
    [
        ({"schema": {"type": 5}}, "output.schema", "not a usable JSON Schema"),
        ({"schema": {"$ref": "https://example.com/s.json"}}, "output.schema", "not a usable JSON Schema"),
        ({"schema": {"type": "string", "pattern": "(a)\\1"}}, "output.schema", "not a usable JSON Schema"),
        ({"repair": True}, "output", "missing field `schema`"),
        ({"schema": {}, "repiar": True}, "output.repiar", "unknown field"),
        ("a schema", "output", "expected struct OutputSpec"),
    ],
    ids=["bad-type", "remote-ref", "backreference", "no-schema", "misspelt", "not-an-object"],
)
def test_a_bad_output_contract_is_an_invalid_workflow(output: Any, field: str, words: str) -> None:
    def built() -> Workflow:
        return Workflow.builder("x").agent("a", "w", output=output).build()

    def written() -> Workflow:
        node = {"id": "a", "type": "agent", "agent": "w", "output": output}
        return Workflow.from_json(json.dumps({"name": "x", "nodes": [node]}))

    for load in (built, written):
        with pytest.raises(agentmesh.InvalidWorkflowError) as info:
            load()
        e = info.value
        assert e.code == "INVALID_WORKFLOW"
        assert (e.node, e.field) == ("a", field), str(e)
        assert words in str(e)
