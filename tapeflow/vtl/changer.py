"""The medium changer LUN (SMC, peripheral type 0x08): element status and MOVE MEDIUM.

Every move runs under the changer flock, so moves are serialized across processes; a move that
touches a drive also takes that drive's command lock (always changer first, then drive).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

from tapeflow.scsi import ssc
from tapeflow.scsi.element_status import (
    Element,
    ElementAddressPage,
    ElementType,
    build_element_status,
)
from tapeflow.scsi.sense import ILLEGAL_REQUEST
from tapeflow.vtl import cdb
from tapeflow.vtl.config import LibraryConfig, LibraryPaths
from tapeflow.vtl.drive import load_cleaning
from tapeflow.vtl.lun import CheckCondition, Handler, LogicalUnit, invalid_field
from tapeflow.vtl.state import (
    DRIVE_FIRST,
    IE_FIRST,
    STORAGE_FIRST,
    TRANSPORT_ADDRESS,
    ChangerMap,
    DriveState,
    FileLock,
    Occupant,
)

TEST_UNIT_READY = 0x00
INITIALIZE_ELEMENT_STATUS = 0x07
MODE_SENSE_6 = 0x1A
PREVENT_ALLOW = 0x1E
POSITION_TO_ELEMENT = 0x2B
INITIALIZE_ELEMENT_STATUS_WITH_RANGE = 0x37
MOVE_MEDIUM = 0xA5
READ_ELEMENT_STATUS = 0xB8


def invalid_element() -> CheckCondition:
    """ILLEGAL REQUEST, INVALID ELEMENT ADDRESS (21/01)."""
    return CheckCondition(ILLEGAL_REQUEST, 0x21, 0x01)


class Geometry:
    """Element addresses of a library: transport 0, I/E from 10, drives from 256, slots from
    1024."""

    def __init__(self, drives: int, slots: int, mail_slots: int) -> None:
        self.drives, self.slots, self.mail_slots = drives, slots, mail_slots

    def kind(self, address: int) -> ElementType | None:
        """Element type at `address`, or None when no element lives there."""
        if address == TRANSPORT_ADDRESS:
            return ElementType.TRANSPORT
        if IE_FIRST <= address < IE_FIRST + self.mail_slots:
            return ElementType.IMPORT_EXPORT
        if DRIVE_FIRST <= address < DRIVE_FIRST + self.drives:
            return ElementType.DRIVE
        if STORAGE_FIRST <= address < STORAGE_FIRST + self.slots:
            return ElementType.STORAGE
        return None

    def addresses(self) -> list[tuple[ElementType, int]]:
        """Every element, in address order."""
        out = [(ElementType.TRANSPORT, TRANSPORT_ADDRESS)]
        out += [(ElementType.IMPORT_EXPORT, IE_FIRST + i) for i in range(self.mail_slots)]
        out += [(ElementType.DRIVE, DRIVE_FIRST + i) for i in range(self.drives)]
        out += [(ElementType.STORAGE, STORAGE_FIRST + i) for i in range(self.slots)]
        return out


def sync_drive(state: DriveState, occupant: Occupant | None) -> None:
    """Make the drive's own state agree with the changer map (repairs a crash mid-move)."""
    barcode = occupant.barcode if occupant else None
    if state.barcode == barcode:
        return
    if barcode is None:
        state.eject()
    else:
        state.insert(barcode)


