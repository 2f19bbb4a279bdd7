"""The conformance vectors driven by the asyncio driver (``Mesh.run_async`` / ``resume_async``).

Same procedure as test_vectors.py, with ``async def`` agents built from script.json (delays are
``await asyncio.sleep``, errors are raised ``ActivationError``s, cancellation from inside the
agent), and once more with the plain-function agents of test_vectors.py run by the asyncio
driver on its worker threads. Every canonical log must equal expected.jsonl byte for byte.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any, Awaitable, Callable, Dict

import pytest
from test_vectors import (
    NAMES,
    VECTORS,
    check_result,
    choose,
    default_output,
    finish,
    load_script,
    perturbed,
    scripted,
)

import agentmesh

AgentFn = Callable[[agentmesh.Activation], Any]


def scripted_async(script: Dict[str, Any]) -> AgentFn:
    async def perform(act: agentmesh.Activation) -> Any:
        chosen = choose(script, act)
        if chosen is None:
            return default_output(act)
        if chosen.get("delayMs", 0) > 0:
            await asyncio.sleep(chosen["delayMs"] / 1000.0)
        return finish(chosen, act)

    return perform


def new_mesh(log_dir: str, wf: agentmesh.Workflow, script: Dict[str, Any], agents: str) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(
        log_dir=log_dir, fsync="never", prices=script.get("prices"), policy=script.get("policy")
    )
    fn = scripted_async(script) if agents == "async" else scripted(script)
    for name in wf.agent_names():
        mesh.add_agent(name, fn)
    for name in wf.tool_names():
        mesh.add_tool(name, fn)
    return mesh


async def drive(call: Callable[[], Awaitable[agentmesh.RunResult]]) -> agentmesh.RunResult:
    try:
        return await call()
    except agentmesh.AgentFailedError as e:
        assert isinstance(e.__cause__, agentmesh.ActivationError), repr(e.__cause__)
        assert e.result is not None and e.result.status == "failed"
        result: agentmesh.RunResult = e.result
        return result


async def run_vector_async(name: str, perturb: bool, agents: str) -> None:
    vdir = VECTORS / name
    expected_path = vdir / "expected.jsonl"
    assert expected_path.is_file(), f"{name}: no expected.jsonl"
    wf = agentmesh.Workflow.from_file(vdir / "workflow.json")
    script = load_script(vdir / "script.json")
    if perturb:
        script = perturbed(script)
    with tempfile.TemporaryDirectory() as log_dir:
        mesh = new_mesh(log_dir, wf, script, agents)
        result = await drive(
            lambda: mesh.run_async(
                wf,
                input=script.get("input"),
                seed=script.get("seed", 0),
                run_id=script.get("runId"),
                budget=script.get("budget"),
            )
        )
        approvals_all = script.get("approvals", {})
        resumed = retries = 0
        while True:
            path = result.log_path
            assert path is not None
            if result.status == "waiting":
                approvals = {a.node: approvals_all[a.node] for a in result.waiting if a.node in approvals_all}
                if not approvals:
                    break
                # A new mesh, as another process would resume the run.
                mesh = new_mesh(log_dir, wf, script, agents)
                result = await drive(lambda: mesh.resume_async(path, approvals, run_id=script.get("runId")))
                resumed += 1
            elif result.status in ("failed", "cancelled") and retries < script.get("retries", 0):
                mesh = new_mesh(log_dir, wf, script, agents)
                result = await drive(lambda: mesh.retry_async(path, run_id=script.get("runId")))
                retries += 1
            else:
                break
        assert (resumed > 0) == bool(approvals_all)
        assert retries == script.get("retries", 0)
        check_result(f"{name} ({agents} agents{', perturbed' if perturb else ''})", expected_path, result)


@pytest.mark.parametrize("name", NAMES)
def test_vector_async(name: str) -> None:
    asyncio.run(run_vector_async(name, perturb=False, agents="async"))


@pytest.mark.parametrize("name", NAMES)
def test_vector_async_perturbed(name: str) -> None:
    asyncio.run(run_vector_async(name, perturb=True, agents="async"))


@pytest.mark.parametrize("name", NAMES)
def test_vector_async_driver_plain_agents(name: str) -> None:
    asyncio.run(run_vector_async(name, perturb=False, agents="plain"))


def test_every_vector_is_found() -> None:
    assert len(NAMES) >= 17
    assert {"human_wait_resume", "timeout", "cancellation"} <= set(NAMES)
