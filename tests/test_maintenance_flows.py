"""The maintenance flows on a real Prefect server and the embedded library: catalog prune,
backup, recovery (catalog deleted, recovered as of a date, answering queries like the original),
scan, merge, compare, count, purge and copy; pre before and post after each, with the outcome
(also after a failure); DEBUG lines only when asked; a table artifact per run."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler
from prefect.utilities.asyncutils import run_coro_as_sync

from tapeflow.backup.master import deleted_rows_for, prepare_job, record_results
from tapeflow.backup.model import Pool, Source
from tapeflow.backup.slave import run_slave
from tapeflow.catalog import Catalog, path_versions, tree_at
from tapeflow.library import Library
from tapeflow.maintenance import backup_catalog, recover_catalog
from tapeflow.sample import make_sample_tree, tree_digest
from tapeflow.vtl import VirtualLibrary
from tests import flowhooks
from tests.test_flows import lib_env

pytestmark = pytest.mark.usefixtures("prefect_server")

HOOKS = ["py:tests.flowhooks:pre"], ["py:tests.flowhooks:post"]
CHANGED = "dir0/sub0/file0000.dat"


@dataclass
class Site:
    """A library and catalog after one full backup of `src` through the backup flow."""

    env: dict[str, Any]
    src: Path
    full: str  # session id

    @property
    def library(self) -> str:
        return self.env["library"]

    @property
    def catalog(self) -> str:
        return self.env["catalog"]


def core_backup(catalog: str, library: str, src: Path, level: str) -> str:
    """One backup job through the backup core (no flow run: those cost seconds here), with
    the job parameters the backup flow records; returns the session id."""
    job = f"job-{level}-{time.time_ns()}"
    sources = [Source("src", str(src))]
    specs, skipped = prepare_job(
        Path(catalog),
        job,
        sources=sources,
        pool=Pool(),
        level=level,  # type: ignore[arg-type]
        library=library,
        parameters={"sources": [s.__dict__ for s in sources], "level": level},
    )
    results = [run_slave(s, deleted_rows=deleted_rows_for(s)) for s in specs]
    assert record_results(Path(catalog), job, Pool(), results, skipped).state == "complete"
    return specs[0].session_id


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("mflows")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAPEFLOW_HOME", str(tmp / "home"))
        env = lib_env(tmp)
        VirtualLibrary.create(  # few cartridges: every search reads each label
            env["lib_dir"],
            drives=2,
            slots=8,
            mail_slots=1,
            cartridges=4,
            capacity=64 * 1024 * 1024,
            early_warning=4 * 1024 * 1024,
            cleaning_cartridges=0,
        )
        src = tmp / "src"
        make_sample_tree(src, files=20)
        full = core_backup(env["catalog"], env["library"], src, "full")
        yield Site(env, src, full)


@pytest.fixture(autouse=True)
def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the pre/post hooks of each test record themselves."""
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("TAPEFLOW_TEST_EVENTS", str(path))
    return path


def _read(coro_fn: Any) -> Any:
    return run_coro_as_sync(coro_fn())


def task_runs(flow_run_id: Any) -> list[Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    return _read(read)


def logs(flow_run_id: Any) -> list[Any]:
    APILogHandler().flush()

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )

    return _read(read)


def table(flow_run_id: Any, key: str) -> list[dict[str, Any]]:
    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    found = [a for a in _read(read) if a.key == key]
    assert found, f"no {key} artifact"
    data = found[0].data
    return json.loads(data) if isinstance(data, str) else data


def run(flow: Any, **params: Any) -> tuple[Any, Any]:
    """Run a flow with the test hooks; (final state, flow run id)."""
    state = flow(**params, pre=HOOKS[0], post=HOOKS[1], return_state=True)
    return state, state.state_details.flow_run_id


def check_hooks(flow_run_id: Any, state: str) -> dict[str, Any]:
    """Pre ran once before every task of the run, post once after all, told the outcome."""
    got = flowhooks.events()
    pre = [e for e in got if e["kind"] == "pre"]
    post = [e for e in got if e["kind"] == "post"]
    assert len(pre) == 1 and len(post) == 1, got
    runs = [r for r in task_runs(flow_run_id) if r.start_time is not None]
    assert runs, "the flow ran no task"
    assert pre[0]["time"] <= min(r.start_time.timestamp() for r in runs)
    assert post[0]["time"] >= max(r.end_time.timestamp() for r in runs)
    assert post[0]["outcome"]["state"] == state
    return post[0]["outcome"]


