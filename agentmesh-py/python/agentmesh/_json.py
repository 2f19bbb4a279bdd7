"""Python values → JSON text for the core.

The core parses what this produces with serde_json and records it; nothing else converts
values. Only JSON data is accepted: ``None``, ``bool``, ``int``, finite ``float``, ``str``,
``list``/``tuple`` and ``dict`` with ``str`` keys. ``json.dumps`` alone would turn ``1``-keys
into ``"1"`` and sets into errors far from their origin, so values are checked first and the
first offending place is named.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

# serde_json refuses nesting deeper than 128; fail here with a path instead.
_MAX_DEPTH = 128


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


def _problem(value: Any, path: str, depth: int) -> Optional[str]:
    if depth > _MAX_DEPTH:
        return f"nesting deeper than {_MAX_DEPTH} at {path}"
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} at {path} is not a JSON number"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"string at {path} is not valid UTF-8 (lone surrogate)"
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            p = _problem(item, f"{path}[{i}]", depth + 1)
            if p is not None:
                return p
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                return f"key {k!r} ({type(k).__name__}) at {path} is not a string"
            p = _problem(item, f"{path}[{k!r}]", depth + 1)
            if p is not None:
                return p
        return None
    return f"{type(value).__name__} at {path} is not JSON data"


def problem(value: Any) -> Optional[str]:
    """Why ``value`` is not JSON data, or ``None`` when it is."""
    if isinstance(value, RawJson):
        return None
    return _problem(value, "$", 0)


def dumps(value: Any) -> str:
    """JSON text of a value already checked with :func:`problem`."""
    if isinstance(value, RawJson):
        return value.text
    return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
