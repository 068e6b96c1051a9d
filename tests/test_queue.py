"""The job queue (`tapeflow job ...`) on a real `prefect server start`, whose scheduler makes
the scheduled runs: run now, one-off, schedule with excluded days, HOLD/READY, reschedule,
resubmit, cancel (master and slaves), delete, save and submit again. Refused requests change
nothing on the server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows import queue
from tapeflow import cli as core_cli
from tapeflow.catalog import Catalog
from tests.realserver import RealServer, ServedDeployments
from tests.test_cancel import wait_for
from tests.test_deployments import serve_parser
from tests.test_flows import any_running, lib_env, make_library, make_sources, slave_runs

REPO = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
BACKUP = "tapeflow-backup/backup"


@pytest.fixture(scope="module")
def api(real_prefect_server: RealServer) -> Iterator[RealServer]:
    """This module's clients talk to the real server (it has a scheduler; the harness not)."""
    with temporary_settings({PREFECT_API_URL: real_prefect_server.api_url}):
        yield real_prefect_server


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The library and catalog `serve.py --library/--catalog` makes every deployment's default."""
    env = lib_env(tmp_path_factory.mktemp("site"))
    make_library(env, drives=2)
    return env


@pytest.fixture(scope="module")
def served(
    api: RealServer, site: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """`python deployments/serve.py` against the real server; yields its home directory."""
    home = tmp_path_factory.mktemp("served")
    where = ["--library", site["library"], "--catalog", site["catalog"]]
    with ServedDeployments(api.api_url, home, "tapeflow-restore-image/restore-image", where):
        yield home


def job(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """`tapeflow job ... --json`: (exit code, parsed stdout or None, stderr)."""
    code = core_cli.main(["job", *argv, "--json"], serve_parser())
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 and out.strip() else None, err


def state_of(run_id: str | UUID) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(run_id))).state


def finished(run_id: str | UUID, timeout: float = 240) -> Any:
    """Wait for a run to end; its final state."""
    return wait_for(
        f"run {run_id} to end", lambda: (s := state_of(run_id)).is_final() and s, timeout
    )


def run_count(deployment: str | None = None) -> int:
    """Flow runs on the server (of one deployment), whatever their state."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        only = None
        if deployment:
            dep_id = client.read_deployment_by_name(deployment).id
            only = DeploymentFilter(id=DeploymentFilterId(any_=[dep_id]))
        return client.count_flow_runs(deployment_filter=only)


@pytest.fixture
def lib(tmp_path: Path) -> dict[str, Any]:
    env = lib_env(tmp_path)
    make_library(env, drives=2)
    return env


def backup_params(env: dict[str, Any], count: int = 2, files: int = 8) -> dict[str, Any]:
    return {
        "sources": make_sources(env, count, files=files),
        "library": env["library"],
        "catalog": env["catalog"],
    }


def test_run_now_resubmit_save_and_submit_again(
    served: Path, lib: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = backup_params(lib)
    first = queue.run_now(BACKUP, params, wait=240)
    assert first.state is not None and first.state.is_completed(), first.state

    code, again, _ = job(capsys, "resubmit", str(first.id))
    assert code == 0 and again["id"] != str(first.id)
    assert finished(again["id"]).is_completed()
    assert again["parameters"] == first.parameters

    saved = tmp_path / "job.yaml"
    code, content, _ = job(capsys, "save", str(first.id), str(saved))
    assert code == 0 and content["deployment"] == BACKUP
    on_disk = yaml.safe_load(saved.read_text())
    assert on_disk["parameters"] == first.parameters and on_disk["tapeflow_job"] == 1
    code, resent, _ = job(capsys, "submit", str(saved))
    assert code == 0 and resent["parameters"] == first.parameters
    assert finished(resent["id"]).is_completed()
    with Catalog(Path(lib["catalog"]), read_only=True) as cat:  # three real jobs
        for run_id in (str(first.id), again["id"], resent["id"]):
            assert cat.job(run_id)["state"] == "complete"
    code, listed, _ = job(capsys, "list", BACKUP)  # newest first, all three Completed
    ours = [r for r in listed if r["id"] in (str(first.id), again["id"], resent["id"])]
    assert [r["id"] for r in ours] == [resent["id"], again["id"], str(first.id)]
    assert {r["state"] for r in ours} == {"Completed"}

    # a deployment saves as its defaults and schedules; JSON as well as YAML
    dep_file = tmp_path / "nightly.json"
    code, _, _ = job(capsys, "save", "tapeflow-backup/nightly-incremental", str(dep_file))
    exported = json.loads(dep_file.read_text())
    assert code == 0 and exported["parameters"]["level"] == "incremental"
    [sched] = exported["schedules"]
    assert (sched["cron"], sched["timezone"], sched["slug"]) == (
        "0 1 * * 1-6",
        "Europe/Berlin",
        "nightly",
    )
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    code, one_off, _ = job(capsys, "submit", str(dep_file), "--at", later)
    assert code == 0 and one_off["state"] == "Scheduled"
    assert job(capsys, "delete", one_off["id"])[0] == 0

    bad = tmp_path / "bad.yaml"
    bad.write_text("deployment: x\n")
    before = run_count()
    code, _, err = job(capsys, "submit", str(bad))
    assert code == 2 and "not a tapeflow job file" in err and run_count() == before


def test_maintenance_library_and_report_flows_run_as_deployments_on_the_served_site(
    served: Path, site: dict[str, Any]
) -> None:
    """Run with no parameters, as their schedules do, the deployments act on the library and
    catalog given to serve.py, not on the defaults."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    sources = make_sources(site, 1, files=4)
    backup_run = queue.run_now(BACKUP, {"sources": sources}, wait=240)
    assert backup_run.state is not None and backup_run.state.is_completed(), backup_run.state
    with Catalog(Path(site["catalog"]), read_only=True) as cat:
        assert cat.job(str(backup_run.id))["state"] == "complete"
        [used] = cat.records("SELECT barcode FROM media WHERE sessions > 0")

    runs = {}
    for deployment in (
        "tapeflow-catalog-prune/catalog-prune",
        "tapeflow-library-inventory/library-inventory",
        "tapeflow-media-report/media-report",
    ):
        run = queue.run_now(deployment, wait=240)
        assert run.state is not None and run.state.is_completed(), (deployment, run.state)
        runs[deployment] = run
    assert runs["tapeflow-catalog-prune/catalog-prune"].parameters == {
        "catalog": site["catalog"],
        "days": 30,
    }
    assert runs["tapeflow-library-inventory/library-inventory"].parameters == {
        "library": site["library"]
    }
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(
                    any_=[runs["tapeflow-media-report/media-report"].id]
                )
            )
        )
    [report] = [a for a in found if a.key == "media-report"]
    rows = json.loads(report.data) if isinstance(report.data, str) else report.data
    assert {r["barcode"]: r["status"] for r in rows}[used["barcode"]] == "in use"
    with Catalog(Path(site["catalog"]), read_only=True) as cat:  # the prune kept the young job
        assert cat.job(str(backup_run.id))["state"] == "complete"


