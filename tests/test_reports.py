"""Reports (core rows, text, CLI) and, on a real Prefect server with the embedded library: the
job report artifact of a master backup, the media-report flow, and the alerts (events for a
failed slave, a failed job and a media request; the documented automation notifying)."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml
from prefect import get_client
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from prefect.events.schemas.automations import AutomationCore
from prefect.utilities.asyncutils import run_coro_as_sync

from tapeflow import cli as core_cli
from tapeflow import reports
from tapeflow.backup.model import Pool
from tapeflow.backup.pools import UnknownPool
from tapeflow.backup.rotation import GfsPolicy, RotationError
from tapeflow.catalog import Catalog, CatalogError
from tapeflow.library import Library
from tapeflow.reports_cli import add_commands
from tasks import alerts
from tests.test_flows import lib_env, make_library, make_sources
from tests.test_pools import A, B, Env, env, run_job, snapshot  # noqa: F401 - env: a fixture

# -- core: rows and text ---------------------------------------------------------------------


def test_media_pool_and_job_reports(env: Env) -> None:  # noqa: F811 - the imported fixture
    keep = Pool("keep", barcodes=(A,), retention_days=30, append=False)
    run_job(env, keep, "j1")
    failed, _, _ = run_job(env, keep, "j2")  # A is taken and unexpired: a media request
    assert failed.state == "failed"
    with Library(env.library) as lib:
        inventory = lib.inventory()
    with Catalog(env.catalog) as cat:
        media = reports.media_report(cat, inventory=inventory)
        pools = reports.pool_report(cat)
        sessions = reports.pool_sessions(cat, pool="keep")
        jobs = {j["job_id"]: j for j in reports.job_report(cat)}
        j2_sessions = reports.job_sessions(cat, "j2")
        assert reports.media_report(cat, barcode=A, inventory=inventory) == [media[0]]
    first = media[0]
    assert (first["barcode"], first["pool"], first["status"], first["location"]) == (
        A,
        "keep",
        "in use",
        "slot 1",
    )
    assert first["sessions"] == 1 and first["bytes_used"] > 0 and first["expired"] is False
    assert datetime.fromisoformat(first["expiry"]) - datetime.fromisoformat(
        first["last_write"]
    ) == timedelta(days=30)
    unknown = [m for m in media if m["status"] == "not in catalog"]
    assert [m["barcode"] for m in unknown][:1] == [B] and unknown[0]["location"] == "slot 2"
    (pool,) = [p for p in pools if p["pool"] == "keep"]
    assert (pool["retention_days"], pool["append"], pool["cartridges"], pool["sessions"]) == (
        30,
        False,
        1,
        1,
    )
    assert pool["expired"] == 0 and pool["next_expiry"] == first["expiry"]
    assert [(s["barcode"], s["tape_file"], s["source"]) for s in sessions] == [(A, 1, "src")]
    assert jobs["j1"]["state"] == "complete" and jobs["j1"]["mb_per_s"] > 0
    assert jobs["j1"]["slaves"] == jobs["j1"]["sessions"] == jobs["j1"]["complete"] == 1
    assert jobs["j2"]["failed"] == 1 and "no free, writable cartridge" in jobs["j2"]["errors"][0]
    assert "no free, writable cartridge" in j2_sessions[0]["error"]
    text = reports.format_table(media, reports.MEDIA_COLUMNS, title="MEDIA")
    lines = text.splitlines()
    assert lines[0] == "MEDIA" and lines[1].split() == list(reports.MEDIA_COLUMNS)
    assert set(lines[2]) == {"-", " "} and A in lines[3] and "slot 1" in lines[3]
    assert "KiB" in lines[3] or "MiB" in lines[3]
    markdown = reports.job_markdown(jobs["j2"], j2_sessions)
    assert markdown.startswith("### Job j2: failed") and "| source |" in markdown
    assert "**Errors**" in markdown


def _parser() -> argparse.ArgumentParser:
    """The core `tapeflow` parser with the report commands (added here unless wired already)."""
    parser = core_cli.build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "report" not in top.choices:
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--library", default=None)
        common.add_argument("--json", action="store_true")
        add_commands(top, common)
    return parser


def test_report_cli_text_json_and_bad_input(
    env: Env,  # noqa: F811 - the imported fixture
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_job(env, Pool("keep", barcodes=(A,), retention_days=30), "j1")
    cat = ["--catalog", str(env.catalog)]

    def run(*argv: str) -> tuple[int, str, str]:
        code = core_cli.main(list(argv), _parser())
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = run("report", "jobs", *cat)
    assert code == 0 and "JOBS" in out and "j1" in out and "complete" in out
    code, out, _ = run("report", "jobs", "--job", "j1", *cat)
    assert code == 0 and "SESSIONS OF j1" in out and A in out
    code, out, _ = run("report", "media", "--live", "--library", env.library, *cat)
    assert code == 0 and "slot 1" in out and "not in catalog" in out
    code, out, _ = run("report", "media", "--json", "--pool", "keep", *cat)
    assert code == 0 and [m["barcode"] for m in json.loads(out)] == [A]
    code, out, _ = run("report", "pools", "--sessions", *cat)
    assert code == 0 and "POOLS" in out and "SESSIONS PER POOL" in out and "keep" in out
    code, out, _ = run("report", "pools", "--json", *cat)
    assert code == 0 and json.loads(out)[0]["pool"] == "keep"
    code, out, _ = run("pool", "define", "weekly", "--retention-days", "35", *cat)
    assert code == 0 and "pool weekly: kept 35 days" in out
    code, out, _ = run("pool", "assign", "TF0003L9", "--to", "scratch", "--new", *cat)
    assert code == 0 and "TF0003L9 -> pool scratch" in out

    before = snapshot(env)
    for argv, message in [
        (("report", "media", "--pool", "nosuch"), "no pool 'nosuch' in the catalog"),
        (("report", "media", "--barcode", "NOPE01L9"), "no cartridge 'NOPE01L9'"),
        (("report", "jobs", "--job", "nope"), "no job 'nope'"),
        (("pool", "assign", "NOPE01L9", "--to", "scratch"), "unknown barcode(s) NOPE01L9"),
        (("pool", "assign", "TF0003L9", "--to", "nosuch"), "no pool 'nosuch'"),
        (("pool", "assign", A, "--to", "scratch"), f"{A} holds 1 session(s)"),
        (("pool", "define", "keep", "--retention-days", "-1"), "retention_days must be >= 0"),
    ]:
        code, out, err = run(*argv, *cat)
        assert code == 2 and message in err and out == "", argv
    assert snapshot(env) == before
    code, _, err = run("report", "jobs", "--catalog", str(env.catalog.parent / "none.duckdb"))
    assert code == 2 and "no catalog at" in err
    assert not (env.catalog.parent / "none.duckdb").exists()


def test_the_readme_automation_is_the_one_the_code_creates() -> None:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text[text.index("## Media pools, rotation, reports and alerts") :]
    block = section[section.index("```yaml\n") + 8 :]
    data = yaml.safe_load(block[: block.index("```")])
    some_id = uuid4()
    data["actions"][0]["block_document_id"] = str(some_id)
    assert AutomationCore.model_validate(data) == alerts.media_request_automation(some_id)


# -- Prefect: artifacts, flows, events, automation --------------------------------------------


@pytest.fixture
def flow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An embedded one-drive library (unique name, so its own drive tag) and a catalog."""
    monkeypatch.setenv("TAPEFLOW_HOME", str(tmp_path / "home"))
    out = lib_env(tmp_path)
    make_library(out, drives=1)
    return out


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        return {a.key: a for a in found if a.key}

    return run_coro_as_sync(read())


