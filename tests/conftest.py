"""Shared fixtures: a library per backend (embedded, tgt) for the one contract suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tapeflow.library import Library, LibrarySpec
from tests.loopfs import loop_mounted

CAPACITY = 16 * 1024 * 1024  # small cartridges so end-of-medium is reached quickly
EARLY_WARNING = 2 * 1024 * 1024


@dataclass
class Backend:
    """A running library plus the operator actions tests need that are not SCSI."""

    name: str
    library: Library
    write_protect: Callable[[str, int], None]  # (barcode, drive) about to be used together
    capacity: int
    # what the device implements (tgt 1.0.85 lacks these; see tapeflow/testing/tgt.py)
    reports_position: bool = True
    reservations: bool = True
    refuses_past_capacity: bool = True
    standard_backspace: bool = True  # SPACE -n filemarks ends on the BOP side of the mark
    extra: dict[str, object] = field(default_factory=dict)


def _embedded(tmp_path: Path) -> Iterator[Backend]:
    from tapeflow.vtl import VirtualLibrary

    vtl = VirtualLibrary.create(
        tmp_path / "vtl",
        drives=2,
        slots=8,
        mail_slots=1,
        cartridges=6,
        capacity=CAPACITY,
        early_warning=EARLY_WARNING,
        cleaning_cartridges=0,
    )
    with Library(LibrarySpec.parse(f"embedded:{tmp_path / 'vtl'}")) as lib:
        yield Backend(
            "embedded", lib, lambda barcode, _drive: vtl.set_write_protect(barcode, True), CAPACITY
        )


def _tgt(tmp_path: Path) -> Iterator[Backend]:
    from tapeflow.testing.tgt import TgtLibrary

    reason = TgtLibrary.available()
    if reason:
        pytest.skip(f"tgt cannot run here: {reason}")
    with TgtLibrary(
        tmp_path / "tgt",
        drives=2,
        slots=8,
        mail_slots=1,
        cartridges=6,
        cartridge_mb=CAPACITY // (1024 * 1024),
    ) as tgt:
        spec = tgt.spec(f"tgt-{tmp_path.name}")
        with Library(spec) as lib:
            yield Backend(
                "tgt",
                lib,
                lambda _barcode, drive: tgt.set_write_protect(tgt.drive_luns[drive]),
                CAPACITY,
                reservations=False,
                reports_position=False,  # READ POSITION answers zeros; TapeDrive tracks it
                refuses_past_capacity=False,
                standard_backspace=False,
                extra={"tgt": tgt},
            )


@pytest.fixture(params=["embedded", "tgt"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch) -> Iterator[Backend]:
    """The same library contract on both backends."""
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    factory = _embedded if request.param == "embedded" else _tgt
    yield from factory(tmp_path)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One real Prefect server (temporary SQLite database) for every flow test, with
    Prefect's default flow-run heartbeats, as in production (flows/heartbeats.py keeps them
    from holding up the end of each run)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def real_prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """`prefect server start` with UI and scheduler (the harness has neither), for the UI and
    job-queue tests; its process group is killed at the end of the session."""
    from tests.realserver import RealServer

    with RealServer(tmp_path_factory.mktemp("prefect-server")) as server:
        yield server


@pytest.fixture(scope="module", params=["xfs", "btrfs"])
def cow_fs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A loop-mounted XFS (reflink=1) or btrfs: image files there are frozen by reflink."""
    with loop_mounted(request.param, tmp_path_factory.mktemp(request.param)) as mount_point:
        yield mount_point


@pytest.fixture(scope="module")
def plain_xfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A loop-mounted XFS made with reflink=0: no reflink, whatever the host's /tmp is."""
    with loop_mounted("xfs", tmp_path_factory.mktemp("xfs0"), reflink=False) as mount_point:
        yield mount_point