def test_a_run_scheduled_for_later_runs_when_due(
    served: Path, lib: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A run scheduled ahead (as a schedule's runs are) is started by the served runner when
    its time comes, and does its job."""
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=8)
    params = json.dumps(backup_params(lib, count=1, files=3))
    code, run, _ = job(capsys, "run", BACKUP, "--params", params, "--at", due.isoformat())
    assert code == 0 and run["state"] == "Scheduled"
    assert not state_of(run["id"]).is_final()
    state = finished(run["id"], timeout=180)
    assert state.is_completed(), state
    from prefect import get_client

    with get_client(sync_client=True) as client:
        started = client.read_flow_run(UUID(run["id"])).start_time
    # Not before its time. Prefect's WaitForScheduledTime rule rounds the remaining delay to
    # the nearest second, so the server itself lets a run start up to half a second early.
    assert started is not None and started >= due - timedelta(seconds=0.5), (started, due)
    with Catalog(Path(lib["catalog"]), read_only=True) as cat:
        assert cat.job(run["id"])["state"] == "complete"


def test_one_off_reschedule_cancel_delete(
    served: Path, lib: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    params = json.dumps(backup_params(lib))
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    code, run, _ = job(capsys, "run", BACKUP, "--params", params, "--at", soon.isoformat())
    assert code == 0 and run["state"] == "Scheduled"
    assert datetime.fromisoformat(run["scheduled"]) == soon

    later = soon + timedelta(hours=1)
    code, moved, _ = job(capsys, "reschedule", run["id"], "--at", later.isoformat())
    assert code == 0 and datetime.fromisoformat(moved["scheduled"]) == later
    code, _, err = job(capsys, "reschedule", run["id"], "--at", "2001-01-01T00:00+00:00")
    assert code == 2 and "in the past" in err
    assert [r for r in queue.upcoming(BACKUP) if str(r.id) == run["id"]][
        0
    ].next_scheduled_start_time == later  # unchanged by the refused request

    before = run_count()
    code, _, err = job(capsys, "run", BACKUP, "--params", params, "--at", "2020-05-01T10:00")
    assert code == 2 and "in the past" in err
    code, _, err = job(capsys, "run", "tapeflow-backup/no-such", "--params", params)
    assert code == 2 and "no deployment" in err
    assert run_count() == before  # nothing created

    code, _, _ = job(capsys, "cancel", run["id"])
    assert code == 0 and finished(run["id"]).is_cancelled()
    code, _, err = job(capsys, "cancel", run["id"])
    assert code == 2 and "already ended" in err
    code, _, _ = job(capsys, "delete", run["id"])
    assert code == 0
    with pytest.raises(queue.JobNotFound):
        queue.cancel(run["id"])


def test_cancel_master_and_all_slaves(
    served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = lib_env(tmp_path)
    make_library(env, drives=2, speed=1e6)  # ~3 s per slave
    params = {
        "sources": make_sources(env, 4, files=40),
        "library": env["library"],
        "catalog": env["catalog"],
    }
    run = queue.run_now(BACKUP, params)
    wait_for(
        "a running slave",
        lambda: any_running(slave_runs(str(run.id))),
        timeout=180,
    )
    code, _, err = job(capsys, "resubmit", str(run.id))
    assert code == 2 and "has not finished" in err
    code, _, err = job(capsys, "delete", str(run.id))
    assert code == 2 and "cancel it first" in err

    code, out, _ = job(capsys, "cancel", str(run.id))
    assert code == 0 and out["state"] in ("Cancelling", "Cancelled")
    assert finished(run.id).is_cancelled()
    slaves = slave_runs(str(run.id))
    assert slaves and not any_running(slaves)
    with Catalog(Path(env["catalog"]), read_only=True) as cat:
        assert cat.job(str(run.id))["state"] == "cancelled"
        assert "running" not in {s["state"] for s in cat.sessions(job_id=str(run.id))}
    code, _, _ = job(capsys, "delete", str(run.id))
    assert code == 0


def make_deployment(name: str) -> str:
    """An unserved deployment of the backup flow: its scheduled runs never start."""
    from flows.backup import backup

    backup.to_deployment(name=name, parameters={"sources": ["default"]}).apply()
    return f"tapeflow-backup/{name}"


def scheduled_local_times(deployment: str) -> list[datetime]:
    return sorted(
        r.next_scheduled_start_time.astimezone(BERLIN)
        for r in queue.upcoming(deployment, limit=200)
    )


def test_schedule_with_excluded_days_hold_and_ready(
    api: RealServer, capsys: pytest.CaptureFixture[str]
) -> None:
    daily = make_deployment("weekdays-at-two")
    tomorrow = datetime.now(BERLIN).date() + timedelta(days=1)
    # a Wednesday at least a week ahead: a weekday that would otherwise run
    holiday = tomorrow + timedelta(days=7 + (2 - tomorrow.weekday()) % 7)
    code, created, _ = job(
        capsys,
        "schedule",
        daily,
        "--start",
        f"{tomorrow}T02:00",
        "--every",
        "1d",
        "--exclude",
        "sat,sun",
        "--exclude-date",
        str(holiday),
        "--tz",
        "Europe/Berlin",
        "--slug",
        "weekdays",
    )
    assert code == 0 and created["slug"] == "weekdays"
    assert "BYDAY=MO,TU,WE,TH,FR" in created["rrule"] and "EXDATE" in created["rrule"]

    # the server's scheduler makes the runs: weekdays at 02:00 Berlin, never the holiday
    times = wait_for(
        "the scheduler's runs",
        lambda: (t := scheduled_local_times(daily)) and len(t) >= 20 and t,
        timeout=180,
    )
    assert all((t.hour, t.minute) == (2, 0) for t in times)
    days = [t.date() for t in times]
    expected = [tomorrow + timedelta(days=i) for i in range((days[-1] - tomorrow).days + 1)]
    expected = [d for d in expected if d.weekday() < 5 and d != holiday]
    assert days == expected
    assert holiday not in days and holiday - timedelta(days=1) in days

    # every 6 hours from tomorrow 00:00, except all day on the holiday (several EXDATEs)
    six = make_deployment("six-hourly")
    near = tomorrow + timedelta(days=2)
    assert (
        job(
            capsys,
            "schedule",
            six,
            "--start",
            f"{tomorrow}T00:00",
            "--every",
            "6h",
            "--exclude-date",
            str(near),
            "--tz",
            "Europe/Berlin",
            "--slug",
            "sixh",
        )[0]
        == 0
    )
    hours = wait_for(
        "6-hourly runs",
        lambda: (t := scheduled_local_times(six)) and len(t) >= 16 and t,
        timeout=180,
    )
    by_day: dict[date, list[int]] = {}
    for t in hours:
        by_day.setdefault(t.date(), []).append(t.hour)
    assert near not in by_day
    assert by_day[near - timedelta(days=1)] == by_day[near + timedelta(days=1)] == [0, 6, 12, 18]

    # HOLD removes the scheduled runs and stops new ones; READY brings them back
    assert job(capsys, "hold", daily)[0] == 0
    assert queue.is_held(daily)
    wait_for("no scheduled runs on hold", lambda: not queue.upcoming(daily), timeout=60)
    assert job(capsys, "ready", daily)[0] == 0
    assert not queue.is_held(daily)
    back = wait_for("runs again", lambda: scheduled_local_times(daily), timeout=180)
    assert holiday not in {t.date() for t in back}

    code, shown, _ = job(capsys, "schedules", daily)
    assert code == 0 and not shown["held"] and shown["schedules"][0]["slug"] == "weekdays"
    assert job(capsys, "unschedule", daily, "weekdays")[0] == 0
    assert queue.schedules(daily) == []
    wait_for("the schedule's runs gone", lambda: not queue.upcoming(daily), timeout=60)

    code, _, _ = job(capsys, "delete", six)
    assert code == 0
    with pytest.raises(queue.JobNotFound):
        queue.schedules(six)


def test_hold_survives_registering_the_deployments_again(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Restarting `tapeflow serve` registers every deployment again, which resumes it; a
    deployment on HOLD must stay held (and keep no scheduled runs)."""
    from deployments.registry import all_deployments, full_name
    from flows.serve_cli import keep_holds

    weekly = "tapeflow-backup/weekly-full"
    assert job(capsys, "hold", weekly)[0] == 0
    wait_for("no scheduled runs on hold", lambda: not queue.upcoming(weekly), timeout=60)
    again = all_deployments()
    assert keep_holds(again) == [weekly]
    for d in again:
        if full_name(d) in (weekly, "tapeflow-backup/nightly-incremental"):
            d.apply()  # what serve() does with each deployment
    assert queue.is_held(weekly) and job(capsys, "schedules", weekly)[1]["held"]
    assert not queue.is_held("tapeflow-backup/nightly-incremental")
    from prefect import get_client

    with get_client(sync_client=True) as client:
        assert client.read_deployment_by_name(weekly).paused
    time.sleep(12)  # a scheduler loop (10 s here) passes: still nothing scheduled
    assert not queue.upcoming(weekly)
    assert job(capsys, "ready", weekly)[0] == 0
    assert not queue.is_held(weekly)
    wait_for("runs again", lambda: queue.upcoming(weekly), timeout=180)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cron", "0 25 * * *"], "does not parse"),
        (["--cron", "every day"], "does not parse"),
        (["--cron", "0 1 * * *", "--tz", "Europe/Atlantis"], "unknown timezone"),
        (["--start", "2030-01-01T02:00", "--every", "1d", "--tz", "CEST"], "unknown timezone"),
        (["--start", "2030-01-01T02:00", "--every", "0m"], "at least 1 minute"),
        (
            [
                "--start",
                "2030-01-01T02:00",
                "--every",
                "1d",
                "--exclude",
                "mon,tue,wed,thu,fri,sat,sun",
            ],
            "every weekday is excluded",
        ),
        (["--start", "2030-01-01T02:00", "--every", "1d", "--exclude", "funday"], "not a weekday"),
        (["--start", "yesterday", "--every", "1d"], "not an ISO 8601"),
    ],
)
def test_bad_schedules_are_refused_and_change_nothing(
    api: RealServer, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    untouched = make_deployment("untouched")
    code, _, err = job(capsys, "schedule", untouched, *argv, "--slug", "bad")
    assert code == 2 and message in err, err
    assert err.startswith("tapeflow: error:") and "Traceback" not in err
    assert queue.schedules(untouched) == []
    assert run_count(untouched) == 0


def test_job_schedules_survive_reregistration(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A schedule added with `tapeflow job schedule` outlives re-serving the deployments."""
    from deployments.registry import all_deployments, full_name

    name = "tapeflow-backup/weekly-full"
    assert (
        job(
            capsys,
            "schedule",
            name,
            "--cron",
            "0 3 1 * *",
            "--tz",
            "UTC",
            "--slug",
            "monthly-extra",
        )[0]
        == 0
    )
    try:
        [dep] = [d for d in all_deployments() if full_name(d) == name]
        dep.apply()
        slugs = {s.slug: s for s in queue.schedules(name)}
        assert set(slugs) == {"weekly", "monthly-extra"}
        assert slugs["weekly"].schedule.cron == "0 1 * * 0"
    finally:
        queue.remove_schedule(name, "monthly-extra")
