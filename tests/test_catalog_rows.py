"""Per-session Parquet rows: written without the DuckDB lock (also from another process),
validated, registered, and a damaged file set aside while the other sessions still answer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.catalog import (
    FILE_SCHEMA,
    Catalog,
    CatalogError,
    CorruptRowsWarning,
    RowsInvalid,
    RowsUnavailable,
    SessionNotFound,
    path_versions,
    rows,
    session_files,
    tree_at,
    write_session_rows,
)
from tapeflow.catalog.synth import file_rows

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def _session(cat: Catalog, sid: str, source: str = "src") -> str:
    """Record a job and a running session with a chosen id."""
    job = cat.create_job("backup", started=T0)
    return cat.start_session(job, source, session_id=sid, started=T0)


def test_rows_sorted_typed_and_registered(tmp_path: Path) -> None:
    """Rows from batches land sorted by path, typed as FILE_SCHEMA, and registered."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        sid = _session(cat, "s1")
        entries = [{"path": p, "size": i} for i, p in enumerate(["b", "a/z", "a", "a.b", "c"])]
        batch = file_rows("s1", entries).to_batches()[0]
        info = cat.add_session_rows(sid, [batch])
        assert info.rows == 5 and info.path == tmp_path / "files" / "s1.parquet"
        stored = pq.read_table(info.path)
        assert stored.schema.equals(FILE_SCHEMA)
        assert stored["path"].to_pylist() == ["a", "a.b", "a/z", "b", "c"]  # byte order
        assert session_files(cat, sid)["size"].to_pylist() == [2, 3, 1, 0, 4]
        row = cat.session(sid)
        assert (row["rows_state"], row["row_count"]) == ("present", 5)
        assert not list((tmp_path / "files").glob(".*tmp"))


def test_rows_fill_nullable_and_reject_bad_input(tmp_path: Path) -> None:
    """Missing nullable columns become nulls; wrong ids, types or columns are refused."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        sid = _session(cat, "s1")
        minimal = pa.table(
            {
                "path": ["x"],
                "type": ["file"],
                "size": [1],
                "mtime": pa.array([T0], pa.timestamp("us", tz="UTC")),
            }
        )
        assert cat.add_session_rows(sid, minimal).rows == 1
        assert session_files(cat, sid)["checksum"].to_pylist() == [None]
        with pytest.raises(RowsInvalid, match="other session"):
            cat.add_session_rows(sid, file_rows("s2", [{"path": "x", "size": 1}]))
        with pytest.raises(RowsInvalid, match="unknown type"):
            cat.add_session_rows(sid, file_rows(sid, [{"path": "x", "size": 1, "type": "fifo"}]))
        with pytest.raises(RowsInvalid, match="lack"):
            cat.add_session_rows(sid, minimal.drop_columns(["size"]))
        with pytest.raises(SessionNotFound):
            cat.add_session_rows("ghost", minimal)
        assert not (tmp_path / "files" / "ghost.parquet").exists()
        with pytest.raises(CatalogError, match="invalid session id"):
            write_session_rows(tmp_path / "files", "../../etc/x", minimal)
        empty = cat.add_session_rows(_session(cat, "s3"), [])
        assert empty.rows == 0


def test_register_checks_the_file(tmp_path: Path) -> None:
    """Registering checks the file exists and holds only that session."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        sid = _session(cat, "s1")
        with pytest.raises(RowsInvalid, match="no Parquet rows"):
            cat.register_session_rows(sid)
        pq.write_table(file_rows("other", [{"path": "a", "size": 1}]), cat.rows_path(sid))
        with pytest.raises(RowsInvalid, match="other sessions"):
            cat.register_session_rows(sid)
        assert cat.session(sid)["rows_state"] == "none"


SLAVE = textwrap.dedent(
    """
    import sys
    from tapeflow.catalog import write_session_rows
    from tapeflow.catalog.synth import file_rows
    files_dir, sid = sys.argv[1], sys.argv[2]
    rows = file_rows(sid, [{"path": f"d/f{i}", "size": i} for i in range(100)])
    print(write_session_rows(files_dir, sid, rows).rows)
    """
)


