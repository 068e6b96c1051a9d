"""What a backup needs from a tape library: inventory, load/unload, drive online/offline.

Works the same on every backend; every move is serialized per library on the host with a
file lock (the find-a-free-slot-then-move sequence must not interleave between processes).
A spec with `vlib` limits the library to that virtual library's drives and slots (physical
numbers kept; see tapeflow.library.partitions).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from tapeflow.library.errors import (
    DriveEmpty,
    DriveOccupied,
    DriveOutOfRange,
    NoFreeSlot,
    NotInPartition,
    SlotEmpty,
    SlotOccupied,
    SlotOutOfRange,
    UnknownBarcode,
)
from tapeflow.library.partitions import Partition, get_partition, load_partitions
from tapeflow.library.spec import LibrarySpec
from tapeflow.scsi.changer import MediumChanger
from tapeflow.scsi.element_status import Element, ElementType
from tapeflow.scsi.tape import TapeDrive


@dataclass(frozen=True)
class DriveStatus:
    """One drive as the operator sees it (number is 0-based, in changer order)."""

    number: int
    address: int
    barcode: str | None
    full: bool
    source_slot: int | None  # slot number (1-based) the cartridge came from
    online: bool


@dataclass(frozen=True)
class SlotStatus:
    """One storage or import/export slot (number is 1-based within its kind)."""

    number: int
    address: int
    barcode: str | None
    full: bool
    mail: bool = False


@dataclass(frozen=True)
class Inventory:
    """Everything in the library at one moment."""

    drives: list[DriveStatus]
    slots: list[SlotStatus]
    mail_slots: list[SlotStatus]

    def to_dict(self) -> dict[str, list[dict[str, object]]]:
        """JSON-ready form."""
        return {
            "drives": [asdict(d) for d in self.drives],
            "slots": [asdict(s) for s in self.slots],
            "mail_slots": [asdict(s) for s in self.mail_slots],
        }

    def barcodes(self) -> list[str]:
        """Every barcode present, in drives, slots and mail slots."""
        every = [*self.drives, *self.slots, *self.mail_slots]
        return [e.barcode for e in every if e.barcode]


class Library:
    """A tape library reached through `spec`. Thread-safe; each drive handle is per caller."""

    def __init__(self, spec: LibrarySpec | str) -> None:
        self.spec = LibrarySpec.parse(spec) if isinstance(spec, str) else spec
        self._changer: MediumChanger | None = None
        self._drive_count: int | None = None
        self._lock = threading.RLock()
        self.state_dir = self.spec.state_dir()

    # --- plumbing ----------------------------------------------------------------------------
    @property
    def changer(self) -> MediumChanger:
        """The changer handle (opened on first use)."""
        with self._lock:
            if self._changer is None:
                self._changer = MediumChanger(self.spec.open_changer(), "changer")
            return self._changer

    @contextmanager
    def _moving(self) -> Iterator[None]:
        """Serialize media moves across threads and processes on this host."""
        self.changer  # noqa: B018 - fail on a missing library before creating state files
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.state_dir / "changer.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the changer handle."""
        with self._lock:
            if self._changer is not None:
                self._changer.close()
                self._changer = None

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- inventory ---------------------------------------------------------------------------
    def _elements(self) -> dict[ElementType, list[Element]]:
        every = self.changer.elements()
        return {t: [e for e in every if e.type == t] for t in ElementType}

    def inventory(self) -> Inventory:
        """Drives, slots and mail slots with their barcodes (of the virtual library, if any)."""
        inv = self.physical_inventory()
        part = self.partition()
        if part is None:
            return inv
        return Inventory(
            [d for d in inv.drives if d.number in part.drives],
            [s for s in inv.slots if s.number in part.slots],
            inv.mail_slots,
        )

    def physical_inventory(self) -> Inventory:
        """Drives, slots and mail slots of the whole physical library."""
        with self._lock:
            els = self._elements()
        slot_no = {e.address: i + 1 for i, e in enumerate(els[ElementType.STORAGE])}
        online = self._online_flags(len(els[ElementType.DRIVE]))
        drives = [
            DriveStatus(
                i,
                e.address,
                e.barcode,
                e.full,
                slot_no.get(e.source_address) if e.source_address is not None else None,
                online[i],
            )
            for i, e in enumerate(els[ElementType.DRIVE])
        ]
        slots = [
            SlotStatus(i + 1, e.address, e.barcode, e.full)
            for i, e in enumerate(els[ElementType.STORAGE])
        ]
        mail = [
            SlotStatus(i + 1, e.address, e.barcode, e.full, mail=True)
            for i, e in enumerate(els[ElementType.IMPORT_EXPORT])
        ]
        return Inventory(drives, slots, mail)

    @property
    def drive_count(self) -> int:
        """Number of drives in the changer, asked once per handle: a library's drives are its
        hardware, and every drive handle opened checks its number against this."""
        with self._lock:
            if self._drive_count is None:
                self._drive_count = len(self.changer.elements(ElementType.DRIVE))
            return self._drive_count

    def find(self, barcode: str) -> Element:
        """The element holding `barcode` (drive, slot or mail slot)."""
        for e in self.changer.elements():
            if e.full and e.barcode == barcode:
                return e
        raise UnknownBarcode(f"no cartridge with barcode {barcode!r} in library {self.spec.name}")

    def _slot(self, els: dict[ElementType, list[Element]], number: int) -> Element:
        slots = els[ElementType.STORAGE]
        if not 1 <= number <= len(slots):
            raise SlotOutOfRange(f"slot {number} is out of range 1..{len(slots)}")
        return slots[number - 1]

    def _drive(self, els: dict[ElementType, list[Element]], number: int) -> Element:
        drives = els[ElementType.DRIVE]
        if not 0 <= number < len(drives):
            raise DriveOutOfRange(f"drive {number} is out of range 0..{len(drives) - 1}")
        return drives[number]

    # --- virtual library ---------------------------------------------------------------------
    def partition(self) -> Partition | None:
        """The virtual library this handle is limited to; None for the physical library."""
        if self.spec.vlib is None:
            return None
        return get_partition(self.state_dir, self.spec.vlib)

    def _check_partition(
        self,
        els: dict[ElementType, list[Element]],
        *,
        drive: int | None = None,
        address: int | None = None,
    ) -> None:
        """NotInPartition when `drive` or the storage slot at `address` is outside the vlib."""
        part = self.partition()
        if part is None:
            return
        if drive is not None and drive not in part.drives:
            raise NotInPartition(f"drive {drive} is not in virtual library {part.name!r}")
        numbers = {e.address: i + 1 for i, e in enumerate(els[ElementType.STORAGE])}
        slot = numbers.get(address) if address is not None else None
        if slot is not None and slot not in part.slots:
            raise NotInPartition(f"slot {slot} is not in virtual library {part.name!r}")

    @staticmethod
    def _transport(els: dict[ElementType, list[Element]]) -> int | None:
        """The robot to move with, from an inventory just read (None: let the changer ask)."""
        robots = els[ElementType.TRANSPORT]
        return robots[0].address if robots else None

    def _free_slots(self, els: dict[ElementType, list[Element]]) -> list[Element]:
        """Empty storage slots a cartridge may go to: the vlib's own; for the physical library
        those of no vlib first."""
        storage = els[ElementType.STORAGE]
        free = [(i + 1, e) for i, e in enumerate(storage) if not e.full]
        part = self.partition()
        if part is not None:
            return [e for n, e in free if n in part.slots]
        owned = {s for p in load_partitions(self.state_dir).values() for s in p.slots}
        return [e for n, e in free if n not in owned] + [e for n, e in free if n in owned]

    # --- moves -------------------------------------------------------------------------------
    def move(self, source: int, destination: int) -> None:
        """Raw MOVE MEDIUM between element addresses (device errors pass through typed)."""
        with self._moving():
            self.changer.move(source, destination)

    def load(
        self,
        drive: int,
        *,
        barcode: str | None = None,
        slot: int | None = None,
        wait: bool = True,
    ) -> str:
        """Move a cartridge (by barcode or slot number) into `drive`, wait until ready (unless
        `wait` is False: a cleaning cartridge never becomes ready).

        Returns the barcode loaded.
        """
        if (barcode is None) == (slot is None):
            raise ValueError("give exactly one of barcode or slot")
        with self._moving():
            els = self._elements()
            target = self._drive(els, drive)
            self._check_partition(els, drive=drive)
            if target.full:
                raise DriveOccupied(
                    f"drive {drive} already holds {target.barcode or 'a cartridge'}"
                )
            if barcode is not None:
                source = next(
                    (
                        e
                        for e in els[ElementType.STORAGE] + els[ElementType.IMPORT_EXPORT]
                        if e.full and e.barcode == barcode
                    ),
                    None,
                )
                if source is None:
                    in_drive = any(e.barcode == barcode for e in els[ElementType.DRIVE])
                    where = "is already in a drive" if in_drive else "is not in the library"
                    raise UnknownBarcode(f"cartridge {barcode!r} {where}")
            else:
                assert slot is not None
                source = self._slot(els, slot)
                if not source.full:
                    raise SlotEmpty(f"slot {slot} is empty")
            self._check_partition(els, address=source.address)
            self.changer.move(source.address, target.address, self._transport(els))
            loaded = source.barcode or ""
        if not wait:
            return loaded
        handle = self.open_drive(drive)
        try:
            handle.wait_ready()
        finally:
            handle.close()
        return loaded

    def unload(self, drive: int, *, slot: int | None = None) -> str:
        """Eject the cartridge in `drive` and put it back in its home slot (or `slot`).

        The eject (a real drive rewinds and unthreads: up to two minutes) runs outside the
        changer's lock, so drives unload in parallel and loads elsewhere go on; only the
        robot's move is serialized. Callers hold the drive's lease: no one else touches it."""
        with self._moving():
            self._unload_target(self._elements(), drive, slot)  # bad arguments fail first
        handle = self.open_drive(drive)
        try:
            handle.unload()
        finally:
            handle.close()
        with self._moving():
            els = self._elements()
            source, dest = self._unload_target(els, drive, slot)
            self.changer.move(source.address, dest.address, self._transport(els))
            return source.barcode or ""

    def _unload_target(
        self, els: dict[ElementType, list[Element]], drive: int, slot: int | None
    ) -> tuple[Element, Element]:
        """(the full drive, the slot it goes to) or the typed error saying why not."""
        source = self._drive(els, drive)
        self._check_partition(els, drive=drive)
        if not source.full:
            raise DriveEmpty(f"drive {drive} is empty")
        if slot is None:
            return source, self._home_slot(els, source)
        dest = self._slot(els, slot)
        self._check_partition(els, address=dest.address)
        if dest.full:
            raise SlotOccupied(f"slot {slot} holds {dest.barcode or 'a cartridge'}")
        return source, dest

    def clear(self, drive: int) -> str | None:
        """Unload whatever `drive` holds (left by a killed job); returns its barcode or None.

        Call it only while holding the drive's lease.
        """
        with self._moving():  # the drives' status alone: one request, not the whole library
            drives = self.changer.elements(ElementType.DRIVE)
            target = self._drive({ElementType.DRIVE: drives}, drive)
        return self.unload(drive) if target.full else None

    def _home_slot(self, els: dict[ElementType, list[Element]], drive: Element) -> Element:
        storage = els[ElementType.STORAGE]
        home = next((e for e in storage if not e.full and e.address == drive.source_address), None)
        if home is not None:
            return home
        free = self._free_slots(els)
        if not free:
            raise NoFreeSlot("no free storage slot to put the cartridge back")
        return free[0]

    def import_media(self, mail_slot: int, *, slot: int | None = None) -> str:
        """Move a cartridge from a mail slot into a storage slot (first free one by default)."""
        with self._moving():
            els = self._elements()
            mails = els[ElementType.IMPORT_EXPORT]
            if not 1 <= mail_slot <= len(mails):
                raise SlotOutOfRange(f"mail slot {mail_slot} is out of range 1..{len(mails)}")
            source = mails[mail_slot - 1]
            if not source.full:
                raise SlotEmpty(f"mail slot {mail_slot} is empty")
            if slot is None:
                free = self._free_slots(els)
                if not free:
                    raise NoFreeSlot("no free storage slot for the imported cartridge")
                dest = free[0]
            else:
                dest = self._slot(els, slot)
                self._check_partition(els, address=dest.address)
            self.changer.move(source.address, dest.address, self._transport(els))
            return source.barcode or ""

    def export_media(self, barcode: str) -> int:
        """Move `barcode` from its storage slot to a free mail slot; returns the mail slot."""
        with self._moving():
            els = self._elements()
            source = next(
                (e for e in els[ElementType.STORAGE] if e.full and e.barcode == barcode), None
            )
            if source is None:
                raise UnknownBarcode(f"no cartridge {barcode!r} in a storage slot")
            self._check_partition(els, address=source.address)
            mails = els[ElementType.IMPORT_EXPORT]
            free = [i for i, e in enumerate(mails) if not e.full]
            if not free:
                raise NoFreeSlot("every mail slot is full: empty one first")
            self.changer.move(source.address, mails[free[0]].address, self._transport(els))
            return free[0] + 1

    # --- drives ------------------------------------------------------------------------------
    def open_drive(self, number: int) -> TapeDrive:
        """A new handle to drive `number`; the caller closes it."""
        count = self.drive_count
        if not 0 <= number < count:
            raise DriveOutOfRange(f"drive {number} is out of range 0..{count - 1}")
        return TapeDrive(self.spec.open_drive(number, count), f"drive{number}")

    def _online_path(self) -> Path:
        return self.state_dir / "drives-online.json"

    def _online_flags(self, count: int) -> list[bool]:
        try:
            stored = json.loads(self._online_path().read_text())
        except FileNotFoundError:
            stored = {}
        return [bool(stored.get(str(i), True)) for i in range(count)]

    def set_online(self, drive: int, online: bool) -> None:
        """Mark a drive online/offline for tapeflow (the drive tag's limit follows)."""
        count = self.drive_count
        if not 0 <= drive < count:
            raise DriveOutOfRange(f"drive {drive} is out of range 0..{count - 1}")
        part = self.partition()
        if part is not None and drive not in part.drives:
            raise NotInPartition(f"drive {drive} is not in virtual library {part.name!r}")
        with self._moving():
            flags = self._online_flags(count)
            flags[drive] = online
            tmp = self._online_path().with_suffix(".tmp")
            tmp.write_text(json.dumps({str(i): f for i, f in enumerate(flags)}))
            os.replace(tmp, self._online_path())

    def online_drives(self) -> list[int]:
        """Numbers of the drives tapeflow may use (those of the virtual library, if any)."""
        part = self.partition()
        flags = self._online_flags(self.drive_count)
        return [i for i, on in enumerate(flags) if on and (part is None or i in part.drives)]
