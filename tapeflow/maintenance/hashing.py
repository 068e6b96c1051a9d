"""Content checksums in the catalog's form ('sha256:<hex>', 'blake3:<hex>'), computed while a
member's bytes stream off tape, holes of sparse files included as the writer hashes them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from tapeflow.tapefmt import Member
from tapeflow.tapefmt.writer import checksum_algorithm

DEFAULT_ALGORITHM = "auto"  # what the writer would have used for a member of that size


def algorithm_of(checksum: str | None) -> str | None:
    """The algorithm named by a stored checksum ('sha256:...' -> 'sha256'), None if none."""
    if not checksum or ":" not in checksum:
        return None
    return checksum.split(":", 1)[0]


def new_hasher(algorithm: str) -> Any | None:
    """A hashlib-like object for `algorithm`, or None when this host cannot compute it."""
    if algorithm == "blake3":
        import blake3

        return blake3.blake3()
    try:
        return hashlib.new(algorithm)
    except ValueError:
        return None


_ZEROS = bytes(1 << 16)


def _zeros(hasher: Any, n: int) -> None:
    while n > 0:
        step = min(n, len(_ZEROS))
        hasher.update(_ZEROS[:step])
        n -= step


def hash_member(member: Member, data: Iterator[memoryview], algorithm: str) -> str | None:
    """Consume a member's stored data and return its checksum (None: algorithm unavailable);
    "auto" picks the writer's algorithm for the member's size."""
    if algorithm == "auto":
        algorithm = checksum_algorithm(member.size)
    hasher = new_hasher(algorithm)
    if hasher is None:
        for _ in data:
            pass
        return None
    if member.sparse is None:
        for chunk in data:
            hasher.update(chunk)
        return f"{algorithm}:{hasher.hexdigest()}"
    pos = 0  # logical offset hashed so far
    chunks = iter(member.sparse)
    off, left = next(chunks, (member.size, 0))
    for piece in data:
        view = piece
        while len(view):
            while left == 0:
                off, left = next(chunks, (member.size, len(view)))
            if off > pos:
                _zeros(hasher, off - pos)
                pos = off
            take = min(left, len(view))
            hasher.update(view[:take])
            pos += take
            off += take
            left -= take
            view = view[take:]
    _zeros(hasher, member.size - pos)
    return f"{algorithm}:{hasher.hexdigest()}"
