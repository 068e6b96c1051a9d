"""Serverless slave and restores without Prefect: a file restore reads only the records holding
its clusters; a volume that never goes quiet is not frozen; the session is a valid pax stream."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.backup.master import prepare_job, record_results
from tapeflow.backup.model import Pool, SlaveSpec, Source
from tapeflow.backup.slave import SlaveFailed
from tapeflow.catalog import Catalog, RowsUnavailable, session_media
from tapeflow.library import Library
from tapeflow.maintenance import verify_session
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.serverless.maps import load_maps
from tapeflow.serverless.restore import restore_files
from tapeflow.serverless.slave import blockmaps_dir, run_serverless_slave
from tapeflow.tapefmt.errors import UnsafeMember
from tapeflow.vtl import VirtualLibrary
from tests import fatimages as fat

MB = 1024 * 1024


@pytest.fixture
def san(tmp_path: Path) -> tuple[VirtualLibrary, dict[str, bytes]]:
    files = {f"big{i}.bin": bytes([65 + i]) * (3 * MB + 123) for i in range(4)}
    files["small.txt"] = b"just a few bytes\n"
    files["dir/inner.txt"] = b"inner\n" * 1000
    fat.write_tree(tmp_path / "src", files)
    img = fat.mkfs(tmp_path / "vol.img", 16, 32_000)
    for entry in sorted((tmp_path / "src").iterdir()):
        fat.mcopy(img, entry)
    vl = VirtualLibrary.create(tmp_path / "lib", drives=1, slots=4)
    vl.add_disk("vol", image=img)
    return vl, files


def _spec(vl: VirtualLibrary, tmp: Path, **source: object) -> SlaveSpec:
    return SlaveSpec(
        job_id="j",
        session_id="s1",
        subjob=1,
        source=Source("vol", "disk:vol", kind="volume", **source),  # type: ignore[arg-type]
        level="full",
        pool=Pool("p"),
        library=f"embedded:{vl.root}",
        files_dir=str(tmp / "catalog" / "files"),
    )


def test_file_restore_reads_only_the_records_of_its_clusters(san: tuple, tmp_path: Path) -> None:
    vl, files = san
    spec = _spec(vl, tmp_path, quiet=0.1)
    result = run_serverless_slave(spec)
    assert result.state == "complete" and result.copy_path == "xcopy"
    maps, barcode = load_maps(blockmaps_dir(Path(spec.files_dir)), "s1")
    session_records = result.bytes // maps.record_size
    assert session_records > 40
    with Library(spec.library) as lib:
        lib.load(0, barcode=barcode)
        tape = lib.open_drive(0)
        try:
            small = restore_files(tape, maps, ["small.txt"], tmp_path / "out1")
            assert (tmp_path / "out1" / "small.txt").read_bytes() == files["small.txt"]
            assert small.records_read == 1
            big = restore_files(tape, maps, ["big2.bin", "dir"], tmp_path / "out2")
            assert (tmp_path / "out2" / "big2.bin").read_bytes() == files["big2.bin"]
            assert (tmp_path / "out2" / "dir" / "inner.txt").read_bytes() == files["dir/inner.txt"]
            assert big.records_read <= (3 * MB) // maps.record_size + 4
            assert big.records_read < session_records // 3
            # a hostile catalog row never makes a restore write outside its target
            paths = maps.volfiles["path"].to_pylist()
            bad = [("../evil.txt" if p == "small.txt" else p) for p in paths]
            col = maps.volfiles.schema.get_field_index("path")
            maps.volfiles = maps.volfiles.set_column(col, "path", pa.array(bad, pa.string()))
            with pytest.raises(UnsafeMember):
                restore_files(tape, maps, ["../evil.txt"], tmp_path / "out3", exact=True)
            assert not (tmp_path / "evil.txt").exists()
        finally:
            tape.close()


def test_a_volume_that_never_goes_quiet_is_not_frozen(san: tuple, tmp_path: Path) -> None:
    vl, _ = san
    stop = threading.Event()

    def writer() -> None:
        disk = BlockDevice(vl.disk("vol"))
        while not stop.is_set():
            disk.write(5000, b"\x00" * 512)
            time.sleep(0.05)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(SlaveFailed) as exc:
            run_serverless_slave(_spec(vl, tmp_path, quiet=0.5, freeze_timeout=1.5))
        assert time.monotonic() - started < 20
    finally:
        stop.set()
        thread.join()
    assert "FreezeTimeout" in str(exc.value) and "1.5" in str(exc.value)
    assert vl.disk_store("vol").snapshots() == []  # nothing left behind
    with Library(f"embedded:{vl.root}") as lib:  # drive unloaded, lease released
        assert all(d.barcode is None for d in lib.inventory().drives)


def test_early_warning_completes_the_session_and_marks_the_cartridge_full(
    tmp_path: Path,
) -> None:
    """A session that runs into the cartridge's early-warning zone is still complete; the
    cartridge is reported full so the next session goes to another one."""
    fat.write_tree(tmp_path / "src", {"big.bin": b"x" * (3 * MB)})
    img = fat.mkfs(tmp_path / "vol.img", 12, 6_000)
    fat.mcopy(img, tmp_path / "src" / "big.bin")
    vl = VirtualLibrary.create(
        tmp_path / "lib", drives=1, slots=4, capacity=16 * MB, early_warning=14 * MB
    )
    spec = _spec(vl, tmp_path, quiet=0.1)
    spec.source = Source("vol", str(img), kind="volume", quiet=0.1)  # host path: image file
    result = run_serverless_slave(spec)
    assert result.state == "complete" and result.copy_path == "host"
    assert [t.full for t in result.tapes] == [True]


def test_large_inline_data_is_cut_into_commands_within_the_limit() -> None:
    from tapeflow.scsi.vpd import Designator
    from tapeflow.scsi.xcopy import CopyPlan

    d = Designator(1, 0, 3, bytes(8))
    plan = CopyPlan(d, d, 512, 4096)
    plan.add_inline(bytes(range(256)) * 40)  # 10240 bytes of headers in one segment
    plan.add_blocks(0, 24)
    batches = list(plan.batches(max_segments=64, max_inline=4096))
    assert all(batches) and len(batches) > 1
    assert all(sum(len(s.inline) for s in b) <= 4096 for b in batches)
    assert b"".join(s.inline for b in batches for s in b) == bytes(range(256)) * 40


def _recorded(vl: VirtualLibrary, tmp: Path) -> tuple[Path, str]:
    """A serverless session of the volume, recorded in a catalog: (catalog, session id)."""
    catalog = tmp / "cat" / "catalog.duckdb"
    library = f"embedded:{vl.root}"
    specs, skipped = prepare_job(
        catalog,
        "j",
        sources=[Source("vol", "disk:vol", kind="volume", quiet=0.1)],
        pool=Pool("p"),
        level="full",
        library=library,
    )
    outcome = record_results(catalog, "j", Pool("p"), [run_serverless_slave(specs[0])], skipped)
    assert outcome.state == "complete"
    return catalog, specs[0].session_id


def test_verify_reads_a_serverless_session_whole(san: tuple, tmp_path: Path) -> None:
    """Verify checks the image and copy-on-write members (read whole, sized as the volume),
    and says how many files it could not check: the host never read them."""
    vl, files = san
    catalog, sid = _recorded(vl, tmp_path)
    with Catalog(catalog) as cat:
        result = verify_session(cat, f"embedded:{vl.root}", sid)
    assert result.clean, result.problems
    assert result.checked == result.ok == 2
    assert result.content_unchecked >= len(files)


def test_verify_finds_a_damaged_serverless_session(san: tuple, tmp_path: Path) -> None:
    vl, _files = san
    catalog, sid = _recorded(vl, tmp_path)
    with Catalog(catalog) as cat:
        barcode = session_media(cat, sid).column("barcode")[0].as_py()
    data = vl.root / "cartridges" / barcode / "data"
    blob = data.read_bytes()
    where = blob.find(b"vol.img")  # the image member's header: its checksum no longer holds
    assert where > 0
    with open(data, "r+b") as fh:
        fh.seek(where)
        fh.write(b"VOL")
    with Catalog(catalog) as cat:
        result = verify_session(cat, f"embedded:{vl.root}", sid)
    assert not result.clean and result.error is not None
    assert sorted((p.path, p.kind) for p in result.problems) == [
        ("vol.cow", "unreadable"),
        ("vol.img", "unreadable"),
    ]


def test_verify_without_the_block_map_says_so(san: tuple, tmp_path: Path) -> None:
    """A serverless session whose block map is gone: a typed error naming it, not a crash."""
    vl, _files = san
    catalog, sid = _recorded(vl, tmp_path)
    with Catalog(catalog) as cat:
        (blockmaps_dir(cat.files_dir) / f"{sid}.tapemap.parquet").unlink()
        with pytest.raises(RowsUnavailable) as err:
            verify_session(cat, f"embedded:{vl.root}", sid)
    assert err.value.sessions == {sid: "missing"}
