"""``Workflow``: a validated workflow definition (parsed and validated by the core)."""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from . import _agentmesh
from ._json import encode
from .errors import AgentMeshWarning, InvalidWorkflowError

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


class Workflow:
    """A workflow the core has parsed and validated. Construction raises
    :class:`~agentmesh.errors.InvalidWorkflowError` (with ``node`` and ``field``) when invalid."""

    __slots__ = ("_native",)

    def __init__(self, native: "_agentmesh.NativeWorkflow") -> None:
        self._native = native

    @classmethod
    def _loaded(cls, native: "_agentmesh.NativeWorkflow") -> "Workflow":
        """A workflow the user wrote (JSON, a file, a builder): its warnings are shown now,
        as :class:`~agentmesh.AgentMeshWarning`. One read back from a log is not warned
        about again."""
        workflow = cls(native)
        hints = native.warnings()
        if hints:
            level = _caller_level()
            for hint in hints:
                text = f"workflow '{native.name}': {hint}"
                warnings.warn(text, AgentMeshWarning, stacklevel=level)
        return workflow

    @classmethod
    def from_json(cls, text: str) -> "Workflow":
        if not isinstance(text, str):
            raise InvalidWorkflowError(f"workflow JSON must be str, not {type(text).__name__}")
        return cls._loaded(_agentmesh.NativeWorkflow.from_json(text))

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
        return cls._loaded(_agentmesh.NativeWorkflow.from_file(os.fspath(path)))

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

    @property
    def warnings(self) -> List[str]:
        """Hints about a valid workflow that probably does not do what its author meant: a
        node whose every ``after`` entry is a branch, and that has no ``reads``, receives no
        data (a branch has no output). Loading or building the workflow warns with each
        (:class:`~agentmesh.AgentMeshWarning`); they never change a run."""
        return self._native.warnings()

    def __repr__(self) -> str:
        return f"Workflow(name={self.name!r}, hash={self.hash[:12]!r})"


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package, so a warning points at
    the user's line whichever entry point (``from_dict``, ``build``...) it came through."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and _in_package(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    return level


def _in_package(filename: str) -> bool:
    return os.path.dirname(os.path.abspath(filename)) == _PACKAGE


@dataclass(frozen=True)
class Retry:
    """Retry policy of an agent or tool node (``retry`` in the workflow JSON).

    ``non_retryable``: error types never retried (``nonRetryable``; a lone ``str`` is one
    type), besides the programming errors (``TypeError``, ``AttributeError``, ``KeyError``,
    ...) that are never retried unless ``retry_programming_errors`` is set
    (``retryProgrammingErrors``)."""

    max_attempts: int
    backoff_ms: int = 0
    backoff_multiplier: float = 1
    non_retryable: Sequence[str] = ()
    retry_programming_errors: bool = False

    def __post_init__(self) -> None:
        types: Any = self.non_retryable
        # A lone type name, not its characters; a tuple keeps the policy hashable. Anything
        # else goes to the core as given, which names the field it rejects.
        if isinstance(types, str):
            object.__setattr__(self, "non_retryable", (types,))
        elif isinstance(types, (list, tuple)):
            object.__setattr__(self, "non_retryable", tuple(types))

    def _spec(self) -> Dict[str, Any]:
        spec: Dict[str, Any] = {"maxAttempts": self.max_attempts}
        if self.backoff_ms:
            spec["backoffMs"] = self.backoff_ms
        if self.backoff_multiplier != 1:
            spec["backoffMultiplier"] = self.backoff_multiplier
        types: Any = self.non_retryable
        if types != ():
            spec["nonRetryable"] = list(types) if isinstance(types, tuple) else types
        if self.retry_programming_errors is not False:
            spec["retryProgrammingErrors"] = self.retry_programming_errors
        return spec


