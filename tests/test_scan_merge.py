"""Scan cartridges and merge them into a catalog: rebuild after a real full + incremental backup
(spanning cartridges), idempotence, and bad input (blank, foreign, truncated, unknown)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.backup.master import deleted_rows_for, prepare_job, record_results
from tapeflow.backup.model import Pool, Source
from tapeflow.backup.slave import run_slave
from tapeflow.catalog import Catalog, session_files, session_media
from tapeflow.library import Library
from tapeflow.maintenance import (
    MediaScan,
    NotASession,
    Scanner,
    merge_scans,
    scan_library,
    scan_media,
    scan_session,
)
from tapeflow.sample import make_sample_tree
from tapeflow.tapefmt import BlankTape, SessionInfo, SessionWriter, write_label
from tapeflow.vtl import VirtualLibrary

MiB = 1024 * 1024
NOT_ON_TAPE = ["ctime", "inode"]  # the pax headers do not carry them


@dataclass
class Backup:
    """A library after a full and an incremental backup, and the catalog's rows then."""

    root: Path
    library: str
    catalog: Path
    src: Path
    sessions: list[str]
    rows: dict[str, pa.Table]
    media: dict[str, list[tuple[int, str, int]]]


def make_library(root: Path) -> str:
    """A small embedded library (8 MiB cartridges: sessions span); returns its spec."""
    VirtualLibrary.create(
        root / "lib",
        drives=2,
        slots=16,
        mail_slots=1,
        capacity=8 * MiB,
        early_warning=1 * MiB,
        cleaning_cartridges=0,
    )
    return f"embedded:{root / 'lib'}"


def make_tree(src: Path) -> None:
    """Sample files plus the unusual members: links, sparse, empty, long and non-ASCII names."""
    make_sample_tree(src, files=150)
    (src / "links").mkdir()
    os.symlink("../dir0/sub0/file0000.dat", src / "links" / "sym")
    os.link(src / "dir1" / "sub1" / "file0001.dat", src / "links" / "hard")
    (src / "empty.txt").write_bytes(b"")
    (src / "caf\u00e9 \u00fcml.txt").write_bytes(b"non-ascii name")
    deep = src / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / "long-name.txt").write_bytes(b"long path")
    with open(src / "sparse.bin", "wb") as fh:
        fh.seek(3 * MiB)
        fh.write(b"tail of a sparse file")
    frac = src / "frac.txt"
    frac.write_bytes(b"fractional mtime")
    os.utime(frac, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))


def run_job(catalog: Path, job: str, src: Path, library: str, level: str) -> list[str]:
    """One backup job through the backup core; returns its session ids."""
    sources = [Source("src", str(src))]
    specs, skipped = prepare_job(
        catalog,
        job,
        sources=sources,
        pool=Pool(),
        level=level,
        library=library,  # type: ignore[arg-type]
    )
    results = [run_slave(s, deleted_rows=deleted_rows_for(s)) for s in specs]
    outcome = record_results(catalog, job, Pool(), results, skipped)
    assert outcome.state == "complete", outcome
    return [s.session_id for s in specs]


def comparable(table: pa.Table) -> list[dict]:
    """Rows that are on tape, in path order, without the columns tape cannot carry."""
    table = table.filter(pc.not_equal(table["type"], "deleted")).drop_columns(NOT_ON_TAPE)
    return table.sort_by("path").to_pylist()


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backup]:
    """Full (spanning 2+ cartridges) then incremental (one changed, one deleted file)."""
    root = tmp_path_factory.mktemp("backup")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAPEFLOW_HOME", str(root / "home"))
        library = make_library(root)
        src = root / "src"
        make_tree(src)
        catalog = root / "catalog" / "catalog.duckdb"
        sessions = run_job(catalog, "job-full", src, library, "full")
        (src / "dir0" / "sub0" / "file0000.dat").write_bytes(b"changed")
        (src / "dir2" / "sub2" / "file0002.dat").unlink()
        sessions += run_job(catalog, "job-inc", src, library, "incremental")
        with Catalog(catalog) as cat:
            rows = {sid: session_files(cat, sid) for sid in sessions}
            media = {
                sid: [
                    (r["sequence"], r["barcode"], r["tape_file"])
                    for r in session_media(cat, sid).to_pylist()
                ]
                for sid in sessions
            }
        assert len(media[sessions[0]]) >= 2, "the full must span cartridges"
        yield Backup(root, library, catalog, src, sessions, rows, media)


