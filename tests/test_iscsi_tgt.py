"""IscsiTransport against a real tgt tape library: changer, drive, variable blocks, sense."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeflow.scsi.element_status import ElementType, parse_element_status
from tapeflow.scsi.iscsi import IscsiConnectionError, IscsiError, IscsiTransport
from tapeflow.scsi.sense import (
    DestinationFull,
    EndOfData,
    EndOfMedium,
    FilemarkDetected,
    IncorrectLength,
    NoMedium,
    ScsiError,
    SourceEmpty,
    WriteProtected,
    error_for,
    parse_sense,
)
from tapeflow.scsi.transport import CHECK_CONDITION, GOOD, CommandResult
from tapeflow.testing.tgt import TgtLibrary

_REASON = TgtLibrary.available()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

BLOCK = 256 * 1024
REWIND = bytes([0x01, 0, 0, 0, 0, 0])
TUR = bytes(6)
WRITE_FILEMARK = bytes([0x10, 0, 0, 0, 1, 0])


def inquiry(alloc: int = 96) -> bytes:
    return bytes([0x12, 0, 0, 0, alloc, 0])


def read_element_status(element_type: int, alloc: int = 4096) -> bytes:
    """READ ELEMENT STATUS with VOLTAG for one element type (tgt garbles type 0 = all)."""
    return (
        bytes([0xB8, 0x10 | element_type, 0, 0, 0xFF, 0xFF, 0]) + alloc.to_bytes(3, "big") + b"\0\0"
    )


def move_medium(src: int, dst: int, transport: int = 1) -> bytes:
    return (
        bytes([0xA5, 0])
        + transport.to_bytes(2, "big")
        + src.to_bytes(2, "big")
        + dst.to_bytes(2, "big")
        + bytes(4)
    )


def write6(length: int) -> bytes:
    return bytes([0x0A, 0]) + length.to_bytes(3, "big") + b"\0"


def read6(length: int) -> bytes:
    return bytes([0x08, 0]) + length.to_bytes(3, "big") + b"\0"


def ok(result: CommandResult) -> CommandResult:
    """Raise the typed error if the command did not end GOOD."""
    if result.status != GOOD:
        raise error_for(parse_sense(result.sense), status=result.status)
    return result


def error_of(result: CommandResult) -> ScsiError:
    """The typed exception a failed command maps to."""
    assert result.status == CHECK_CONDITION, result
    return error_for(parse_sense(result.sense), status=result.status)


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TgtLibrary]:
    with TgtLibrary(tmp_path_factory.mktemp("tgt"), cartridge_mb=16) as library:
        yield library


def test_inquiry_changer_and_drive(lib: TgtLibrary) -> None:
    changer = lib.transport(lib.changer_lun)
    drive = lib.transport(lib.drive_luns[0])
    c = ok(changer.execute(inquiry(), data_in_len=96)).data_in
    d = ok(drive.execute(inquiry(), data_in_len=96)).data_in
    assert c[0] & 0x1F == 0x08 and d[0] & 0x1F == 0x01  # medium changer, sequential access
    assert len(c) == 5 + c[4] < 96  # underflow residual honoured: only what was sent
    assert c[8:16].strip() == b"TAPEFLOW" and c[16:32].strip() == b"TGT-CHANGER"
    assert d[16:32].strip() == b"TGT-TAPE"


def test_read_element_status_reply_is_8_bytes_short(lib: TgtLibrary) -> None:
    """tgt sends 8 + n*52 bytes (it forgets the page header): the last descriptor has 44 bytes."""
    changer = lib.transport(lib.changer_lun)
    data = ok(changer.execute(read_element_status(4), data_in_len=4096)).data_in
    n = len(lib.drive_addresses)
    assert int.from_bytes(data[2:4], "big") == n and data[8] == 4 and data[9] & 0x80
    assert int.from_bytes(data[10:12], "big") == 52  # declared descriptor length (VOLTAG)
    assert len(data) == 8 + n * 52  # full reply would be 16 + n * 52
    assert [int.from_bytes(data[16 + i * 52 : 18 + i * 52], "big") for i in range(n)] == (
        lib.drive_addresses
    )


def test_read_element_status_parses(lib: TgtLibrary) -> None:
    changer = lib.transport(lib.changer_lun)
    by_type = {
        et: parse_element_status(
            ok(changer.execute(read_element_status(et), data_in_len=4096)).data_in
        )
        for et in (1, 2, 4)
    }
    assert [e.address for e in by_type[1]] == [lib.transport_address]
    assert [e.address for e in by_type[4]] == lib.drive_addresses
    slots = by_type[2]
    assert [e.address for e in slots] == lib.slot_addresses
    assert all(e.type == ElementType.STORAGE for e in slots)
    full = {e.address: e.barcode for e in slots if e.full}
    assert full == dict(zip(lib.slot_addresses, lib.barcodes, strict=False))


def test_move_write_read_back_and_sense(lib: TgtLibrary) -> None:
    changer = lib.transport(lib.changer_lun)
    drive = lib.transport(lib.drive_luns[0])
    slot, dte = lib.slot_addresses[0], lib.drive_addresses[0]
    assert isinstance(error_of(drive.execute(TUR)), NoMedium)
    ok(changer.execute(move_medium(slot, dte)))
    ok(drive.execute(TUR))  # tgt: ready at once, no LOAD needed

    assert isinstance(
        error_of(changer.execute(move_medium(lib.slot_addresses[1], dte))), DestinationFull
    )
    assert isinstance(
        error_of(changer.execute(move_medium(slot, lib.drive_addresses[1]))), SourceEmpty
    )

    blocks = [os.urandom(BLOCK) for _ in range(20)]
    for block in blocks:
        ok(drive.execute(write6(BLOCK), data_out=block))
    ok(drive.execute(WRITE_FILEMARK))
    ok(drive.execute(write6(1000), data_out=bytearray(b"t" * 1000)))
    ok(drive.execute(REWIND))

    for block in blocks:
        assert ok(drive.execute(read6(BLOCK), data_in_len=BLOCK)).data_in == block

    fm = drive.execute(read6(BLOCK), data_in_len=BLOCK)
    err = error_of(fm)
    assert isinstance(err, FilemarkDetected) and fm.data_in == b""
    assert err.information == BLOCK  # requested - actual (0)

    short = drive.execute(read6(BLOCK), data_in_len=BLOCK)
    err = error_of(short)
    assert isinstance(err, IncorrectLength) and short.data_in == b"t" * 1000
    assert err.information == BLOCK - 1000

    eod = drive.execute(read6(BLOCK), data_in_len=BLOCK)
    assert isinstance(error_of(eod), EndOfData) and eod.data_in == b""

    ok(drive.execute(REWIND))
    ok(drive.execute(bytes([0x1B, 0, 0, 0, 0, 0])))  # UNLOAD (a no-op on tgt)
    ok(changer.execute(move_medium(dte, slot)))
    assert isinstance(error_of(drive.execute(TUR)), NoMedium)
    slots = parse_element_status(
        ok(changer.execute(read_element_status(2), data_in_len=4096)).data_in
    )
    home = next(e for e in slots if e.address == slot)
    assert home.full and home.barcode == lib.barcodes[0]


def test_zero_length_and_large_blocks(lib: TgtLibrary) -> None:
    changer = lib.transport(lib.changer_lun)
    drive = lib.transport(lib.drive_luns[1])
    slot, dte = lib.slot_addresses[1], lib.drive_addresses[1]
    ok(changer.execute(move_medium(slot, dte)))
    try:
        big = os.urandom(8 << 20)
        ok(drive.execute(write6(len(big)), data_out=memoryview(big)))
        ok(drive.execute(TUR, data_out=None, data_in_len=0))
        ok(drive.execute(TUR, data_out=b""))
        ok(drive.execute(REWIND))
        assert ok(drive.execute(read6(len(big)), data_in_len=len(big))).data_in == big
    finally:
        ok(changer.execute(move_medium(dte, slot)))


def test_end_of_medium_and_write_protect(tmp_path: Path) -> None:
    with TgtLibrary(tmp_path, drives=1, slots=2, mail_slots=0, cartridges=1, cartridge_mb=1) as lib:
        changer = lib.transport(lib.changer_lun)
        drive = lib.transport(lib.drive_luns[0])
        ok(changer.execute(move_medium(lib.slot_addresses[0], lib.drive_addresses[0])))
        errors = []
        for _ in range(6):
            result = drive.execute(write6(BLOCK), data_out=bytes(BLOCK))
            if result.status != GOOD:
                errors.append(error_of(result))
        assert errors and all(type(e) is EndOfMedium for e in errors)  # written, early warning
        lib.set_write_protect(lib.drive_luns[0])
        assert isinstance(error_of(drive.execute(write6(512), data_out=bytes(512))), WriteProtected)


def test_sessions_have_distinct_initiators_and_dead_target(tmp_path: Path) -> None:
    with TgtLibrary(tmp_path, drives=1, slots=1, mail_slots=0, cartridges=0) as lib:
        a = IscsiTransport.from_url(lib.url(lib.changer_lun), timeout=5)
        b = lib.transport(lib.changer_lun)
        try:
            assert a.initiator != b.initiator
            ok(a.execute(TUR))
            lib.kill()
            with pytest.raises(IscsiConnectionError):
                a.execute(TUR)
            with pytest.raises(IscsiConnectionError):
                a.execute(TUR)  # poisoned for good
        finally:
            a.close()
        a.close()  # idempotent
        with pytest.raises(IscsiError):
            a.execute(TUR)


def test_login_failure_is_typed(tmp_path: Path) -> None:
    with TgtLibrary(tmp_path, drives=1, slots=1, mail_slots=0, cartridges=0) as lib:
        with pytest.raises(IscsiConnectionError):
            IscsiTransport(lib.portal, lib.target_iqn + "-missing", 0, timeout=5)


def test_from_url_rejects_garbage() -> None:
    for url in ("http://x/iqn/1", "iscsi://host/iqn", "iscsi://host/iqn/x", "iscsi://u:p@h/iqn/1"):
        with pytest.raises(ValueError):
            IscsiTransport.from_url(url)
