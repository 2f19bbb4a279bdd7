"""Exceptions raised by AgentMesh.

Every error carries the stable code of the core (``exc.code``), the same string the Rust and
Node APIs use. The classes are declared once, in ``_TABLE``; the native module raises through
:func:`_from_native`, so a code maps to exactly one class everywhere.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type


class AgentMeshError(Exception):
    """Base class of every AgentMesh error. ``code`` is the stable error code."""

    code: str = "INTERNAL"

    def __init__(self, message: str, *, details: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        #: Structured facts (node, field, seq, offset...) when the core gives them.
        self.details: Dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class InvalidWorkflowError(AgentMeshError):
    """The workflow definition is invalid. ``node`` and ``field`` say where."""

    code = "INVALID_WORKFLOW"

    @property
    def node(self) -> Optional[str]:
        return self.details.get("node")

    @property
    def field(self) -> Optional[str]:
        return self.details.get("field")


class InvalidArgumentError(AgentMeshError):
    code = "INVALID_ARGUMENT"


class InvalidOutputError(AgentMeshError):
    """An activation result is not JSON data (NaN, a set, bytes, a non-string key...)."""

    code = "INVALID_OUTPUT"

    @property
    def node(self) -> Optional[str]:
        return self.details.get("node")


class InvalidCompletionError(AgentMeshError):
    code = "INVALID_COMPLETION"


class NondeterminismError(AgentMeshError):
    """A re-driven run disagrees with its log at ``seq``."""

    code = "NONDETERMINISM"

    @property
    def seq(self) -> Optional[int]:
        return self.details.get("seq")

    @property
    def node(self) -> Optional[str]:
        return self.details.get("node")

    @property
    def field(self) -> Optional[str]:
        return self.details.get("field")

    @property
    def expected(self) -> Optional[str]:
        """What the log holds, as JSON text."""
        return self.details.get("expected")

    @property
    def actual(self) -> Optional[str]:
        """What the workflow produced, as JSON text."""
        return self.details.get("actual")


class LogCorruptError(AgentMeshError):
    code = "LOG_CORRUPT"

    @property
    def offset(self) -> Optional[int]:
        """Byte offset of the first damaged record."""
        return self.details.get("offset")


class _AnchorMismatch(AgentMeshError):
    """How a log differs from its anchor: ``field`` (``records``, ``bytes``, ``head``,
    ``mac``, ``runId``), what the anchor says (``expected``) and what the log gives
    (``found``)."""

    @property
    def field(self) -> Optional[str]:
        return self.details.get("field")

    @property
    def expected(self) -> Optional[str]:
        return self.details.get("expected")

    @property
    def found(self) -> Optional[str]:
        return self.details.get("found")


class LogTruncatedError(_AnchorMismatch):
    """The log holds fewer records than an anchor taken earlier."""

    code = "LOG_TRUNCATED"


class LogHeadMismatchError(_AnchorMismatch):
    """The log's records do not hash to an anchor taken earlier (edited, chain recomputed)."""

    code = "LOG_HEAD_MISMATCH"


class RunExistsError(AgentMeshError):
    code = "RUN_EXISTS"


class AgentFailedError(AgentMeshError):
    """The run failed because an activation failed.

    Raised by ``Mesh.run``/``resume``/``fork`` when the failing activation raised a Python
    exception (that exception is ``__cause__``); ``result`` is the run's ``RunResult``.
    """

    code = "AGENT_FAILED"

    def __init__(
        self,
        message: str,
        *,
        details: Optional[Dict[str, Any]] = None,
        result: Any = None,
    ) -> None:
        super().__init__(message, details=details)
        self.result = result

    @property
    def node(self) -> Optional[str]:
        return self.details.get("node")


class AgentTimeoutError(AgentMeshError):
    code = "TIMEOUT"


class LimitExceededError(AgentMeshError):
    code = "LIMIT_EXCEEDED"


class RunCancelledError(AgentMeshError):
    code = "CANCELLED"


class UnknownAgentError(AgentMeshError):
    code = "UNKNOWN_AGENT"


class ProviderError(AgentMeshError):
    """A call an agent made (``act.llm``, ``act.tool``) failed — now, or when the log
    recorded it (a resumed run gets the recorded error again). ``error_type`` is the
    provider's or tool's error type (``RateLimited``, ``Timeout``, ``BadRequest``, a host
    function's exception class name...), ``status`` the HTTP status when a service answered,
    ``retryable`` whether trying again may help."""

    code = "PROVIDER_ERROR"

    @property
    def error_type(self) -> Optional[str]:
        return self.details.get("type")

    @property
    def status(self) -> Optional[int]:
        return self.details.get("status")

    @property
    def retryable(self) -> Optional[bool]:
        return self.details.get("retryable")


