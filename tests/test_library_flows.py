"""The library management flows on a real Prefect server and a real embedded library: inventory
imports mail-slot media, label, erase (the catalog forgets), import/export, cleaning, drives
online/offline moving the drive tag limit, library groups and virtual libraries with their own
drive tags and limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.exceptions import ObjectNotFound
from prefect.utilities.asyncutils import run_coro_as_sync

from tapeflow.catalog import Catalog
from tapeflow.library import Library
from tapeflow.library.errors import (
    DriveOutOfRange,
    GroupOverlap,
    PartitionOverlap,
)
from tapeflow.library.groups import load_groups
from tapeflow.library.partitions import load_partitions
from tapeflow.tapefmt import BlankTape, read_label
from tapeflow.vtl import VirtualLibrary
from tests.test_flows import lib_env, make_library, make_sources, tag_limit

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A unique embedded library (so unique drive tags) and catalog for each test."""
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    return lib_env(tmp_path)


def artifact(state: Any, key: str) -> list[dict[str, Any]]:
    """The rows of the table artifact `key` of one flow run."""

    async def read() -> list[dict[str, Any]]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
                    key=ArtifactFilterKey(any_=[key]),
                )
            )
        assert found, f"no {key} artifact"
        data = found[0].data
        return json.loads(data) if isinstance(data, str) else data

    return run_coro_as_sync(read())


def limit_exists(tag: str) -> bool:
    """Whether the drive tag has a concurrency limit on the server."""

    async def read() -> bool:
        async with get_client() as client:
            try:
                await client.read_global_concurrency_limit_by_name(f"tag:{tag}")
            except ObjectNotFound:
                return False
        return True

    return run_coro_as_sync(read())