def test_catalog_backup_delete_recover_as_of(site: Site, tmp_path: Path, events: Path) -> None:
    """Acceptance: back up the catalog, change things, back it up again; delete the catalog;
    recover it as of the first backup and as of now: each answers like the original did."""
    from flows.maintenance import catalog_backup, catalog_recover

    state, fid = run(catalog_backup, library=site.library, catalog=site.catalog)
    assert state.is_completed(), state.message
    first = state.result()
    outcome = check_hooks(fid, "complete")
    assert outcome["operation"] == "catalog-backup" and outcome["session_id"] == first["session_id"]
    assert table(fid, "catalog-backup-summary")[0]["session"] == first["session_id"]
    with Catalog(Path(site.catalog), read_only=True) as cat:
        before = path_versions(cat, CHANGED).to_pylist()
        tree_before = tree_at(cat, "src").to_pylist()
    between = datetime.now(UTC)
    time.sleep(0.01)
    (site.src / CHANGED).write_bytes(b"changed after the first catalog backup")
    core_backup(site.catalog, site.library, site.src, "incremental")
    second = backup_catalog(site.catalog, site.library).to_dict()
    with Catalog(Path(site.catalog), read_only=True) as cat:
        after = path_versions(cat, CHANGED).to_pylist()
        tree_after = tree_at(cat, "src").to_pylist()
    assert len(after) == len(before) + 1

    saved = tmp_path / "saved-catalog"
    shutil.move(Path(site.catalog).parent, saved)  # the catalog is lost
    try:
        events.unlink(missing_ok=True)  # a fresh hook log for the recovery
        state, fid = run(
            catalog_recover,
            target=str(tmp_path / "old"),
            as_of=between,
            pool="catalog",
            library=site.library,
        )
        assert state.is_completed(), state.message
        old = state.result()
        check_hooks(fid, "complete")
        rows = table(fid, "catalog-recover-summary")
        assert [r["recovered"] for r in rows] == [True, False]
        new = recover_catalog(site.library, tmp_path / "new").to_dict()
    finally:
        shutil.move(saved, Path(site.catalog).parent)
    assert old["session_id"] == first["session_id"]
    assert new["session_id"] == second["session_id"]
    with Catalog(Path(old["catalog"])) as cat:
        assert path_versions(cat, CHANGED).to_pylist() == before
        assert tree_at(cat, "src").to_pylist() == tree_before
    with Catalog(Path(new["catalog"])) as cat:
        assert path_versions(cat, CHANGED).to_pylist() == after
        assert tree_at(cat, "src").to_pylist() == tree_after


def test_prune_flow(site: Site, tmp_path: Path, events: Path) -> None:
    from deployments.defaults import PRUNE_CRON
    from flows.maintenance import catalog_prune

    assert PRUNE_CRON == "0 0 * * *"
    copy = tmp_path / "catalog"
    shutil.copytree(Path(site.catalog).parent, copy)
    catalog = str(copy / "catalog.duckdb")
    state, fid = run(catalog_prune, catalog=catalog)
    assert state.is_completed() and state.result()["sessions"] == []  # all younger than 30 days
    check_hooks(fid, "complete")
    events.unlink(missing_ok=True)
    everything = catalog_prune(days=0, catalog=catalog)
    with Catalog(Path(catalog), read_only=True) as cat:
        with_rows = [s["id"] for s in cat.sessions() if s["rows_state"] == "present"]
    assert everything["sessions"] and with_rows == []
    bad = catalog_prune(days=-3, catalog=catalog, pre=HOOKS[0], post=HOOKS[1], return_state=True)
    assert bad.is_failed() and "days must be a whole number >= 0" in str(
        bad.result(raise_on_failure=False)
    )
    assert flowhooks.events() == []  # bad input: not even the pre operation ran