class WorkflowBuilder:
    """Adds nodes in declaration order; :meth:`build` validates like JSON input. Each method
    returns the builder, so calls chain. Options are keyword-only and mirror the JSON fields
    (``after``, ``timeout_ms``, ``retry``, ``max_visits``, ``reads``, ``output``; a map's
    ``over``, ``item_key``, ``max_items``, ``concurrency``, ``on_item_failure``)."""

    def __init__(self, name: str) -> None:
        self._spec: Dict[str, Any] = {"name": name, "nodes": []}

    def _node(
        self,
        node: Dict[str, Any],
        after: Sequence[str],
        max_visits: Optional[int],
        reads: Sequence[str] = (),
        output: Optional[Mapping[str, Any]] = None,
    ) -> "WorkflowBuilder":
        if after:
            node["after"] = _ids(after)
        if max_visits is not None:
            node["maxVisits"] = max_visits
        if reads:
            node["reads"] = _ids(reads)
        if output is not None:
            # A copy, so a later change to the caller's dict does not change this node; a
            # value that is not a mapping goes to the core as given, which names the field.
            node["output"] = dict(output) if isinstance(output, Mapping) else output
        self._spec["nodes"].append(node)
        return self

    def _work(
        self,
        node: Dict[str, Any],
        after: Sequence[str],
        timeout_ms: Optional[int],
        retry: Optional[Retry],
        max_visits: Optional[int],
        reads: Sequence[str],
        output: Optional[Mapping[str, Any]],
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
        return self._node(node, after, max_visits, reads, output)

    def agent(
        self,
        id: str,
        agent: str,
        *,
        after: Sequence[str] = (),
        timeout_ms: Optional[int] = None,
        retry: Optional[Retry] = None,
        max_visits: Optional[int] = None,
        reads: Sequence[str] = (),
        output: Optional[Mapping[str, Any]] = None,
    ) -> "WorkflowBuilder":
        """An agent node run by the agent registered as ``agent``. ``reads``: paths of
        earlier values its activations get in ``act.reads`` (``/outputs/critic/notes``,
        ``/visits/draft``, ``/input/topic``) besides the outputs of ``after``.

        ``output``: the contract every output must meet, ``{"schema": <JSON Schema>,
        "repair": False}``. An output that does not match fails the attempt with the
        retryable ``OutputSchemaError`` naming the path (the retry's ``act.last_failure``);
        with ``"repair": True`` a text output is first parsed as almost-JSON (code fences,
        single quotes, trailing commas, ...) and the JSON recorded instead."""
        node = {"id": id, "type": "agent", "agent": agent}
        return self._work(node, after, timeout_ms, retry, max_visits, reads, output)

    def tool(
        self,
        id: str,
        tool: str,
        *,
        after: Sequence[str] = (),
        timeout_ms: Optional[int] = None,
        retry: Optional[Retry] = None,
        max_visits: Optional[int] = None,
        reads: Sequence[str] = (),
        output: Optional[Mapping[str, Any]] = None,
    ) -> "WorkflowBuilder":
        """A tool node run by the tool registered as ``tool`` (``reads`` and ``output`` as
        for agents)."""
        node = {"id": id, "type": "tool", "tool": tool}
        return self._work(node, after, timeout_ms, retry, max_visits, reads, output)

    def map(
        self,
        id: str,
        *,
        over: str,
        agent: Optional[str] = None,
        tool: Optional[str] = None,
        item_key: Optional[str] = None,
        max_items: Optional[int] = None,
        concurrency: Optional[int] = None,
        on_item_failure: Optional[Literal["fail", "collect"]] = None,
        after: Sequence[str] = (),
        timeout_ms: Optional[int] = None,
        retry: Optional[Retry] = None,
        max_visits: Optional[int] = None,
        reads: Sequence[str] = (),
        output: Optional[Mapping[str, Any]] = None,
    ) -> "WorkflowBuilder":
        """A map node: one activation of ``agent`` (or one call of ``tool``: name exactly one)
        per item of the array at ``over`` (a path like ``/outputs/plan/questions`` of a node
        it runs after, or ``/input/urls``), all in one step; ``act.item`` holds the item. Its
        output is the array of the items' outputs, in item order.

        ``item_key``: a JSON Pointer into each item (``/id``) whose value, unique among the
        items, is its ``act.item.key``. ``max_items``: most items the array may hold (1000
        when not set; more fails the run with ``LIMIT_EXCEEDED``). ``concurrency``: most
        items handed out at once. ``on_item_failure``: ``"fail"`` (the default: an item that
        fails for good fails the run) or ``"collect"`` (the output holds ``{"ok": True,
        "output": ...}`` or ``{"ok": False, "error": {"type", "message"}}`` per item).
        ``retry``, ``timeout_ms`` and ``output`` apply to each item: an item whose output
        does not match is re-asked alone."""
        node: Dict[str, Any] = {"id": id, "type": "map"}
        if agent is not None:
            node["agent"] = agent
        if tool is not None:
            node["tool"] = tool
        node["over"] = over
        if item_key is not None:
            node["itemKey"] = item_key
        if max_items is not None:
            node["maxItems"] = max_items
        if concurrency is not None:
            node["concurrency"] = concurrency
        if on_item_failure is not None:
            node["onItemFailure"] = on_item_failure
        return self._work(node, after, timeout_ms, retry, max_visits, reads, output)

    def human(
        self,
        id: str,
        prompt: Optional[str] = None,
        *,
        after: Sequence[str] = (),
        max_visits: Optional[int] = None,
        reads: Sequence[str] = (),
        output: Optional[Mapping[str, Any]] = None,
    ) -> "WorkflowBuilder":
        """A human-approval node: the run waits until ``Mesh.resume`` gets its decision
        (``reads`` as for agents: its waiting activation's ``reads``; ``output``: the
        contract the decision must meet, as for agents, without a retry to re-ask)."""
        node: Dict[str, Any] = {"id": id, "type": "human"}
        if prompt is not None:
            node["prompt"] = prompt
        return self._node(node, after, max_visits, reads, output)

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


def _ids(values: Sequence[str]) -> Any:
    """A list of node ids or paths (``after``, ``reads``): a lone ``str`` is one, not its
    characters. A value that is not a collection goes to the core as given, which names the
    field it rejects."""
    if isinstance(values, str):
        return [values]
    if isinstance(values, Iterable) and not isinstance(values, (bytes, Mapping)):
        return list(values)
    return values
