"""JSON data at the boundary: what counts as JSON data is decided once, natively.

Only JSON data is accepted from Python: ``None``, ``bool``, ``int``, finite ``float``, ``str``,
``list``/``tuple`` and ``dict`` with ``str`` keys (subclasses included), nested at most 100
deep. The native converter (``agentmesh-py/src/pyjson.rs``) turns such values into the core's
JSON values directly and names the first offending place otherwise; the core records them
with serde, so no wire JSON is produced in Python.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from . import _agentmesh


class RawJson:
    """JSON text handed to the core unchanged (it is still parsed and validated there).

    Use it when a value must reach the log exactly as written, e.g. ``-0`` or integers
    beyond 64 bits, which Python's own values cannot carry the way the core reads them.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"RawJson needs str, not {type(text).__name__}")
        self.text = text

    def __repr__(self) -> str:
        return f"RawJson({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJson) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def encode(value: Any) -> Tuple[Optional[str], Optional[str]]:
    """``(json_text, None)`` for JSON data (or a :class:`RawJson`), ``(None, why)`` otherwise."""
    if isinstance(value, RawJson):
        return value.text, None
    return _agentmesh.to_json_text(value)
