"""The Python host driver: ``Mesh`` runs workflows with Python agents on a thread pool.

It follows the Rust driver (``agentmesh-core/src/driver/mod.rs``): poll the run, execute a
step's activations in parallel, complete them as they arrive (the core puts each completion at
its reserved seq, so finish order never changes the canonical log), enforce ``timeoutMs``,
honour cancellation, and return when only human decisions are outstanding.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from . import _agentmesh
from ._json import RawJson, dumps, problem
from ._workflow import Workflow
from .errors import (
    AgentFailedError,
    InternalError,
    InvalidArgumentError,
    InvalidOutputError,
    UnknownAgentError,
)

PathLike = Union[str, "os.PathLike[str]"]
AgentFn = Callable[["Activation"], Any]

_FINISHED = ("completed", "failed", "cancelled")


class ActivationError(Exception):
    """Raise from an agent to fail its activation with an exact ``type``, ``message`` and
    ``retryable`` flag. Any other exception is recorded as its class name and ``str()``,
    retryable."""

    def __init__(self, error_type: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class Output:
    """An agent result with token usage; a plain return value means no usage.

    ``usage`` uses the log's keys: ``{"inputTokens": int, "outputTokens": int}`` (each
    defaulting to 0)."""

    value: Any
    usage: Optional[Dict[str, int]] = None


class CancelToken:
    """Cancels a run from any thread. The first reason wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: Optional[str] = None
        self._queue: Optional["queue.Queue[Any]"] = None

    def cancel(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self._reason is None:
                self._reason = str(reason)
            q = self._queue
        if q is not None:
            q.put(("cancel",))

    @property
    def reason(self) -> Optional[str]:
        with self._lock:
            return self._reason

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def _attach(self, q: Optional["queue.Queue[Any]"]) -> None:
        with self._lock:
            self._queue = q


@dataclass(frozen=True)
class Activation:
    """One unit of work handed to an agent, tool or person (fields as in the core)."""

    id: int
    run_id: str
    node: str
    kind: str
    name: str
    attempt: int
    visit: int
    delay_ms: int
    timeout_ms: Optional[int]
    prompt: Optional[str]
    seed: int
    step: int
    input: Any
    deps: Dict[str, Any]
    _token: Optional[CancelToken] = field(default=None, repr=False, compare=False)

    def cancel_run(self, reason: str = "cancelled") -> None:
        """Cancel the run. Takes effect before this activation's own result is recorded."""
        if self._token is None:
            raise InvalidArgumentError("this activation is not being driven by a Mesh")
        self._token.cancel(reason)

    @staticmethod
    def _from_wire(d: Dict[str, Any], token: Optional[CancelToken]) -> "Activation":
        return Activation(
            id=d["id"],
            run_id=d["runId"],
            node=d["node"],
            kind=d["kind"],
            name=d["name"],
            attempt=d["attempt"],
            visit=d["visit"],
            delay_ms=d["delayMs"],
            timeout_ms=d.get("timeoutMs"),
            prompt=d.get("prompt"),
            seed=d["seed"],
            step=d["step"],
            input=d["input"],
            deps=d["deps"],
            _token=token,
        )


@dataclass
class RunResult:
    """Where a driven run stopped: ``completed``, ``failed``, ``cancelled`` or ``waiting``."""

    run_id: str
    status: str
    output: Any
    error: Optional[Dict[str, Any]]
    waiting: List[Activation]
    log_path: Optional[str]
    _native: Any = field(repr=False, compare=False, default=None)

    @property
    def fingerprint(self) -> str:
        """blake3 (hex) of the canonical log."""
        if self.log_path is not None:
            return str(_agentmesh.fingerprint(self.log_path))
        return str(self._native.fingerprint())

    def canonical(self) -> bytes:
        """The canonical log bytes."""
        if self.log_path is not None:
            return bytes(_agentmesh.canonical_log(self.log_path))
        return bytes(self._native.canonical())


# A finished activation, as the worker reports it:
# ("ok", output_json, usage_json, duration_us) or
# ("err", type, message, retryable, duration_us, exception or None)
_Done = Tuple[Any, ...]


def _execute(fn: AgentFn, act: Activation) -> _Done:
    if act.delay_ms > 0:
        time.sleep(act.delay_ms / 1000.0)
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1_000_000)

    try:
        result = fn(act)
        usage = None
        if isinstance(result, Output):
            usage, result = result.usage, result.value
        why = problem(result)
        if why is not None:
            raise InvalidOutputError(
                f"node '{act.node}': output is not JSON data: {why}", details={"node": act.node}
            )
        usage_json = None
        if usage is not None:
            why = problem(usage)
            if why is not None:
                raise InvalidOutputError(
                    f"node '{act.node}': usage is not JSON data: {why}", details={"node": act.node}
                )
            usage_json = dumps(usage)
        return ("ok", dumps(result), usage_json, elapsed())
    except ActivationError as e:
        return ("err", e.error_type, e.message, e.retryable, elapsed(), e)
    except InvalidOutputError as e:
        return ("err", "InvalidOutput", e.message, False, elapsed(), e)
    except Exception as e:  # noqa: BLE001 - any agent exception becomes a recorded failure
        return ("err", type(e).__name__, str(e), True, elapsed(), e)
    except BaseException as e:  # noqa: BLE001 - e.g. SystemExit in a worker: never retried
        return ("err", type(e).__name__, str(e), False, elapsed(), e)


