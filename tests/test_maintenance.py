"""Maintenance core on temp dirs and a real embedded library: count, purge, copy (bad input
leaves everything as it was, symlinks never lead outside), prune config, scan/merge under
leases, catalog backup to tape and recovery from the tapes alone as of a date, and the CLI."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tapeflow.backup.model import Source
from tapeflow.catalog import Catalog, path_versions, session_media
from tapeflow.catalog.synth import file_rows
from tapeflow.library import Library
from tapeflow.library.leases import LeaseBoard, LeaseTimeout
from tapeflow.maintenance import (
    CATALOG_SOURCE,
    BadInput,
    BadTarget,
    CatalogBackupDamaged,
    NoCatalogBackup,
    Progress,
    PruneConfig,
    SourceMissing,
    UnsafePath,
    backup_catalog,
    copy_tree,
    count_source,
    find_catalog_backups,
    leased_mounts,
    merge_cartridges,
    prune_catalog,
    purge,
    recover_catalog,
    scan_cartridges,
    scan_session,
)
from tapeflow.maintenance.safefs import DirFds
from tapeflow.maintenance_cli import add_commands
from tapeflow.sample import make_sample_tree, tree_digest
from tapeflow.vtl.errors import VtlError
from tests.test_scan_merge import make_library, run_job

DAY = 86400.0


def snapshot(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Everything under root, links not followed: type, mode, mtime, content or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, st.st_mtime_ns, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns, "")
            elif stat.S_ISREG(st.st_mode):
                content = path.read_bytes().hex() if st.st_size < 100_000 else str(st.st_size)
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, content)
            else:  # a fifo: never opened (that would block)
                out[rel] = ("other", stat.S_IMODE(st.st_mode), st.st_mtime_ns, "")
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small tree: files in dirs, an old file, a symlink out of the tree, a link to a dir,
    an empty dir, a read-only file, a fifo."""
    src = tmp_path / "src"
    make_sample_tree(src, files=12, seed=3)
    (src / "logs").mkdir()
    for i in range(3):
        (src / "logs" / f"app{i}.log").write_text(f"log {i}\n")
    old = time.time() - 40 * DAY
    os.utime(src / "logs" / "app0.log", (old, old))
    os.utime(src / "logs" / "app1.log", (old, old))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("never touch")
    os.symlink(outside, src / "out-link")
    os.symlink("dir0", src / "dir-link")
    (src / "empty").mkdir()
    (src / "ro.txt").write_text("read only")
    os.chmod(src / "ro.txt", 0o444)
    os.mkfifo(src / "pipe")
    return src


# --- count -----------------------------------------------------------------------------------
def test_count_with_globs_and_progress(tree: Path) -> None:
    seen: list[Progress] = []
    r = count_source(tree, on_progress=seen.append)
    assert (r.files, r.symlinks, r.other) == (12 + 3 + 1, 2, 1)
    assert r.dirs == sum(1 for p in tree.rglob("*") if p.is_dir() and not p.is_symlink())
    assert r.bytes == sum(
        p.stat().st_size
        for p in tree.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != "pipe"
    )
    assert seen[-1].phase == "done" and seen[-1].items == r.entries
    logs = count_source(tree, include=["logs/*.log"])
    assert logs.files == 3 and logs.symlinks == 0
    no_logs = count_source(Source("s", str(tree), exclude=("logs",)))
    assert no_logs.files == r.files - 3 and no_logs.dirs == r.dirs - 1


