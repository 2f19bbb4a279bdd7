"""Calls inside activations: an agent asks an LLM provider and calls a tool through its
activation, so each call is recorded as it happens. A resumed run answers recorded calls
from the log: here the first run is interrupted (Ctrl-C, as a crash would stop it) after the
agent's calls, and the resumed run sends nothing again. The provider is a host function (no server needed); a native one is a dict such as
{"kind": "openai", "baseUrl": "http://127.0.0.1:8080/v1"}.
"""
import tempfile
from typing import Any, Dict, List

import agentmesh
from agentmesh import Activation, CallTicket

sent: List[str] = []  # what reached the "provider" and the tool


def provider(request: Dict[str, Any], ticket: CallTicket) -> Any:
    """A stand-in LLM: the response dict, and the tokens it spent."""
    prompt = request["messages"][-1]["content"]
    sent.append(f"llm call {ticket.call}: {prompt}")
    return {"text": f"notes on {prompt}", "finishReason": "stop"}, {"inputTokens": 12, "outputTokens": 4}


def search(arguments: Dict[str, Any]) -> List[str]:
    sent.append(f"tool: {arguments['q']}")
    return [f"{arguments['q']} (1)", f"{arguments['q']} (2)"]


attempts = {"n": 0}


def make_mesh(log_dir: str) -> agentmesh.Mesh:
    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.provider("local", provider)
    mesh.call_tool("search", search, description="Search the notes")

    @mesh.agent("writer")
    def writer(act: Activation) -> Dict[str, Any]:
        hits = act.tool("search", {"q": act.input})
        reply = act.llm("local", model="smollm2", max_tokens=16,
                        messages=[{"role": "user", "content": hits[0]}])
        stream = act.llm_stream("local", messages=[{"role": "user", "content": "a title"}])
        title = "".join(chunk.get("text", "") for chunk in stream)
        try:
            act.llm("missing-provider", {})
        except agentmesh.UnknownAgentError as e:
            print("  ", e)
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise KeyboardInterrupt  # Ctrl-C: nothing more is written, the run is resumable
        print("   recorded:", reply.recorded, stream.reply.recorded)
        return {"text": reply.text, "title": title, "usage": reply.usage}

    return mesh


wf = agentmesh.Workflow.from_dict({"name": "calls", "nodes": [
    {"id": "write", "type": "agent", "agent": "writer"}]})

with tempfile.TemporaryDirectory() as logs:
    print("1. first run")
    try:
        make_mesh(logs).run(wf, input="durable agents", run_id="calls")
    except KeyboardInterrupt:
        print("   interrupted after the calls")
    print("   sent:", sent)
    sent.clear()

    print("2. resumed: the agent runs again, its calls are answered from the log")
    result = make_mesh(logs).resume(f"{logs}/calls.jsonl")
    print("  ", result.status, result.output["write"])
    print("   sent:", sent)
    assert sent == [], sent
    calls = [e for e in agentmesh.read_log(f"{logs}/calls.jsonl") if e["type"].startswith("call")]
    print("3.", len(calls), "call records; usage total:", result.usage["total"]["inputTokens"], "input tokens")
