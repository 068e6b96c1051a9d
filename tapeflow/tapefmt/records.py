"""Fixed-size records on tape: the writer side (buffering, a writing thread, spanning
onto the next cartridge) and the reader side (a byte stream over records, across cartridges).

Every tape block is exactly one record. Spanning happens only at record boundaries, so the
session's byte stream is the concatenation of each part's records, minus the one continuation
record at the start of every part after the first.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from tapeflow.scsi.sense import EndOfData, EndOfMedium, FilemarkDetected, VolumeOverflow
from tapeflow.scsi.ssc import Position
from tapeflow.tapefmt.errors import OutOfTape
from tapeflow.tapefmt.label import read_label

DEFAULT_RECORD = 256 * 1024
PIPELINE_DEPTH = 8  # record buffers in flight between the reading and the writing thread


class Drive(Protocol):
    """The part of TapeDrive the format uses (TapeDrive itself, or a stand-in)."""

    def write(self, data: bytes | memoryview, fixed_block: int = 0) -> None: ...
    def write_filemarks(self, count: int = 1) -> None: ...
    def read(self, max_length: int = ...) -> bytes: ...
    def position(self) -> Position: ...
    def locate(self, block: int) -> None: ...
    def rewind(self) -> None: ...
    def space_filemarks(self, count: int) -> None: ...
    def end_of_data(self) -> None: ...
    def set_block_size(self, block_length: int, compression: bool | None = None) -> None: ...


class Hasher(Protocol):
    """hashlib-like object."""

    def update(self, data: Any, /) -> None: ...


@dataclass(frozen=True)
class Segment:
    """One cartridge's part of a session: where stream byte `stream_start` lies on tape."""

    stream_start: int
    barcode: str | None
    tape_file: int | None
    first_block: int  # tape block holding stream byte `stream_start`
    sequence: int


_STOP = object()


