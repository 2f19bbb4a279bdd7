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

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Union

from . import _agentmesh
from ._driver import (
    Activation,
    ActivationError,
    CancelToken,
    Mesh,
    Output,
    RunResult,
)
from ._json import RawJson
from ._workflow import Retry, Workflow, WorkflowBuilder
from .errors import (
    AgentFailedError,
    AgentMeshError,
    AgentMeshIOError,
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
    RunCancelledError,
    RunExistsError,
    UnknownAgentError,
)

PathLike = Union[str, "os.PathLike[str]"]

__version__ = "0.1.0"


def verify_log(path: PathLike) -> Dict[str, Any]:
    """Verify the hash chain of a log (repairing a torn tail); the report as a dict."""
    report: Dict[str, Any] = json.loads(_agentmesh.verify_log(os.fspath(path)))
    return report


def read_header(path: PathLike) -> Dict[str, Any]:
    """The log header."""
    result: Dict[str, Any] = json.loads(_agentmesh.read_header(os.fspath(path)))
    return result


def read_log(path: PathLike) -> Iterator[Dict[str, Any]]:
    """The events of a log in seq order (canonical form: no ``meta``, ``prev``, ``hash``)."""
    _, events = _agentmesh.read_log(os.fspath(path))
    return (json.loads(e) for e in events)


def canonical_log(path: PathLike) -> bytes:
    """The canonical log bytes (header, then events by seq), identical across hosts."""
    return bytes(_agentmesh.canonical_log(os.fspath(path)))


def fingerprint(path: PathLike) -> str:
    """blake3 (hex) of the canonical log."""
    return str(_agentmesh.fingerprint(os.fspath(path)))


def replay(path: PathLike, workflow: Optional[Workflow] = None) -> Dict[str, Any]:
    """Re-drive a log without calling agents (against ``workflow``, or the recorded one).
    Raises :class:`NondeterminismError` at the first divergence."""
    native = workflow._native if workflow is not None else None
    report: Dict[str, Any] = json.loads(_agentmesh.replay(os.fspath(path), native))
    return report


def state_at(path: PathLike, seq: int) -> Dict[str, Any]:
    """The state of the run as of ``seq`` (``forkPoint`` says whether ``fork`` may start there)."""
    state: Dict[str, Any] = json.loads(_agentmesh.state_at(os.fspath(path), seq))
    return state


def recorded_workflow(path: PathLike) -> Workflow:
    """The workflow recorded in a log."""
    return Workflow(_agentmesh.recorded_workflow(os.fspath(path)))


def error_codes() -> List[str]:
    """Every stable error code of the core."""
    return list(_agentmesh.error_codes())


__all__ = [
    "Activation",
    "ActivationError",
    "AgentFailedError",
    "AgentMeshError",
    "AgentMeshIOError",
    "AgentTimeoutError",
    "CancelToken",
    "InternalError",
    "InvalidArgumentError",
    "InvalidCompletionError",
    "InvalidOutputError",
    "InvalidWorkflowError",
    "LimitExceededError",
    "LogCorruptError",
    "LogHeadMismatchError",
    "LogTruncatedError",
    "Mesh",
    "NondeterminismError",
    "Output",
    "RawJson",
    "Retry",
    "RunCancelledError",
    "RunExistsError",
    "RunResult",
    "UnknownAgentError",
    "Workflow",
    "WorkflowBuilder",
    "canonical_log",
    "error_codes",
    "fingerprint",
    "read_header",
    "read_log",
    "recorded_workflow",
    "replay",
    "state_at",
    "verify_log",
]
