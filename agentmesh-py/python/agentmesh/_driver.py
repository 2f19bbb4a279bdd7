"""The Python host driver: ``Mesh`` runs workflows with Python agents on a thread pool.

It follows the Rust driver (``agentmesh-core/src/driver/mod.rs``): poll the run, execute a
step's activations in parallel, complete them as they arrive (the core puts each completion at
its reserved seq, so finish order never changes the canonical log), enforce ``timeoutMs``,
honour cancellation, and return when only human decisions are outstanding.
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
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from . import _agentmesh
from ._json import RawJson, encode
from ._pool import DaemonPool
from ._workflow import Workflow
from .errors import (
    AgentFailedError,
    AgentMeshError,
    InternalError,
    InvalidArgumentError,
    InvalidOutputError,
    UnknownAgentError,
)

PathLike = Union[str, "os.PathLike[str]"]
AgentFn = Callable[["Activation"], Any]
_Wake = Callable[[], None]

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
# timeout_ms, prompt, seed, step, input, deps and cancel_run(reason).
Activation = _agentmesh.Activation


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
# ("ok", output, usage or None, duration_us) — converted to JSON natively on completion — or
# ("err", type, message, retryable, duration_us, exception or None)
_Done = Tuple[Any, ...]


# Return types that are never awaitable: skips inspect.isawaitable on the hot path.
_PLAIN = frozenset((type(None), bool, int, float, str, list, dict, tuple))


def _ok(result: Any, dur: int) -> _Done:
    if type(result) is Output:
        return ("ok", result.value, result.usage, dur)
    return ("ok", result, None, dur)


def _failure(e: BaseException, dur: int) -> _Done:
    if isinstance(e, ActivationError):
        return ("err", str(e.error_type), str(e.message), bool(e.retryable), dur, e)
    if isinstance(e, InvalidOutputError):
        return ("err", "InvalidOutput", e.message, False, dur, e)
    # Any other exception is retryable; a BaseException (SystemExit in a worker...) is not.
    return ("err", type(e).__name__, _message(e), isinstance(e, Exception), dur, e)


def _message(e: BaseException) -> str:
    """``str(e)``, which is user code too: if it raises, the failure is still recorded."""
    try:
        return str(e)
    except BaseException as inner:  # noqa: BLE001
        return f"<str() of the exception raised {type(inner).__name__}>"


def _micros(started: float) -> int:
    return int((time.perf_counter() - started) * 1_000_000)


def _execute(fn: AgentFn, act: Activation, on_caller: bool = False) -> _Done:
    """Run an agent for the synchronous driver, on a worker thread or (``on_caller``) on the
    thread that called ``run``, where a Ctrl-C must stop the run instead of failing the
    agent."""
    if act.delay_ms > 0:
        time.sleep(act.delay_ms / 1000.0)
    started = time.perf_counter()
    try:
        result = fn(act)
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: close it so Python does not warn
            raise InvalidOutputError(
                f"node '{act.node}': agent returned {type(result).__name__}, not JSON data "
                "(async agents need Mesh.run_async)",
                details={"node": act.node},
            )
        return _ok(result, _micros(started))
    except KeyboardInterrupt as e:
        if on_caller:
            raise
        return _failure(e, _micros(started))
    except BaseException as e:  # noqa: BLE001 - any agent exception becomes a recorded failure
        return _failure(e, _micros(started))


# Per thread: how many agents it is running for a driver (> 0 on a pool worker inside an agent).
_local = threading.local()


def _execute_into(q: "queue.Queue[Any]", fn: AgentFn, act: Activation) -> None:
    """Worker-thread entry: run the agent and post its result to the driver's queue."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        done = _execute(fn, act)
    finally:
        _local.depth -= 1
    q.put(("done", act.id, done))


def _call_in_worker(fn: AgentFn, act: Activation) -> Any:
    """A plain-function agent on a worker thread for the asyncio driver (marked as such, for
    runs it starts re-entrantly)."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        return fn(act)
    finally:
        _local.depth -= 1


async def _execute_async(fn: AgentFn, act: Activation, workers: "_Workers") -> _Done:
    """Run an agent for the asyncio driver: ``async def`` agents on the loop, others on the
    mesh's worker threads (an awaitable they return is awaited on the loop)."""
    if act.delay_ms > 0:
        await asyncio.sleep(act.delay_ms / 1000.0)
    started = time.perf_counter()
    try:
        if inspect.iscoroutinefunction(fn):
            result = await fn(act)
        else:
            pool = workers.get()
            result = await asyncio.get_running_loop().run_in_executor(
                pool, _call_in_worker, fn, act
            )
            if type(result) not in _PLAIN and inspect.isawaitable(result):
                result = await result
        return _ok(result, _micros(started))
    except asyncio.CancelledError as e:
        if _being_cancelled():
            raise  # the driver's timeout, a cancelled run or Ctrl-C: not an agent result
        return _failure(e, _micros(started))  # the agent's own (an inner task was cancelled)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - any agent exception becomes a recorded failure
        return _failure(e, _micros(started))