def test_rebuild_catalog_from_tapes(backup: Backup, tmp_path: Path) -> None:
    """Delete the catalog, scan every cartridge, merge: the file rows come back."""
    catalog = tmp_path / "rebuilt" / "catalog.duckdb"
    scans = scan_library(backup.library)
    assert {s.status for s in scans} == {"tapeflow", "blank"}
    with Catalog(catalog) as cat:
        result = merge_scans(cat, scans)
        assert sorted(result.sessions_added) == sorted(backup.sessions)
        full, inc = backup.sessions
        for sid in backup.sessions:
            assert comparable(session_files(cat, sid)) == comparable(backup.rows[sid])
            got = [
                (r["sequence"], r["barcode"], r["tape_file"])
                for r in session_media(cat, sid).to_pylist()
            ]
            assert got == backup.media[sid]
            row = cat.session(sid)
            assert row["state"] == "complete"
            assert row["source"] == "src"
        assert cat.session(full)["level"] == "full"
        assert cat.session(inc)["level"] == "incremental"
        assert cat.session(inc)["base_session"] == full  # inferred
        assert result.bases_inferred == {inc: full}
        assert cat.job("job-full")["state"] == "complete"
        # the deleted file is not on tape: no 'deleted' row can be rebuilt
        deleted = backup.rows[inc].filter(pc.equal(backup.rows[inc]["type"], "deleted"))
        assert deleted["path"].to_pylist() == ["dir2/sub2/file0002.dat"]
        rebuilt = session_files(cat, inc)
        assert "deleted" not in rebuilt["type"].to_pylist()
        first_part = backup.media[full][0][1]
        assert cat.medium(first_part)["state"] == "full"


def _snapshot(cat: Catalog) -> dict[str, list]:
    tables = ("jobs", "sessions", "media", "media_sessions", "events")
    snap: dict[str, list] = {t: cat.execute(f"SELECT * FROM {t} ORDER BY ALL") for t in tables}
    for (sid,) in cat.execute("SELECT id FROM sessions ORDER BY id"):
        snap[sid] = session_files(cat, sid).to_pylist()
    return snap


def test_merge_twice_changes_nothing(backup: Backup, tmp_path: Path) -> None:
    """Merging the same media again (or into the original catalog) adds nothing."""
    scans = scan_library(backup.library)
    with Catalog(tmp_path / "c" / "catalog.duckdb") as cat:
        assert merge_scans(cat, scans).changed
        before = _snapshot(cat)
        again = merge_scans(cat, scan_library(backup.library))
        assert not again.changed
        assert _snapshot(cat) == before
    copy = tmp_path / "orig"
    shutil.copytree(backup.catalog.parent, copy)
    with Catalog(copy / "catalog.duckdb") as cat:
        before = _snapshot(cat)
        result = merge_scans(cat, scans)
        assert not result.changed, result
        assert _snapshot(cat) == before


def test_scan_media_spanned_parts(backup: Backup) -> None:
    """The second cartridge of the full starts with a continuation part of the same session;
    its rows are the members whose header is on it, read in one pass with the first part."""
    full = backup.sessions[0]
    second = backup.media[full][1][1]
    with Scanner(backup.library) as scanner:
        first_scan = scanner.scan_media(backup.media[full][0][1])
        scan = scanner.scan_media(second)
        assert scan.tape_files[0].kind == "continuation"
        assert scan.tape_files[0].session_id == full
        assert scan.tape_files[0].sequence == 1
        session = scan.sessions[0]
        assert session is first_scan.sessions[0]  # read once
        on_second = session.rows_on(second)
        expected = backup.rows[full].filter(pc.equal(backup.rows[full]["barcode"], second))
        assert on_second.num_rows == expected.num_rows > 0


def test_scan_continuation_first(backup: Backup) -> None:
    """Scanning the continuation cartridge alone finds part 0 in the library."""
    full = backup.sessions[0]
    second = backup.media[full][1][1]
    scan = scan_media(backup.library, second)
    session = scan.sessions[0]
    assert session.session_id == full and session.state == "complete"
    assert [p.barcode for p in session.parts] == [b for _, b, _ in backup.media[full]]
    assert comparable(session.rows) == comparable(backup.rows[full])


