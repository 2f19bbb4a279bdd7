"""Re-execute replay through the public API (Mesh.reexecute): the agents run again against a
recorded run, every call is answered from the log (the host provider and tool count what
reaches them: nothing does), and the first difference is NondeterminismError — a changed
prompt, model or tool argument at its call, one call more, a changed output. Forks' logs and
retried runs are refused as in Rust."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import agentmesh

ANY = agentmesh.Activation

WF = agentmesh.Workflow.from_dict(
    {
        "name": "reexec",
        "nodes": [
            {"id": "research", "type": "agent", "agent": "researcher"},
            {"id": "draft", "type": "agent", "agent": "writer", "after": ["research"]},
            {"id": "approve", "type": "human", "prompt": "publish?", "after": ["draft"]},
            {"id": "publish", "type": "agent", "agent": "publisher", "after": ["approve"]},
        ],
    }
)


class Counter:
    """What really reached the provider and the tool."""

    def __init__(self) -> None:
        self.llm: List[str] = []
        self.tool: List[Any] = []


def make_mesh(
    log_dir: Optional[Path],
    seen: Counter,
    *,
    prompt: str = "Summarise {hits}",
    model: str = "m1",
    query: str = "durable agents",
    extra_call: bool = False,
    output_suffix: str = "",
    catch: bool = False,
) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)

    def provider(request: Dict[str, Any], ticket: agentmesh.CallTicket) -> Any:
        seen.llm.append(request["messages"][0]["content"])
        return {"text": f"summary {ticket.call}", "finishReason": "stop"}, {"inputTokens": 7, "outputTokens": 3}

    def search(arguments: Any) -> Any:
        seen.tool.append(arguments)
        return [f"{arguments['q']} (1)"]

    mesh.provider("llm", provider)
    mesh.call_tool("search", search, schema={"type": "object", "required": ["q"]})

    @mesh.agent("researcher")
    def researcher(act: ANY) -> Any:
        return {"hits": act.tool("search", {"q": query})}

    @mesh.agent("writer")
    def writer(act: ANY) -> Any:
        hits = act.deps["research"]["hits"]
        try:
            reply = act.llm("llm", model=model, messages=[{"role": "user", "content": prompt.format(hits=hits)}])
        except agentmesh.NondeterminismError:
            if not catch:
                raise
            return {"draft": "caught"}  # the run still diverged
        if extra_call:
            act.llm("llm", model=model, messages=[{"role": "user", "content": "one more"}])
        return {"draft": reply.text + output_suffix}

    @mesh.agent("publisher")
    def publisher(act: ANY) -> Any:
        return {"published": act.deps["approve"]}

    return mesh


def recorded(tmp_path: Path) -> Path:
    """A completed run's log: two calls, a human decision."""
    seen = Counter()
    r = make_mesh(tmp_path, seen).run(WF, run_id="rec")
    assert r.status == "waiting"
    done = make_mesh(tmp_path, seen).resume(r.log_path, {"approve": {"ok": True}})
    assert done.status == "completed" and done.log_path is not None
    assert len(seen.llm) == 1 and len(seen.tool) == 1
    return Path(done.log_path)


def test_the_same_agents_reexecute_with_every_call_answered_from_the_log(tmp_path: Path) -> None:
    log = recorded(tmp_path)
    before = log.read_bytes()
    seen = Counter()
    report = make_mesh(None, seen).reexecute(log)
    events = list(agentmesh.read_log(log))
    assert isinstance(report, agentmesh.ReexecReport)
    assert report == agentmesh.ReexecReport(
        run_id="rec",
        activations=3,  # the three agents ran again; the decision came from the log
        calls=sum(e["type"] == "callStarted" for e in events),
        events=len(events),
    )
    assert report.calls == 2
    assert seen.llm == [] and seen.tool == []  # nothing was sent, no tool ran
    assert log.read_bytes() == before  # nothing was written
    assert list(tmp_path.iterdir()) == [log]


def test_a_changed_prompt_is_nondeterminism_naming_seq_sub_and_field(tmp_path: Path) -> None:
    log = recorded(tmp_path)
    seen = Counter()
    with pytest.raises(agentmesh.NondeterminismError) as info:
        make_mesh(None, seen, prompt="Summarise briefly {hits}").reexecute(log)
    e = info.value
    call = next(
        ev for ev in agentmesh.read_log(log) if ev["type"] == "callStarted" and ev["node"] == "draft"
    )
    assert (e.seq, e.node, e.field) == (call["seq"], "draft", "data.request.messages[0].content")
    assert f"seq {call['seq']} sub {call['sub']}" in e.message
    assert e.expected == '"Summarise [\'durable agents (1)\']"'
    assert e.actual == '"Summarise briefly [\'durable agents (1)\']"'
    assert seen.llm == []


