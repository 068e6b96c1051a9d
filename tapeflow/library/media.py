"""Media management: label and erase slot ranges, clean drives, import new mail-slot media,
export cartridges.

Every cartridge is worked on under its media lease and in a leased drive (the same flock leases
backup slaves take, so these never collide with a running job), and every load has its unload,
every lease its release, on every path. Moves go through Library, which serializes them per
changer. Bad input (slot out of range, unknown barcode, bad pool name) is refused before the
first move; a cartridge that must not be touched (foreign, already labelled, in use,
write-protected) is reported as `refused` and left as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tapeflow.library.errors import (
    DriveInUse,
    DriveOffline,
    DriveOutOfRange,
    EraseUnsupported,
    InvalidName,
    MediaBusy,
    NoCleaningCartridge,
    NoFreeSlot,
    NotInPartition,
    SlotEmpty,
    SlotOutOfRange,
    UnknownBarcode,
)
from tapeflow.library.leases import Lease, LeaseBoard
from tapeflow.library.library import Library
from tapeflow.scsi.element_status import ElementType
from tapeflow.scsi.sense import (
    DataProtect,
    IllegalRequest,
    MediumError,
    NoMedium,
    NotReady,
    UnitAttention,
    WriteProtected,
)
from tapeflow.scsi.tape import TapeDrive
from tapeflow.tapefmt import BlankTape, ForeignTape, read_label, write_label
from tapeflow.tapefmt.errors import TapeFormatError, UnsupportedVersion

log = logging.getLogger(__name__)

CLEANING_PREFIX = "CLN"  # LTO convention: cleaning cartridges are CLNxxxLn
POOL_NAME_MAX = 32  # the label's TFH1 pool field
Action = Literal["labelled", "erased", "skipped", "refused", "failed"]
# errors of one cartridge (not of the drive or the library): reported, then the next one
MEDIUM_ERRORS: tuple[type[Exception], ...] = (
    WriteProtected,
    DataProtect,
    MediumError,
    TapeFormatError,
)


@dataclass(frozen=True)
class MediaOutcome:
    """What happened to the cartridge of one slot."""

    slot: int
    barcode: str | None
    action: Action
    detail: str = ""
    overwritten: bool = False  # what the cartridge held is gone (the catalog must forget it)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class Imported:
    """A cartridge moved from mail slot `mail_slot` into storage slot `slot`."""

    mail_slot: int
    barcode: str
    slot: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class CleanResult:
    """One drive cleaning: the cartridge used, how long it took, uses left if the library says."""

    drive: int
    barcode: str
    slot: int | None
    seconds: float
    status: str  # how the wait ended: "ejected", "ready" or "cleaning cartridge installed"
    uses_left: int | None = None  # embedded library: from the cleaning cartridge's metadata

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def is_cleaning(barcode: str | None) -> bool:
    """True for a cleaning cartridge's barcode."""
    return bool(barcode) and str(barcode).upper().startswith(CLEANING_PREFIX)


# --- selection -------------------------------------------------------------------------------
def select_media(
    lib: Library, *, slots: tuple[int, int] | None = None, barcodes: Sequence[str] = ()
) -> list[tuple[int, str | None]]:
    """(slot, barcode or None if empty) for a slot range or a barcode list, in slot order.

    Validated as a whole first: SlotOutOfRange, NotInPartition, UnknownBarcode.
    """
    if (slots is None) == (not barcodes):
        raise ValueError("give a slot range or barcodes (exactly one of them)")
    inv = lib.inventory()
    own = {s.number: s for s in inv.slots}
    if slots is not None:
        first, last = int(slots[0]), int(slots[1])
        if first > last:
            raise SlotOutOfRange(f"first slot {first} is after last slot {last}")
        count = len(lib.physical_inventory().slots)
        for n in (first, last):
            if not 1 <= n <= count:
                raise SlotOutOfRange(f"slot {n} is out of range 1..{count}")
        part = lib.partition()
        outside = [n for n in range(first, last + 1) if n not in own]
        if part is not None and outside:
            raise NotInPartition(f"slot {outside[0]} is not in virtual library {part.name!r}")
        return [(n, own[n].barcode if own[n].full else None) for n in range(first, last + 1)]
    where = {s.barcode: s.number for s in inv.slots if s.full and s.barcode}
    missing = [b for b in dict.fromkeys(barcodes) if b not in where]
    if missing:
        elsewhere = set(lib.physical_inventory().barcodes())
        detail = "; ".join(
            f"{b} is {'not in a storage slot of this library' if b in elsewhere else 'unknown'}"
            for b in missing
        )
        raise UnknownBarcode(f"cannot select {', '.join(missing)}: {detail}")
    return sorted((where[b], b) for b in dict.fromkeys(barcodes))


