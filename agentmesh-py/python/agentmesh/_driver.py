"""The Python host driver: ``Mesh`` runs workflows with Python agents on a thread pool.

It follows the Rust driver (``agentmesh-core/src/driver/mod.rs``): poll the run, execute a
step's activations in parallel, complete them as they arrive (the core puts each completion at
its reserved seq, so finish order never changes the canonical log), enforce ``timeoutMs``,
honour cancellation, hand committed events to a watcher (``_watch.py``), and return when only
human decisions are outstanding. Driving that stops early (Ctrl-C, a cancelled task, a closed
stream) writes nothing, so the run resumes as after a crash.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import (
    Any,
    AsyncGenerator,
    Callable,
    Dict,
    Generator,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _agentmesh
from ._calls import HostProvider, HostTool, _CallTable, _mcp, _provider, _tool
from ._json import RawJson
from ._pool import DaemonPool
from ._watch import AsyncRunStream, EventFn, RunStream, deliver, deliver_async
from ._workflow import Workflow
from .errors import (
    AgentFailedError,
    InternalError,
    InvalidArgumentError,
    InvalidOutputError,
)

PathLike = Union[str, "os.PathLike[str]"]
AgentFn = Callable[["Activation"], Any]
_Wake = Callable[[], None]

_FINISHED = ("completed", "failed", "cancelled")
# What an activation works on, for the cause of a failure: its node and map item index.
_Work = Tuple[str, Optional[int]]


class ActivationError(Exception):
    """Raise from an agent to fail its activation with an exact ``type``, ``message`` and
    ``retryable`` flag, and the tokens the failed attempt spent (``usage``, as in
    :class:`Output`; recorded with the failure). Any other exception is recorded as its class
    name and ``str()``, without usage.

    Whatever the flag says, the node's retry policy never retries a programming error
    (``TypeError``, ``AttributeError``, ``KeyError``, ... by exact type name) or a type its
    ``retry.nonRetryable`` lists, unless ``retry.retryProgrammingErrors`` is set: the core
    decides, and records ``"retryable": false``."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        retryable: bool = True,
        usage: Optional[Any] = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.retryable = retryable
        self.usage = usage


@dataclass(frozen=True)
class Output:
    """An agent result with token usage; a plain return value means no usage.

    ``usage`` is what the LLM SDK gave: its usage object or the whole response (the openai
    and anthropic clients' pydantic models, read through ``model_dump(mode="json")``), a dict
    in the OpenAI or Anthropic shape, or the log's own keys (``{"inputTokens": int,
    "outputTokens": int}`` and optionally ``cachedInputTokens``, ``cacheWriteTokens``,
    ``reasoningTokens``, ``model``). Only the token counts and the model name are recorded,
    never a response's ``id`` or ``created`` (see docs/usage.md)."""

    value: Any
    usage: Optional[Any] = None


class CancelToken:
    """Cancels a run from any thread, for good: the run records ``runCancelled`` and a
    resume runs nothing (Ctrl-C, by contrast, leaves a run resumable). The first reason
    wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: Optional[str] = None
        # Wakes the driver waiting for results (thread-safe; set while a run is driven).
        self._wake: Optional[_Wake] = None

    def cancel(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self._reason is None:
                self._reason = str(reason)
            wake = self._wake
        if wake is not None:
            wake()

    @property
    def reason(self) -> Optional[str]:
        with self._lock:
            return self._reason

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def _attach(self, wake: Optional[_Wake]) -> None:
        with self._lock:
            self._wake = wake


# One unit of work handed to an agent, tool or person: a native, read-only object
# (agentmesh-py/src/activation.rs) with id, run_id, node, kind, name, attempt, visit, delay_ms,
# timeout_ms, prompt, seed, step, input, deps, reads, item, last_failure (the failure this
# attempt retries, as a dict, or None) and cancel_run(reason).
Activation = _agentmesh.Activation

# The map item an activation runs (``Activation.item``): a native, read-only object
# (agentmesh-py/src/item.rs) with index (from 0), key (the text at the map's ``itemKey``, or
# None) and value.
Item = _agentmesh.Item


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

    @property
    def usage(self) -> Dict[str, Any]:
        """What the run spent, computed from its log: the report of
        :func:`agentmesh.usage_report` (``runId``, ``total``, ``byNode``, ``byAgent``,
        ``byTool``, ``byModel``, and ``inherited`` for a fork, whose copied events are not in
        ``total``)."""
        report: Dict[str, Any]
        if self.log_path is not None:
            report = _agentmesh.usage_report(self.log_path)
        else:
            report = self._native.usage()
        return report

    @property
    def cost(self) -> Dict[str, Any]:
        """What the run's calls cost, from :attr:`usage`: ``microUsd`` (integer micro-USD;
        ``None`` when the run does not account for spend: no budget and no prices),
        ``calls`` (calls made) and ``denied`` (calls a budget refused), and micro-USD by
        node, agent and model (``byNode``, ``byAgent``, ``byModel``; entries without a cost
        are left out)."""
        return _cost_of(self.usage)


def _cost_of(report: Dict[str, Any]) -> Dict[str, Any]:
    """The cost summary of a usage report (the same shape in every binding)."""
    total = report["total"]

    def priced(by: Dict[str, Dict[str, Any]]) -> Dict[str, int]:
        return {k: t["microUsd"] for k, t in by.items() if t.get("microUsd") is not None}

    return {
        "microUsd": total.get("microUsd"),
        "calls": total.get("calls", 0),
        "denied": total.get("denied", 0),
        "byNode": priced(report["byNode"]),
        "byAgent": priced(report["byAgent"]),
        "byModel": priced(report["byModel"]),
    }


@dataclass(frozen=True)
class ReexecReport:
    """What :meth:`Mesh.reexecute` checked: the recorded ``run_id``, the ``activations``
    whose agents or tools ran again, the ``calls`` answered from the log and the ``events``
    compared."""

    run_id: str
    activations: int
    calls: int
    events: int


# A finished activation: a native completion (agentmesh-py/src/completion.rs), built on the
# thread that ran the agent the moment it returned, so the value logged is the value returned.
Completion = _agentmesh.Completion

# Return types that are never awaitable: skips inspect.isawaitable on the hot path.
_PLAIN = frozenset((type(None), bool, int, float, str, list, dict, tuple))

# Reports the moment an activation with a deadline starts running: (id, monotonic time,
# whether it runs on a worker thread).
_Started = Callable[[int, float, bool], None]


def _completion(act: Activation, result: Any, dur: int) -> Any:
    """Snapshot what an agent returned as a native completion (the output is converted now)."""
    usage = None
    if type(result) is Output:
        result, usage = result.value, result.usage
    if type(result) is RawJson:
        return Completion.ok_json(act, result.text, usage, dur)
    return Completion.ok(act, result, usage, dur)


def _failure(act: Activation, e: BaseException, dur: int) -> Any:
    if isinstance(e, ActivationError):
        return Completion.err(
            act, str(e.error_type), str(e.message), bool(e.retryable), e.usage, dur, e
        )
    if isinstance(e, InvalidOutputError):
        return Completion.err(act, "InvalidOutput", e.message, False, None, dur, e)
    # Any other exception is retryable, a BaseException (SystemExit in a worker...) is not;
    # the core then refuses retries to programming errors and nonRetryable types.
    return Completion.err(act, type(e).__name__, _message(e), isinstance(e, Exception), None, dur, e)


def _message(e: BaseException) -> str:
    """``str(e)``, which is user code too: if it raises, the failure is still recorded."""
    try:
        return str(e)
    except BaseException as inner:  # noqa: BLE001
        return f"<str() of the exception raised {type(inner).__name__}>"


def _settle(act: Activation, started: float, outcome: Any, raised: bool, sync: bool = True) -> Any:
    """The completion of an agent that just returned (or raised) ``outcome``. A result that
    arrives after the deadline (``timeout_ms`` after ``started``) is a timeout, whatever it
    is. ``sync``: the synchronous driver, which cannot await what an agent returns."""
    dur = int((time.monotonic() - started) * 1_000_000)
    timeout_ms = act.timeout_ms
    if timeout_ms is not None and dur > timeout_ms * 1000:
        return Completion.timed_out(dur)
    try:
        if raised:
            return _failure(act, outcome, dur)
        if sync and type(outcome) not in _PLAIN and inspect.isawaitable(outcome):
            if inspect.iscoroutine(outcome):
                outcome.close()  # never awaited: close it so Python does not warn
            return Completion.invalid_output(
                act,
                f"agent returned {type(outcome).__name__}, not JSON data "
                "(async agents need Mesh.run_async)",
                dur,
            )
        return _completion(act, outcome, dur)
    except BaseException as e:  # noqa: BLE001 - user code (an Output's fields...) raised
        return _failure(act, e, dur)


def _execute(
    fn: AgentFn, act: Activation, started_at: Optional[_Started] = None, on_caller: bool = False
) -> Any:
    """Run an agent for the synchronous driver, on a worker thread or (``on_caller``) on the
    thread that called ``run``, where a Ctrl-C must stop the run instead of failing the
    agent. ``started_at`` learns when an activation with a deadline starts."""
    if act.delay_ms > 0:
        time.sleep(act.delay_ms / 1000.0)
    started = time.monotonic()
    if started_at is not None and act.timeout_ms is not None:
        started_at(act.id, started, True)
    try:
        result = fn(act)
    except KeyboardInterrupt as e:
        if on_caller:
            raise
        return _settle(act, started, e, True)
    except BaseException as e:  # noqa: BLE001 - any agent exception becomes a recorded failure
        return _settle(act, started, e, True)
    return _settle(act, started, result, False)


# Per thread: how many agents it is running for a driver (> 0 on a pool worker inside an agent).
_local = threading.local()


def _execute_into(q: "queue.Queue[Any]", fn: AgentFn, act: Activation) -> None:
    """Worker-thread entry: run the agent and post its completion to the driver's queue."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        done = _execute(fn, act, lambda i, t, _: q.put(("started", i, t, True)))
    finally:
        _local.depth -= 1
    q.put(("done", act.id, done))


