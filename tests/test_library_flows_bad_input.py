"""Bad input through the library flows on a real Prefect server, on the embedded library and on
tgt: unknown barcode, slot out of range, overlapping groups, a virtual library with no drive.
Each flow run fails with a clear message, and the library's state (inventory and state files)
and the catalog's rows are what they were before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tapeflow.catalog import Catalog
from tests.conftest import Backend
from tests.test_library_flows import limit_exists
from tests.test_library_manage import barcode_of, snapshot
from tests.test_reports import _tables

pytestmark = pytest.mark.usefixtures("prefect_server")


def bad_cases(first: str) -> list[tuple[Callable[..., Any], dict[str, Any], str, str]]:
    """(flow, parameters, error type, message) of every refused request; `first` is the
    barcode in slot 1. The library has 2 drives, 8 slots, 1 mail slot, group G1 on slots 1-3
    and virtual library A with drive 0 and slots 1-3."""
    from flows import library as fl

    unknown = "NOPE01 is unknown"
    return [
        # unknown barcode
        (fl.library_label, {"barcodes": ["NOPE01"], "pool": "p"}, "UnknownBarcode", unknown),
        (fl.library_erase, {"barcodes": [first, "NOPE01"]}, "UnknownBarcode", unknown),
        (fl.library_export, {"barcodes": ["NOPE01"]}, "UnknownBarcode", unknown),
        # slot (or drive) out of range
        (
            fl.library_label,
            {"first_slot": 1, "last_slot": 99},
            "SlotOutOfRange",
            "slot 99 is out of range 1..8",
        ),
        (
            fl.library_erase,
            {"first_slot": 0, "last_slot": 2},
            "SlotOutOfRange",
            "slot 0 is out of range 1..8",
        ),
        (
            fl.library_erase,
            {"first_slot": 6, "last_slot": 5},
            "SlotOutOfRange",
            "first slot 6 is after last slot 5",
        ),
        (
            fl.library_import,
            {"mail_slot": 5},
            "SlotOutOfRange",
            "mail slot 5 is out of range 1..1",
        ),
        (
            fl.library_group_create,
            {"name": "G2", "first_slot": 7, "last_slot": 9},
            "SlotOutOfRange",
            "slot 9 is out of range 1..8",
        ),
        (
            fl.library_vlib_create,
            {"name": "B", "drives": [1], "slots": "7-9"},
            "SlotOutOfRange",
            "out of range 1..8",
        ),
        (
            fl.library_label,
            {"first_slot": 1, "drive": 5},
            "DriveOutOfRange",
            "drive 5 is out of range 0..1",
        ),
        (fl.library_clean, {"drive": 7}, "DriveOutOfRange", "drive 7 is out of range 0..1"),
        # overlapping groups (and virtual libraries)
        (
            fl.library_group_create,
            {"name": "G2", "first_slot": 3, "last_slot": 4},
            "GroupOverlap",
            "overlap group 'G1'",
        ),
        (
            fl.library_vlib_create,
            {"name": "B", "drives": [0, 1], "slots": "4-5"},
            "PartitionOverlap",
            "already belong to virtual library 'A'",
        ),
        # a virtual library with no drive, as a list or as text
        (
            fl.library_vlib_create,
            {"name": "B", "drives": [], "slots": "4-5"},
            "EmptyPartition",
            "virtual library 'B' needs at least one drive",
        ),
        (
            fl.library_vlib_create,
            {"name": "B", "drives": " ", "slots": "4-5"},
            "EmptyPartition",
            "virtual library 'B' needs at least one drive",
        ),
    ]


def test_bad_input_fails_the_flow_and_changes_nothing(backend: Backend, tmp_path: Path) -> None:
    from flows.library import library_group_create, library_label, library_vlib_create

    lib = backend.library
    library, catalog = str(lib.spec), tmp_path / "catalog" / "catalog.duckdb"
    first = barcode_of(backend, 1)
    catalog.parent.mkdir()
    Catalog(catalog).close()  # an empty catalog: label records into one that exists
    done = library_label(first_slot=1, pool="weekly", library=library, catalog=str(catalog))
    assert [o["action"] for o in done] == ["labelled"]  # so the catalog has a media row
    library_group_create(name="G1", first_slot=1, last_slot=3, library=library)
    library_vlib_create(name="A", drives=[0], slots="1-3", library=library)
    library_before, catalog_before = snapshot(lib), _tables(catalog)
    assert catalog_before["media"] and library_before["files"]["groups.json"]

    for run, params, error, message in bad_cases(first):
        kwargs = {**params, "library": library}
        if run.name in ("tapeflow-library-label", "tapeflow-library-erase"):
            kwargs["catalog"] = str(catalog)
        state = run(**kwargs, return_state=True)
        what = f"{run.name} {params}"
        assert state.is_failed(), what
        assert f"{error}: " in state.message and message in state.message, (what, state.message)
        assert snapshot(lib) == library_before, what
        assert _tables(catalog) == catalog_before, what
    assert not limit_exists(f"tape-drive:{lib.spec.name}:B")  # no tag for a refused vlib