def test_scan_merge_and_compare_flows(site: Site, tmp_path: Path, events: Path) -> None:
    from flows.maintenance import compare, merge, scan

    state, fid = run(scan, library=site.library, log_level="DEBUG")
    assert state.is_completed(), state.message
    check_hooks(fid, "complete")
    media = [m for m in state.result()["media"] if m["status"] == "tapeflow"]
    sessions = {s["session_id"] for m in media for s in m["sessions"]}
    with Catalog(Path(site.catalog), read_only=True) as cat:
        assert {s["id"] for s in cat.sessions()} == sessions
    rows = table(fid, "scan-summary")
    first = next(r for r in rows if r["kind"] == "session")
    one = scan(barcodes=[first["cartridge"]], tape_file=first["tape file"], library=site.library)
    assert one["session"]["session_id"] == first["session"] and one["media"] == []
    with pytest.raises(ValueError, match="exactly one barcode"):  # checked before any run work
        scan.fn(tape_file=1, library=site.library)

    events.unlink(missing_ok=True)
    rebuilt = tmp_path / "rebuilt" / "catalog.duckdb"
    state, fid = run(merge, library=site.library, catalog=str(rebuilt))
    assert state.is_completed(), state.message
    added = state.result()["sessions_added"]
    assert check_hooks(fid, "complete")["sessions_added"] == len(added) == len(sessions)

    events.unlink(missing_ok=True)
    with Catalog(Path(site.catalog), read_only=True) as cat:
        latest = cat.sessions(source="src")[-1]["id"]
    state, fid = run(compare, session_id=latest, catalog=site.catalog)  # root: the original
    assert state.is_completed(), state.message
    assert state.result()["same"] is True
    check_hooks(fid, "complete")
    (site.src / "extra.txt").write_text("new since the backup")
    try:
        differs = compare(session_id=latest, catalog=site.catalog, content=True)
    finally:
        (site.src / "extra.txt").unlink()
    assert differs["same"] is False and differs["extra_paths"] == ["extra.txt"]
    with Library(site.library) as lib:
        assert not any(d.full for d in lib.inventory().drives)


def test_count_log_levels(site: Site, events: Path) -> None:
    """DEBUG lines reach the run's log only when log_level='DEBUG'."""
    from flows.maintenance import count

    state, fid = run(count, source=str(site.src), log_level="DEBUG")
    assert state.is_completed(), state.message
    assert state.result()["files"] == 20
    check_hooks(fid, "complete")
    debug = logs(fid)
    assert any(r.level == 10 and "counting" in r.message for r in debug)
    info = count(source=str(site.src), include=["dir0/*"], return_state=True)
    assert info.result()["files"] == len(list((site.src / "dir0").rglob("*.dat")))
    quiet = logs(info.state_details.flow_run_id)
    assert quiet and all(r.level >= 20 for r in quiet)
    assert any("src: " in r.message for r in quiet)
    with pytest.raises(ValueError, match="log_level"):
        count.fn(source=str(site.src), log_level="LOUD")


def test_purge_and_copy_flows(
    tmp_path: Path, events: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.maintenance import copy, purge

    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    src = tmp_path / "data"
    make_sample_tree(src, files=16)
    digest = tree_digest(src)

    state, fid = run(purge, source=str(src), include=["dir1/*"])
    assert state.is_completed(), state.message
    dry = state.result()
    assert dry["dry_run"] and dry["selected"] == 2 and tree_digest(src) == digest  # dry run
    assert check_hooks(fid, "complete")["selected"] == 2
    assert any(r["value"] == dry["paths"][0] for r in table(fid, "purge-summary"))
    gone = purge(source=str(src), include=["dir1/*"], remove_empty_dirs=True, dry_run=False)
    assert gone["deleted"] == 2 and not (src / "dir1").exists()
    digest = tree_digest(src)

    events.unlink(missing_ok=True)
    target = tmp_path / "copy"
    (target / "stale").mkdir(parents=True)
    state, fid = run(copy, source=str(src), target=str(target), mirror=True, verify="hash")
    assert state.is_completed(), state.message
    done = state.result()
    assert done["copied"] == len(digest) and done["deleted_paths"] == ["stale"]
    assert tree_digest(target) == digest
    check_hooks(fid, "complete")
    moved = copy(source=str(src), target=str(tmp_path / "moved"), delete_source=True)
    assert moved["source_deleted"] == len(digest) and list(src.iterdir()) == []
    assert tree_digest(tmp_path / "moved") == digest


def test_failed_work_still_runs_post_and_changes_nothing(tmp_path: Path, events: Path) -> None:
    """A copy into its own source fails (nothing written); post ran with state 'failed'."""
    from flows.maintenance import copy

    src = tmp_path / "data"
    make_sample_tree(src, files=4)
    digest = tree_digest(src)
    state, _ = run(copy, source=str(src), target=str(src / "inside"), log_level="DEBUG")
    assert state.is_failed()
    assert "inside the source" in state.message or "inside the source" in str(
        state.result(raise_on_failure=False)
    )
    got = flowhooks.events()
    assert [e["kind"] for e in got] == ["pre", "post"]
    assert got[1]["outcome"]["state"] == "failed" and "BadTarget" in got[1]["outcome"]["error"]
    assert tree_digest(src) == digest and not (src / "inside").exists()
    events.unlink(missing_ok=True)
    failing_pre = copy(
        source=str(src),
        target=str(tmp_path / "t"),
        pre=["exit 3"],
        post=HOOKS[1],
        return_state=True,
    )
    assert failing_pre.is_failed() and not (tmp_path / "t").exists()
    assert flowhooks.events() == []  # a failed pre operation: no work, no post
