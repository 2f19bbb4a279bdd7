"""``Workflow``: a validated workflow definition (parsed and validated by the core)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _agentmesh
from ._json import encode
from .errors import InvalidWorkflowError


class Workflow:
    """A workflow the core has parsed and validated. Construction raises
    :class:`~agentmesh.errors.InvalidWorkflowError` (with ``node`` and ``field``) when invalid."""

    __slots__ = ("_native",)

    def __init__(self, native: "_agentmesh.NativeWorkflow") -> None:
        self._native = native

    @classmethod
    def from_json(cls, text: str) -> "Workflow":
        if not isinstance(text, str):
            raise InvalidWorkflowError(f"workflow JSON must be str, not {type(text).__name__}")
        return cls(_agentmesh.NativeWorkflow.from_json(text))

    @classmethod
    def from_dict(cls, spec: Dict[str, Any]) -> "Workflow":
        text, why = encode(spec)
        if text is None:
            raise InvalidWorkflowError(f"workflow is not JSON data: {why}")
        return cls.from_json(text)

    @staticmethod
    def builder(name: str) -> "WorkflowBuilder":
        """Build a workflow in code: ``Workflow.builder("w").agent("a", "writer").build()``."""
        return WorkflowBuilder(name)

    @classmethod
    def from_file(cls, path: Union[str, "os.PathLike[str]"]) -> "Workflow":
        return cls(_agentmesh.NativeWorkflow.from_file(os.fspath(path)))

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def hash(self) -> str:
        """blake3 of the canonical workflow JSON, as recorded in log headers."""
        return self._native.hash

    def to_json(self) -> str:
        return self._native.to_json()

    def to_dict(self) -> Dict[str, Any]:
        result: Dict[str, Any] = json.loads(self._native.to_json())
        return result

    def node_ids(self) -> List[str]:
        return self._native.node_ids()

    def agent_names(self) -> List[str]:
        return self._native.agent_names()

    def tool_names(self) -> List[str]:
        return self._native.tool_names()

    def __repr__(self) -> str:
        return f"Workflow(name={self.name!r}, hash={self.hash[:12]!r})"


@dataclass(frozen=True)
class Retry:
    """Retry policy of an agent or tool node (``retry`` in the workflow JSON)."""

    max_attempts: int
    backoff_ms: int = 0
    backoff_multiplier: float = 1

    def _spec(self) -> Dict[str, Any]:
        spec: Dict[str, Any] = {"maxAttempts": self.max_attempts}
        if self.backoff_ms:
            spec["backoffMs"] = self.backoff_ms
        if self.backoff_multiplier != 1:
            spec["backoffMultiplier"] = self.backoff_multiplier
        return spec


class WorkflowBuilder:
    """Adds nodes in declaration order; :meth:`build` validates like JSON input. Each method
    returns the builder, so calls chain. Options are keyword-only and mirror the JSON fields
    (``after``, ``timeout_ms``, ``retry``, ``max_visits``)."""

    def __init__(self, name: str) -> None:
        self._spec: Dict[str, Any] = {"name": name, "nodes": []}

    def _node(self, node: Dict[str, Any], after: Sequence[str], max_visits: Optional[int]) -> "WorkflowBuilder":
        if isinstance(after, str):
            after = [after]  # a lone id, not its characters
        if after:
            node["after"] = list(after)
        if max_visits is not None:
            node["maxVisits"] = max_visits
        self._spec["nodes"].append(node)
        return self

    def _work(
        self,
        node: Dict[str, Any],
        after: Sequence[str],
        timeout_ms: Optional[int],
        retry: Optional[Retry],
        max_visits: Optional[int],
    ) -> "WorkflowBuilder":
        if timeout_ms is not None:
            node["timeoutMs"] = timeout_ms
        if retry is not None:
            if not isinstance(retry, Retry):
                raise InvalidWorkflowError(
                    f"node '{node['id']}', field 'retry': must be an agentmesh.Retry, "
                    f"not {type(retry).__name__}",
                    details={"node": node["id"], "field": "retry"},
                )
            node["retry"] = retry._spec()
        return self._node(node, after, max_visits)

    def agent(
        self,
        id: str,
        agent: str,
        *,
        after: Sequence[str] = (),
        timeout_ms: Optional[int] = None,
        retry: Optional[Retry] = None,
        max_visits: Optional[int] = None,
    ) -> "WorkflowBuilder":
        """An agent node run by the agent registered as ``agent``."""
        return self._work({"id": id, "type": "agent", "agent": agent}, after, timeout_ms, retry, max_visits)

    def tool(
        self,
        id: str,
        tool: str,
        *,
        after: Sequence[str] = (),
        timeout_ms: Optional[int] = None,
        retry: Optional[Retry] = None,
        max_visits: Optional[int] = None,
    ) -> "WorkflowBuilder":
        """A tool node run by the tool registered as ``tool``."""
        return self._work({"id": id, "type": "tool", "tool": tool}, after, timeout_ms, retry, max_visits)

    def human(
        self,
        id: str,
        prompt: Optional[str] = None,
        *,
        after: Sequence[str] = (),
        max_visits: Optional[int] = None,
    ) -> "WorkflowBuilder":
        """A human-approval node: the run waits until ``Mesh.resume`` gets its decision."""
        node: Dict[str, Any] = {"id": id, "type": "human"}
        if prompt is not None:
            node["prompt"] = prompt
        return self._node(node, after, max_visits)

    def branch(
        self,
        id: str,
        cases: Sequence[Tuple[Mapping[str, Any], str]] = (),
        default: Optional[str] = None,
        *,
        after: Sequence[str] = (),
        max_visits: Optional[int] = None,
    ) -> "WorkflowBuilder":
        """A branch: ``cases`` are ``(condition, goto)`` pairs tried in order (conditions as in
        the workflow JSON), ``default`` the target when none holds."""
        node: Dict[str, Any] = {"id": id, "type": "branch"}
        if cases:
            node["cases"] = [{"when": when, "goto": goto} for when, goto in cases]
        if default is not None:
            node["default"] = default
        return self._node(node, after, max_visits)

    def max_steps(self, max_steps: int) -> "WorkflowBuilder":
        """Bound the number of supersteps of a run."""
        self._spec["maxSteps"] = max_steps
        return self

    def build(self) -> Workflow:
        """Validate and compile; :class:`InvalidWorkflowError` names the node and field."""
        return Workflow.from_dict(self._spec)