def _table(artifact: Any) -> list[dict[str, Any]]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def _wait(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until probe() is truthy (events are sent and persisted asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def _events(name: str, resource_id: str, since: datetime) -> list[Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            page = await client.read_events(
                filter=EventFilter(
                    occurred=EventOccurredFilter(since=since),
                    event=EventNameFilter(name=[name]),
                    resource=EventResourceFilter(id=[resource_id]),
                ),
                limit=50,
            )
        return list(page.events)

    return run_coro_as_sync(read())


@pytest.mark.usefixtures("prefect_server")
def test_master_backup_publishes_the_job_report_and_rotates_gfs(flow_env: dict[str, Any]) -> None:
    from flows.backup import backup

    state = backup(
        sources=make_sources(flow_env, 2, files=10),
        library=flow_env["library"],
        catalog=flow_env["catalog"],
        rotation="gfs",
        return_state=True,
    )
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    arts = _artifacts(run_id)
    assert {"backup-summary", "job-report", "job-sessions"} <= set(arts)
    assert arts["job-report"].type == "markdown"
    assert arts["job-report"].data.startswith(f"### Job {run_id}: complete")
    assert "2 slave(s), 2 session(s) (2 complete, 0 failed)" in arts["job-report"].data
    rows = _table(arts["job-sessions"])
    assert sorted(r["source"] for r in rows) == ["src0", "src1"]
    assert {r["state"] for r in rows} == {"complete"} and all(r["cartridges"] for r in rows)
    tier = GfsPolicy().tier(datetime.now(UTC))  # the run was scheduled just now
    with Catalog(Path(flow_env["catalog"])) as cat:
        job = cat.job(str(run_id))
        pool = cat.records("SELECT * FROM pools WHERE name = ?", [tier.pool])[0]
    assert (job["pool"], job["level"]) == (tier.pool, tier.level)
    assert pool["retention_days"] == tier.retention_days


@pytest.mark.usefixtures("prefect_server")
def test_media_report_flow_and_bad_flow_parameters(flow_env: dict[str, Any]) -> None:
    from flows.backup import backup
    from flows.reports import media_report

    catalog = Path(flow_env["catalog"])
    common = {
        "sources": make_sources(flow_env, 1, files=5),
        "library": flow_env["library"],
        "catalog": str(catalog),
    }
    with pytest.raises(ValueError, match="retention_days must be >= 0"):
        backup(pool={"name": "reported", "retention_days": -1}, **common)
    with pytest.raises(RotationError, match="unknown rotation 'hourly'"):
        backup(rotation="hourly", **common)
    assert not catalog.exists()  # both refused before the job was recorded
    with pytest.raises(CatalogError, match="no catalog at"):
        media_report(catalog=str(catalog))
    assert not catalog.exists()

    backup(pool={"name": "reported", "retention_days": 10}, **common)
    state = media_report(catalog=str(catalog), library=flow_env["library"], return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    (used,) = [m for m in out["media"] if m["pool"] == "reported"]
    assert used["location"] == "slot 1" and used["sessions"] == 1 and not used["expired"]
    assert [p["retention_days"] for p in out["pools"] if p["pool"] == "reported"] == [10]
    arts = _artifacts(state.state_details.flow_run_id)
    table = _table(arts["media-report"])
    assert table[0]["barcode"] == used["barcode"] and table[0]["status"] == "in use"
    assert "### Pools" in arts["pool-report"].data and "reported" in arts["pool-report"].data
    before = _tables(catalog)
    with pytest.raises(UnknownPool, match="no pool 'nosuch' in the catalog"):
        media_report(catalog=str(catalog), pool="nosuch")
    assert _tables(catalog) == before


def _tables(catalog: Path) -> dict[str, list[tuple]]:
    with Catalog(catalog) as cat:
        return {
            t: cat.execute(f"SELECT * FROM {t} ORDER BY ALL")
            for t in ("pools", "media", "media_sessions", "sessions", "jobs", "events")
        }


class _Hook(BaseHTTPRequestHandler):
    """Collects the notification webhook's POSTs."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        _Hook.received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def webhook() -> Iterator[str]:
    """A local HTTP endpoint standing in for Slack/e-mail: the notifications it received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        thread.join()


@pytest.mark.usefixtures("prefect_server")
def test_failures_and_media_requests_raise_events_and_notify(
    flow_env: dict[str, Any], webhook: str
) -> None:
    from flows.backup import backup

    name = flow_env["tmp"].name  # unique: the library's name and this test's pool
    block = CustomWebhookNotificationBlock(
        name="tape operators",
        url=webhook,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        allow_private_urls=True,
    )
    block.save(f"tapeflow-ops-{name}".replace("_", "-").lower(), overwrite=True)
    slug = f"custom-webhook/tapeflow-ops-{name}".replace("_", "-").lower()
    automation_id = run_coro_as_sync(alerts.create_media_request_automation(slug, pool=name))

    async def read_automation() -> Any:
        async with get_client() as client:
            return await client.read_automation(automation_id)

    automation = run_coro_as_sync(read_automation())
    assert automation is not None and automation.enabled
    assert automation.trigger.expect == {alerts.MEDIA_REQUEST}
    assert automation.trigger.match.get("prefect.resource.id") == [f"tapeflow.pool.{name}"]
    time.sleep(1)  # let the server's trigger service see the new automation

    since = datetime.now(UTC) - timedelta(seconds=5)
    # one cartridge, one session per cartridge: subjob 2 finds it written and no other
    pool = {"name": name, "barcodes": ["TF0001L9"], "append": False, "retention_days": 30}
    sources = make_sources(flow_env, 2, files=5)
    (Path(sources[0]["path"]) / "big.bin").write_bytes(bytes(1 << 20))  # largest: runs first
    state = backup(
        sources=sources,
        pool=pool,
        library=flow_env["library"],
        catalog=flow_env["catalog"],
        return_state=True,
    )
    assert state.is_failed()
    run_id = str(state.state_details.flow_run_id)
    request = _wait(
        lambda: _events(alerts.MEDIA_REQUEST, f"tapeflow.pool.{name}", since), 30, "media request"
    )[0]
    assert request.payload["reasons"] == {
        "TF0001L9": "holds 1 session(s) and the pool writes one per cartridge"
    }
    assert request.payload["job_id"] == run_id and request.payload["subjob"] == 2
    assert request.resource["tapeflow.source"] == "src1"
    assert f"tapeflow.library.{name}" in {r.id for r in request.related}
    slave = _wait(
        lambda: _events(alerts.SLAVE_FAILED, f"tapeflow.library.{name}", since), 30, "slave"
    )
    assert [e.resource["tapeflow.subjob"] for e in slave] == ["2"]
    assert "NoWritableCartridge" in slave[0].payload["error"]
    job = _wait(lambda: _events(alerts.JOB_FAILED, f"tapeflow.library.{name}", since), 30, "job")
    assert job[0].payload["state"] == "partial" and job[0].resource["tapeflow.job"] == run_id
    report = _artifacts(state.state_details.flow_run_id)["job-report"].data
    assert report.startswith(f"### Job {run_id}: partial") and "no free, writable" in report
    # the documented automation turned the media request into a notification
    sent = _wait(lambda: list(_Hook.received), 45, "the automation's notification")
    assert sent[0]["subject"] == f"tapeflow: cartridges needed for pool {name}"
    assert f"Backup job {run_id} (source src1)" in sent[0]["body"]
    assert "TF0001L9: holds 1 session(s)" in sent[0]["body"]
