"""Disk logical units of the embedded SAN: a block device over an image file, with
copy-on-write snapshots.

A snapshot freezes the disk's content at one instant. Afterwards, before any write changes a
chunk of the origin for the first time, the chunk's old bytes are saved in the snapshot's COW
store and its bit set in the snapshot's bitmap. So a snapshot reads as the frozen disk (saved
chunk if any, else origin), and its bitmap is exactly the set of chunks written since it was
taken: what a serverless backup that read the live disk must re-apply at restore.

All handles of one disk (any process) serialize writes through one flock, so the COW save and
the origin write are atomic with respect to each other."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from construct import Int8ub, Int32ub, Int64ub, Padding, Struct

from tapeflow.scsi.sense import DATA_PROTECT, ILLEGAL_REQUEST
from tapeflow.vtl.errors import CorruptLibraryError, NoSuchUnitError, VtlError
from tapeflow.vtl.lun import CheckCondition, Handler, LogicalUnit, invalid_field
from tapeflow.vtl.state import FileLock
from tapeflow.vtl.store import atomic_write

BLOCK = 512
CHUNK = 4096  # COW granularity
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")

TEST_UNIT_READY = 0x00
READ_10 = 0x28
WRITE_10 = 0x2A
SYNCHRONIZE_CACHE_10 = 0x35
READ_16 = 0x88
WRITE_16 = 0x8A
SERVICE_ACTION_IN_16 = 0x9E
READ_CAPACITY_10 = 0x25
MAX_TRANSFER_BLOCKS = 65536

Rw10 = Struct(
    "opcode" / Int8ub, "flags" / Int8ub, "lba" / Int32ub, Padding(1), "blocks" / Int8ub[2]
).compile()
Rw16 = Struct(
    "opcode" / Int8ub, "flags" / Int8ub, "lba" / Int64ub, "blocks" / Int32ub, Padding(2)
).compile()
ReadCapacity10Data = Struct("last_lba" / Int32ub, "block_length" / Int32ub)
ReadCapacity16Data = Struct("last_lba" / Int64ub, "block_length" / Int32ub, Padding(20))


class DiskError(VtlError):
    """A disk or snapshot operation of the embedded SAN failed (bad name, size, state)."""


@dataclass(slots=True)
class DiskMeta:
    """disk.json: where the image lives and how big a block is."""

    name: str
    image: str  # absolute path of the backing image file
    block_length: int
    serial: str

    @classmethod
    def load(cls, directory: Path) -> DiskMeta:
        try:
            raw = json.loads((directory / "disk.json").read_text())
            return cls(**raw)
        except FileNotFoundError as exc:
            raise NoSuchUnitError(f"no disk {directory.name}") from exc
        except (ValueError, TypeError) as exc:
            raise CorruptLibraryError(f"{directory}/disk.json: {exc}") from exc

    def save(self, directory: Path) -> None:
        atomic_write(directory / "disk.json", json.dumps(asdict(self)).encode())


class Disk:
    """The files of one disk: image, metadata, write lock, snapshots; process-safe."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.meta = DiskMeta.load(directory)
        self.image = Path(self.meta.image)
        if not self.image.is_file():
            raise CorruptLibraryError(f"disk {self.meta.name}: image {self.image} is missing")

    @classmethod
    def create(
        cls, directory: Path, name: str, serial: str, *, image: Path | None, size: int | None
    ) -> Disk:
        """A new disk over `image` (used in place) or a new zero-filled image of `size`."""
        if not NAME_RE.fullmatch(name):
            raise DiskError(f"invalid disk name {name!r}: want 1-32 of [A-Za-z0-9_-]")
        if directory.exists():
            raise DiskError(f"disk {name} already exists")
        if image is None:
            if size is None or size <= 0 or size % BLOCK:
                raise DiskError(f"disk size must be a positive multiple of {BLOCK}: {size}")
            directory.mkdir(parents=True)
            image = directory / "image"
            with open(image, "wb") as fh:
                fh.truncate(size)
        else:
            image = Path(image).resolve()
            if not image.is_file():
                raise DiskError(f"no image file {image}")
            if image.stat().st_size % BLOCK or image.stat().st_size == 0:
                raise DiskError(f"{image}: size is not a positive multiple of {BLOCK} bytes")
            directory.mkdir(parents=True)
        (directory / "snapshots").mkdir()
        DiskMeta(name, str(image), BLOCK, serial).save(directory)
        return cls(directory)

    @property
    def size(self) -> int:
        return self.image.stat().st_size

    def lock(self) -> FileLock:
        """The disk's write lock (the caller closes it)."""
        return FileLock(self.dir / "write.lock")

    # --- snapshots ---------------------------------------------------------------------------
    def snapshots(self) -> list[str]:
        """Names of the disk's snapshots, oldest first."""
        snaps = self.dir / "snapshots"
        return sorted(
            (p.name for p in snaps.iterdir() if (p / "snap.json").exists()),
            key=lambda n: (snaps / n / "snap.json").stat().st_mtime_ns,
        )

    def snapshot(self, name: str | None = None) -> str:
        """Freeze the disk now; returns the snapshot's name."""
        lock = self.lock()
        try:
            with lock:
                name = name or datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
                if not NAME_RE.fullmatch(name):
                    raise DiskError(f"invalid snapshot name {name!r}")
                sdir = self.dir / "snapshots" / name
                if sdir.exists():
                    raise DiskError(f"disk {self.meta.name} already has snapshot {name}")
                tmp = sdir.with_name(f".{name}.tmp")
                tmp.mkdir()
                chunks = -(-self.size // CHUNK)
                (tmp / "bitmap").write_bytes(bytes(-(-chunks // 8)))
                with open(tmp / "cow", "wb") as fh:
                    fh.truncate(self.size)
                atomic_write(
                    tmp / "snap.json",
                    json.dumps({"created": datetime.now(UTC).isoformat()}).encode(),
                )
                os.rename(tmp, sdir)
        finally:
            lock.close()
        return name

    def drop_snapshot(self, name: str) -> None:
        """Delete a snapshot (its saved chunks are gone)."""
        sdir = self._snapshot_dir(name)
        lock = self.lock()
        try:
            with lock:
                for f in ("snap.json", "bitmap", "cow"):
                    (sdir / f).unlink(missing_ok=True)
                sdir.rmdir()
        finally:
            lock.close()

    def _snapshot_dir(self, name: str) -> Path:
        sdir = self.dir / "snapshots" / name
        if not NAME_RE.fullmatch(name) or not (sdir / "snap.json").exists():
            raise NoSuchUnitError(f"disk {self.meta.name} has no snapshot {name!r}")
        return sdir

    def modified_chunks(self, name: str) -> list[int]:
        """Chunks of the origin written since snapshot `name` was taken."""
        bitmap = (self._snapshot_dir(name) / "bitmap").read_bytes()
        return [
            i * 8 + bit
            for i, byte in enumerate(bitmap)
            if byte
            for bit in range(8)
            if byte >> bit & 1
        ]

    # --- I/O ---------------------------------------------------------------------------------
    def read(self, offset: int, length: int, snapshot: str | None = None) -> bytes:
        """`length` bytes at `offset` of the disk, or of the frozen view `snapshot`."""
        with open(self.image, "rb") as fh:
            data = bytearray(os.pread(fh.fileno(), length, offset))
        if snapshot is None:
            return bytes(data)
        sdir = self._snapshot_dir(snapshot)
        bitmap = (sdir / "bitmap").read_bytes()
        first, last = offset // CHUNK, (offset + length - 1) // CHUNK
        with open(sdir / "cow", "rb") as cow:
            for chunk in range(first, last + 1):
                if bitmap[chunk // 8] >> (chunk % 8) & 1:
                    lo = max(chunk * CHUNK, offset)
                    hi = min((chunk + 1) * CHUNK, offset + length)
                    data[lo - offset : hi - offset] = os.pread(cow.fileno(), hi - lo, lo)
        return bytes(data)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Write to the origin, first saving old chunks into every snapshot that lacks them."""
        length = len(data)
        lock = self.lock()
        try:
            with lock, open(self.image, "r+b") as img:
                first, last = offset // CHUNK, (offset + length - 1) // CHUNK
                for name in self.snapshots():
                    self._preserve(img.fileno(), self.dir / "snapshots" / name, first, last)
                view = memoryview(data)
                while view:
                    done = os.pwrite(img.fileno(), view, offset)
                    view, offset = view[done:], offset + done
        finally:
            lock.close()

    def _preserve(self, img: int, sdir: Path, first: int, last: int) -> None:
        bitmap = bytearray((sdir / "bitmap").read_bytes())
        todo = [c for c in range(first, last + 1) if not bitmap[c // 8] >> (c % 8) & 1]
        if not todo:
            return
        with open(sdir / "cow", "r+b") as cow:
            for chunk in todo:
                old = os.pread(img, CHUNK, chunk * CHUNK)
                os.pwrite(cow.fileno(), old, chunk * CHUNK)
                bitmap[chunk // 8] |= 1 << (chunk % 8)
            os.fsync(cow.fileno())  # saved bytes are durable before the bit says so
        atomic_write(sdir / "bitmap", bytes(bitmap))


class DiskHandle(LogicalUnit):
    """One initiator's handle on a disk LUN or (read-only) on one of its snapshots."""

    peripheral_type = 0x00
    product = "VTL SAN DISK"

    def __init__(self, disk: Disk, serial: str, snapshot: str | None = None) -> None:
        super().__init__(serial)
        self.disk = disk
        self.snapshot = snapshot
        if snapshot is not None:
            disk._snapshot_dir(snapshot)
        handlers: dict[int, Handler] = {
            TEST_UNIT_READY: lambda raw, out, alloc: b"",
            READ_CAPACITY_10: self._read_capacity10,
            SERVICE_ACTION_IN_16: self._service_action_in,
            READ_10: self._read,
            READ_16: self._read,
            WRITE_10: self._write,
            WRITE_16: self._write,
            SYNCHRONIZE_CACHE_10: lambda raw, out, alloc: b"",
        }
        self._handlers.update(handlers)

    @property
    def blocks(self) -> int:
        return self.disk.size // BLOCK

    def _read_capacity10(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        last = min(self.blocks - 1, 0xFFFFFFFF)
        return ReadCapacity10Data.build({"last_lba": last, "block_length": BLOCK})

    def _service_action_in(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        if raw[1] & 0x1F != 0x10:
            raise invalid_field()
        return ReadCapacity16Data.build({"last_lba": self.blocks - 1, "block_length": BLOCK})

    def _range(self, raw: bytes) -> tuple[int, int]:
        if raw[0] in (READ_10, WRITE_10):
            c = Rw10.parse(raw)
            lba, blocks = c.lba, c.blocks[0] << 8 | c.blocks[1]
        else:
            c = Rw16.parse(raw)
            lba, blocks = c.lba, c.blocks
        if blocks > MAX_TRANSFER_BLOCKS:
            raise invalid_field()
        if lba + blocks > self.blocks:
            raise CheckCondition(ILLEGAL_REQUEST, 0x21, 0x00)  # LBA out of range
        return lba, blocks

    def _read(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        lba, blocks = self._range(raw)
        return self.disk.read(lba * BLOCK, blocks * BLOCK, self.snapshot)

    def _write(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        lba, blocks = self._range(raw)
        if self.snapshot is not None:
            raise CheckCondition(DATA_PROTECT, 0x27, 0x00)
        if out is None or len(out) < blocks * BLOCK:
            raise CheckCondition(ILLEGAL_REQUEST, 0x1A, 0x00)
        if blocks:
            self.disk.write(lba * BLOCK, out[: blocks * BLOCK])
        return b""