def test_inventory_imports_new_mail_media_and_leaves_exported_ones(env: dict[str, Any]) -> None:
    from flows.library import library_export, library_import, library_inventory

    make_library(env, drives=2)  # 21 data cartridges, CLN001L1 in slot 24, one mail slot
    VirtualLibrary.open(env["lib_dir"]).insert("NEW001", mail_slot=0)
    state = library_inventory(library=env["library"], return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["imported"] == [{"mail_slot": 1, "barcode": "NEW001", "slot": 22}]
    rows = artifact(state, "library-inventory")
    by_place = {(r["element"], r["number"]): r for r in rows}
    assert by_place[("slot", 22)]["barcode"] == "NEW001"
    assert by_place[("slot", 1)]["barcode"] == "TF0001L9"
    assert by_place[("drive", 0)]["state"] == "online"
    assert library_export(barcodes=["TF0001L9"], library=env["library"]) == [
        {"barcode": "TF0001L9", "mail_slot": 1}
    ]
    again = library_inventory(library=env["library"])
    assert again["imported"] == []  # waits in the mail slot for the operator
    mail = [r for r in again["elements"] if r["element"] == "mail"]
    assert mail == [
        {
            "element": "mail",
            "number": 1,
            "barcode": "TF0001L9",
            "state": "full",
            "group": "",
            "vlib": "",
        }
    ]
    back = library_import(mail_slot=1, slot=1, library=env["library"])
    assert back == [{"mail_slot": 1, "barcode": "TF0001L9", "slot": 1}]


def test_label_and_erase_ranges_and_the_catalog_forgets(env: dict[str, Any]) -> None:
    from flows.backup import backup
    from flows.library import MediaNotDone, library_erase, library_label

    make_library(env, drives=2)
    out = backup(
        sources=make_sources(env, 1, files=5), library=env["library"], catalog=env["catalog"]
    )
    used = out["slaves"][0]["cartridges"]
    assert used == "TF0001L9"
    state = library_label(
        first_slot=1,
        last_slot=3,
        pool="weekly",
        library=env["library"],
        catalog=env["catalog"],
        return_state=True,
    )
    assert state.is_failed() and "1 cartridge(s) refused" in state.message
    with pytest.raises(MediaNotDone):
        state.result()
    rows = artifact(state, "library-label")
    assert [(r["slot"], r["action"]) for r in rows] == [
        (1, "refused"),
        (2, "labelled"),
        (3, "labelled"),
    ]
    assert "pool 'default'" in rows[0]["detail"]
    with Catalog(Path(env["catalog"])) as cat:
        assert cat.medium("TF0001L9")["pool"] == "default"  # refused: untouched
        assert cat.medium("TF0002L9")["pool"] == "weekly" and cat.medium("TF0002L9")["labelled"]
    erased = library_erase(
        first_slot=1, last_slot=2, library=env["library"], catalog=env["catalog"]
    )
    assert [o["action"] for o in erased] == ["erased", "erased"]
    with Catalog(Path(env["catalog"])) as cat:
        medium = cat.medium("TF0001L9")
        assert medium["sessions"] == 0 and medium["bytes_used"] == 0
        assert all(s["media_erased"] is not None for s in cat.sessions())
    with Library(env["library"]) as lib:
        lib.load(0, slot=1)
        handle = lib.open_drive(0)
        try:
            with pytest.raises(BlankTape):
                read_label(handle)
        finally:
            handle.close()
            lib.unload(0)
    with pytest.raises(ValueError, match="last_slot without first_slot"):
        library_label(last_slot=3, library=env["library"])


def test_drive_offline_online_moves_the_tag_limits(env: dict[str, Any]) -> None:
    from flows.library import library_drive, library_vlib_create

    make_library(env, drives=3)
    tag_a = f"{env['tag']}:A"
    created = library_vlib_create(name="A", drives=[1, 2], slots="1-8", library=env["library"])
    assert created["tag"] == tag_a and created["limit"] == 2 and tag_limit(tag_a) == 2
    off = library_drive(drive=2, online=False, library=env["library"])
    assert off["limits"] == {env["tag"]: 2, tag_a: 1}
    assert tag_limit(env["tag"]) == 2 and tag_limit(tag_a) == 1
    on = library_drive(drive=2, online=True, library=f"{env['library']}?vlib=A")
    assert on["limits"] == {env["tag"]: 3, tag_a: 2}
    with pytest.raises(DriveOutOfRange):
        library_drive(drive=7, online=False, library=env["library"])
    assert tag_limit(env["tag"]) == 3 and tag_limit(tag_a) == 2


def test_virtual_libraries_and_groups_and_a_backup_targeting_them(env: dict[str, Any]) -> None:
    from flows.backup import backup
    from flows.library import (
        library_group_create,
        library_group_delete,
        library_group_list,
        library_vlib_create,
        library_vlib_delete,
        library_vlib_list,
    )

    make_library(env, drives=3)
    library_vlib_create(name="A", drives="0,1", slots="1-8", library=env["library"])
    library_vlib_create(name="B", drives=[2], slots="9-16", library=env["library"])
    tag_a, tag_b = f"{env['tag']}:A", f"{env['tag']}:B"
    assert tag_limit(tag_a) == 2 and tag_limit(tag_b) == 1
    with pytest.raises(PartitionOverlap, match="drive"):
        library_vlib_create(name="C", drives=[2], slots=[17], library=env["library"])
    assert not limit_exists(f"{env['tag']}:C")
    state = library_vlib_list(library=env["library"], return_state=True)
    rows = artifact(state, "library-vlibs")
    assert [(r["name"], r["drives"], r["slots"], r["tag"]) for r in rows] == [
        ("A", "0-1", "1-8", tag_a),
        ("B", "2", "9-16", tag_b),
    ]
    vlib_b = rows[1]["library"]
    made = library_group_create(name="GB", first_slot=11, last_slot=12, library=vlib_b)
    assert made == {"name": "GB", "first": 11, "last": 12}
    with pytest.raises(GroupOverlap, match="overlap group 'GB'"):
        library_group_create(name="G2", first_slot=12, last_slot=13, library=env["library"])
    state = library_group_list(library=vlib_b, return_state=True)
    assert artifact(state, "library-groups") == [made]
    out = backup(
        sources=make_sources(env, 1, files=3),
        pool={"name": "grouped", "group": "GB"},
        library=vlib_b,
        catalog=env["catalog"],
    )
    assert {s["drive"] for s in out["slaves"]} == {2}  # B's only drive
    used = {c for s in out["slaves"] for c in s["cartridges"].split()}
    assert used and used <= {"TF0011L9", "TF0012L9"}  # B's group GB
    assert tag_limit(tag_b) == 1
    library_group_delete(name="GB", library=vlib_b)
    library_vlib_delete(name="B", library=env["library"])
    assert not limit_exists(tag_b) and tag_limit(tag_a) == 2
    with Library(env["library"]) as lib:
        assert load_groups(lib.state_dir) == {}
        assert list(load_partitions(lib.state_dir)) == ["A"]


def test_clean_one_drive_then_all(env: dict[str, Any]) -> None:
    from flows.library import library_clean

    make_library(env, drives=2)
    state = library_clean(drive=1, library=env["library"], return_state=True)
    one = state.result()
    assert [(c["drive"], c["barcode"], c["slot"], c["uses_left"]) for c in one] == [
        (1, "CLN001L1", 24, 49)
    ]
    assert artifact(state, "library-clean")[0]["barcode"] == "CLN001L1"
    every = library_clean(library=env["library"])
    assert [(c["drive"], c["uses_left"]) for c in every] == [(0, 48), (1, 47)]
    with Library(env["library"]) as lib:
        inv = lib.inventory()
    assert inv.slots[23].barcode == "CLN001L1" and not any(d.full for d in inv.drives)