class PolicyDeniedError(AgentMeshError):
    """A refusal by a policy. Either a tool call the tool's rules refuse (the agent is not on
    the tool's allowlist: ``Mesh.call_tool(..., agents=[...])``, ``Mesh.mcp(...,
    agents=[...])``), raised by ``act.tool`` before anything is recorded or run; or a block
    by the run's policy (``Mesh(policy=...)``, docs/policy.md): a call whose request, or
    whose tool, the policy refuses (``callDenied`` is recorded, nothing is sent), a response
    it blocks (recorded as the call's error), an output it blocks (the run fails).

    ``verdict`` is the policy's verdict when the error carries it (``rule``, ``action``,
    ``kind``, ``path``, ``count``, ``digest``, ``agent``), ``rule`` its rule id (``tools``
    for the tool allowlist). The message names the rule and what was found, never the
    content."""

    code = "POLICY_DENIED"

    @property
    def verdict(self) -> Optional[Dict[str, Any]]:
        return dict(self.details) if "rule" in self.details else None

    @property
    def rule(self) -> Optional[str]:
        return self.details.get("rule")


class PolicyInvalidError(AgentMeshError):
    """A policy file or dict that cannot be loaded (docs/policy.md): ``rule`` (the rule's
    id), ``field`` (``rules[2].regex``), ``line`` and ``column`` (in the file) say where,
    each ``None`` when it does not apply. Nothing is loaded."""

    code = "POLICY_INVALID"

    @property
    def rule(self) -> Optional[str]:
        return self.details.get("rule")

    @property
    def field(self) -> Optional[str]:
        return self.details.get("field")

    @property
    def line(self) -> Optional[int]:
        return self.details.get("line")

    @property
    def column(self) -> Optional[int]:
        return self.details.get("column")


class BudgetExceededError(AgentMeshError):
    """A budget refused a call before anything was sent (a ``callDenied`` record), or the run
    failed on that refusal. ``details`` names the budget: ``scope`` (``run``, ``node``,
    ``agent``), ``dimension``, ``limit``, ``spent``, ``requested`` and ``left``, and ``node``
    and ``agent`` when set (each also a property)."""

    code = "BUDGET_EXCEEDED"

    @property
    def scope(self) -> Optional[str]:
        return self.details.get("scope")

    @property
    def dimension(self) -> Optional[str]:
        return self.details.get("dimension")

    @property
    def limit(self) -> Optional[int]:
        return self.details.get("limit")

    @property
    def spent(self) -> Optional[int]:
        return self.details.get("spent")

    @property
    def requested(self) -> Optional[int]:
        """What the call needed in ``dimension`` (at its smallest allowed ``maxTokens``)."""
        return self.details.get("requested")

    @property
    def left(self) -> Optional[int]:
        """What was left of the activation's lease in ``dimension``."""
        return self.details.get("left")

    @property
    def node(self) -> Optional[str]:
        """The node whose call was refused (also the budget's, for scope ``node``)."""
        return self.details.get("node")

    @property
    def agent(self) -> Optional[str]:
        """The agent name whose budget binds (scope ``agent``)."""
        return self.details.get("agent")


class AgentMeshIOError(AgentMeshError):
    code = "IO"


class InternalError(AgentMeshError):
    code = "INTERNAL"


class AgentMeshWarning(UserWarning):
    """A valid workflow that probably does not do what its author meant (a node whose every
    ``after`` entry is a branch receives no deps), warned about when it is loaded or built.
    It never changes a run; filter it as any warning (``warnings.simplefilter("error",
    AgentMeshWarning)`` makes it an error)."""


_TABLE: Dict[str, Type[AgentMeshError]] = {
    cls.code: cls
    for cls in (
        InvalidWorkflowError,
        InvalidArgumentError,
        InvalidOutputError,
        InvalidCompletionError,
        NondeterminismError,
        LogCorruptError,
        LogTruncatedError,
        LogHeadMismatchError,
        RunExistsError,
        AgentFailedError,
        AgentTimeoutError,
        LimitExceededError,
        RunCancelledError,
        UnknownAgentError,
        ProviderError,
        PolicyDeniedError,
        PolicyInvalidError,
        BudgetExceededError,
        AgentMeshIOError,
        InternalError,
    )
}


def error_class(code: str) -> Type[AgentMeshError]:
    """The exception class for a stable code (``InternalError`` for an unknown one)."""
    return _TABLE.get(code, InternalError)


def _from_native(code: str, message: str, details_json: str) -> AgentMeshError:
    details = json.loads(details_json)
    cls = error_class(code)
    if cls is InternalError and code != "INTERNAL":
        message = f"unknown error code {code}: {message}"
    return cls(message, details=details if isinstance(details, dict) else None)
