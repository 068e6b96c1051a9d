"""Cancelling a served master job: slaves stop, leases free, sessions partial, re-run works."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelling
from prefect.utilities.asyncutils import run_coro_as_sync

from tapeflow.catalog import Catalog, CatalogError
from tapeflow.library import Library
from tapeflow.library.leases import LeaseBoard
from tests.test_flows import any_running, lib_env, make_library, make_sources, slave_runs

pytestmark = pytest.mark.usefixtures("prefect_server")
REPO = Path(__file__).resolve().parent.parent


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """deployments/serve.py in a child process, talking to the test server."""
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "TAPEFLOW_HOME": str(tmp_path / "home"),
    }
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "deployments/serve.py"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def deployed() -> bool:
            async def read() -> bool:
                async with get_client() as client:
                    try:
                        await client.read_deployment_by_name("tapeflow-backup/backup")
                    except Exception:  # noqa: BLE001 - not registered yet
                        return False
                return True

            return run_coro_as_sync(read())

        wait_for("the deployments", deployed)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def flow_state(flow_run_id: Any) -> Any:
    async def read() -> Any:
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).state

    return run_coro_as_sync(read())


def test_cancel_master_from_the_api(
    served: subprocess.Popen[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    env = lib_env(tmp_path)
    make_library(env, drives=2, speed=1e6)  # ~3 s per slave
    sources = make_sources(env, 4, files=40)
    run = run_deployment(
        "tapeflow-backup/backup",
        parameters={"sources": sources, "library": env["library"], "catalog": env["catalog"]},
        timeout=0,
    )
    wait_for("a running slave", lambda: any_running(slave_runs(str(run.id))))

    async def cancel() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(run.id, Cancelling(), force=True)

    run_coro_as_sync(cancel())
    wait_for("the cancelled state", lambda: flow_state(run.id).is_cancelled())

    runs = slave_runs(str(run.id))
    assert not any_running(runs), [r.state.name for r in runs]
    with Catalog(Path(env["catalog"]), read_only=True) as cat:
        job = cat.job(str(run.id))
        states = [s["state"] for s in cat.sessions(job_id=str(run.id))]
    assert job["state"] == "cancelled"
    assert "running" not in states and "partial" in states
    with Library(env["library"]) as lib:
        board = LeaseBoard(lib.state_dir)
        leases = [board.try_drive([d], "test") for d in (0, 1)]
        assert all(lease is not None for lease in leases)  # no drive left leased
        for lease in leases:
            lease.release()
        assert lib.clear(0) in (None, *lib.inventory().barcodes())
        lib.clear(1)


def flow_process(flow_run_id: Any, runner_pid: int) -> int | None:
    """PID of the process the runner started for this flow run (not its children, which
    inherit the same environment)."""
    needle = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if needle in env and ppid == runner_pid:
            return int(proc.name)
    return None


def test_kill_9_mid_slave_then_rerun_redoes_only_unfinished(
    served: subprocess.Popen[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    env = lib_env(tmp_path)
    make_library(env, drives=2, speed=1e6)  # ~3.4 s per slave: kill lands mid-job
    sources = make_sources(env, 6, files=40)
    run = run_deployment(
        "tapeflow-backup/backup",
        parameters={"sources": sources, "library": env["library"], "catalog": env["catalog"]},
        timeout=0,
    )

    def done_sessions() -> tuple[list[str]] | None:
        """([complete sources],) or None while the catalog is missing or being written."""
        if not Path(env["catalog"]).exists():
            return None
        try:
            with Catalog(Path(env["catalog"]), read_only=True) as cat:
                return (
                    [
                        s["source"]
                        for s in cat.sessions(job_id=str(run.id))
                        if s["state"] == "complete"
                    ],
                )
        except CatalogError:  # being created, or the master (or its crash hook) writes now
            return None

    wait_for("two finished slaves", lambda: (done := done_sessions()) and len(done[0]) >= 2)
    pid = wait_for("the flow's process", lambda: flow_process(run.id, served.pid))
    os.kill(pid, 9)
    wait_for("the crash", lambda: flow_state(run.id).is_final())
    assert not flow_state(run.id).is_completed()
    finished_before = set(wait_for("a readable catalog", done_sessions)[0])
    assert 2 <= len(finished_before) < 6

    with Library(env["library"]) as lib:  # nothing stays leased after kill -9
        board = LeaseBoard(lib.state_dir)
        for d in (0, 1):
            lease = board.try_drive([d], "test")
            assert lease is not None
            lease.release()

    async def rerun() -> None:
        from prefect.states import Scheduled

        async with get_client() as client:
            await client.set_flow_run_state(run.id, Scheduled(), force=True)

    run_coro_as_sync(rerun())
    wait_for("the re-run", lambda: flow_state(run.id).is_completed(), timeout=180)
    with Catalog(Path(env["catalog"]), read_only=True) as cat:
        sessions = cat.sessions(job_id=str(run.id))
        job = cat.job(str(run.id))
    complete = [s["source"] for s in sessions if s["state"] == "complete"]
    assert sorted(complete) == sorted(s["name"] for s in sources)  # each source exactly once
    assert job["state"] == "complete"
    redone = {s["source"] for s in sessions if s["state"] != "complete"}
    assert not redone & finished_before  # finished slaves were not redone
