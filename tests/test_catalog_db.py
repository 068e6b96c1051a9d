"""Catalog DuckDB file: creation, migration, records, transactions, and the locked/corrupt/
missing cases (typed errors, the user's file never touched)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapeflow.catalog import (
    Catalog,
    CatalogCorrupt,
    CatalogError,
    CatalogLocked,
    CatalogVersionError,
    NewSession,
    NotFound,
    SessionEnd,
    SessionNotFound,
    TapePiece,
)
from tapeflow.catalog.migrations import SCHEMA_VERSION

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def test_create_reopen_and_version(tmp_path: Path) -> None:
    """A new catalog is created at the current schema version and reopens (also read-only)."""
    path = tmp_path / "cat" / "catalog.duckdb"
    with Catalog(path) as cat:
        assert cat.schema_version == SCHEMA_VERSION
        cat.set_pool("weekly", 35, append=False)
        job = cat.create_job("backup", level="full", pool="weekly", parameters={"a": 1})
    with Catalog(path) as cat:
        assert cat.job(job)["parameters"] == {"a": 1}
        assert cat.execute("SELECT name, retention_days, append FROM pools") == [
            ("weekly", 35, False)
        ]
    with Catalog(path, read_only=True) as cat:
        assert cat.job(job)["state"] == "running"
    assert (tmp_path / "cat" / "files" / "_schema.parquet").exists()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A catalog written by newer software is refused, not downgraded."""
    path = tmp_path / "catalog.duckdb"
    Catalog(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE catalog_meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(CatalogVersionError, match="999"):
        Catalog(path)


def test_jobs_sessions_media_drives_events(tmp_path: Path) -> None:
    """Relational records round-trip: jobs, sessions, spanning media, drives, events."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        cat.set_pool("daily", 14)
        cat.add_media("A00001L8", "daily", capacity=10**12, location="slot 3")
        cat.add_media("A00002L8", "daily")
        job = cat.create_job("backup", level="full", started=T0)
        sid = cat.start_session(job, "host:/data", started=T0, session_id="s1")
        assert cat.record_tape_file(sid, "A00001L8", 1, bytes=100, when=T0) == 0
        assert cat.record_tape_file(sid, "A00002L8", 1, bytes=50, when=T0) == 1  # spans
        cat.finish_session(sid, "complete", files=10, bytes=150)
        cat.finish_job(job, "complete")
        session = cat.session(sid)
        assert (session["first_barcode"], session["first_tape_file"]) == ("A00001L8", 1)
        assert (session["state"], session["files"], session["bytes"]) == ("complete", 10, 150)
        medium = cat.medium("A00001L8")
        assert (medium["sessions"], medium["bytes_used"], medium["state"]) == (1, 100, "labelled")
        assert medium["last_write"] == T0
        cat.update_media("A00001L8", location="vault")
        assert cat.medium("A00001L8")["location"] == "vault"
        with pytest.raises(CatalogError):
            cat.update_media("A00001L8", sessions=7)
        cat.set_drive("lib0", 0, serial="S0")
        cat.set_drive("lib0", 1, online=False)
        cat.set_drive("lib0", 0, online=False)
        drives = cat.drives("lib0")
        assert [(d["number"], d["online"], d["serial"]) for d in drives] == [
            (0, False, "S0"),
            (1, False, None),
        ]
        cat.log("hello", job_id=job)
        cat.log("bad", level="error", session_id=sid)
        assert [e["message"] for e in cat.events(job_id=job)] == ["hello"]
        assert [e["level"] for e in cat.events()] == ["info", "error"]
        running = cat.start_session(job, "host:/other")
        assert cat.mark_running_partial(job) == 1
        assert cat.session(running)["state"] == "partial"
        assert [s["id"] for s in cat.sessions(source="host:/data")] == ["s1"]


def test_unknown_ids_raise_typed_errors(tmp_path: Path) -> None:
    """Unknown ids and bad arguments raise typed errors, before anything is written."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        with pytest.raises(SessionNotFound, match="nope"):
            cat.session("nope")
        with pytest.raises(NotFound):
            cat.job("nope")
        with pytest.raises(NotFound):
            cat.medium("NOPE01")
        job = cat.create_job("backup")
        with pytest.raises(SessionNotFound):
            cat.start_session(job, "src", level="incremental", base_session="missing")
        with pytest.raises(CatalogError, match="invalid session id"):
            cat.start_session(job, "src", session_id="../escape")
        with pytest.raises(CatalogError, match="level"):
            cat.start_session(job, "src", level="weekly")
        with pytest.raises(SessionNotFound):
            cat.finish_session("missing", "complete")


def test_sessions_started_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """start_sessions records many sessions in batched statements, in order, all or none."""
    import tapeflow.catalog.catalog as catalog_module

    monkeypatch.setattr(catalog_module, "SESSION_BATCH", 2)
    with Catalog(tmp_path / "c.duckdb") as cat:
        job = cat.create_job("backup")
        full = cat.start_session(job, "base")
        new = [NewSession(f"s{i}") for i in range(4)]
        new.append(NewSession("inc", level="incremental", base_session=full, session_id="s-mine"))
        ids = cat.start_sessions(job, new, started=T0)
        assert ids[-1] == "s-mine" and len(set(ids)) == 5
        rows = {s["id"]: s for s in cat.sessions(job_id=job)}
        assert [rows[i]["source"] for i in ids] == ["s0", "s1", "s2", "s3", "inc"]
        assert {rows[i]["state"] for i in ids} == {"running"}
        assert rows["s-mine"]["base_session"] == full and rows["s-mine"]["level"] == "incremental"
        with pytest.raises(SessionNotFound):
            cat.start_sessions(job, [NewSession("a"), NewSession("b", base_session="s-gone")])
        with pytest.raises(CatalogError, match="unknown level"):
            cat.start_sessions(job, [NewSession("a"), NewSession("b", level="weekly")])
        with pytest.raises(NotFound):
            cat.start_sessions("j-none", [NewSession("a")])
        assert len(cat.sessions(job_id=job)) == 6  # the refused calls recorded nothing


def test_transaction_rolls_back(tmp_path: Path) -> None:
    """A failed transaction (nested blocks included) leaves no trace."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        with pytest.raises(RuntimeError), cat.transaction():
            cat.create_job("backup", job_id="j1")
            with cat.transaction():  # nested joins the outer one
                cat.create_job("backup", job_id="j2")
            raise RuntimeError("boom")
        assert cat.execute("SELECT count(*) FROM jobs") == [(0,)]
        with cat.transaction():
            cat.create_job("backup", job_id="j3")
        assert cat.execute("SELECT id FROM jobs") == [("j3",)]


HOLDER = textwrap.dedent(
    """
    import sys
    from tapeflow.catalog import Catalog
    with Catalog(sys.argv[1]):
        print("ready", flush=True)
        sys.stdin.read()
    """
)


def _hold(path: Path) -> subprocess.Popen[str]:
    """Another process holding the catalog open until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)


