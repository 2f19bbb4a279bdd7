"""A run killed in the middle of a map resumes without redoing the items that finished: a
child process runs planner → map(researcher) → writer and SIGKILLs itself from inside item
``KILL_AT``, after the items handed out before it finished; the test process resumes the log
(threads and asyncio) and counts what runs again."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest

import agentmesh

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

N = 6
KILL_AT = 3

CHILD = """
import asyncio, os, signal, sys, agentmesh
driver, log_dir, executions, kill_at, concurrency = sys.argv[1:6]
kill_at, concurrency = int(kill_at), int(concurrency)
wf = (
    agentmesh.Workflow.builder("crash-mid-map")
    .agent("plan", "planner")
    .map("research", agent="researcher", over="/outputs/plan/questions", after="plan",
         item_key="/id", concurrency=concurrency)
    .agent("write", "writer", after="research")
    .build()
)
mesh = agentmesh.Mesh(log_dir=log_dir)
mesh.add_agent("planner", lambda act: {"questions": [{"id": f"q{i}"} for i in range(act.input["n"])]})
mesh.add_agent("writer", lambda act: act.deps["research"])

def research(act):
    i = act.item.index
    fd = os.open(executions, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{i}\\n".encode())
    os.close(fd)
    if i == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)  # dies with this item started, unrecorded
    return {"answer": i, "key": act.item.key}

async def research_async(act):
    await asyncio.sleep(0)
    return research(act)

mesh.add_agent("researcher", research_async if driver == "asyncio" else research)
if driver == "asyncio":
    asyncio.run(mesh.run_async(wf, input={"n": int(sys.argv[6])}, run_id="crash"))
else:
    mesh.run(wf, input={"n": int(sys.argv[6])}, run_id="crash")
print("not killed", flush=True)
"""


def committed_items(log: Path) -> Set[int]:
    """The research items whose completion the log holds."""
    events = list(agentmesh.read_log(log))
    index = {e["seq"]: e["data"]["item"]["index"] for e in events
             if e["type"] == "agentScheduled" and e["node"] == "research"}
    return {index[e["parentSeq"]] for e in events if e["type"] == "agentCompleted" and e["node"] == "research"}


def questions(act: agentmesh.Activation) -> Dict[str, Any]:
    return {"questions": [{"id": f"q{i}"} for i in range(act.input["n"])]}


def resume_mesh(log_dir: Path, driver: str, ran: List[str]) -> agentmesh.Mesh:
    """The agents of CHILD, without the crash, counting what runs in ``ran``."""
    mesh = agentmesh.Mesh(log_dir=log_dir)

    def planner(act: agentmesh.Activation) -> Any:
        ran.append("plan")
        return questions(act)

    def research(act: agentmesh.Activation) -> Dict[str, Any]:
        item = act.item
        assert item is not None
        ran.append(f"item {item.index}")
        return {"answer": item.index, "key": item.key}

    async def research_async(act: agentmesh.Activation) -> Dict[str, Any]:
        await asyncio.sleep(0)
        return research(act)

    mesh.add_agent("planner", planner)
    mesh.add_agent("researcher", research_async if driver == "asyncio" else research)
    mesh.add_agent("writer", lambda act: act.deps["research"])
    return mesh


def crash(log_dir: Path, driver: str, concurrency: int) -> Path:
    """Run CHILD until it kills itself; the file of the items it started."""
    executions = log_dir / "executions.txt"
    crashed = subprocess.run(
        [sys.executable, "-c", CHILD, driver, str(log_dir), str(executions), str(KILL_AT),
         str(concurrency), str(N)],
        capture_output=True, text=True, timeout=60,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    return executions


@pytest.mark.parametrize("concurrency", [1, 2])
@pytest.mark.parametrize("driver", ["threads", "asyncio"])
def test_resume_after_a_crash_mid_map_does_not_redo_finished_items(
    tmp_path: Path, driver: str, concurrency: int
) -> None:
    executions = crash(tmp_path, driver, concurrency)
    log = tmp_path / "crash.jsonl"
    assert agentmesh.check_log(log)["finished"] is None

    child_ran = [int(line) for line in executions.read_text().split()]
    done = committed_items(log)
    assert KILL_AT in child_ran and KILL_AT not in done
    assert done <= set(child_ran)
    # Item KILL_AT is handed out only once all but `concurrency - 1` items before it finished.
    assert len(done & set(range(KILL_AT))) >= KILL_AT - (concurrency - 1)
    if concurrency == 1:
        assert child_ran == [0, 1, 2, 3] and done == {0, 1, 2}

    ran: List[str] = []
    mesh = resume_mesh(tmp_path, driver, ran)
    if driver == "asyncio":
        result = asyncio.run(mesh.resume_async(log))
    else:
        result = mesh.resume(log)
    assert result.status == "completed", result.error
    assert result.output == {"write": [{"answer": i, "key": f"q{i}"} for i in range(N)]}
    # Exactly the items without a recorded completion ran again, each once; the plan did not.
    assert "plan" not in ran
    redone = sorted(int(r.split()[1]) for r in ran)
    assert redone == sorted(set(range(N)) - done)
    assert agentmesh.verify_log(log)["finished"] == "runCompleted"
    assert agentmesh.replay(log)["outcome"]["output"] == result.output
    assert committed_items(log) == set(range(N))


def test_the_resumed_log_equals_a_run_never_interrupted(tmp_path: Path) -> None:
    # The crash and the concurrency window change when items are handed out, never the log.
    crashed_dir, clean_dir = tmp_path / "crashed", tmp_path / "clean"
    crashed_dir.mkdir()
    crash(crashed_dir, "threads", concurrency=1)
    log = crashed_dir / "crash.jsonl"
    resumed = resume_mesh(crashed_dir, "threads", []).resume(log)
    clean = resume_mesh(clean_dir, "threads", []).run(
        agentmesh.recorded_workflow(log), input={"n": N}, run_id="crash"
    )
    assert clean.status == resumed.status == "completed"
    assert clean.log_path is not None
    assert agentmesh.canonical_log(log) == agentmesh.canonical_log(clean.log_path)
