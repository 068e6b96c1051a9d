"""The master backup and restore flows on a real Prefect server and a real embedded library."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.utilities.asyncutils import run_coro_as_sync

from tapeflow.catalog import Catalog
from tapeflow.library import Library
from tapeflow.sample import make_sample_tree, tree_digest
from tapeflow.vtl import VirtualLibrary
from tests import flowhooks

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An embedded library, a catalog path and hook event log under tmp_path."""
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TAPEFLOW_TEST_EVENTS", str(tmp_path / "events.jsonl"))
    return lib_env(tmp_path)


def lib_env(tmp_path: Path) -> dict[str, Any]:
    """Paths of a test's library and catalog; the library's name (so its drive tag) is
    unique per test, so a run left over from one test never holds another's slots."""
    return {
        "tmp": tmp_path,
        "lib_dir": tmp_path / tmp_path.name,
        "library": f"embedded:{tmp_path / tmp_path.name}",
        "tag": f"tape-drive:{tmp_path.name}",
        "catalog": str(tmp_path / "catalog" / "catalog.duckdb"),
    }


def make_library(env: dict[str, Any], drives: int, speed: float | None = None) -> None:
    VirtualLibrary.create(
        env["lib_dir"],
        drives=drives,
        slots=24,
        mail_slots=1,
        capacity=256 * 1024 * 1024,
        early_warning=8 * 1024 * 1024,
        speed_limit=speed,
    )


def make_sources(env: dict[str, Any], count: int, files: int = 40) -> list[dict[str, str]]:
    out = []
    for i in range(count):
        root = env["tmp"] / f"src{i}"
        make_sample_tree(root, files=files, seed=i)
        out.append({"name": f"src{i}", "path": str(root)})
    return out


def slave_runs(flow_run_id: str) -> list[Any]:
    """The slave task runs of one flow run, from the server."""

    async def read() -> list[Any]:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        return [r for r in runs if r.name.startswith("MULTI STREAM")]

    return run_coro_as_sync(read())


def any_running(runs: list[Any]) -> bool:
    """Whether one of `runs` is running; a task run the server has recorded from its first
    event but without a state yet is not."""
    return any(r.state is not None and r.state.is_running() for r in runs)


def tag_limit(tag: str) -> int:
    async def read() -> int:
        async with get_client() as client:
            return (await client.read_global_concurrency_limit_by_name(f"tag:{tag}")).limit

    return run_coro_as_sync(read())