def test_locked_by_another_process(tmp_path: Path) -> None:
    """A second process holding the DuckDB file makes opening raise CatalogLocked once the
    lock wait is over (at once with no wait, read-only too)."""
    path = tmp_path / "catalog.duckdb"
    Catalog(path).close()
    holder = _hold(path)
    try:
        with pytest.raises(CatalogLocked, match="locked"):
            Catalog(path, lock_wait=0)
        with pytest.raises(CatalogLocked, match="locked"):
            Catalog(path, read_only=True, lock_wait=0)
        start = time.monotonic()
        with pytest.raises(CatalogLocked, match="locked"):
            Catalog(path, lock_wait=0.5)
        assert time.monotonic() - start >= 0.5
    finally:
        _release(holder)
    with Catalog(path) as cat:  # released with the other process
        assert cat.schema_version == SCHEMA_VERSION


def test_open_waits_for_a_brief_holder(tmp_path: Path) -> None:
    """A reader holding the file for a moment (a `find` during a backup) delays a writer's
    open instead of failing it: the master's record of a slave must not be lost to it."""
    path = tmp_path / "catalog.duckdb"
    Catalog(path).close()
    holder = _hold(path)
    timer = threading.Timer(1.0, _release, args=(holder,))
    timer.start()
    try:
        start = time.monotonic()
        with Catalog(path, lock_wait=30) as cat:
            waited = time.monotonic() - start
            assert cat.schema_version == SCHEMA_VERSION
        assert 0.9 <= waited < 30
    finally:
        timer.join()


@pytest.mark.parametrize("content", [b"", b"not a database at all\n" * 500])
def test_not_a_database_is_left_untouched(tmp_path: Path, content: bytes) -> None:
    """A file that is not DuckDB raises CatalogCorrupt and keeps its bytes."""
    path = tmp_path / "catalog.duckdb"
    path.write_bytes(content)
    with pytest.raises(CatalogCorrupt, match="left untouched"):
        Catalog(path)
    assert path.read_bytes() == content


def test_damaged_database_is_reported(tmp_path: Path) -> None:
    """Damaged blocks surface as CatalogCorrupt; the file is not rewritten."""
    path = tmp_path / "catalog.duckdb"
    with Catalog(path) as cat:
        job = cat.create_job("backup")
        for k in range(200):
            cat.log(f"event {k} " + "x" * 2000, job_id=job)
        cat.execute("CHECKPOINT")
    data = bytearray(path.read_bytes())
    data[12288:] = b"\xa5" * (len(data) - 12288)  # every block after the file headers
    path.write_bytes(bytes(data))
    damaged = bytes(data)
    with pytest.raises(CatalogCorrupt):
        with Catalog(path) as cat:
            cat.events(limit=5000)
    assert path.read_bytes() == damaged


def test_truncated_database_is_reported(tmp_path: Path) -> None:
    """A truncated catalog surfaces as CatalogCorrupt; the file is not rewritten."""
    path = tmp_path / "catalog.duckdb"
    with Catalog(path) as cat:
        for k in range(100):
            cat.log(f"event {k} " + "y" * 3000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CatalogCorrupt):
        with Catalog(path) as cat:
            cat.events(limit=5000)
    assert len(path.read_bytes()) == len(data) // 2


