"""Python runner of the conformance vectors (see ../README.md, "Runner procedure").

Each vector runs with real Python agents built from script.json (real exceptions, real
sleeps, cancellation from inside the agent, approvals on resume with a new Mesh) and its
canonical log must equal expected.jsonl byte for byte. This runner only compares; it never
writes expected files.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

import agentmesh
from agentmesh import _agentmesh

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
NAMES = sorted(p.name for p in VECTORS.iterdir() if p.is_dir())
PERTURB_BELOW_MS = 100

_SCRIPT_KEYS = {
    "input", "seed", "runId", "agents", "approvals", "retries", "budget", "prices", "policy",
}
_BEHAVIOR_KEYS = {
    "visit", "attempt", "output", "error", "delayMs", "usage", "cancel", "calls", "callsBatch",
    "refusedOutput", "item",
}
_ERROR_KEYS = {"type", "message", "retryable"}
_CALL_KEYS = {"kind", "name", "request", "response", "error", "usage", "ask"}
_CALL_ERROR_KEYS = {"type", "message", "retryable", "status"}


def load_script(path: Path) -> Dict[str, Any]:
    # The core parses the text first, so numbers reach Python already as the core reads them
    # (`-0` → -0.0, integers beyond 64 bits → floats); Python values then round-trip exactly.
    script = json.loads(_agentmesh.normalize_json(path.read_text(encoding="utf-8")))
    unknown = set(script) - _SCRIPT_KEYS
    assert not unknown, f"{path}: unknown script fields {sorted(unknown)}"
    for name, behaviors in script.get("agents", {}).items():
        for b in behaviors:
            unknown = set(b) - _BEHAVIOR_KEYS
            assert not unknown, f"{path}: {name}: unknown behaviour fields {sorted(unknown)}"
            unknown = set(b.get("error", {})) - _ERROR_KEYS
            assert not unknown, f"{path}: {name}: unknown error fields {sorted(unknown)}"
            for c in b.get("calls", []):
                unknown = (set(c) - _CALL_KEYS) | (set(c.get("error", {})) - _CALL_ERROR_KEYS)
                assert not unknown, f"{path}: {name}: unknown call fields {sorted(unknown)}"
    return script


def perturbed(script: Dict[str, Any]) -> Dict[str, Any]:
    s = json.loads(json.dumps(script))
    for behaviors in s.get("agents", {}).values():
        for b in behaviors:
            d = b.get("delayMs", 0)
            if 1 <= d < PERTURB_BELOW_MS:
                b["delayMs"] = PERTURB_BELOW_MS - d
    return s


def choose(script: Dict[str, Any], act: agentmesh.Activation) -> Optional[Dict[str, Any]]:
    """The script's behaviour for this activation (by node, then agent name), or ``None``. A
    behaviour's ``item`` matches only the map item at that index (never a non-map node)."""
    agents: Dict[str, List[Dict[str, Any]]] = script.get("agents", {})
    candidates = agents.get(act.node, []) + agents.get(act.name, [])
    item = act.item
    return next(
        (
            b
            for b in candidates
            if b.get("visit", act.visit) == act.visit
            and b.get("attempt", act.attempt) == act.attempt
            and ("item" not in b or (item is not None and b["item"] == item.index))
        ),
        None,
    )


def default_output(act: agentmesh.Activation) -> Dict[str, Any]:
    out: Dict[str, Any] = {"node": act.node, "visit": act.visit, "attempt": act.attempt}
    if act.item is not None:
        out["item"] = act.item.index
    return out


def complete_call(act: agentmesh.Activation, ticket: agentmesh.CallTicket, call: Dict[str, Any]) -> None:
    """Report a live call's scripted result (a recorded one is the log's already). A response
    the run's policy blocks is recorded as the call's error, which does not fail the agent."""
    if ticket.live:
        if "error" in call:
            act.call_complete(ticket, error=call["error"], usage=call.get("usage"))
        else:
            try:
                act.call_complete(ticket, response=call.get("response"), usage=call.get("usage"))
            except agentmesh.PolicyDeniedError:
                pass


def make_calls(chosen: Dict[str, Any], act: agentmesh.Activation) -> bool:
    """The behaviour's calls, in list order (one call_start each, with its ``ask``), or with
    ``callsBatch`` one call_start_many whose results are reported in reverse order. A call's
    error does not fail the agent; a refused call does (ScriptCallRefused), as in the Rust
    runner, unless a budget or the run's policy refused it and the behaviour has a
    ``refusedOutput``: then the calls stop and this returns ``True``."""
    calls: List[Dict[str, Any]] = chosen.get("calls", [])
    if not calls:
        return False
    try:
        if chosen.get("callsBatch", False):
            tickets = act.call_start_many(
                [(c["kind"], c["name"], c.get("request"), c.get("ask")) for c in calls]
            )
            for ticket, call in reversed(list(zip(tickets, calls))):
                complete_call(act, ticket, call)
            return False
        for call in calls:
            ticket = act.call_start(call["kind"], call["name"], call.get("request"), ask=call.get("ask"))
            complete_call(act, ticket, call)
    except (agentmesh.BudgetExceededError, agentmesh.PolicyDeniedError) as e:
        if "refusedOutput" in chosen:
            return True
        raise agentmesh.ActivationError("ScriptCallRefused", str(e)) from e
    except agentmesh.AgentMeshError as e:
        raise agentmesh.ActivationError("ScriptCallRefused", str(e)) from e
    return False


