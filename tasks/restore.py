"""Restore tasks: plan from the catalog, then one task per cartridge on the drive tag."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from tapeflow.restore import CartridgeWork, Overwrite, plan_restore, restore_cartridge
from tapeflow.serverless.restore_job import restore_volume


@task(name="plan-restore", persist_result=False)
def plan(catalog: str, source: str, selection: list[str], at: datetime | None) -> list[dict]:
    """Which members, grouped by cartridge, in tape order."""
    work = plan_restore(Path(catalog), source, selection, at)
    get_run_logger().info(
        "restore of %s as of %s: %d members on %s",
        source,
        at or "latest",
        sum(len(w.items) for w in work),
        ", ".join(w.barcode for w in work),
    )
    return [w.to_dict() for w in work]


@task(name="restore-cartridge", persist_result=False)
def restore_from(library: str, work: dict[str, Any], target: str, overwrite: Overwrite) -> dict:
    """Read this cartridge's members by LOCATE into `target`."""
    result = restore_cartridge(library, CartridgeWork.from_dict(work), Path(target), overwrite)
    log = get_run_logger()
    log.info(
        "%s on drive %s: %d restored, %d skipped in %.1f s",
        result.barcode,
        result.drive,
        result.restored,
        len(result.skipped),
        result.seconds,
    )
    for line in result.skipped:
        log.warning("skipped %s", line)
    return result.to_dict()


@task(name="restore-image", persist_result=False)
def restore_volume_image(
    catalog: str, library: str, source: str, target: str, at: datetime | None, overwrite: bool
) -> dict:
    """Write a volume back from its serverless session (holds one drive of the tag)."""
    result = restore_volume(Path(catalog), library, source, target, at=at, overwrite=overwrite)
    return result.to_dict()
