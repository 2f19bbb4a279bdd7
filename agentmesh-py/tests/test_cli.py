"""The ``agentmesh`` command from Python: ``python -m agentmesh`` and the ``agentmesh`` console
script run the Rust CLI itself (same output, same exit codes as the binary), and the CLI never
invents the work of a run this Python program hosts.

The comparisons with the binary need it (``$AGENTMESH_CLI`` or ``target/debug/agentmesh``):
without it they skip, or fail when ``$CI`` is set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import agentmesh

REPO = Path(__file__).resolve().parents[2]
EXIT_OK, EXIT_USAGE, EXIT_WAITING, EXIT_INVALID, EXIT_NEEDS_HOST = 0, 2, 3, 4, 9

GATE = {
    "name": "gate",
    "nodes": [
        {"id": "write", "type": "agent", "agent": "writer"},
        {"id": "approve", "type": "human", "prompt": "Publish?", "after": ["write"]},
        {"id": "publish", "type": "tool", "tool": "save", "after": ["approve", "write"]},
    ],
}


def binary() -> Path:
    env = os.environ.get("AGENTMESH_CLI")
    path = Path(env) if env else REPO / "target" / "debug" / "agentmesh"
    if not (path.is_file() and os.access(path, os.X_OK)):
        message = f"the agentmesh CLI is not at {path}: run `cargo build -p agentmesh-cli` (or set AGENTMESH_CLI)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def python_m(*args: Any, cwd: Optional[Path] = None) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run([sys.executable, "-m", "agentmesh", *map(str, args)],
                          capture_output=True, timeout=60, cwd=cwd)


def native(*args: Any, cwd: Optional[Path] = None) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run([str(binary()), *map(str, args)], capture_output=True, timeout=60, cwd=cwd)


def same(*args: Any, cwd: Optional[Path] = None) -> "subprocess.CompletedProcess[bytes]":
    """Run the command both ways; exit code, stdout and stderr must be identical."""
    ours, theirs = python_m(*args, cwd=cwd), native(*args, cwd=cwd)
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), args
    return ours


def gate_mesh(log_dir: Path, calls: List[str]) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)

    @mesh.agent("writer")
    def writer(act: agentmesh.Activation) -> Dict[str, Any]:
        calls.append(act.node)
        return {"text": "written in Python"}

    @mesh.tool("save")
    def save(act: agentmesh.Activation) -> Dict[str, Any]:
        calls.append(act.node)
        return {"saved": act.deps["write"]["text"], "approved_by": act.deps["approve"]["by"]}

    return mesh


def is_placeholder(output: Any) -> bool:
    return isinstance(output, dict) and set(output) == {"node", "visit", "attempt"}


# python -m agentmesh is the binary -------------------------------------------------------------


def test_version_help_and_usage_errors_match_the_binary(tmp_path: Path) -> None:
    version = same("--version")
    assert version.returncode == EXIT_OK and version.stdout.decode().startswith("agentmesh ")
    assert same("--help").stdout.decode().count("Exit codes:") == 1
    assert b"9   the run needs its host program" in same("resume", "--help").stdout
    bad = same("inspect", "--no-such-flag", "x.jsonl")
    assert bad.returncode == EXIT_USAGE and b"--no-such-flag" in bad.stderr and bad.stdout == b""
    assert same("frobnicate").returncode == EXIT_USAGE
    missing = same("verify", tmp_path / "missing.jsonl")
    assert missing.returncode == 7 and missing.stderr.startswith(b"[IO]")


def test_commands_on_a_log_match_the_binary(tmp_path: Path) -> None:
    result = gate_mesh(tmp_path, []).run(agentmesh.Workflow.from_dict(GATE), run_id="same")
    assert result.status == "waiting" and result.log_path is not None
    log = result.log_path
    for args in (["verify", "--check", log], ["verify", "--check", "--json", log], ["inspect", log],
                 ["inspect", "--json", log], ["show", log, "write"], ["runs", tmp_path], ["canonical", log]):
        out = same(*args)
        assert out.returncode == EXIT_OK, out.stderr
    report = json.loads(python_m("verify", "--check", "--json", log).stdout)
    assert report["status"] == "waiting" and report["waitingFor"] == ["approve"] and report["host"] == "python"


def test_the_console_script_is_installed() -> None:
    # maturin and pip install [project.scripts] next to the interpreter.
    script = Path(sys.executable).parent / ("agentmesh.exe" if os.name == "nt" else "agentmesh")
    assert script.is_file(), f"no console script at {script}"
    out = subprocess.run([str(script), "--version"], capture_output=True, timeout=60)
    assert out.returncode == 0 and out.stdout == python_m("--version").stdout


def test_cli_main_returns_the_exit_code_without_exiting(capfd: pytest.CaptureFixture[str]) -> None:
    from agentmesh.__main__ import main

    assert main(["no-such-command"]) == EXIT_USAGE
    assert main(["--version"]) == EXIT_OK
    out, err = capfd.readouterr()
    assert out.startswith("agentmesh ") and "no-such-command" in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_follow_like_the_binary(tmp_path: Path) -> None:
    # A run whose process died mid-step never ends: only Ctrl-C stops following it.
    crash = (
        "import os, sys, agentmesh\n"
        "mesh = agentmesh.Mesh(log_dir=sys.argv[1])\n"
        "mesh.add_agent('writer', lambda act: os._exit(3))\n"
        "mesh.add_tool('save', lambda act: {})\n"
        f"mesh.run(agentmesh.Workflow.from_dict({GATE!r}), run_id='dead')\n"
    )
    assert subprocess.run([sys.executable, "-c", crash, str(tmp_path)], timeout=60).returncode == 3
    log = tmp_path / "dead.jsonl"
    assert json.loads(python_m("verify", "--check", "--json", log).stdout)["status"] == "crashed"
    follow = subprocess.Popen([sys.executable, "-m", "agentmesh", "inspect", "--follow", str(log)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert follow.stdout is not None
    assert follow.stdout.read(4) == b"run "  # the timeline is out: it is following
    follow.send_signal(signal.SIGINT)
    try:
        follow.wait(timeout=30)
    finally:
        follow.kill()
    assert follow.returncode == -signal.SIGINT


# the CLI never invents a Python program's work ------------------------------------------------


@pytest.mark.parametrize("how", ["binary", "python -m"])
def test_a_python_run_approved_from_the_cli_is_finished_by_python(tmp_path: Path, how: str) -> None:
    run_cli = native if how == "binary" else python_m
    calls: List[str] = []
    wf = agentmesh.Workflow.from_dict(GATE)
    result = gate_mesh(tmp_path, calls).run(wf, run_id="gate")
    assert result.status == "waiting" and calls == ["write"]
    log = result.log_path
    assert log is not None and agentmesh.read_header(log)["meta"]["host"] == "python"

    out = run_cli("resume", log, "--approve", 'approve={"approved": true, "by": "ops"}')
    text = out.stdout.decode()
    assert out.returncode == EXIT_NEEDS_HOST, text + out.stderr.decode()
    assert "needs        publish: tool save" in text
    assert "this run was started by a python program" in text
    assert f"mesh.resume({json.dumps(str(log))})   (Python)" in text
    events = list(agentmesh.read_log(log))
    types = [e["type"] for e in events]
    assert "humanResolved" in types and "toolScheduled" in types and "toolCompleted" not in types
    assert [e["data"]["output"] for e in events if e["type"] == "humanResolved"] == [{"approved": True, "by": "ops"}]

    # Python resumes: its own tool runs, with the approval the CLI recorded.
    done = gate_mesh(tmp_path, calls).resume(log)
    assert done.status == "completed" and calls == ["write", "publish"]
    assert done.output == {"publish": {"saved": "written in Python", "approved_by": "ops"}}
    outputs = [e["data"]["output"] for e in agentmesh.read_log(log) if "output" in e["data"]]
    assert not any(is_placeholder(o) for o in outputs), outputs
    assert agentmesh.replay(log)["outcome"]["status"] == "completed"


def test_a_script_runs_only_what_it_gives_on_a_python_run(tmp_path: Path) -> None:
    wf = agentmesh.Workflow.from_dict(GATE)
    log = gate_mesh(tmp_path, []).run(wf, run_id="scripted").log_path
    assert log is not None
    # A script whose entry would leave some attempt to the default output is refused, and
    # nothing is written.
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"agents": {"save": [{"attempt": 1, "output": {"saved": "x"}}]}}))
    before = Path(log).read_bytes()
    refused = native("resume", log, "--approve", "approve", "--script", partial)
    assert refused.returncode == EXIT_INVALID and refused.stderr.startswith(b"[INVALID_ARGUMENT]")
    assert Path(log).read_bytes() == before
    # The script gives the tool: the CLI may run it.
    script = tmp_path / "save.json"
    script.write_text(json.dumps({"agents": {"save": [{"output": {"saved": "by the script"}}]}}))
    out = native("resume", log, "--approve", "approve", "--script", script)
    assert out.returncode == EXIT_OK, out.stdout.decode()
    assert agentmesh.verify_log(log)["finished"] == "runCompleted"
    outputs = [e["data"]["output"] for e in agentmesh.read_log(log) if e["type"] == "toolCompleted"]
    assert outputs == [{"saved": "by the script"}]


def test_follow_prints_a_python_run_while_it_runs(tmp_path: Path) -> None:
    binary()
    release = tmp_path / "go"
    host = (
        "import os, sys, time, agentmesh\n"
        "mesh = agentmesh.Mesh(log_dir=sys.argv[1])\n"
        "def writer(act):\n"
        "    while not os.path.exists(sys.argv[2]):\n"
        "        time.sleep(0.05)\n"
        "    return {'text': 'slow'}\n"
        "mesh.add_agent('writer', writer)\n"
        "mesh.add_tool('save', lambda act: {})\n"
        f"r = mesh.run(agentmesh.Workflow.from_dict({GATE!r}), run_id='live')\n"
        "print(r.status)\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", host, str(tmp_path), str(release)],
                              stdout=subprocess.PIPE)
    log = tmp_path / "live.jsonl"
    follow = subprocess.Popen([str(binary()), "inspect", "--follow", str(log)], stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        running = json.loads(native("verify", "--check", "--json", log).stdout)
        assert running["status"] == "running" and running["inFlight"] == ["write"]
        release.touch()
        assert runner.wait(timeout=30) == 0
        out, _ = follow.communicate(timeout=30)
    finally:
        runner.kill()
        follow.kill()
    assert follow.returncode == EXIT_WAITING
    text = out.decode()
    assert "agentCompleted" in text and "humanRequested" in text and "approve" in text
    assert text.endswith("status       waiting for a person (approve)\n"), text