class RecordWriter:
    """Cuts a byte stream into fixed records and writes each as one tape block.

    Record buffers go to a worker thread that writes them to the drive, so reading and hashing
    the next bytes overlap the drive. Spanning runs on that thread too.

    Content is hashed on the caller's thread right after it is read, while it is still in this
    core's cache: hashlib releases the GIL, so the worker writes meanwhile. (Handing large hashes
    to other threads was measured: it costs ~40% more CPU in cache misses and GIL hand-offs, and
    on a 2-core machine shared with other work it was slower as often as faster.)
    """

    def __init__(
        self,
        drive: Drive,
        *,
        record_size: int = DEFAULT_RECORD,
        barcode: str | None = None,
        next_cartridge: Callable[[], Drive] | None = None,
        continuation: Callable[[int, int], bytes] | None = None,
        append: bool = True,
        pipeline: bool = True,
    ) -> None:
        if record_size % 512 or record_size <= 0:
            raise ValueError(f"record size {record_size} is not a positive multiple of 512")
        self.drive = drive
        self.record_size = record_size
        self.next_cartridge = next_cartridge
        self._between_parts = False  # set while no cartridge holds an open part
        self.continuation = continuation
        self.warnings: list[str] = []
        self.committed = 0  # stream bytes safely on tape
        self.records = 0  # records written (all parts, without continuation records)
        self.sequence = 0
        drive.set_block_size(0)
        if append:
            drive.end_of_data()
        pos = drive.position()
        self.segments: list[Segment] = [Segment(0, barcode, pos.file, pos.block, 0)]
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(PIPELINE_DEPTH if pipeline else 1):
            self._free.put(bytearray(record_size))
        self._buf = self._free.get()
        self._mv = memoryview(self._buf)
        self._fill = 0
        self._base = 0  # stream offset of the current buffer's first byte
        self._error: BaseException | None = None
        self._closed = False
        self._work: queue.SimpleQueue[Any] | None = None
        self._thread: threading.Thread | None = None
        if pipeline:
            self._work = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._worker, name="tapefmt-writer", daemon=True)
            self._thread.start()

    # --- caller side -------------------------------------------------------------------------
    def tell(self) -> int:
        """Stream offset of the next byte written."""
        return self._base + self._fill

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes to the stream."""
        n = len(data)
        fill = self._fill
        if fill + n < self.record_size:
            self._mv[fill : fill + n] = data
            self._fill = fill + n
            return
        view = memoryview(data)
        pos = 0
        while pos < n:
            take = min(n - pos, self.record_size - self._fill)
            self._mv[self._fill : self._fill + take] = view[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == self.record_size:
                self._flush()

    def write_zeros(self, n: int) -> None:
        """Append n zero bytes."""
        while n:
            take = min(n, self.record_size - self._fill)
            self._mv[self._fill : self._fill + take] = bytes(take)
            self._fill += take
            n -= take
            if self._fill == self.record_size:
                self._flush()

    def write_from_fd(self, fd: int, size: int, hasher: Hasher) -> int:
        """Copy `size` bytes of an open file into the stream (zero-filled if it shrank).

        Returns how many bytes really came from the file; `hasher` sees exactly those.
        """
        remaining = size
        got = 0
        rs = self.record_size
        while remaining:
            fill = self._fill
            want = min(rs - fill, remaining)
            n = os.readv(fd, [self._mv[fill : fill + want]])
            if n == 0:
                break
            hasher.update(self._mv[fill : fill + n])
            self._fill = fill + n
            remaining -= n
            got += n
            if self._fill == rs:
                self._flush()
        if remaining:
            self.write_zeros(remaining)
        return got

    def pad(self, boundary: int = 512) -> None:
        """Zero-fill up to the next multiple of `boundary` in the stream."""
        gap = -self.tell() % boundary
        if gap:
            self.write_zeros(gap)

    def finish(self) -> None:
        """Zero-pad the last record, write it, wait for the worker, end the tape file."""
        if self._fill:
            self._mv[self._fill :] = bytes(self.record_size - self._fill)
            self._fill = self.record_size
            self._flush()
        self._drain()
        self._end_part(self.drive)
        self._closed = True

    def abort(self) -> None:
        """Stop after what was written (padded), end the tape file; the session stays partial."""
        if self._closed:
            return
        try:
            if self._fill and self._error is None:
                self._mv[self._fill :] = bytes(self.record_size - self._fill)
                self._fill = self.record_size
                self._flush()
        finally:
            self._drain(raise_error=False)
            self._closed = True
        if not self._between_parts:  # a failed span already ended the part on the old drive
            self._end_part(self.drive)

    # --- internals ---------------------------------------------------------------------------
    def _flush(self) -> None:
        """Hand the full buffer over and take a free one."""
        job = self._buf
        if self._work is None:
            self._commit(job)
        else:
            if self._error is not None:
                raise self._error
            self._work.put(job)
            self._buf = self._free.get()
            if self._error is not None:
                raise self._error
        self._mv = memoryview(self._buf)
        self._base += self.record_size
        self._fill = 0

    def _drain(self, raise_error: bool = True) -> None:
        """Wait until every handed-over record is on tape."""
        if self._work is not None and self._thread is not None:
            self._work.put(_STOP)
            self._thread.join()
            self._work = None
        if raise_error and self._error is not None:
            raise self._error

    def _worker(self) -> None:
        """Write records; keep the first error for the caller."""
        assert self._work is not None
        work = self._work
        while True:
            job = work.get()
            if job is _STOP:
                return
            if self._error is None:
                try:
                    self._commit(job)
                except BaseException as exc:  # handed to the caller thread, re-raised there
                    self._error = exc
            self._free.put(job)

    def _commit(self, job: bytearray) -> None:
        """Write one record, spanning when the tape is full."""
        view = memoryview(job)
        while True:
            try:
                self.drive.write(view)
            except VolumeOverflow:
                self._span("physical end of medium: record rewritten on the next cartridge")
                continue  # the record was not written: write it again on the new cartridge
            except EndOfMedium:
                self.committed += self.record_size
                self.records += 1
                if self.next_cartridge is not None:
                    self._span("early warning")
                elif not self.warnings or "early warning" not in self.warnings[-1]:
                    self.warnings.append("early warning reached and no next cartridge given")
                return
            self.committed += self.record_size
            self.records += 1
            return

    def _end_part(self, drive: Drive) -> None:
        """Write the filemark ending this part's tape file."""
        try:
            drive.write_filemarks(1)
        except VolumeOverflow:
            self.warnings.append("no room for the filemark: this part ends at end-of-data")
        except EndOfMedium:
            pass  # early warning while writing the mark: the mark WAS written

    def _span(self, why: str) -> None:
        """End this cartridge's part and continue on the next one with a continuation record."""
        if self.next_cartridge is None or self.continuation is None:
            raise OutOfTape(f"cartridge full ({why}) and no next cartridge to continue on")
        self._end_part(self.drive)
        self._between_parts = True
        drive = self.next_cartridge()
        label = read_label(drive)
        drive.set_block_size(0)
        drive.end_of_data()
        pos = drive.position()
        self.sequence += 1
        record = self.continuation(self.sequence, self.committed)
        try:
            drive.write(record)
        except VolumeOverflow as exc:
            raise OutOfTape(f"no room on {label.barcode} for the continuation record") from exc
        except EndOfMedium:
            self.warnings.append(f"{label.barcode} is in early warning already")
        self.drive = drive
        self._between_parts = False
        self.segments.append(
            Segment(self.committed, label.barcode, pos.file, pos.block + 1, self.sequence)
        )
        self.warnings.append(f"{why}: continued on {label.barcode} as part {self.sequence}")