class ChangerHandle(LogicalUnit):
    """One initiator's handle on the changer (LUN 0)."""

    peripheral_type = 0x08
    removable = False
    product = "VTL CHANGER"

    def __init__(self, paths: LibraryPaths, config: LibraryConfig) -> None:
        super().__init__(f"{config.serial}C")
        self._paths = paths
        self.geometry = Geometry(config.drives, config.slots, config.mail_slots)
        self._lock = FileLock(paths.changer_lock)
        self._prevent = False
        handlers: dict[int, Handler] = {
            TEST_UNIT_READY: self._nothing,
            INITIALIZE_ELEMENT_STATUS: self._nothing,
            INITIALIZE_ELEMENT_STATUS_WITH_RANGE: self._nothing,
            MODE_SENSE_6: self._mode_sense,
            PREVENT_ALLOW: self._prevent_allow,
            POSITION_TO_ELEMENT: self._position_to_element,
            MOVE_MEDIUM: self._move_medium,
            READ_ELEMENT_STATUS: self._read_element_status,
        }
        self._handlers.update(handlers)

    def close(self) -> None:
        """Close the changer lock file."""
        with self._thread_lock:
            if not self._closed:
                self._closed = True
                self._lock.close()

    # --- commands ----------------------------------------------------------------------------
    def _nothing(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        return b""

    def _prevent_allow(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        self._prevent = bool(cdb.Cdb6.parse(raw).b4 & 0x03)
        return b""

    def _position_to_element(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.PositionToElement.parse(raw)
        if c.transport != TRANSPORT_ADDRESS or self.geometry.kind(c.destination) is None:
            raise invalid_element()
        return b""

    def _mode_sense(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.Cdb6.parse(raw)
        page, subpage = c.b2 & 0x3F, c.b3
        if subpage or page not in (0x1D, 0x3F):
            raise invalid_field()
        g = self.geometry
        body = ElementAddressPage.build(
            {
                "page_code": 0x1D,
                "page_length": 0x12,
                "transport_first": TRANSPORT_ADDRESS,
                "transport_count": 1,
                "storage_first": STORAGE_FIRST,
                "storage_count": g.slots,
                "ie_first": IE_FIRST,
                "ie_count": g.mail_slots,
                "drive_first": DRIVE_FIRST,
                "drive_count": g.drives,
            }
        )
        head = ssc.ModeHeader6.build(
            {
                "data_length": 3 + len(body),
                "medium_type": 0,
                "device_specific": {"wp": False, "buffered_mode": 0, "speed": 0},
                "descriptor_length": 0,
            }
        )
        return (head + body)[: c.b4]

    def _read_element_status(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.ReadElementStatus.parse(raw)
        voltag, wanted = bool(c.flags & 0x10), c.flags & 0x0F
        if wanted > ElementType.DRIVE:
            raise invalid_field()
        elements = ChangerMap.load(self._paths.changer_state).elements
        chosen: list[Element] = []
        for etype, address in self.geometry.addresses():
            if len(chosen) >= c.count:
                break
            if address < c.start or (wanted and etype != wanted):
                continue
            occ = elements.get(address)
            chosen.append(
                Element(
                    type=etype,
                    address=address,
                    full=occ is not None,
                    barcode=occ.barcode if occ else None,
                    source_address=occ.source if occ else None,
                    impexp=bool(occ and occ.impexp),
                )
            )
        return build_element_status(chosen, voltag=voltag, alloc_len=c.alloc)

    def _move_medium(self, raw: bytes, out: memoryview | None, alloc: int) -> bytes:
        c = cdb.MoveMedium.parse(raw)
        g = self.geometry
        if c.invert & 0x01:
            raise invalid_field()
        src_kind, dst_kind = g.kind(c.source), g.kind(c.destination)
        if (
            g.kind(c.transport) != ElementType.TRANSPORT
            or src_kind in (None, ElementType.TRANSPORT)
            or dst_kind in (None, ElementType.TRANSPORT)
        ):
            raise invalid_element()
        with self._lock, ExitStack() as stack:
            cmap = ChangerMap.load(self._paths.changer_state)
            occ = cmap.elements.get(c.source)
            if occ is None:
                raise CheckCondition(ILLEGAL_REQUEST, 0x3B, 0x0E)
            if c.source == c.destination:
                return b""
            if c.destination in cmap.elements:
                raise CheckCondition(ILLEGAL_REQUEST, 0x3B, 0x0D)
            src_drive = dst_drive = None
            if src_kind == ElementType.DRIVE:
                src_drive = stack.enter_context(self._drive(c.source - DRIVE_FIRST))
                sync_drive(src_drive, occ)
                if src_drive.loaded:
                    raise CheckCondition(ILLEGAL_REQUEST, 0x53, 0x02)
            if dst_kind == ElementType.DRIVE:
                dst_drive = stack.enter_context(self._drive(c.destination - DRIVE_FIRST))
            del cmap.elements[c.source]
            cmap.elements[c.destination] = Occupant(occ.barcode, source=c.source, impexp=False)
            cmap.save(self._paths.changer_state)  # the map is the truth; drives follow it
            if src_drive is not None:
                src_drive.eject()
            if dst_drive is not None:
                dst_drive.insert(occ.barcode)
                load_cleaning(self._paths, occ.barcode)
        return b""

    def _drive(self, index: int) -> AbstractContextManager[DriveState]:
        return locked_drive(self._paths, index)


@contextmanager
def locked_drive(paths: LibraryPaths, index: int) -> Iterator[DriveState]:
    """A drive's state, mapped and held under its command lock (moves, operator actions)."""
    lock = FileLock(paths.drive_command_lock(index))
    try:
        lock.acquire()
        state = DriveState(paths.drive_state(index))
        try:
            yield state
        finally:
            state.close()
    finally:
        lock.close()
