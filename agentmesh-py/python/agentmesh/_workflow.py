"""``Workflow``: a validated workflow definition (parsed and validated by the core)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Union

from . import _agentmesh
from ._json import problem
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
        why = problem(spec)
        if why is not None:
            raise InvalidWorkflowError(f"workflow is not JSON data: {why}")
        return cls.from_json(json.dumps(spec, allow_nan=False, ensure_ascii=False))

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
