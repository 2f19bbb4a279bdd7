"""Token usage: give the SDK's response (or its usage) as it comes; the core records the token
counts and the model, never the response's id or timestamp. `RunResult.usage` and
`agentmesh.usage_report(log)` sum it per run, node, agent, tool and model; a fork does not count
what its parent spent.

`Response` stands in for the openai client's pydantic `ChatCompletion` (attributes and
`model_dump`), so the script runs offline; the agents are the same with the real client.
"""
import tempfile
import time
from typing import Any, Dict

import agentmesh
from agentmesh import Activation, ActivationError, Output


class Response:
    """The parts of an openai `ChatCompletion` the agents use, and its `model_dump`."""

    def __init__(self, text: str, prompt_tokens: int, completion_tokens: int, cached: int) -> None:
        self.text = text
        self.dump = {
            "id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion",
            "created": int(time.time()), "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached}},
        }

    def model_dump(self, mode: str = "python") -> Dict[str, Any]:
        return self.dump


wf = agentmesh.Workflow.from_dict({"name": "brief", "nodes": [
    {"id": "plan", "type": "agent", "agent": "openai"},
    {"id": "draft", "type": "agent", "agent": "anthropic", "after": ["plan"],
     "retry": {"maxAttempts": 2}},
    {"id": "save", "type": "tool", "tool": "store", "after": ["draft"]},
]})

with tempfile.TemporaryDirectory() as logs:
    mesh = agentmesh.Mesh(log_dir=logs)

    @mesh.agent("openai")
    def plan(act: Activation) -> Output:
        resp = Response("three sections", prompt_tokens=403, completion_tokens=62, cached=128)
        return Output({"plan": resp.text}, usage=resp)  # or usage=resp.usage: no model then

    @mesh.agent("anthropic")
    def draft(act: Activation) -> Output:
        # An Anthropic message (as `message.model_dump(mode="json")` gives it, trimmed): its
        # input_tokens exclude the cache, the recorded inputTokens include it.
        message = {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "model": "claude-sonnet-4-5",
                   "usage": {"input_tokens": 25, "output_tokens": 91,
                             "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 0}}
        if act.attempt == 1:
            # Paid for, then unusable: the failed attempt's tokens are recorded too.
            raise ActivationError("SchemaError", "no 'sections' in the reply", usage=message)
        return Output({"text": "Bees eat nectar."}, usage=message)

    @mesh.tool("store")
    def store(act: Activation) -> Dict[str, Any]:
        return {"saved": True}  # no usage: counted as an attempt, not as reported

    result = mesh.run(wf, run_id="brief-1")
    log = result.log_path or ""
    for e in agentmesh.read_log(log):
        if "usage" in e["data"]:
            print(f"{e['seq']:3} {e['type']:15} {e['data']['usage']}")
    report = result.usage
    print("total:", report["total"])
    for by in ("byNode", "byAgent", "byTool", "byModel"):
        print(f"{by + ':':9}", {k: (v["inputTokens"], v["outputTokens"], v["attempts"])
                                for k, v in report[by].items()})

    # A fork at the end of `plan`'s step copies plan's completion (usage included): the fork
    # reports it as inherited, not as spent.
    plan_end = min(s["seq"] for s in agentmesh.history(log) if s["forkPoint"] and "plan" in s["completed"])
    fork = mesh.fork(log, plan_end, run_id="brief-2")
    spent = agentmesh.usage_report(fork.log_path or "")
    print("fork total:", spent["total"]["inputTokens"], "inherited:", spent["inherited"]["inputTokens"])
