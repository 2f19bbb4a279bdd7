"""Watching a run while it is driven: ``on_event`` callbacks and the event streams that
``Mesh.stream`` and ``Mesh.stream_async`` return.

The drivers (``_driver.py``) are generators of the events their run commits, taken from the
core after each commit (``NativeRun.take_committed``) only when the run is watched (by
``on_event``, ``on_budget_warning`` or a stream). A callback is called between two steps of
that generator and a stream hands its events out one by one, so delivery blocks the run —
nothing is buffered and no thread is added — and stopping delivery (a callback that raises,
a stream left early) stops driving the way Ctrl-C does: nothing is written and the run stays
resumable from its log.
"""

from __future__ import annotations

import inspect
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncGenerator,
    Awaitable,
    Callable,
    Dict,
    Generator,
    List,
    Optional,
    Tuple,
    Type,
)

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from ._driver import RunResult, _Drive

Event = Dict[str, Any]
# Called with each committed event; its return value is ignored (awaited first by the asyncio
# entry points when it is awaitable).
EventFn = Callable[[Event], Any]


def _callbacks(
    on_event: Optional[EventFn], on_budget_warning: Optional[EventFn]
) -> List[Tuple[str, EventFn, bool]]:
    """The callbacks of a watched run: ``(name, fn, budget warnings only)``, in call order."""
    out: List[Tuple[str, EventFn, bool]] = []
    if on_event is not None:
        out.append(("on_event", on_event, False))
    if on_budget_warning is not None:
        out.append(("on_budget_warning", on_budget_warning, True))
    return out


def deliver(
    events: Generator[Event, None, None],
    drive: "_Drive",
    on_event: Optional[EventFn],
    on_budget_warning: Optional[EventFn] = None,
) -> "RunResult":
    """Drive a run to its end, calling ``on_event`` with each committed event and
    ``on_budget_warning`` with each ``budgetWarning`` among them (after ``on_event``)."""
    callbacks = _callbacks(on_event, on_budget_warning)
    try:
        for event in events:
            for name, fn, warnings_only in callbacks:
                if warnings_only and event.get("type") != "budgetWarning":
                    continue
                returned = fn(event)
                if returned is not None and inspect.isawaitable(returned):
                    if inspect.iscoroutine(returned):
                        returned.close()  # never awaited: close it so Python does not warn
                    raise InvalidArgumentError(
                        f"{name} returned {type(returned).__name__}: an async callback needs "
                        "Mesh.run_async (or resume_async, retry_async, fork_async)"
                    )
    except BaseException:
        events.close()  # stops driving now (see _Drive.interrupt), not when garbage collected
        raise
    return _result_of(drive)


async def deliver_async(
    events: AsyncGenerator[Event, None],
    drive: "_Drive",
    on_event: Optional[EventFn],
    on_budget_warning: Optional[EventFn] = None,
) -> "RunResult":
    """:func:`deliver` for asyncio; an awaitable that a callback returns is awaited."""
    callbacks = _callbacks(on_event, on_budget_warning)
    try:
        async for event in events:
            for _, fn, warnings_only in callbacks:
                if warnings_only and event.get("type") != "budgetWarning":
                    continue
                returned = fn(event)
                if returned is not None and inspect.isawaitable(returned):
                    await returned
    except BaseException:
        await events.aclose()
        raise
    return _result_of(drive)


def _result_of(drive: "_Drive") -> "RunResult":
    if drive.result is None:
        raise InvalidArgumentError(
            "the run has no result: the stream stopped before the run stopped driving "
            "(left early, closed, or its consumer raised); resume the run from its log"
        )
    return drive.result


class RunStream:
    """The events of a run, driven as you iterate: what :meth:`Mesh.stream` returns.

    Each item is the dict :func:`agentmesh.read_log` gives for an event, plus its ``meta``
    (``at``, and ``durUs`` for completions), in commit order. The run advances only while
    you ask for the next event. At the end of the iteration :attr:`result` holds the
    ``RunResult``; an agent's exception that failed the run raises :class:`AgentFailedError`
    from the last ``next()``, as ``Mesh.run`` does. Leaving the loop early (``break``, an
    exception in its body) or calling :meth:`close` stops driving as Ctrl-C does: nothing
    is written, the log is released and the run is resumable. ``with mesh.stream(...) as
    events:`` closes it for certain even if you keep a reference to it.
    """

    __slots__ = ("_events", "_drive")

    def __init__(self, events: Generator[Event, None, None], drive: "_Drive") -> None:
        self._events = events
        self._drive = drive

    def __iter__(self) -> "RunStream":
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        """Stop driving (if the run is still being driven) and release the log; nothing is
        written. A no-op once the run stopped driving."""
        self._events.close()
        if self._drive.result is None:
            self._drive.interrupt()  # never started (or stopped by an error): release it

    def __enter__(self) -> "RunStream":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    @property
    def result(self) -> "RunResult":
        """Where the run stopped (completed, failed, cancelled or waiting), once the iteration
        has ended. ``InvalidArgumentError`` before that, or when the stream stopped early."""
        return _result_of(self._drive)


class AsyncRunStream:
    """:class:`RunStream` for asyncio, what :meth:`Mesh.stream_async` returns: ``async for
    event in mesh.stream_async(...)``, ``await stream.aclose()``, ``async with``.

    Leaving the ``async for`` early releases the log at once (the stream's last reference
    goes away with the loop), so the run can be resumed right after; the agent tasks still
    running are cancelled.
    """

    __slots__ = ("_events", "_drive")

    def __init__(self, events: AsyncGenerator[Event, None], drive: "_Drive") -> None:
        self._events = events
        self._drive = drive

    def __aiter__(self) -> "AsyncRunStream":
        return self

    def __anext__(self) -> Awaitable[Event]:
        return self._events.__anext__()

    async def aclose(self) -> None:
        """Stop driving (if the run is still being driven) and release the log; nothing is
        written."""
        await self._events.aclose()
        if self._drive.result is None:
            self._drive.interrupt()

    async def __aenter__(self) -> "AsyncRunStream":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    @property
    def result(self) -> "RunResult":
        """As :attr:`RunStream.result`."""
        return _result_of(self._drive)

    def __del__(self) -> None:
        # asyncio finalizes an abandoned async generator later, in a task of its own; a run
        # left early must not hold its log (and lock) until then.
        drive = getattr(self, "_drive", None)
        if drive is not None and drive.result is None:
            try:
                drive.interrupt()
            except Exception:  # noqa: BLE001 - the loop may be closed; the log is released first
                pass
