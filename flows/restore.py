"""On-demand restore: by path, glob or directory, as of a time, to the original or another
directory; cartridges are read in parallel on free drives (same drive tag as backups)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows import resolve
from tapeflow.catalog import Catalog
from tapeflow.restore import Overwrite
from tasks.drives import sync_drive_limit
from tasks.restore import plan, restore_from


def original_root(catalog_path: Path, source: str) -> str:
    """The source's directory as recorded by its latest backup job."""
    with Catalog(catalog_path, read_only=True) as cat:
        for s in reversed(cat.sessions(source=source)):
            for recorded in cat.job(s["job_id"])["parameters"].get("sources", []):
                if recorded.get("name") == source:
                    return str(recorded["path"])
    raise ValueError(f"no backup of source {source!r} records its original path")


@flow(name="tapeflow-restore", task_runner=ThreadPoolTaskRunner(max_workers=64))
def restore(
    source: str,
    selection: list[str] | None = None,
    at: datetime | None = None,
    target: str | None = None,
    overwrite: Overwrite = "always",
    library: str | None = None,
    catalog: str | None = None,
) -> dict[str, Any]:
    """Restore `selection` (default: everything) of `source` as of `at` into `target`
    (default: the original directory)."""
    log = get_run_logger()
    spec, tag = resolve.library(library)
    catalog_path = resolve.catalog(catalog)
    destination = target or original_root(catalog_path, source)
    sync_drive_limit(str(spec), tag)
    work = plan(str(catalog_path), source, selection or [""], at)
    futures = [
        restore_from.with_options(tags=[tag], task_run_name=f"RESTORE {w['barcode']}").submit(
            str(spec), w, destination, overwrite
        )
        for w in work
    ]
    wait(futures)
    results = [f.result() for f in futures]
    restored = sum(r["restored"] for r in results)
    skipped = sum(len(r["skipped"]) for r in results)
    create_table_artifact(
        [
            {
                "cartridge": r["barcode"],
                "drive": r["drive"],
                "restored": r["restored"],
                "skipped": len(r["skipped"]),
                "seconds": round(r["seconds"], 2),
            }
            for r in results
        ],
        key="restore-summary",
        description=f"{source} -> {destination}: {restored} restored, {skipped} skipped",
    )
    log.info(
        "restored %d members of %s into %s (%d skipped)", restored, source, destination, skipped
    )
    return {
        "target": destination,
        "restored": restored,
        "skipped": skipped,
        "cartridges": [r["barcode"] for r in results],
    }
