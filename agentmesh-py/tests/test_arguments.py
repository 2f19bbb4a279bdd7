"""Arguments Python can express and the core cannot hold: typed AgentMesh errors naming where,
never a plain ``UnicodeEncodeError``, ``OverflowError`` or ``TypeError``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

import agentmesh


def wf(nodes: List[Dict[str, Any]], name: str = "t") -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict({"name": name, "nodes": nodes})


# lone surrogates (defect 20) -----------------------------------------------------------------


def test_from_json_with_a_lone_surrogate_is_invalid_workflow_naming_where() -> None:
    text = '{"name": "w",\n "nodes": [{"id": "a", "type": "agent", "agent": "x\ud800"}]}'
    with pytest.raises(agentmesh.InvalidWorkflowError) as info:
        agentmesh.Workflow.from_json(text)
    e = info.value
    column = text.splitlines()[1].index("\ud800") + 1
    assert "U+D800" in str(e) and f"line 2 column {column}" in str(e)
    assert e.field == "(document)" and e.node is None


@pytest.mark.parametrize(
    "spec, where",
    [
        ({"name": "w\udfff", "nodes": []}, "$['name']"),
        ({"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "\ud800"}]}, "$['nodes'][0]['agent']"),
        ({"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "x", "\ud800": 1}]}, "$['nodes'][0]"),
    ],
    ids=["name", "agent", "key"],
)
def test_from_dict_with_a_lone_surrogate_is_invalid_workflow_naming_where(spec: Dict[str, Any], where: str) -> None:
    with pytest.raises(agentmesh.InvalidWorkflowError) as info:
        agentmesh.Workflow.from_dict(spec)
    assert "lone surrogate" in str(info.value) and f"at {where}" in str(info.value)


def test_any_lone_surrogate_is_refused_and_an_escaped_pair_is_one_character() -> None:
    text = '{"name": "w", "nodes": [{"id": "a", "type": "agent", "agent": "x\udfff"}]}'
    with pytest.raises(agentmesh.InvalidWorkflowError):
        agentmesh.Workflow.from_json(text)
    # A surrogate *pair* written as JSON escapes is one character: fine.
    w = agentmesh.Workflow.from_json('{"name": "w\\ud83d\\ude00", "nodes": [{"id": "a", "type": "agent", "agent": "x"}]}')
    assert w.name == "w\U0001F600"


# seqs beyond 64 bits (defect 21) -------------------------------------------------------------


@pytest.fixture
def log(tmp_path: Path) -> str:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("a", lambda act: 1)
    r = mesh.run(wf([{"id": "one", "type": "agent", "agent": "a"},
                     {"id": "two", "type": "agent", "agent": "a", "after": ["one"]}]), run_id="base")
    assert r.log_path is not None
    return r.log_path


BAD_SEQS = [2**64, 2**64 + 5, -1, -(2**70), 10**400, True, 1.0, "4", None]


@pytest.mark.parametrize("seq", BAD_SEQS, ids=repr)
def test_state_at_a_seq_outside_64_bits_is_invalid_argument(log: str, seq: Any) -> None:
    with pytest.raises(agentmesh.InvalidArgumentError) as info:
        agentmesh.state_at(log, seq)
    assert "seq" in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize("seq", BAD_SEQS, ids=repr)
def test_fork_at_a_seq_outside_64_bits_is_invalid_argument(log: str, tmp_path: Path, seq: Any) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path / "forks")
    mesh.add_agent("a", lambda act: 2)
    with pytest.raises(agentmesh.InvalidArgumentError):
        mesh.fork(log, seq, run_id="f")
    with pytest.raises(agentmesh.InvalidArgumentError):
        asyncio.run(mesh.fork_async(log, seq, run_id="f"))
    assert not (tmp_path / "forks").exists() or list((tmp_path / "forks").iterdir()) == []


def test_a_seq_near_the_64_bit_limit_is_outside_the_log_not_an_overflow(log: str) -> None:
    # (2**64 - 1 itself is the core's "to the end" sentinel: reported to the core.)
    with pytest.raises(agentmesh.InvalidArgumentError, match="outside"):
        agentmesh.state_at(log, 2**64 - 2)
    assert agentmesh.state_at(log, 4)["forkPoint"] is True


# nesting in workflow specs (defect 17) -------------------------------------------------------


def deep_operand(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def branch_spec(levels: int) -> Dict[str, Any]:
    return {"name": "deep", "nodes": [
        {"id": "a", "type": "agent", "agent": "x"},
        {"id": "b", "type": "branch", "after": ["a"],
         "cases": [{"when": {"path": "/outputs/a", "eq": deep_operand(levels)}, "goto": "c"}]},
        {"id": "c", "type": "agent", "agent": "x"},
    ]}


@pytest.mark.parametrize("how", ["from_json", "from_dict"])
def test_a_branch_operand_nested_121_deep_is_refused_at_load(how: str) -> None:
    spec = branch_spec(121)
    with pytest.raises(agentmesh.InvalidWorkflowError):
        if how == "from_json":
            agentmesh.Workflow.from_json(json.dumps(spec))
        else:
            agentmesh.Workflow.from_dict(spec)


def test_a_workflow_that_loads_is_readable_from_its_log(tmp_path: Path) -> None:
    # The rule behind defect 17: what loads can be run, logged and read back.
    w = agentmesh.Workflow.from_json(json.dumps(branch_spec(90)))
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("x", lambda act: deep_operand(90))
    r = mesh.run(w, run_id="deep")
    assert r.status == "completed" and r.log_path is not None
    assert agentmesh.recorded_workflow(r.log_path).hash == w.hash
    assert agentmesh.replay(r.log_path)["outcome"]["status"] == "completed"
    assert [e["type"] for e in agentmesh.read_log(r.log_path)][-1] == "runCompleted"