def _call_in_worker(fn: AgentFn, act: Activation, started_at: _Started) -> Any:
    """A plain-function agent on a worker thread for the asyncio driver (marked as such, for
    runs it starts re-entrantly): its completion, or ``(awaitable, started)`` when it
    returned something to await on the loop."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        started = time.monotonic()
        if act.timeout_ms is not None:
            started_at(act.id, started, True)
        try:
            result = fn(act)
        except BaseException as e:  # noqa: BLE001 - any agent exception becomes a recorded failure
            return _settle(act, started, e, True)
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            return (result, started)
        return _settle(act, started, result, False)
    finally:
        _local.depth -= 1


async def _execute_async(
    fn: AgentFn, act: Activation, workers: "_Workers", started_at: Optional[_Started]
) -> Any:
    """Run an agent for the asyncio driver: ``async def`` agents on the loop, others on the
    mesh's worker threads (an awaitable they return is awaited on the loop)."""
    if act.delay_ms > 0:
        await asyncio.sleep(act.delay_ms / 1000.0)
    if inspect.iscoroutinefunction(fn):
        started = time.monotonic()
        if started_at is not None and act.timeout_ms is not None:
            started_at(act.id, started, False)
        awaitable = fn(act)
    else:
        loop = asyncio.get_running_loop()

        def from_thread(i: int, t: float, on_thread: bool) -> None:
            if started_at is not None:
                try:
                    loop.call_soon_threadsafe(started_at, i, t, on_thread)
                except RuntimeError:
                    pass  # the loop is closed: the run is over, nobody waits for this agent

        done = await loop.run_in_executor(workers.get(), _call_in_worker, fn, act, from_thread)
        if type(done) is not tuple:
            return done
        awaitable, started = done
    try:
        result = await awaitable
    except asyncio.CancelledError as e:
        if _being_cancelled():
            raise  # the driver's timeout, a cancelled run or Ctrl-C: not an agent result
        return _settle(act, started, e, True)  # the agent's own (an inner task was cancelled)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - any agent exception becomes a recorded failure
        return _settle(act, started, e, True)
    return _settle(act, started, result, False, sync=False)


