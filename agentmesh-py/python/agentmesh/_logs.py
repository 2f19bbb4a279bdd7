"""AgentMesh's structured logs routed into Python ``logging`` (docs/telemetry.md).

The core keeps each committed event of a run observed by a :class:`Telemetry` as a JSON line
(run id, trace id, span id, node, seq, event type) in a bounded buffer; a daemon thread here
drains it and logs each line on a ``logging`` logger. Rust never calls into Python: the
thread pulls, with the GIL released while it waits.
"""
import json
import logging
import threading
from typing import Any, Dict, Optional

from . import _agentmesh

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING, "ERROR": logging.ERROR}
_lock = threading.Lock()
_thread: Optional[threading.Thread] = None


def route_logs(logger: str = "agentmesh", level: str = "info", buffer: int = 10_000) -> None:
    """Log AgentMesh's structured logs from ``level`` (``"debug"``, ``"info"``, ``"warn"``,
    ``"error"``) up on the ``logging`` logger named ``logger``; each record's ``extra`` has
    ``run_id``, ``trace_id``, ``span_id``, ``node``, ``seq`` and ``event`` (and the JSON line
    as ``agentmesh``). The first call decides level and buffer size (``buffer`` lines; the
    oldest are dropped when the program logs faster than they are handled); later calls
    only change the logger. :class:`InvalidArgumentError` for another level, or when the
    process already has another global ``tracing`` subscriber."""
    global _thread
    native = _agentmesh.capture_logs(level, buffer)
    with _lock:
        _Router.logger = logging.getLogger(logger)
        if _thread is None:
            _thread = threading.Thread(
                target=_Router.run, args=(native,), name="agentmesh-logs", daemon=True
            )
            _thread.start()


class _Router:
    logger: logging.Logger = logging.getLogger("agentmesh")

    @classmethod
    def run(cls, native: Any) -> None:
        while True:
            for line in native.drain(512, 0.5):
                try:
                    record: Dict[str, Any] = json.loads(line)
                except ValueError:
                    continue
                cls.handle(record)

    @classmethod
    def handle(cls, record: Dict[str, Any]) -> None:
        level = _LEVELS.get(str(record.get("level", "INFO")).upper(), logging.INFO)
        extra = {k: record.get(k) for k in ("run_id", "trace_id", "span_id", "node", "seq", "event")}
        extra["agentmesh"] = record
        cls.logger.log(level, "%s", record.get("message", ""), extra=extra)
