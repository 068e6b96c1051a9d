"""A slave without a writable cartridge asks for media once, waits, and goes on as soon as an
operator puts a new cartridge into a mail slot (it is imported, labelled and written)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tapeflow.backup.model import Pool, SlaveSpec, Source
from tapeflow.backup.slave import NoWritableCartridge, SlaveFailed, run_slave
from tapeflow.library import Library
from tapeflow.sample import make_sample_tree
from tapeflow.vtl import VirtualLibrary


def _spec(tmp: Path, vl: VirtualLibrary, wait: float) -> SlaveSpec:
    make_sample_tree(tmp / "src", files=10, seed=1)
    return SlaveSpec(
        job_id="j",
        session_id="s1",
        subjob=1,
        source=Source("src", str(tmp / "src")),
        level="full",
        pool=Pool("late", barcodes=("NEW001L9",)),
        library=f"embedded:{vl.root}",
        files_dir=str(tmp / "catalog" / "files"),
        media_wait=wait,
    )


def test_a_waiting_slave_continues_on_new_media(tmp_path: Path) -> None:
    vl = VirtualLibrary.create(tmp_path / "lib", drives=1, slots=6, mail_slots=2)
    spec = _spec(tmp_path, vl, wait=30)
    asked: list[NoWritableCartridge] = []

    def operator() -> None:
        while not asked:
            time.sleep(0.05)
        vl.insert("NEW001L9", mail_slot=1)

    helper = threading.Thread(target=operator, daemon=True)
    helper.start()
    started = time.monotonic()
    result = run_slave(spec, on_media_request=asked.append)
    helper.join()
    assert len(asked) == 1 and "late" in str(asked[0])
    assert result.state == "complete" and [t.barcode for t in result.tapes] == ["NEW001L9"]
    assert time.monotonic() - started < 20
    with Library(spec.library) as lib:  # imported into a storage slot, mail slots empty again
        assert "NEW001L9" in [s.barcode for s in lib.inventory().slots]
        assert all(not m.full for m in lib.inventory().mail_slots)


def test_without_media_wait_the_slave_fails_at_once(tmp_path: Path) -> None:
    vl = VirtualLibrary.create(tmp_path / "lib", drives=1, slots=6, mail_slots=2)
    started = time.monotonic()
    with pytest.raises(SlaveFailed, match="NoWritableCartridge"):
        run_slave(_spec(tmp_path, vl, wait=0))
    assert time.monotonic() - started < 10