def test_slave_process_writes_while_master_holds_lock(tmp_path: Path) -> None:
    """Another process writes a session file while the master holds the DuckDB lock."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        sid = _session(cat, "s-slave")
        done = subprocess.run(
            [sys.executable, "-c", SLAVE, str(cat.files_dir), sid],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout.strip() == "100"
        assert cat.register_session_rows(sid).rows == 100
        assert path_versions(cat, "d/f7")["size"].to_pylist() == [7]


def _damage(path: Path) -> None:
    """Overwrite the middle of a Parquet file (data pages), keeping its footer."""
    data = bytearray(path.read_bytes())
    data[4 : len(data) // 2] = b"\x00" * (len(data) // 2 - 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["pages", "truncated"])
def test_corrupt_session_file_is_set_aside(tmp_path: Path, how: str) -> None:
    """A damaged session file is renamed aside, reported, and the others still answer."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        for k in range(3):
            sid = _session(cat, f"s{k}")
            rows = [{"path": "same/file", "size": k, "checksum": f"sha256:{k}"}]
            rows += [{"path": f"other/{i}", "size": i} for i in range(2000)]
            cat.add_session_rows(sid, file_rows(sid, rows))
        bad = cat.rows_path("s1")
        original_size = bad.stat().st_size
        if how == "pages":
            _damage(bad)
        else:
            bad.write_bytes(bad.read_bytes()[:100])
        kept = bad.read_bytes()
        assert set(cat.check_rows()) == {"s1"}
        with pytest.warns(CorruptRowsWarning, match="s1"):
            versions = path_versions(cat, "same/file")
        assert versions["session_id"].to_pylist() == ["s0", "s2"]
        aside = bad.with_name("s1.parquet.corrupt")
        assert aside.read_bytes() == kept and not bad.exists()
        assert original_size > 0
        assert cat.session("s1")["rows_state"] == "corrupt"
        assert any("s1" in e["message"] and e["level"] == "error" for e in cat.events())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert path_versions(cat, "same/file").num_rows == 2  # no more warnings
        with pytest.raises(RowsUnavailable, match="s1 \\(corrupt\\)"):
            session_files(cat, "s1")
        with pytest.raises(SessionNotFound):
            session_files(cat, "missing")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="ab/.-é", max_size=6), max_size=300))
def test_parallel_sorted_parts_equal_a_sort(paths: list[str]) -> None:
    """The pipelined range-partitioned sort yields exactly the stable sort by path."""
    table = pa.table({"path": paths, "n": list(range(len(paths)))})
    original = rows.ROW_GROUP_ROWS
    rows.ROW_GROUP_ROWS = 16
    try:
        parts = list(rows._sorted_parts(table)) if paths else [table]
    finally:
        rows.ROW_GROUP_ROWS = original
    merged = pa.concat_tables(parts)
    expected = table.sort_by("path") if paths else table
    assert merged.to_pylist() == expected.to_pylist()


def test_large_unsorted_session_is_written_sorted(tmp_path: Path) -> None:
    """A large unsorted session goes through the parallel sort and is stored sorted."""
    n = 2 * rows.ROW_GROUP_ROWS + 5000
    ids = pa.array(range(n), pa.int64())
    shuffled = pc.cast(pc.subtract(pa.scalar(n - 1, pa.int64()), ids), pa.string())  # reversed
    table = pa.table(
        {
            "path": pc.binary_join_element_wise("d", shuffled, "/"),
            "type": pa.repeat("file", n).cast(pa.string()),
            "size": ids,
            "mtime": pa.repeat(pa.scalar(T0, pa.timestamp("us", tz="UTC")), n),
        }
    )
    info = write_session_rows(tmp_path / "files", "big", table)
    stored = pq.read_table(info.path)
    assert stored.num_rows == n and info.rows == n
    stored_paths = stored["path"]
    assert pc.all(pc.less_equal(stored_paths.slice(0, n - 1), stored_paths.slice(1))).as_py()
    assert pc.sum(stored["size"]).as_py() == n * (n - 1) // 2


def test_files_view_and_chain_with_corrupt_member(tmp_path: Path) -> None:
    """The `files` view joins rows to their sessions; a restore chain with a damaged member
    fails with RowsUnavailable instead of answering with a hole."""
    with Catalog(tmp_path / "c.duckdb") as cat:
        full = _session(cat, "full1")
        cat.add_session_rows(full, file_rows(full, [{"path": "a", "size": 1}]))
        cat.finish_session(full, "complete")
        job = cat.create_job("backup")
        inc = cat.start_session(
            job,
            "src",
            level="incremental",
            base_session=full,
            session_id="inc1",
            started=T0 + timedelta(days=1),
        )
        cat.add_session_rows(inc, file_rows(inc, [{"path": "b", "size": 2}]))
        cat.finish_session(inc, "complete")
        view = cat.arrow("SELECT path, session_id, source, session_state FROM files ORDER BY path")
        assert view.to_pylist() == [
            {"path": "a", "session_id": "full1", "source": "src", "session_state": "complete"},
            {"path": "b", "session_id": "inc1", "source": "src", "session_state": "complete"},
        ]
        assert tree_at(cat, "src")["path"].to_pylist() == ["a", "b"]
        with pytest.raises(CatalogError, match="nonexistent"):  # a bad statement moves nothing
            cat.arrow("SELECT nonexistent FROM files")
        assert cat.session("full1")["rows_state"] == "present"
        _damage(cat.rows_path(full))
        with pytest.raises(RowsUnavailable, match="full1"):
            tree_at(cat, "src")
        assert cat.session("full1")["rows_state"] == "corrupt"
        with pytest.raises(RowsUnavailable, match="full1 \\(corrupt\\)"):
            tree_at(cat, "src")
        assert cat.arrow("SELECT path FROM files")["path"].to_pylist() == ["b"]