class Mesh:
    """Registers Python agents and tools and drives runs.

    ``log_dir=None`` keeps logs in memory (no resume); ``fsync`` is ``"always"``, ``"batch"``
    or ``"never"``.
    """

    def __init__(
        self,
        log_dir: Optional[PathLike] = None,
        fsync: str = "batch",
        max_workers: int = 32,
    ) -> None:
        if fsync not in ("always", "batch", "never"):
            raise InvalidArgumentError(f"fsync must be always, batch or never, not {fsync!r}")
        if not isinstance(max_workers, int) or max_workers < 1:
            raise InvalidArgumentError("max_workers must be a positive int")
        self.log_dir: Optional[str] = os.fspath(log_dir) if log_dir is not None else None
        self.fsync = fsync
        self.max_workers = max_workers
        self._agents: Dict[str, AgentFn] = {}
        self._tools: Dict[str, AgentFn] = {}

    # registration -------------------------------------------------------------------------

    def add_agent(self, name: str, fn: AgentFn) -> None:
        if not callable(fn):
            raise InvalidArgumentError(f"agent {name!r} must be callable")
        self._agents[name] = fn

    def add_tool(self, name: str, fn: AgentFn) -> None:
        if not callable(fn):
            raise InvalidArgumentError(f"tool {name!r} must be callable")
        self._tools[name] = fn

    def agent(self, name: str) -> Callable[[AgentFn], AgentFn]:
        """Decorator: ``@mesh.agent("writer")``."""

        def register(fn: AgentFn) -> AgentFn:
            self.add_agent(name, fn)
            return fn

        return register

    def tool(self, name: str) -> Callable[[AgentFn], AgentFn]:
        """Decorator: ``@mesh.tool("search")``."""

        def register(fn: AgentFn) -> AgentFn:
            self.add_tool(name, fn)
            return fn

        return register

    def _check_registered(self, wf: Any) -> None:
        missing = [f"agent '{n}'" for n in wf.agent_names() if n not in self._agents]
        missing += [f"tool '{n}'" for n in wf.tool_names() if n not in self._tools]
        if missing:
            raise UnknownAgentError(
                f"workflow '{wf.name}' uses {', '.join(missing)}, not registered with this mesh"
            )

    # runs ---------------------------------------------------------------------------------

    def run(
        self,
        workflow: Workflow,
        input: Any = None,
        seed: int = 0,
        run_id: Optional[str] = None,
        tenant: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> RunResult:
        """Start a run and drive it until it finishes or waits for a person.

        Raises :class:`AgentFailedError` (the agent's exception as ``__cause__``, the
        ``RunResult`` as ``.result``) when an agent exception failed the run; other failures
        (timeouts, limits) are returned with ``status == "failed"``.
        """
        if not isinstance(workflow, Workflow):
            raise InvalidArgumentError(f"workflow must be a Workflow, not {type(workflow).__name__}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            raise InvalidArgumentError("seed must be an int in [0, 2**64)")
        self._check_registered(workflow._native)
        why = problem(input)
        if why is not None:
            raise InvalidArgumentError(f"input is not JSON data: {why}")
        native = _agentmesh.NativeRun.start(
            workflow._native,
            dumps(input),
            seed,
            run_id,
            self.log_dir,
            self.fsync,
            tenant,
        )
        return self._drive(native, cancel or CancelToken())

    def resume(
        self,
        log_path: PathLike,
        approvals: Optional[Mapping[str, Any]] = None,
        cancel: Optional[CancelToken] = None,
    ) -> RunResult:
        """Reopen a run from its log, resolve waiting human nodes with ``approvals``
        (node id → output) and drive it on."""
        path = os.fspath(log_path)
        self._check_registered(_agentmesh.recorded_workflow(path))
        approvals = dict(approvals or {})
        texts: Dict[str, str] = {}
        for node, value in approvals.items():
            why = problem(value)
            if why is not None:
                raise InvalidOutputError(
                    f"node '{node}': approval is not JSON data: {why}", details={"node": node}
                )
            texts[node] = dumps(value)
        native = _agentmesh.NativeRun.resume(path, self.fsync)
        try:
            waiting = [a for a in json.loads(native.outstanding()) if a["kind"] == "human"]
            # Check every approval before recording any, so a typo changes nothing.
            resolved = []
            for node, text in texts.items():
                act = next((a for a in waiting if a["node"] == node), None)
                if act is None:
                    names = ", ".join(a["node"] for a in waiting) or "none"
                    raise InvalidArgumentError(
                        f"node '{node}' has no pending human activation (waiting: {names})"
                    )
                resolved.append((act["id"], text))
            for act_id, text in resolved:
                native.complete_ok(act_id, text)
        except BaseException:
            native.close()
            raise
        return self._drive(native, cancel or CancelToken())

    def fork(
        self,
        log_path: PathLike,
        seq: int,
        overrides: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
    ) -> RunResult:
        """Fork the run in ``log_path`` at step end ``seq`` with node outputs replaced, and
        drive the fork."""
        path = os.fspath(log_path)
        self._check_registered(_agentmesh.recorded_workflow(path))
        overrides = dict(overrides or {})
        why = problem(overrides)
        if why is not None:
            raise InvalidArgumentError(f"overrides are not JSON data: {why}")
        native = _agentmesh.NativeRun.fork(
            path, seq, dumps(overrides), run_id, self.log_dir, self.fsync
        )
        return self._drive(native, CancelToken())

    # driving ------------------------------------------------------------------------------

    def _drive(self, native: Any, token: CancelToken) -> RunResult:
        exceptions: Dict[str, BaseException] = {}
        q: "queue.Queue[Any]" = queue.Queue()
        token._attach(q)
        pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="agentmesh")
        try:
            self._loop(native, token, q, pool, exceptions)
        except BaseException:
            # Release the log now; the traceback would keep the run (and its lock) alive.
            native.close()
            raise
        finally:
            token._attach(None)
            # Timed-out agents may still be running: never wait for them, their results
            # go to a queue nobody reads.
            pool.shutdown(wait=False)
        return self._result(native, exceptions)

    def _loop(
        self,
        native: Any,
        token: CancelToken,
        q: "queue.Queue[Any]",
        pool: ThreadPoolExecutor,
        exceptions: Dict[str, BaseException],
    ) -> None:
        # id → (node, deadline or None, timeout_ms)
        in_flight: Dict[int, Tuple[str, Optional[float], Optional[int]]] = {}
        while True:
            reason = token.reason
            if reason is not None:
                native.cancel(reason)
                return
            status = native.status()
            if status in _FINISHED:
                return
            acts = [a for a in json.loads(native.poll()) if a["kind"] != "human"]
            for wire in acts:
                act = Activation._from_wire(wire, token)
                fn = (self._tools if act.kind == "tool" else self._agents)[act.name]
                deadline = None
                if act.timeout_ms is not None:
                    deadline = time.monotonic() + (act.delay_ms + act.timeout_ms) / 1000.0
                in_flight[act.id] = (act.node, deadline, act.timeout_ms)
                pool.submit(lambda fn=fn, act=act: q.put(("done", act.id, _execute(fn, act))))
            if not in_flight:
                status = native.status()
                if status == "waiting":
                    return
                # Running with nothing to execute or await would spin forever.
                raise InternalError(f"run is {status} with no work outstanding")
            deadlines = [d for (_, d, _) in in_flight.values() if d is not None]
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                msg = q.get(timeout=wait)
            except queue.Empty:
                msg = None
            if msg is None:
                now = time.monotonic()
                expired = sorted(
                    i for i, (_, d, _) in in_flight.items() if d is not None and d <= now
                )
                for i in expired:
                    node, _, timeout_ms = in_flight.pop(i)
                    exceptions.pop(node, None)
                    native.complete_err(
                        i, "timeout", "Timeout", f"no result within {timeout_ms} ms", True
                    )
            elif msg[0] == "done":
                _, act_id, done = msg
                if act_id not in in_flight or token.cancelled:
                    # Late (timed out) or the run is being cancelled: never recorded.
                    continue
                node = in_flight.pop(act_id)[0]
                self._complete(native, act_id, node, done, exceptions)
            # ("cancel",) only wakes the loop; the reason is read at the top.

    @staticmethod
    def _complete(
        native: Any, act_id: int, node: str, done: _Done, exceptions: Dict[str, BaseException]
    ) -> None:
        if done[0] == "ok":
            _, output_json, usage_json, dur = done
            try:
                native.complete_ok(act_id, output_json, usage_json, dur)
                exceptions.pop(node, None)
                return
            except InvalidOutputError as e:
                # An output the log cannot hold (bad RawJson, too large) fails the activation.
                done = ("err", "InvalidOutput", e.message, False, dur, e)
        _, error_type, message, retryable, dur, exc = done
        native.complete_err(act_id, "error", error_type, message, retryable, dur)
        if exc is not None:
            exceptions[node] = exc

    @staticmethod
    def _result(native: Any, exceptions: Dict[str, BaseException]) -> RunResult:
        outcome = json.loads(native.outcome())
        run_id = native.run_id()
        waiting = [
            Activation._from_wire(a, None)
            for a in json.loads(native.outstanding())
            if a["kind"] == "human"
        ]
        path = native.log_path()
        if path is not None:
            # Release the file (and its writer lock): the log is what a waiting run is
            # resumed from, by this or another mesh. In-memory runs keep their events here.
            native.close()
            native = None
        result = RunResult(
            run_id=run_id,
            status=outcome["status"],
            output=outcome.get("output"),
            error=outcome.get("error"),
            waiting=waiting,
            log_path=os.fspath(path) if path is not None else None,
            _native=native,
        )
        err = result.error
        if result.status == "failed" and err is not None and err.get("code") == "AGENT_FAILED":
            cause = exceptions.get(err.get("node") or "")
            if cause is not None:
                raise AgentFailedError(
                    err["message"], details={"node": err.get("node")}, result=result
                ) from cause
        return result


__all__ = [
    "ActivationError",
    "Activation",
    "CancelToken",
    "Mesh",
    "Output",
    "RawJson",
    "RunResult",
]
