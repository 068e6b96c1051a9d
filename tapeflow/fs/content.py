"""A file's bytes from its extents, wherever the clusters are read from (the image, or a
session on tape): sparse runs read as zeros, NTFS LZNT1 compression units are decompressed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tapeflow.fs.ntfs_lznt1 import decompress
from tapeflow.fs.ntfs_runs import pieces

ReadClusters = Callable[[int, int], bytes]  # (lcn, count) -> count * cluster_size bytes


def compressed_content(
    extents: Sequence[tuple[int, int | None, int]],
    size: int,
    unit: int,
    cluster_size: int,
    read_clusters: ReadClusters,
) -> bytes:
    """Content of a compressed attribute, one compression unit (`unit` clusters) at a time: a
    unit with every cluster stored is plain, one with fewer is LZNT1, one with none is zeros."""
    out = bytearray()
    for first in range(0, -(-size // (unit * cluster_size)) * unit, unit):
        real = [(lcn, n) for lcn, n in pieces(list(extents), first, unit) if lcn is not None]
        stored = sum(n for _lcn, n in real)
        if stored == 0:
            out += bytes(unit * cluster_size)
            continue
        raw = b"".join(read_clusters(lcn, n) for lcn, n in real)
        out += raw if stored >= unit else decompress(raw, unit * cluster_size)
    return bytes(out[:size])