def test_scan_without_follow_is_partial(backup: Backup, tmp_path: Path) -> None:
    """follow=False: the spanned session ends partial at the cartridge edge; orphan parts are
    reported and skipped by merge."""
    full = backup.sessions[0]
    first, second = backup.media[full][0][1], backup.media[full][1][1]
    scan = scan_media(backup.library, first, follow=False)
    session = scan.sessions[0]
    assert session.state == "partial"
    orphan = scan_media(backup.library, second, follow=False)
    assert orphan.sessions[0].has_start is False
    with Catalog(tmp_path / "c.duckdb") as cat:
        result = merge_scans(cat, [orphan])
        assert full not in result.sessions_added and result.skipped


def test_scan_single_session(backup: Backup) -> None:
    """Tape file N of a cartridge: the incremental, and an error for a tape file past the end."""
    inc = backup.sessions[1]
    _, barcode, tape_file = backup.media[inc][0]
    session = scan_session(backup.library, barcode, tape_file)
    assert session.session_id == inc
    assert comparable(session.rows) == comparable(backup.rows[inc])
    with pytest.raises(NotASession):
        scan_session(backup.library, barcode, tape_file + 5)


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh small library."""
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    return make_library(tmp_path)


def _with_drive(spec: str, barcode: str):  # noqa: ANN202 - context helper
    lib = Library(spec)
    lib.load(0, barcode=barcode)
    return lib, lib.open_drive(0)


def _release(lib: Library, drive) -> None:  # noqa: ANN001
    drive.close()
    lib.unload(0)
    lib.close()


def test_blank_and_foreign_cartridges(library: str, tmp_path: Path) -> None:
    """A blank and a foreign cartridge are reported and nothing is merged from them."""
    lib, drive = _with_drive(library, "TF0002L9")
    drive.set_block_size(0)
    drive.write(b"\0" * 512 + b"not ours" * 100)
    drive.write_filemarks(1)
    _release(lib, drive)
    scans = scan_library(library, ["TF0001L9", "TF0002L9"])
    assert [s.status for s in scans] == ["blank", "foreign"]
    assert all(isinstance(s, MediaScan) and not s.sessions for s in scans)
    with Catalog(tmp_path / "c.duckdb") as cat:
        result = merge_scans(cat, scans)
        assert not result.changed and len(result.skipped) == 2
        assert cat.execute("SELECT count(*) FROM media") == [(0,)]
    with pytest.raises(BlankTape):
        scan_session(library, "TF0001L9", 1)


def test_truncated_session_is_partial(library: str, tmp_path: Path) -> None:
    """A session whose tape file ends mid-archive (the tape was cut after a few records, as by
    a crash) is recorded partial, with the members read before the cut; a later complete
    session on the same cartridge is complete."""
    src = tmp_path / "src"
    make_sample_tree(src, files=40)
    lib, drive = _with_drive(library, "TF0001L9")
    write_label(drive, "TF0001L9", "TF0001L9", "default")
    with SessionWriter(
        drive, SessionInfo("s-cut", job_id="j-cut", source="src"), barcode="TF0001L9"
    ) as writer:
        writer.add_tree(src)
        written = writer.close()
    assert written.records > 3
    drive.locate(written.segments[0].first_block + 2)  # keep two records, cut the rest
    drive.write_filemarks(1)
    with SessionWriter(
        drive, SessionInfo("s-ok", job_id="j-ok", source="src"), barcode="TF0001L9"
    ) as ok:
        ok.add_path(str(src / "dir0" / "sub0" / "file0000.dat"), "file0000.dat")
        done = ok.close()
    _release(lib, drive)
    scan = scan_media(library, "TF0001L9")
    assert [t.kind for t in scan.tape_files] == ["session", "session"]
    cut, complete = scan.sessions
    assert cut.state == "partial" and cut.problem
    assert 0 < cut.rows.num_rows < written.members
    read = set(cut.rows["path"].to_pylist())
    expected = written.table().drop_columns(NOT_ON_TAPE).to_pylist()
    assert cut.rows.drop_columns(NOT_ON_TAPE).to_pylist() == [
        r for r in expected if r["path"] in read
    ]
    assert complete.state == "complete" and complete.rows.num_rows == 1
    assert complete.rows.drop_columns(NOT_ON_TAPE).to_pylist() == (
        done.table().drop_columns(NOT_ON_TAPE).to_pylist()
    )
    with Catalog(tmp_path / "c.duckdb") as cat:
        merge_scans(cat, [scan])
        assert cat.session("s-cut")["state"] == "partial"
        assert cat.session("s-ok")["state"] == "complete"
        assert cat.job("j-cut")["state"] == "partial"
        assert session_files(cat, "s-cut").num_rows == cut.rows.num_rows
