"""Whole-process behaviour, in child interpreters: exiting after a stuck agent timed out, and
a real SIGINT (Ctrl-C) while a run is driven."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import agentmesh

STUCK = """
import asyncio, sys, threading, agentmesh
mode, log_dir = sys.argv[1], sys.argv[2]
wf = agentmesh.Workflow.builder("stuck").agent("a", "stuck", timeout_ms=50).build()
mesh = agentmesh.Mesh(log_dir=log_dir)
mesh.add_agent("stuck", lambda act: threading.Event().wait())  # never returns
if mode == "sync":
    r = mesh.run(wf, run_id="stuck")
else:
    r = asyncio.run(mesh.run_async(wf, run_id="stuck"))
print(r.status, r.error["code"], flush=True)
"""


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_process_exits_after_a_stuck_agent_timed_out(tmp_path: Path, mode: str) -> None:
    # A stuck plain-function agent costs its (daemon) thread, never the process's exit:
    # neither interpreter shutdown nor asyncio.run waits for it.
    done = subprocess.run(
        [sys.executable, "-c", STUCK, mode, str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["failed", "TIMEOUT"]
    events = list(agentmesh.read_log(tmp_path / "stuck.jsonl"))
    assert events[-1]["type"] == "runFailed"
    assert [e["data"]["error"]["kind"] for e in events if e["type"] == "agentFailed"] == ["timeout"]


INTERRUPTED = """
import asyncio, signal, sys, threading, time, agentmesh
# A background job of a non-interactive shell inherits SIGINT ignored: be Ctrl-C-able.
signal.signal(signal.SIGINT, signal.default_int_handler)
mode, log_dir, pool = sys.argv[1], sys.argv[2], sys.argv[3] == "pool"
wf = agentmesh.Workflow.builder("slow").agent("a", "slow").agent("b", "slow", after="a").build()
mesh = agentmesh.Mesh(log_dir=log_dir)

def slow(act):
    print("started", act.node, flush=True)
    time.sleep(30)
    return "late"

async def slow_async(act):
    print("started", act.node, flush=True)
    await asyncio.sleep(30)
    return "late"

mesh.add_agent("slow", slow_async if mode == "async" else slow)
cancel = agentmesh.CancelToken() if pool else None  # a caller's token: agents on the pool
try:
    if mode == "sync":
        mesh.run(wf, run_id="slow", cancel=cancel)
    else:
        asyncio.run(mesh.run_async(wf, run_id="slow", cancel=cancel))
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    raise
"""


def fast_mesh(log_dir: Path) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.add_agent("slow", lambda act: f"{act.node} done")
    return mesh


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    "mode,where", [("sync", "caller"), ("sync", "pool"), ("async", "caller"), ("async", "pool")]
)
def test_ctrl_c_leaves_the_run_resumable_and_reraises(tmp_path: Path, mode: str, where: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, mode, str(tmp_path), where],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["started", "a"]
        time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=20)
    finally:
        child.kill()
    # Re-raised unchanged: the interpreter reports it and exits as Ctrl-C does.
    assert "KeyboardInterrupt" in out.split()
    assert child.returncode != 0 and "KeyboardInterrupt" in err
    log = tmp_path / "slow.jsonl"
    # Nothing written after `a` was scheduled: it is in flight, exactly as after a crash.
    kinds = [e["type"] for e in agentmesh.read_log(log)]
    assert kinds == ["runStarted", "stepStarted", "agentScheduled"], kinds
    assert agentmesh.check_log(log)["finished"] is None
    # The child released the log; a resume runs `a` again and finishes the run with the
    # canonical log of a run that was never interrupted.
    resumed = fast_mesh(tmp_path).resume(log)
    assert resumed.status == "completed" and resumed.output == {"b": "b done"}
    clean = fast_mesh(tmp_path / "clean").run(
        agentmesh.recorded_workflow(log), run_id="slow"
    )
    assert resumed.fingerprint == clean.fingerprint
    assert agentmesh.verify_log(log)["finished"] == "runCompleted"
