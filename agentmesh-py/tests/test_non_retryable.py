"""Errors a retry policy never retries: Python's programming errors by default,
``retry.nonRetryable`` types, and the opt-out ``retry.retryProgrammingErrors``; in the workflow
JSON and through the builder's ``Retry``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest

import agentmesh
from agentmesh import Retry, Workflow


class RateLimitError(Exception):
    """What an LLM SDK raises when the key is over its quota (a type name, as SDKs have)."""


def one_agent(retry: Dict[str, Any]) -> Workflow:
    return Workflow.from_dict({"name": "parse", "nodes": [
        {"id": "parse", "type": "agent", "agent": "llm", "retry": retry}]})


def failing(log_dir: Path, wf: Workflow, exc: BaseException, run_id: str = "r") -> Dict[str, Any]:
    """Run ``wf`` with an agent that always raises ``exc``: the attempts made, the failure
    events recorded and the AgentFailedError's cause."""
    attempts: List[int] = []

    def llm(act: agentmesh.Activation) -> Any:
        attempts.append(act.attempt)
        raise exc

    mesh = agentmesh.Mesh(log_dir=log_dir)
    mesh.add_agent("llm", llm)
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf, run_id=run_id)
    failures = [e for e in agentmesh.read_log(log_dir / f"{run_id}.jsonl") if e["type"] == "agentFailed"]
    return {"attempts": attempts, "failures": failures, "cause": info.value.__cause__,
            "result": info.value.result}


def test_an_attribute_error_is_attempted_once_under_max_attempts_3(tmp_path: Path) -> None:
    exc = AttributeError("'Message' object has no attribute 'contents'")
    got = failing(tmp_path, one_agent({"maxAttempts": 3, "backoffMs": 10}), exc)
    assert got["attempts"] == [1]  # not 3 paid LLM calls
    assert got["cause"] is exc
    [failure] = got["failures"]
    assert failure["data"]["error"] == {
        "kind": "error",
        "type": "AttributeError",
        "message": "'Message' object has no attribute 'contents'",
        "retryable": False,  # the core's verdict, written into the failure
    }
    assert "attempt 1/3" in got["result"].error["message"]
    # Replay agrees: the verdict is in the log, not recomputed.
    assert agentmesh.replay(tmp_path / "r.jsonl")["outcome"]["status"] == "failed"


@pytest.mark.parametrize("exc", [TypeError("x"), KeyError("answer"), IndexError("0"), NameError("n"),
                                 AssertionError("a"), NotImplementedError("later")],
                         ids=lambda e: type(e).__name__)
def test_the_default_programming_errors(tmp_path: Path, exc: BaseException) -> None:
    got = failing(tmp_path, one_agent({"maxAttempts": 3}), exc)
    assert got["attempts"] == [1]
    assert got["failures"][0]["data"]["error"]["type"] == type(exc).__name__
    assert got["failures"][0]["data"]["error"]["retryable"] is False


def test_other_exceptions_and_subclasses_with_their_own_name_are_retried(tmp_path: Path) -> None:
    class ParseKeyError(KeyError):
        pass

    for i, exc in enumerate([ConnectionError("refused"), ValueError("bad json"), ParseKeyError("k")]):
        got = failing(tmp_path, one_agent({"maxAttempts": 3}), exc, run_id=f"r{i}")
        assert got["attempts"] == [1, 2, 3], type(exc).__name__
        assert [f["data"]["error"]["retryable"] for f in got["failures"]] == [True, True, True]


def test_non_retryable_lists_more_types(tmp_path: Path) -> None:
    wf = one_agent({"maxAttempts": 3, "nonRetryable": ["RateLimitError"]})
    got = failing(tmp_path, wf, RateLimitError("quota exceeded"))
    assert got["attempts"] == [1]
    assert got["failures"][0]["data"]["error"]["type"] == "RateLimitError"
    assert got["failures"][0]["data"]["error"]["retryable"] is False
    # Types it does not list are still retried, and the defaults still apply.
    assert failing(tmp_path, wf, ConnectionError("x"), run_id="c")["attempts"] == [1, 2, 3]
    assert failing(tmp_path, wf, TypeError("x"), run_id="t")["attempts"] == [1]


def test_retry_programming_errors_opts_out(tmp_path: Path) -> None:
    wf = one_agent({"maxAttempts": 3, "retryProgrammingErrors": True})
    got = failing(tmp_path, wf, AttributeError("flaky attribute"))
    assert got["attempts"] == [1, 2, 3]
    assert [f["data"]["error"]["retryable"] for f in got["failures"]] == [True, True, True]
    # nonRetryable still holds under the opt-out.
    wf = one_agent({"maxAttempts": 3, "retryProgrammingErrors": True, "nonRetryable": ["KeyError"]})
    assert failing(tmp_path, wf, KeyError("k"), run_id="k")["attempts"] == [1]


