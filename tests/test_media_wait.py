"""A slave without a writable cartridge asks for media once, waits, and goes on as soon as an
operator puts a new cartridge into a mail slot (it is imported, labelled and written)."""

from __future__ import annotations

import fcntl
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


@pytest.mark.usefixtures("prefect_server")
def test_a_waiting_backup_flow_continues_after_the_inventory_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backup flow on an empty library raises the media-request event and waits; the
    operator puts a cartridge into the mail slot and runs the inventory flow, which imports it
    (or the waiting slave does, whichever looks first), and the backup goes on at once and
    writes its session on that cartridge."""
    from flows.backup import backup
    from flows.library import library_inventory
    from tapeflow.catalog import Catalog
    from tasks import alerts
    from tests.test_reports import _events, _wait

    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    lib_dir = tmp_path / tmp_path.name  # unique library name, so a unique drive tag
    vl = VirtualLibrary.create(
        lib_dir, drives=1, slots=4, mail_slots=1, cartridges=0, cleaning_cartridges=0
    )
    library, catalog = f"embedded:{lib_dir}", tmp_path / "catalog" / "catalog.duckdb"
    pool = f"wait-{uuid.uuid4().hex[:8]}"  # the event's resource: tapeflow.pool.<pool>
    make_sample_tree(tmp_path / "src", files=10, seed=2)
    wait = 24.0  # media_wait: going on "at once" means well before it runs out
    since = datetime.now(UTC) - timedelta(seconds=5)
    ended: dict[str, Any] = {}

    def run_backup() -> None:
        ended["state"] = backup(
            sources=[{"name": "src", "path": str(tmp_path / "src")}],
            pool={"name": pool},
            library=library,
            catalog=str(catalog),
            media_wait=wait,
            return_state=True,
        )
        ended["at"] = time.monotonic()

    job = threading.Thread(target=run_backup, daemon=True)
    job.start()
    (request,) = _wait(
        lambda: _events(alerts.MEDIA_REQUEST, f"tapeflow.pool.{pool}", since), 60, "media request"
    )
    assert request.payload["pool"] == pool and request.payload["source"] == "src"
    assert "no free, writable" in request.payload["message"]
    assert job.is_alive()  # waiting for media, not failed
    vl.insert("NEW001L9", mail_slot=0)
    inventory = library_inventory(library=library, return_state=True)
    imported_at = time.monotonic()
    job.join(timeout=wait + 60)  # never leave the job running past the test
    assert not job.is_alive(), "the backup is still running"
    assert inventory.is_completed(), inventory.message
    state = ended["state"]
    assert state.is_completed(), state.message
    assert ended["at"] - imported_at < wait / 2, "the backup went on only when media_wait ran out"
    out = state.result()
    assert out["slaves"][0]["cartridges"] == "NEW001L9"
    job_id = str(state.state_details.flow_run_id)
    assert request.payload["job_id"] == job_id
    where = [r["element"] for r in inventory.result()["elements"] if r["barcode"] == "NEW001L9"]
    assert where in (["slot"], ["drive"])  # out of the mail slot, whoever imported it
    with Catalog(catalog, read_only=True) as cat:
        (session,) = cat.sessions(job_id=job_id)
        assert session["state"] == "complete"
        assert cat.medium("NEW001L9")["pool"] == pool


def test_two_importers_at_once_import_the_cartridge_once(tmp_path: Path) -> None:
    """A waiting slave and the inventory flow may look at the mail slots at the same moment:
    the cartridge is imported once and neither of them fails."""
    from tapeflow.library import media as mediamod

    vl = VirtualLibrary.create(
        tmp_path / "lib", drives=1, slots=4, mail_slots=1, cartridges=0, cleaning_cartridges=0
    )
    vl.insert("NEW001L9", mail_slot=0)
    address = f"embedded:{vl.root}"
    with Library(address) as lib:
        lock_path = lib.state_dir / "changer.lock"
        lib.state_dir.mkdir(parents=True, exist_ok=True)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def importer() -> None:
        with Library(address) as lib:
            try:
                results.append([i.barcode for i in mediamod.import_new_media(lib)])
            except Exception as exc:  # what the test is about: collected, asserted below
                errors.append(exc)

    with open(lock_path, "a+b") as held:  # the changer is busy with another move
        fcntl.flock(held, fcntl.LOCK_EX)
        both = [threading.Thread(target=importer) for _ in range(2)]
        for t in both:
            t.start()
        time.sleep(1)  # both have seen NEW001L9 in the mail slot and wait for the changer
        fcntl.flock(held, fcntl.LOCK_UN)
    for t in both:
        t.join(timeout=30)
    assert not errors, errors
    assert sorted(results) == [[], ["NEW001L9"]]
    with Library(address) as lib:
        assert [s.barcode for s in lib.inventory().slots if s.full] == ["NEW001L9"]
