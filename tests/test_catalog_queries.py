"""Catalog queries: versions of a path, tree as of T (deletions, chains, partial sessions),
what an incremental/differential must write, media contents and expiry, prune and reformat."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapeflow.catalog import (
    Catalog,
    NotFound,
    RowsUnavailable,
    expiring_media,
    media_contents,
    path_versions,
    plan_backup,
    prune,
    reformat_media,
    restore_chain,
    session_files,
    session_media,
    tree_at,
)
from tapeflow.catalog.synth import file_rows, plan_rows

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
TS = pa.timestamp("us", tz="UTC")


def live(entries: dict[str, tuple[int, int]], **extra: list) -> pa.Table:
    """A live listing: path -> (size, mtime seconds after T0)."""
    paths = sorted(entries)
    return pa.table(
        {
            "path": paths,
            "size": [entries[p][0] for p in paths],
            "mtime": pa.array([T0 + timedelta(seconds=entries[p][1]) for p in paths], TS),
            **extra,
        }
    )


def backup(
    cat: Catalog,
    entries: dict[str, tuple[int, int]],
    level: str,
    at: datetime,
    *,
    state: str = "complete",
    source: str = "src",
    sid: str | None = None,
) -> str:
    """Plan, write and record one session the way a slave and the master would."""
    plan = plan_backup(cat, source, live(entries), level)
    job = cat.create_job("backup", level=plan.level, started=at)
    sid = cat.start_session(
        job, source, level=plan.level, base_session=plan.base_session, started=at, session_id=sid
    )
    cat.add_session_rows(sid, plan_rows(plan, sid, at))
    cat.finish_session(sid, state, ended=at + timedelta(hours=1))
    return sid


def tree(cat: Catalog, at: datetime | None = None, prefix: str = "") -> dict[str, int]:
    """tree_at as {path: size}."""
    table = tree_at(cat, "src", at, prefix=prefix)
    return dict(zip(table["path"].to_pylist(), table["size"].to_pylist(), strict=True))


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    """A fresh catalog in the test directory."""
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        yield catalog


def test_path_versions(cat: Catalog) -> None:
    """All versions of a path come back in time order with their tape positions."""
    cat.set_pool("p", 7)
    cat.add_media("T1", "p")
    job = cat.create_job("backup", started=T0)
    for k in range(3):
        sid = cat.start_session(job, "src", started=T0 + k * DAY, session_id=f"s{k}")
        row = {"path": "etc/hosts", "size": 10 + k, "checksum": f"sha256:{k}", "barcode": "T1"}
        row |= {"tape_file": k + 1, "block": 100 * k, "offset": 512}
        cat.add_session_rows(sid, file_rows(sid, [row, {"path": "etc/other", "size": 1}]))
        cat.finish_session(sid, "complete")
    other = cat.start_session(job, "elsewhere", started=T0, session_id="x0")
    cat.add_session_rows(other, file_rows(other, [{"path": "etc/hosts", "size": 99}]))
    versions = path_versions(cat, "etc/hosts", source="src")
    assert versions["session_id"].to_pylist() == ["s0", "s1", "s2"]
    assert versions["size"].to_pylist() == [10, 11, 12]
    assert versions["tape_file"].to_pylist() == [1, 2, 3]
    assert versions["block"].to_pylist() == [0, 100, 200]
    assert versions["offset"].to_pylist() == [512] * 3
    assert versions["barcode"].to_pylist() == ["T1"] * 3
    assert versions["checksum"].to_pylist() == ["sha256:0", "sha256:1", "sha256:2"]
    assert versions["job_id"].to_pylist() == [job] * 3
    assert versions["session_started"].to_pylist() == [T0, T0 + DAY, T0 + 2 * DAY]
    assert path_versions(cat, "/etc/hosts").num_rows == 4  # leading '/' tolerated
    assert path_versions(cat, "etc/none").num_rows == 0


def test_tree_at_with_incrementals_and_deletions(cat: Catalog) -> None:
    """Tree as of T merges the chain, honours 'deleted' rows and ignores partial sessions."""
    fs = {"a": (0, 0), "a/x": (1, 0), "a/y": (2, 0), "ab": (3, 0), "b/z": (4, 0)}
    full = backup(cat, fs, "full", T0)
    fs2 = dict(fs, **{"a/x": (11, 5), "c": (5, 5)})
    del fs2["a/y"]
    inc = backup(cat, fs2, "incremental", T0 + DAY)
    assert cat.session(inc)["base_session"] == full
    assert tree(cat, T0 + DAY / 2) == {p: s for p, (s, _) in fs.items()}
    assert tree(cat, T0 + DAY) == {p: s for p, (s, _) in fs2.items()}
    assert tree(cat, T0 + DAY, "a") == {"a": 0, "a/x": 11}  # not 'ab'
    assert tree(cat, T0 + DAY, "/a/") == {"a": 0, "a/x": 11}
    assert tree(cat, T0 - DAY) == {}
    kinds = dict(zip(*session_files(cat, inc).select(["path", "type"]).columns, strict=True))
    assert {k.as_py(): v.as_py() for k, v in kinds.items()} == {
        "a/x": "file",
        "a/y": "deleted",
        "c": "file",
    }
    # a partial session is never part of a tree, nor a base
    fs3 = dict(fs2, d=(9, 9))
    backup(cat, fs3, "incremental", T0 + 2 * DAY, state="partial")
    assert tree(cat) == {p: s for p, (s, _) in fs2.items()}
    inc2 = backup(cat, fs3, "incremental", T0 + 3 * DAY)
    assert cat.session(inc2)["base_session"] == inc
    assert restore_chain(cat, inc2) == [full, inc, inc2]
    assert tree(cat) == {p: s for p, (s, _) in fs3.items()}


def test_differential_chain_skips_intermediate_incrementals(cat: Catalog) -> None:
    """A differential is based on the full, so its tree skips incrementals in between."""
    full = backup(cat, {"a": (1, 0)}, "full", T0)
    backup(cat, {"a": (1, 0), "tmp": (1, 1)}, "incremental", T0 + DAY)
    diff_fs = {"a": (2, 2)}  # tmp came and went since the full
    diff = backup(cat, diff_fs, "differential", T0 + 2 * DAY)
    row = cat.session(diff)
    assert (row["level"], row["base_session"]) == ("differential", full)
    assert restore_chain(cat, diff) == [full, diff]
    assert tree(cat) == {"a": 2}
    assert session_files(cat, diff)["path"].to_pylist() == ["a"]


def test_plan_backup_kinds_of_change(cat: Catalog) -> None:
    """New, changed (size, mtime, ctime, inode) and deleted paths against the base tree."""
    entries = {"same": (1, 0), "size": (1, 0), "mtime": (1, 0), "ctime": (1, 0), "gone": (1, 0)}
    ctimes = pa.array([T0] * 5, TS)
    inodes = pa.array([1, 2, 3, 4, 5], pa.uint64())
    first = plan_backup(cat, "src", live(entries, ctime=ctimes, inode=inodes), "incremental")
    assert first.level == "full" and first.base_session is None  # nothing to compare with
    job = cat.create_job("backup", started=T0)
    sid = cat.start_session(job, "src", started=T0)
    cat.add_session_rows(sid, plan_rows(first, sid, T0))
    cat.finish_session(sid, "complete")
    now = dict(entries, size=(2, 0), mtime=(1, 9), new=(1, 0))
    del now["gone"]
    paths = sorted(now)  # ctime, mtime, new, same, size
    ctimes = pa.array([T0 + DAY if p == "ctime" else T0 for p in paths], TS)
    inodes = pa.array(
        [{"new": 9}.get(p, 1 + sorted(entries).index(p) if p in entries else 0) for p in paths],
        pa.uint64(),
    )
    for level in ("incremental", "differential"):
        plan = plan_backup(cat, "src", live(now, ctime=ctimes, inode=inodes), level)
        assert (plan.level, plan.base_session) == (level, sid)
        assert plan.new["path"].to_pylist() == ["new"]
        assert plan.changed["path"].to_pylist() == ["ctime", "mtime", "size"]
        assert plan.deleted["path"].to_pylist() == ["gone"]
        assert plan.unchanged == 1
    moved = [9 if p == "same" else i for p, i in zip(paths, inodes.to_pylist(), strict=True)]
    plan = plan_backup(cat, "src", live(now, inode=pa.array(moved, pa.uint64())), "incremental")
    assert "same" in plan.changed["path"].to_pylist()
    full = plan_backup(cat, "src", live(now), "full")
    assert full.new.num_rows == 5 and full.deleted.num_rows == 0


def test_media_contents_and_expiry(cat: Catalog) -> None:
    """Cartridge contents in tape-file order, span order, and expiry by pool retention."""
    cat.set_pool("daily", 7)
    cat.set_pool("archive", 3650)
    for barcode, pool in [("D1", "daily"), ("D2", "daily"), ("A1", "archive"), ("E1", "daily")]:
        cat.add_media(barcode, pool)
    job = cat.create_job("backup", started=T0)
    s1 = cat.start_session(job, "src", started=T0, session_id="s1")
    s2 = cat.start_session(job, "src", started=T0, session_id="s2")
    cat.record_tape_file(s1, "D1", 1, bytes=10, when=T0)
    cat.record_tape_file(s2, "D1", 2, bytes=10, when=T0 + DAY)
    cat.record_tape_file(s2, "D2", 1, bytes=5, when=T0 + DAY)
    cat.record_tape_file(s1, "A1", 1, when=T0)
    contents = media_contents(cat, "D1")
    assert contents["session_id"].to_pylist() == ["s1", "s2"]
    assert contents["tape_file"].to_pylist() == [1, 2]
    assert session_media(cat, "s2").to_pylist() == [
        {"sequence": 0, "barcode": "D1", "tape_file": 2, "bytes": 10},
        {"sequence": 1, "barcode": "D2", "tape_file": 1, "bytes": 5},
    ]
    with pytest.raises(NotFound):
        media_contents(cat, "ZZ")
    assert expiring_media(cat, T0 + 7 * DAY).num_rows == 0
    due = expiring_media(cat, T0 + 8 * DAY)
    assert due["barcode"].to_pylist() == ["D1", "D2"]  # E1 never written, A1 kept 10 years
    assert due["expiry"].to_pylist() == [T0 + 8 * DAY, T0 + 8 * DAY]
    cat.update_media("A1", expiry=T0 + 2 * DAY)  # an explicit expiry wins
    assert expiring_media(cat, T0 + 3 * DAY)["barcode"].to_pylist() == ["A1"]
    assert expiring_media(cat, T0 + 9 * DAY, pool="archive")["barcode"].to_pylist() == ["A1"]


def test_prune_keeps_records_and_reports_missing_detail(cat: Catalog) -> None:
    """Prune drops old Parquet rows only; queries needing them say so."""
    old = backup(cat, {"a": (1, 0)}, "full", T0)
    new = backup(cat, {"a": (2, 0)}, "full", T0 + 40 * DAY)
    result = prune(cat, now=T0 + 45 * DAY)
    assert result.sessions == [old] and result.bytes_freed > 0
    assert not cat.rows_path(old).exists() and cat.rows_path(new).exists()
    row = cat.session(old)
    assert (row["rows_state"], row["state"]) == ("pruned", "complete")
    assert row["pruned_at"] == T0 + 45 * DAY
    assert path_versions(cat, "a")["session_id"].to_pylist() == [new]
    assert tree(cat) == {"a": 2}
    with pytest.raises(RowsUnavailable, match="pruned"):
        tree(cat, T0 + DAY)
    with pytest.raises(RowsUnavailable):
        session_files(cat, old)
    assert prune(cat, now=T0 + 45 * DAY).sessions == []  # idempotent
    assert prune(cat, keep_days=1, now=T0 + 45 * DAY).sessions == [new]


@pytest.mark.parametrize("drop_now", [True, False])
def test_reformat_drops_or_flags_rows(cat: Catalog, drop_now: bool) -> None:
    """A reformatted cartridge's sessions vanish from queries; rows drop now or at next prune."""
    cat.set_pool("p", 30)
    cat.add_media("T1", "p")
    cat.add_media("T2", "p")
    s1 = backup(cat, {"a": (1, 0)}, "full", T0, sid="s1")
    s2 = backup(cat, {"a": (2, 0)}, "full", T0 + DAY, sid="s2")
    cat.record_tape_file(s1, "T1", 1, bytes=10, when=T0)
    cat.record_tape_file(s2, "T2", 1, bytes=10, when=T0 + DAY)
    result = reformat_media(cat, "T2", drop_now=drop_now, now=T0 + 2 * DAY)
    medium = cat.medium("T2")
    assert (medium["sessions"], medium["bytes_used"], medium["last_write"]) == (0, 0, None)
    assert media_contents(cat, "T2").num_rows == 0
    assert cat.session(s2)["media_erased"] == T0 + 2 * DAY
    assert tree(cat) == {"a": 1}  # s2's tape is gone: the tree falls back to s1
    assert path_versions(cat, "a")["session_id"].to_pylist() == [s1]
    if drop_now:
        assert result.sessions == [s2] and not cat.rows_path(s2).exists()
        assert medium["reformat_pending"] is False
    else:
        assert medium["reformat_pending"] is True and cat.rows_path(s2).exists()
        assert prune(cat, now=T0 + 2 * DAY).sessions == [s2]  # young, but flagged
        assert cat.medium("T2")["reformat_pending"] is False
    assert cat.session(s2)["rows_state"] == "pruned"
    assert cat.session(s1)["rows_state"] == "present"