def finish(chosen: Dict[str, Any], act: agentmesh.Activation) -> Any:
    """What a behaviour does once its delay has passed: cancel, make its calls (a budget's or
    the policy's refusal returns ``refusedOutput``, without usage), fail or return."""
    if chosen.get("cancel", False):
        act.cancel_run("cancelled by script")
    if make_calls(chosen, act):
        return chosen["refusedOutput"]
    if "error" in chosen:
        e = chosen["error"]
        raise agentmesh.ActivationError(
            e["type"], e["message"], retryable=e.get("retryable", True), usage=chosen.get("usage")
        )
    output = chosen["output"] if "output" in chosen else default_output(act)
    if "usage" in chosen:
        return agentmesh.Output(output, usage=chosen["usage"])
    return output


def scripted(script: Dict[str, Any]) -> Callable[[agentmesh.Activation], Any]:
    def perform(act: agentmesh.Activation) -> Any:
        chosen = choose(script, act)
        if chosen is None:
            return default_output(act)
        if chosen.get("delayMs", 0) > 0:
            time.sleep(chosen["delayMs"] / 1000.0)
        return finish(chosen, act)

    return perform


def new_mesh(
    log_dir: str,
    wf: agentmesh.Workflow,
    script: Dict[str, Any],
    telemetry: Optional[agentmesh.Telemetry] = None,
) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(
        log_dir=log_dir,
        fsync="never",
        prices=script.get("prices"),
        policy=script.get("policy"),
        telemetry=telemetry,
    )
    fn = scripted(script)
    for name in wf.agent_names():
        mesh.add_agent(name, fn)
    for name in wf.tool_names():
        mesh.add_tool(name, fn)
    return mesh


def drive(call: Callable[[], agentmesh.RunResult]) -> agentmesh.RunResult:
    try:
        return call()
    except agentmesh.AgentFailedError as e:
        # Scripted errors are ActivationErrors; the failed run comes back on the exception.
        assert isinstance(e.__cause__, agentmesh.ActivationError), repr(e.__cause__)
        assert e.result is not None and e.result.status == "failed"
        return e.result


def first_difference(expected: bytes, actual: bytes) -> str:
    exp, act = expected.split(b"\n"), actual.split(b"\n")
    for i in range(max(len(exp), len(act))):
        e = exp[i] if i < len(exp) else None
        a = act[i] if i < len(act) else None
        if e != a:
            col = 0
            if e is not None and a is not None:
                while col < min(len(e), len(a)) and e[col] == a[col]:
                    col += 1
            lo = max(0, col - 120)

            def cut(line: Optional[bytes]) -> str:
                return "<end of log>" if line is None else line[lo : col + 120].decode("utf-8", "replace")

            return f"line {i + 1}, byte column {col}:\n expected: {cut(e)}\n   actual: {cut(a)}"
    return "logs differ"


def run_vector(name: str, perturb: bool) -> None:
    vdir = VECTORS / name
    expected_path = vdir / "expected.jsonl"
    assert expected_path.is_file(), f"{name}: no expected.jsonl"
    wf = agentmesh.Workflow.from_file(vdir / "workflow.json")
    script = load_script(vdir / "script.json")
    if perturb:
        script = perturbed(script)
    with tempfile.TemporaryDirectory() as log_dir:
        mesh = new_mesh(log_dir, wf, script)
        result = drive(
            lambda: mesh.run(
                wf,
                input=script.get("input"),
                seed=script.get("seed", 0),
                run_id=script.get("runId"),
                budget=script.get("budget"),
            )
        )
        approvals_all = script.get("approvals", {})
        retries = 0
        while True:
            path = result.log_path
            assert path is not None
            if result.status == "waiting":
                approvals = {a.node: approvals_all[a.node] for a in result.waiting if a.node in approvals_all}
                if not approvals:
                    break
                # A new mesh, as another process would resume the run.
                mesh = new_mesh(log_dir, wf, script)
                result = drive(lambda: mesh.resume(path, approvals))
            elif result.status in ("failed", "cancelled") and retries < script.get("retries", 0):
                mesh = new_mesh(log_dir, wf, script)
                result = drive(lambda: mesh.retry(path))
                retries += 1
            else:
                break
        assert retries == script.get("retries", 0), f"{name}: {retries} retries made"
        check_result(f"{name}{' (perturbed)' if perturb else ''}", expected_path, result)


def check_result(label: str, expected_path: Path, result: agentmesh.RunResult) -> None:
    """The run's canonical log equals the vector's byte for byte, verifies, and replays to
    the same outcome."""
    assert result.log_path is not None
    actual = agentmesh.canonical_log(result.log_path)
    expected = expected_path.read_bytes()
    if actual != expected:
        pytest.fail(f"{label}: {first_difference(expected, actual)}")

    report = agentmesh.verify_log(result.log_path)
    assert report["repaired"] is None
    assert report["events"] == actual.count(b"\n") - 1
    finished = result.status in ("completed", "failed", "cancelled")
    assert (report["finished"] is not None) == finished

    replayed = agentmesh.replay(result.log_path)["outcome"]
    assert replayed["status"] == result.status
    assert replayed.get("output") == result.output
    assert replayed.get("error") == result.error


@pytest.mark.parametrize("name", NAMES)
def test_vector(name: str) -> None:
    run_vector(name, perturb=False)


@pytest.mark.parametrize("name", NAMES)
def test_vector_perturbed(name: str) -> None:
    run_vector(name, perturb=True)


def test_every_vector_is_found() -> None:
    # An empty or misplaced vectors directory must not pass silently.
    assert len(NAMES) >= 17
    assert "unicode_and_numbers" in NAMES
    assert "calls_in_activations" in NAMES
    assert {"budget_parallel_leases", "budget_clamp_warn_exhaust"} <= set(NAMES)
    assert "policy_block_redact_warn" in NAMES
    assert {"map_zero_one_fifty", "map_failures_and_retries", "reads_any_output"} <= set(NAMES)
    assert "structured_output_repair_reask" in NAMES