def _being_cancelled() -> bool:
    """Whether the current task has a cancellation request (so a ``CancelledError`` is not
    the agent's own). Python < 3.11 cannot tell: every ``CancelledError`` counts as one."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


class _Drive:
    """The state of driving one run, shared by the thread and asyncio drivers: scheduling,
    deadlines, completion and cancellation live here once; the drivers only execute agents
    and wait for their results."""

    def __init__(self, mesh: "Mesh", native: Any, token: CancelToken) -> None:
        self.mesh = mesh
        self.native = native
        self.token = token
        # id → (node, deadline or None, timeout_ms)
        self.in_flight: Dict[int, Tuple[str, Optional[float], Optional[int]]] = {}
        self.exceptions: Dict[str, BaseException] = {}
        self.expired_any = False  # some agent timed out (and may still be running)

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
        for act in native.poll(token):
            kind = act.kind
            if kind == "human":
                continue
            fn = (tools if kind == "tool" else agents)[act.name]
            deadline = None
            if act.timeout_ms is not None:
                deadline = time.monotonic() + (act.delay_ms + act.timeout_ms) / 1000.0
            self.in_flight[act.id] = (act.node, deadline, act.timeout_ms)
            work.append((fn, act))
        if not self.in_flight:
            status = native.status()
            if status == "waiting" or status in _FINISHED:
                return None
            # Running with nothing to execute or await would spin forever.
            raise InternalError(f"run is {status} with no work outstanding")
        return work

    def wait_time(self) -> Optional[float]:
        """Seconds until the next deadline (``None``: no deadline)."""
        deadlines = [d for (_, d, _) in self.in_flight.values() if d is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def expire(self) -> List[int]:
        """Record a timeout for every activation past its deadline; their ids."""
        now = time.monotonic()
        expired = sorted(
            i for i, (_, d, _) in self.in_flight.items() if d is not None and d <= now
        )
        self.expired_any = self.expired_any or bool(expired)
        for i in expired:
            node, _, timeout_ms = self.in_flight.pop(i)
            self.exceptions.pop(node, None)
            self.native.complete_err(
                i, "timeout", "Timeout", f"no result within {timeout_ms} ms", True
            )
        return expired

    def done(self, act_id: int, done: _Done) -> None:
        if act_id not in self.in_flight or self.token._reason is not None:
            # Late (timed out) or the run is being cancelled: never recorded.
            return
        node = self.in_flight.pop(act_id)[0]
        Mesh._complete(self.native, act_id, node, done, self.exceptions)

    def abort(self, exc: BaseException) -> None:
        """Driving stopped with ``exc``: a Ctrl-C or a cancelled asyncio task cancels the run
        (so its log ends with ``runCancelled``); the log is released either way."""
        try:
            if isinstance(exc, KeyboardInterrupt):
                self.native.cancel("KeyboardInterrupt")
            elif isinstance(exc, asyncio.CancelledError):
                self.native.cancel("the task driving the run was cancelled")
        except AgentMeshError:
            pass  # the run may be closed or its log unwritable; exc is what the caller sees
        finally:
            # Release the log now; the traceback would keep the run (and its lock) alive.
            self.native.close()


def _check_options(
    run_id: Optional[str], tenant: Optional[str], cancel: Optional[CancelToken]
) -> None:
    """Type checks of the options shared by every entry point, before any log is touched."""
    for name, value in (("run_id", run_id), ("tenant", tenant)):
        if value is not None and not isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a str, not {type(value).__name__}")
    if cancel is not None and not isinstance(cancel, CancelToken):
        raise InvalidArgumentError(f"cancel must be a CancelToken, not {type(cancel).__name__}")


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
        # Worker threads shared by this mesh's runs, created on first use (thread start-up
        # would otherwise dominate short runs); see _take_pool.
        self._pool: Optional[DaemonPool] = None
        self._pool_lock = threading.Lock()
        self._pool_users = 0  # drives using self._pool
        self._retired: Dict[int, List[Any]] = {}  # id → [retired pool, drives still using it]
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
        """Start a run and drive it until it finishes or waits for a person; the agents of a
        step run in parallel on a thread pool.

        Raises :class:`AgentFailedError` (the agent's exception as ``__cause__``, the
        ``RunResult`` as ``.result``) when an agent exception failed the run; other failures
        (timeouts, limits) are returned with ``status == "failed"``. A ``KeyboardInterrupt``
        cancels the run (``runCancelled`` is recorded) and is re-raised.
        """
        _check_options(run_id, tenant, cancel)
        native = self._start(workflow, input, seed, run_id, tenant)
        return self._drive(native, cancel)

    async def run_async(
        self,
        workflow: Workflow,
        input: Any = None,
        seed: int = 0,
        run_id: Optional[str] = None,
        tenant: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> RunResult:
        """``run`` for asyncio: ``async def`` agents of a step run concurrently on the running
        event loop, plain functions on the mesh's worker threads. Cancelling the awaiting task
        cancels the run (``runCancelled``) and propagates."""
        _check_options(run_id, tenant, cancel)
        native = self._start(workflow, input, seed, run_id, tenant)
        return await self._drive_async(native, cancel)

    def resume(
        self,
        log_path: PathLike,
        approvals: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> RunResult:
        """Reopen a run from its log (after a crash, or to resolve people's decisions),
        complete waiting human nodes with ``approvals`` (node id → output) and drive it on.

        ``run_id``, when given, must be the run the log holds (``InvalidArgumentError``
        otherwise), so a mixed-up path never resumes someone else's run."""
        _check_options(run_id, None, cancel)
        return self._drive(self._reopen(log_path, approvals, run_id), cancel)

    async def resume_async(
        self,
        log_path: PathLike,
        approvals: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> RunResult:
        """``resume`` for asyncio (agents as in :meth:`run_async`)."""
        _check_options(run_id, None, cancel)
        return await self._drive_async(self._reopen(log_path, approvals, run_id), cancel)

    def fork(
        self,
        log_path: PathLike,
        seq: int,
        overrides: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> RunResult:
        """Fork the run in ``log_path`` at step end ``seq`` with node outputs replaced, and
        drive the fork (a new run with its own log)."""
        _check_options(run_id, None, cancel)
        return self._drive(self._fork(log_path, seq, overrides, run_id), cancel)

    async def fork_async(
        self,
        log_path: PathLike,
        seq: int,
        overrides: Optional[Mapping[str, Any]] = None,
        run_id: Optional[str] = None,
        cancel: Optional[CancelToken] = None,
    ) -> RunResult:
        """``fork`` for asyncio (agents as in :meth:`run_async`)."""
        _check_options(run_id, None, cancel)
        return await self._drive_async(self._fork(log_path, seq, overrides, run_id), cancel)

    # opening runs (shared by the sync and asyncio entry points) ----------------------------

    def _start(
        self,
        workflow: Workflow,
        input: Any,
        seed: int,
        run_id: Optional[str],
        tenant: Optional[str],
    ) -> Any:
        if not isinstance(workflow, Workflow):
            raise InvalidArgumentError(f"workflow must be a Workflow, not {type(workflow).__name__}")
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            raise InvalidArgumentError("seed must be an int in [0, 2**64)")
        self._check_registered(workflow._native)
        if isinstance(input, RawJson):
            input = json.loads(_agentmesh.normalize_json(input.text))
        return _agentmesh.NativeRun.start(
            workflow._native, input, seed, run_id, self.log_dir, self.fsync, tenant
        )

    def _reopen(
        self, log_path: PathLike, approvals: Optional[Mapping[str, Any]], run_id: Optional[str]
    ) -> Any:
        path = os.fspath(log_path)
        if run_id is not None:
            header = json.loads(_agentmesh.read_header(path))
            if header["runId"] != run_id:
                raise InvalidArgumentError(
                    f"{path} holds run '{header['runId']}', not '{run_id}'"
                )
        # Check registration before resume touches the file (it may append lost decisions).
        self._check_registered(_agentmesh.recorded_workflow(path))
        texts: Dict[str, str] = {}
        for node, value in dict(approvals or {}).items():
            text, why = encode(value)
            if text is None:
                raise InvalidOutputError(
                    f"node '{node}': approval is not JSON data: {why}", details={"node": node}
                )
            texts[node] = text
        native = _agentmesh.NativeRun.resume(path, self.fsync)
        try:
            waiting = [a for a in native.outstanding() if a.kind == "human"]
            # Check every approval before recording any, so a typo changes nothing.
            resolved = []
            for node, text in texts.items():
                act = next((a for a in waiting if a.node == node), None)
                if act is None:
                    names = ", ".join(a.node for a in waiting) or "none"
                    raise InvalidArgumentError(
                        f"node '{node}' has no pending human activation (waiting: {names})"
                    )
                resolved.append((act.id, text))
            for act_id, text in resolved:
                native.complete_ok_json(act_id, text)
        except BaseException:
            native.close()
            raise
        return native

    def _fork(
        self,
        log_path: PathLike,
        seq: int,
        overrides: Optional[Mapping[str, Any]],
        run_id: Optional[str],
    ) -> Any:
        path = os.fspath(log_path)
        self._check_registered(_agentmesh.recorded_workflow(path))
        return _agentmesh.NativeRun.fork(
            path, seq, dict(overrides or {}), run_id, self.log_dir, self.fsync
        )

    # driving ------------------------------------------------------------------------------

    def _drive(self, native: Any, cancel: Optional[CancelToken]) -> RunResult:
        token = cancel or CancelToken()
        # Without a caller's token only the agents themselves (and Ctrl-C) can cancel, so a
        # step of one activation without a deadline runs on this thread: no pool round trip,
        # the cost a plain loop of function calls would pay.
        on_caller = cancel is None
        drive = _Drive(self, native, token)
        q: "queue.Queue[Any]" = queue.Queue()
        token._attach(lambda: q.put(("cancel",)))
        workers = _Workers(self)
        running = 0  # agents submitted to the pool whose result has not been read
        try:
            while True:
                work = drive.advance()
                if work is None:
                    break
                if on_caller and len(work) == 1 and len(drive.in_flight) == 1:
                    fn, act = work[0]
                    if act.timeout_ms is None:
                        drive.done(act.id, _execute(fn, act, on_caller=True))
                        continue
                pool = workers.get()
                for fn, act in work:
                    pool.submit(_execute_into, q, fn, act)
                running += len(work)
                try:
                    msg = q.get(timeout=drive.wait_time())
                except queue.Empty:
                    drive.expire()
                    continue
                # Take every result already posted before scheduling again: one wake-up
                # for a burst of completions.
                while True:
                    if msg[0] == "done":
                        running -= 1
                        drive.done(msg[1], msg[2])
                    # ("cancel",) only wakes the loop; advance() reads the reason.
                    try:
                        msg = q.get_nowait()
                    except queue.Empty:
                        break
        except BaseException as e:
            drive.abort(e)
            raise
        finally:
            token._attach(None)
            workers.release(busy=running > 0)
        return self._result(native, drive.exceptions)

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

    async def _drive_async(self, native: Any, cancel: Optional[CancelToken]) -> RunResult:
        token = cancel or CancelToken()
        drive = _Drive(self, native, token)
        loop = asyncio.get_running_loop()
        q: "asyncio.Queue[Any]" = asyncio.Queue()
        tasks: Dict[int, "asyncio.Task[None]"] = {}

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(q.put_nowait, ("cancel",))
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

        workers = _Workers(self)

        async def perform(fn: AgentFn, act: Activation) -> None:
            try:
                done = await _execute_async(fn, act, workers)
            except asyncio.CancelledError as e:
                if act.id not in tasks:
                    raise  # cancelled by this driver (timeout or end of the run)
                # Python < 3.11: an agent's own CancelledError; report it, never go silent.
                done = _failure(e, 0)
            q.put_nowait(("done", act.id, done))

        # As in _drive: a lone activation without a deadline, when only the agents can
        # cancel, is awaited right here instead of in a task of its own.
        on_caller = cancel is None
        token._attach(wake)
        try:
            while True:
                work = drive.advance()
                if work is None:
                    break
                if on_caller and len(work) == 1 and len(drive.in_flight) == 1:
                    fn, act = work[0]
                    if act.timeout_ms is None:
                        drive.done(act.id, await _execute_async(fn, act, workers))
                        continue
                for fn, act in work:
                    tasks[act.id] = loop.create_task(perform(fn, act))
                try:
                    msg = await asyncio.wait_for(q.get(), drive.wait_time())
                except asyncio.TimeoutError:
                    for i in drive.expire():
                        tasks.pop(i).cancel()  # its late result never reaches the queue
                    continue
                while True:
                    if msg[0] == "done":
                        tasks.pop(msg[1], None)
                        drive.done(msg[1], msg[2])
                    if q.empty():
                        break
                    msg = q.get_nowait()
        except BaseException as e:
            drive.abort(e)
            raise
        finally:
            token._attach(None)
            # Agents still running (the run was cancelled) are cancelled; plain-function agents
            # on worker threads run to their end and their results are dropped.
            for task in tasks.values():
                task.cancel()
            workers.release(busy=bool(tasks) or drive.expired_any)
        return self._result(native, drive.exceptions)

    @staticmethod
    def _complete(
        native: Any, act_id: int, node: str, done: _Done, exceptions: Dict[str, BaseException]
    ) -> None:
        if done[0] == "ok":
            _, output, usage, dur = done
            try:
                if type(output) is RawJson:
                    native.complete_ok_json(act_id, output.text, usage, dur)
                else:
                    native.complete_ok(act_id, output, usage, dur)
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
        waiting = [a for a in native.outstanding() if a.kind == "human"]
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
