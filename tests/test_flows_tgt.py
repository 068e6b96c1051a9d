"""The master backup and restore flows against tgt: a real iSCSI tape library (changer and two
drives on 127.0.0.1), full + incremental + point-in-time restore, on a real Prefect server."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapeflow.catalog import Catalog
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
        library = str(tgt.spec(f"tgt-{tmp_path.name}"))
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
        spec = tgt.spec(f"tgtlib-{tmp_path.name}")
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


def test_media_groups_and_virtual_library_flows_on_tgt(tmp_path: Path, monkeypatch) -> None:
    """Erase (quick; long is refused by tgt and changes nothing), clean, export/import and new
    mail-slot media, and a backup to a library group inside a virtual library, all as flows on
    one tgt library; the catalog forgets erased sessions and the vlib's drive tag comes and goes."""
    from flows.backup import backup
    from flows.library import (
        library_clean,
        library_erase,
        library_export,
        library_group_create,
        library_group_delete,
        library_import,
        library_inventory,
        library_vlib_create,
        library_vlib_delete,
        library_vlib_list,
    )
    from tapeflow.library import Library
    from tests.test_flows import tag_limit
    from tests.test_library_flows import artifact, limit_exists
    from tests.test_library_manage import snapshot, tape_state
    from tests.test_reports import _tables

    reason = TgtLibrary.available()
    if reason:
        pytest.skip(f"tgt cannot run here: {reason}")
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    catalog = tmp_path / "catalog" / "catalog.duckdb"
    make_sample_tree(tmp_path / "src", files=10, seed=3)
    with TgtLibrary(tmp_path / "tgt", drives=2, slots=8, cartridges=6, cartridge_mb=32) as tgt:
        spec = tgt.spec(f"tgtops-{tmp_path.name}")
        library, tag = str(spec), f"tape-drive:{spec.name}"
        slot_of = dict(zip(tgt.barcodes, range(1, 7), strict=True))

        # a virtual library (drive 1, slots 4-6) with a library group (5-6) a backup targets
        made = library_vlib_create(name="V", drives=[1], slots="4-6", library=library)
        vlib, vtag = made["library"], f"{tag}:V"
        assert made["tag"] == vtag and made["limit"] == 1 and tag_limit(vtag) == 1
        state = library_vlib_list(library=library, return_state=True)
        assert [(r["name"], r["drives"], r["slots"], r["tag"]) for r in state.result()] == [
            ("V", "1", "4-6", vtag)
        ]
        assert artifact(state, "library-vlibs")[0]["library"] == vlib
        group = library_group_create(name="GT", first_slot=5, last_slot=6, library=vlib)
        assert group == {"name": "GT", "first": 5, "last": 6}
        out = backup(
            sources=[{"name": "src", "path": str(tmp_path / "src")}],
            pool={"name": "grouped", "group": "GT"},
            library=vlib,
            catalog=str(catalog),
        )
        assert [s["drive"] for s in out["slaves"]] == [1]  # V's only drive
        (used,) = out["slaves"][0]["cartridges"].split()
        assert slot_of[used] in (5, 6)  # inside GT, so inside V

        with Library(spec) as lib:
            # quick erase: tgt has no ERASE, so the label is rewritten and the sessions cut off
            erased = library_erase(barcodes=[used], library=vlib, catalog=str(catalog))
            assert [(o["barcode"], o["action"]) for o in erased] == [(used, "erased")]
            assert erased[0]["detail"] == "quick: drive has no ERASE, label rewritten"
            with Catalog(catalog, read_only=True) as cat:
                assert cat.medium(used)["sessions"] == 0
                assert all(s["media_erased"] is not None for s in cat.sessions())
            assert tape_state(lib, slot_of[used]) == ("grouped", 1)  # the label, no session

            # long erase: refused by the drive before anything is written
            library_before, catalog_before = snapshot(lib), _tables(catalog)
            state = library_erase(
                barcodes=[used], long=True, library=library, catalog=str(catalog),
                return_state=True,
            )  # fmt: skip
            assert state.is_failed() and "EraseUnsupported" in state.message
            assert "long erase" in state.message
            assert snapshot(lib) == library_before and _tables(catalog) == catalog_before

            # cleaning: tgt loads a cleaning cartridge like any other and counts no uses
            subprocess.run(
                [
                    "tgtimg", "--op", "new", "--device-type", "tape", "--barcode", "CLN001L1",
                    "--size", "16", "--type", "clean",
                    "--file", str(tgt.cartridge_path("CLN001L1")),
                ],
                check=True,
                capture_output=True,
            )  # fmt: skip
            tgt.place(tgt.slot_addresses[7], "CLN001L1")
            state = library_clean(library=library, return_state=True)
            cleaned = state.result()
            assert [
                (c["drive"], c["barcode"], c["slot"], c["status"], c["uses_left"]) for c in cleaned
            ] == [(d, "CLN001L1", 8, "ready", None) for d in (0, 1)]
            assert len(artifact(state, "library-clean")) == 2
            inv = lib.physical_inventory()
            assert inv.slots[7].barcode == "CLN001L1" and not any(d.full for d in inv.drives)

            # export, the exported cartridge stays in the mail slot, import it back
            first = tgt.barcodes[0]
            assert library_export(barcodes=[first], library=library) == [
                {"barcode": first, "mail_slot": 1}
            ]
            again = library_inventory(library=library)
            assert again["imported"] == []
            mail = [
                (r["number"], r["barcode"]) for r in again["elements"] if r["element"] == "mail"
            ]
            assert mail == [(1, first)]  # waits there for the operator
            assert library_import(mail_slot=1, slot=1, library=library) == [
                {"mail_slot": 1, "barcode": first, "slot": 1}
            ]
            # a new cartridge in the mail slot: the inventory flow imports it
            tgt.make_cartridge("NEW001")
            tgt.place(tgt.mail_addresses[0], "NEW001")
            state = library_inventory(library=library, return_state=True)
            assert state.result()["imported"] == [{"mail_slot": 1, "barcode": "NEW001", "slot": 7}]
            rows = {(r["element"], r["number"]): r for r in artifact(state, "library-inventory")}
            assert rows[("slot", 7)]["barcode"] == "NEW001"
            assert rows[("slot", 5)]["group"] == "GT" and rows[("slot", 5)]["vlib"] == "V"
            assert rows[("drive", 1)]["vlib"] == "V" and rows[("mail", 1)]["state"] == "empty"

            library_group_delete(name="GT", library=vlib)
            assert library_vlib_delete(name="V", library=library)["name"] == "V"
            assert not limit_exists(vtag) and library_vlib_list(library=library) == []
