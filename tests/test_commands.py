"""CDB encoding of our SSC/SMC commands, byte for byte against the standards' layouts."""

from __future__ import annotations

import threading

import pytest

from tapeflow.scsi import smc, ssc
from tapeflow.scsi.command import cdb_length


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (ssc.TestUnitReady(), "000000000000"),
        (ssc.Inquiry(page=0x80, alloc=255), "12018000ff00"),
        (ssc.Read6(262144, sili=True), "080204000000"),
        (ssc.Read6(4, fixed_block=512), "080100000400"),
        (ssc.Write6(b"x" * 1024, fixed_block=512), "0a0100000200"),
        (ssc.Write6(b"x" * 10), "0a0000000a00"),
        (ssc.WriteFilemarks(2), "100000000200"),
        (ssc.Space6(-2, ssc.SpaceCode.FILEMARKS), "1101fffffe00"),
        (ssc.Space6(0, ssc.SpaceCode.END_OF_DATA), "110300000000"),
        (ssc.Locate16(0x0102030405), "92000000000000010203040500000000"),
        (ssc.Locate10(5), "2b000000000005000000"),
        (ssc.ReadPosition(long_form=True), "34060000000000002000"),
        (ssc.ReadPosition(long_form=False), "34000000000000001400"),
        (ssc.LoadUnload(load=True), "1b0000000100"),
        (ssc.LoadUnload(load=False), "1b0000000000"),
        (ssc.Erase(long=True), "190100000000"),
        (ssc.Reserve6(), "160000000000"),
        (ssc.Release6(), "170000000000"),
        (smc.MoveMedium(0, 0x400, 0x100), "a50000000400010000000000"),
        (smc.ReadElementStatus(alloc=0x1234), "b8100000ffff000012340000"),
    ],
)
def test_cdb_bytes(cmd, expected: str) -> None:
    assert cmd.cdb.hex() == expected
    assert len(cmd.cdb) == cdb_length(cmd.cdb[0])


def test_write_rejects_partial_fixed_block() -> None:
    with pytest.raises(ValueError, match="multiple"):
        ssc.Write6(b"x" * 100, fixed_block=512)


def test_space_count_range() -> None:
    with pytest.raises(ValueError):
        ssc.Space6(1 << 23)


def test_commands_built_concurrently_keep_their_own_layout() -> None:
    """pyscsi keeps CDB state on the class; ours must not mix layouts across threads."""
    bad: list[str] = []

    def build(n: int) -> None:
        for _ in range(2000):
            a, b = ssc.Locate16(n), smc.MoveMedium(1, n, 2)
            if a.cdb[11] != n or b.cdb[5] != n:
                bad.append(a.cdb.hex())

    threads = [threading.Thread(target=build, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_mode_select_and_sense_round_trip() -> None:
    data = ssc.build_mode_select(262144, compression=True)
    # pretend the device echoes it with a proper length byte
    reply = bytes([len(data) - 1]) + data[1:]
    info = ssc.parse_mode_sense(reply)
    assert info.block_length == 262144 and info.compression is True and not info.write_protected


def test_parse_position_forms() -> None:
    long = bytes([0x80, 0, 0, 0]) + (0).to_bytes(4, "big") + (7).to_bytes(8, "big")
    long += (2).to_bytes(8, "big") + bytes(8)
    pos = ssc.parse_position(long)
    assert (pos.block, pos.file, pos.bop) == (7, 2, True)
    short = bytes([0x40, 0, 0, 0]) + (9).to_bytes(4, "big") + (9).to_bytes(4, "big") + bytes(8)
    pos = ssc.parse_position(short)
    assert (pos.block, pos.file, pos.eop) == (9, None, True)
