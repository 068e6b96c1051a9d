"""Reports as Prefect artifacts: the job report (published at the end of every master backup)
and the `media-report` flow (media status per pool, pools, sessions per pool)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import resolve
from tapeflow import reports
from tapeflow.catalog import Catalog, CatalogError
from tapeflow.library import Library


def job_report_artifacts(cat: Catalog, job_id: str) -> list[Callable[[], object]]:
    """The job report, read from an open catalog, as two artifact calls for `publish`: a
    markdown artifact (`job-report`: summary, sessions, errors) and a table (`job-sessions`)."""
    job = reports.job_report(cat, job_id=job_id)[0]
    sessions = reports.job_sessions(cat, job_id)
    summary = (
        f"job {job_id}: {job['state']}, {job['complete']}/{job['sessions']} sessions, "
        f"{job['bytes'] / 1e6:.1f} MB at {job['mb_per_s']:.1f} MB/s"
    )
    return [
        partial(
            create_markdown_artifact,
            reports.job_markdown(job, sessions),
            key="job-report",
            description=summary,
        ),
        partial(create_table_artifact, sessions, key="job-sessions", description=summary),
    ]


def _existing(catalog: str | None) -> Path:
    path = resolve.catalog(catalog)
    if not path.is_file():
        raise CatalogError(f"no catalog at {path}: nothing to report (run a backup first)")
    return path


@flow(name="tapeflow-media-report")
def media_report(
    catalog: str | None = None, library: str | None = None, pool: str | None = None
) -> dict[str, Any]:
    """Media status (live locations when a library is given), pools and sessions per pool, as
    artifacts `media-report` (table) and `pool-report` (markdown); returns the rows."""
    log = get_run_logger()
    catalog_path = _existing(catalog)
    inventory = None
    if library is not None:
        spec, _tag = resolve.library(library)
        with Library(spec) as lib:
            inventory = lib.inventory()
    with Catalog(catalog_path) as cat:
        media = reports.media_report(cat, pool=pool, inventory=inventory)
        pools = reports.pool_report(cat)
        sessions = reports.pool_sessions(cat, pool=pool)
    if pool is not None:
        pools = [p for p in pools if p["pool"] == pool]
    expired = sum(1 for m in media if m["expired"])
    summary = f"{len(media)} cartridge(s), {expired} expired, {len(pools)} pool(s)"
    create_table_artifact(media, key="media-report", description=summary)
    create_markdown_artifact(
        f"### Pools\n\n{reports.markdown_table(pools, reports.POOL_COLUMNS)}\n\n"
        f"### Sessions per pool\n\n"
        f"{reports.markdown_table(sessions, reports.POOL_SESSION_COLUMNS)}",
        key="pool-report",
        description=summary,
    )
    log.info("media report: %s", summary)
    return {"media": media, "pools": pools, "sessions": sessions}
