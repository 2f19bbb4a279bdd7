"""Sub-workflows through the public API: a workflow node's child runs under prefixed node ids,
sees the node's input as its input, waits for a person by the prefixed id, and hands its
terminal outputs up as the node's output."""

from pathlib import Path
from typing import Any, Dict, List

import pytest

import agentmesh
from agentmesh import Activation, Workflow

CHILD: Dict[str, Any] = {"name": "review", "nodes": [
    {"id": "draft", "type": "agent", "agent": "writer"},
    {"id": "approve", "type": "human", "prompt": "ok?", "after": ["draft"]},
    {"id": "polish", "type": "agent", "agent": "writer", "after": ["approve"]},
]}


def parent() -> Workflow:
    return Workflow.from_dict({"name": "parent", "nodes": [
        {"id": "plan", "type": "agent", "agent": "planner"},
        {"id": "review", "type": "workflow", "after": ["plan"], "input": "/outputs/plan",
         "workflow": CHILD},
        {"id": "send", "type": "agent", "agent": "sender", "after": ["review"]},
    ]})


def make_mesh(tmp_path: Path, seen: List[Any]) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("planner")
    def planner(act: Activation) -> Any:
        return {"topic": "maps"}

    @mesh.agent("writer")
    def writer(act: Activation) -> Any:
        seen.append((act.node, act.input))
        return {"text": f"{act.node} on {act.input['topic']}"}

    @mesh.agent("sender")
    def sender(act: Activation) -> Any:
        return act.deps["review"]

    return mesh


def test_a_child_runs_under_prefixed_ids_and_hands_its_output_up(tmp_path: Path) -> None:
    seen: List[Any] = []
    wf = parent()
    assert wf.node_ids() == ["plan", "review/draft", "review/approve", "review/polish", "review", "send"]
    r = make_mesh(tmp_path, seen).run(wf, run_id="p")
    assert r.status == "waiting" and [a.node for a in r.waiting] == ["review/approve"]
    r = make_mesh(tmp_path, seen).resume(r.log_path, {"review/approve": {"ok": True}})
    assert r.status == "completed"
    assert r.output == {"send": {"polish": {"text": "review/polish on maps"}}}
    assert seen == [("review/draft", {"topic": "maps"}), ("review/polish", {"topic": "maps"})]
    types = [(e["type"], e.get("node")) for e in agentmesh.read_log(r.log_path)]
    assert ("workflowStarted", "review") in types and ("workflowCompleted", "review") in types
    assert agentmesh.replay(r.log_path)["outcome"]["status"] == "completed"


def test_a_childs_errors_name_the_workflow_node(tmp_path: Path) -> None:
    bad = {"name": "c", "nodes": [{"id": "s", "type": "tool", "tool": "t", "after": ["zz"]}]}
    with pytest.raises(agentmesh.InvalidWorkflowError) as info:
        Workflow.from_dict({"name": "w", "nodes": [{"id": "w", "type": "workflow", "workflow": bad}]})
    assert info.value.node == "w" and info.value.field == "workflow"
    assert "in workflow 'c': node 's', field 'after[0]': unknown node 'zz'" in str(info.value)
