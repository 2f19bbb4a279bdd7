"""``reads``: an activation receives earlier values besides its ``deps`` (``act.reads``, by
path as written): another node's output or part of it, a visit count, the run input; a path
with no value yet is absent. On agent, tool, human and map nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Dict, List

import pytest

import agentmesh
from agentmesh import Workflow


def events(path: Any, kind: str) -> List[Dict[str, Any]]:
    return [e for e in agentmesh.read_log(path) if e["type"] == kind]


@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_reads_delivers_the_output_of_a_node_that_is_not_a_dependency(tmp_path: Path, driver: str) -> None:
    # notes → plan → write: `write` runs after `plan` only, and reads what `notes` wrote, a
    # part of the plan, the input and its own visit count; `later` has no output yet.
    wf = (
        Workflow.builder("reads")
        .agent("notes", "noter")
        .agent("plan", "planner", after="notes")
        .agent("write", "writer", after="plan", reads=[
            "/outputs/notes", "/outputs/plan/title", "/input/topic", "/visits/write", "/outputs/later",
        ])
        .agent("later", "noter", after="write")
        .build()
    )
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("noter", lambda act: {"text": f"notes for {act.node}"})
    mesh.add_agent("planner", lambda act: {"title": "T", "outline": [1, 2]})
    got: List[agentmesh.Activation] = []

    def writer(act: agentmesh.Activation) -> str:
        got.append(act)
        return "draft"

    mesh.add_agent("writer", writer)
    if driver == "threads":
        r = mesh.run(wf, input={"topic": "rust"}, run_id="reads")
    else:
        r = asyncio.run(mesh.run_async(wf, input={"topic": "rust"}, run_id="reads"))
    assert r.status == "completed", r.error
    (act,) = got
    assert act.deps == {"plan": {"title": "T", "outline": [1, 2]}}  # reads are not deps
    assert act.reads == {
        "/outputs/notes": {"text": "notes for notes"},
        "/outputs/plan/title": "T",
        "/input/topic": "rust",
        "/visits/write": 1,
    }
    assert act.reads is act.reads  # converted once
    (scheduled,) = [e for e in events(r.log_path, "agentScheduled") if e["node"] == "write"]
    seqs = {e["node"]: e["seq"] for e in events(r.log_path, "agentCompleted")}
    # Each value read is recorded with the seq it comes from (the input: runStarted's; visit
    # counts and absent values are not listed).
    assert scheduled["data"]["reads"] == {
        "/outputs/notes": seqs["notes"], "/outputs/plan/title": seqs["plan"], "/input/topic": 1,
    }


def test_a_loop_reads_its_critics_notes_from_the_second_visit_on(tmp_path: Path) -> None:
    wf = (
        Workflow.builder("loop")
        .agent("draft", "writer", max_visits=3, reads=["/outputs/critic/notes", "/visits/draft"])
        .agent("critic", "critic", after="draft")
        .branch("again", [({"path": "/outputs/critic/ok", "eq": False}, "draft")], after="critic")
        .build()
    )
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    seen: List[Dict[str, Any]] = []

    def writer(act: agentmesh.Activation) -> str:
        seen.append(dict(act.reads))
        return f"draft {act.visit}"

    mesh.add_agent("writer", writer)
    mesh.add_agent("critic", lambda act: {"ok": act.visit == 2, "notes": f"fix {act.deps['draft']}"})
    r = mesh.run(wf, run_id="loop")
    assert r.status == "completed", r.error
    assert seen == [
        {"/visits/draft": 1},
        {"/visits/draft": 2, "/outputs/critic/notes": "fix draft 1"},
    ]


def test_tool_human_and_map_nodes_get_their_reads(tmp_path: Path) -> None:
    wf = (
        Workflow.builder("kinds")
        .agent("brief", "briefer")
        .tool("fetch", "http", reads="/outputs/brief/url")  # a lone path, not its characters
        .map("grade", agent="grader", over="/input/pages", reads=["/outputs/brief/rubric"])
        .human("approve", "Ship it?", after=["fetch", "grade"], reads=["/outputs/brief"])
        .build()
    )
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    got: Dict[str, List[Dict[str, Any]]] = {"fetch": [], "grade": []}
    mesh.add_agent("briefer", lambda act: {"url": "a.example", "rubric": "short"})

    def record(act: agentmesh.Activation) -> str:
        got[act.node].append(act.reads)
        return act.node

    mesh.add_tool("http", record)
    mesh.add_agent("grader", record)
    # `fetch` and `grade` share the first step with `brief`: its output is not there yet.
    r = mesh.run(wf, input={"pages": ["p1", "p2"]}, run_id="kinds")
    assert r.status == "waiting"
    assert got == {"fetch": [{}], "grade": [{}, {}]}
    (approve,) = r.waiting
    assert approve.node == "approve" and approve.item is None
    assert approve.reads == {"/outputs/brief": {"url": "a.example", "rubric": "short"}}


def test_nodes_without_reads_get_an_empty_dict(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    got: List[Any] = []
    mesh.add_agent("a", lambda act: got.append((act.reads, act.item)))
    mesh.run(Workflow.builder("none").agent("a", "a").build(), run_id="none")
    assert got == [({}, None)]