def _being_cancelled() -> bool:
    """Whether the current task has a cancellation request (so a ``CancelledError`` is not
    the agent's own). Python < 3.11 cannot tell: every ``CancelledError`` counts as one."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


class _Drive:
    """The state of driving one run, shared by the thread and asyncio drivers: scheduling,
    deadlines, completion, cancellation and the events handed to a watcher live here once;
    the drivers only execute agents and wait for their results.

    Deadlines follow the one rule of every host: ``timeout_ms`` after the activation starts
    running (after its ``delay_ms``), so time spent queued behind ``max_workers`` busy
    workers does not count. Workers report when an activation with a deadline starts."""

    def __init__(
        self, mesh: "Mesh", native: Any, cancel: Optional[CancelToken], watch: bool
    ) -> None:
        self.mesh = mesh
        self.native = native
        self.token = cancel or CancelToken()
        # Without a caller's token only the agents themselves can cancel, so a step of one
        # activation without a deadline runs on the driving thread (or is awaited directly):
        # no pool round trip, the cost a plain loop of function calls would pay.
        self.on_caller = cancel is None
        self.watch = watch  # the run keeps its committed events for take_committed
        # id → [deadline (None until it starts), timeout_ms, runs on a worker thread]
        self.in_flight: Dict[int, List[Any]] = {}
        # id → (node, map item index or None), until its completion is recorded
        self.nodes: Dict[int, _Work] = {}
        # The exception behind each node's (each map item's) latest failure, the cause raised
        # when it fails the run; a later success clears it.
        self.exceptions: Dict[_Work, BaseException] = {}
        self.expired_any = False  # some agent timed out (and may still be running)
        self.deadlines = 0  # in-flight activations whose deadline runs (the common path: 0)
        self.workers = _Workers(mesh)
        self.tasks: Dict[int, "asyncio.Task[None]"] = {}  # the asyncio driver's agent tasks
        # Where driving ended; set before AgentFailedError is raised (streams read it).
        self.result: Optional[RunResult] = None

    def advance(self) -> Optional[List[Tuple[AgentFn, Activation]]]:
        """Apply a pending cancel and schedule what is ready. ``None`` when driving is over
        (finished, cancelled, or waiting for people); otherwise the activations to start."""
        native, token = self.native, self.token
        reason = token._reason  # one attribute read (atomic under the GIL)
        if reason is not None:
            native.cancel(reason)
            return None
        work = []
        agents, tools = self.mesh._agents, self.mesh._tools
        for act in native.poll(token, self.mesh._calls):
            kind = act.kind
            if kind == "human":
                continue
            fn = (tools if kind == "tool" else agents)[act.name]
            self.in_flight[act.id] = [None, act.timeout_ms, False]
            item = act.item
            self.nodes[act.id] = (act.node, None if item is None else item.index)
            work.append((fn, act))
        if not self.in_flight:
            status = native.status()
            if status == "waiting" or status in _FINISHED:
                return None
            # Running with nothing to execute or await would spin forever.
            raise InternalError(f"run is {status} with no work outstanding")
        return work

    def started(self, act_id: int, at: float, on_thread: bool) -> None:
        """Activation ``act_id`` started running at ``at``: its deadline starts now."""
        entry = self.in_flight.get(act_id)
        if entry is not None and entry[0] is None:
            entry[0] = at + entry[1] / 1000.0
            entry[2] = on_thread
            self.deadlines += 1

    def wait_time(self) -> Optional[float]:
        """Seconds until the next deadline (``None``: no deadline)."""
        if not self.deadlines:
            return None
        deadlines = [e[0] for e in self.in_flight.values() if e[0] is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def take(self, act_id: int, completion: Any, batch: List[Tuple[int, Any]]) -> None:
        """A worker's completion joins the next commit, unless it is late (the activation
        timed out) or the run is being cancelled."""
        entry = self.in_flight.get(act_id)
        if entry is not None and self.token._reason is None:
            del self.in_flight[act_id]
            self.deadlines -= entry[0] is not None
            batch.append((act_id, completion))

    def expire(self, batch: List[Tuple[int, Any]]) -> List[Tuple[int, bool]]:
        """Add a timeout to ``batch`` for every activation past its deadline (none while the
        run is being cancelled). Returns their ids, each with whether its agent still
        occupies a worker thread."""
        if not self.deadlines or self.token._reason is not None:
            return []
        now = time.monotonic()
        expired = sorted(i for i, e in self.in_flight.items() if e[0] is not None and e[0] <= now)
        out = []
        for i in expired:
            out.append((i, bool(self.in_flight.pop(i)[2])))
            batch.append((i, Completion.timed_out()))
        self.deadlines -= len(expired)
        self.expired_any = self.expired_any or bool(expired)
        return out

    def record(self, batch: List[Tuple[int, Any]]) -> None:
        """Commit a burst of completions at once (one write, one fsync in ``always`` mode),
        keeping each failed node's Python exception as the cause to raise from."""
        if not batch:
            return
        results = self.native.complete_all(batch)
        nodes = self.nodes
        for (act_id, completion), err in zip(batch, results):
            work = nodes.pop(act_id)
            if err is not None:
                if not isinstance(err, InvalidOutputError):
                    raise err  # refused: the driver completed something it must not
                self.exceptions[work] = err  # the output could not be recorded
                continue
            cause = completion.cause if completion.failed else None
            if cause is not None:
                self.exceptions[work] = cause
            else:
                self.exceptions.pop(work, None)

    def committed(self) -> List[Dict[str, Any]]:
        """The events committed since the last call, for a watcher (none when unwatched)."""
        return self.native.take_committed() if self.watch else []

    def interrupt(self) -> None:
        """Driving stops before the run finished (Ctrl-C, a cancelled task, a closed stream,
        a watcher that raised, an error): nothing is written. Activations in flight stay in
        flight, exactly as after a crash, so a later resume runs them again; results that
        arrive later have no run to go to. The log (and its writer lock) is released now:
        a traceback would otherwise keep the run alive."""
        self.native.close()
        for task in self.tasks.values():
            task.cancel()  # async agents; plain functions run to their end, unrecorded

    def finish(self) -> RunResult:
        """The run stopped driving (finished, cancelled or waiting): its result, which is kept
        in ``self.result``; ``AgentFailedError`` when an agent's exception failed the run."""
        try:
            self.result = result = self.mesh._result(self.native)
        except BaseException:
            self.native.close()  # a Ctrl-C right now, a poisoned run: release the log anyway
            raise
        err = result.error
        if result.status == "failed" and err is not None and err.get("code") == "AGENT_FAILED":
            # Raised whoever ran the agent: a resume of a log that failed earlier raises as
            # the run that failed did, without the exception only that process had.
            cause = self.exceptions.get((err.get("node") or "", err.get("item")))
            raise AgentFailedError(
                err["message"], details={"node": err.get("node")}, result=result
            ) from cause
        return result


def _check_options(
    run_id: Optional[str],
    tenant: Optional[str],
    cancel: Optional[CancelToken],
    on_event: Optional[EventFn],
    on_budget_warning: Optional[EventFn] = None,
) -> None:
    """Type checks of the options shared by every entry point, before any log is touched."""
    for name, value in (("run_id", run_id), ("tenant", tenant)):
        if value is not None and not isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a str, not {type(value).__name__}")
    if cancel is not None and not isinstance(cancel, CancelToken):
        raise InvalidArgumentError(f"cancel must be a CancelToken, not {type(cancel).__name__}")
    for name, fn in (("on_event", on_event), ("on_budget_warning", on_budget_warning)):
        if fn is not None and not callable(fn):
            raise InvalidArgumentError(f"{name} must be callable, not {type(fn).__name__}")


class _Workers:
    """The worker pool of one drive, taken from the mesh on first use."""

    __slots__ = ("mesh", "pool", "shared")

    def __init__(self, mesh: "Mesh") -> None:
        self.mesh = mesh
        self.pool: Optional[DaemonPool] = None
        self.shared = False

    def get(self) -> DaemonPool:
        if self.pool is None:
            self.pool, self.shared = self.mesh._take_pool()
        return self.pool

    def release(self, busy: bool) -> None:
        if self.pool is not None:
            self.mesh._release_pool(self.pool, self.shared, busy)
            self.pool = None