def test_an_activation_error_cannot_make_a_listed_type_retryable(tmp_path: Path) -> None:
    wf = one_agent({"maxAttempts": 3, "nonRetryable": ["AuthenticationError"]})
    for i, error_type in enumerate(["KeyError", "AuthenticationError"]):
        exc = agentmesh.ActivationError(error_type, "no", retryable=True)
        got = failing(tmp_path, wf, exc, run_id=f"a{i}")
        assert got["attempts"] == [1], error_type
        assert got["failures"][0]["data"]["error"]["retryable"] is False
    # ... and retryable=False still stops any other type.
    got = failing(tmp_path, wf, agentmesh.ActivationError("Http", "400", retryable=False), run_id="h")
    assert got["attempts"] == [1]


def test_a_fixed_bug_then_retry_gets_a_fresh_allowance(tmp_path: Path) -> None:
    wf = one_agent({"maxAttempts": 3})
    calls: List[int] = []
    fixed = [False]

    def llm(act: agentmesh.Activation) -> Any:
        calls.append(act.attempt)
        if not fixed[0]:
            return {"text": act.input.contents}  # the bug: str has no attribute 'contents'
        return {"text": act.input}

    mesh = agentmesh.Mesh(log_dir=tmp_path)
    mesh.add_agent("llm", llm)
    with pytest.raises(agentmesh.AgentFailedError) as info:
        mesh.run(wf, input="hello", run_id="bug")
    assert isinstance(info.value.__cause__, AttributeError) and calls == [1]
    fixed[0] = True
    done = mesh.retry(tmp_path / "bug.jsonl")
    assert done.status == "completed" and done.output == {"parse": {"text": "hello"}}
    assert calls == [1, 2]


# The builder -------------------------------------------------------------------------------


def built(retry: Retry) -> Workflow:
    return Workflow.builder("parse").agent("parse", "llm", retry=retry).build()


def test_builder_retry_fields_are_the_json_fields() -> None:
    wf = built(Retry(3, backoff_ms=500, non_retryable=["AuthenticationError", "BadRequestError"],
                     retry_programming_errors=True))
    assert wf.to_dict()["nodes"][0]["retry"] == {
        "maxAttempts": 3,
        "backoffMs": 500,
        "nonRetryable": ["AuthenticationError", "BadRequestError"],
        "retryProgrammingErrors": True,
    }
    # The same policy from JSON is the same workflow.
    same = one_agent({"maxAttempts": 3, "backoffMs": 500,
                      "nonRetryable": ["AuthenticationError", "BadRequestError"],
                      "retryProgrammingErrors": True})
    assert wf.hash == same.hash
    # Defaults write nothing, so existing workflows keep their hash.
    assert built(Retry(3)).to_dict()["nodes"][0]["retry"] == {"maxAttempts": 3, "backoffMs": 0}
    assert built(Retry(3)).hash == one_agent({"maxAttempts": 3}).hash


def test_builder_non_retryable_takes_one_str_and_stays_hashable() -> None:
    policy = Retry(2, non_retryable="RateLimitError")
    assert policy.non_retryable == ("RateLimitError",)  # one type, not its characters
    assert hash(policy) == hash(Retry(2, non_retryable=["RateLimitError"]))
    assert built(policy).to_dict()["nodes"][0]["retry"]["nonRetryable"] == ["RateLimitError"]


@pytest.mark.parametrize(
    "policy, field",
    [
        (Retry(2, non_retryable=[""]), "retry.nonRetryable[0]"),
        (Retry(2, non_retryable=["A", "A"]), "retry.nonRetryable[1]"),
        (Retry(2, non_retryable=[7]), "retry.nonRetryable[0]"),  # type: ignore[list-item]
        (Retry(2, non_retryable=7), "retry.nonRetryable"),  # type: ignore[arg-type]
        (Retry(2, retry_programming_errors=1), "retry.retryProgrammingErrors"),  # type: ignore[arg-type]
    ],
)
def test_builder_bad_policies_are_invalid_workflows(policy: Retry, field: str) -> None:
    with pytest.raises(agentmesh.InvalidWorkflowError) as info:
        built(policy)
    assert info.value.node == "parse"
    assert info.value.field is not None and info.value.field.startswith(field)


def test_builder_policy_behaves_as_json(tmp_path: Path) -> None:
    wf = built(Retry(3, non_retryable=["RateLimitError"]))
    assert failing(tmp_path, wf, RateLimitError("q"))["attempts"] == [1]
    wf = built(Retry(3, retry_programming_errors=True))
    assert failing(tmp_path, wf, TypeError("t"), run_id="t")["attempts"] == [1, 2, 3]
