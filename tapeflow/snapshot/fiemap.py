"""FIEMAP (FS_IOC_FIEMAP) extent maps, and what they tell about a reflinked snapshot.

After a reflink clone, origin and snapshot share every physical extent. A CoW filesystem never
writes a shared block in place, so any range of the origin that now maps to a different
physical place than the snapshot (or gained or lost data) was written since the clone. That is
how ReflinkProvider answers ``modified_blocks`` without reading a byte of data.

Extents whose physical address is not a plain block address (inline, tail-packed, unaligned,
delayed allocation, unknown) are always reported as changed; encoded (compressed) extents only
match an identical extent record. Errors are therefore only ever on the side of "changed".

struct fiemap / struct fiemap_extent (linux/fiemap.h) are native-endian, declared below.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterable
from dataclasses import dataclass

from construct import Array, Bytes, Int32un, Int64un, Struct

FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP_MAX_OFFSET = (1 << 64) - 1
FIEMAP_FLAG_SYNC = 0x1  # write back dirty data first, so delayed allocations get an address

FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_UNKNOWN = 0x2
FIEMAP_EXTENT_DELALLOC = 0x4
FIEMAP_EXTENT_ENCODED = 0x8
FIEMAP_EXTENT_DATA_ENCRYPTED = 0x80
FIEMAP_EXTENT_NOT_ALIGNED = 0x100
FIEMAP_EXTENT_DATA_INLINE = 0x200
FIEMAP_EXTENT_DATA_TAIL = 0x400
FIEMAP_EXTENT_UNWRITTEN = 0x800
FIEMAP_EXTENT_MERGED = 0x1000
FIEMAP_EXTENT_SHARED = 0x2000

# no usable physical address: never trust a match
_OPAQUE = (
    FIEMAP_EXTENT_UNKNOWN
    | FIEMAP_EXTENT_DELALLOC
    | FIEMAP_EXTENT_NOT_ALIGNED
    | FIEMAP_EXTENT_DATA_INLINE
    | FIEMAP_EXTENT_DATA_TAIL
)

FiemapHeader = Struct(
    "start" / Int64un,
    "length" / Int64un,
    "flags" / Int32un,
    "mapped_extents" / Int32un,
    "extent_count" / Int32un,
    "reserved" / Int32un,
)

FiemapExtentStruct = Struct(
    "logical" / Int64un,
    "physical" / Int64un,
    "length" / Int64un,
    "reserved64" / Array(2, Int64un),
    "flags" / Int32un,
    "reserved" / Bytes(12),
)

HEADER_SIZE = FiemapHeader.sizeof()  # 32
EXTENT_SIZE = FiemapExtentStruct.sizeof()  # 56


@dataclass(frozen=True)
class Extent:
    """One mapped range of a file: ``length`` bytes at file offset ``logical`` live at disk
    byte ``physical``."""

    logical: int
    physical: int
    length: int
    flags: int = 0

    @property
    def end(self) -> int:
        """File offset just past the extent."""
        return self.logical + self.length


def build_request(start: int, length: int, flags: int, extent_count: int) -> bytearray:
    """The ioctl argument: a header asking for ``extent_count`` extents, plus room for them."""
    header = FiemapHeader.build(
        dict(
            start=start,
            length=length,
            flags=flags,
            mapped_extents=0,
            extent_count=extent_count,
            reserved=0,
        )
    )
    return bytearray(header + bytes(EXTENT_SIZE * extent_count))


def parse_reply(buf: bytes) -> tuple[list[Extent], bool]:
    """Extents of a filled-in request and whether the last one is the file's last; the kernel's
    mapped count is bounded by what the buffer can hold."""
    header = FiemapHeader.parse(buf[:HEADER_SIZE])
    room = (len(buf) - HEADER_SIZE) // EXTENT_SIZE
    count = min(header.mapped_extents, header.extent_count, room)
    extents: list[Extent] = []
    last = False
    for i in range(count):
        off = HEADER_SIZE + i * EXTENT_SIZE
        raw = FiemapExtentStruct.parse(buf[off : off + EXTENT_SIZE])
        if raw.length == 0:
            continue
        extents.append(Extent(raw.logical, raw.physical, raw.length, raw.flags))
        last = last or bool(raw.flags & FIEMAP_EXTENT_LAST)
    return extents, last


def fiemap(fd: int, *, sync: bool = True, batch: int = 256) -> list[Extent]:
    """The whole extent map of an open file, asked ``batch`` extents at a time. OSError from the
    ioctl (EOPNOTSUPP: filesystem without FIEMAP) propagates."""
    extents: list[Extent] = []
    start = 0
    flags = FIEMAP_FLAG_SYNC if sync else 0
    while True:
        buf = build_request(start, FIEMAP_MAX_OFFSET - start, flags, batch)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
        chunk, last = parse_reply(bytes(buf))
        flags = 0  # synced once is enough
        if not chunk:
            break
        extents.extend(chunk)
        next_start = max(e.end for e in chunk)
        if last or next_start <= start:
            break
        start = next_start
    return extents


def _pieces(extents: Iterable[Extent], size: int) -> list[tuple[int, int, Extent | None]]:
    """Non-overlapping (start, end, extent-or-hole) pieces covering [0, size): extents sorted,
    clipped to size, overlaps cut (a misbehaving filesystem must not crash the diff)."""
    pieces: list[tuple[int, int, Extent | None]] = []
    pos = 0
    for ext in sorted(extents, key=lambda e: e.logical):
        a, b = max(ext.logical, pos), min(ext.end, size)
        if a >= b:
            continue
        if a > pos:
            pieces.append((pos, a, None))
        pieces.append((a, b, ext))
        pos = b
    if pos < size:
        pieces.append((pos, size, None))
    return pieces


def _same(a: Extent | None, b: Extent | None, offset: int) -> bool:
    """Whether byte ``offset`` provably holds the same data in both maps."""
    if a is None or b is None:
        return a is None and b is None
    if (a.flags | b.flags) & _OPAQUE:
        return False
    if (a.flags | b.flags) & FIEMAP_EXTENT_ENCODED:
        return (a.logical, a.physical, a.length, a.flags & FIEMAP_EXTENT_ENCODED) == (
            b.logical,
            b.physical,
            b.length,
            b.flags & FIEMAP_EXTENT_ENCODED,
        )
    if (a.flags ^ b.flags) & FIEMAP_EXTENT_UNWRITTEN:
        return False
    return a.physical + (offset - a.logical) == b.physical + (offset - b.logical)


def changed_ranges(
    origin: Iterable[Extent], origin_size: int, snapshot: Iterable[Extent], snapshot_size: int
) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of the origin (within its current size) whose mapping differs
    from the snapshot's, merged and sorted. Past the snapshot's end the snapshot is a hole."""
    ours = _pieces(origin, origin_size)
    theirs = _pieces(snapshot, min(snapshot_size, origin_size))
    if not theirs or theirs[-1][1] < origin_size:
        theirs.append((theirs[-1][1] if theirs else 0, origin_size, None))
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(ours) and j < len(theirs):
        a0, a1, ea = ours[i]
        b0, b1, eb = theirs[j]
        lo, hi = max(a0, b0), min(a1, b1)
        if lo < hi and not _same(ea, eb, lo):
            if out and out[-1][1] == lo:
                out[-1] = (out[-1][0], hi)
            else:
                out.append((lo, hi))
        if a1 <= b1:
            i += 1
        if b1 <= a1:
            j += 1
    return out


def to_block_runs(ranges: Iterable[tuple[int, int]], block_size: int) -> list[tuple[int, int]]:
    """Byte ranges -> sorted, merged (first_block, block_count) runs; a block touched by any
    byte of a range counts."""
    if block_size <= 0:
        raise ValueError(f"block size must be positive, got {block_size}")
    runs: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if end <= start:
            continue
        first, stop = start // block_size, -(-end // block_size)
        if runs and runs[-1][0] + runs[-1][1] >= first:
            prev_first, prev_count = runs[-1]
            runs[-1] = (prev_first, max(prev_first + prev_count, stop) - prev_first)
        else:
            runs.append((first, stop - first))
    return runs
