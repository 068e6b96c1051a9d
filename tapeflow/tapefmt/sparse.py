"""Sparse files in GNU pax format 1.0: find data extents with SEEK_DATA/SEEK_HOLE, write the
map ('count\\n' then 'offset\\nsize\\n' pairs, padded to 512) ahead of the data chunks."""

from __future__ import annotations

import os
from typing import Protocol

from tapeflow.tapefmt.pax import BLOCK


class _Sink(Protocol):
    def write(self, data: bytes | memoryview) -> None: ...
    def write_zeros(self, n: int) -> None: ...


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


COPY = 1024 * 1024


def data_map(fd: int, size: int) -> list[tuple[int, int]] | None:
    """Data extents (offset, length) of a file with holes; None when it has none."""
    chunks: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains up to the end
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        chunks.append((start, end - start))
        pos = end
    os.lseek(fd, 0, os.SEEK_SET)
    if chunks == [(0, size)]:
        return None
    if not chunks or chunks[-1][0] + chunks[-1][1] < size:
        chunks.append((size, 0))  # GNU convention: a zero-length chunk marks the real end
    return chunks


def encode_map(chunks: list[tuple[int, int]]) -> bytes:
    """The 1.0 map block(s): decimal numbers one per line, padded with NULs to 512."""
    text = b"%d\n" % len(chunks) + b"".join(b"%d\n%d\n" % c for c in chunks)
    return text + bytes(-len(text) % BLOCK)


def copy_chunks(
    sink: _Sink, fd: int, chunks: list[tuple[int, int]], hasher: _Hasher, size: int
) -> None:
    """Write the data chunks; the hash covers the whole logical content, holes as zeros."""
    pos = 0
    zeros = bytes(COPY)
    for offset, length in chunks:
        while pos < offset:  # the hole, for the checksum only
            step = min(COPY, offset - pos)
            hasher.update(zeros[:step])
            pos += step
        done = 0
        while done < length:
            data = os.pread(fd, min(COPY, length - done), offset + done)
            if not data:
                sink.write_zeros(length - done)
                hasher.update(bytes(length - done))
                done = length
                break
            sink.write(data)
            hasher.update(data)
            done += len(data)
        pos = offset + length
    while pos < size:
        step = min(COPY, size - pos)
        hasher.update(zeros[:step])
        pos += step