def test_count_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SourceMissing):
        count_source(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(SourceMissing):
        count_source(tmp_path / "f")
    with pytest.raises(BadInput, match="relative"):
        count_source(tmp_path, include=["/abs/*"])
    with pytest.raises(BadInput, match="volume"):
        count_source(Source("v", str(tmp_path / "img"), kind="volume"))


# --- purge -----------------------------------------------------------------------------------
def test_purge_dry_run_changes_nothing(tree: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    r = purge(tree, include=["logs/*"], older_than_days=30, remove_empty_dirs=True)
    assert r.dry_run and r.deleted == 0
    assert sorted(r.paths) == ["logs/app0.log", "logs/app1.log"]
    assert r.dirs_removed == 1  # 'empty'; logs/app2.log stays, so logs stays
    assert snapshot(tmp_path) == before


def test_purge_old_matching_files_and_empty_dirs(tree: Path, tmp_path: Path) -> None:
    r = purge(tree, include=["logs/*"], older_than_days=30, dry_run=False)
    assert r.deleted == 2 and not r.errors
    assert sorted(p.name for p in (tree / "logs").iterdir()) == ["app2.log"]
    # everything, links as links: nothing outside is touched, the root stays
    dry = purge(tree, remove_empty_dirs=True)
    r = purge(tree, remove_empty_dirs=True, dry_run=False)
    assert (r.selected, r.dirs_removed) == (dry.selected, dry.dirs_removed)
    assert r.deleted == r.selected and not r.errors
    assert tree.is_dir() and list(tree.iterdir()) == []
    assert (tmp_path / "outside" / "precious.txt").read_text() == "never touch"


def test_purge_never_follows_a_symlink_swapped_in(tmp_path: Path) -> None:
    """A directory replaced by a symlink to elsewhere after it was listed: nothing there goes."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "f1").write_text("1")
    (root / "b" / "f2").write_text("2")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "f2").write_text("keep me")
    swapped: list[bool] = []

    def swap(_p: Progress) -> None:
        if not swapped:
            (root / "b").rename(root / "b-real")
            os.symlink(outside, root / "b")
            swapped.append(True)

    r = purge(root, dry_run=False, on_progress=swap)
    assert (outside / "f2").read_text() == "keep me"
    assert r.deleted == 1 and any(e.startswith("b/f2") for e in r.errors)


def test_purge_bad_input_changes_nothing(tree: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(BadInput, match="older_than_days"):
        purge(tree, older_than_days=-1, dry_run=False)
    with pytest.raises(SourceMissing):
        purge(tmp_path / "missing", dry_run=False)
    with pytest.raises(BadTarget, match="root"):
        purge("/", dry_run=True)
    assert snapshot(tmp_path) == before


def test_dirfds_refuses_symlinked_components(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with DirFds(tmp_path) as fds:
        with pytest.raises(UnsafePath):
            fds.open("link")
        with pytest.raises(UnsafePath):
            fds.parent("link/x", create=True)
        assert fds.open("real") >= 0
    with pytest.raises(UnsafePath):
        DirFds(tmp_path / "link")


# --- copy ------------------------------------------------------------------------------------
def test_copy_keeps_modes_mtimes_links_and_skips_unchanged(tree: Path, tmp_path: Path) -> None:
    (tree / ("n" * 250)).write_text("a name near NAME_MAX")
    target = tmp_path / "copy"
    r = copy_tree(tree, target)
    assert r.errors == [] and r.special == ["pipe"]
    want = {k: v for k, v in snapshot(tree).items() if k != "pipe"}
    assert snapshot(target) == want
    assert os.readlink(target / "out-link") == str(tmp_path / "outside")  # a link, not a copy
    again = copy_tree(tree, target, verify="hash")
    assert (again.copied, again.unchanged) == (0, r.copied)
    (tree / "dir0" / "sub0" / "file0000.dat").write_bytes(b"changed")
    third = copy_tree(tree, target)
    assert third.copied == 1 and (target / "dir0/sub0/file0000.dat").read_bytes() == b"changed"


def test_copy_mirror_deletes_only_unselected_extras(tree: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy"
    copy_tree(tree, target)
    (target / "stale.txt").write_text("old")
    (target / "stale-dir" / "deep").mkdir(parents=True)
    (target / "stale-dir" / "deep" / "x").write_text("x")
    (target / "keep.tmp").write_text("excluded: protected")
    plain = copy_tree(tree, target, exclude=["*.tmp"])
    assert plain.deleted_in_target == 0 and (target / "stale.txt").exists()
    r = copy_tree(tree, target, mirror=True, exclude=["*.tmp"])
    assert sorted(r.deleted_paths) == ["stale-dir", "stale.txt"]
    assert (target / "keep.tmp").exists()
    want = {k: v for k, v in snapshot(tree).items() if k != "pipe"}
    assert {k: v for k, v in snapshot(target).items() if k != "keep.tmp"} == want


def test_copy_never_writes_through_a_target_symlink(tree: Path, tmp_path: Path) -> None:
    """The target has a symlink where the source has a directory: the link is replaced by a
    real directory; what it pointed to is untouched."""
    target = tmp_path / "copy"
    target.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    os.symlink(victim, target / "dir0")
    r = copy_tree(tree, target)
    assert r.errors == []
    assert list(victim.iterdir()) == []
    assert (target / "dir0").is_dir() and not (target / "dir0").is_symlink()
    assert tree_digest(target / "dir0") == tree_digest(tree / "dir0")


def test_copy_delete_source_moves_after_verification(tree: Path, tmp_path: Path) -> None:
    os.unlink(tree / "pipe")
    want = snapshot(tree)
    target = tmp_path / "moved"
    r = copy_tree(tree, target, delete_source=True, verify="hash")
    assert r.errors == []
    assert r.source_deleted == sum(1 for v in want.values() if v[0] != "dir")
    assert tree.is_dir() and list(tree.iterdir()) == []  # the root itself stays
    assert snapshot(target) == want


def test_copy_delete_source_keeps_what_was_not_copied(tree: Path, tmp_path: Path) -> None:
    r = copy_tree(tree, tmp_path / "moved", delete_source=True, exclude=["logs"])
    assert r.errors == []
    assert sorted(p.name for p in tree.iterdir()) == ["logs", "pipe"]  # excluded, special
    assert len(list((tree / "logs").iterdir())) == 3


def test_copy_bad_input_changes_nothing(tree: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(BadTarget, match="inside the source"):
        copy_tree(tree, tree / "dir0" / "backup", mirror=True)
    with pytest.raises(BadTarget, match="same directory"):
        copy_tree(tree, tree / ".." / tree.name)
    with pytest.raises(BadTarget, match="inside the target"):
        copy_tree(tree / "dir0", tree, mirror=True)
    with pytest.raises(SourceMissing):
        copy_tree(tmp_path / "missing", tmp_path / "t")
    (tmp_path / "a-file").write_text("not a directory")
    before = snapshot(tmp_path)
    with pytest.raises(BadTarget, match="not a directory"):
        copy_tree(tree, tmp_path / "a-file")
    with pytest.raises(BadInput, match="verify"):
        copy_tree(tree, tmp_path / "t", verify="crc")  # type: ignore[arg-type]
    assert snapshot(tmp_path) == before


# --- prune -----------------------------------------------------------------------------------
def test_prune_config_and_catalog(tmp_path: Path) -> None:
    with pytest.raises(BadInput):
        PruneConfig(-1)
    with pytest.raises(BadInput):
        PruneConfig(1.5)  # type: ignore[arg-type]
    with pytest.raises(BadInput, match="no catalog"):
        prune_catalog(tmp_path / "none.duckdb")
    assert not (tmp_path / "none.duckdb").exists()
    path = tmp_path / "cat" / "catalog.duckdb"
    now = datetime.now(UTC)
    with Catalog(path) as cat:
        job = cat.create_job("backup")
        for sid, age in (("s-old", 40), ("s-mid", 10), ("s-new", 1)):
            cat.start_session(job, "src", session_id=sid, started=now - timedelta(days=age))
            cat.add_session_rows(sid, file_rows(sid, [{"path": "a", "size": 1}]))
    assert prune_catalog(path).sessions == ["s-old"]  # default: 30 days
    assert prune_catalog(path, PruneConfig(5)).sessions == ["s-mid"]
    with Catalog(path) as cat:
        states = {s["id"]: s["rows_state"] for s in cat.sessions()}
    assert states == {"s-old": "pruned", "s-mid": "pruned", "s-new": "present"}


# --- tapes: scan/merge, catalog backup and recovery ------------------------------------------
@dataclass
class Tapes:
    """A library with a full and an incremental backup, and a catalog backup after each."""

    root: Path
    library: str
    catalog: Path
    src: Path
    full: str
    inc: str
    first: dict
    second: dict
    between: datetime  # after the first catalog backup, before the second job
    versions: list[dict]  # path_versions of a changed file after both jobs


@pytest.fixture(scope="module")
def tapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tapes]:
    root = tmp_path_factory.mktemp("tapes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAPEFLOW_HOME", str(root / "home"))
        library = make_library(root)
        src = root / "src"
        make_sample_tree(src, files=20)
        catalog = root / "catalog" / "catalog.duckdb"
        (full,) = run_job(catalog, "job-full", src, library, "full")
        first = backup_catalog(catalog, library).to_dict()
        between = datetime.now(UTC)
        time.sleep(0.01)
        (src / "dir0" / "sub0" / "file0000.dat").write_bytes(b"changed")
        (inc,) = run_job(catalog, "job-inc", src, library, "incremental")
        second = backup_catalog(catalog, library, "catalog").to_dict()
        with Catalog(catalog) as cat:
            versions = path_versions(cat, "dir0/sub0/file0000.dat").to_pylist()
        assert len(versions) == 2
        yield Tapes(root, library, catalog, src, full, inc, first, second, between, versions)


def _drives_empty(library: str) -> bool:
    with Library(library) as lib:
        return not any(d.full for d in lib.inventory().drives)


def test_catalog_backup_is_recorded_and_named_on_tape(tapes: Tapes) -> None:
    with Catalog(tapes.catalog, read_only=True) as cat:
        row = cat.session(tapes.second["session_id"])
        assert (row["source"], row["kind"], row["state"]) == (CATALOG_SOURCE, "catalog", "complete")
        assert cat.job(row["job_id"])["kind"] == "maintenance"
        parts = session_media(cat, row["id"]).to_pylist()
        assert [(p["barcode"], p["tape_file"]) for p in parts] == [
            (t["barcode"], t["tape_file"]) for t in tapes.second["tapes"]
        ]
        assert cat.medium(parts[0]["barcode"])["pool"] == "catalog"
    # the first backup holds the catalog as it was: one job, one session, its rows
    assert tapes.first["tables"]["sessions"] == 1 and tapes.first["catalog_files"] == 2
    assert tapes.second["tables"]["sessions"] == 3  # full, first catalog backup, incremental
    tape = tapes.second["tapes"][0]
    scanned = scan_session(tapes.library, tape["barcode"], tape["tape_file"])
    assert (scanned.info.source, scanned.info.kind) == (CATALOG_SOURCE, "catalog")
    names = set(scanned.rows["path"].to_pylist())
    assert {"tapeflow-catalog.json", "db/schema.sql", "db/sessions.parquet"} <= names
    assert f"files/{tapes.full}.parquet" in names and f"files/{tapes.inc}.parquet" in names
    assert _drives_empty(tapes.library)


def test_recover_as_of_a_date_from_tapes_alone(tapes: Tapes, tmp_path: Path) -> None:
    """The catalog directory is moved away: recovery reads only the tapes."""
    hidden = tapes.root / "catalog-hidden"
    tapes.catalog.parent.rename(hidden)
    try:
        old = recover_catalog(tapes.library, tmp_path / "old", as_of=tapes.between)
        new = recover_catalog(tapes.library, tmp_path / "new", pool="catalog")
    finally:
        hidden.rename(tapes.catalog.parent)
    assert old.session_id == tapes.first["session_id"]
    assert new.session_id == tapes.second["session_id"]
    assert [b["session_id"] for b in new.found] == [
        tapes.first["session_id"],
        tapes.second["session_id"],
    ]
    with Catalog(Path(old.catalog)) as cat:
        assert [s["id"] for s in cat.sessions()] == [tapes.full]
        assert path_versions(cat, "dir0/sub0/file0000.dat").to_pylist() == tapes.versions[:1]
    with Catalog(Path(new.catalog)) as cat:
        assert path_versions(cat, "dir0/sub0/file0000.dat").to_pylist() == tapes.versions
        assert cat.check_rows() == {}
        assert "catalog recovered from tape" in cat.events()[-1]["message"]
        # the same rows as the original, but for the backup that took the snapshot
        last_job, last_sid = tapes.second["job_id"], tapes.second["session_id"]
        with Catalog(tapes.catalog, read_only=True) as orig:
            for table, column, value in (
                ("jobs", "id", last_job),
                ("sessions", "id", last_sid),
                ("media_sessions", "session_id", last_sid),
                ("pools", "name", ""),
            ):
                sql = f"SELECT * FROM {table} WHERE {column} <> ? ORDER BY ALL"
                assert cat.execute(sql, [value]) == orig.execute(sql, [value])
    assert _drives_empty(tapes.library)


def test_recover_bad_input_changes_nothing(tapes: Tapes, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "catalog.duckdb").write_text("something already here")
    with pytest.raises(BadTarget, match="already holds"):
        recover_catalog(tapes.library, busy)
    assert [p.name for p in busy.iterdir()] == ["catalog.duckdb"]
    with pytest.raises(NoCatalogBackup, match="oldest of 2"):
        recover_catalog(tapes.library, tmp_path / "early", as_of=datetime(2000, 1, 1))
    with pytest.raises(NoCatalogBackup, match="none was found"):
        recover_catalog(tapes.library, tmp_path / "pool", pool="no-such-pool")
    assert not (tmp_path / "early").exists() and not (tmp_path / "pool").exists()
    with pytest.raises(BadInput, match="no catalog"):
        backup_catalog(tmp_path / "missing.duckdb", tapes.library)
    with Catalog(tapes.catalog, read_only=True) as cat:
        before = cat.execute("SELECT * FROM sessions ORDER BY ALL")
    with pytest.raises(VtlError, match="not a virtual tape library"):
        backup_catalog(tapes.catalog, f"embedded:{tmp_path / 'no-library'}")
    with Catalog(tapes.catalog, read_only=True) as cat:
        assert cat.execute("SELECT * FROM sessions ORDER BY ALL") == before
    assert not (tapes.catalog.parent / "work").exists() or not any(
        (tapes.catalog.parent / "work").glob("catalog-backup-*")
    )
    assert _drives_empty(tapes.library)


def test_recover_refuses_a_damaged_backup(tapes: Tapes, tmp_path: Path) -> None:
    """One hex digit of a checksum in the manifest on tape is changed: recovery says so and
    leaves no catalog behind."""
    data = tapes.root / "lib" / "cartridges" / tapes.first["tapes"][0]["barcode"] / "data"
    blob = data.read_bytes()
    where = blob.find(b'"sha256": "') + len(b'"sha256": "')
    assert where > 20
    original = blob[where : where + 1]
    with open(data, "r+b") as fh:
        fh.seek(where)
        fh.write(b"0" if original != b"0" else b"1")
    try:
        with pytest.raises(CatalogBackupDamaged, match="differs from its sum"):
            recover_catalog(tapes.library, tmp_path / "bad", as_of=tapes.between)
    finally:
        with open(data, "r+b") as fh:
            fh.seek(where)
            fh.write(original)
    assert list((tmp_path / "bad").iterdir()) == []


def test_scan_and_merge_under_leases(tapes: Tapes, tmp_path: Path) -> None:
    run = scan_cartridges(tapes.library)
    written = [m for m in run.media if m.status == "tapeflow"]
    assert {s.session_id for m in written for s in m.sessions} == {
        tapes.full,
        tapes.inc,
        tapes.first["session_id"],
        tapes.second["session_id"],
    }
    with Library(tapes.library) as lib:
        board = LeaseBoard(lib.state_dir)
        held = written[0].barcode
        with board.media(held, "someone else"):
            busy = scan_cartridges(tapes.library)
            assert [b.split(":")[0] for b in busy.busy] == [held]
            with pytest.raises(LeaseTimeout):
                scan_cartridges(tapes.library, [held], timeout=0.2)
    result, _ = merge_cartridges(tmp_path / "rebuilt" / "catalog.duckdb", tapes.library)
    assert set(result.sessions_added) == {
        tapes.full,
        tapes.inc,
        tapes.first["session_id"],
        tapes.second["session_id"],
    }
    again, _ = merge_cartridges(tmp_path / "rebuilt" / "catalog.duckdb", tapes.library)
    assert not again.changed
    with pytest.raises(BadInput, match="not in the library"):
        scan_cartridges(tapes.library, ["NOPE01L9"])
    with pytest.raises(BadInput, match="exactly one barcode"):
        scan_cartridges(tapes.library, tape_file=1)
    assert _drives_empty(tapes.library)


def test_find_catalog_backups_reads_headers_only(tapes: Tapes) -> None:
    with Library(tapes.library) as lib, leased_mounts(lib, "test") as mounts:
        found, skipped = find_catalog_backups(mounts, pool="catalog")
    assert [b.session_id for b in found] == [tapes.first["session_id"], tapes.second["session_id"]]
    assert skipped == [] and all(b.pool == "catalog" for b in found)


# --- CLI -------------------------------------------------------------------------------------
def _cli(argv: list[str]) -> int:
    """Run the maintenance commands through a fresh parser, as tapeflow/cli.py will wire them."""
    parser = argparse.ArgumentParser(prog="tapeflow")
    top = parser.add_subparsers(dest="group", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--library", default="embedded:/nonexistent")
    common.add_argument("--json", action="store_true")
    add_commands(top, common)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_pre_post_and_log_level(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands take pre/post operations and a log level as their flows do; post also
    runs after a failure and hears the outcome; a failed pre stops the command."""
    said = tmp_path / "said.txt"
    post = f'echo "$TAPEFLOW_OPERATION $TAPEFLOW_STATE" >> {said}'
    argv = ["count", str(tree), "--pre", f"echo pre >> {said}", "--post", post]
    assert _cli([*argv, "--log-level", "info"]) == 0
    captured = capsys.readouterr()
    assert "16 files" in captured.out and "pre:" not in captured.out  # stdout: the result
    assert "INFO pre: echo pre" in captured.err and "INFO post: echo" in captured.err
    assert said.read_text().splitlines() == ["pre", "count complete"]
    assert _cli(["purge", str(tmp_path / "nope"), "--yes", "--post", post]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert said.read_text().splitlines()[-1] == "purge failed"
    assert _cli(["count", str(tree), "--pre", "exit 3", "--post", post]) == 2
    err = capsys.readouterr().err
    assert "'exit 3' exited 3" in err and said.read_text().count("\n") == 3  # no post, no count


def test_cli_sources(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["count", str(tree), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == 16
    assert _cli(["count", str(tree), "--include", "logs/*"]) == 0
    assert "3 files" in capsys.readouterr().out
    assert _cli(["purge", str(tree), "--include", "logs/*", "--older-than", "30"]) == 0
    out = capsys.readouterr().out
    assert "DRY RUN: would delete 2 file(s)" in out and "--yes" in out
    assert len(list((tree / "logs").iterdir())) == 3
    assert _cli(["purge", str(tree), "--include", "logs/*", "--older-than", "30", "--yes"]) == 0
    assert "deleted 2 of 2" in capsys.readouterr().out
    assert len(list((tree / "logs").iterdir())) == 1
    assert _cli(["copy", str(tree), str(tmp_path / "c"), "--mirror", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["special"] == ["pipe"]
    before = snapshot(tmp_path)
    assert _cli(["copy", str(tree), str(tree / "sub"), "--delete-source"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tapeflow: error: target") and "inside" in err[0]
    assert _cli(["purge", str(tmp_path / "nope"), "--yes"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert _cli(["catalog", "prune", "--catalog", str(tmp_path / "no.duckdb"), "--days", "3"]) == 2
    assert "no catalog" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_cli_catalog_and_tapes(
    tapes: Tapes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(tapes.root / "lib", tmp_path / "lib")  # the backup below writes to it
    lib = ["--library", f"embedded:{tmp_path / 'lib'}"]
    work = tmp_path / "cat"
    shutil.copytree(tapes.catalog.parent, work)
    db = ["--catalog", str(work / "catalog.duckdb")]
    assert _cli(["catalog", "backups", *lib, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["found"]) == 2
    assert _cli(["catalog", "backup", *lib, *db]) == 0
    assert "catalog backup cat-" in capsys.readouterr().out
    assert _cli(["catalog", "recover", *lib, "--target", str(tmp_path / "r"), "--json"]) == 0
    recovered = json.loads(capsys.readouterr().out)
    assert recovered["sessions"] == 4 and len(recovered["found"]) == 3
    assert _cli(["catalog", "recover", *lib, "--target", str(tmp_path / "r")]) == 2
    assert "already holds" in capsys.readouterr().err
    assert (
        _cli(["catalog", "recover", *lib, "--target", str(tmp_path / "x"), "--as-of", "soon"]) == 2
    )
    assert "ISO 8601" in capsys.readouterr().err
    assert _cli(["catalog", "prune", *db, "--days", "0", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["sessions"]) == 5
    barcode = tapes.first["tapes"][0]["barcode"]
    assert _cli(["scan", barcode, *lib]) == 0
    assert CATALOG_SOURCE in capsys.readouterr().out
    assert _cli(["scan", "NOPE01L9", *lib]) == 2
    assert "not in the library" in capsys.readouterr().err
    assert _cli(["merge", *lib, "--catalog", str(tmp_path / "m" / "catalog.duckdb")]) == 0
    out = capsys.readouterr().out  # the two backups, three catalog backups
    assert "5 sessions" in out and "12 blank cartridge(s)" in out
    same = ["compare", tapes.inc, str(tapes.src), "--catalog", str(tapes.catalog)]
    assert _cli([*same, "--content"]) == 0
    assert "the same" in capsys.readouterr().out
    assert _cli(["compare", tapes.full, str(tapes.src), "--catalog", str(tapes.catalog)]) == 1
    assert "dir0/sub0/file0000.dat (size" in capsys.readouterr().out
    assert _cli(["compare", "s-nope", str(tapes.src), "--catalog", str(tapes.catalog)]) == 2
    assert "no session 's-nope'" in capsys.readouterr().err
