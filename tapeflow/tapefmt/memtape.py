"""An in-memory stand-in for TapeDrive: blocks, filemarks, end-of-data, early warning and
physical end, raising the same typed errors. For unit tests and the writer benchmark."""

from __future__ import annotations

from tapeflow.scsi.sense import (
    BLANK_CHECK,
    NO_SENSE,
    VOLUME_OVERFLOW,
    EndOfData,
    EndOfMedium,
    FilemarkDetected,
    IncorrectLength,
    Sense,
    VolumeOverflow,
)
from tapeflow.scsi.ssc import Position

FILEMARK = None


class MemoryTape:
    """One cartridge in one drive, kept as a list of blocks (None = filemark)."""

    def __init__(
        self, capacity: int = 1 << 40, early_warning: int = 0, barcode: str = "MEM000L9"
    ) -> None:
        self.objects: list[bytes | None] = []
        self._cum: list[int] = [0]  # bytes held by objects[:i]
        self.pos = 0
        self.capacity = capacity
        self.early_warning = early_warning
        self.barcode = barcode
        self.block_size = 0
        self.reads = 0
        self.locates = 0

    def _used(self) -> int:
        return self._cum[self.pos]

    def _truncate(self) -> None:
        del self.objects[self.pos :]
        del self._cum[self.pos + 1 :]

    def set_block_size(self, block_length: int, compression: bool | None = None) -> None:
        """Remember the mode (only variable mode is used by the format)."""
        self.block_size = block_length

    def write(self, data: bytes | memoryview, fixed_block: int = 0) -> None:
        """Write one block here; everything after it is gone (like a real tape)."""
        used = self._used()
        self._truncate()
        if used + len(data) > self.capacity:
            raise VolumeOverflow(Sense(VOLUME_OVERFLOW, 0, 2, information=len(data), eom=True))
        self.objects.append(bytes(data))
        self._cum.append(used + len(data))
        self.pos += 1
        if self.early_warning and used + len(data) > self.capacity - self.early_warning:
            raise EndOfMedium(Sense(NO_SENSE, 0, 2, information=0, eom=True))

    def write_filemarks(self, count: int = 1) -> None:
        """Append filemarks here."""
        self._truncate()
        self.objects.extend([FILEMARK] * count)
        self._cum.extend([self._cum[-1]] * count)
        self.pos += count

    def read(self, max_length: int = 256 * 1024) -> bytes:
        """Next block; FilemarkDetected/EndOfData like a drive."""
        self.reads += 1
        if self.pos >= len(self.objects):
            raise EndOfData(Sense(BLANK_CHECK, 0, 5, information=max_length))
        obj = self.objects[self.pos]
        self.pos += 1
        if obj is None:
            raise FilemarkDetected(Sense(NO_SENSE, 0, 1, information=max_length, filemark=True))
        if len(obj) > max_length:
            raise IncorrectLength(Sense(NO_SENSE, 0, 0, information=max_length - len(obj)))
        return obj

    def position(self) -> Position:
        """Block number (filemarks count) and file number."""
        files = sum(1 for o in self.objects[: self.pos] if o is None)
        return Position(self.pos, files, self.pos == 0, False)

    def locate(self, block: int) -> None:
        """Go to logical object `block`."""
        self.locates += 1
        self.pos = min(block, len(self.objects))

    def rewind(self) -> None:
        """Back to the beginning."""
        self.pos = 0

    def space_filemarks(self, count: int) -> None:
        """Forward over `count` filemarks (EndOfData when there are fewer)."""
        for _ in range(count):
            while True:
                if self.pos >= len(self.objects):
                    raise EndOfData(Sense(BLANK_CHECK, 0, 5))
                self.pos += 1
                if self.objects[self.pos - 1] is None:
                    break

    def end_of_data(self) -> None:
        """Go to end-of-data."""
        self.pos = len(self.objects)

    def tape_file(self, number: int) -> bytes:
        """The concatenated blocks of tape file `number` (for tests)."""
        out: list[bytes] = []
        current = 0
        for obj in self.objects:
            if obj is None:
                current += 1
                if current > number:
                    break
            elif current == number:
                out.append(obj)
        return b"".join(out)


class NullDrive:
    """Accepts records and only counts them: what a drive costs when it costs nothing."""

    def __init__(self) -> None:
        self.blocks = 0
        self.bytes = 0
        self.filemarks = 0

    def set_block_size(self, block_length: int, compression: bool | None = None) -> None:
        """No-op."""

    def write(self, data: bytes | memoryview, fixed_block: int = 0) -> None:
        """Count the record."""
        self.blocks += 1
        self.bytes += len(data)

    def write_filemarks(self, count: int = 1) -> None:
        """Count filemarks."""
        self.filemarks += count

    def end_of_data(self) -> None:
        """No-op."""

    def position(self) -> Position:
        """Where the next block would go."""
        return Position(self.blocks + self.filemarks, self.filemarks, False, False)
