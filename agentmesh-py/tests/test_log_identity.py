"""A log deleted, renamed or replaced while its run writes it (defect 19): the run ends with a
typed IO error naming the log, never ``completed``, and the run refuses every later call."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

import agentmesh
from agentmesh import _agentmesh


def unlink(path: Path) -> None:
    os.unlink(path)


def rename(path: Path) -> None:
    os.rename(path, path.with_name("moved.jsonl"))


def replace(path: Path) -> None:
    other = path.with_name("other.jsonl")
    other.write_bytes(path.read_bytes())  # a copy: same bytes, another file
    os.replace(other, path)


CHANGES: Dict[str, Callable[[Path], None]] = {"unlink": unlink, "rename": rename, "replace": replace}
WHY = {"unlink": "deleted or renamed", "rename": "deleted or renamed", "replace": "replaced by another file"}


def chain() -> agentmesh.Workflow:
    return agentmesh.Workflow.from_dict({"name": "c", "nodes": [
        {"id": "first", "type": "agent", "agent": "vandal"},
        {"id": "second", "type": "agent", "agent": "ok", "after": ["first"]},
    ]})


@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_log_changed_under_its_run_ends_it_with_an_io_error(tmp_path: Path, change: str, fsync: str) -> None:
    log = tmp_path / "victim.jsonl"
    mesh = agentmesh.Mesh(log_dir=tmp_path, fsync=fsync)

    def vandal(act: agentmesh.Activation) -> Any:
        CHANGES[change](log)
        return "done"

    mesh.add_agent("vandal", vandal)
    mesh.add_agent("ok", lambda act: "ok")
    with pytest.raises(agentmesh.AgentMeshIOError) as info:
        mesh.run(chain(), run_id="victim")
    assert str(log) in str(info.value) and WHY[change] in str(info.value)
    # The run is not reported finished anywhere: what is at the path (if anything) does not
    # say runCompleted.
    if log.exists():
        assert agentmesh.check_log(log)["finished"] is None


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_native_run_refuses_every_call_after_it(tmp_path: Path, change: str) -> None:
    w = agentmesh.Workflow.from_dict({"name": "one", "nodes": [{"id": "n", "type": "agent", "agent": "a"}]})
    run = _agentmesh.NativeRun.start(w._native, None, 0, "gone", str(tmp_path), "batch")
    (act,) = run.poll()
    CHANGES[change](tmp_path / "gone.jsonl")
    with pytest.raises(agentmesh.AgentMeshIOError) as info:
        run.complete_all([(act.id, _agentmesh.Completion.ok(act, 1))])
    first = str(info.value)
    assert "gone.jsonl" in first
    for call in (run.status, run.outcome, run.poll, run.outstanding, lambda: run.cancel("x")):
        with pytest.raises(agentmesh.AgentMeshIOError) as again:
            call()
        assert WHY[change] in str(again.value)
    run.close()