def test_directory_path_is_refused(tmp_path: Path) -> None:
    """Pointing the catalog at a directory is a clear error."""
    with pytest.raises(CatalogError, match="directory"):
        Catalog(tmp_path)


PIECES = st.lists(
    st.tuples(st.sampled_from(["s0", "s1", "s2"]), st.sampled_from(["A1", "A2"])),
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=PIECES, batch=PIECES)
def test_tape_files_recorded_together_as_one_by_one(
    tmp_path_factory: pytest.TempPathFactory, before: list, batch: list
) -> None:
    """record_tape_files with many pieces leaves the catalog as recording them one at a time
    does: sequences per session, first cartridge, each cartridge counting a session once.
    Both ways run in one catalog, on their own sessions and cartridges (prefixed T and O)."""

    def record(cat: Catalog, job: str, way: str) -> tuple:
        for barcode in ("A1", "A2"):
            cat.add_media(way + barcode, None)
        for sid in ("s0", "s1", "s2"):
            cat.start_session(job, sid, session_id=way + sid)
        for n, (sid, barcode) in enumerate(before):
            cat.record_tape_file(way + sid, way + barcode, n, bytes=n + 1, when=T0)
        pieces = [TapePiece(way + sid, way + b, 50 + n, n * 10) for n, (sid, b) in enumerate(batch)]
        if way == "T":
            sequences = cat.record_tape_files(pieces, when=T0)
        else:
            sequences = [cat.record_tape_file(*p[:3], bytes=p.bytes, when=T0) for p in pieces]
        mine = [f"{way}%"]
        return (
            sequences,
            cat.execute(
                "SELECT substr(session_id, 2), sequence, substr(barcode, 2), tape_file, bytes "
                "FROM media_sessions WHERE session_id LIKE ? ORDER BY session_id, sequence",
                mine,
            ),
            cat.execute(
                "SELECT substr(id, 2), substr(first_barcode, 2), first_tape_file FROM sessions "
                "WHERE id LIKE ? ORDER BY id",
                mine,
            ),
            cat.execute(
                "SELECT substr(barcode, 2), sessions, bytes_used, last_write, state FROM media "
                "WHERE barcode LIKE ? ORDER BY barcode",
                mine,
            ),
        )

    with Catalog(tmp_path_factory.mktemp("pieces") / "c.duckdb") as cat:
        job = cat.create_job("backup")
        together = record(cat, job, "T")
        assert together == record(cat, job, "O")
    pieces = [(sid, b, n, n + 1) for n, (sid, b) in enumerate(before)]
    pieces += [(sid, b, 50 + n, n * 10) for n, (sid, b) in enumerate(batch)]
    sequence = {sid: [n for n, p in enumerate(pieces) if p[0] == sid] for sid in ("s0", "s1", "s2")}
    assert together[0] == [sequence[sid].index(len(before) + n) for n, (sid, _) in enumerate(batch)]
    first = {sid: next((p for p in pieces if p[0] == sid), None) for sid in ("s0", "s1", "s2")}
    assert together[2] == [
        (sid, p[1], p[2]) if p else (sid, None, None) for sid, p in sorted(first.items())
    ]
    assert [m[:3] for m in together[3]] == [
        (b, len({p[0] for p in pieces if p[1] == b}), sum(p[3] for p in pieces if p[1] == b))
        for b in ("A1", "A2")
    ]


def test_batched_session_records_check_every_id_first(tmp_path: Path) -> None:
    """The batch writes of a master's record check every session and cartridge before writing
    anything: one unknown id leaves the others untouched."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        job = cat.create_job("backup")
        cat.add_media("A1", None)
        sid = cat.start_session(job, "src")
        with pytest.raises(SessionNotFound, match="missing"):
            cat.finish_sessions(
                [SessionEnd(sid, "complete", 1, 2), SessionEnd("missing", "failed")]
            )
        with pytest.raises(SessionNotFound, match="missing"):
            cat.record_tape_files([TapePiece(sid, "A1", 1), TapePiece("missing", "A1", 2)])
        with pytest.raises(NotFound, match="B9"):
            cat.record_tape_files([TapePiece(sid, "A1", 1), TapePiece(sid, "B9", 2)])
        with pytest.raises(SessionNotFound, match="missing"):
            cat.register_sessions_rows([sid, "missing"])
        with pytest.raises(CatalogError, match="state"):
            cat.finish_sessions([SessionEnd(sid, "complete"), SessionEnd(sid, "done")])
        assert cat.session(sid)["state"] == "running"
        assert cat.execute("SELECT count(*) FROM media_sessions") == [(0,)]
        assert cat.medium("A1")["sessions"] == 0
        cat.finish_sessions([SessionEnd(sid, "partial", 3, None), SessionEnd(sid, "failed")])
        session = cat.session(sid)
        assert (session["state"], session["files"]) == ("failed", 3)  # the later end wins