@pytest.mark.parametrize(
    "change, node, field",
    [
        ({"model": "m2"}, "draft", "data.request.model"),
        ({"query": "other"}, "research", "data.request.q"),
    ],
)
def test_a_changed_model_or_tool_argument_is_nondeterminism(
    tmp_path: Path, change: Dict[str, Any], node: str, field: str
) -> None:
    log = recorded(tmp_path)
    seen = Counter()
    with pytest.raises(agentmesh.NondeterminismError) as info:
        make_mesh(None, seen, **change).reexecute(log)
    assert (info.value.node, info.value.field) == (node, field)
    assert seen.llm == [] and seen.tool == []


def test_one_call_more_or_a_changed_output_is_nondeterminism(tmp_path: Path) -> None:
    log = recorded(tmp_path)
    seen = Counter()
    with pytest.raises(agentmesh.NondeterminismError) as more:
        make_mesh(None, seen, extra_call=True).reexecute(log)
    assert more.value.node == "draft" and "sub 3" in more.value.message, more.value.message
    with pytest.raises(agentmesh.NondeterminismError) as out:
        make_mesh(None, seen, output_suffix="!").reexecute(log)
    assert (out.value.node, out.value.field) == ("draft", "data.output.draft")
    assert (out.value.expected, out.value.actual) == ('"summary 1"', '"summary 1!"')
    assert seen.llm == [] and seen.tool == []


def test_a_divergence_the_agent_caught_is_still_the_answer(tmp_path: Path) -> None:
    log = recorded(tmp_path)
    with pytest.raises(agentmesh.NondeterminismError) as info:
        make_mesh(None, Counter(), prompt="changed {hits}", catch=True).reexecute(log)
    assert info.value.field == "data.request.messages[0].content"


def test_async_agents_reexecute_with_reexecute_async(tmp_path: Path) -> None:
    calls: List[str] = []
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    async def provider(request: Dict[str, Any], ticket: agentmesh.CallTicket) -> Any:
        calls.append(request["messages"][0]["content"])
        return {"text": "t", "finishReason": "stop"}

    mesh.provider("llm", provider)

    @mesh.agent("a")
    async def a(act: ANY) -> Any:
        replies = await asyncio.gather(
            *(act.llm_async("llm", messages=[{"role": "user", "content": str(i)}]) for i in range(3))
        )
        return [r.text for r in replies]

    wf = agentmesh.Workflow.from_dict({"name": "a", "nodes": [{"id": "x", "type": "agent", "agent": "a"}]})
    r = asyncio.run(mesh.run_async(wf, run_id="as"))
    assert r.output == {"x": ["t", "t", "t"]} and len(calls) == 3
    report = asyncio.run(mesh.reexecute_async(tmp_path / "as.jsonl"))
    assert (report.activations, report.calls) == (1, 3) and len(calls) == 3


def test_a_run_an_agent_failed_reexecutes_like_any_other(tmp_path: Path) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("a")
    def a(act: ANY) -> Any:
        raise ValueError("boom")

    wf = agentmesh.Workflow.from_dict({"name": "f", "nodes": [{"id": "x", "type": "agent", "agent": "a"}]})
    with pytest.raises(agentmesh.AgentFailedError):
        mesh.run(wf, run_id="failed")
    report = mesh.reexecute(tmp_path / "failed.jsonl")
    assert report.run_id == "failed" and report.activations == 1 and report.calls == 0


def test_forks_retried_runs_and_unregistered_agents_are_refused(tmp_path: Path) -> None:
    broken = {"on": True}
    mesh = agentmesh.Mesh(log_dir=tmp_path)

    @mesh.agent("a")
    def a(act: ANY) -> Any:
        if broken["on"] and act.node == "two":
            raise agentmesh.ActivationError("Outage", "down", retryable=False)
        return act.node

    wf = agentmesh.Workflow.from_dict(
        {
            "name": "chain",
            "nodes": [
                {"id": "one", "type": "agent", "agent": "a"},
                {"id": "two", "type": "agent", "agent": "a", "after": ["one"]},
            ],
        }
    )
    with pytest.raises(agentmesh.AgentFailedError):
        mesh.run(wf, run_id="base")
    log = tmp_path / "base.jsonl"
    at = max(s["seq"] for s in agentmesh.history(log) if s["forkPoint"] and not s["failed"])
    broken["on"] = False
    fork = mesh.fork(log, at, run_id="forked")
    with pytest.raises(agentmesh.InvalidArgumentError, match="re-execute replay of a fork's log is not supported yet"):
        mesh.reexecute(fork.log_path)  # type: ignore[arg-type]
    assert mesh.retry(log).status == "completed"
    with pytest.raises(agentmesh.InvalidArgumentError, match="retried run"):
        mesh.reexecute(log)
    with pytest.raises(agentmesh.UnknownAgentError):
        agentmesh.Mesh().reexecute(fork.log_path)  # type: ignore[arg-type]
    with pytest.raises(agentmesh.AgentMeshIOError):
        mesh.reexecute(tmp_path / "missing.jsonl")