PATHS = ["a", "a/b", "a/b/c", "a/d", "ab", "b", "b/e"]
step = st.tuples(
    st.lists(st.tuples(st.sampled_from(PATHS), st.integers(-1, 3)), max_size=5),  # -1: delete
    st.sampled_from(["full", "differential", "incremental", "incremental"]),
    st.sampled_from(["complete", "complete", "complete", "partial", "failed"]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=7), st.sampled_from(["", "a", "a/b", "b"]))
def test_tree_at_matches_model(history: list, prefix: str) -> None:
    """Over random histories, tree_at(T) equals the filesystem at the latest complete
    session started by T (restricted to the prefix)."""
    with tempfile.TemporaryDirectory() as work, Catalog(Path(work) / "c.duckdb") as cat:
        fs: dict[str, tuple[int, int]] = {}
        snapshots: list[tuple[datetime, dict[str, int]]] = []
        for i, (ops, level, state) in enumerate(history):
            for path, size in ops:
                if size < 0:
                    fs.pop(path, None)
                else:
                    fs[path] = (size, i)  # a write changes mtime (and maybe size)
            at = T0 + i * DAY
            backup(cat, fs, level, at, state=state)
            if state == "complete":
                snapshots.append((at, {p: s for p, (s, _) in fs.items()}))

        def model(at: datetime) -> dict[str, int]:
            """Expected tree at `at` under the prefix, from the snapshots."""
            state = {}
            for when, snap in snapshots:
                if when <= at:
                    state = snap
            under = prefix + "/"
            return {
                p: s for p, s in state.items() if not prefix or p == prefix or p.startswith(under)
            }

        for i in range(len(history)):
            for at in (T0 + i * DAY, T0 + i * DAY + DAY / 2):
                assert tree(cat, at, prefix) == model(at)
