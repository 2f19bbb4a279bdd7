"""``Workflow.warnings`` and the ``AgentMeshWarning`` shown when a workflow is loaded or built:
a node whose every ``after`` entry is a branch receives no deps."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict

import pytest

import agentmesh
from agentmesh import AgentMeshWarning, Workflow

# `publish` reads `write`'s output but lists only the branch in `after`.
BUGGY: Dict[str, Any] = {"name": "pub", "nodes": [
    {"id": "write", "type": "agent", "agent": "writer"},
    {"id": "gate", "type": "branch", "after": ["write"],
     "cases": [{"when": {"path": "/outputs/write/text", "exists": True}, "goto": "publish"}]},
    {"id": "publish", "type": "tool", "tool": "save", "after": ["gate"]}]}

HINT = ("node 'publish': every 'after' entry is a branch (gate), and a branch has no output, so its "
        "activations receive no deps; add the nodes whose outputs it needs to 'after', or list them in 'reads'")


def fixed() -> Dict[str, Any]:
    spec = json.loads(json.dumps(BUGGY))
    spec["nodes"][2]["after"] = ["gate", "write"]
    return spec


def test_from_dict_warns_at_the_callers_line() -> None:
    with pytest.warns(AgentMeshWarning) as caught:
        wf = Workflow.from_dict(BUGGY)
    assert [str(w.message) for w in caught] == [f"workflow 'pub': {HINT}"]
    assert caught[0].filename == __file__  # the user's line, not the package's
    assert wf.warnings == [HINT]
    assert issubclass(AgentMeshWarning, UserWarning)


def test_from_json_from_file_and_the_builder_warn_too(tmp_path: Path) -> None:
    with pytest.warns(AgentMeshWarning, match="every 'after' entry is a branch"):
        Workflow.from_json(json.dumps(BUGGY))
    path = tmp_path / "pub.json"
    path.write_text(json.dumps(BUGGY))
    with pytest.warns(AgentMeshWarning, match="node 'publish'") as caught:
        Workflow.from_file(path)
    assert caught[0].filename == __file__
    with pytest.warns(AgentMeshWarning, match="node 'publish'") as caught:
        built = (
            Workflow.builder("pub")
            .agent("write", "writer")
            .branch("gate", [({"path": "/outputs/write/text", "exists": True}, "publish")], after=["write"])
            .tool("publish", "save", after=["gate"])
            .build()
        )
    assert caught[0].filename == __file__
    assert built.warnings == [HINT]


def test_one_warning_per_node_and_none_for_a_sound_workflow() -> None:
    spec = json.loads(json.dumps(BUGGY))
    spec["nodes"][1]["default"] = "notify"
    spec["nodes"].append({"id": "notify", "type": "agent", "agent": "writer", "after": ["gate"]})
    with pytest.warns(AgentMeshWarning) as caught:
        wf = Workflow.from_dict(spec)
    assert len(caught) == 2 and len(wf.warnings) == 2
    assert "node 'notify'" in wf.warnings[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would raise
        sound = Workflow.from_dict(fixed())
    assert sound.warnings == []


def test_warnings_never_change_a_run_and_a_recorded_workflow_is_not_warned_about_again(
    tmp_path: Path,
) -> None:
    with pytest.warns(AgentMeshWarning):
        wf = Workflow.from_dict(BUGGY)
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("writer", lambda act: {"text": "brief"})
    mesh.add_tool("save", lambda act: {"deps": act.deps})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = mesh.run(wf, run_id="pub")
        assert r.output == {"publish": {"deps": {}}}  # what the warning says: no deps
        again = agentmesh.recorded_workflow(r.log_path or "")
        mesh.resume(r.log_path or "")
    assert again.warnings == [HINT]


def test_warnings_can_be_made_errors() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", AgentMeshWarning)
        with pytest.raises(AgentMeshWarning, match="no deps"):
            Workflow.from_dict(BUGGY)
