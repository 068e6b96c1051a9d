"""The master backup and restore flows against tgt: a real iSCSI tape library (changer and two
drives on 127.0.0.1), full + incremental + point-in-time restore, on a real Prefect server."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapeflow.catalog import Catalog
from tapeflow.library import LibrarySpec
from tapeflow.sample import make_sample_tree, tree_digest
from tapeflow.testing.tgt import TgtLibrary

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_full_incremental_and_restore_on_tgt(tmp_path: Path, monkeypatch) -> None:
    from flows.backup import backup
    from flows.restore import restore

    reason = TgtLibrary.available()
    if reason:
        pytest.skip(f"tgt cannot run here: {reason}")
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    catalog = str(tmp_path / "catalog" / "catalog.duckdb")
    sources = []
    for i in range(3):
        make_sample_tree(tmp_path / f"src{i}", files=25, seed=i)
        sources.append({"name": f"src{i}", "path": str(tmp_path / f"src{i}")})
    src = tmp_path / "src0"
    with TgtLibrary(tmp_path / "tgt", drives=2, slots=8, cartridges=6, cartridge_mb=64) as tgt:
        library = str(
            LibrarySpec(
                "iscsi",
                portal=tgt.portal,
                target=tgt.target_iqn,
                changer_lun=tgt.changer_lun,
                drive_luns=tuple(tgt.drive_luns),
                name=f"tgt-{tmp_path.name}",
            )
        )
        before = tree_digest(src)
        first = backup(sources=sources, library=library, catalog=catalog)
        assert first["state"] == "complete"
        assert {r["drive"] for r in first["slaves"]} <= {0, 1}
        between = datetime.now(UTC)
        time.sleep(0.05)
        (src / "dir0" / "sub0" / "file0000.dat").write_bytes(b"changed on tgt")
        backup(sources=sources, level="incremental", library=library, catalog=catalog)
        after = tree_digest(src)

        with Catalog(catalog, read_only=True) as cat:
            parts = cat.records("SELECT barcode, tape_file FROM media_sessions ORDER BY 1, 2")
        # positions are real (tgt's READ POSITION answers zeros; the drive handle tracks them)
        assert all(p["tape_file"] >= 1 for p in parts)
        per_tape: dict[str, list[int]] = {}
        for p in parts:
            per_tape.setdefault(p["barcode"], []).append(p["tape_file"])
        assert all(files == list(range(1, len(files) + 1)) for files in per_tape.values())

        old = restore(
            source="src0",
            at=between,
            target=str(tmp_path / "old"),
            library=library,
            catalog=catalog,
        )
        assert old["restored"] > 0 and tree_digest(tmp_path / "old") == before
        new = restore(source="src0", target=str(tmp_path / "new"), library=library, catalog=catalog)
        assert new["restored"] > 0 and tree_digest(tmp_path / "new") == after


def test_library_flows_on_tgt(tmp_path: Path, monkeypatch) -> None:
    """Inventory, label and drive offline/online as flows against tgt; the tag limit follows."""
    from flows.library import MediaNotDone, library_drive, library_inventory, library_label
    from tests.test_flows import tag_limit

    reason = TgtLibrary.available()
    if reason:
        pytest.skip(f"tgt cannot run here: {reason}")
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    with TgtLibrary(tmp_path / "tgt", drives=2, slots=6, cartridges=4, cartridge_mb=32) as tgt:
        spec = LibrarySpec(
            "iscsi",
            portal=tgt.portal,
            target=tgt.target_iqn,
            changer_lun=tgt.changer_lun,
            drive_luns=tuple(tgt.drive_luns),
            name=f"tgtlib-{tmp_path.name}",
        )
        library, tag = str(spec), f"tape-drive:{spec.name}"
        inv = library_inventory(library=library)
        barcodes = [e["barcode"] for e in inv["elements"] if e["barcode"]]
        assert sorted(barcodes) == sorted(tgt.barcodes)
        done = library_label(first_slot=1, last_slot=2, pool="weekly", library=library)
        assert [d["action"] for d in done] == ["labelled", "labelled"]
        with pytest.raises(MediaNotDone, match="1 cartridge"):  # slot 2: never relabelled
            library_label(first_slot=2, last_slot=3, pool="weekly", library=library)
        library_drive(drive=1, online=False, library=library)
        assert tag_limit(tag) == 1
        library_drive(drive=1, online=True, library=library)
        assert tag_limit(tag) == 2
