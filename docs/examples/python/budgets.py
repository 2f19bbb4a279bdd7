"""Budgets: a run that may spend 600 micro-USD, agents whose LLM calls reserve their worst
case before they are sent, one refused call the agent answers without, warnings as spend
crosses 50 % and 80 %, and what the run cost (docs/budgets.md).

`complete` stands in for a real LLM client so the script runs offline: the agents reserve
with an `ask` (the estimated prompt and `maxTokens`), send the `max_tokens` the budget
allows, and report the usage the client gave. With a provider the mesh calls itself
(`mesh.provider(...)`, `act.llm`) the ask is made for you.
"""
from typing import Any, Dict, List

import agentmesh

# Our prices for the local model: $1 per million prompt tokens, $2 per million completion
# tokens (1 and 2 micro-USD a token).
PRICES = {"version": 1, "source": "our contract", "models": [
    {"provider": "local", "model": "small", "match": {"equals": "small"},
     "prices": {"input": 1_000_000, "output": 2_000_000}}]}


def complete(prompt: str, max_tokens: int) -> Dict[str, Any]:
    """A stand-in LLM: answers with `max_tokens` completion tokens, a prompt of 50."""
    return {"text": f"about {prompt}", "usage": {"inputTokens": 50, "outputTokens": max_tokens,
                                                 "model": "small"}}


def researcher(act: agentmesh.Activation) -> Any:
    request = {"model": "small", "messages": [{"role": "user", "content": act.node}],
               "maxTokens": 100}
    try:
        # Worst case: 50 prompt tokens + 100 completion tokens = 250 µUSD.
        ticket = act.call_start("llm", "local", request,
                                ask={"provider": "local", "model": "small", "inputTokens": 50,
                                     "maxTokens": 100})
    except agentmesh.BudgetExceededError as e:
        # Refused before anything was sent: answer without the call.
        return {"note": "skipped", "why": e.dimension, "left": e.left}
    if ticket.live:
        answer = complete(act.node, ticket.max_tokens or 100)
        act.call_complete(ticket, response={"text": answer["text"]}, usage=answer["usage"])
    return {"note": "researched"}


warnings: List[str] = []
mesh = agentmesh.Mesh(prices=PRICES)
mesh.add_agent("researcher", researcher)
wf = agentmesh.Workflow.from_dict({
    "name": "budgeted-research", "budgetWarnings": [50, 80],
    "nodes": [{"id": f"topic_{i}", "type": "agent", "agent": "researcher"} for i in range(3)]})

r = mesh.run(wf, budget={"microUsd": 600},
             on_budget_warning=lambda e: warnings.append(
                 f"{e['data']['scope']} {e['data']['dimension']} at {e['data']['threshold']} %"))

# The step's three activations share 600 µUSD: 200 each, less than a call's worst case (250),
# so each call is refused — the lease is decided at scheduling, from data only.
print("outputs:", r.output)
assert all(o["note"] == "skipped" for o in r.output.values())
print("cost:", r.cost)
assert r.cost["microUsd"] == 0 and r.cost["denied"] == 3

# One agent alone gets the whole budget: its call fits and is charged what it reported.
solo = agentmesh.Workflow.from_dict({"name": "solo", "budgetWarnings": [50, 80],
                                     "nodes": [{"id": "topic", "type": "agent", "agent": "researcher"}]})
r = mesh.run(solo, budget={"microUsd": 300}, on_budget_warning=lambda e: warnings.append(
    f"{e['data']['scope']} {e['data']['dimension']} at {e['data']['threshold']} %"))
print("cost:", r.cost)
assert r.status == "completed" and r.cost["microUsd"] == 250  # 50 × 1 + 100 × 2
print("warnings:", warnings)
assert warnings == ["run microUsd at 50 %", "run microUsd at 80 %"]
