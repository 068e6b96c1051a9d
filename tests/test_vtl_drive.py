"""SSC behaviour of the embedded VTL drive, driven with raw CDB bytes."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tapeflow.scsi.sense import (
    BLANK_CHECK,
    DATA_PROTECT,
    ILLEGAL_REQUEST,
    NO_SENSE,
    NOT_READY,
    VOLUME_OVERFLOW,
    Sense,
    parse_sense,
)
from tapeflow.scsi.transport import CHECK_CONDITION, GOOD, RESERVATION_CONFLICT, CommandResult
from tapeflow.vtl import VirtualLibrary
from tapeflow.vtl.drive import DriveHandle

KIB = 1024
CAPACITY = 1024 * KIB
EARLY = 128 * KIB


# --- raw CDBs ---------------------------------------------------------------------------------
def u24(n: int) -> bytes:
    return (n & 0xFFFFFF).to_bytes(3, "big")


def write6(n: int, fixed: bool = False) -> bytes:
    return bytes([0x0A, int(fixed)]) + u24(n) + b"\x00"


def read6(n: int, fixed: bool = False, sili: bool = False) -> bytes:
    return bytes([0x08, int(fixed) | (2 if sili else 0)]) + u24(n) + b"\x00"


def filemarks(n: int) -> bytes:
    return bytes([0x10, 0]) + u24(n) + b"\x00"


def space(code: int, count: int) -> bytes:
    return bytes([0x11, code]) + u24(count) + b"\x00"


def locate10(block: int) -> bytes:
    return bytes([0x2B, 0, 0]) + block.to_bytes(4, "big") + bytes(3)


def locate16(ident: int, dest_type: int = 0) -> bytes:
    return bytes([0x92, dest_type << 3, 0, 0]) + ident.to_bytes(8, "big") + bytes(4)


REWIND = bytes([0x01, 0, 0, 0, 0, 0])
TUR = bytes(6)
READ_POS_SHORT = bytes([0x34, 0]) + bytes(8)
READ_POS_LONG = bytes([0x34, 6]) + bytes(5) + (32).to_bytes(2, "big") + b"\x00"
UNLOAD = bytes([0x1B, 0, 0, 0, 0, 0])
LOAD = bytes([0x1B, 0, 0, 0, 1, 0])
RESERVE = bytes([0x16, 0, 0, 0, 0, 0])
RELEASE = bytes([0x17, 0, 0, 0, 0, 0])


def move(src: int, dst: int) -> bytes:
    return bytes([0xA5, 0, 0, 0]) + src.to_bytes(2, "big") + dst.to_bytes(2, "big") + bytes(4)


def block(i: int, size: int = 1000) -> bytes:
    return (f"block{i:06d}".encode() * (size // 11 + 1))[:size]


def sense(r: CommandResult) -> Sense:
    assert r.status == CHECK_CONDITION, r
    return parse_sense(r.sense)


def ok(r: CommandResult) -> CommandResult:
    assert r.status == GOOD, parse_sense(r.sense).describe() if r.sense else r
    return r


def position(d: DriveHandle) -> int:
    return int.from_bytes(ok(d.execute(READ_POS_SHORT, data_in_len=20)).data_in[4:8], "big")


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def lib(tmp_path: Path) -> VirtualLibrary:
    return VirtualLibrary.create(
        tmp_path / "lib", drives=2, slots=6, mail_slots=2, capacity=CAPACITY, early_warning=EARLY
    )


@pytest.fixture
def drive(lib: VirtualLibrary) -> Iterator[DriveHandle]:
    changer = lib.changer()
    ok(changer.execute(move(1024, 256)))
    changer.close()
    handle = lib.drive(0)
    assert isinstance(handle, DriveHandle)
    yield handle
    handle.close()


def write_blocks(d: DriveHandle, n: int, size: int = 1000, start: int = 0) -> None:
    for i in range(start, start + n):
        ok(d.execute(write6(size), block(i, size)))


# --- tests ------------------------------------------------------------------------------------
def test_no_medium_and_inquiry(lib: VirtualLibrary) -> None:
    d = lib.drive(1)
    s = sense(d.execute(TUR))
    assert (s.key, s.asc, s.ascq) == (NOT_READY, 0x3A, 0x00)
    req = ok(d.execute(bytes([0x03, 0, 0, 0, 18, 0]), data_in_len=18)).data_in
    assert parse_sense(req).asc == 0x3A
    inq = ok(d.execute(bytes([0x12, 0, 0, 0, 96, 0]), data_in_len=96)).data_in
    assert inq[0] == 0x01 and inq[1] & 0x80 and inq[8:16] == b"TAPEFLOW"
    vpd0 = ok(d.execute(bytes([0x12, 1, 0, 0, 64, 0]), data_in_len=64)).data_in
    assert list(vpd0[4:]) == [0x00, 0x80, 0x83]
    serial = ok(d.execute(bytes([0x12, 1, 0x80, 0, 64, 0]), data_in_len=64)).data_in
    assert serial[4:].decode() == f"{lib.serial}D01"
    dev_id = ok(d.execute(bytes([0x12, 1, 0x83, 0, 255, 0]), data_in_len=255)).data_in
    assert dev_id[1] == 0x83 and serial[4:] in dev_id
    s = sense(d.execute(bytes([0xEE]) + bytes(5)))
    assert (s.key, s.asc) == (ILLEGAL_REQUEST, 0x20)
    limits = ok(d.execute(bytes([0x05]) + bytes(5), data_in_len=6)).data_in
    assert int.from_bytes(limits[1:4], "big") == 8 * 1024 * 1024
    d.close()


def test_variable_write_read_and_lengths(drive: DriveHandle) -> None:
    ok(drive.execute(TUR))
    write_blocks(drive, 3)
    ok(drive.execute(REWIND))
    assert ok(drive.execute(read6(1000), data_in_len=1000)).data_in == block(0)
    # shorter block than asked: ILI, information = requested - actual
    r = drive.execute(read6(4000), data_in_len=4000)
    s = sense(r)
    assert r.data_in == block(1) and s.ili and s.key == NO_SENSE and s.information == 3000
    # longer block than asked: truncated data, negative information, even with SILI
    r = drive.execute(read6(10, sili=True), data_in_len=10)
    s = sense(r)
    assert r.data_in == block(2)[:10] and s.ili and s.information == 10 - 1000
    assert position(drive) == 3
    s = sense(drive.execute(read6(1000), data_in_len=1000))
    assert (s.key, s.asc, s.ascq, s.information) == (BLANK_CHECK, 0x00, 0x05, 1000)
    # SILI suppresses the short-block ILI
    ok(drive.execute(locate10(0)))
    assert ok(drive.execute(read6(5000, sili=True), data_in_len=5000)).data_in == block(0)


def mode_select_block_size(d: DriveHandle, size: int) -> None:
    data = bytes([0, 0, 0x10, 8, 0, 0, 0, 0, 0]) + u24(size)
    ok(d.execute(bytes([0x15, 0x10, 0, 0, len(data), 0]), data))


def test_fixed_mode(drive: DriveHandle) -> None:
    s = sense(drive.execute(write6(1, fixed=True), bytes(512)))
    assert (s.key, s.asc) == (ILLEGAL_REQUEST, 0x24)  # no block size selected yet
    mode_select_block_size(drive, 512)
    sensed = ok(drive.execute(bytes([0x1A, 0, 0x3F, 0, 255, 0]), data_in_len=255)).data_in
    assert sensed[3] == 8 and int.from_bytes(sensed[9:12], "big") == 512
    assert sensed[2] & 0x10 and not sensed[2] & 0x80  # buffered mode 1, not write protected
    assert sensed[12] == 0x0F and sensed[14] & 0x80  # compression page, DCE on
    payload = os.urandom(512 * 5)
    ok(drive.execute(write6(5, fixed=True), payload))
    ok(drive.execute(filemarks(1)))
    ok(drive.execute(write6(2, fixed=True), payload[:1024]))
    ok(drive.execute(REWIND))
    assert ok(drive.execute(read6(3, fixed=True), data_in_len=1536)).data_in == payload[:1536]
    r = drive.execute(read6(4, fixed=True), data_in_len=2048)
    s = sense(r)
    assert s.filemark and s.information == 2 and r.data_in == payload[1536:]
    assert position(drive) == 6
    r = drive.execute(read6(3, fixed=True), data_in_len=1536)
    s = sense(r)
    assert s.key == BLANK_CHECK and s.information == 1 and r.data_in == payload[:1024]
    # a variable block read in fixed mode is an incorrect-length block
    mode_select_block_size(drive, 0)
    ok(drive.execute(write6(100), bytes(100)))
    mode_select_block_size(drive, 512)
    ok(drive.execute(locate10(8)))
    s = sense(drive.execute(read6(1, fixed=True), data_in_len=512))
    assert s.ili and s.information == 1
    s = sense(drive.execute(read6(1, fixed=True, sili=True), data_in_len=512))
    assert (s.key, s.asc) == (ILLEGAL_REQUEST, 0x24)


def test_compression_page_select(drive: DriveHandle) -> None:
    page = bytes([0x0F, 0x0E, 0x00, 0x00]) + bytes(12)
    data = bytes([0, 0, 0x10, 0]) + page
    ok(drive.execute(bytes([0x15, 0x10, 0, 0, len(data), 0]), data))
    sensed = ok(drive.execute(bytes([0x1A, 0x08, 0x0F, 0, 255, 0]), data_in_len=255)).data_in
    assert sensed[3] == 0 and sensed[4] == 0x0F and not sensed[6] & 0x80


def test_filemarks_and_read_position(drive: DriveHandle) -> None:
    write_blocks(drive, 2)
    ok(drive.execute(filemarks(1)))
    write_blocks(drive, 3, start=2)
    ok(drive.execute(filemarks(2)))
    write_blocks(drive, 1, start=5)
    # objects: b0 b1 FM b2 b3 b4 FM FM b5  (EOD at 9)
    ok(drive.execute(REWIND))
    short = ok(drive.execute(READ_POS_SHORT, data_in_len=20)).data_in
    assert len(short) == 20 and short[0] & 0x80  # BOP
    ok(drive.execute(read6(1000), data_in_len=1000))
    ok(drive.execute(read6(1000), data_in_len=1000))
    r = drive.execute(read6(1000), data_in_len=1000)
    s = sense(r)
    assert s.filemark and (s.asc, s.ascq) == (0, 1) and s.information == 1000 and not r.data_in
    assert position(drive) == 3
    assert ok(drive.execute(read6(1000), data_in_len=1000)).data_in == block(2)
    ok(drive.execute(locate10(7)))
    long = ok(drive.execute(READ_POS_LONG, data_in_len=32)).data_in
    assert len(long) == 32
    assert int.from_bytes(long[8:16], "big") == 7 and int.from_bytes(long[16:24], "big") == 2
    ok(drive.execute(locate10(9)))
    long = ok(drive.execute(READ_POS_LONG, data_in_len=32)).data_in
    assert int.from_bytes(long[16:24], "big") == 3
    s = sense(drive.execute(locate10(10)))
    assert s.key == BLANK_CHECK and position(drive) == 9
    ok(drive.execute(locate16(2, dest_type=1)))  # logical file 2 starts after the 2nd filemark
    assert position(drive) == 7
    ok(drive.execute(locate16(0, dest_type=3)))
    assert position(drive) == 9
    ok(drive.execute(locate16(4)))
    assert ok(drive.execute(read6(1000), data_in_len=1000)).data_in == block(3)


def test_space(drive: DriveHandle) -> None:
    write_blocks(drive, 2)
    ok(drive.execute(filemarks(1)))
    write_blocks(drive, 3, start=2)
    ok(drive.execute(filemarks(2)))
    write_blocks(drive, 1, start=5)
    # 0:b0 1:b1 2:FM 3:b2 4:b3 5:b4 6:FM 7:FM 8:b5  EOD=9
    ok(drive.execute(REWIND))
    ok(drive.execute(space(1, 1)))
    assert position(drive) == 3
    ok(drive.execute(space(1, 2)))
    assert position(drive) == 8
    ok(drive.execute(space(1, -1)))
    assert position(drive) == 7  # BOT side of the last filemark
    ok(drive.execute(space(1, -2)))
    assert position(drive) == 2
    s = sense(drive.execute(space(1, -3)))
    assert (s.key, s.asc, s.ascq, s.eom, s.information) == (NO_SENSE, 0, 4, True, 3)
    assert position(drive) == 0
    s = sense(drive.execute(space(1, 5)))
    assert s.key == BLANK_CHECK and s.information == 2 and position(drive) == 9
    # blocks
    ok(drive.execute(REWIND))
    ok(drive.execute(space(0, 1)))
    assert position(drive) == 1
    s = sense(drive.execute(space(0, 5)))
    assert s.filemark and s.information == 4 and position(drive) == 3
    ok(drive.execute(space(0, 2)))
    assert position(drive) == 5
    s = sense(drive.execute(space(0, -4)))
    assert s.filemark and s.information == 2 and position(drive) == 2
    ok(drive.execute(space(0, -2)))
    assert position(drive) == 0
    ok(drive.execute(locate10(1)))
    s = sense(drive.execute(space(0, -3)))
    assert (s.asc, s.ascq, s.eom, s.information) == (0, 4, True, 2) and position(drive) == 0
    ok(drive.execute(locate10(8)))
    s = sense(drive.execute(space(0, 4)))
    assert s.key == BLANK_CHECK and s.information == 3 and position(drive) == 9
    ok(drive.execute(REWIND))
    ok(drive.execute(space(3, 0)))
    assert position(drive) == 9
    s = sense(drive.execute(space(4, 1)))
    assert (s.key, s.asc) == (ILLEGAL_REQUEST, 0x24)


def test_overwrite_truncates_and_erase(drive: DriveHandle) -> None:
    write_blocks(drive, 5)
    ok(drive.execute(filemarks(1)))
    ok(drive.execute(locate10(2)))
    ok(drive.execute(write6(500), b"x" * 500))
    assert position(drive) == 3
    s = sense(drive.execute(read6(1000), data_in_len=1000))
    assert s.key == BLANK_CHECK
    ok(drive.execute(locate10(1)))
    assert ok(drive.execute(read6(1000), data_in_len=1000)).data_in == block(1)
    r = drive.execute(read6(1000), data_in_len=1000)
    assert r.data_in == b"x" * 500
    ok(drive.execute(locate10(1)))
    ok(drive.execute(bytes([0x19, 1, 0, 0, 0, 0])))  # ERASE LONG: EOD here
    ok(drive.execute(REWIND))
    ok(drive.execute(space(3, 0)))
    assert position(drive) == 1


def test_early_warning_and_overflow(drive: DriveHandle) -> None:
    size = 64 * KIB
    zone = (CAPACITY - EARLY) // size  # 14 blocks end exactly at the early-warning mark
    for i in range(zone):
        ok(drive.execute(write6(size), block(i, size)))
    for i in range(zone, CAPACITY // size):
        s = sense(drive.execute(write6(size), block(i, size)))
        assert (s.key, s.asc, s.ascq, s.eom, s.information) == (NO_SENSE, 0, 2, True, 0)
    long = ok(drive.execute(READ_POS_LONG, data_in_len=32)).data_in
    assert long[0] & 0x40  # EOP: in the early-warning zone
    s = sense(drive.execute(write6(1), b"z"))
    assert (s.key, s.asc, s.ascq, s.eom, s.information) == (VOLUME_OVERFLOW, 0, 2, True, 1)
    count = CAPACITY // size
    assert position(drive) == count
    ok(drive.execute(filemarks(1)))  # filemarks still fit
    # fixed mode: as many blocks as fit are written, information = blocks not written
    ok(drive.execute(locate10(count - 1)))
    mode_select_block_size(drive, 16 * KIB)
    s = sense(drive.execute(write6(6, fixed=True), bytes(6 * 16 * KIB)))
    assert s.key == VOLUME_OVERFLOW and s.information == 2 and position(drive) == count - 1 + 4
    ok(drive.execute(REWIND))
    assert ok(drive.execute(read6(size), data_in_len=size)).data_in == block(0, size)


def test_write_protect(lib: VirtualLibrary, drive: DriveHandle) -> None:
    write_blocks(drive, 1)
    lib.set_write_protect("TF0001L9", True)
    for cdb, data in (
        (write6(10), b"a" * 10),
        (filemarks(1), None),
        (bytes([0x19, 1, 0, 0, 0, 0]), None),
    ):
        s = sense(drive.execute(cdb, data))
        assert (s.key, s.asc) == (DATA_PROTECT, 0x27)
    sensed = ok(drive.execute(bytes([0x1A, 0, 0x3F, 0, 255, 0]), data_in_len=255)).data_in
    assert sensed[2] & 0x80
    ok(drive.execute(REWIND))
    assert ok(drive.execute(read6(1000), data_in_len=1000)).data_in == block(0)
    lib.set_write_protect("TF0001L9", False)
    ok(drive.execute(write6(10), b"a" * 10))


def test_reservation_between_handles(lib: VirtualLibrary, drive: DriveHandle) -> None:
    other = lib.drive(0)
    ok(drive.execute(RESERVE))
    ok(drive.execute(RESERVE))  # re-reserving one's own unit is fine
    assert other.execute(TUR).status == RESERVATION_CONFLICT
    assert other.execute(RESERVE).status == RESERVATION_CONFLICT
    ok(other.execute(bytes([0x12, 0, 0, 0, 36, 0]), data_in_len=36))  # INQUIRY is exempt
    ok(other.execute(RELEASE))  # a non-owner's RELEASE does nothing
    assert other.execute(TUR).status == RESERVATION_CONFLICT
    ok(drive.execute(TUR))
    ok(drive.execute(RELEASE))
    ok(other.execute(RESERVE))
    assert drive.execute(TUR).status == RESERVATION_CONFLICT
    other.close()  # closing the owner drops its reservation
    ok(drive.execute(TUR))


def test_unload_load_and_prevent(lib: VirtualLibrary, drive: DriveHandle) -> None:
    write_blocks(drive, 2)
    ok(drive.execute(bytes([0x1E, 0, 0, 0, 1, 0])))
    s = sense(drive.execute(UNLOAD))
    assert (s.key, s.asc, s.ascq) == (ILLEGAL_REQUEST, 0x53, 0x02)
    ok(drive.execute(bytes([0x1E, 0, 0, 0, 0, 0])))
    ok(drive.execute(UNLOAD))
    assert sense(drive.execute(TUR)).asc == 0x3A
    ok(drive.execute(LOAD))
    assert position(drive) == 0
    assert ok(drive.execute(read6(1000), data_in_len=1000)).data_in == block(0)


def test_cleaning_cartridge(lib: VirtualLibrary) -> None:
    changer = lib.changer()
    ok(changer.execute(move(1024 + 5, 257)))  # the cleaning cartridge sits in the last slot
    d = lib.drive(1)
    s = sense(d.execute(TUR))
    assert (s.key, s.asc, s.ascq) == (NOT_READY, 0x30, 0x03)
    meta = (lib.root / "cartridges" / "CLN001L1" / "meta.json").read_text()
    assert '"cleaning_uses_left": 49' in meta
    ok(d.execute(UNLOAD))
    ok(changer.execute(move(257, 1024 + 5)))
    d.close()
    changer.close()


def test_state_survives_new_handles_and_reopen(lib: VirtualLibrary, drive: DriveHandle) -> None:
    write_blocks(drive, 4)
    ok(drive.execute(locate10(2)))
    mode_select_block_size(drive, 0)
    again = VirtualLibrary.open(lib.root).drive(0)
    assert position(again) == 2
    assert ok(again.execute(read6(1000), data_in_len=1000)).data_in == block(2)
    assert position(drive) == 3
    again.close()


def test_speed_limit_paces_transfers(lib: VirtualLibrary, drive: DriveHandle) -> None:
    lib.set_speed_limit(2 * 1024 * 1024)  # 2 MiB/s
    start = time.monotonic()
    for i in range(8):
        ok(drive.execute(write6(64 * KIB), block(i, 64 * KIB)))
    elapsed = time.monotonic() - start
    assert elapsed >= 0.2  # 512 KiB at 2 MiB/s = 0.25 s, minus the small burst allowance
    lib.set_speed_limit(None)
    start = time.monotonic()
    write_blocks(drive, 4, size=64 * KIB, start=8)
    assert time.monotonic() - start < 0.2
