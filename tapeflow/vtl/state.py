"""Shared, process-safe library state: flock locks, the mmap'd per-drive record and the
atomically replaced changer map (which cartridge sits in which element)."""

from __future__ import annotations

import fcntl
import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from construct import Bytes, Float64l, Int8ul, Int16ul, Int32ul, Int64ul, Padding, Struct

from tapeflow.vtl.errors import CorruptLibraryError
from tapeflow.vtl.layout import MappedRecord
from tapeflow.vtl.store import atomic_write

# --- element addresses (reported by READ ELEMENT STATUS and MODE SENSE page 0x1D) -------------
TRANSPORT_ADDRESS = 0
IE_FIRST = 10
DRIVE_FIRST = 256
STORAGE_FIRST = 1024


class FileLock:
    """An flock on one lock file through a private open file description.

    Two FileLocks on the same path exclude each other even inside one process; the kernel drops
    the lock when the process dies, so a crashed holder never wedges the library.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.held = False

    def acquire(self) -> None:
        """Block until the exclusive lock is ours."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.held = True

    def try_acquire(self) -> bool:
        """Take the exclusive lock if nobody holds it; never blocks."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.held = True
        return True

    def release(self) -> None:
        """Drop the lock."""
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.held = False

    def close(self) -> None:
        """Close the descriptor (which also drops the lock)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.held = False

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


# --- per-drive state: one small file, mmap'd by every handle of the drive ----------------------
DRIVE_MAGIC = b"TFVD"
DRIVE_STATE_VERSION = 1

DriveStateLayout = Struct(
    "magic" / Bytes(4),
    "version" / Int16ul,
    "present" / Int8ul,  # a cartridge sits in the drive
    "loaded" / Int8ul,  # ... and is threaded (ready); 0 after UNLOAD, so the changer may take it
    "barcode" / Bytes(32),  # ASCII, NUL padded
    "generation" / Int64ul,  # bumped on every load/move/metadata change: handles re-open files
    "position" / Int64ul,  # logical object number
    "block_size" / Int32ul,  # 0 = variable
    "compression" / Int8ul,  # DCE
    "decompression" / Int8ul,  # DDE
    Padding(2),
    "reserve_owner" / Int64ul,  # token of the handle holding RESERVE(6), 0 = none
    "speed_limit" / Float64l,  # bytes/s, 0 = unlimited
)
DRIVE_STATE_SIZE = DriveStateLayout.sizeof()


def init_drive_state(path: Path, speed_limit: float | None) -> None:
    """Write a fresh, empty drive state file."""
    atomic_write(
        path,
        DriveStateLayout.build(
            {
                "magic": DRIVE_MAGIC,
                "version": DRIVE_STATE_VERSION,
                "present": 0,
                "loaded": 0,
                "barcode": bytes(32),
                "generation": 0,
                "position": 0,
                "block_size": 0,
                "compression": 1,
                "decompression": 1,
                "reserve_owner": 0,
                "speed_limit": speed_limit or 0.0,
            }
        ),
    )


class DriveState:
    """The mmap'd drive record; reads and writes are plain memory accesses shared by all
    processes. Mutate only while holding the drive's command lock."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size != DRIVE_STATE_SIZE:
                raise CorruptLibraryError(f"drive state {path} has the wrong size")
            self._map = mmap.mmap(fd, DRIVE_STATE_SIZE)
        finally:
            os.close(fd)
        head = DriveStateLayout.parse(bytes(self._map))
        if head.magic != DRIVE_MAGIC or head.version != DRIVE_STATE_VERSION:
            self._map.close()
            raise CorruptLibraryError(f"drive state {path} has a bad magic or version")
        self._rec = MappedRecord(DriveStateLayout, self._map)

    def close(self) -> None:
        """Unmap the file."""
        self._map.close()

    @property
    def present(self) -> bool:
        return bool(self._rec.get("present"))

    @property
    def loaded(self) -> bool:
        return bool(self._rec.get("loaded"))

    @loaded.setter
    def loaded(self, on: bool) -> None:
        self._rec.set("loaded", int(on))

    @property
    def barcode(self) -> str | None:
        raw: bytes = self._rec.get("barcode")
        text = raw.rstrip(b"\x00").decode("ascii")
        return text if self.present and text else None

    @property
    def generation(self) -> int:
        return int(self._rec.get("generation"))

    def bump(self) -> None:
        """Tell every handle of this drive to re-open the cartridge and its metadata."""
        self._rec.set("generation", self.generation + 1)

    @property
    def position(self) -> int:
        return int(self._rec.get("position"))

    @position.setter
    def position(self, value: int) -> None:
        self._rec.set("position", value)

    @property
    def block_size(self) -> int:
        return int(self._rec.get("block_size"))

    @block_size.setter
    def block_size(self, value: int) -> None:
        self._rec.set("block_size", value)

    @property
    def compression(self) -> bool:
        return bool(self._rec.get("compression"))

    @compression.setter
    def compression(self, on: bool) -> None:
        self._rec.set("compression", int(on))

    @property
    def decompression(self) -> bool:
        return bool(self._rec.get("decompression"))

    @decompression.setter
    def decompression(self, on: bool) -> None:
        self._rec.set("decompression", int(on))

    @property
    def reserve_owner(self) -> int:
        return int(self._rec.get("reserve_owner"))

    @reserve_owner.setter
    def reserve_owner(self, token: int) -> None:
        self._rec.set("reserve_owner", token)

    @property
    def speed_limit(self) -> float | None:
        value = float(self._rec.get("speed_limit"))
        return value if value > 0 else None

    @speed_limit.setter
    def speed_limit(self, value: float | None) -> None:
        self._rec.set("speed_limit", float(value or 0.0))

    def insert(self, barcode: str) -> None:
        """A cartridge arrived: present, loaded (auto-load), at BOT."""
        self._rec.set("barcode", barcode.encode("ascii").ljust(32, b"\x00"))
        self._rec.set("present", 1)
        self._rec.set("loaded", 1)
        self.position = 0
        self.bump()

    def eject(self) -> None:
        """The cartridge left the drive."""
        self._rec.set("present", 0)
        self._rec.set("loaded", 0)
        self._rec.set("barcode", bytes(32))
        self.position = 0
        self.bump()


# --- changer map ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Occupant:
    """A cartridge in an element: its barcode, the element it came from, operator-placed flag."""

    barcode: str
    source: int | None = None
    impexp: bool = False


class ChangerMap:
    """Element address -> occupant, stored as JSON and replaced atomically on every change."""

    def __init__(self, elements: dict[int, Occupant]) -> None:
        self.elements = elements

    @classmethod
    def load(cls, path: Path) -> ChangerMap:
        """Read the map; bad content is CorruptLibraryError."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            elements = {
                int(addr): Occupant(str(o["barcode"]), o.get("source"), bool(o.get("impexp")))
                for addr, o in raw["elements"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptLibraryError(f"unreadable changer state {path}: {exc}") from exc
        return cls(elements)

    def save(self, path: Path) -> None:
        """Replace the file atomically."""
        payload = {
            "elements": {
                str(addr): {"barcode": o.barcode, "source": o.source, "impexp": o.impexp}
                for addr, o in sorted(self.elements.items())
            }
        }
        atomic_write(path, json.dumps(payload, indent=1).encode())

    def find(self, barcode: str) -> int | None:
        """Element address holding `barcode`, or None."""
        for addr, occ in self.elements.items():
            if occ.barcode == barcode:
                return addr
        return None
