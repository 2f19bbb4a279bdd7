"""AgentMesh: deterministic, durable, replayable multi-agent workflows.

>>> import agentmesh
>>> wf = agentmesh.Workflow.from_dict({"name": "hi", "nodes": [
...     {"id": "greet", "type": "agent", "agent": "greeter"}]})
>>> mesh = agentmesh.Mesh()
>>> @mesh.agent("greeter")
... def greeter(act):
...     return {"hello": act.input}
>>> mesh.run(wf, input="world").output
{'greet': {'hello': 'world'}}
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Union

from . import _agentmesh
from ._driver import (
    Activation,
    ActivationError,
    CancelToken,
    Item,
    Mesh,
    Output,
    ReexecReport,
    RunResult,
)
from ._calls import AsyncLlmStream, LlmReply, LlmStream
from ._logs import route_logs
from ._watch import AsyncRunStream, RunStream
from ._json import RawJson
from ._workflow import Retry, Workflow, WorkflowBuilder
from .errors import (
    AgentFailedError,
    AgentMeshError,
    AgentMeshIOError,
    AgentMeshWarning,
    AgentTimeoutError,
    InternalError,
    InvalidArgumentError,
    InvalidCompletionError,
    InvalidOutputError,
    InvalidWorkflowError,
    LimitExceededError,
    LogCorruptError,
    LogHeadMismatchError,
    LogTruncatedError,
    NondeterminismError,
    PolicyDeniedError,
    PolicyInvalidError,
    BudgetExceededError,
    ProviderError,
    RunCancelledError,
    RunExistsError,
    UnknownAgentError,
)

PathLike = Union[str, "os.PathLike[str]"]

__version__ = "0.2.0"

# What act.call_start hands back (agentmesh-py/src/calls.rs): activation, call, seq, live,
# recorded, max_tokens, request (the run policy's redaction of the request: send it instead,
# when set), hold_response (stream nothing before call_complete), idempotency_key, outcome,
# tool_call_id(i).
CallTicket = _agentmesh.CallTicket

# A loaded policy (agentmesh-py/src/policy.rs, docs/policy.md): ``Policy(source)`` with a path
# to a JSON or YAML policy file (str or os.PathLike; at most 1 MiB, read synchronously with
# the GIL released) or a dict; ``name``, ``hash``, ``version``, ``rule_ids``, ``to_dict()``.
# Bad input raises PolicyInvalidError (``rule``, ``field``, ``line``, ``column``).
Policy = _agentmesh.Policy

PolicySource = Union[Policy, PathLike, Mapping[str, Any]]

# Live telemetry (agentmesh-py/src/telemetry.rs, docs/telemetry.md): ``Telemetry(otlp=URL,
# ...)`` given to ``Mesh(telemetry=...)`` exports OpenTelemetry GenAI spans as each one ends
# and keeps metrics (``metrics_text()``, ``serve_metrics(addr)``), all derived in Rust from
# the committed events; ``Telemetry.from_env()`` reads the OTEL_* variables.
Telemetry = _agentmesh.Telemetry


def _policy_arg(policy: PolicySource) -> Any:
    if isinstance(policy, Mapping) and not isinstance(policy, dict):
        return dict(policy)
    return policy


def redact(text: str, policy: Optional[PolicySource] = None) -> Dict[str, Any]:
    """``text`` redacted by ``policy`` (a :class:`Policy`, a policy file's path or a dict;
    ``None``: the built-in detectors, every one redacting): ``{"text": str, "spans":
    [{"start", "end", "kind", "rule"}]}``. ``start`` and ``end`` are offsets in code points
    of ``text`` (Python ``str`` indices); block rules redact here too. A ``text`` that is
    not a ``str`` raises :class:`InvalidArgumentError`."""
    result: Dict[str, Any] = _agentmesh.redact(
        text, None if policy is None else _policy_arg(policy)
    )
    return result


def export_log(path: PathLike, format: str) -> str:
    """The log at ``path`` (finished or still running) as ``format``: ``"chrome"``
    (Chrome/Perfetto trace JSON), ``"html"`` (one self-contained timeline page),
    ``"mermaid"`` (the workflow with the run's statuses) or ``"spans"`` (the derived
    OpenTelemetry spans, one JSON object per line). Read with the GIL released. What
    ``agentmesh export LOG --format F`` prints."""
    text: str = _agentmesh.export_log(os.fspath(path), format)
    return text


def export_otlp(
    path: PathLike,
    endpoint: str,
    *,
    headers: Optional[Mapping[str, str]] = None,
    service_name: Optional[str] = None,
    content: bool = False,
) -> int:
    """Send the finished spans of the log at ``path`` to the OpenTelemetry collector at
    ``endpoint`` (``http://host:4318``, or a full traces URL) over OTLP/HTTP, with their
    original times; the number sent. ``content``: put the recorded inputs and outputs on
    the spans (as the log holds them: redacted). Blocks, with the GIL released, until the
    collector answered; :class:`InvalidArgumentError` for a bad endpoint, ``AgentMeshIOError`` when
    the collector refused or could not be reached."""
    sent: int = _agentmesh.export_otlp(
        os.fspath(path),
        endpoint,
        headers=None if headers is None else dict(headers),
        service_name=service_name,
        content=content,
    )
    return sent


def check_policy(
    policy: PolicySource, logs: Union[PathLike, Iterable[PathLike]]
) -> Dict[str, Any]:
    """What ``policy`` would decide differently in recorded runs (``logs``: a log's path or
    a list of them), without changing them: ``{"policy": {"name", "hash"}, "logs": [{"path",
    "runId", "recordedPolicy"?, "values", "changes": [{"seq", "sub"?, "node"?, "subject",
    "change", "rule", "kind", "path"?, "count", "detail"}]}]}`` (``change``: ``nowBlock``,
    ``nowRedact``, ``nowWarn``, ...). The logs are read with the GIL released. What
    ``agentmesh policy check --json`` prints."""
    if isinstance(logs, (str, os.PathLike)):
        paths = [os.fspath(logs)]
    elif isinstance(logs, Iterable) and not isinstance(logs, (bytes, Mapping)):
        paths = [p if isinstance(p, str) else os.fspath(p) for p in logs]
    else:
        raise InvalidArgumentError(
            f"logs is a log's path or a list of them, not {type(logs).__name__}"
        )
    report: Dict[str, Any] = _agentmesh.check_policy(_policy_arg(policy), paths)
    return report


def verify_log(path: PathLike) -> Dict[str, Any]:
    """Verify the hash chain and structure of a log, repairing a torn tail (it takes the
    writer lock and may write); the report as a dict (``repaired`` says what was mended).
    :func:`check_log` never writes."""
    report: Dict[str, Any] = _agentmesh.verify_log(os.fspath(path))
    return report


def check_log(path: PathLike) -> Dict[str, Any]:
    """Verify a log without writing anything (a read-only file system, a log whose writer is
    running): the report of :func:`verify_log`, with a damaged tail reported in ``tornAt``
    instead of repaired."""
    report: Dict[str, Any] = _agentmesh.check_log(os.fspath(path))
    return report


def anchor(path: PathLike, key: Optional[Union[bytes, str]] = None) -> Dict[str, Any]:
    """The anchor of a log as it is now: ``{"version", "runId", "records", "bytes", "head"}``,
    plus ``"mac"`` when ``key`` (key material: bytes, or a str taken as UTF-8) is given. Keep
    it somewhere the log's machine cannot rewrite; :func:`verify_anchor` then detects a log
    cut short or edited with its chain recomputed. Read-only."""
    result: Dict[str, Any] = _agentmesh.anchor(os.fspath(path), key)
    return result


def verify_anchor(
    path: PathLike, anchor: Union[Mapping[str, Any], str], key: Optional[Union[bytes, str]] = None
) -> Dict[str, Any]:
    """Check a log (as :func:`check_log` does) against an ``anchor`` taken earlier (its dict
    or JSON text); a keyed anchor needs its ``key``. Records appended since are fine. Raises
    :class:`LogTruncatedError` or :class:`LogHeadMismatchError` (``field``, ``expected``,
    ``found``); returns the report otherwise."""
    if isinstance(anchor, Mapping) and not isinstance(anchor, dict):
        anchor = dict(anchor)
    report: Dict[str, Any] = _agentmesh.verify_anchor(os.fspath(path), anchor, key)
    return report


def read_header(path: PathLike) -> Dict[str, Any]:
    """The log header."""
    result: Dict[str, Any] = _agentmesh.read_header(os.fspath(path))
    return result


def read_log(path: PathLike) -> Iterator[Dict[str, Any]]:
    """The events of a log in seq order (canonical form: no ``meta``, ``prev``, ``hash``),
    streamed: memory stays flat whatever the log's size. A log that cannot be opened raises
    here; damage found further on raises when the iteration reaches it."""
    events: Iterator[Dict[str, Any]] = _agentmesh.read_log(os.fspath(path))
    return events


def history(path: PathLike) -> Iterator[Dict[str, Any]]:
    """The run's state (as :func:`state_at` gives it) at seq 1, after every step and at the
    end of the log, in one pass over it, streamed."""
    states: Iterator[Dict[str, Any]] = _agentmesh.history(os.fspath(path))
    return states


def canonical_log(path: PathLike) -> bytes:
    """The canonical log bytes (header, then events by seq), identical across hosts."""
    return bytes(_agentmesh.canonical_log(os.fspath(path)))


def fingerprint(path: PathLike) -> str:
    """blake3 (hex) of the canonical log."""
    return str(_agentmesh.fingerprint(os.fspath(path)))


def usage_report(path: PathLike) -> Dict[str, Any]:
    """What the run in a log spent, computed from its events: ``{"runId", "total", "byNode",
    "byAgent", "byTool", "byModel"}`` and, for a fork, ``"inherited"`` — what the events
    copied from its parent record, which the parent spent and ``total`` does not count. Each
    bucket has ``inputTokens``, ``outputTokens``, ``cachedInputTokens``,
    ``cacheWriteTokens``, ``reasoningTokens``, ``attempts`` (agent and tool attempts that
    ended, failed ones included) and ``reported`` (those that reported usage). Read-only;
    :attr:`RunResult.usage` gives the same for a run just driven."""
    report: Dict[str, Any] = _agentmesh.usage_report(os.fspath(path))
    return report


def replay(path: PathLike, workflow: Optional[Workflow] = None) -> Dict[str, Any]:
    """Re-drive a log without calling agents (against ``workflow``, or the recorded one).
    Raises :class:`NondeterminismError` at the first divergence."""
    native = workflow._native if workflow is not None else None
    report: Dict[str, Any] = _agentmesh.replay(os.fspath(path), native)
    return report


def state_at(path: PathLike, seq: int) -> Dict[str, Any]:
    """The state of the run as of ``seq`` (``forkPoint`` says whether ``fork`` may start there)."""
    state: Dict[str, Any] = _agentmesh.state_at(os.fspath(path), seq)
    return state


def recorded_workflow(path: PathLike) -> Workflow:
    """The workflow recorded in a log."""
    return Workflow(_agentmesh.recorded_workflow(os.fspath(path)))


def error_codes() -> List[str]:
    """Every stable error code of the core."""
    return list(_agentmesh.error_codes())


__all__ = [
    "Telemetry",
    "route_logs",
    "export_log",
    "export_otlp",
    "Activation",
    "ActivationError",
    "AsyncLlmStream",
    "AsyncRunStream",
    "AgentFailedError",
    "AgentMeshError",
    "AgentMeshIOError",
    "AgentMeshWarning",
    "AgentTimeoutError",
    "CallTicket",
    "CancelToken",
    "InternalError",
    "InvalidArgumentError",
    "Item",
    "InvalidCompletionError",
    "InvalidOutputError",
    "InvalidWorkflowError",
    "LimitExceededError",
    "LlmReply",
    "LlmStream",
    "LogCorruptError",
    "LogHeadMismatchError",
    "LogTruncatedError",
    "Mesh",
    "NondeterminismError",
    "Output",
    "Policy",
    "PolicyDeniedError",
    "PolicyInvalidError",
    "BudgetExceededError",
    "ProviderError",
    "RawJson",
    "ReexecReport",
    "Retry",
    "RunCancelledError",
    "RunExistsError",
    "RunResult",
    "RunStream",
    "UnknownAgentError",
    "Workflow",
    "WorkflowBuilder",
    "anchor",
    "canonical_log",
    "check_log",
    "check_policy",
    "error_codes",
    "fingerprint",
    "history",
    "read_header",
    "read_log",
    "recorded_workflow",
    "redact",
    "replay",
    "state_at",
    "usage_report",
    "verify_anchor",
    "verify_log",
]