def locate_offset(
    segments: list[Segment], offset: int, record_size: int
) -> tuple[Segment, int, int]:
    """(segment, tape block, byte offset in that block) of stream byte `offset`."""
    seg = segments[0]
    for s in segments:
        if s.stream_start <= offset:
            seg = s
        else:
            break
    rel = offset - seg.stream_start
    return seg, seg.first_block + rel // record_size, rel % record_size


class EndOfPart(Exception):
    """The records of the current tape file ran out (filemark or end-of-data)."""


class RecordStream:
    """Reads a session's byte stream record by record, following it onto later cartridges.

    `next_part(offset)` is called when a tape file ends before the archive does; it must
    return the drive positioned at the next part's first data record (continuation record
    already checked against `offset`), or raise EndOfPart.
    """

    def __init__(
        self,
        drive: Drive,
        *,
        max_record: int = 8 * 1024 * 1024,
        next_part: Callable[[int], Drive] | None = None,
        start_offset: int = 0,
    ) -> None:
        self.drive = drive
        self.max_record = max_record
        self.next_part = next_part
        pos = drive.position()
        self._next_block = pos.block
        self._rec: bytes = b""
        self._pos = 0
        self._rec_block: int | None = None
        self._base = start_offset  # stream offset of the current record's first byte
        self.record_size: int | None = None

    def tell(self) -> int:
        """Stream offset of the next byte to read."""
        return self._base + self._pos

    def where(self) -> tuple[int | None, int]:
        """(tape block, byte offset in it) of the next byte (block None before the first)."""
        if self._pos >= len(self._rec) and self._rec:
            return self._next_block, 0
        return self._rec_block, self._pos

    def _load(self) -> None:
        """Read the next record (following onto the next part when this one ends)."""
        self._base += len(self._rec)
        while True:
            try:
                rec = self.drive.read(self.record_size or self.max_record)
                break
            except (FilemarkDetected, EndOfData) as exc:
                self._rec, self._pos = b"", 0
                if self.next_part is None:
                    raise EndOfPart(str(exc)) from exc
                self.drive = self.next_part(self._base)
                self._next_block = self.drive.position().block
        if self.record_size is None:
            self.record_size = len(rec)
        self._rec = rec
        self._pos = 0
        self._rec_block = self._next_block
        self._next_block += 1

    def read(self, n: int) -> bytes:
        """Exactly n bytes (EndOfPart when the stream ends first)."""
        if self._pos + n <= len(self._rec):
            out = self._rec[self._pos : self._pos + n]
            self._pos += n
            return out
        parts = []
        while n:
            if self._pos >= len(self._rec):
                self._load()
            take = min(n, len(self._rec) - self._pos)
            parts.append(self._rec[self._pos : self._pos + take])
            self._pos += take
            n -= take
        return b"".join(parts)

    def chunks(self, n: int) -> Iterator[memoryview]:
        """The next n bytes as views into records (no copies)."""
        while n:
            if self._pos >= len(self._rec):
                self._load()
            take = min(n, len(self._rec) - self._pos)
            yield memoryview(self._rec)[self._pos : self._pos + take]
            self._pos += take
            n -= take

    def skip(self, n: int) -> None:
        """Skip n bytes."""
        for _ in self.chunks(n):
            pass

    def peek_block(self) -> tuple[int | None, int]:
        """Position of the next byte, loading a record first if the current one is used up."""
        if self._pos >= len(self._rec):
            self._load()
        return self._rec_block, self._pos
