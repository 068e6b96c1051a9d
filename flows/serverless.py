"""Serverless backup (one slave per volume, same master/drive-tag pattern as file backups) and
image-level restore. File-level restores of volumes go through the ordinary restore flow."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows import resolve
from flows.backup import backup
from tasks.drives import sync_drive_limit
from tasks.restore import restore_volume_image


def volume_sources(
    volumes: list[str | dict[str, Any]],
    mode: str,
    snapshot: str = "auto",
    live_copy: bool = False,
) -> list[str | dict[str, Any]]:
    """`name=path` strings or dicts become volume sources (a dict's own settings win); other
    strings are block names."""
    defaults = {"kind": "volume", "mode": mode, "snapshot": snapshot, "live_copy": live_copy}
    out: list[str | dict[str, Any]] = []
    for v in volumes:
        if isinstance(v, dict):
            out.append({**defaults, **v})
        elif "=" in v:
            name, path = v.split("=", 1)
            out.append({"name": name, "path": path, **defaults})
        else:
            out.append(v)
    return out


@flow(name="tapeflow-serverless-backup")
def serverless_backup(
    volumes: list[str | dict[str, Any]],
    pool: str | dict[str, Any] | None = None,
    library: str | None = None,
    catalog: str | None = None,
    mode: Literal["all", "used"] = "all",
    multistream: bool = True,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    snapshot: Literal["auto", "lun", "reflink", "split-mirror", "none"] = "auto",
    live_copy: bool = False,
    verify: bool = False,
) -> dict[str, Any]:
    """Back up FAT/NTFS volumes block by block (`name=disk:<lun>` or `name=/path/to.img`),
    each frozen by `snapshot` first; a volume nothing can freeze fails with NoSnapshot
    unless `live_copy` accepts a copy that is not point-in-time. `verify` reads each session
    back (its members whole and sized; the files inside have no checksum to check)."""
    return backup(
        sources=volume_sources(volumes, mode, snapshot, live_copy),
        pool=pool,
        library=library,
        catalog=catalog,
        verify=verify,
        multistream=multistream,
        pre=pre,
        post=post,
    )


@flow(name="tapeflow-restore-image")
def restore_image(
    source: str,
    target: str,
    at: datetime | None = None,
    overwrite: bool = False,
    library: str | None = None,
    catalog: str | None = None,
) -> dict[str, Any]:
    """Write volume `source` as of `at` back onto `target` (`disk:<name>` or an image file)."""
    log = get_run_logger()
    spec, tag = resolve.library(library)
    sync_drive_limit(str(spec), tag)
    task = restore_volume_image.with_options(tags=[tag], task_run_name=f"RESTORE IMAGE {source}")
    result = task(str(resolve.catalog(catalog)), str(spec), source, target, at, overwrite)
    log.info(
        "%s: session %s from %s written to %s by %s (%.1f MB in %.1f s)",
        source,
        result["session_id"],
        result["barcode"],
        target,
        "the copy manager" if result["path"] == "xcopy" else "the host",
        result["bytes"] / 1e6,
        result["seconds"],
    )
    create_table_artifact([result], key="image-restore", description=source)
    return result