def _drives(lib: Library, drive: int | None) -> list[int]:
    """Drives the operation may lease: `drive` (checked) or every online drive."""
    online = lib.online_drives()
    if drive is None:
        if not online:
            raise DriveOffline("no online drive to work with")
        return online
    count = lib.drive_count
    if not 0 <= drive < count:
        raise DriveOutOfRange(f"drive {drive} is out of range 0..{count - 1}")
    part = lib.partition()
    if part is not None and drive not in part.drives:
        raise NotInPartition(f"drive {drive} is not in virtual library {part.name!r}")
    if drive not in online:
        raise DriveOffline(f"drive {drive} is offline")
    return [drive]


BRING_HOME_WAIT = 60.0
"""Seconds a reader waits for the holder of the drive its cartridge sits in to unload it."""


def bring_home(
    lib: Library,
    board: LeaseBoard,
    barcode: str,
    holder: str,
    *,
    wait: float = BRING_HOME_WAIT,
    poll: float = 0.05,
    mine: Collection[int] = (),
) -> int | None:
    """A cartridge left loaded in a drive (kept there by a backup's slave for the next one,
    or left by a killed job) goes back to its slot under that drive's lease; returns the
    drive, or None when the cartridge is in no drive or in one of `mine` (drives the caller
    holds, where it stays). The caller holds the cartridge's lease, so whoever holds that
    drive now will unload it rather than use it: wait up to `wait` seconds for that before
    DriveInUse."""
    deadline = time.monotonic() + wait
    while True:
        drive = next(
            (d.number for d in lib.inventory().drives if d.full and d.barcode == barcode), None
        )
        if drive is None or drive in mine:
            return None
        lease = board.try_drive([drive], holder)
        if lease is not None:
            with lease:  # still there? (its holder may have just unloaded it)
                still = any(
                    d.number == drive and d.barcode == barcode for d in lib.inventory().drives
                )
                if still:
                    lib.unload(drive)
            return drive
        if time.monotonic() >= deadline:
            raise DriveInUse(f"cartridge {barcode} sits in drive {drive}, which another job holds")
        time.sleep(poll)


def unload_parked(lib: Library, holder: str) -> list[str]:
    """At a job's end: unload the cartridges its slaves kept loaded for one another (and any a
    killed job left) from the online drives nobody holds, all drives at once (a real drive
    rewinds for up to two minutes); returns their barcodes. A drive another job holds is that
    job's to empty."""
    board = LeaseBoard(lib.state_dir)
    with ExitStack() as held:
        idle = []
        for d in lib.inventory().drives:
            lease = board.try_drive([d.number], holder) if d.full and d.online else None
            if lease is not None:  # None: empty, offline, or a running slave's
                idle.append(held.enter_context(lease))
        if not idle:
            return []
        with ThreadPoolExecutor(len(idle)) as pool:
            left = list(pool.map(lambda lease: lib.clear(int(lease.key)), idle))
    return [barcode for barcode in left if barcode]


@contextmanager
def _mounted(
    lib: Library, drive: int, barcode: str, board: LeaseBoard, holder: str
) -> Iterator[TapeDrive]:
    """`barcode` loaded in `drive` and an open handle; closed and unloaded on every path."""
    with ExitStack() as stack:
        bring_home(lib, board, barcode, holder)
        lib.load(drive, barcode=barcode)
        stack.callback(lib.unload, drive)
        handle = lib.open_drive(drive)
        stack.callback(handle.close)
        handle.set_block_size(0)
        yield handle


