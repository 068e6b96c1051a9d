"""The deployment registry, prefect.yaml and `tapeflow serve`: schedules, timezones, pools, and
bad cron/timezone input refused before anything reaches the server."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL
from prefect.utilities.asyncutils import run_coro_as_sync

from deployments import registry
from flows import queue, serve_cli
from tapeflow import cli as core_cli
from tapeflow.backup.model import Pool

REPO = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
EXPECTED = {
    "tapeflow-backup/backup",
    "tapeflow-backup/nightly-incremental",
    "tapeflow-backup/weekly-full",
    "tapeflow-backup/gfs-daily",
    "tapeflow-backup/gfs-weekly",
    "tapeflow-backup/gfs-monthly",
    "tapeflow-restore/restore",
    "tapeflow-serverless-backup/serverless-backup",
    "tapeflow-restore-image/restore-image",
}


def by_name(rotation: registry.Rotation = "simple") -> dict[str, Any]:
    return {registry.full_name(d): d for d in registry.all_deployments(rotation=rotation)}


def next_dates(schedule: Any, n: int) -> list[datetime]:
    """The next `n` run times, computed by the server's own schedule code."""
    from prefect.server.schemas import schedules as server

    body = schedule.schedule.model_dump(exclude_none=True)
    cls = server.CronSchedule if "cron" in body else server.RRuleSchedule
    start = datetime(2026, 3, 20, tzinfo=BERLIN)  # spans the switch to summer time (29 March)
    return run_coro_as_sync(cls(**body).get_dates(n=n, start=start))


def test_registry_builds_every_deployment_with_schedules_and_timezones() -> None:
    deps = by_name()
    assert EXPECTED <= set(deps)
    for extra in set(deps) - EXPECTED:  # one per maintenance, library and reports flow
        assert deps[extra].entrypoint.rsplit(".", 1)[0] in registry.FLOW_MODULES
    for name, (cron, slug) in (
        ("tapeflow-catalog-prune/catalog-prune", ("0 0 * * *", "daily-prune")),
        ("tapeflow-library-clean/library-clean", ("0 6 * * 0", "weekly-clean")),
    ):
        [sched] = deps[name].schedules
        assert (sched.schedule.cron, sched.slug) == (cron, slug)
        assert sched.schedule.timezone == "Europe/Berlin"

    nightly = deps["tapeflow-backup/nightly-incremental"]
    [sched] = nightly.schedules
    assert sched.schedule.cron == "0 1 * * 1-6" and sched.schedule.timezone == "Europe/Berlin"
    assert sched.active and sched.slug == "nightly"
    assert nightly.parameters["level"] == "incremental"
    assert nightly.parameters["sources"] == ["default"]
    runs = next_dates(sched, 14)
    local = [r.astimezone(BERLIN) for r in runs]
    assert all(t.hour == 1 and t.minute == 0 for t in local)  # 01:00 Berlin, before and after DST
    assert all(t.isoweekday() != 7 for t in local)  # never on Sunday
    assert {t.utcoffset().total_seconds() for t in local} == {3600, 7200}

    weekly = deps["tapeflow-backup/weekly-full"]
    [sched] = weekly.schedules
    assert sched.schedule.cron == "0 1 * * 0" and sched.active
    assert weekly.parameters["level"] == "full"
    assert {t.astimezone(BERLIN).isoweekday() for t in next_dates(sched, 5)} == {7}

    tiers = {}
    for tier, retention, level in (
        ("daily", 7, "incremental"),
        ("weekly", 35, "full"),
        ("monthly", 365, "full"),
    ):
        dep = deps[f"tapeflow-backup/gfs-{tier}"]
        [sched] = dep.schedules
        assert not sched.active  # the simple rotation is the active one by default
        assert sched.schedule.timezone == "Europe/Berlin"
        assert dep.parameters["level"] == level
        pool = Pool.from_dict(dep.parameters["pool"])
        assert (pool.name, pool.retention_days) == (f"gfs-{tier}", retention)
        tiers[tier] = [t.astimezone(BERLIN) for t in next_dates(sched, 12)]
    assert all(t.hour == 21 and t.minute == 0 for times in tiers.values() for t in times)
    assert all(t.isoweekday() != 7 for t in tiers["daily"])  # son: Monday to Saturday
    assert all(t.isoweekday() == 7 and t.day > 7 for t in tiers["weekly"])  # father
    assert all(t.isoweekday() == 7 and t.day <= 7 for t in tiers["monthly"])  # grandfather
    days = [t.date() for times in tiers.values() for t in times]
    assert len(days) == len(set(days))  # one tier a day

    for name in (
        "tapeflow-backup/backup",
        "tapeflow-restore/restore",
        "tapeflow-serverless-backup/serverless-backup",
        "tapeflow-restore-image/restore-image",
    ):
        assert deps[name].schedules == [], name  # on demand
        assert "library" not in deps[name].parameters  # default: the embedded library
        assert "catalog" not in deps[name].parameters  # and the default catalog
    assert "sources" in deps["tapeflow-backup/backup"]._parameter_openapi_schema.required


