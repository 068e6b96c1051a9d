"""restore_cartridge on the embedded library: a member that continues on a second cartridge
is followed there under that cartridge's lease, and never read while another job holds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tapeflow.backup.master import prepare_job, record_results
from tapeflow.backup.model import Pool, Source
from tapeflow.backup.slave import run_slave
from tapeflow.library import Library
from tapeflow.library.leases import LeaseBoard
from tapeflow.maintenance import CartridgeBusy
from tapeflow.restore import plan_restore, restore_cartridge
from tapeflow.vtl import VirtualLibrary

MIB = 1 << 20


@pytest.fixture
def spanned(tmp_path: Path) -> dict[str, object]:
    """A full backup of one 24 MiB file (plus a small one) on 16 MiB cartridges: the big
    file starts on the first cartridge and ends on the second."""
    src = tmp_path / "src"
    src.mkdir()
    big = os.urandom(24 * MIB)
    (src / "a-small.txt").write_bytes(b"small")
    (src / "big.bin").write_bytes(big)
    VirtualLibrary.create(
        tmp_path / "lib",
        drives=1,
        slots=4,
        mail_slots=0,
        capacity=16 * MIB,
        early_warning=2 * MIB,
        cleaning_cartridges=0,
    )
    library, catalog = f"embedded:{tmp_path / 'lib'}", tmp_path / "cat" / "catalog.duckdb"
    specs, skipped = prepare_job(
        catalog,
        "job",
        sources=[Source("src", str(src))],
        pool=Pool(),
        level="full",
        library=library,
    )
    results = [run_slave(s) for s in specs]
    assert len(results[0].tapes) == 2  # it did span
    record_results(catalog, "job", Pool(), results, skipped)
    return {
        "library": library,
        "catalog": catalog,
        "big": big,
        "tmp": tmp_path,
        "tapes": [t.barcode for t in results[0].tapes],
    }


def test_a_spanned_member_is_followed_onto_the_next_cartridge(spanned: dict) -> None:
    work = plan_restore(spanned["catalog"], "src", ["big.bin", "a-small.txt"])
    assert [w.barcode for w in work] == [spanned["tapes"][0]]
    out = spanned["tmp"] / "out"
    result = restore_cartridge(spanned["library"], work[0], out)
    assert result.restored == 2 and result.skipped == []
    assert (out / "big.bin").read_bytes() == spanned["big"]
    assert (out / "a-small.txt").read_bytes() == b"small"
    with Library(spanned["library"]) as lib:  # both cartridges home, no lease left
        assert not any(d.full for d in lib.inventory().drives)
        board = LeaseBoard(lib.state_dir)
        for barcode in spanned["tapes"]:
            lease = board.try_media(barcode, "test")
            assert lease is not None
            lease.release()


def test_a_continuation_cartridge_in_use_is_not_read(spanned: dict) -> None:
    work = plan_restore(spanned["catalog"], "src", ["big.bin"])
    with Library(spanned["library"]) as lib:
        board = LeaseBoard(lib.state_dir)
        held = board.try_media(spanned["tapes"][1], "a backup appending to it")
        assert held is not None
        try:
            with pytest.raises(CartridgeBusy, match=spanned["tapes"][1]):
                restore_cartridge(spanned["library"], work[0], spanned["tmp"] / "out")
        finally:
            held.release()
        assert not any(d.full for d in lib.inventory().drives)  # cleaned up on the error
