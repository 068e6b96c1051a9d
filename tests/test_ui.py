"""The README's UI walk-through, followed for real: `prefect server start` (API + UI), blocks
registered, `python deployments/serve.py`, a backup started with `prefect deployment run`, the
flow-run page and a slave's page loaded in headless Debian chromium (screenshot + DOM), and a
restore triggered the same way."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.registry import all_deployments, full_name
from tapeflow.sample import tree_digest
from tests.realserver import RealServer, ServedDeployments
from tests.test_flows import lib_env, make_library, make_sources, slave_runs

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (scripts/system-deps.sh)"
)


def chromium(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[bytes]:
    """Headless chromium with the README's flags, in its own process group."""
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--virtual-time-budget=15000",
        *args,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:  # a hung browser goes with all its helper processes
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def page(url: str) -> str:
    """The DOM of `url` after the SPA has rendered."""
    return chromium("--dump-dom", url).stdout.decode(errors="replace")


def prefect_cli(server: RealServer, *argv: str, timeout: float = 300) -> str:
    """A `prefect ...` command against the server, as a person types it; its output."""
    env = {**os.environ, "PREFECT_API_URL": server.api_url}
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def run_id_of(output: str) -> UUID:
    """The flow run id `prefect deployment run` printed."""
    match = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert match, output
    return UUID(match.group(1))


@pytest.fixture
def served(real_prefect_server: RealServer, tmp_path: Path) -> Iterator[RealServer]:
    """Every deployment served against the real server; this test's client talks to it too."""
    last = full_name(all_deployments()[-1])  # the runner registers them in this order
    with (
        ServedDeployments(real_prefect_server.api_url, tmp_path / "served", last),
        temporary_settings({PREFECT_API_URL: real_prefect_server.api_url}),
    ):
        yield real_prefect_server


def test_readme_walkthrough_in_the_ui(served: RealServer, tmp_path: Path) -> None:
    server = served
    prefect_cli(server, "block", "register", "-m", "blocks")
    listed = page(f"{server.url}/deployments")
    (tmp_path / "deployments.html").write_text(listed)
    text = " ".join(re.sub(r"<[^>]+>", " ", listed).split())
    names = {d.name for d in all_deployments()}
    shown = re.search(r"(\d+) Deployments", text)
    assert shown and int(shown.group(1)) >= len(names), text[:2000]  # other tests may add some
    assert "tapeflow-backup" in text and "Ready" in text

    env: dict[str, Any] = lib_env(tmp_path)
    make_library(env, drives=2)
    sources = make_sources(env, 2, files=10)
    params = {"sources": sources, "library": env["library"], "catalog": env["catalog"]}
    out = prefect_cli(
        server,
        "deployment",
        "run",
        "tapeflow-backup/backup",
        "--params",
        json.dumps(params),
        "--watch",
        "--watch-timeout",
        "240",
    )
    run_id = run_id_of(out)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.state is not None and run.state.is_completed(), out
    slaves = sorted(slave_runs(str(run_id)), key=lambda r: r.name)
    assert [s.name for s in slaves] == [f"MULTI STREAM [JOB {run_id}] SUBJOB {n}" for n in (1, 2)]

    url = f"{server.url}/runs/flow-run/{run_id}"
    shot = tmp_path / "flowrun.png"
    chromium(f"--screenshot={shot}", url)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 30_000, "a blank page compresses to a few kB"
    dom = page(url)
    (tmp_path / "flowrun.html").write_text(dom)
    # The SPA renders the run's name and state into the DOM; the slaves' names are drawn on
    # the run graph's canvas (visible in the screenshot), and are in each slave's own page.
    assert f"Flow Run: {run.name}" in dom and "Completed" in dom
    slave_page = page(f"{server.url}/runs/task-run/{slaves[0].id}")
    (tmp_path / "slave.html").write_text(slave_page)
    assert f"MULTI STREAM [JOB {run_id}] SUBJOB 1" in slave_page

    target = tmp_path / "restored"
    restore = {
        "source": "src0",
        "target": str(target),
        "library": env["library"],
        "catalog": env["catalog"],
    }
    out = prefect_cli(
        server,
        "deployment",
        "run",
        "tapeflow-restore/restore",
        "--params",
        json.dumps(restore),
        "--watch",
        "--watch-timeout",
        "240",
    )
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id_of(out)).state
    assert state is not None and state.is_completed(), out
    assert tree_digest(target) == tree_digest(Path(sources[0]["path"]))
