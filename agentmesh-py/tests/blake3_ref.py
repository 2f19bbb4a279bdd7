"""blake3 for the tests that reseal logs: the PyPI ``blake3`` package when installed, else this
pure-Python port of the reference implementation (slow, but the tests hash a few KB).
``test_the_resealing_helper_is_faithful`` checks either against the core's own hashes."""

from __future__ import annotations

from typing import List

try:
    from blake3 import blake3 as _native
except ImportError:  # pragma: no cover - depends on the environment
    _native = None

_IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
_PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
_CHUNK_START, _CHUNK_END, _PARENT, _ROOT = 1, 2, 4, 8
_MASK = 0xFFFFFFFF


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _MASK


def _g(s: List[int], a: int, b: int, c: int, d: int, x: int, y: int) -> None:
    s[a] = (s[a] + s[b] + x) & _MASK
    s[d] = _rotr(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotr(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b] + y) & _MASK
    s[d] = _rotr(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotr(s[b] ^ s[c], 7)


def _compress(cv: List[int], block: bytes, counter: int, block_len: int, flags: int) -> List[int]:
    m = [int.from_bytes(block[4 * i : 4 * i + 4], "little") for i in range(16)]
    s = cv[:8] + _IV[:4] + [counter & _MASK, (counter >> 32) & _MASK, block_len, flags]
    for r in range(7):
        _g(s, 0, 4, 8, 12, m[0], m[1])
        _g(s, 1, 5, 9, 13, m[2], m[3])
        _g(s, 2, 6, 10, 14, m[4], m[5])
        _g(s, 3, 7, 11, 15, m[6], m[7])
        _g(s, 0, 5, 10, 15, m[8], m[9])
        _g(s, 1, 6, 11, 12, m[10], m[11])
        _g(s, 2, 7, 8, 13, m[12], m[13])
        _g(s, 3, 4, 9, 14, m[14], m[15])
        if r < 6:
            m = [m[i] for i in _PERMUTATION]
    return [s[i] ^ s[i + 8] for i in range(8)] + [s[i + 8] ^ cv[i] for i in range(8)]


def _chunk(data: bytes, counter: int, root: bool) -> List[int]:
    """The chaining value of one chunk (at most 1024 bytes); the root output when ``root``."""
    cv = _IV[:]
    blocks = [data[i : i + 64] for i in range(0, len(data), 64)] or [b""]
    for i, block in enumerate(blocks):
        flags = (_CHUNK_START if i == 0 else 0) | (_CHUNK_END if i == len(blocks) - 1 else 0)
        if root and i == len(blocks) - 1:
            flags |= _ROOT
        cv = _compress(cv, block.ljust(64, b"\0"), counter, len(block), flags)[:8]
    return cv


def _parent(left: List[int], right: List[int], root: bool) -> List[int]:
    block = b"".join(w.to_bytes(4, "little") for w in left + right)
    return _compress(_IV, block, 0, 64, _PARENT | (_ROOT if root else 0))[:8]


def _tree(chunks: List[bytes], first: int, root: bool) -> List[int]:
    if len(chunks) == 1:
        return _chunk(chunks[0], first, root)
    # The left subtree holds the largest power of two of chunks smaller than all of them.
    left = 1
    while left * 2 < len(chunks):
        left *= 2
    return _parent(_tree(chunks[:left], first, False), _tree(chunks[left:], first + left, False), root)


def digest(data: bytes) -> bytes:
    """blake3(data), 32 bytes."""
    if _native is not None:
        return bytes(_native(data).digest())
    chunks = [data[i : i + 1024] for i in range(0, len(data), 1024)] or [b""]
    return b"".join(w.to_bytes(4, "little") for w in _tree(chunks, 0, True))
