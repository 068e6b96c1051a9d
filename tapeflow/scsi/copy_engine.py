"""Runs the segments of an EXTENDED COPY plan between a block device and a tape drive.

One implementation serves both paths: the embedded library's copy manager (the data never
reaches the backup host) and the host itself when the SAN has no copy manager. Records written
to tape are exactly `record_size` bytes: segment data is concatenated (CAT=1) and cut into
records, so both paths leave byte-identical tapes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tapeflow.scsi.sense import EndOfMedium, ScsiError, VolumeOverflow
from tapeflow.scsi.xcopy import (
    BLOCK_TO_STREAM,
    INLINE_TO_STREAM,
    STREAM_TO_BLOCK,
    STREAM_TO_DISCARD,
    Segment,
)

READ_CHUNK_BLOCKS = 2048  # 1 MiB of 512-byte blocks per disk read


class BlockIO(Protocol):
    """What the engine needs of a disk: whole-block reads and writes."""

    def read(self, lba: int, blocks: int) -> bytes: ...

    def write(self, lba: int, data: bytes | memoryview) -> None: ...


class StreamIO(Protocol):
    """What the engine needs of a tape drive: one record per call."""

    def write(self, data: bytes | memoryview, fixed_block: int = 0) -> None: ...

    def read(self, max_length: int = ...) -> bytes: ...


class SegmentFailed(Exception):
    """Segment `index` (0-based) failed; `done` segments completed before it."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"copy segment {index} failed: {cause}")
        self.index = index
        self.done = index
        self.cause = cause


class InexactSegment(Exception):
    """The plan did not end on a tape record boundary (residue left with nowhere to go)."""


@dataclass(slots=True)
class CopyResult:
    """What a finished copy moved."""

    segments: int
    stream_bytes: int
    early_warning: bool  # the tape reported end-of-medium early warning


def run_segments(
    segments: Sequence[Segment],
    disk: BlockIO,
    tape: StreamIO,
    *,
    block_length: int,
    record_size: int,
    progress: Callable[[int], None] | None = None,
) -> CopyResult:
    """Execute `segments` in order; `progress(bytes)` after each segment."""
    buf = bytearray()
    moved = 0
    early = False

    def emit(data: bytes | memoryview) -> None:
        nonlocal early
        buf.extend(data)
        pos = 0
        with memoryview(buf) as view:
            while len(buf) - pos >= record_size:
                # released on exit even if an exception (early warning) still refers to it
                with view[pos : pos + record_size] as record:
                    try:
                        tape.write(record)
                    except VolumeOverflow:
                        raise
                    except EndOfMedium:
                        early = True  # written; the drive only warns that the end is near
                pos += record_size
        del buf[:pos]  # one move of the residue, not one per record

    def take(n: int) -> bytes:
        while len(buf) < n:
            record = tape.read(record_size)
            if not record:
                raise InexactSegment("the tape stream ended inside a segment")
            buf.extend(record)
        out = bytes(buf[:n])
        del buf[:n]
        return out

    for index, seg in enumerate(segments):
        try:
            if seg.kind == INLINE_TO_STREAM:
                emit(seg.inline)
            elif seg.kind == BLOCK_TO_STREAM:
                lba, left = seg.lba, seg.blocks
                while left:
                    n = min(left, READ_CHUNK_BLOCKS)
                    emit(disk.read(lba, n))
                    lba, left = lba + n, left - n
            elif seg.kind == STREAM_TO_BLOCK:
                lba, left = seg.lba, seg.blocks
                while left:
                    n = min(left, READ_CHUNK_BLOCKS)
                    disk.write(lba, take(n * block_length))
                    lba, left = lba + n, left - n
            elif seg.kind == STREAM_TO_DISCARD:
                take(seg.discard)
            else:
                raise ValueError(f"unsupported segment type {seg.kind:#04x}")
        except (ScsiError, OSError, ValueError, InexactSegment) as exc:
            raise SegmentFailed(index, exc) from exc
        moved += seg.length(block_length)
        if progress is not None:
            progress(moved)
    writes = any(s.kind in (INLINE_TO_STREAM, BLOCK_TO_STREAM) for s in segments)
    if writes and buf:
        raise SegmentFailed(
            len(segments) - 1,
            InexactSegment(f"{len(buf)} bytes left over: the plan must end on a record boundary"),
        )
    return CopyResult(len(segments), moved, early)
