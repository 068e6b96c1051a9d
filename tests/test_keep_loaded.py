"""A job's slaves keep their cartridge loaded for the next slave on the drive (no unload and
reload, minutes on a real drive), on the embedded library and on tgt: the next slave of the
pool appends to it in place, any other use brings it home first, and the job's end unloads
what is left."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tapeflow.backup.master import prepare_job, record_results
from tapeflow.backup.model import Pool, SlaveResult, SlaveSpec, Source, TapeUse
from tapeflow.backup.slave import NoWritableCartridge, SlaveFailed, _keep_loaded, run_slave
from tapeflow.library import Library
from tapeflow.library.errors import DriveInUse
from tapeflow.library.leases import LeaseBoard
from tapeflow.library.media import bring_home, unload_parked
from tapeflow.restore import plan_restore, restore_cartridge
from tapeflow.sample import make_sample_tree
from tests.conftest import Backend


def _specs(tmp: Path, b: Backend, pools: list[Pool]) -> list[SlaveSpec]:
    """One keep-loaded slave per pool, each with its own small source, in one job."""
    sources = []
    for i, _ in enumerate(pools):
        make_sample_tree(tmp / f"src{i}", files=5, seed=i)
        sources.append(Source(f"src{i}", str(tmp / f"src{i}")))
    specs = []
    for i, pool in enumerate(pools):
        planned, _ = prepare_job(
            tmp / "cat" / "catalog.duckdb",
            "job",
            sources=[sources[i]],
            pool=pool,
            level="full",
            library=str(b.library.spec),
            keep_loaded=True,
        )
        specs.append(planned[0])
    return specs


def _drives(b: Backend) -> dict[int, str | None]:
    return {d.number: d.barcode if d.full else None for d in b.library.inventory().drives}


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loads: list[str] = []
    original = Library.load

    def load(self: Library, drive: int, **kwargs: object) -> str:
        loads.append(f"{drive}:{kwargs.get('barcode')}")
        return original(self, drive, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Library, "load", load)
    return loads


def test_the_next_slave_appends_without_a_reload(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = Pool("daily")
    first, second = _specs(tmp_path, backend, [pool, pool])
    loads = _count_loads(monkeypatch)
    one = run_slave(first)
    barcode = one.tapes[0].barcode
    assert _drives(backend)[one.drive] == barcode  # left loaded, its lease given back
    two = run_slave(second)
    assert (two.drive, two.tapes[0].barcode) == (one.drive, barcode)
    assert two.tapes[0].tape_file == one.tapes[0].tape_file + 1
    assert loads == [f"{one.drive}:{barcode}"]  # one load for both sessions
    assert unload_parked(backend.library, "test") == [barcode]
    assert not any(_drives(backend).values())
    catalog = tmp_path / "cat" / "catalog.duckdb"
    record_results(catalog, "job", pool, [one, two], [])
    for result in (one, two):  # both sessions read back from the cartridge
        work = plan_restore(catalog, result.source, [""])
        out = tmp_path / f"out-{result.source}"
        restored = restore_cartridge(str(backend.library.spec), work[0], out)
        assert restored.restored == result.files and not restored.skipped


def test_a_cartridge_of_another_pool_is_unloaded_first(backend: Backend, tmp_path: Path) -> None:
    slots = backend.library.inventory().slots
    a, b = Pool("a", barcodes=(slots[0].barcode,)), Pool("b", barcodes=(slots[1].barcode,))
    first, second = _specs(tmp_path, backend, [a, b])
    one = run_slave(first)
    two = run_slave(second)
    assert two.drive == one.drive and two.tapes[0].barcode == slots[1].barcode
    drives = _drives(backend)
    assert drives[two.drive] == slots[1].barcode
    assert slots[0].barcode in [s.barcode for s in backend.library.inventory().slots]


def test_a_kept_cartridge_is_fetched_from_a_free_drive_not_from_a_busy_one(
    backend: Backend, tmp_path: Path
) -> None:
    barcode = backend.library.inventory().slots[0].barcode
    pool = Pool("only", barcodes=(barcode,))
    first, second, third = _specs(tmp_path, backend, [pool, pool, pool])
    board = LeaseBoard(backend.library.state_dir)
    with board.drive([0], "someone else"):  # the first slave gets drive 1 and keeps it there
        one = run_slave(first)
    assert one.drive == 1 and _drives(backend)[1] == barcode
    two = run_slave(second)  # on drive 0: the cartridge is brought over from idle drive 1
    assert (two.drive, two.tapes[0].barcode) == (0, barcode)
    assert _drives(backend) == {0: barcode, 1: None}
    with board.drive([0], "someone else"), pytest.raises(SlaveFailed) as failed:
        run_slave(third)  # drive 1 now; the only cartridge sits in drive 0, which is held
    cause = failed.value.__cause__
    assert isinstance(cause, NoWritableCartridge)
    assert "drive 0" in cause.reasons[barcode]
    assert _drives(backend)[0] == barcode  # not moved from under its holder


def test_a_failed_slave_unloads(backend: Backend, tmp_path: Path) -> None:
    (spec,) = _specs(tmp_path, backend, [Pool("daily")])
    spec = replace(spec, source=Source("src0", str(tmp_path / "missing")))
    with pytest.raises(SlaveFailed):
        run_slave(spec)
    assert not any(_drives(backend).values())


def test_what_is_kept() -> None:
    """Only a slave of a keep-loaded job, appending pool, cartridge not at early warning."""
    spec = SlaveSpec("j", "s", 1, Source("x", "/x"), "full", Pool("p"), "embedded:/l", "/f")
    result = SlaveResult("s", 1, "x", "complete", tapes=[TapeUse("A", 1, 10, full=False)])
    assert not _keep_loaded(spec, result)
    spec.keep_loaded = True
    assert _keep_loaded(spec, result)
    assert not _keep_loaded(spec, SlaveResult("s", 1, "x", "complete"))
    result.tapes[-1].full = True
    assert not _keep_loaded(spec, result)
    result.tapes[-1].full = False
    spec.pool = Pool("p", append=False)
    assert not _keep_loaded(spec, result)


def test_a_restore_waits_for_the_holder_of_the_drive_its_cartridge_sits_in(
    backend: Backend, tmp_path: Path
) -> None:
    """A reader holds the cartridge's lease, so the slave holding the drive it sits in will
    unload it rather than write it: the reader waits for that, then reads it in its drive."""
    barcode = backend.library.inventory().slots[0].barcode
    pool = Pool("only", barcodes=(barcode,))
    (spec,) = _specs(tmp_path, backend, [pool])
    board = LeaseBoard(backend.library.state_dir)
    with board.drive([0], "someone else"):
        one = run_slave(spec)
    assert one.drive == 1 and _drives(backend)[1] == barcode
    catalog = tmp_path / "cat" / "catalog.duckdb"
    record_results(catalog, "job", pool, [one], [])
    (work,) = plan_restore(catalog, one.source, [""])
    holder = board.drive([1], "a slave of another job")

    def unload_soon() -> None:  # what that slave does, finding the cartridge leased
        time.sleep(0.5)
        backend.library.clear(1)
        holder.release()

    helper = threading.Thread(target=unload_soon)
    helper.start()
    restored = restore_cartridge(str(backend.library.spec), work, tmp_path / "out")
    helper.join()
    assert (restored.drive, restored.restored) == (0, one.files)


def test_the_job_end_unloads_idle_drives_only(backend: Backend) -> None:
    """unload_parked empties every idle online drive at once and leaves a held one alone."""
    lib = backend.library
    first, second = (s.barcode for s in lib.inventory().slots[:2])
    lib.load(0, barcode=first)
    lib.load(1, barcode=second)
    board = LeaseBoard(lib.state_dir)
    with board.drive([1], "a running slave"):
        assert unload_parked(lib, "job end") == [first]
    assert _drives(backend) == {0: None, 1: second}
    assert unload_parked(lib, "job end") == [second]
    assert unload_parked(lib, "job end") == []


def test_bring_home_gives_up_on_a_held_drive_and_leaves_the_callers_own(
    backend: Backend,
) -> None:
    """A cartridge in a drive another job keeps holding is not moved: DriveInUse once `wait`
    has passed; one in a drive of the caller's own stays where it is."""
    lib = backend.library
    barcode = lib.inventory().slots[0].barcode
    lib.load(1, barcode=barcode)
    board = LeaseBoard(lib.state_dir)
    with board.drive([1], "a slave of another job"):
        started = time.monotonic()
        with pytest.raises(DriveInUse, match=f"{barcode} sits in drive 1"):
            bring_home(lib, board, barcode, "reader", wait=0.3)
        assert time.monotonic() - started >= 0.3
        assert bring_home(lib, board, barcode, "reader", mine=[1]) is None
    assert _drives(backend)[1] == barcode
    assert bring_home(lib, board, barcode, "reader") == 1
    assert not any(_drives(backend).values())
    assert bring_home(lib, board, barcode, "reader") is None  # in its slot: nothing to do
