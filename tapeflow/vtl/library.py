"""The virtual tape library as a whole: create/open a library directory, hand out LUN handles,
and the operator's actions at the door (insert, remove, write-protect tab, drive speed)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from tapeflow.scsi.transport import Transport
from tapeflow.vtl.changer import ChangerHandle, locked_drive, sync_drive
from tapeflow.vtl.config import LibraryConfig, LibraryPaths
from tapeflow.vtl.copymgr import CopyManagerHandle
from tapeflow.vtl.disk import Disk, DiskHandle
from tapeflow.vtl.drive import DriveHandle, drive_serial
from tapeflow.vtl.errors import (
    CartridgeInLibraryError,
    CorruptLibraryError,
    InvalidBarcodeError,
    LibraryExistsError,
    MailSlotError,
    NoSuchUnitError,
    UnknownCartridgeError,
)
from tapeflow.vtl.lun import naa_designator
from tapeflow.vtl.state import (
    DRIVE_FIRST,
    IE_FIRST,
    STORAGE_FIRST,
    ChangerMap,
    DriveState,
    FileLock,
    Occupant,
    init_drive_state,
)
from tapeflow.vtl.store import Cartridge, CartridgeMeta

BARCODE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
CLEANING_USES = 50
MAX_MAIL_SLOTS = DRIVE_FIRST - IE_FIRST
MAX_DRIVES = STORAGE_FIRST - DRIVE_FIRST
MAX_SLOTS = 0xFFFF - STORAGE_FIRST


def check_barcode(barcode: str) -> str:
    """Return `barcode` if it is a valid volume tag (also safe as a directory name)."""
    if not BARCODE_RE.fullmatch(barcode):
        raise InvalidBarcodeError(f"invalid barcode {barcode!r}: want 1-32 of [A-Za-z0-9_-]")
    return barcode


class VirtualLibrary:
    """A file-backed tape library: changer on LUN 0, drive i on LUN i+1."""

    def __init__(self, root: Path, config: LibraryConfig) -> None:
        self.root = root
        self._paths = LibraryPaths(root)
        self._config = config
        self.drive_count = config.drives
        self.slot_count = config.slots
        self.mail_slot_count = config.mail_slots
        self.serial = config.serial

    # --- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: Path,
        *,
        drives: int = 4,
        slots: int = 24,
        mail_slots: int = 4,
        cartridges: int | None = None,
        capacity: int = 2 * 1024**3,
        early_warning: int = 32 * 1024**2,
        barcode_prefix: str = "TF",
        cleaning_cartridges: int = 1,
        speed_limit: float | None = None,
    ) -> VirtualLibrary:
        """Build a new library in `root` (absent or empty); data cartridges fill the first
        slots (default: all but 2 free, counting cleaning cartridges), cleaning the last."""
        root = Path(root)
        paths = LibraryPaths(root)
        if paths.config.exists():
            raise LibraryExistsError(f"{root} already holds a library; refusing to overwrite it")
        if root.exists() and any(root.iterdir()):
            raise LibraryExistsError(f"{root} is not empty; refusing to create a library there")
        if not 1 <= drives <= MAX_DRIVES or not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"need 1..{MAX_DRIVES} drives and 1..{MAX_SLOTS} slots")
        if not 0 <= mail_slots <= MAX_MAIL_SLOTS:
            raise ValueError(f"need 0..{MAX_MAIL_SLOTS} mail slots")
        if cleaning_cartridges < 0 or cleaning_cartridges > 999:
            raise ValueError("cleaning_cartridges must be 0..999")
        data_count = max(slots - 2 - cleaning_cartridges, 0) if cartridges is None else cartridges
        if data_count < 0 or data_count + cleaning_cartridges > slots:
            raise ValueError(
                f"{data_count} + {cleaning_cartridges} cartridges exceed {slots} slots"
            )
        if data_count > 9999:
            raise ValueError("at most 9999 data cartridges per barcode prefix")
        if capacity <= 0 or not 0 <= early_warning < capacity:
            raise ValueError("need capacity > 0 and 0 <= early_warning < capacity")
        if speed_limit is not None and speed_limit <= 0:
            raise ValueError("speed_limit must be positive (or None for unlimited)")
        check_barcode(f"{barcode_prefix}0000L9")
        config = LibraryConfig(
            serial=os.urandom(5).hex().upper(),
            drives=drives,
            slots=slots,
            mail_slots=mail_slots,
            capacity=capacity,
            early_warning=early_warning,
            barcode_prefix=barcode_prefix,
            speed_limit=speed_limit,
        )
        root.mkdir(parents=True, exist_ok=True)
        paths.cartridges.mkdir()
        elements: dict[int, Occupant] = {}
        for n in range(data_count):
            barcode = f"{barcode_prefix}{n + 1:04d}L9"
            Cartridge.create(
                paths.cartridge(barcode), CartridgeMeta(barcode, capacity, early_warning)
            )
            elements[STORAGE_FIRST + n] = Occupant(barcode)
        for n in range(cleaning_cartridges):
            barcode = f"CLN{n + 1:03d}L1"
            meta = CartridgeMeta(
                barcode, capacity, early_warning, cleaning=True, cleaning_uses_left=CLEANING_USES
            )
            Cartridge.create(paths.cartridge(barcode), meta)
            elements[STORAGE_FIRST + slots - cleaning_cartridges + n] = Occupant(barcode)
        for i in range(drives):
            paths.drive_dir(i).mkdir(parents=True)
            init_drive_state(paths.drive_state(i), speed_limit)
        ChangerMap(elements).save(paths.changer_state)
        config.save(paths)  # written last: a half-created directory is not a library
        return cls(root, config)

    @classmethod
    def open(cls, root: Path) -> VirtualLibrary:
        """Open an existing library and bring drive states in line with the changer map."""
        root = Path(root)
        paths = LibraryPaths(root)
        config = LibraryConfig.load(paths)
        if not paths.changer_state.is_file():
            raise CorruptLibraryError(f"{root}: changer state is missing")
        for i in range(config.drives):
            if not paths.drive_state(i).is_file():
                raise CorruptLibraryError(f"{root}: state of drive {i} is missing")
        library = cls(root, config)
        library._reconcile()
        return library

    def _reconcile(self) -> None:
        """Repair a crash between a move's map update and its drive-state update.

        Only moves (under the changer lock, held here) change a drive's cartridge, so the
        check reads each drive's state without its command lock, which a busy drive holds for
        every WRITE: opening the library never waits for the drives that are streaming.
        """
        lock = FileLock(self._paths.changer_lock)
        try:
            with lock:
                cmap = ChangerMap.load(self._paths.changer_state)
                for i in range(self.drive_count):
                    occupant = cmap.elements.get(DRIVE_FIRST + i)
                    wanted = occupant.barcode if occupant else None
                    state = DriveState(self._paths.drive_state(i))
                    try:
                        agrees = state.barcode == wanted
                    finally:
                        state.close()
                    if not agrees:
                        with locked_drive(self._paths, i) as state:
                            sync_drive(state, occupant)
        finally:
            lock.close()

    # --- LUN handles -------------------------------------------------------------------------
    def changer(self) -> Transport:
        """A new handle on the changer (LUN 0)."""
        return ChangerHandle(self._paths, self._config)

    def drive(self, index: int) -> Transport:
        """A new handle on drive `index` (0-based; LUN index + 1)."""
        if not 0 <= index < self.drive_count:
            raise NoSuchUnitError(f"no drive {index}: the library has {self.drive_count}")
        return DriveHandle(self._paths, index, drive_serial(self.serial, index))

    def lun(self, lun: int) -> Transport:
        """A new handle on `lun`: 0 = changer, 1..N = drives."""
        if lun == 0:
            return self.changer()
        if not 1 <= lun <= self.drive_count:
            raise NoSuchUnitError(f"no LUN {lun}: the library has LUNs 0..{self.drive_count}")
        return self.drive(lun - 1)

    # --- SAN disks and the copy manager ------------------------------------------------------
    def add_disk(self, name: str, *, image: Path | None = None, size: int | None = None) -> None:
        """Add a disk LUN over an existing image file (used in place) or a new zero-filled one
        of `size` bytes."""
        directory = self.root / "disks" / name
        Disk.create(directory, name, f"{self.serial}-{name}", image=image, size=size)

    def disks(self) -> list[str]:
        """Names of the SAN disks."""
        base = self.root / "disks"
        return sorted(p.name for p in base.iterdir()) if base.is_dir() else []

    def disk_store(self, name: str) -> Disk:
        """The files behind disk `name` (snapshots, write generation)."""
        return Disk(self.root / "disks" / name)

    def disk(self, name: str, snapshot: str | None = None) -> Transport:
        """A new handle on disk `name`, or read-only on one of its snapshots."""
        disk = self.disk_store(name)
        serial = disk.meta.serial + (f"@{snapshot}" if snapshot else "")
        return DiskHandle(disk, serial, snapshot)

    def copy_manager(self) -> Transport:
        """A new handle on the copy manager (EXTENDED COPY between disks and drives)."""
        return CopyManagerHandle(f"{self.serial}-XC", self._copy_units)

    def _copy_units(self) -> dict[bytes, tuple[int, Callable[[], Transport]]]:
        units: dict[bytes, tuple[int, Callable[[], Transport]]] = {}
        for i in range(self.drive_count):
            units[naa_designator(drive_serial(self.serial, i))] = (1, partial(self.drive, i))
        for name in self.disks():
            disk = self.disk_store(name)
            units[naa_designator(disk.meta.serial)] = (0, partial(self.disk, name))
            for snap in disk.snapshots():
                serial = f"{disk.meta.serial}@{snap}"
                units[naa_designator(serial)] = (0, partial(self.disk, name, snap))
        return units

    # --- operator actions --------------------------------------------------------------------
    def insert(
        self, barcode: str, *, mail_slot: int | None = None, capacity: int | None = None
    ) -> None:
        """Put a cartridge into a free import/export element (0-based `mail_slot`, default the
        first free). An unknown barcode is a new blank cartridge; a known one comes back from
        the shelf with its data."""
        check_barcode(barcode)
        with self._changer_map() as cmap:
            if cmap.find(barcode) is not None:
                raise CartridgeInLibraryError(f"cartridge {barcode} is already in the library")
            address = self._free_mail_slot(cmap, mail_slot)
            directory = self._paths.cartridge(barcode)
            if not directory.exists():
                cap = capacity if capacity is not None else self._config.capacity
                early = min(self._config.early_warning, cap // 2)
                Cartridge.create(directory, CartridgeMeta(barcode, cap, early))
            elif capacity is not None and CartridgeMeta.load(directory).capacity != capacity:
                raise ValueError(f"cartridge {barcode} exists with a different capacity")
            cmap.elements[address] = Occupant(barcode, impexp=True)

    def _free_mail_slot(self, cmap: ChangerMap, mail_slot: int | None) -> int:
        if mail_slot is not None:
            if not 0 <= mail_slot < self.mail_slot_count:
                raise MailSlotError(f"no mail slot {mail_slot} (have {self.mail_slot_count})")
            address = IE_FIRST + mail_slot
            if address in cmap.elements:
                raise MailSlotError(f"mail slot {mail_slot} is occupied")
            return address
        for i in range(self.mail_slot_count):
            if IE_FIRST + i not in cmap.elements:
                return IE_FIRST + i
        raise MailSlotError("every mail slot is occupied")

    def remove(self, mail_slot: int) -> str:
        """Take the cartridge out of import/export element `mail_slot` (0-based); it stays on
        the shelf (its directory) and can be inserted again. Returns its barcode."""
        if not 0 <= mail_slot < self.mail_slot_count:
            raise MailSlotError(f"no mail slot {mail_slot} (have {self.mail_slot_count})")
        with self._changer_map() as cmap:
            occ = cmap.elements.pop(IE_FIRST + mail_slot, None)
            if occ is None:
                raise MailSlotError(f"mail slot {mail_slot} is empty")
            return occ.barcode

    def set_write_protect(self, barcode: str, on: bool) -> None:
        """Slide the cartridge's write-protect tab; a drive holding it notices at once."""
        directory = self._paths.cartridge(check_barcode(barcode))
        if not directory.is_dir():
            raise UnknownCartridgeError(f"no cartridge {barcode}")
        with self._changer_map(save=False) as cmap:
            meta_lock = FileLock(directory / "meta.lock")
            try:
                with meta_lock:
                    meta = CartridgeMeta.load(directory)
                    meta.write_protect = on
                    meta.save(directory)
            finally:
                meta_lock.close()
            address = cmap.find(barcode)
            if address is not None and DRIVE_FIRST <= address < DRIVE_FIRST + self.drive_count:
                with locked_drive(self._paths, address - DRIVE_FIRST) as state:
                    state.bump()

    def set_speed_limit(self, bytes_per_s: float | None) -> None:
        """Pace every drive's READ/WRITE at `bytes_per_s` (None = as fast as the disk)."""
        if bytes_per_s is not None and bytes_per_s <= 0:
            raise ValueError("speed limit must be positive (or None for unlimited)")
        with self._changer_map(save=False):
            self._config.speed_limit = bytes_per_s
            self._config.save(self._paths)
            for i in range(self.drive_count):
                with locked_drive(self._paths, i) as state:
                    state.speed_limit = bytes_per_s

    def _changer_map(self, *, save: bool = True) -> _MapTransaction:
        return _MapTransaction(self._paths, save)

    # --- inspection (not SCSI) ---------------------------------------------------------------
    def contents(self) -> dict[int, str]:
        """Element address -> barcode, for everything in the library."""
        cmap = ChangerMap.load(self._paths.changer_state)
        return {addr: occ.barcode for addr, occ in sorted(cmap.elements.items())}


class _MapTransaction:
    """Changer lock held, map loaded; on success the map is saved atomically."""

    def __init__(self, paths: LibraryPaths, save: bool) -> None:
        self._paths, self._save = paths, save
        self._lock = FileLock(paths.changer_lock)
        self._map: ChangerMap | None = None

    def __enter__(self) -> ChangerMap:
        try:
            self._lock.acquire()
            self._map = ChangerMap.load(self._paths.changer_state)
        except BaseException:
            self._lock.close()
            raise
        return self._map

    def __exit__(self, et: type[BaseException] | None, *rest: object) -> None:
        try:
            if et is None and self._save and self._map is not None:
                self._map.save(self._paths.changer_state)
        finally:
            self._lock.close()
