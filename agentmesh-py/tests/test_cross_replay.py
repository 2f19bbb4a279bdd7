"""Logs cross between hosts: a log written by the Rust CLI replays, verifies and resumes in
Python, and a log written by Python agents replays, verifies and resumes with the CLI.

Needs the CLI binary: ``$AGENTMESH_CLI`` or ``target/debug/agentmesh``
(``cargo build -p agentmesh-cli``). Without it the tests skip, or fail when ``$CI`` is set.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional

import pytest

import agentmesh

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "bindings-tests" / "vectors"

# Exit codes (docs/cli.md).
EXIT_OK, EXIT_RUN_FAILED, EXIT_WAITING, EXIT_NONDETERMINISM, EXIT_NEEDS_HOST = 0, 1, 3, 6, 9
# What `agentmesh verify --json` adds to the library's report.
CLI_VERIFY_KEYS = ("status", "summary", "inFlight", "waitingFor", "host")


def _load_vector_runner() -> ModuleType:
    # The scripted agents of the Python vector runner (bindings-tests/python/test_vectors.py),
    # under a name of their own so pytest does not collect its tests twice.
    path = REPO / "bindings-tests" / "python" / "test_vectors.py"
    spec = importlib.util.spec_from_file_location("_agentmesh_vector_runner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _load_vector_runner()


@pytest.fixture(scope="module")
def cli() -> Path:
    env = os.environ.get("AGENTMESH_CLI")
    path = Path(env) if env else REPO / "target" / "debug" / "agentmesh"
    if not (path.is_file() and os.access(path, os.X_OK)):
        message = f"the agentmesh CLI is not at {path}: run `cargo build -p agentmesh-cli` (or set AGENTMESH_CLI)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def am(cli: Path, *args: Any, expect: Optional[int] = EXIT_OK) -> "subprocess.CompletedProcess[bytes]":
    proc = subprocess.run([str(cli), *map(str, args)], capture_output=True, timeout=60, cwd=REPO)
    if expect is not None:
        assert proc.returncode == expect, (
            f"agentmesh {' '.join(map(str, args))}: exit {proc.returncode}, expected {expect}\n"
            f"stdout: {proc.stdout.decode(errors='replace')[-2000:]}\nstderr: {proc.stderr.decode(errors='replace')}"
        )
    return proc


def the_log(log_dir: Path) -> Path:
    (path,) = sorted(log_dir.glob("*.jsonl"))
    return path


def expected(name: str) -> bytes:
    return (VECTORS / name / "expected.jsonl").read_bytes()


def expected_outcome(name: str) -> Dict[str, Any]:
    last = json.loads(expected(name).splitlines()[-1])
    status = {"runCompleted": "completed", "runFailed": "failed", "runCancelled": "cancelled"}[last["type"]]
    outcome: Dict[str, Any] = {"status": status}
    if status == "completed":
        outcome["output"] = last["data"]["output"]
    return outcome


def cli_run(cli: Path, name: str, log_dir: Path, expect: int) -> Path:
    v = VECTORS / name
    am(cli, "run", v / "workflow.json", "--script", v / "script.json", "--log-dir", log_dir, "--fsync", "never", expect=expect)
    return the_log(log_dir)


def python_run(name: str, log_dir: Path, use_async: bool = False) -> agentmesh.RunResult:
    v = VECTORS / name
    wf = agentmesh.Workflow.from_file(v / "workflow.json")
    script = runner.load_script(v / "script.json")
    mesh = runner.new_mesh(str(log_dir), wf, script)
    kwargs = {"input": script.get("input"), "seed": script.get("seed", 0), "run_id": script.get("runId")}
    if use_async:
        result: agentmesh.RunResult = runner.drive(lambda: asyncio.run(mesh.run_async(wf, **kwargs)))
    else:
        result = runner.drive(lambda: mesh.run(wf, **kwargs))
    return result


FINISHED = [
    ("chain", EXIT_OK),
    ("fan_out_join", EXIT_OK),
    ("branch", EXIT_OK),
    ("bounded_loop", EXIT_OK),
    ("retry_then_success", EXIT_OK),
    ("retries_exhausted", EXIT_RUN_FAILED),
    ("cancellation", EXIT_RUN_FAILED),
    ("large_payload", EXIT_OK),
]


# CLI → Python --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, code", FINISHED, ids=[n for n, _ in FINISHED])
def test_cli_log_replays_in_python(cli: Path, tmp_path: Path, name: str, code: int) -> None:
    path = cli_run(cli, name, tmp_path, code)
    report = agentmesh.replay(path)
    outcome = report["outcome"]
    want = expected_outcome(name)
    assert outcome["status"] == want["status"]
    if "output" in want:
        assert outcome["output"] == want["output"]
    # Replay against the workflow file, parsed by Python, decides the same events too.
    again = agentmesh.replay(path, agentmesh.Workflow.from_file(VECTORS / name / "workflow.json"))
    assert again["outcome"] == outcome
    canonical = agentmesh.canonical_log(path)
    assert canonical == am(cli, "canonical", path).stdout
    assert canonical == expected(name)
    assert agentmesh.fingerprint(path) in am(cli, "run", VECTORS / name / "workflow.json", "--script",
                                             VECTORS / name / "script.json", "--log-dir", tmp_path / "again",
                                             "--fsync", "never", expect=code).stdout.decode()
    verified = agentmesh.verify_log(path)
    assert verified["finished"] == {"completed": "runCompleted", "failed": "runFailed", "cancelled": "runCancelled"}[want["status"]]
    assert verified["repaired"] is None and verified["holes"] == []


def test_cli_waiting_run_resumes_in_python(cli: Path, tmp_path: Path) -> None:
    name = "human_wait_resume"
    path = cli_run(cli, name, tmp_path, EXIT_WAITING)
    wf = agentmesh.Workflow.from_file(VECTORS / name / "workflow.json")
    script = runner.load_script(VECTORS / name / "script.json")
    result = runner.new_mesh(str(tmp_path), wf, script).resume(path, {"approve": script["approvals"]["approve"]})
    assert result.status == "waiting" and [a.node for a in result.waiting] == ["legal"]
    result = runner.new_mesh(str(tmp_path), wf, script).resume(path, {"legal": script["approvals"]["legal"]})
    assert result.status == "completed"
    assert agentmesh.canonical_log(path) == expected(name)
    am(cli, "verify", path)
    am(cli, "replay", path)


def test_python_forks_a_cli_log(cli: Path, tmp_path: Path) -> None:
    path = cli_run(cli, "chain", tmp_path, EXIT_OK)
    wf = agentmesh.recorded_workflow(path)
    mesh = agentmesh.Mesh(log_dir=tmp_path / "forks")
    mesh.add_agent("planner", lambda act: pytest.fail("the fork starts after plan"))
    mesh.add_agent("writer", lambda act: {"wrote": act.deps["plan"]})
    mesh.add_agent("editor", lambda act: {"edited": act.deps["write"]})
    assert sorted(wf.agent_names()) == ["editor", "planner", "writer"]
    forked = mesh.fork(path, 4, {"plan": "replaced plan"}, run_id="py-fork")
    assert forked.status == "completed"
    assert forked.output == {"edit": {"edited": {"wrote": "replaced plan"}}}
    am(cli, "verify", forked.log_path)
    out = am(cli, "replay", forked.log_path).stdout.decode()
    assert out.startswith("replay       equal")


# Python → CLI --------------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True], ids=["run", "run_async"])
@pytest.mark.parametrize("name, code", FINISHED, ids=[n for n, _ in FINISHED])
def test_python_log_replays_with_the_cli(cli: Path, tmp_path: Path, name: str, code: int, use_async: bool) -> None:
    result = python_run(name, tmp_path, use_async)
    assert result.log_path is not None
    path = Path(result.log_path)
    out = am(cli, "replay", path).stdout.decode()
    lines = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert lines["replay"].startswith("equal: ") and "no agent called" in lines["replay"]
    assert lines["status"] == result.status
    if result.status == "completed":
        assert json.loads(lines["output"]) == result.output
    else:
        assert lines["error"] == f"[{result.error['code']}] {result.error['message']}"
    verify = json.loads(am(cli, "verify", path, "--json").stdout)
    # The library's report, plus what the CLI adds: what the run is, and its host.
    assert {k: verify.pop(k) for k in CLI_VERIFY_KEYS} == {
        "status": result.status, "summary": result.status, "inFlight": [], "waitingFor": [], "host": "python"}
    assert verify == agentmesh.verify_log(path)
    assert verify["repaired"] is None and verify["holes"] == []
    assert am(cli, "canonical", path).stdout == agentmesh.canonical_log(path) == expected(name)


def test_python_waiting_run_resumes_with_the_cli(cli: Path, tmp_path: Path) -> None:
    name = "human_wait_resume"
    result = python_run(name, tmp_path)
    assert result.status == "waiting" and [a.node for a in result.waiting] == ["approve"]
    script = VECTORS / name / "script.json"
    # The CLI records both approvals from the script; publish has no behaviour in it, and on a
    # Python run the CLI never invents one: it stops there for Python (exit 9).
    am(cli, "resume", result.log_path, "--script", script, "--fsync", "never", expect=EXIT_WAITING)
    out = am(cli, "resume", result.log_path, "--script", script, "--fsync", "never", expect=EXIT_NEEDS_HOST)
    assert "needs        publish: agent publisher" in out.stdout.decode()
    wf = agentmesh.Workflow.from_file(VECTORS / name / "workflow.json")
    done = runner.new_mesh(str(tmp_path), wf, runner.load_script(script)).resume(result.log_path)
    assert done.status == "completed"
    assert agentmesh.canonical_log(result.log_path) == expected(name)
    assert agentmesh.replay(result.log_path)["outcome"]["status"] == "completed"


def changed_workflow(name: str, old: str, new: str, tmp_path: Path) -> Path:
    text = (VECTORS / name / "workflow.json").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "changed.json"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def cli_divergence(stderr: bytes) -> Dict[str, str]:
    lines = stderr.decode().splitlines()
    assert lines[0].startswith("[NONDETERMINISM] seq "), lines
    return dict(line.strip().split(None, 1) for line in lines[1:] if line.strip())


CHANGES = [
    ("chain", '"agent": "writer"', '"agent": "author"', "data.agent"),
    ("bounded_loop", '"eq": false', '"eq": true', "data.case"),
    ("fan_out_join", '"tool": "web_search"', '"tool": "web_fetch"', "data.tool"),
]


@pytest.mark.parametrize("name, old, new, field", CHANGES, ids=[c[0] for c in CHANGES])
def test_python_log_against_a_changed_workflow_is_nondeterminism_in_the_cli(
    cli: Path, tmp_path: Path, name: str, old: str, new: str, field: str
) -> None:
    result = python_run(name, tmp_path / "logs")
    changed = changed_workflow(name, old, new, tmp_path)
    proc = am(cli, "replay", result.log_path, "--workflow", changed, expect=EXIT_NONDETERMINISM)
    detail = cli_divergence(proc.stderr)
    assert detail["field"] == field
    # Python reports the same divergence.
    with pytest.raises(agentmesh.NondeterminismError) as info:
        agentmesh.replay(result.log_path, agentmesh.Workflow.from_file(changed))
    e = info.value
    assert (str(e.seq), e.node, e.field, e.expected, e.actual) == (
        detail["seq"], detail["node"], detail["field"], detail["expected"], detail["actual"]
    )
    assert e.message == proc.stderr.decode().splitlines()[0][len("[NONDETERMINISM] "):]


def test_cli_log_against_a_changed_workflow_is_nondeterminism_in_python(cli: Path, tmp_path: Path) -> None:
    path = cli_run(cli, "retry_then_success", tmp_path / "logs", EXIT_OK)
    changed = changed_workflow("retry_then_success", '"backoffMs": 10', '"backoffMs": 15', tmp_path)
    with pytest.raises(agentmesh.NondeterminismError) as info:
        agentmesh.replay(path, agentmesh.Workflow.from_file(changed))
    e = info.value
    assert e.node == "fetch" and e.field == "data.delayMs"
    assert (e.expected, e.actual) == ("10", "15")
    detail = cli_divergence(am(cli, "replay", path, "--workflow", changed, expect=EXIT_NONDETERMINISM).stderr)
    assert (detail["seq"], detail["node"], detail["field"]) == (str(e.seq), "fetch", "data.delayMs")


def test_headers_of_both_hosts_agree_up_to_wall_clock(cli: Path, tmp_path: Path) -> None:
    name = "out_of_order_parallel"
    rust = cli_run(cli, name, tmp_path / "rust", EXIT_OK)
    python = python_run(name, tmp_path / "python").log_path
    assert python is not None
    hr, hp = agentmesh.read_header(rust), agentmesh.read_header(python)
    assert isinstance(hr.pop("meta")["at"], int) and isinstance(hp.pop("meta")["at"], int)
    assert hr == hp
    # The workflow hash the CLI records is the one Python computes for the same file.
    assert hr["workflow"]["hash"] == agentmesh.Workflow.from_file(VECTORS / name / "workflow.json").hash
    assert agentmesh.recorded_workflow(rust).to_json() == agentmesh.recorded_workflow(python).to_json()
    assert agentmesh.fingerprint(rust) == agentmesh.fingerprint(python)
