"""CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for the tests that reseal format-2 logs.
``append(crc, data)`` continues a running CRC the way the core's chain does (the header starts
from 0). ``test_the_resealing_helper_is_faithful`` checks it against the core's own values."""

from __future__ import annotations

from typing import List


def _table() -> List[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def append(crc: int, data: bytes) -> int:
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert append(0, b"123456789") == 0xE3069283  # the standard check value
