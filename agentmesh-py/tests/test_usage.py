"""Token usage in the shapes LLM SDKs return (the openai client's pydantic models, Anthropic's
keys), recorded on successes and failures, and the report: ``RunResult.usage`` and
``agentmesh.usage_report``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import agentmesh

# pydantic is what the openai and anthropic clients' objects are made of. CI installs it; a
# machine without it skips these tests (and CI fails, so they are never skipped silently).
if os.environ.get("CI"):
    import pydantic
else:
    pydantic = pytest.importorskip("pydantic")

try:  # the real SDK types when the openai package is installed
    from openai.types.chat import ChatCompletion  # type: ignore[import-not-found]
except ImportError:
    from pydantic import BaseModel

    # The shape of openai's `ChatCompletion` (openai/types/chat/chat_completion.py), trimmed to
    # what a response carries.
    class PromptTokensDetails(BaseModel):
        audio_tokens: Optional[int] = None
        cached_tokens: Optional[int] = None

    class CompletionTokensDetails(BaseModel):
        accepted_prediction_tokens: Optional[int] = None
        audio_tokens: Optional[int] = None
        reasoning_tokens: Optional[int] = None
        rejected_prediction_tokens: Optional[int] = None

    class CompletionUsage(BaseModel):
        completion_tokens: int
        prompt_tokens: int
        total_tokens: int
        completion_tokens_details: Optional[CompletionTokensDetails] = None
        prompt_tokens_details: Optional[PromptTokensDetails] = None

    class ChatCompletionMessage(BaseModel):
        content: Optional[str] = None
        refusal: Optional[str] = None
        role: str

    class Choice(BaseModel):
        finish_reason: str
        index: int
        logprobs: Optional[Dict[str, Any]] = None
        message: ChatCompletionMessage

    class ChatCompletion(BaseModel):  # type: ignore[no-redef]
        id: str
        choices: List[Choice]
        created: int
        model: str
        object: str
        service_tier: Optional[str] = None
        system_fingerprint: Optional[str] = None
        usage: Optional[CompletionUsage] = None


RESPONSE = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_06737a9306",
    "service_tier": "default",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Bees eat nectar.", "refusal": None}}],
    "usage": {"prompt_tokens": 403, "completion_tokens": 62, "total_tokens": 465,
              "prompt_tokens_details": {"cached_tokens": 128, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0,
                                            "rejected_prediction_tokens": 0}},
}

ANTHROPIC_USAGE = {"input_tokens": 25, "output_tokens": 91, "cache_read_input_tokens": 2000,
                   "cache_creation_input_tokens": 300, "service_tier": "standard"}

ONE = {"name": "ask", "nodes": [{"id": "answer", "type": "agent", "agent": "llm"}]}

ZERO = {"inputTokens": 0, "outputTokens": 0, "cachedInputTokens": 0, "cacheWriteTokens": 0,
        "reasoningTokens": 0, "attempts": 0, "reported": 0}


def totals(**fields: int) -> Dict[str, int]:
    return {**ZERO, **fields}


def recorded(path: Any, kind: str = "agentCompleted") -> List[Dict[str, Any]]:
    return [e["data"].get("usage") for e in agentmesh.read_log(path) if e["type"] == kind]


def run_one(tmp_path: Path, agent: Any, run_id: str = "ask") -> agentmesh.RunResult:
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("llm", agent)
    return mesh.run(agentmesh.Workflow.from_dict(ONE), run_id=run_id)


def response() -> Any:
    resp = ChatCompletion.model_validate(RESPONSE)
    assert isinstance(resp, pydantic.BaseModel)
    return resp


def test_a_whole_sdk_response_as_usage(tmp_path: Path) -> None:
    resp = response()

    def llm(act: agentmesh.Activation) -> Any:
        choice = resp.choices[0]
        return agentmesh.Output({"text": choice.message.content}, usage=resp)

    r = run_one(tmp_path, llm)
    assert r.status == "completed" and r.output == {"answer": {"text": "Bees eat nectar."}}
    # The zero reasoning count is recorded as unknown-or-zero alike: absent.
    assert recorded(r.log_path) == [{"inputTokens": 403, "outputTokens": 62, "cachedInputTokens": 128,
                                     "model": "gpt-4o-mini-2024-07-18"}]
    # Nothing of the response but its usage and model reaches the log.
    log = agentmesh.canonical_log(r.log_path or "")
    for varying in (b"chatcmpl-", b"1741569952", b"fp_06737a9306", b"total_tokens", b"service_tier"):
        assert varying not in log
    spent = r.usage
    assert spent["total"] == totals(inputTokens=403, outputTokens=62, cachedInputTokens=128,
                                    attempts=1, reported=1)
    assert spent["byModel"] == {"gpt-4o-mini-2024-07-18": spent["total"]}


def test_the_sdk_usage_object_as_usage(tmp_path: Path) -> None:
    resp = response()
    r = run_one(tmp_path, lambda act: agentmesh.Output("ok", usage=resp.usage))
    # The usage object has no model: none is recorded.
    assert recorded(r.log_path) == [{"inputTokens": 403, "outputTokens": 62, "cachedInputTokens": 128}]
    assert r.usage["byModel"] == {}
    # Two runs of it give one log: nothing per call leaks in.
    again = run_one(tmp_path / "again", lambda act: agentmesh.Output("ok", usage=response().usage))
    assert again.fingerprint == r.fingerprint


def test_reasoning_tokens_from_the_sdk_object(tmp_path: Path) -> None:
    data = json.loads(json.dumps(RESPONSE))
    data["usage"]["completion_tokens_details"]["reasoning_tokens"] = 40
    resp = ChatCompletion.model_validate(data)
    r = run_one(tmp_path, lambda act: agentmesh.Output("ok", usage=resp))
    [usage] = recorded(r.log_path)
    assert usage["reasoningTokens"] == 40 and usage["outputTokens"] == 62
    assert r.usage["total"]["reasoningTokens"] == 40


def test_an_anthropic_usage_dict(tmp_path: Path) -> None:
    r = run_one(tmp_path, lambda act: agentmesh.Output("ok", usage=ANTHROPIC_USAGE))
    # inputTokens counts every prompt token, cache reads and writes included.
    assert recorded(r.log_path) == [{"inputTokens": 2325, "outputTokens": 91, "cachedInputTokens": 2000,
                                     "cacheWriteTokens": 300}]
    whole = {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
             "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "hi"}],
             "stop_reason": "end_turn", "usage": ANTHROPIC_USAGE}
    r = run_one(tmp_path, lambda act: agentmesh.Output("ok", usage=whole), run_id="whole")
    assert recorded(r.log_path)[0]["model"] == "claude-sonnet-4-5"
    assert b"msg_01" not in agentmesh.canonical_log(r.log_path or "")
    assert r.usage["byModel"]["claude-sonnet-4-5"]["cacheWriteTokens"] == 300


def test_usage_on_a_failed_attempt(tmp_path: Path) -> None:
    resp = response()
    wf = agentmesh.Workflow.from_dict({"name": "ask", "nodes": [
        {"id": "answer", "type": "agent", "agent": "llm", "retry": {"maxAttempts": 2}}]})

    def llm(act: agentmesh.Activation) -> Any:
        if act.attempt == 1:
            # The call was paid, then its content did not parse.
            raise agentmesh.ActivationError("SchemaError", "missing field 'answer'", usage=resp)
        return agentmesh.Output({"answer": 42}, usage={"inputTokens": 10, "outputTokens": 2})

    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("llm", llm)
    r = mesh.run(wf, run_id="fail")
    assert r.status == "completed"
    assert recorded(r.log_path, "agentFailed") == [
        {"inputTokens": 403, "outputTokens": 62, "cachedInputTokens": 128, "model": "gpt-4o-mini-2024-07-18"}
    ]
    spent = r.usage
    assert spent["total"] == totals(inputTokens=413, outputTokens=64, cachedInputTokens=128,
                                    attempts=2, reported=2)
    assert spent["byNode"] == {"answer": spent["total"]}
    assert spent["byAgent"] == {"llm": spent["total"]}
    assert spent["byModel"]["gpt-4o-mini-2024-07-18"]["attempts"] == 1


def test_the_report_by_node_agent_tool_and_model(tmp_path: Path) -> None:
    wf = agentmesh.Workflow.from_dict({"name": "brief", "nodes": [
        {"id": "plan", "type": "agent", "agent": "llm"},
        {"id": "search", "type": "tool", "tool": "web", "after": ["plan"]},
        {"id": "write", "type": "agent", "agent": "llm", "after": ["search"]},
        {"id": "ok", "type": "human", "after": ["write"]}]})
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("llm", lambda act: agentmesh.Output(act.node, usage={
        "inputTokens": 100, "outputTokens": 10, "model": "big" if act.node == "write" else "small"}))
    mesh.add_tool("web", lambda act: ["hit"])  # no usage: an attempt, not reported
    waiting = mesh.run(wf, run_id="b")
    assert waiting.status == "waiting"
    done = mesh.resume(waiting.log_path or "", approvals={"ok": True})
    report = done.usage
    assert report == agentmesh.usage_report(done.log_path or "")
    assert report["runId"] == "b" and "inherited" not in report
    assert report["total"] == totals(inputTokens=200, outputTokens=20, attempts=3, reported=2)
    assert set(report["byNode"]) == {"plan", "search", "write"}  # human decisions are not counted
    assert report["byNode"]["search"] == totals(attempts=1)
    assert report["byAgent"] == {"llm": totals(inputTokens=200, outputTokens=20, attempts=2, reported=2)}
    assert report["byTool"] == {"web": totals(attempts=1)}
    assert report["byModel"] == {"big": totals(inputTokens=100, outputTokens=10, attempts=1, reported=1),
                                 "small": totals(inputTokens=100, outputTokens=10, attempts=1, reported=1)}
    # A waiting run's result reads the log as it is now.
    assert waiting.usage == report


def test_an_in_memory_run_reports_the_same(tmp_path: Path) -> None:
    def llm(act: agentmesh.Activation) -> Any:
        return agentmesh.Output("ok", usage=ANTHROPIC_USAGE)

    mesh = agentmesh.Mesh()
    mesh.add_agent("llm", llm)
    memory = mesh.run(agentmesh.Workflow.from_dict(ONE), run_id="ask")
    assert memory.log_path is None
    assert memory.usage == run_one(tmp_path, llm).usage


def test_a_fork_does_not_count_what_its_parent_spent(tmp_path: Path) -> None:
    wf = agentmesh.Workflow.from_dict({"name": "two", "nodes": [
        {"id": "draft", "type": "agent", "agent": "llm"},
        {"id": "polish", "type": "agent", "agent": "llm", "after": ["draft"]}]})
    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("llm", lambda act: agentmesh.Output(act.node, usage={
        "inputTokens": 1000 if act.node == "draft" else 50, "outputTokens": 5}))
    parent = mesh.run(wf, run_id="parent")
    assert parent.usage["total"] == totals(inputTokens=1050, outputTokens=10, attempts=2, reported=2)
    draft_end = next(s["seq"] for s in agentmesh.history(parent.log_path or "")
                     if s["forkPoint"] and "draft" in s["completed"])
    fork = mesh.fork(parent.log_path or "", draft_end, run_id="fork")
    # The fork's log holds the parent's `draft` event too, but only `polish` was spent by it.
    assert recorded(fork.log_path)[0] == {"inputTokens": 1000, "outputTokens": 5}
    report = fork.usage
    assert report["total"] == totals(inputTokens=50, outputTokens=5, attempts=1, reported=1)
    assert report["byNode"] == {"polish": report["total"]}
    assert report["inherited"] == totals(inputTokens=1000, outputTokens=5, attempts=1, reported=1)
    assert agentmesh.usage_report(fork.log_path or "") == report


def test_usage_report_errors(tmp_path: Path) -> None:
    with pytest.raises(agentmesh.AgentMeshIOError):
        agentmesh.usage_report(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not a log\n")
    with pytest.raises(agentmesh.LogCorruptError):
        agentmesh.usage_report(bad)


def test_an_sdk_object_whose_dump_fails_is_invalid_output(tmp_path: Path) -> None:
    class Broken(pydantic.BaseModel):  # type: ignore[misc]
        tokens: int = 1

        def model_dump(self, **kwargs: Any) -> Any:
            raise RuntimeError("dump failed")

    with pytest.raises(agentmesh.AgentFailedError) as info:
        run_one(tmp_path, lambda act: agentmesh.Output("ok", usage=Broken()))
    cause = info.value.__cause__
    assert isinstance(cause, agentmesh.InvalidOutputError)
    assert "model_dump() failed" in cause.message and "dump failed" in cause.message
