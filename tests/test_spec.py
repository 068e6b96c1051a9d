"""Library addresses: parsing and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.library import LibrarySpec
from tapeflow.library.errors import BadLibrarySpec


def test_embedded_forms() -> None:
    assert LibrarySpec.parse("embedded:/srv/vtl").path == Path("/srv/vtl")
    assert LibrarySpec.parse("/srv/vtl").backend == "embedded"


def test_iscsi() -> None:
    spec = LibrarySpec.parse("iscsi://127.0.0.1:3261/iqn.2026-11.io.tapeflow:lib/3?drives=1,2")
    assert spec.portal == "127.0.0.1:3261" and spec.target == "iqn.2026-11.io.tapeflow:lib"
    assert spec.changer_lun == 3 and spec.drive_luns == (1, 2)
    assert LibrarySpec.parse(str(spec)) == spec


def test_sg() -> None:
    spec = LibrarySpec.parse("sg:/dev/sg5?drives=/dev/sg3,/dev/sg4")
    assert spec.changer_device == "/dev/sg5" and spec.drive_devices == ("/dev/sg3", "/dev/sg4")


@pytest.mark.parametrize(
    "bad",
    ["", "iscsi://", "iscsi://host/", "iscsi://h/iqn/x", "sg:/dev/sg1", "iscsi://h/t?drives=a"],
)
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(BadLibrarySpec):
        LibrarySpec.parse(bad)