class Mesh:
    """Registers Python agents and tools and drives runs.

    ``log_dir=None`` keeps logs in memory (no resume); ``fsync`` is ``"always"``, ``"batch"``
    or ``"never"``.

    ``prices``: a price table (docs/budgets.md: ``{"version": 1, "models": [{"provider",
    "model", "match", "prices": {"input", "output", ...}}]}``, integer micro-USD per million
    tokens) looked at before the bundled one, checked now (:class:`InvalidArgumentError`
    naming the field). Every run this mesh starts, resumes, retries or forks uses it, and
    then accounts for spend even without a budget; a run that accounts for spend goes on
    only with the prices it was started with (resuming it under other prices is
    :class:`InvalidArgumentError`, nothing written).

    ``policy``: the policy that judges what runs record, send and pass on (docs/policy.md):
    a :class:`Policy`, a path to a policy file (JSON or YAML; read now, synchronously) or a
    dict, loaded now (:class:`PolicyInvalidError` naming the rule, field, line and column).
    Every run this mesh starts, resumes, retries, forks or re-executes uses it; a run goes on
    only under the policy it was started with, and one started without a policy only without
    one (:class:`InvalidArgumentError` naming the policy, nothing written).

    ``telemetry``: a :class:`Telemetry` that sees every event of the runs this mesh starts,
    resumes, retries and forks as it is committed, and derives OpenTelemetry spans (exported
    as each ends) and metrics from them (docs/telemetry.md). It never changes a run.
    """

    def __init__(
        self,
        log_dir: Optional[PathLike] = None,
        fsync: str = "batch",
        max_workers: int = 32,
        prices: Optional[Mapping[str, Any]] = None,
        policy: Optional[Union[_agentmesh.Policy, PathLike, Mapping[str, Any]]] = None,
        telemetry: Optional[_agentmesh.Telemetry] = None,
    ) -> None:
        if telemetry is not None and not isinstance(telemetry, _agentmesh.Telemetry):
            raise InvalidArgumentError(
                f"telemetry is an agentmesh.Telemetry, not {type(telemetry).__name__}"
            )
        self._telemetry = telemetry
        if fsync not in ("always", "batch", "never"):
            raise InvalidArgumentError(f"fsync must be always, batch or never, not {fsync!r}")
        if not isinstance(max_workers, int) or max_workers < 1:
            raise InvalidArgumentError("max_workers must be a positive int")
        if prices is not None and not isinstance(prices, Mapping):
            raise InvalidArgumentError(
                'prices is a price table, a dict ({"version": 1, "models": [...]}), '
                f"not {type(prices).__name__}"
            )
        self._prices: Any = (
            None if prices is None else _agentmesh.NativePrices.from_table(dict(prices))
        )
        if isinstance(policy, Mapping) and not isinstance(policy, dict):
            policy = dict(policy)
        self._policy: Optional[_agentmesh.Policy] = (
            None if policy is None else _agentmesh.Policy(policy)
        )
        self.log_dir: Optional[str] = os.fspath(log_dir) if log_dir is not None else None
        self.fsync = fsync
        self.max_workers = max_workers
        self._agents: Dict[str, AgentFn] = {}
        # Worker threads shared by this mesh's runs, created on first use (thread start-up
        # would otherwise dominate short runs); see _take_pool.
        self._pool: Optional[DaemonPool] = None
        self._pool_lock = threading.Lock()
        self._pool_users = 0  # drives using self._pool
        self._retired: Dict[int, List[Any]] = {}  # id → [retired pool, drives still using it]
        self._tools: Dict[str, AgentFn] = {}
        # Providers and tools agents call (act.llm, act.tool), given to every activation.
        self._calls = _CallTable()
        # The MCP servers started by mcp(), each with the names of its tools (for close()).
        self._mcp_servers: List[Tuple[Any, List[str]]] = []

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

    def provider(
        self, name: str, config: Union[Mapping[str, Any], List[Mapping[str, Any]], HostProvider]
    ) -> None:
        """Register LLM provider ``name`` for ``act.llm(name, ...)``. ``config`` is a dict of
        provider settings executed natively, with the GIL released (``{"kind": "openai" |
        "anthropic", "baseUrl", "apiKeyEnv", "model", "timeoutMs", "maxRetries", ...}``; see
        docs/providers.md), a list of such dicts (a fallback chain, tried in order), or a
        host function ``fn(request, ticket)`` returning the response dict (``{"text",
        "toolCalls"?, "finishReason"?}``) or ``(response, usage)`` — ``async def`` too (then
        agents call it with ``act.llm_async``). ``InvalidArgumentError`` naming the field of
        a bad configuration."""
        self._calls.providers[name] = _provider(name, config)

    def call_tool(
        self,
        name: str,
        fn: HostTool,
        description: Optional[str] = None,
        schema: Optional[Mapping[str, Any]] = None,
        agents: Optional[Iterable[str]] = None,
        rate_limit: Optional[Tuple[int, float]] = None,
    ) -> None:
        """Register tool ``name`` for ``act.tool(name, arguments)``: ``fn(arguments)``
        returns the tool's result (JSON data); ``async def`` too (then agents call it with
        ``act.tool_async``). ``description`` and ``schema`` (a JSON Schema of the arguments)
        describe it (:meth:`call_tools`); arguments that do not match ``schema`` are refused
        with ``InvalidArgumentError`` naming the path, before anything is recorded or run.

        ``agents``: only these agents (their registered names, exactly) may call it; another
        gets ``PolicyDeniedError`` and nothing is recorded. ``rate_limit=(calls,
        per_seconds)``: at most ``calls`` live calls start in any window of ``per_seconds``
        (over every run of this mesh); a call over the limit waits for its slot (on the
        event loop, ``tool_async`` awaits). Calls the log answers never wait. A bad schema,
        agent name or rate limit is ``InvalidArgumentError`` naming the tool and the
        field."""
        self._calls.tools[name] = _tool(name, fn, description, schema, agents, rate_limit)

    def mcp(
        self,
        command: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        agents: Optional[Iterable[str]] = None,
        rate_limit: Optional[Tuple[int, float]] = None,
        init_timeout: float = 30.0,
        call_timeout: float = 60.0,
    ) -> List[str]:
        """Start an MCP server and register each of its tools (under its MCP name) for
        ``act.tool``: the names registered. ``command`` is the program, then its arguments
        (start the server program itself, ``["node", ".../index.js", "stdio"]``, not a
        wrapper that forks); ``env`` is added to the server's minimal environment (``HOME``,
        ``PATH``, ...: the host's secrets do not reach it). The tools run in Rust, with the
        GIL released: their input schemas are enforced before a call is recorded, and
        ``agents`` / ``rate_limit`` (as for :meth:`call_tool`) apply to each of them, each
        tool with its own limit. ``init_timeout``: seconds from spawn to the server's
        ``initialize`` answer; ``call_timeout``: seconds per call.

        Errors: ``ProviderError`` (``error_type`` ``McpSpawnFailed``: the command was not
        found; ``McpServerExited``, ``McpProtocolError``, ``McpRpcError``),
        ``AgentTimeoutError`` (``TIMEOUT``: no answer in time), ``InvalidArgumentError``
        (bad arguments, nothing started; a tool name already registered with this mesh:
        nothing registered). Messages never hold ``env``'s values. The server ends when the
        mesh is garbage collected or :meth:`close` closes it."""
        server, names = _mcp(
            self._calls, command, env, agents, rate_limit, init_timeout, call_timeout
        )
        self._mcp_servers.append((server, names))
        return names

    def call_tools(self) -> Dict[str, Dict[str, Any]]:
        """The tools agents can call (:meth:`call_tool`, :meth:`mcp`): name →
        ``{"description": str or None, "schema": JSON Schema or None}``, to offer them to
        an LLM (``tools=[{"name": n, "description": t["description"], "parameters":
        t["schema"]} ...]``)."""
        return self._calls.listing()

    def close(self) -> None:
        """Close the MCP servers :meth:`mcp` started, and unregister their tools (a later
        ``act.tool`` of one is ``UnknownAgentError``). Each server's stdin is closed and the
        process is killed if it has not exited after a grace period (2 s). Agents, host
        tools and providers stay registered; calling it again does nothing."""
        servers, self._mcp_servers = self._mcp_servers, []
        for server, names in servers:
            for name in names:
                self._calls.tools.pop(name, None)
            server.close()

    def _check_registered(self, wf: Any) -> None:
        """``UnknownAgentError`` naming what is missing, the likely reason (a typo, the other
        kind) and what is registered: the core's check, worded alike in every host."""
        wf.check_registered(list(self._agents), list(self._tools))

    # runs ---------------------------------------------------------------------------------

    def run(
        self,
        workflow: Workflow,
        input: Any = None,
        seed: int = 0,
        run_id: Optional[str] = None,
        tenant: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        on_event: Optional[EventFn] = None,
        on_budget_warning: Optional[EventFn] = None,
        budget: Optional[Mapping[str, Any]] = None,
    ) -> RunResult:
        """Start a run and drive it until it finishes or waits for a person; the agents of a
        step run in parallel on a thread pool.

        ``on_event(event)`` is called with every event the run commits, in commit order, as
        the dict :func:`agentmesh.read_log` gives plus its ``meta``, on this thread right
        after the commit: the run waits while it runs. If it raises, driving stops as on
        Ctrl-C and the exception is raised from ``run``. ``on_budget_warning(event)`` is
        called the same way with each committed ``budgetWarning`` event (after ``on_event``
        when both are given), and treated alike if it raises.

        ``budget`` replaces the workflow's ``budget`` for this run (recorded in
        ``runStarted``): limits by dimension, ``inputTokens``, ``outputTokens``,
        ``totalTokens``, ``microUsd`` (integer micro-USD: ``5_000_000`` is $5) and ``calls``,
        each a non-negative ``int`` or ``"unlimited"`` (a dimension left out is unlimited;
        ``{}`` accounts for spend and limits nothing). Anything else is
        :class:`InvalidArgumentError` naming the field (``budget.calls``), nothing written.
        Calls are priced with the mesh's ``prices`` before the bundled table; a call a budget
        refuses raises :class:`BudgetExceededError` in the agent (``callDenied`` is
        recorded), and an agent that does not get past it fails the run with
        ``BUDGET_EXCEEDED`` (returned, not raised).

        Raises :class:`AgentFailedError` (the agent's exception as ``__cause__``, the
        ``RunResult`` as ``.result``) when an agent exception failed the run; other failures
        (timeouts, limits) are returned with ``status == "failed"``. A ``KeyboardInterrupt``
        (Ctrl-C) stops driving without writing anything — the run stays resumable, as after a
        crash — releases the log and is re-raised; ``cancel`` cancels the run for good.
        """
        _check_options(run_id, tenant, cancel, on_event, on_budget_warning)
        watched = on_event is not None or on_budget_warning is not None
        native = self._start(workflow, input, seed, run_id, tenant, watched, budget)
        drive = _Drive(self, native, cancel, watched)
        return deliver(self._drive(drive), drive, on_event, on_budget_warning)

    async def run_async(
        self,
        workflow: Workflow,
        input: Any = None,
        seed: int = 0,
        run_id: Optional[str] = None,
        tenant: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        on_event: Optional[EventFn] = None,
        on_budget_warning: Optional[EventFn] = None,
        budget: Optional[Mapping[str, Any]] = None,
    ) -> RunResult:
        """``run`` for asyncio: ``async def`` agents of a step run concurrently on the running
        event loop, plain functions on the mesh's worker threads. ``on_event`` and
        ``on_budget_warning`` may also be ``async def`` functions (awaited before the run goes
        on); ``budget`` as for :meth:`run`. Cancelling the awaiting task
        (or Ctrl-C under ``asyncio.run``) stops driving as Ctrl-C does for ``run``: nothing is
        written, the run stays resumable, and the cancellation propagates."""
        _check_options(run_id, tenant, cancel, on_event, on_budget_warning)
        watched = on_event is not None or on_budget_warning is not None
        native = self._start(workflow, input, seed, run_id, tenant, watched, budget)
        drive = _Drive(self, native, cancel, watched)
        return await deliver_async(self._drive_async(drive), drive, on_event, on_budget_warning)

    def stream(
        self,
        workflow: Workflow,
        input: Any = None,
        seed: int = 0,
        run_id: Optional[str] = None,
        tenant: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        budget: Optional[Mapping[str, Any]] = None,
    ) -> RunStream:
        """Start a run (arguments as for :meth:`run`) and drive it as you iterate: ``for
        event in mesh.stream(...)`` yields every committed event, as ``on_event`` gets them,
        and the run's :class:`RunResult` is ``.result`` once the loop ends. No thread and no
        buffer: the run advances only while you ask for the next event. Leaving the loop
        early (``break``, an exception) or ``close()`` stops driving as Ctrl-C does: nothing
        is written, the run is resumable from its log."""
        _check_options(run_id, tenant, cancel, None)
        native = self._start(workflow, input, seed, run_id, tenant, True, budget)
        drive = _Drive(self, native, cancel, True)
        return RunStream(self._drive(drive), drive)

    def stream_async(
        self,
        workflow: Workflow,
        input: Any = None,
        seed: int = 0,
        run_id: Optional[str] = None,
        tenant: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        budget: Optional[Mapping[str, Any]] = None,
    ) -> AsyncRunStream:
        """:meth:`stream` for asyncio (agents as in :meth:`run_async`): ``async for event in
        mesh.stream_async(...)``; ``async with`` closes it for certain."""
        _check_options(run_id, tenant, cancel, None)
        native = self._start(workflow, input, seed, run_id, tenant, True, budget)
        drive = _Drive(self, native, cancel, True)
        return AsyncRunStream(self._drive_async(drive), drive)

    def resume(
        self,
        log_path: PathLike,
        approvals: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        on_event: Optional[EventFn] = None,
        on_budget_warning: Optional[EventFn] = None,
    ) -> RunResult:
        """Reopen a run from its log (after a crash or a Ctrl-C, or to resolve people's
        decisions), complete waiting human nodes with ``approvals`` (node id → output) and
        drive it on; activations that were in flight run again. ``on_event`` and
        ``on_budget_warning`` as for :meth:`run` (they get the events resume appends, not the
        ones already in the log). A run that accounts for spend resumes with its recorded
        budget and reservations (a call started but not answered keeps its reservation) and
        only under the prices it was started with (the mesh's ``prices``).

        ``run_id``, when given, must be the run the log holds (``InvalidArgumentError``
        otherwise), so a mixed-up path never resumes someone else's run. A run that failed
        because of an agent raises :class:`AgentFailedError`, as :meth:`run` does, also when
        it had failed before (no ``__cause__`` then: the exception was another process's)."""
        _check_options(run_id, None, cancel, on_event, on_budget_warning)
        watched = on_event is not None or on_budget_warning is not None
        native = self._reopen(log_path, approvals, run_id, watched)
        drive = _Drive(self, native, cancel, watched)
        return deliver(self._drive(drive), drive, on_event, on_budget_warning)

    async def resume_async(
        self,
        log_path: PathLike,
        approvals: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        on_event: Optional[EventFn] = None,
        on_budget_warning: Optional[EventFn] = None,
    ) -> RunResult:
        """``resume`` for asyncio (agents and callbacks as in :meth:`run_async`)."""
        _check_options(run_id, None, cancel, on_event, on_budget_warning)
        watched = on_event is not None or on_budget_warning is not None
        native = self._reopen(log_path, approvals, run_id, watched)
        drive = _Drive(self, native, cancel, watched)
        return await deliver_async(self._drive_async(drive), drive, on_event, on_budget_warning)

    def retry(
        self,
        log_path: PathLike,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        on_event: Optional[EventFn] = None,
        on_budget_warning: Optional[EventFn] = None,
    ) -> RunResult:
        """Continue a ``failed`` or ``cancelled`` run from its log: ``runReopened`` is
        appended, the nodes that failed the run (and the activations a cancel closed) run
        again with a fresh allowance of attempts, and the run is driven on. Finished work is
        kept: a node that completed is never called again. Use it once the cause is gone (an
        outage over, a bug in an agent fixed); a bug in the workflow needs :meth:`fork` with
        ``workflow=``.

        Raises :class:`InvalidArgumentError`, writing nothing, for a run that is running or
        waiting (an interrupted or crashed run: :meth:`resume` it), completed (final: fork
        it) or failed on a limit (fork it with a changed workflow). ``run_id``, ``cancel``,
        ``on_event`` and ``on_budget_warning`` as for :meth:`resume`; :class:`AgentFailedError` when an agent
        fails the run again."""
        _check_options(run_id, None, cancel, on_event, on_budget_warning)
        watched = on_event is not None or on_budget_warning is not None
        native = self._retry(log_path, run_id, watched)
        drive = _Drive(self, native, cancel, watched)
        return deliver(self._drive(drive), drive, on_event, on_budget_warning)

    async def retry_async(
        self,
        log_path: PathLike,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        on_event: Optional[EventFn] = None,
        on_budget_warning: Optional[EventFn] = None,
    ) -> RunResult:
        """``retry`` for asyncio (agents and callbacks as in :meth:`run_async`)."""
        _check_options(run_id, None, cancel, on_event, on_budget_warning)
        watched = on_event is not None or on_budget_warning is not None
        native = self._retry(log_path, run_id, watched)
        drive = _Drive(self, native, cancel, watched)
        return await deliver_async(self._drive_async(drive), drive, on_event, on_budget_warning)

    def reexecute(self, log_path: PathLike) -> ReexecReport:
        """Re-execute the run recorded in ``log_path``: this mesh's agents and tools run
        again, in memory, against the recorded run (its workflow, input, seed, run id and
        human decisions). Every call they make is answered from the log — nothing is sent,
        no tool function runs, nothing is written — and each completion is compared with
        the recorded one: the regression test of a changed agent against recorded LLM
        answers (docs/calls.md, "Two replay modes").

        Returns the :class:`ReexecReport` when the new execution gives the recorded log.
        Raises :class:`NondeterminismError` at the first difference: a changed prompt, model
        or tool argument names the call's ``seq``, ``node`` and ``field``
        (``data.request.messages[0].content``), the message its ``sub`` too; a call the log
        does not have, or a changed output, names its seq and node. :class:`InvalidArgumentError` for a fork's
        log or a retried run (not supported yet); :class:`UnknownAgentError` when an agent
        or tool of the workflow is not registered; :class:`InvalidArgumentError` when this
        mesh's ``policy`` is not the one the run was recorded under. Agents run as for
        :meth:`run` (async ones need :meth:`reexecute_async`)."""
        native = self._reexecute(log_path)
        drive = _Drive(self, native, None, False)
        try:
            deliver(self._drive(drive), drive, None)
        except AgentFailedError:
            pass  # a run an agent failed is compared like any other
        return self._reexec_report(native)

    async def reexecute_async(self, log_path: PathLike) -> ReexecReport:
        """:meth:`reexecute` for asyncio (agents as in :meth:`run_async`)."""
        native = self._reexecute(log_path)
        drive = _Drive(self, native, None, False)
        try:
            await deliver_async(self._drive_async(drive), drive, None)
        except AgentFailedError:
            pass
        return self._reexec_report(native)

    def _reexecute(self, log_path: PathLike) -> Any:
        path = os.fspath(log_path)
        self._check_registered(_agentmesh.recorded_workflow(path))
        return _agentmesh.NativeRun.reexecute(path, self._policy)

    @staticmethod
    def _reexec_report(native: Any) -> ReexecReport:
        try:
            run_id, activations, calls, events = native.reexec_report()
        finally:
            native.close()
        return ReexecReport(run_id, activations, calls, events)

    def fork(
        self,
        log_path: PathLike,
        seq: int,
        overrides: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        on_event: Optional[EventFn] = None,
        workflow: Optional[Workflow] = None,
        on_budget_warning: Optional[EventFn] = None,
    ) -> RunResult:
        """Fork the run in ``log_path`` at step end ``seq`` with node outputs replaced, and
        drive the fork (a new run with its own log). ``workflow``: continue under this
        workflow instead of the recorded one — a fixed one, say — when the parent's history
        up to ``seq`` replays equal under it (``NondeterminismError`` otherwise); work done
        before ``seq`` is kept, not redone. ``on_event`` and ``on_budget_warning`` as for
        :meth:`run` (they also get the events copied from the parent)."""
        _check_options(run_id, None, cancel, on_event, on_budget_warning)
        watched = on_event is not None or on_budget_warning is not None
        native = self._fork(log_path, seq, overrides, run_id, workflow, watched)
        drive = _Drive(self, native, cancel, watched)
        return deliver(self._drive(drive), drive, on_event, on_budget_warning)

    async def fork_async(
        self,
        log_path: PathLike,
        seq: int,
        overrides: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        on_event: Optional[EventFn] = None,
        workflow: Optional[Workflow] = None,
        on_budget_warning: Optional[EventFn] = None,
    ) -> RunResult:
        """``fork`` for asyncio (agents and callbacks as in :meth:`run_async`)."""
        _check_options(run_id, None, cancel, on_event, on_budget_warning)
        watched = on_event is not None or on_budget_warning is not None
        native = self._fork(log_path, seq, overrides, run_id, workflow, watched)
        drive = _Drive(self, native, cancel, watched)
        return await deliver_async(self._drive_async(drive), drive, on_event, on_budget_warning)

    # the same as streams: events as the run is driven (see :meth:`stream`) ----------------

    def stream_resume(
        self,
        log_path: PathLike,
        approvals: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> RunStream:
        """:meth:`resume` as a :class:`RunStream` (the events resume appends)."""
        _check_options(run_id, None, cancel, None)
        drive = _Drive(self, self._reopen(log_path, approvals, run_id, True), cancel, True)
        return RunStream(self._drive(drive), drive)

    def stream_retry(
        self,
        log_path: PathLike,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> RunStream:
        """:meth:`retry` as a :class:`RunStream` (from ``runReopened`` on)."""
        _check_options(run_id, None, cancel, None)
        drive = _Drive(self, self._retry(log_path, run_id, True), cancel, True)
        return RunStream(self._drive(drive), drive)

    def stream_fork(
        self,
        log_path: PathLike,
        seq: int,
        overrides: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        workflow: Optional[Workflow] = None,
    ) -> RunStream:
        """:meth:`fork` as a :class:`RunStream` (the copied events first)."""
        _check_options(run_id, None, cancel, None)
        native = self._fork(log_path, seq, overrides, run_id, workflow, True)
        drive = _Drive(self, native, cancel, True)
        return RunStream(self._drive(drive), drive)

    def stream_resume_async(
        self,
        log_path: PathLike,
        approvals: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> AsyncRunStream:
        """:meth:`stream_resume` for asyncio (agents as in :meth:`run_async`)."""
        _check_options(run_id, None, cancel, None)
        drive = _Drive(self, self._reopen(log_path, approvals, run_id, True), cancel, True)
        return AsyncRunStream(self._drive_async(drive), drive)

    def stream_retry_async(
        self,
        log_path: PathLike,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> AsyncRunStream:
        """:meth:`stream_retry` for asyncio (agents as in :meth:`run_async`)."""
        _check_options(run_id, None, cancel, None)
        drive = _Drive(self, self._retry(log_path, run_id, True), cancel, True)
        return AsyncRunStream(self._drive_async(drive), drive)

    def stream_fork_async(
        self,
        log_path: PathLike,
        seq: int,
        overrides: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
        workflow: Optional[Workflow] = None,
    ) -> AsyncRunStream:
        """:meth:`stream_fork` for asyncio (agents as in :meth:`run_async`)."""
        _check_options(run_id, None, cancel, None)
        native = self._fork(log_path, seq, overrides, run_id, workflow, True)
        drive = _Drive(self, native, cancel, True)
        return AsyncRunStream(self._drive_async(drive), drive)

    # opening runs (shared by the sync and asyncio entry points) ----------------------------

    def _start(
        self,
        workflow: Workflow,
        input: Any,
        seed: int,
        run_id: Optional[str],
        tenant: Optional[str],
        watch: bool,
        budget: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        if not isinstance(workflow, Workflow):
            raise InvalidArgumentError(f"workflow must be a Workflow, not {type(workflow).__name__}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            raise InvalidArgumentError("seed must be an int in [0, 2**64)")
        self._check_registered(workflow._native)
        if isinstance(input, RawJson):
            input = json.loads(_agentmesh.normalize_json(input.text))
        if isinstance(budget, Mapping) and not isinstance(budget, dict):
            budget = dict(budget)
        # The core reads the budget (naming a bad field) before anything is written.
        return _agentmesh.NativeRun.start(
            workflow._native, input, seed, run_id, self.log_dir, self.fsync, tenant, watch,
            budget, self._prices, self._policy, self._telemetry,
        )

    def _reopen(
        self,
        log_path: PathLike,
        approvals: Optional[Mapping[str, Any]],
        run_id: Optional[str],
        watch: bool,
    ) -> Any:
        path = os.fspath(log_path)
        # Check registration before resume touches the file (it may append lost decisions).
        self._check_registered(_agentmesh.recorded_workflow(path))
        # The core checks the run id and every approval before it records any.
        return _agentmesh.NativeRun.resume(
            path, self.fsync, run_id, dict(approvals) if approvals else None, watch, self._prices,
            self._policy, self._telemetry,
        )

    def _retry(self, log_path: PathLike, run_id: Optional[str], watch: bool) -> Any:
        path = os.fspath(log_path)
        # Check registration before the log is touched: the retried nodes need their agents.
        self._check_registered(_agentmesh.recorded_workflow(path))
        return _agentmesh.NativeRun.retry(
            path, self.fsync, run_id, watch, self._prices, self._policy, self._telemetry
        )

    def _fork(
        self,
        log_path: PathLike,
        seq: int,
        overrides: Optional[Mapping[str, Any]],
        run_id: Optional[str],
        workflow: Optional[Workflow],
        watch: bool,
    ) -> Any:
        path = os.fspath(log_path)
        if workflow is not None and not isinstance(workflow, Workflow):
            raise InvalidArgumentError(f"workflow must be a Workflow, not {type(workflow).__name__}")
        native_wf = workflow._native if workflow is not None else None
        self._check_registered(native_wf or _agentmesh.recorded_workflow(path))
        return _agentmesh.NativeRun.fork(
            path, seq, dict(overrides or {}), run_id, self.log_dir, self.fsync, native_wf, watch,
            self._prices, self._policy, self._telemetry,
        )

    # driving ------------------------------------------------------------------------------

    def _drive(self, drive: _Drive) -> Generator[Dict[str, Any], None, None]:
        """Drive the run on this thread, yielding each committed event when watched; the
        result is left in ``drive.result`` (see :meth:`_Drive.finish`)."""
        native, token = drive.native, drive.token
        q: "queue.Queue[Any]" = queue.Queue()
        token._attach(lambda: q.put(("cancel",)))
        workers = drive.workers
        running = 0  # agents submitted to the pool whose result has not been read
        try:
            while True:
                work = drive.advance()
                if drive.watch:
                    # Start, resume and every commit below end up here: nothing is committed
                    # between two advances except by record() and a cancel.
                    yield from drive.committed()
                if work is None:
                    break
                batch: List[Tuple[int, Any]] = []
                if drive.on_caller and len(work) == 1 and len(drive.in_flight) == 1:
                    fn, act = work[0]
                    if act.timeout_ms is None:
                        drive.take(act.id, _execute(fn, act, on_caller=True), batch)
                        drive.record(batch)
                        continue
                pool = workers.get()
                for fn, act in work:
                    pool.submit(_execute_into, q, fn, act)
                running += len(work)
                try:
                    msg: Optional[Tuple[Any, ...]] = q.get(timeout=drive.wait_time())
                except queue.Empty:
                    msg = None
                # Take every result already posted: one commit (and one wake-up) for a burst
                # of completions, then the deadlines that passed.
                while msg is not None:
                    if msg[0] == "done":
                        running -= 1
                        drive.take(msg[1], msg[2], batch)
                    elif msg[0] == "started":
                        drive.started(msg[1], msg[2], msg[3])
                    # ("cancel",) only wakes the loop; advance() reads the reason.
                    try:
                        msg = q.get_nowait()
                    except queue.Empty:
                        msg = None
                expired = drive.expire(batch)
                if expired:
                    # Timed-out agents keep their threads: work queued behind them still starts.
                    pool.grow(len(expired))
                drive.record(batch)
        except BaseException:
            # Ctrl-C, a closed stream, a watcher that raised, an error: write nothing.
            drive.interrupt()
            raise
        finally:
            token._attach(None)
            workers.release(busy=running > 0)
        drive.finish()

    def _take_pool(self) -> Tuple[DaemonPool, bool]:
        """Worker threads for a drive: (pool, shared with other runs of this mesh)."""
        if getattr(_local, "depth", 0) > 0:
            # A run started from inside an agent: the shared workers may all be busy with
            # agents waiting for this very run, so it gets workers of its own.
            return DaemonPool(self.max_workers), False
        with self._pool_lock:
            if self._pool is None:
                self._pool = DaemonPool(self.max_workers)
                self._pool_users = 0
            self._pool_users += 1
            return self._pool, True

    def _release_pool(self, pool: DaemonPool, shared: bool, busy: bool) -> None:
        """After a drive. ``busy``: agents are still running (timed out, or the run was
        cancelled) and may never return. Their results go to a queue nobody reads; the
        pool is retired so later runs do not queue behind them, and stopped (its idle
        threads exit) once no run uses it."""
        if not shared:
            pool.shutdown()
            return
        with self._pool_lock:
            if pool is self._pool:
                self._pool_users -= 1
                if busy:
                    self._pool = None
                    self._retired[id(pool)] = [pool, self._pool_users]
                else:
                    return
            else:
                entry = self._retired[id(pool)]
                entry[1] -= 1
            if self._retired[id(pool)][1] > 0:
                return
            del self._retired[id(pool)]
        pool.shutdown()

    async def _drive_async(self, drive: _Drive) -> AsyncGenerator[Dict[str, Any], None]:
        """Drive the run on the running event loop, yielding each committed event when
        watched; the result is left in ``drive.result`` (see :meth:`_Drive.finish`)."""
        native, token, workers, tasks = drive.native, drive.token, drive.workers, drive.tasks
        loop = asyncio.get_running_loop()
        q: "asyncio.Queue[Any]" = asyncio.Queue()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(q.put_nowait, ("cancel",))
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

        def started(act_id: int, at: float, on_thread: bool) -> None:
            q.put_nowait(("started", act_id, at, on_thread))

        async def perform(fn: AgentFn, act: Activation) -> None:
            try:
                done = await _execute_async(fn, act, workers, started)
            except asyncio.CancelledError as e:
                if act.id not in tasks:
                    raise  # cancelled by this driver (timeout or end of the run)
                # Python < 3.11: an agent's own CancelledError; report it, never go silent.
                done = _failure(act, e, 0)
            q.put_nowait(("done", act.id, done))

        token._attach(wake)
        try:
            while True:
                work = drive.advance()
                if drive.watch:
                    for event in drive.committed():  # as in _drive
                        yield event
                if work is None:
                    break
                batch: List[Tuple[int, Any]] = []
                # As in _drive: a lone activation without a deadline, when only the agents
                # can cancel, is awaited right here instead of in a task of its own.
                if drive.on_caller and len(work) == 1 and len(drive.in_flight) == 1:
                    fn, act = work[0]
                    if act.timeout_ms is None:
                        drive.take(act.id, await _execute_async(fn, act, workers, None), batch)
                        drive.record(batch)
                        continue
                for fn, act in work:
                    tasks[act.id] = loop.create_task(perform(fn, act))
                try:
                    msg: Optional[Tuple[Any, ...]] = await asyncio.wait_for(
                        q.get(), drive.wait_time()
                    )
                except asyncio.TimeoutError:
                    msg = None
                while msg is not None:
                    if msg[0] == "done":
                        tasks.pop(msg[1], None)
                        drive.take(msg[1], msg[2], batch)
                    elif msg[0] == "started":
                        drive.started(msg[1], msg[2], msg[3])
                    msg = None if q.empty() else q.get_nowait()
                stuck = 0
                for i, on_thread in drive.expire(batch):
                    task = tasks.pop(i, None)
                    if task is not None:
                        task.cancel()  # its late result never reaches the queue
                    stuck += on_thread
                if stuck:
                    # Plain agents that timed out keep their threads (see _drive).
                    workers.get().grow(stuck)
                drive.record(batch)
        except BaseException:
            # Cancellation of the driving task (Ctrl-C under asyncio.run), a closed stream, a
            # watcher that raised, an error: write nothing (see _Drive.interrupt).
            drive.interrupt()
            raise
        finally:
            token._attach(None)
            # Agents still running (the run was cancelled) are cancelled; plain-function agents
            # on worker threads run to their end and their results are dropped.
            for task in tasks.values():
                task.cancel()
            workers.release(busy=bool(tasks) or drive.expired_any)
        drive.finish()

    def _result(self, native: Any) -> RunResult:
        """Where the run stopped; the log (and its lock) is released."""
        outcome = native.outcome()
        run_id = native.run_id()
        waiting = [a for a in native.outstanding() if a.kind == "human"]
        path = native.log_path()
        if path is not None:
            # Release the file (and its writer lock): the log is what a waiting run is
            # resumed from, by this or another mesh. In-memory runs keep their events here.
            native.close()
            native = None
        return RunResult(
            run_id=run_id,
            status=outcome["status"],
            output=outcome.get("output"),
            error=outcome.get("error"),
            waiting=waiting,
            log_path=os.fspath(path) if path is not None else None,
            _native=native,
        )


__all__ = [
    "ActivationError",
    "Activation",
    "Item",
    "CancelToken",
    "Mesh",
    "Output",
    "RawJson",
    "ReexecReport",
    "RunResult",
    "RunStream",
    "AsyncRunStream",
]
