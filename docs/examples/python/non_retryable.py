"""Errors that are never retried: a bug in an agent (an AttributeError right after a paid LLM
call) is attempted once even with maxAttempts 3, as are the types a node lists in
`nonRetryable`; `retryProgrammingErrors` opts out. Once the bug is fixed, `retry` gives the
node a fresh allowance.
"""
import tempfile
from typing import Any, List

import agentmesh
from agentmesh import Activation, Retry


class RateLimitError(Exception):
    """What an LLM SDK raises when the key is over its quota."""


def workflow(retry: Retry) -> agentmesh.Workflow:
    return agentmesh.Workflow.builder("answer").agent("answer", "llm", retry=retry).build()


llm_calls: List[int] = []
bug_fixed = False


def llm(act: Activation) -> Any:
    llm_calls.append(act.attempt)  # the paid call happens here
    reply = {"content": "Bees eat nectar."}
    if not bug_fixed:
        return {"text": reply.contents}  # type: ignore[attr-defined]  # the bug
    return {"text": reply["content"]}


def over_quota(act: Activation) -> Any:
    llm_calls.append(act.attempt)
    raise RateLimitError("quota exceeded for this key")


def attempts(agent: Any, retry: Retry, run_id: str, logs: str) -> str:
    llm_calls.clear()
    mesh = agentmesh.Mesh(log_dir=logs)
    mesh.add_agent("llm", agent)
    try:
        mesh.run(workflow(retry), run_id=run_id)
    except agentmesh.AgentFailedError as e:
        failure = [ev for ev in agentmesh.read_log(e.result.log_path or "")
                   if ev["type"] == "agentFailed"][-1]["data"]["error"]
        return (f"{len(llm_calls)} call(s), recorded {failure['type']} "
                f"retryable={failure['retryable']}")
    return f"{len(llm_calls)} call(s), completed"


with tempfile.TemporaryDirectory() as logs:
    cases = [
        ("AttributeError, maxAttempts 3", llm, Retry(3), "bug"),
        ("RateLimitError listed in nonRetryable", over_quota,
         Retry(3, non_retryable=["RateLimitError"]), "quota"),
        ("AttributeError, retryProgrammingErrors", llm,
         Retry(3, retry_programming_errors=True), "opt-out"),
    ]
    for label, agent, retry, run_id in cases:
        print(f"{label + ':':40} {attempts(agent, retry, run_id, logs)}")

    # Fix the bug, then retry the failed run: one more call, not a new run.
    bug_fixed = True
    llm_calls.clear()
    mesh = agentmesh.Mesh(log_dir=logs)
    mesh.add_agent("llm", llm)
    done = mesh.retry(f"{logs}/bug.jsonl")
    print("fixed and retried:", done.status, done.output, "| attempt", llm_calls)