def test_gfs_rotation_and_overrides() -> None:
    deps = {
        registry.full_name(d): d
        for d in registry.all_deployments(
            sources=[{"name": "hr", "path": "/srv/hr"}],
            timezone="America/New_York",
            nightly_cron="30 2 * * 1-5",
            rotation="gfs",
            library="embedded:/srv/vtl",
            catalog="/srv/catalog.duckdb",
        )
    }
    nightly = deps["tapeflow-backup/nightly-incremental"]
    assert nightly.schedules[0].schedule.cron == "30 2 * * 1-5"
    assert nightly.schedules[0].schedule.timezone == "America/New_York"
    assert not nightly.schedules[0].active
    assert all(
        deps[f"tapeflow-backup/gfs-{t}"].schedules[0].active for t in ("daily", "weekly", "monthly")
    )
    assert nightly.parameters["sources"] == [{"name": "hr", "path": "/srv/hr"}]
    assert deps["tapeflow-restore/restore"].parameters == {
        "library": "embedded:/srv/vtl",
        "catalog": "/srv/catalog.duckdb",
    }


def test_served_library_and_catalog_reach_maintenance_and_library_flows() -> None:
    """Scheduled prune and cleaning must work on the served library and catalog, not on the
    defaults; the prune's age and both crons can be set when registering."""
    where = {"library": "embedded:/srv/vtl", "catalog": "/srv/catalog.duckdb"}
    deps = {
        registry.full_name(d): d
        for d in registry.all_deployments(
            **where, prune_cron="30 2 * * *", prune_days=45, clean_cron="0 5 * * 6"
        )
    }
    prune = deps["tapeflow-catalog-prune/catalog-prune"]
    assert prune.parameters == {"catalog": "/srv/catalog.duckdb", "days": 45}
    assert (prune.schedules[0].schedule.cron, prune.schedules[0].slug) == (
        "30 2 * * *",
        "daily-prune",
    )
    clean = deps["tapeflow-library-clean/library-clean"]
    assert clean.parameters == {"library": "embedded:/srv/vtl"}
    assert clean.schedules[0].schedule.cron == "0 5 * * 6"
    for name, dep in deps.items():
        if dep.entrypoint.rsplit(".", 1)[0] not in registry.FLOW_MODULES:
            continue
        assert dep.flow_name.startswith("tapeflow-"), name  # no clash with other teams' flows
        takes = dep._parameter_openapi_schema.properties
        for key, value in where.items():
            assert dep.parameters.get(key) == (value if key in takes else None), (name, key)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nightly_cron": "0 1 * *"}, "does not parse"),
        ({"weekly_cron": "61 25 * * 0"}, "does not parse"),
        ({"timezone": "Europe/Berlim"}, "unknown timezone"),
        ({"rotation": "fifo"}, "rotation"),
        ({"prune_cron": "daily"}, "does not parse"),
        ({"clean_cron": "0 6 * * 9"}, "does not parse"),
        ({"prune_days": 0}, "at least 1"),
    ],
)
def test_registry_refuses_bad_cron_and_timezone(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(queue.ScheduleError, match=message):
        registry.all_deployments(**kwargs)


def test_prefect_yaml_is_current_and_names_the_same_flows() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    stale = "deployments/prefect.yaml is stale: python -m deployments.registry --write-yaml"
    text = registry.PREFECT_YAML.read_text()
    model = PrefectYamlModel.model_validate(yaml.safe_load(text))
    deps = by_name()
    assert {d.name for d in model.deployments} == {d.name for d in deps.values()}, stale
    [pull] = model.pull
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == (
        "{{ $TAPEFLOW_REPO }}"
    )
    cwd = os.getcwd()
    os.chdir(REPO)  # entrypoints are relative to the repository, as for `prefect deploy`
    try:
        for entry in model.deployments:
            flow = load_flow_from_entrypoint(entry.entrypoint)
            [match] = [d for d in deps.values() if d.name == entry.name]
            assert flow.name == match.flow_name, entry.name
            assert entry.work_pool.name == registry.WORK_POOL
            assert entry.parameters == match.parameters, f"{entry.name}: {stale}"
            got = [(s.cron or s.rrule, s.timezone, s.slug, s.active) for s in entry.schedules or []]
            want = [
                (
                    getattr(s.schedule, "cron", None) or s.schedule.rrule,
                    s.schedule.timezone,
                    s.slug,
                    s.active,
                )
                for s in match.schedules
            ]
            assert got == want, f"{entry.name}: {stale}"
    finally:
        os.chdir(cwd)


def serve_parser() -> argparse.ArgumentParser:
    """A `tapeflow` parser with the serve and job commands wired the way flows/cli.py does."""
    from flows import queue_cli

    parser = argparse.ArgumentParser(prog="tapeflow")
    top = parser.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--library", default=None)
    common.add_argument("--catalog", default=None)
    common.add_argument("--json", action="store_true")
    serve_cli.add_commands(top, common)
    queue_cli.add_commands(top, common)
    return parser


def test_serve_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert core_cli.main(["serve", "--list", "--timezone", "UTC"], serve_parser()) == 0
    out = capsys.readouterr().out
    assert "tapeflow-backup/nightly-incremental" in out and "cron 0 1 * * 1-6 UTC" in out
    assert "tapeflow-restore/restore" in out and "on demand" in out


def deployment_count() -> int:
    async def count() -> int:
        async with get_client() as client:
            return len(await client.read_deployments())

    return run_coro_as_sync(count())


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nightly", "every night"], "cron 'every night' does not parse"),
        (["--weekly", "0 1 * * 8"], "does not parse"),
        (["--timezone", "Berlin"], "unknown timezone 'Berlin'"),
        (["--prune-cron", "0 0 * *"], "does not parse"),
    ],
)
def test_serve_refuses_bad_cron_and_timezone_and_registers_nothing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = deployment_count()
    assert core_cli.main(["serve", *argv], serve_parser()) == 2
    assert message in capsys.readouterr().err
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.run(
        [sys.executable, "deployments/serve.py", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert deployment_count() == before


@pytest.mark.usefixtures("prefect_server")
def test_prefect_deploy_registers_the_yaml(tmp_path: Path) -> None:
    """`prefect deploy --all` accepts deployments/prefect.yaml (process work pool), and a
    worker on that pool runs a deployment."""

    async def make_pool() -> None:
        async with get_client() as client:
            try:
                await client.create_work_pool(
                    WorkPoolCreate(name=registry.WORK_POOL, type="process")
                )
            except ObjectAlreadyExists:
                pass  # a previous test in this session made it

    run_coro_as_sync(make_pool())
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "TAPEFLOW_REPO": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            "deployments/prefect.yaml",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            out = {}
            for dep in await client.read_deployments():
                flow = await client.read_flow(dep.flow_id)
                if dep.work_pool_name == registry.WORK_POOL:
                    out[f"{flow.name}/{dep.name}"] = dep
            return out

    deployed = run_coro_as_sync(read())
    assert set(deployed) == set(by_name())
    nightly = deployed["tapeflow-backup/nightly-incremental"]
    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in nightly.schedules] == [
        ("0 1 * * 1-6", "Europe/Berlin", True)
    ]
    assert deployed["tapeflow-backup/gfs-daily"].parameters["pool"] == {
        "name": "gfs-daily",
        "retention_days": 7,
    }
    steps = deployed["tapeflow-restore/restore"].pull_steps  # $TAPEFLOW_REPO, resolved
    assert steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]

    # a worker on the pool runs a deployment from the repository (the README's work-pool way)
    async def start_count() -> Any:
        async with get_client() as client:
            dep = deployed["tapeflow-count/count"]
            return await client.create_flow_run_from_deployment(
                dep.id, parameters={"source": str(tmp_path / "tree")}
            )

    for name in ("a.txt", "b/c.txt", "b/d/e.txt"):
        (tmp_path / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / name).write_text(name)
    run = run_coro_as_sync(start_count())
    worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", registry.WORK_POOL]
        + ["--run-once", "--type", "process"],
        cwd="/",  # the pull step, not the worker's directory, finds the flows
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]

    async def final() -> tuple[Any, list[Any]]:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        async with get_client() as client:
            state = (await client.read_flow_run(run.id)).state
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
        return state, found

    state, artifacts = run_coro_as_sync(final())
    assert state is not None and state.is_completed(), (state, worker.stdout[-3000:])
    [summary] = [a for a in artifacts if a.key == "count-summary"]
    rows = json.loads(summary.data) if isinstance(summary.data, str) else summary.data
    assert {"item": "files", "value": 3} in rows, rows
