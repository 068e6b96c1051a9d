"""Verify sessions on tape against the catalog (a corrupted byte is found, exactly that member),
and compare sessions with the files on disk; bad input raises typed errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pytest

from tapeflow.catalog import Catalog, RowsUnavailable, SessionNotFound, session_files
from tapeflow.maintenance import (
    CartridgeNotInLibrary,
    NoTapeRecorded,
    SourceMissing,
    compare_session,
    verify_session,
)
from tapeflow.sample import make_sample_tree
from tests.test_scan_merge import make_library, run_job

UNIQUE = b"".join(b"unique-%06d|" % i for i in range(4000))  # 52 KB no other file contains


@dataclass
class Setup:
    """A library and catalog after a full and an incremental backup of `src`."""

    root: Path
    library: str
    catalog: Path
    src: Path
    full: str
    inc: str


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    """Full backup (with a file of unique content), then an incremental after changes."""
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    library = make_library(tmp_path)
    src = tmp_path / "src"
    make_sample_tree(src, files=30)
    (src / "unique.bin").write_bytes(UNIQUE)
    os.symlink("unique.bin", src / "link")
    catalog = tmp_path / "catalog" / "catalog.duckdb"
    (full,) = run_job(catalog, "job-full", src, library, "full")
    (src / "dir0" / "sub0" / "file0000.dat").write_bytes(b"changed")
    (src / "dir1" / "sub1" / "file0001.dat").unlink()
    (src / "new.txt").write_bytes(b"new")
    (inc,) = run_job(catalog, "job-inc", src, library, "incremental")
    yield Setup(tmp_path, library, catalog, src, full, inc)


def _data_file(setup: Setup, barcode: str) -> Path:
    return setup.root / "lib" / "cartridges" / barcode / "data"


def test_verify_clean(setup: Setup) -> None:
    """Both sessions verify; the incremental's 'deleted' row is not expected on tape."""
    with Catalog(setup.catalog) as cat:
        for sid in (setup.full, setup.inc):
            rows = session_files(cat, sid)
            on_tape = rows.filter(pc.not_equal(rows["type"], "deleted")).num_rows
            result = verify_session(cat, setup.library, sid)
            assert result.clean, result.problems[:5]
            assert result.checked == result.ok == on_tape


def test_verify_finds_corrupted_member(setup: Setup) -> None:
    """Flip one byte of unique.bin's content in the cartridge's data file: exactly that member
    is reported as a checksum mismatch, everything else verifies."""
    with Catalog(setup.catalog) as cat:
        rows = session_files(cat, setup.full)
        row = rows.filter(pc.equal(rows["path"], "unique.bin")).to_pylist()[0]
        data = _data_file(setup, row["barcode"])
        blob = data.read_bytes()
        where = blob.find(UNIQUE)
        assert where > 0 and blob.find(UNIQUE, where + 1) == -1
        with open(data, "r+b") as fh:
            fh.seek(where + 1000)
            fh.write(bytes([blob[where + 1000] ^ 0xFF]))
        result = verify_session(cat, setup.library, setup.full)
        assert [(p.path, p.kind, p.detail) for p in result.problems] == [
            ("unique.bin", "mismatch", "checksum")
        ]
        assert result.problems[0].expected == row["checksum"]
        assert result.ok == result.checked - 1 == rows.num_rows - 1
        assert result.error is None
        assert verify_session(cat, setup.library, setup.inc).clean


def test_verify_bad_input(setup: Setup) -> None:
    """Unknown session; no tape file; no rows; a cartridge not in the library."""
    with Catalog(setup.catalog) as cat:
        with pytest.raises(SessionNotFound):
            verify_session(cat, setup.library, "s-nope")
        job = cat.create_job("backup", job_id="j-x")
        sid = cat.start_session(job, "src", session_id="s-notape")
        rows = session_files(cat, setup.inc).drop_columns(["session_id"])
        cat.add_session_rows(sid, rows)
        with pytest.raises(NoTapeRecorded):
            verify_session(cat, setup.library, sid)
        away = cat.start_session(job, "src", session_id="s-away")
        cat.add_media("ZZ0001L9", "default", labelled=True)
        cat.record_tape_file(away, "ZZ0001L9", 1)
        with pytest.raises(RowsUnavailable):
            verify_session(cat, setup.library, away)
        cat.add_session_rows(away, rows)
        with pytest.raises(CartridgeNotInLibrary):
            verify_session(cat, setup.library, away)


def test_verify_cut_tape_reports_unreadable(setup: Setup) -> None:
    """A cartridge whose data file lost its tail: the members not read are unreadable (a
    result, not an exception)."""
    with Catalog(setup.catalog) as cat:
        rows = session_files(cat, setup.full)
        barcode = rows["barcode"][0].as_py()
        index = setup.root / "lib" / "cartridges" / barcode / "index"
        raw = index.read_bytes()
        index.write_bytes(raw[: 24 * 4])  # keep label, filemark and two session records
        result = verify_session(cat, setup.library, setup.full)
        assert not result.clean and result.error
        assert result.unreadable and result.ok + len(result.unreadable) == rows.num_rows


def test_compare_session_with_disk(setup: Setup) -> None:
    """The full against today's tree: changed, deleted and new files show; the incremental's
    chain matches the tree exactly; content comparison finds a same-size, same-mtime change."""
    with Catalog(setup.catalog) as cat:
        old = compare_session(cat, setup.full, setup.src, chain=False)
        assert old.missing == ["dir1/sub1/file0001.dat"]
        assert old.extra == ["new.txt"]
        changed = {d.path: d.fields for d in old.different}
        assert changed["dir0/sub0/file0000.dat"] == ("size", "mtime")
        assert set(changed) == {"dir0/sub0/file0000.dat"}
        now = compare_session(cat, setup.inc, setup.src)
        assert now.same, (now.missing, now.extra, now.different)
        target = setup.src / "unique.bin"
        st = target.stat()
        target.write_bytes(UNIQUE.replace(b"unique-000001", b"UNIQUE-000001"))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.chmod(setup.src / "new.txt", 0o600)
        shallow = compare_session(cat, setup.inc, setup.src)
        assert [(d.path, d.fields) for d in shallow.different] == [("new.txt", ("mode",))]
        deep = compare_session(cat, setup.inc, setup.src, content=True)
        assert {d.path: d.fields for d in deep.different} == {
            "unique.bin": ("content",),
            "new.txt": ("mode",),
        }


def test_compare_bad_input(setup: Setup) -> None:
    """Unknown session, missing source directory."""
    with Catalog(setup.catalog) as cat:
        with pytest.raises(SessionNotFound):
            compare_session(cat, "s-nope", setup.src)
        with pytest.raises(SourceMissing):
            compare_session(cat, setup.full, setup.root / "nowhere")