def _each_cartridge(
    lib: Library,
    targets: list[tuple[int, str | None]],
    work: Callable[[TapeDrive, int, str], MediaOutcome],
    *,
    holder: str,
    drive: int | None,
    drive_timeout: float,
) -> list[MediaOutcome]:
    """Lease one drive, then mount each target cartridge under its media lease and `work` it."""
    board = LeaseBoard(lib.state_dir)
    outcomes: list[MediaOutcome] = []
    candidates = _drives(lib, drive)
    if all(barcode is None or is_cleaning(barcode) for _, barcode in targets):
        candidates = []  # nothing to mount: do not wait for a drive
    with ExitStack() as stack:
        number = -1
        if candidates:
            lease = stack.enter_context(board.drive(candidates, holder, drive_timeout))
            number = int(lease.key)
            left = lib.clear(number)
            if left:
                log.warning("drive %d held %s from an interrupted job: unloaded", number, left)
        for slot, barcode in targets:
            if barcode is None:
                outcomes.append(MediaOutcome(slot, None, "skipped", "empty slot"))
                continue
            if is_cleaning(barcode):
                outcomes.append(MediaOutcome(slot, barcode, "skipped", "cleaning cartridge"))
                continue
            media = board.try_media(barcode, holder)
            if media is None:
                outcomes.append(MediaOutcome(slot, barcode, "refused", "in use by a running job"))
                continue
            with media, _mounted(lib, number, barcode, board, holder) as handle:
                try:
                    outcome = work(handle, slot, barcode)
                except MEDIUM_ERRORS as exc:
                    log.error("slot %d (%s): %s: %s", slot, barcode, type(exc).__name__, exc)
                    outcome = MediaOutcome(slot, barcode, "failed", f"{type(exc).__name__}: {exc}")
            outcomes.append(outcome)
    return outcomes


def _what_is_on(handle: TapeDrive) -> tuple[str, str, str]:
    """('blank' | 'tapeflow' | 'foreign', description, pool) of the mounted cartridge."""
    try:
        label = read_label(handle)
    except BlankTape:
        return "blank", "blank", ""
    except (ForeignTape, UnsupportedVersion) as exc:
        return "foreign", f"foreign tape ({exc})", ""
    return "tapeflow", f"labelled {label.barcode} for pool {label.pool!r}", label.pool


# --- label -----------------------------------------------------------------------------------
def label_media(
    lib: Library,
    *,
    slots: tuple[int, int] | None = None,
    barcodes: Sequence[str] = (),
    pool: str = "default",
    force: bool = False,
    drive: int | None = None,
    drive_timeout: float = 3600.0,
) -> list[MediaOutcome]:
    """Write a volume label (barcode + pool) on each blank cartridge of a slot range or barcode
    list; a foreign or already labelled one is refused unless `force`."""
    if not pool or len(pool) > POOL_NAME_MAX or not pool.isascii() or not pool.isprintable():
        raise InvalidName(f"invalid pool name {pool!r}: want 1-{POOL_NAME_MAX} ASCII characters")
    targets = select_media(lib, slots=slots, barcodes=barcodes)

    def work(handle: TapeDrive, slot: int, barcode: str) -> MediaOutcome:
        """Label one mounted cartridge, unless what is on it must be kept."""
        if handle.mode().write_protected:
            return MediaOutcome(slot, barcode, "refused", "write-protected")
        kind, what, _pool = _what_is_on(handle)
        if kind != "blank" and not force:
            return MediaOutcome(slot, barcode, "refused", f"{what}; use force to overwrite")
        write_label(handle, barcode, barcode, pool, force=True)
        detail = f"pool {pool!r}" + ("" if kind == "blank" else f" (was {what})")
        log.info("slot %d: labelled %s for pool %r", slot, barcode, pool)
        return MediaOutcome(slot, barcode, "labelled", detail, overwritten=kind != "blank")

    return _each_cartridge(
        lib, targets, work, holder="library label", drive=drive, drive_timeout=drive_timeout
    )


