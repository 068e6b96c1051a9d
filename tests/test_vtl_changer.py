"""SMC behaviour of the embedded VTL changer and the operator actions at the library door."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeflow.scsi.element_status import (
    Element,
    ElementAddressPage,
    ElementType,
    parse_element_status,
)
from tapeflow.scsi.sense import ILLEGAL_REQUEST, parse_sense
from tapeflow.scsi.transport import CHECK_CONDITION, GOOD, CommandResult, Transport
from tapeflow.vtl import (
    CartridgeInLibraryError,
    LibraryExistsError,
    MailSlotError,
    NoSuchUnitError,
    NotALibraryError,
    VirtualLibrary,
)
from tapeflow.vtl.config import LibraryPaths
from tapeflow.vtl.state import ChangerMap, DriveState, FileLock, Occupant


def move(src: int, dst: int, transport: int = 0) -> bytes:
    return (
        bytes([0xA5, 0])
        + transport.to_bytes(2, "big")
        + src.to_bytes(2, "big")
        + dst.to_bytes(2, "big")
        + bytes(4)
    )


def res(
    etype: int = 0, start: int = 0, count: int = 0xFFFF, voltag: bool = True, alloc: int = 65535
) -> bytes:
    return (
        bytes([0xB8, (0x10 if voltag else 0) | etype])
        + start.to_bytes(2, "big")
        + count.to_bytes(2, "big")
        + b"\x00"
        + alloc.to_bytes(3, "big")
        + bytes(2)
    )


def ok(r: CommandResult) -> CommandResult:
    assert r.status == GOOD, parse_sense(r.sense).describe()
    return r


def asc(r: CommandResult) -> tuple[int, int, int]:
    assert r.status == CHECK_CONDITION
    s = parse_sense(r.sense)
    return s.key, s.asc, s.ascq


@pytest.fixture
def lib(tmp_path: Path) -> VirtualLibrary:
    return VirtualLibrary.create(tmp_path / "lib", drives=2, slots=8, mail_slots=3)


@pytest.fixture
def changer(lib: VirtualLibrary) -> Iterator[Transport]:
    handle = lib.changer()
    yield handle
    handle.close()


def status(changer: Transport, **kw: int) -> list[Element]:
    return parse_element_status(ok(changer.execute(res(**kw), data_in_len=65535)).data_in)


def test_create_layout_and_open_errors(tmp_path: Path, lib: VirtualLibrary) -> None:
    assert (lib.drive_count, lib.slot_count, lib.mail_slot_count) == (2, 8, 3)
    contents = lib.contents()
    assert contents[1024] == "TF0001L9" and contents[1028] == "TF0005L9"
    assert contents[1031] == "CLN001L1" and 1029 not in contents and 1030 not in contents
    with pytest.raises(LibraryExistsError):
        VirtualLibrary.create(lib.root)
    with pytest.raises(NotALibraryError):
        VirtualLibrary.open(tmp_path / "nothing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "library.json").write_text('{"format": "other"}')
    with pytest.raises(NotALibraryError):
        VirtualLibrary.open(tmp_path / "junk")
    with pytest.raises(NoSuchUnitError):
        lib.drive(2)
    with pytest.raises(NoSuchUnitError):
        lib.lun(3)
    assert VirtualLibrary.open(lib.root).drive_count == 2


def test_inquiry_and_mode_sense(lib: VirtualLibrary, changer: Transport) -> None:
    inq = ok(changer.execute(bytes([0x12, 0, 0, 0, 36, 0]), data_in_len=36)).data_in
    assert inq[0] == 0x08
    ok(changer.execute(bytes(6)))
    data = ok(changer.execute(bytes([0x1A, 0x08, 0x1D, 0, 255, 0]), data_in_len=255)).data_in
    page = ElementAddressPage.parse(data[4:])
    assert (page.transport_first, page.ie_first, page.drive_first, page.storage_first) == (
        0,
        10,
        256,
        1024,
    )
    assert (page.ie_count, page.drive_count, page.storage_count) == (3, 2, 8)
    assert ok(changer.execute(bytes([0x1A, 0, 0x3F, 0, 255, 0]), data_in_len=255)).data_in == data
    ok(changer.execute(bytes([0x07]) + bytes(5)))
    ok(changer.execute(bytes([0x37]) + bytes(9)))
    ok(changer.execute(bytes([0x1E, 0, 0, 0, 1, 0])))
    ok(changer.execute(bytes([0x2B, 0, 0, 0, 4, 0]) + bytes(4)))
    assert asc(changer.execute(bytes([0x1A, 0, 0x10, 0, 255, 0]), data_in_len=255))[1] == 0x24


def test_read_element_status(lib: VirtualLibrary, changer: Transport) -> None:
    elements = status(changer)
    assert [e.address for e in elements] == [0, 10, 11, 12, 256, 257, *range(1024, 1032)]
    assert elements[0].type == ElementType.TRANSPORT
    slot = elements[6]
    assert slot.full and slot.barcode == "TF0001L9" and slot.type == ElementType.STORAGE
    drives = status(changer, etype=4)
    assert [(e.address, e.full) for e in drives] == [(256, False), (257, False)]
    some = status(changer, etype=2, start=1026, count=3)
    assert [e.address for e in some] == [1026, 1027, 1028]
    no_tags = status(changer, etype=2, count=1, voltag=False)
    assert no_tags[0].full and no_tags[0].barcode is None
    short = ok(changer.execute(res(alloc=8), data_in_len=8)).data_in
    assert len(short) == 8 and int.from_bytes(short[2:4], "big") == 14
    assert asc(changer.execute(res(etype=7)))[1] == 0x24


def test_move_medium_and_errors(lib: VirtualLibrary, changer: Transport) -> None:
    ok(changer.execute(move(1024, 256)))
    drive = status(changer, etype=4)[0]
    assert drive.full and drive.barcode == "TF0001L9" and drive.source_address == 1024
    d = lib.drive(0)
    ok(d.execute(bytes(6)))  # auto-loaded, ready
    assert asc(changer.execute(move(1099, 1029))) == (ILLEGAL_REQUEST, 0x21, 0x01)
    assert asc(changer.execute(move(1025, 1029, transport=5))) == (ILLEGAL_REQUEST, 0x21, 0x01)
    assert asc(changer.execute(move(1029, 1030))) == (ILLEGAL_REQUEST, 0x3B, 0x0E)
    assert asc(changer.execute(move(1025, 1026))) == (ILLEGAL_REQUEST, 0x3B, 0x0D)
    assert asc(changer.execute(move(256, 1029))) == (ILLEGAL_REQUEST, 0x53, 0x02)
    ok(d.execute(bytes([0x1B, 0, 0, 0, 0, 0])))  # UNLOAD
    ok(changer.execute(move(256, 1029)))
    assert parse_sense(d.execute(bytes(6)).sense).asc == 0x3A
    assert lib.contents()[1029] == "TF0001L9"
    ok(changer.execute(move(1029, 12)))  # export
    assert lib.remove(2) == "TF0001L9"
    d.close()


def test_mail_slots(lib: VirtualLibrary, changer: Transport) -> None:
    lib.insert("NEW001L9")
    lib.insert("NEW002L9", mail_slot=2, capacity=4096)
    ies = status(changer, etype=3)
    assert [(e.address, e.barcode, e.impexp) for e in ies] == [
        (10, "NEW001L9", True),
        (11, None, False),
        (12, "NEW002L9", True),
    ]
    with pytest.raises(MailSlotError):
        lib.insert("NEW003L9", mail_slot=0)
    with pytest.raises(CartridgeInLibraryError):
        lib.insert("TF0002L9")
    with pytest.raises(MailSlotError):
        lib.remove(1)
    ok(changer.execute(move(10, 1029)))
    slot = status(changer, etype=2, start=1029, count=1)[0]
    assert slot.barcode == "NEW001L9" and slot.source_address == 10 and not slot.impexp
    assert lib.remove(2) == "NEW002L9"
    lib.insert("NEW002L9")  # back from the shelf, data and capacity kept
    assert lib.contents()[10] == "NEW002L9"
    lib.insert("NEW004L9")
    lib.insert("NEW005L9")
    with pytest.raises(MailSlotError):
        lib.insert("NEW006L9")


def test_open_repairs_a_crash_between_map_and_drive_state(lib: VirtualLibrary) -> None:
    """A move that died after saving the map but before inserting the cartridge in the drive
    is finished by the next open: the drive holds what the map says."""
    paths = LibraryPaths(lib.root)
    cmap = ChangerMap.load(paths.changer_state)
    occupant = cmap.elements.pop(1024)
    cmap.elements[256] = Occupant(occupant.barcode, source=1024)
    cmap.save(paths.changer_state)
    reopened = VirtualLibrary.open(lib.root)
    state = DriveState(paths.drive_state(0))
    try:
        assert state.barcode == occupant.barcode and state.loaded
    finally:
        state.close()
    drive = reopened.drive(0)
    try:
        ok(drive.execute(bytes(6)))  # TEST UNIT READY: the cartridge is there
    finally:
        drive.close()


def test_open_does_not_wait_for_a_busy_drive(lib: VirtualLibrary, changer: Transport) -> None:
    """A drive in the middle of a command holds its command lock; opening the library (a new
    slave starting on another drive) must not wait for it."""
    ok(changer.execute(move(1024, 256)))
    busy = FileLock(LibraryPaths(lib.root).drive_command_lock(0))
    busy.acquire()
    opened = threading.Event()
    try:
        opener = threading.Thread(
            target=lambda: (VirtualLibrary.open(lib.root), opened.set()), daemon=True
        )
        opener.start()
        opener.join(timeout=10)
        assert opened.is_set(), "opening the library waited for drive 0's command"
    finally:
        busy.close()
