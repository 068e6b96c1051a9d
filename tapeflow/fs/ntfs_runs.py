"""Cluster-run arithmetic for the NTFS parser: bitmaps to runs, run subtraction, and walking a
runlist by VCN."""

from __future__ import annotations

import re

from .model import coalesce
from .ntfs_layout import Run


def covers(runs: list[Run], first: int, end: int) -> bool:
    """True when sorted `runs` map every VCN in [first, end)."""
    at = first
    for vcn, _lcn, n in runs:
        if vcn <= at < vcn + n:
            at = vcn + n
        if at >= end:
            return True
    return at >= end


def pieces(runs: list[Run], first: int, count: int) -> list[tuple[int | None, int]]:
    """(lcn or None, clusters) pieces of sorted `runs` covering VCNs [first, first+count);
    VCNs no run maps read as sparse."""
    out: list[tuple[int | None, int]] = []
    end = first + count
    at = first
    for vcn, lcn, n in runs:
        if vcn + n <= at:
            continue
        if vcn >= end:
            break
        if vcn > at:
            out.append((None, vcn - at))
            at = vcn
        take = min(vcn + n, end) - at
        out.append((None if lcn is None else lcn + at - vcn, take))
        at += take
    if at < end:
        out.append((None, end - at))
    return out


_NONZERO = re.compile(rb"[^\x00]+")
_FULL_OR_PARTIAL = re.compile(rb"\xff+|[^\xff]")


def bitmap_runs(bitmap: bytes, nbits: int) -> list[tuple[int, int]]:
    """Set bits of an LSB-first bitmap, below `nbits`, as coalesced (start, length) runs."""
    runs: list[tuple[int, int]] = []
    for m in _NONZERO.finditer(bitmap):
        s = m.start()
        for p in _FULL_OR_PARTIAL.finditer(m.group()):
            a, b = p.span()
            if p.group()[0] == 0xFF:
                runs.append(((s + a) * 8, (b - a) * 8))
            else:
                byte, base = p.group()[0], (s + a) * 8
                runs.extend((base + bit, 1) for bit in range(8) if byte >> bit & 1)
    clipped = [(st, min(n, nbits - st)) for st, n in runs if st < nbits]
    return coalesce(clipped)


def subtract_runs(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of coalesced runs `a` not covered by coalesced runs `b`."""
    out: list[tuple[int, int]] = []
    j = 0
    for start, length in a:
        end = start + length
        at = start
        while j < len(b) and b[j][0] + b[j][1] <= at:
            j += 1
        k = j
        while at < end and k < len(b) and b[k][0] < end:
            bs, be = b[k][0], b[k][0] + b[k][1]
            if bs > at:
                out.append((at, bs - at))
            at = max(at, be)
            k += 1
        if at < end:
            out.append((at, end - at))
    return out
