"""Worker threads for agents that are plain functions.

``concurrent.futures.ThreadPoolExecutor`` would do, but its threads are joined when the
interpreter exits (and ``asyncio.run`` waits for the default executor): one agent that never
returns — the case timeouts exist for — would keep the process from exiting after its run has
long failed with ``TIMEOUT``. These workers are daemon threads, so a stuck agent can only ever
cost its thread. Otherwise it behaves like ``ThreadPoolExecutor``: threads start on demand up
to ``max_workers`` and are reused while idle.
"""

from __future__ import annotations

import itertools
import queue
import threading
from concurrent.futures import Executor, Future
from typing import Any, Callable, Optional, Tuple, TypeVar

T = TypeVar("T")

_Item = Optional[Tuple["Future[Any]", Callable[..., Any], Tuple[Any, ...]]]
_names = itertools.count(1)


class DaemonPool(Executor):
    def __init__(self, max_workers: int, name: str = "agentmesh") -> None:
        self._max = max_workers
        self._name = f"{name}-{next(_names)}"
        self._work: "queue.SimpleQueue[_Item]" = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # released by each worker that waits for work
        self._lock = threading.Lock()
        self._threads = 0
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> "Future[T]":
        if kwargs:
            raise TypeError("DaemonPool.submit takes positional arguments only")
        future: "Future[T]" = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a pool that was shut down")
            self._work.put((future, fn, args))
            # An idle worker will take it; otherwise start one (up to the limit).
            if not self._idle.acquire(blocking=False) and self._threads < self._max:
                self._start()
        return future

    def _start(self) -> None:
        """Start one more worker (the lock is held)."""
        self._threads += 1
        t = threading.Thread(target=self._run, name=f"{self._name}_{self._threads}", daemon=True)
        t.start()

    def grow(self, n: int) -> None:
        """``n`` of the running tasks are abandoned (their agents timed out and may never
        return): allow ``n`` more threads, so work queued behind them still starts."""
        with self._lock:
            if self._closed:
                return
            self._max += n
            for _ in range(min(n, self._work.qsize())):
                self._start()

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as e:  # noqa: BLE001 - handed to the future's owner
                    future.set_exception(e)
                else:
                    future.set_result(result)
            del item, future, fn, args  # drop references before waiting again
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the workers once the queued work is done. ``wait`` is accepted for the
        ``Executor`` interface but never waits: a worker may be stuck in an agent forever."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._work.put(None)
