"""File-like views of volumes, so the FAT/NTFS parsers read a disk LUN (or its snapshot) the
same way they read an image file; and a BlockDevice over an image file for the host path."""

from __future__ import annotations

import io
import os
from pathlib import Path

from tapeflow.scsi.sbc import BlockDevice, Geometry, ShortTransfer

BUFFER = 1024 * 1024


class BlockDeviceFile(io.RawIOBase):
    """Read-only, seekable raw file over a block device's bytes from `offset`."""

    def __init__(self, device: BlockDevice, offset: int = 0) -> None:
        super().__init__()
        self.device = device
        geo = device.geometry()
        self.block = geo.block_length
        self.base = offset
        self.size = geo.size - offset
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(base + offset, 0)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), max(self.size - self.pos, 0))
        if want <= 0:
            return 0
        start = self.base + self.pos
        first, end = start // self.block, -(-(start + want) // self.block)
        data = self.device.read(first, end - first)
        skip = start - first * self.block
        buffer[:want] = data[skip : skip + want]
        self.pos += want
        return want


def open_volume_file(device: BlockDevice, offset: int = 0) -> io.BufferedReader:
    """A buffered reader over the volume on `device` at byte `offset`."""
    return io.BufferedReader(BlockDeviceFile(device, offset), BUFFER)


class ImageBlockDevice(BlockDevice):
    """An image file seen as a 512-byte-block device (host path only: no SCSI, no copy
    manager); also the target of an image-level restore to a file."""

    def __init__(self, path: str | os.PathLike[str], *, writable: bool = False) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
        size = os.fstat(self._fd).st_size
        if size % 512:
            os.close(self._fd)
            raise ValueError(f"{self.path}: size {size} is not a multiple of 512")
        self._geometry = Geometry(size // 512, 512)

    def geometry(self) -> Geometry:
        return self._geometry

    def read(self, lba: int, blocks: int) -> bytes:
        data = os.pread(self._fd, blocks * 512, lba * 512)
        if len(data) != blocks * 512:
            raise ShortTransfer(f"{self.path}: {blocks} blocks at {lba} run past its end")
        return data

    def write(self, lba: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        offset = lba * 512
        while view:
            done = os.pwrite(self._fd, view, offset)
            view, offset = view[done:], offset + done

    def flush(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