# --- erase -----------------------------------------------------------------------------------
def erase_media(
    lib: Library,
    *,
    slots: tuple[int, int] | None = None,
    barcodes: Sequence[str] = (),
    long: bool = False,
    force: bool = False,
    drive: int | None = None,
    drive_timeout: float = 3600.0,
) -> list[MediaOutcome]:
    """Erase each cartridge of a slot range or barcode list; foreign tapes only with `force`.

    Quick: ERASE (short) at the beginning, so the cartridge reads blank and any pool may label
    it. A drive without ERASE (tgt) gets its label rewritten instead, which cuts every session
    off. Long: ERASE of the whole cartridge (hours on a real drive); EraseUnsupported on a
    drive without ERASE, before anything is written.
    """
    targets = select_media(lib, slots=slots, barcodes=barcodes)

    def work(handle: TapeDrive, slot: int, barcode: str) -> MediaOutcome:
        """Erase one mounted cartridge, unless it is foreign (without force) or blank."""
        if handle.mode().write_protected:
            return MediaOutcome(slot, barcode, "refused", "write-protected")
        kind, what, old_pool = _what_is_on(handle)
        if kind == "foreign" and not force:
            return MediaOutcome(slot, barcode, "refused", f"{what}; use force to erase it")
        if kind == "blank" and not long:
            return MediaOutcome(slot, barcode, "skipped", "already blank")
        handle.rewind()
        try:
            handle.erase(long=long)
        except IllegalRequest as exc:
            if (exc.asc, exc.ascq) != (0x20, 0x00):  # not "invalid command operation code"
                raise
            if long:
                raise EraseUnsupported(
                    f"drive cannot ERASE ({exc}): long erase of {barcode} is impossible here"
                ) from exc
            write_label(handle, barcode, barcode, old_pool, force=True)
            detail = "quick: drive has no ERASE, label rewritten"
            return MediaOutcome(slot, barcode, "erased", detail, overwritten=True)
        log.info("slot %d: %s erased (%s)", slot, barcode, "long" if long else "quick")
        detail = "long: whole cartridge" if long else "quick"
        return MediaOutcome(slot, barcode, "erased", detail, overwritten=True)

    return _each_cartridge(
        lib, targets, work, holder="library erase", drive=drive, drive_timeout=drive_timeout
    )


# --- cleaning --------------------------------------------------------------------------------
def cleaning_uses_left(lib: Library, barcode: str) -> int | None:
    """Uses left on a cleaning cartridge when the library tells (embedded: its metadata)."""
    if lib.spec.backend != "embedded" or lib.spec.path is None:
        return None
    from tapeflow.vtl.config import LibraryPaths
    from tapeflow.vtl.store import CartridgeMeta

    return CartridgeMeta.load(LibraryPaths(lib.spec.path).cartridge(barcode)).cleaning_uses_left


def _cleaning_cartridge(lib: Library, board: LeaseBoard, holder: str) -> tuple[str, int, Lease]:
    """(barcode, slot, media lease) of a free cleaning cartridge with uses left."""
    found: list[str] = []
    for s in lib.physical_inventory().slots:
        if not (s.full and is_cleaning(s.barcode)):
            continue
        assert s.barcode is not None
        uses = cleaning_uses_left(lib, s.barcode)
        if uses is not None and uses <= 0:
            found.append(f"{s.barcode} is used up")
            continue
        lease = board.try_media(s.barcode, holder)
        if lease is None:
            found.append(f"{s.barcode} is in use")
            continue
        return s.barcode, s.number, lease
    why = "; ".join(found) if found else "there is none in the storage slots"
    raise NoCleaningCartridge(f"no usable cleaning cartridge: {why}")