def peak(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = cur = 0
    for _, step in edges:
        cur += step
        best = max(best, cur)
    return best


def run_intervals(runs: list[Any]) -> list[tuple[float, float]]:
    return [(r.start_time.timestamp(), r.end_time.timestamp()) for r in runs]


def test_master_job_hooks_tag_limit_and_names(env: dict[str, Any]) -> None:
    from flows.backup import backup

    make_library(env, drives=4, speed=2e6)  # ~2 s of tape work per slave
    sources = make_sources(env, 6)
    state = backup(
        sources=sources,
        library=env["library"],
        catalog=env["catalog"],
        pre=["py:tests.flowhooks:pre"],
        post=["py:tests.flowhooks:post"],
        return_state=True,
    )
    assert state.is_completed(), state.message
    job_id = state.state_details.flow_run_id
    runs = slave_runs(str(job_id))
    assert sorted(r.name for r in runs) == [
        f"MULTI STREAM [JOB {job_id}] SUBJOB {i}" for i in range(1, 7)
    ]
    assert all(env["tag"] in r.tags for r in runs)
    assert tag_limit(env["tag"]) == 4
    spans = run_intervals(runs)
    assert 2 <= peak(spans) <= 4  # never more slaves than drives
    events = flowhooks.events()
    pre = [e for e in events if e["kind"] == "pre"]
    post = [e for e in events if e["kind"] == "post"]
    assert len(pre) == 1 and len(post) == 1  # once per job, not per slave
    assert pre[0]["time"] <= min(a for a, _ in spans)
    assert post[0]["time"] >= max(b for _, b in spans)
    assert post[0]["outcome"]["state"] == "complete"
    assert post[0]["outcome"]["sessions"] == 6
    with Catalog(Path(env["catalog"])) as cat:
        sessions = cat.sessions(job_id=str(job_id))
    assert sorted(s["state"] for s in sessions) == ["complete"] * 6


def test_one_drive_means_one_slave_at_a_time(env: dict[str, Any]) -> None:
    from flows.backup import backup

    make_library(env, drives=1)
    state = backup(
        sources=make_sources(env, 3, files=10),
        library=env["library"],
        catalog=env["catalog"],
        return_state=True,
    )
    assert state.is_completed()
    assert peak(run_intervals(slave_runs(str(state.state_details.flow_run_id)))) == 1
    assert tag_limit(env["tag"]) == 1
    slaves = state.result()["slaves"]  # all on one cartridge, kept loaded from slave to slave
    assert len({s["cartridges"] for s in slaves}) == 1 and {s["drive"] for s in slaves} == {0}
    with Library(env["library"]) as lib:  # and the job unloaded it at its end
        assert not any(d.full for d in lib.inventory().drives)


def test_largest_source_starts_first(env: dict[str, Any]) -> None:
    """On one drive the slaves run largest first (the job ends on a short one); the subjob
    numbers still follow the order of the sources."""
    from flows.backup import backup

    make_library(env, drives=1)
    sources = []
    for i, size in enumerate([1_000, 300_000, 100_000], start=1):
        root = env["tmp"] / f"sized{i}"
        root.mkdir()
        (root / "data.bin").write_bytes(bytes(size))
        sources.append({"name": f"sized{i}", "path": str(root)})
    state = backup(
        sources=sources, library=env["library"], catalog=env["catalog"], return_state=True
    )
    assert state.is_completed()
    runs = sorted(slave_runs(str(state.state_details.flow_run_id)), key=lambda r: r.start_time)
    assert [r.name.rsplit(" ", 1)[1] for r in runs] == ["2", "3", "1"]


def backup_with_drive_offline(env: dict[str, Any], drives: int, sources: int) -> Any:
    """The final state of a backup of `sources` sources on a library whose last drive of
    `drives` is offline."""
    from flows.backup import backup

    make_library(env, drives=drives)
    with Library(env["library"]) as lib:
        lib.set_online(drives - 1, False)
    return backup(
        sources=make_sources(env, sources, files=5),
        library=env["library"],
        catalog=env["catalog"],
        return_state=True,
    )


def test_offline_drive_lowers_the_limit(env: dict[str, Any]) -> None:
    state = backup_with_drive_offline(env, drives=3, sources=3)
    assert state.is_completed()
    assert tag_limit(env["tag"]) == 2
    assert all(row["drive"] != 2 for row in _summary(state))


def test_no_online_drive_fails_the_job_with_no_session_left_running(
    env: dict[str, Any],
) -> None:
    """The drive limit is set while the job is planned; with no drive to start a slave on,
    the planned sessions and the job end failed, and the error says why."""
    from flows.backup import JobFailed

    state = backup_with_drive_offline(env, drives=1, sources=2)
    assert state.is_failed()
    with pytest.raises(JobFailed, match="no online drive"):
        state.result()
    assert slave_runs(str(state.state_details.flow_run_id)) == []
    with Catalog(env["catalog"], read_only=True) as cat:
        job = cat.job(str(state.state_details.flow_run_id))
        sessions = cat.sessions(job_id=job["id"])
    assert job["state"] == "failed"
    assert [s["state"] for s in sessions] == ["failed", "failed"]


def test_a_job_with_nothing_left_to_do_dispatches_nothing() -> None:
    """A re-run of a master whose sessions are all complete: no slave, nothing to record."""
    from prefect import flow

    from flows.backup import run_slaves

    recorded: list[Any] = []

    @flow
    def nothing_left() -> Any:
        return run_slaves([], 4, "tape-drive:none", "job", recorded.append)

    dispatched = nothing_left()
    assert (dispatched.results, dispatched.unrecorded, recorded) == ([], [], [])


def _summary(state: Any) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        async with get_client() as client:
            arts = await client.read_latest_artifacts()
        for art in arts:
            if art.key == "backup-summary" and art.flow_run_id == state.state_details.flow_run_id:
                import json

                return json.loads(art.data) if isinstance(art.data, str) else art.data
        raise AssertionError("no backup-summary artifact")

    return run_coro_as_sync(read())


def test_full_incremental_and_point_in_time_restore(env: dict[str, Any]) -> None:
    from flows.backup import backup
    from flows.restore import restore

    make_library(env, drives=2)
    sources = make_sources(env, 2, files=30)
    src = Path(sources[0]["path"])
    before = tree_digest(src)
    backup(sources=sources, library=env["library"], catalog=env["catalog"])
    between = datetime.now(UTC)
    time.sleep(0.05)
    changed = src / "dir0" / "sub0" / "file0000.dat"
    changed.write_bytes(b"new content")
    (src / "dir1" / "sub1" / "file0001.dat").unlink()
    backup(sources=sources, level="incremental", library=env["library"], catalog=env["catalog"])
    after = tree_digest(src)

    old = restore(
        source="src0",
        at=between,
        target=str(env["tmp"] / "old"),
        library=env["library"],
        catalog=env["catalog"],
    )
    assert old["restored"] > 0
    assert tree_digest(env["tmp"] / "old") == before
    new = restore(
        source="src0",
        target=str(env["tmp"] / "new"),
        library=env["library"],
        catalog=env["catalog"],
    )
    assert new["restored"] > 0
    assert tree_digest(env["tmp"] / "new") == after
    # one file, to the original place, never overwriting
    out = restore(
        source="src0",
        selection=["dir0/sub0/file0000.dat"],
        overwrite="never",
        library=env["library"],
        catalog=env["catalog"],
    )
    assert out["target"] == str(src) and out["skipped"] == 1 and out["restored"] == 0
    changed.unlink()
    out = restore(
        source="src0",
        selection=["dir0/sub0/file0000.dat"],
        library=env["library"],
        catalog=env["catalog"],
    )
    assert out["restored"] == 1 and changed.read_bytes() == b"new content"
    assert hashlib.sha256(changed.read_bytes()).hexdigest() == after["dir0/sub0/file0000.dat"]


def test_retry_of_a_failed_master_redoes_only_failed_slaves(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.backup import backup

    make_library(env, drives=2)
    sources = make_sources(env, 1, files=10)
    late = env["tmp"] / "late"
    monkeypatch.setenv("TAPEFLOW_TEST_MISSING", str(late))
    sources.append({"name": "late", "path": str(late)})
    flaky = backup.with_options(retries=1, retry_delay_seconds=0)
    state = flaky(
        sources=sources,
        library=env["library"],
        catalog=env["catalog"],
        post=["py:tests.flowhooks:create_missing"],
        return_state=True,
    )
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome["skipped"] == ["src0"] and outcome["complete"] == 2
    with Catalog(Path(env["catalog"])) as cat:
        states = sorted((s["source"], s["state"]) for s in cat.sessions())
    assert states == [("late", "failed"), ("late", "complete"), ("src0", "complete")] or states == [
        ("late", "complete"),
        ("late", "failed"),
        ("src0", "complete"),
    ]


def test_bad_parameters_fail_clearly(env: dict[str, Any]) -> None:
    from flows.backup import backup

    make_library(env, drives=1)
    with pytest.raises(ValueError, match="unique"):
        backup(
            sources=[{"name": "a", "path": "/tmp"}, {"name": "a", "path": "/tmp"}],
            library=env["library"],
            catalog=env["catalog"],
        )
    with pytest.raises(ValueError, match="no BackupSource block"):
        backup(sources=["no-such-block"], library=env["library"], catalog=env["catalog"])


def test_cli_backup_jobs_find_restore(env: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    from flows.cli import main

    make_library(env, drives=2)
    src = env["tmp"] / "docs"
    make_sample_tree(src, files=12)
    common = ["--library", env["library"], "--catalog", env["catalog"]]
    assert main(["backup", f"docs={src}", "--verify", "--compression", *common]) == 0
    assert "complete" in capsys.readouterr().out
    assert main(["jobs", "--catalog", env["catalog"]]) == 0
    assert "docs" in capsys.readouterr().out
    assert main(["find", "dir1/sub1/file0001.dat", "--catalog", env["catalog"]]) == 0
    assert "TF000" in capsys.readouterr().out
    assert main(["find", "no/such/file", "--catalog", env["catalog"]]) == 1
    target = env["tmp"] / "back"
    assert main(["restore", "docs", "dir1", "--target", str(target), *common]) == 0
    assert "restored" in capsys.readouterr().out
    assert tree_digest(target / "dir1") == {
        k.removeprefix("dir1/"): v for k, v in tree_digest(src).items() if k.startswith("dir1/")
    }
    assert main(["restore", "nosuch", "--target", str(target), *common]) == 2
    assert "nothing of 'nosuch' matches everything" in capsys.readouterr().err


def test_verify_reads_every_session_back(env: dict[str, Any]) -> None:
    from flows.backup import backup

    make_library(env, drives=2)
    out = backup(
        sources=make_sources(env, 2, files=10),
        library=env["library"],
        catalog=env["catalog"],
        verify=True,
        compression=True,
    )
    assert out["state"] == "complete" and out["errors"] == []
    with Library(env["library"]) as lib:  # verify left no cartridge behind in a drive
        assert not any(d.full for d in lib.inventory().drives)
