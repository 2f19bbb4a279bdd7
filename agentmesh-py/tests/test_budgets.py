"""Budgets through the public API (docs/budgets.md): the mesh's ``prices``, a run's
``budget``, ``on_budget_warning``, asks on host-made calls and the budget-clamped
``max_tokens``, ``BudgetExceededError``, ``RunResult.cost``, resume after a SIGKILL with a
call reserved but unanswered, and a real llama-server call refused before it is sent or
charged exactly what the server reports."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

import agentmesh
from test_calls_llm import REQUEST, Proxy, llama  # noqa: F401 - llama is a fixture

Event = Dict[str, Any]

# 1 µUSD per prompt token, 2 per completion token: every cost below is plain arithmetic.
PRICES = {
    "version": 1,
    "source": "test",
    "models": [
        {"provider": "local", "model": "m", "match": {"equals": "m"},
         "prices": {"input": 1_000_000, "output": 2_000_000}},
    ],
}
OTHER_PRICES = {
    "version": 1,
    "models": [
        {"provider": "local", "model": "m", "match": {"equals": "m"},
         "prices": {"input": 3_000_000, "output": 3_000_000}},
    ],
}
ONE_NODE = {"name": "one", "nodes": [{"id": "w", "type": "agent", "agent": "writer"}]}
VECTORS = Path(__file__).resolve().parents[2] / "bindings-tests" / "vectors"


def ask(input_tokens: int, max_tokens: int, min_tokens: Optional[int] = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {"provider": "local", "model": "m", "inputTokens": input_tokens, "maxTokens": max_tokens}
    if min_tokens is not None:
        out["minTokens"] = min_tokens
    return out


def request(text: str, max_tokens: int) -> Dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], "maxTokens": max_tokens}


def usage(inp: int, out: int) -> Dict[str, Any]:
    return {"inputTokens": inp, "outputTokens": out, "model": "m"}


class Llm:
    """The LLM a host calls itself (``act.call_start`` → call → ``act.call_complete``):
    what it was sent, and the usage it answers with, in order."""

    def __init__(self, usages: List[Tuple[int, int]]) -> None:
        self.usages = list(usages)
        self.sent: List[Tuple[Dict[str, Any], Optional[int]]] = []

    def call(self, act: agentmesh.Activation, req: Dict[str, Any], a: Dict[str, Any]) -> agentmesh.CallTicket:
        ticket = act.call_start("llm", "local", req, ask=a)
        if ticket.live:
            self.sent.append((req, ticket.max_tokens))
            inp, out = self.usages.pop(0)
            act.call_complete(ticket, response={"text": f"answer {len(self.sent)}"}, usage=usage(inp, out))
        return ticket


def events_of(result: agentmesh.RunResult) -> List[Event]:
    if result.log_path is not None:
        return list(agentmesh.read_log(result.log_path))
    return [json.loads(line) for line in result.canonical().splitlines()[1:]]


# a run's budget ---------------------------------------------------------------------------


def test_a_low_budget_stops_the_run_before_the_call_that_would_pass_it() -> None:
    llm = Llm([(10, 5), (10, 5), (10, 5)])
    refused: List[agentmesh.BudgetExceededError] = []

    def writer(act: agentmesh.Activation) -> str:
        for i in range(3):
            try:
                llm.call(act, request(f"part {i}", 10), ask(10, 10))  # worst case 10 + 2*10 µUSD
            except agentmesh.BudgetExceededError as e:
                refused.append(e)
                raise
        return "all parts"

    mesh = agentmesh.Mesh(prices=PRICES)
    mesh.add_agent("writer", writer)
    r = mesh.run(agentmesh.Workflow.from_dict(ONE_NODE), budget={"microUsd": 60})

    # Two calls settled at 20 µUSD each; the third needs 30 of the 20 left: never sent.
    assert len(llm.sent) == 2
    refusal = {"scope": "run", "node": "w", "dimension": "microUsd", "limit": 60, "spent": 40,
               "requested": 30, "left": 20}
    message = "budget exceeded: the run has 20 microUsd of its limit 60 (spent 40); the call needs 30"
    assert r.status == "failed"
    assert r.error == {"code": "BUDGET_EXCEEDED", "message": f"node 'w': {message}", "node": "w", "budget": refusal}
    [e] = refused
    assert e.code == "BUDGET_EXCEEDED" and e.message == message and e.details == refusal
    assert (e.scope, e.dimension, e.limit, e.spent, e.requested, e.left, e.node, e.agent) == (
        "run", "microUsd", 60, 40, 30, 20, "w", None)

    events = events_of(r)
    denied = [ev for ev in events if ev["type"] == "callDenied"]
    assert [d["data"] for d in denied] == [
        {"call": 3, "kind": "llm", "name": "local", "request": request("part 2", 10), "budget": refusal}]
    failed = [ev["data"]["error"] for ev in events if ev["type"] == "agentFailed"]
    assert failed == [{"kind": "error", "type": "BudgetExceededError", "message": message, "retryable": False}]
    assert events[-1]["type"] == "runFailed" and events[-1]["data"]["error"] == r.error
    assert [ev["data"]["charge"]["microUsd"] for ev in events if ev["type"] == "callCompleted"] == [20, 20]
    assert r.cost == {"microUsd": 40, "calls": 2, "denied": 1, "byNode": {"w": 40},
                      "byAgent": {"writer": 40}, "byModel": {"m": 40}}


def test_a_run_within_budget_reports_exact_usage_and_cost(tmp_path: Path) -> None:
    llm = Llm([(100, 50), (30, 20), (10, 5)])

    def planner(act: agentmesh.Activation) -> str:
        t = llm.call(act, request("plan", 50), ask(100, 50))
        assert t.live and t.max_tokens is None  # 200 µUSD worst case fits: not clamped
        return "plan"

    def writer(act: agentmesh.Activation) -> str:
        llm.call(act, request("draft", 20), ask(30, 20))
        search = act.call_start("tool", "search", {"q": "budgets"})
        act.call_complete(search, response={"hits": 1})
        llm.call(act, request("polish", 5), ask(10, 5))
        return "text"

    wf = agentmesh.Workflow.from_dict({"name": "within", "nodes": [
        {"id": "plan", "type": "agent", "agent": "planner"},
        {"id": "write", "type": "agent", "agent": "writer", "after": ["plan"]}]})
    mesh = agentmesh.Mesh(log_dir=tmp_path, prices=PRICES)
    mesh.add_agent("planner", planner)
    mesh.add_agent("writer", writer)
    r = mesh.run(wf, run_id="within", budget={"microUsd": 1000, "calls": 10})

    assert r.status == "completed" and len(llm.sent) == 3
    events = events_of(r)
    assert events[0]["data"]["budget"]["limits"] == {"microUsd": 1000, "calls": 10}
    charges = [ev["data"]["charge"] for ev in events if ev["type"] == "callCompleted"]
    assert charges == [
        {"inputTokens": 100, "outputTokens": 50, "microUsd": 200, "calls": 1},
        {"inputTokens": 30, "outputTokens": 20, "microUsd": 70, "calls": 1},
        {"calls": 1},  # the tool call: no tokens, no price
        {"inputTokens": 10, "outputTokens": 5, "microUsd": 20, "calls": 1},
    ]
    assert r.cost == {"microUsd": 290, "calls": 4, "denied": 0, "byNode": {"plan": 200, "write": 90},
                      "byAgent": {"planner": 200, "writer": 90}, "byModel": {"m": 290}}
    total = r.usage["total"]
    assert (total["inputTokens"], total["outputTokens"], total["calls"], total["microUsd"]) == (140, 75, 4, 290)
    assert "denied" not in total  # none refused
    assert agentmesh.usage_report(tmp_path / "within.jsonl") == r.usage


def test_a_run_without_prices_or_budget_has_no_cost_in_micro_usd() -> None:
    mesh = agentmesh.Mesh()
    mesh.add_agent("writer", lambda act: Llm([(3, 4)]).call(act, request("x", 4), ask(3, 4)) and "ok")
    r = mesh.run(agentmesh.Workflow.from_dict(ONE_NODE))
    assert r.cost == {"microUsd": None, "calls": 1, "denied": 0, "byNode": {}, "byAgent": {}, "byModel": {}}
    assert "budget" not in events_of(r)[0]["data"]
    # An empty budget accounts for spend and limits nothing.
    mesh = agentmesh.Mesh(prices=PRICES)
    mesh.add_agent("writer", lambda act: Llm([(3, 4)]).call(act, request("x", 4), ask(3, 4)) and "ok")
    r = mesh.run(agentmesh.Workflow.from_dict(ONE_NODE), budget={})
    assert events_of(r)[0]["data"]["budget"]["limits"] == {}
    assert r.cost["microUsd"] == 11 and r.status == "completed"


def test_a_clamped_call_gets_the_max_tokens_the_budget_allows() -> None:
    llm = Llm([(50, 75)])

    def writer(act: agentmesh.Activation) -> Optional[int]:
        return llm.call(act, request("draft", 200), ask(50, 200, min_tokens=20)).max_tokens

    mesh = agentmesh.Mesh(prices=PRICES)
    mesh.add_agent("writer", writer)
    r = mesh.run(agentmesh.Workflow.from_dict(ONE_NODE), budget={"microUsd": 200})
    # 50 prompt tokens cost 50 µUSD; 75 completion tokens are the 150 left.
    assert r.output == {"w": 75} and llm.sent[0][1] == 75
    started = [ev["data"] for ev in events_of(r) if ev["type"] == "callStarted"]
    assert started[0]["maxTokens"] == 75 and started[0]["reserve"]["microUsd"] == 200


def test_a_batch_records_the_refused_call_then_raises() -> None:
    seen: List[Any] = []

    def writer(act: agentmesh.Activation) -> str:
        try:
            act.call_start_many([("tool", "search", {"q": 1}), {"kind": "tool", "name": "search", "request": {"q": 2}}])
        except agentmesh.BudgetExceededError as e:
            seen.append((e.dimension, e.left, e.requested))
        return "caught"

    mesh = agentmesh.Mesh()
    mesh.add_agent("writer", writer)
    r = mesh.run(agentmesh.Workflow.from_dict(ONE_NODE), budget={"calls": 1})
    assert seen == [("calls", 0, 1)] and r.status == "completed"
    assert [ev["type"] for ev in events_of(r) if ev["type"].startswith("call")] == ["callStarted", "callDenied"]
    assert r.cost["calls"] == 1 and r.cost["denied"] == 1


# a hundred parallel agents and one call ---------------------------------------------------


def test_a_hundred_parallel_agents_and_one_call_have_the_same_winner_every_run(tmp_path: Path) -> None:
    # The vector's workflow, input and run id with agents written against the public API: the
    # log must be the one the Rust runner blessed, whatever order the agents finish in.
    vdir = VECTORS / "budget_parallel_leases"
    wf = agentmesh.Workflow.from_file(vdir / "workflow.json")
    script = json.loads((vdir / "script.json").read_text(encoding="utf-8"))
    expected = (vdir / "expected.jsonl").read_bytes()
    behaviours = script["agents"]

    def run_once(rng: random.Random, tmp: Path) -> Tuple[bytes, Dict[str, Any]]:
        delays = {f"a{i:03}": rng.random() / 100 for i in range(100)}
        caught: Dict[str, Any] = {}

        def asker(act: agentmesh.Activation) -> Dict[str, bool]:
            time.sleep(delays[act.node])
            call = behaviours.get(act.node, behaviours["asker"])[0]["calls"][0]
            try:
                t = act.call_start("tool", "search", call["request"])
            except agentmesh.BudgetExceededError as e:
                caught[act.node] = dict(e.details)
                return {"searched": False}
            act.call_complete(t, response=call["response"])
            return {"searched": True}

        mesh = agentmesh.Mesh(log_dir=tmp, fsync="never", max_workers=16)
        mesh.add_agent("asker", asker)
        mesh.add_agent("reporter", lambda act: {"done": True})
        r = mesh.run(wf, input=script["input"], seed=script["seed"], run_id=script["runId"])
        assert r.status == "completed" and r.log_path is not None
        return agentmesh.canonical_log(r.log_path), caught

    logs = set()
    for i in range(4):
        log, caught = run_once(random.Random(i), tmp_path / f"run{i}")
        assert "a000" not in caught and len(caught) == 99
        assert all(
            d == {"scope": "run", "node": node, "dimension": "calls", "limit": 1, "spent": 0, "requested": 1, "left": 0}
            for node, d in caught.items()
        )
        logs.add(log)
    assert logs == {expected}


# warnings ---------------------------------------------------------------------------------

WARNED = {"name": "warned", "budget": {"microUsd": 100}, "budgetWarnings": [25, 50, 75], "nodes": [
    {"id": "plan", "type": "agent", "agent": "planner"},
    {"id": "write", "type": "agent", "agent": "writer", "after": ["plan"]}]}


def warned_mesh(log_dir: Optional[Path] = None) -> agentmesh.Mesh:
    # plan spends 20 + 2*20 = 60 µUSD, write 10 + 2*5 = 20.
    mesh = agentmesh.Mesh(log_dir=log_dir, prices=PRICES)
    mesh.add_agent("planner", lambda act: Llm([(20, 20)]).call(act, request("plan", 20), ask(20, 20)) and "plan")
    mesh.add_agent("writer", lambda act: Llm([(10, 5)]).call(act, request("write", 5), ask(10, 5)) and "text")
    return mesh


def thresholds(events: List[Event]) -> List[Tuple[int, int]]:
    return [(e["data"]["threshold"], e["data"]["spent"]) for e in events]


def test_on_budget_warning_gets_each_warning_in_commit_order() -> None:
    warnings: List[Event] = []
    r = warned_mesh().run(agentmesh.Workflow.from_dict(WARNED), on_budget_warning=warnings.append)
    assert r.status == "completed"
    # Decided at step ends: 60 of 100 passes 25 % and 50 %, then 80 passes 75 %.
    assert thresholds(warnings) == [(25, 60), (50, 60), (75, 80)]
    assert all(w["type"] == "budgetWarning" and w["data"]["scope"] == "run" and w["data"]["dimension"] == "microUsd"
               and w["data"]["limit"] == 100 and "at" in w["meta"] for w in warnings)
    logged = [e for e in events_of(r) if e["type"] == "budgetWarning"]
    assert [w["seq"] for w in warnings] == [e["seq"] for e in logged]

    # With on_event: every event to on_event, each warning to on_budget_warning right after.
    seen: List[Tuple[str, int]] = []
    warned_mesh().run(
        agentmesh.Workflow.from_dict(WARNED),
        on_event=lambda e: seen.append(("event", e["seq"])),
        on_budget_warning=lambda e: seen.append(("warning", e["seq"])),
    )
    warned_at = [seq for kind, seq in seen if kind == "warning"]
    assert warned_at == [e["seq"] for e in logged]
    for seq in warned_at:
        i = seen.index(("warning", seq))
        assert seen[i - 1] == ("event", seq)


def test_on_budget_warning_async_and_awaited() -> None:
    warnings: List[Event] = []

    async def on_warning(e: Event) -> None:
        await asyncio.sleep(0)
        warnings.append(e)

    r = asyncio.run(warned_mesh().run_async(agentmesh.Workflow.from_dict(WARNED), on_budget_warning=on_warning))
    assert r.status == "completed" and thresholds(warnings) == [(25, 60), (50, 60), (75, 80)]

    # The synchronous driver cannot await it: refused as for on_event.
    with pytest.raises(agentmesh.InvalidArgumentError, match="on_budget_warning returned coroutine"):
        warned_mesh().run(agentmesh.Workflow.from_dict(WARNED), on_budget_warning=on_warning)
    with pytest.raises(agentmesh.InvalidArgumentError, match="on_budget_warning must be callable"):
        warned_mesh().run(agentmesh.Workflow.from_dict(WARNED), on_budget_warning=5)  # type: ignore[arg-type]


def test_a_raising_on_budget_warning_stops_driving_and_the_run_resumes(tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop(e: Event) -> None:
        raise Stop(e["data"]["threshold"])

    with pytest.raises(Stop, match="25"):
        warned_mesh(tmp_path).run(agentmesh.Workflow.from_dict(WARNED), run_id="warned", on_budget_warning=stop)
    path = tmp_path / "warned.jsonl"
    assert agentmesh.verify_log(path)["finished"] is None  # nothing written for the stop: resumable
    warnings: List[Event] = []
    r = warned_mesh(tmp_path).resume(path, on_budget_warning=warnings.append)
    assert r.status == "completed"
    assert thresholds(warnings) == [(75, 80)]  # what resume appends
    assert thresholds([e for e in events_of(r) if e["type"] == "budgetWarning"]) == [(25, 60), (50, 60), (75, 80)]


# bad budgets, prices and asks -------------------------------------------------------------

BAD_BUDGETS = [
    ({"calls": float("nan")}, "budget.calls", "not NaN"),
    ({"calls": float("inf")}, "budget.calls", "not inf"),
    ({"microUsd": float("-inf")}, "budget.microUsd", "not negative, not -inf"),
    ({"calls": -1}, "budget.calls", "not negative, not -1"),
    ({"calls": 1.5}, "budget.calls", "a whole number, not 1.5"),
    ({"calls": True}, "budget.calls", "not true"),
    ({"calls": "lots"}, "budget.calls", 'not the string "lots"'),
    ({"calls": None}, "budget.calls", "not null"),
    ({"outputTokens": 2**64}, "budget.outputTokens", "at most 18446744073709551615, not 18446744073709551616"),
    ({"inputTokens": -(2**70)}, "budget.inputTokens", "not negative"),
    ({"totalTokens": 1e300}, "budget.totalTokens", "at most 18446744073709551615"),
    ({"calls": {1}}, "budget.calls", "not set"),
    ({"tokens": 1}, "budget.tokens", "unknown budget dimension"),
    ({1: 5}, "budget", "dimension names"),
    ("lots", "budget", "a budget is an object of limits"),
    ([("calls", 1)], "budget", "a budget is an object of limits"),
]


@pytest.mark.parametrize("budget,field,why", BAD_BUDGETS, ids=[repr(b[0]) for b in BAD_BUDGETS])
def test_a_bad_budget_names_its_field_and_writes_nothing(tmp_path: Path, budget: Any, field: str, why: str) -> None:
    mesh = agentmesh.Mesh(log_dir=tmp_path, prices=PRICES)
    mesh.add_agent("writer", lambda act: "never")
    wf = agentmesh.Workflow.from_dict(ONE_NODE)
    with pytest.raises(agentmesh.InvalidArgumentError) as e:
        mesh.run(wf, budget=budget)
    assert e.value.message.startswith(f"run option '{field}': ") and why in e.value.message, e.value.message
    # Every run form checks it the same way.
    with pytest.raises(agentmesh.InvalidArgumentError, match=f"'{field}'"):
        asyncio.run(mesh.run_async(wf, budget=budget))
    with pytest.raises(agentmesh.InvalidArgumentError, match=f"'{field}'"):
        mesh.stream(wf, budget=budget)
    with pytest.raises(agentmesh.InvalidArgumentError, match=f"'{field}'"):
        mesh.stream_async(wf, budget=budget)
    assert list(tmp_path.iterdir()) == []


def test_every_run_form_records_the_budget_option() -> None:
    wf = agentmesh.Workflow.from_dict({**ONE_NODE, "budget": {"calls": 1}})
    mesh = agentmesh.Mesh()
    mesh.add_agent("writer", lambda act: "ok")
    limits = {"calls": 2**64 - 1, "microUsd": 5_000_000}
    budget = {"calls": 2**64 - 1, "microUsd": 5_000_000.0, "inputTokens": "unlimited"}

    async def streamed_async() -> agentmesh.RunResult:
        s = mesh.stream_async(wf, budget=budget)
        async for _ in s:
            pass
        return s.result

    s = mesh.stream(wf, budget=budget)
    for _ in s:
        pass
    results = [mesh.run(wf, budget=budget), asyncio.run(mesh.run_async(wf, budget=budget)), s.result,
               asyncio.run(streamed_async())]
    for r in results:
        assert events_of(r)[0]["data"]["budget"]["limits"] == limits
    # Without the option the workflow's budget binds (no limits recorded in runStarted).
    assert "limits" not in events_of(mesh.run(wf))[0]["data"]["budget"]


@pytest.mark.parametrize("table,why", [
    ({"version": 2, "models": []}, "version 2 is not 1"),
    ({"version": 1, "models": [{"provider": "p", "model": "m", "match": {"equals": "m"},
                                 "prices": {"input": -1, "output": 1}}]}, "models[0].prices.input"),
    ({"version": 1, "currency": "eur", "models": []}, "unknown field `currency`"),
    ({"version": 1, "models": [{"provider": "p", "model": "m", "match": {"regex": "("},
                                 "prices": {"input": 1, "output": 1}}]}, "models[0].match.regex"),
    ({"version": 1, "models": [{"provider": "p", "model": "m", "match": {"equals": "m"},
                                 "prices": {"input": float("nan"), "output": 1}}]}, "['prices']['input']"),
    ("table", "prices is a price table"),
])
def test_bad_prices_are_refused_when_the_mesh_is_built(table: Any, why: str) -> None:
    with pytest.raises(agentmesh.InvalidArgumentError) as e:
        agentmesh.Mesh(prices=table)
    assert why in e.value.message


@pytest.mark.parametrize("bad,field", [
    ({"model": "m", "inputTokens": 1}, "ask.provider"),
    ({"provider": 1, "model": "m", "inputTokens": 1}, "ask.provider"),
    ({"provider": "local", "inputTokens": 1}, "ask.model"),
    ({"provider": "local", "model": "m"}, "ask.inputTokens"),
    ({"provider": "local", "model": "m", "inputTokens": -1}, "ask.inputTokens"),
    ({"provider": "local", "model": "m", "inputTokens": 1.0}, "ask.inputTokens"),
    ({"provider": "local", "model": "m", "inputTokens": True}, "ask.inputTokens"),
    ({"provider": "local", "model": "m", "inputTokens": 2**64}, "ask.inputTokens"),
    ({"provider": "local", "model": "m", "inputTokens": 1, "maxTokens": "8"}, "ask.maxTokens"),
    ({"provider": "local", "model": "m", "inputTokens": 1, "minTokens": -2}, "ask.minTokens"),
    ({"provider": "local", "model": "m", "inputTokens": 1, "maxTokenz": 2}, "ask.maxTokenz"),
    ([1, 2], "ask"),
])
def test_a_bad_ask_names_its_field_and_records_nothing(bad: Any, field: str) -> None:
    errors: List[str] = []

    def writer(act: agentmesh.Activation) -> str:
        for start in (
            lambda: act.call_start("llm", "local", request("x", 1), ask=bad),
            lambda: act.call_start_many([("llm", "local", request("x", 1), bad)]),
            lambda: act.call_start_many([{"kind": "llm", "name": "local", "request": request("x", 1), "ask": bad}]),
        ):
            try:
                start()
            except agentmesh.InvalidArgumentError as e:
                errors.append(e.message)
        return "checked"

    mesh = agentmesh.Mesh(prices=PRICES)
    mesh.add_agent("writer", writer)
    r = mesh.run(agentmesh.Workflow.from_dict(ONE_NODE), budget={"calls": 5})
    assert len(errors) == 3 and all(m.startswith(f"llm call 'local': field '{field}': ") for m in errors), errors
    assert not [e for e in events_of(r) if e["type"].startswith("call")]


def test_an_unpriced_model_under_a_budget_is_refused_and_nothing_is_recorded() -> None:
    def writer(act: agentmesh.Activation) -> Dict[str, str]:
        unpriced = {"provider": "local", "model": "mystery", "inputTokens": 5, "maxTokens": 5}
        try:
            act.call_start("llm", "local", request("x", 5), ask=unpriced)
        except agentmesh.InvalidArgumentError as e:
            return {"code": e.code, "message": e.message}
        return {"code": "none", "message": ""}

    mesh = agentmesh.Mesh(prices=PRICES)
    mesh.add_agent("writer", writer)
    r = mesh.run(agentmesh.Workflow.from_dict(ONE_NODE), budget={"calls": 5})
    out = r.output["w"]
    assert out["code"] == "INVALID_ARGUMENT" and "no price for model 'mystery' of provider 'local'" in out["message"]
    assert not [e for e in events_of(r) if e["type"].startswith("call")]
    assert r.cost == {"microUsd": 0, "calls": 0, "denied": 0, "byNode": {"w": 0},
                      "byAgent": {"writer": 0}, "byModel": {}}


# resume, retry and fork keep the run's prices ---------------------------------------------

CRASHING = textwrap.dedent(
    """
    import json, os, signal, sys, agentmesh
    mesh = agentmesh.Mesh(log_dir=sys.argv[1], fsync="always", prices=json.loads(sys.argv[2]))

    @mesh.agent("writer")
    def writer(act):
        t = act.call_start("llm", "local", {"model": "m", "n": 80},
                           ask={"provider": "local", "model": "m", "inputTokens": 5, "maxTokens": 80, "minTokens": 1})
        assert t.live and t.max_tokens is None, t  # 80 of 100 output tokens fit
        os.kill(os.getpid(), signal.SIGKILL)  # dies with the call sent and unanswered

    wf = agentmesh.Workflow.from_dict({"name": "crash", "budget": {"calls": 2, "outputTokens": 100},
        "nodes": [{"id": "w", "type": "agent", "agent": "writer"}]})
    mesh.run(wf, run_id="crash")
    """
)


def test_a_run_killed_with_a_call_reserved_resumes_with_the_reservation_held(tmp_path: Path) -> None:
    crashed = subprocess.run([sys.executable, "-c", CRASHING, str(tmp_path), json.dumps(PRICES)], capture_output=True, text=True, timeout=60)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    path = tmp_path / "crash.jsonl"
    started = [e for e in agentmesh.read_log(path) if e["type"] == "callStarted"]
    assert [e["data"]["reserve"] for e in started] == [{"inputTokens": 5, "outputTokens": 80, "microUsd": 165, "calls": 1}]

    def ask_for(max_tokens: int) -> Dict[str, Any]:
        return {"provider": "local", "model": "m", "inputTokens": 5, "maxTokens": max_tokens, "minTokens": 1}

    seen: Dict[str, Any] = {}

    def writer(act: agentmesh.Activation) -> str:
        again = act.call_start("llm", "local", {"model": "m", "n": 80}, ask=ask_for(80))
        second = act.call_start("llm", "local", {"model": "m", "n": 80}, ask=ask_for(80))
        seen.update(again=(again.live, again.call, again.max_tokens), second=(second.call, second.max_tokens))
        act.call_complete(again, response="one", usage={"inputTokens": 5, "outputTokens": 30, "model": "m"})
        act.call_complete(second, response="two", usage={"inputTokens": 5, "outputTokens": 20, "model": "m"})
        try:
            act.call_start("llm", "local", {"model": "m", "n": 1}, ask=ask_for(1))
        except agentmesh.BudgetExceededError as e:
            seen["third"] = (e.dimension, e.limit, e.left)
        return "done"

    before = path.read_bytes()
    for prices in (None, OTHER_PRICES):
        other = agentmesh.Mesh(log_dir=tmp_path, prices=prices)
        other.add_agent("writer", writer)
        with pytest.raises(agentmesh.InvalidArgumentError, match="the run was started with price table"):
            other.resume(path)
    assert path.read_bytes() == before and not seen  # refused before anything ran or was written

    mesh = agentmesh.Mesh(log_dir=tmp_path, prices=PRICES)
    mesh.add_agent("writer", writer)
    r = mesh.resume(path)
    assert r.status == "completed"
    # The call in flight goes out again under its number; its 80 tokens stayed reserved, so a
    # second call asking for 80 is clamped to the 20 left; a third finds the calls spent.
    assert seen == {"again": (True, 1, None), "second": (2, 20), "third": ("calls", 2, 0)}
    assert r.cost == {"microUsd": 110, "calls": 2, "denied": 1, "byNode": {"w": 110},
                      "byAgent": {"writer": 110}, "byModel": {"m": 110}}

    # A fork of the run needs its prices too (at the end of its one step, overriding w).
    step_end = next(e["seq"] for e in agentmesh.read_log(path) if e["type"] == "agentCompleted")
    bare = agentmesh.Mesh(log_dir=tmp_path)
    bare.add_agent("writer", writer)
    with pytest.raises(agentmesh.InvalidArgumentError, match="the run was started with price table"):
        bare.fork(path, step_end, {"w": "other"}, run_id="fork-a")
    forked = mesh.fork(path, step_end, {"w": "other"}, run_id="fork-b")
    assert forked.status == "completed" and forked.output == {"w": "other"}
    assert forked.cost["microUsd"] == 0 and forked.usage["inherited"]["microUsd"] == 110


def test_retry_uses_the_mesh_prices(tmp_path: Path) -> None:
    wf = agentmesh.Workflow.from_dict({**ONE_NODE, "budget": {"calls": 3}})
    fail = [True]

    def writer(act: agentmesh.Activation) -> str:
        Llm([(1, 1)]).call(act, request(f"attempt {act.attempt}", 1), ask(1, 1))
        if fail[0]:
            raise agentmesh.ActivationError("Outage", "down", retryable=False)
        return "ok"

    mesh = agentmesh.Mesh(log_dir=tmp_path, prices=PRICES)
    mesh.add_agent("writer", writer)
    with pytest.raises(agentmesh.AgentFailedError):
        mesh.run(wf, run_id="flaky")
    path = tmp_path / "flaky.jsonl"
    fail[0] = False
    bare = agentmesh.Mesh(log_dir=tmp_path)
    bare.add_agent("writer", writer)
    with pytest.raises(agentmesh.InvalidArgumentError, match="price table"):
        bare.retry(path)
    r = mesh.retry(path)
    assert r.status == "completed" and r.cost["microUsd"] == 6 and r.cost["calls"] == 2


# a real LLM -------------------------------------------------------------------------------


def real_prices() -> Dict[str, Any]:
    return {"version": 1, "models": [{"provider": "local", "model": "smollm2", "match": {"equals": "smollm2"},
                                      "prices": {"input": 1_000_000, "output": 2_000_000}}]}


def test_a_real_llm_call_is_refused_before_it_is_sent(llama: str) -> None:  # noqa: F811
    proxy = Proxy(llama)
    try:
        mesh = agentmesh.Mesh(prices=real_prices())
        mesh.provider("local", {"kind": "openai", "baseUrl": proxy.base_url, "maxRetries": 0})
        refused: List[agentmesh.BudgetExceededError] = []

        def w(act: agentmesh.Activation) -> str:
            try:
                act.llm("local", REQUEST)
            except agentmesh.BudgetExceededError as e:
                refused.append(e)
                raise
            return "sent"

        mesh.add_agent("w", w)
        # The estimated prompt alone is more than 20 µUSD; with 16 completion tokens more so.
        r = mesh.run(agentmesh.Workflow.from_dict({"name": "llm", "nodes": [{"id": "a", "type": "agent", "agent": "w"}]}),
                     budget={"microUsd": 20})
        assert r.status == "failed" and r.error is not None and r.error["code"] == "BUDGET_EXCEEDED"
        [e] = refused
        assert (e.dimension, e.left, e.limit) == ("microUsd", 20, 20)
        assert e.requested is not None and e.requested >= 32 + 2 * REQUEST["maxTokens"]
        assert proxy.bodies == []  # nothing reached the server
    finally:
        proxy.close()


def test_a_real_llm_call_is_charged_what_the_server_reports(llama: str) -> None:  # noqa: F811
    proxy = Proxy(llama)
    try:
        mesh = agentmesh.Mesh(prices=real_prices())
        mesh.provider("local", {"kind": "openai", "baseUrl": proxy.base_url, "maxRetries": 0})
        mesh.add_agent("w", lambda act: act.llm("local", REQUEST).text)
        r = mesh.run(agentmesh.Workflow.from_dict({"name": "llm", "nodes": [{"id": "a", "type": "agent", "agent": "w"}]}),
                     budget={"microUsd": 10_000})
        assert r.status == "completed" and len(proxy.bodies) == 1
        reported = json.loads(proxy.responses[0])["usage"]
        prompt, completion = reported["prompt_tokens"], reported["completion_tokens"]
        assert prompt > 0 and completion > 0
        [done] = [e for e in events_of(r) if e["type"] == "callCompleted"]
        assert done["data"]["charge"] == {
            "inputTokens": prompt, "outputTokens": completion, "microUsd": prompt + 2 * completion, "calls": 1}
        [started] = [e for e in events_of(r) if e["type"] == "callStarted"]
        reserved = started["data"]["reserve"]
        assert reserved["outputTokens"] == REQUEST["maxTokens"] and reserved["inputTokens"] >= prompt
        assert r.cost["microUsd"] == prompt + 2 * completion
    finally:
        proxy.close()


def test_a_priced_tool_reserves_its_price_per_call() -> None:
    runs: List[int] = []

    def search(arguments: Any) -> Any:
        runs.append(1)
        return {"hits": 1}

    def writer(act: agentmesh.Activation) -> Any:
        act.tool("search", {"q": 1})
        try:
            act.tool("search", {"q": 2})
        except agentmesh.BudgetExceededError as e:
            return {"requested": e.requested, "left": e.left}
        return "unreachable"

    mesh = agentmesh.Mesh(prices={"version": 1, "models": [],
                                  "tools": [{"name": "search", "perCall": 7}]})
    mesh.call_tool("search", search)
    mesh.add_agent("writer", writer)
    r = mesh.run(agentmesh.Workflow.from_dict(ONE_NODE), budget={"microUsd": 10})
    assert runs == [1]
    assert r.output == {"w": {"requested": 7, "left": 3}}
    assert (r.cost["microUsd"], r.cost["denied"]) == (7, 1)