def _wait_cleaned(handle: TapeDrive, timeout: float, poll: float) -> str:
    """Wait while the drive says 'cleaning cartridge installed' (02/30/03), up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            handle.test_unit_ready()
            return "ready"  # the drive treats it as a plain cartridge (tgt): nothing to wait for
        except NoMedium:
            return "ejected"  # a real drive ejects the cleaning cartridge when it is done
        except UnitAttention:
            pass  # medium changed: ask again
        except NotReady as exc:
            if (exc.asc, exc.ascq) != (0x30, 0x03):
                raise
            if time.monotonic() >= deadline:
                return "cleaning cartridge installed"
        time.sleep(poll)


def clean_drive(
    lib: Library,
    drive: int,
    *,
    timeout: float | None = None,
    poll: float = 0.5,
    drive_timeout: float = 3600.0,
) -> CleanResult:
    """Load a cleaning cartridge into `drive` (online or not), wait for the cleaning, put it
    back; NoCleaningCartridge when none with uses left is free.

    `timeout` bounds the wait (default: 0 s on the embedded library, whose cleaning is done on
    load; 300 s elsewhere, where the drive ejects the cartridge when done).
    """
    count = lib.drive_count
    if not 0 <= drive < count:
        raise DriveOutOfRange(f"drive {drive} is out of range 0..{count - 1}")
    part = lib.partition()
    if part is not None and drive not in part.drives:
        raise NotInPartition(f"drive {drive} is not in virtual library {part.name!r}")
    wait = timeout if timeout is not None else (0.0 if lib.spec.backend == "embedded" else 300.0)
    holder = f"clean drive {drive}"
    board = LeaseBoard(lib.state_dir)
    # the cleaning cartridge may sit in any slot: moves go through the physical library
    physical = lib if part is None else Library(lib.spec.with_vlib(None))
    with ExitStack() as stack:
        if physical is not lib:
            stack.enter_context(physical)
        stack.enter_context(board.drive([drive], holder, drive_timeout))
        left = physical.clear(drive)
        if left:
            log.warning("drive %d held %s from an interrupted job: unloaded", drive, left)
        barcode, slot, media = _cleaning_cartridge(physical, board, holder)
        stack.enter_context(media)
        started = time.monotonic()
        physical.load(drive, barcode=barcode, wait=False)
        status = "loaded"

        def put_back() -> None:
            """Unload the cleaning cartridge; one the drive ejected by itself is just moved."""
            if status != "ejected":
                physical.unload(drive)
                return
            inv = physical.physical_inventory()
            physical.move(inv.drives[drive].address, inv.slots[slot - 1].address)

        stack.callback(put_back)
        handle = physical.open_drive(drive)
        try:
            status = _wait_cleaned(handle, wait, poll)
        finally:
            handle.close()
        seconds = time.monotonic() - started
    uses = cleaning_uses_left(lib, barcode)
    log.info("drive %d cleaned with %s in %.1f s (%s)", drive, barcode, seconds, status)
    return CleanResult(drive, barcode, slot, seconds, status, uses)


# --- mail slots ------------------------------------------------------------------------------
def new_mail_media(lib: Library) -> list[tuple[int, str]]:
    """(mail slot, barcode) of cartridges the operator put in: not the ones the changer moved
    there for export (those carry a source address and no ImpExp bit)."""
    mails = lib.changer.elements(ElementType.IMPORT_EXPORT)
    return [
        (i + 1, e.barcode or "")
        for i, e in enumerate(mails)
        if e.full and (e.impexp or e.source_address is None)
    ]


def import_new_media(lib: Library) -> list[Imported]:
    """Move every new cartridge found in a mail slot into a free storage slot (of the virtual
    library, if any); NoFreeSlot before any move when they do not all fit."""
    new = new_mail_media(lib)
    free = [s for s in lib.inventory().slots if not s.full]
    if len(new) > len(free):
        raise NoFreeSlot(
            f"{len(new)} new cartridge(s) in the mail slots but {len(free)} free slot(s): "
            "make room first"
        )
    imported = []
    for mail_slot, barcode in new:
        try:
            moved = lib.import_media(mail_slot)
        except SlotEmpty:  # imported meanwhile by another process (a waiting job, a flow)
            log.info("mail slot %d: %s was imported by someone else", mail_slot, barcode)
            continue
        where = next(s.number for s in lib.physical_inventory().slots if s.barcode == moved)
        imported.append(Imported(mail_slot, moved or barcode, where))
        log.info("imported %s from mail slot %d into slot %d", moved, mail_slot, where)
    return imported


def export_media(lib: Library, barcodes: Sequence[str]) -> list[tuple[str, int]]:
    """Move cartridges to free mail slots for removal; (barcode, mail slot) each.

    Refused before any move: unknown barcode, not enough free mail slots, a cartridge in use.
    """
    if not barcodes:
        raise ValueError("no barcode to export")
    select_media(lib, barcodes=barcodes)
    wanted = list(dict.fromkeys(barcodes))
    free = [s for s in lib.inventory().mail_slots if not s.full]
    if len(wanted) > len(free):
        raise NoFreeSlot(f"{len(wanted)} cartridge(s) to export but {len(free)} free mail slot(s)")
    board = LeaseBoard(lib.state_dir)
    with ExitStack() as stack:
        for barcode in wanted:
            lease = board.try_media(barcode, "library export")
            if lease is None:
                raise MediaBusy(f"cartridge {barcode} is in use by a running job")
            stack.enter_context(lease)
        return [(barcode, lib.export_media(barcode)) for barcode in wanted]
