"""Maintenance tasks: each runs one core operation (tapeflow.maintenance), logs at the level
its flow was asked for, and reports long work as a progress artifact."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging.loggers import PrefectLogAdapter

from tapeflow.backup.model import Pool, Source
from tapeflow.catalog import Catalog
from tapeflow.maintenance import (
    Progress,
    ProgressHook,
    PruneConfig,
    backup_catalog,
    compare_session,
    copy_tree,
    count_source,
    merge_cartridges,
    prune_catalog,
    purge,
    recover_catalog,
    scan_cartridges,
)
from tapeflow.maintenance.tapes import compare_summary, merge_summary

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def check_level(level: str) -> str:
    """The level's canonical name; ValueError for anything else (before any work starts)."""
    name = str(level).upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"log_level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    return name


class _AsParent(logging.Filter):
    """Give records the parent's name, so Prefect formats them as run records."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.parent_name = name

    def filter(self, record: logging.LogRecord) -> bool:
        """Rename and let through."""
        record.name = self.parent_name
        return True


def run_logger(level: str) -> logging.LoggerAdapter:
    """The current run's logger at `level`: Prefect's run logger (`prefect.flow_runs` or
    `prefect.task_runs`, whose effective level is the global PREFECT_LOGGING_LEVEL) through a
    child logger with its own level, one per level name, so each run gets the level it asked
    for without changing other runs'; records reach the run's log through the parent's API
    handler, named as the parent's."""
    name = check_level(level)
    base = get_run_logger()
    logger = base.logger if isinstance(base, logging.LoggerAdapter) else base
    extra = dict(base.extra or {}) if isinstance(base, logging.LoggerAdapter) else {}
    child = logger.getChild(f"level-{name.lower()}")
    if child.level != logging.getLevelName(name):
        child.setLevel(name)
    if not child.filters:
        child.addFilter(_AsParent(logger.name))
    return PrefectLogAdapter(child, extra=extra)


def progress_hook(log: logging.LoggerAdapter, description: str) -> ProgressHook:
    """A hook that logs each report at DEBUG and moves a progress artifact when a share done
    is known (created on the first report, so short work leaves no artifact)."""
    state: dict[str, Any] = {"artifact": None}

    def hook(p: Progress) -> None:
        where = f" {p.path}" if p.path else ""
        log.debug("%s: %s, %d items, %d bytes%s", p.operation, p.phase, p.items, p.bytes, where)
        share = 1.0 if p.phase == "done" else p.fraction
        if share is None:
            return
        if state["artifact"] is None:
            state["artifact"] = create_progress_artifact(100.0 * share, description=description)
        else:
            update_progress_artifact(state["artifact"], 100.0 * share)

    return hook


@task(name="catalog-prune", persist_result=False)
def prune_task(catalog: str, days: int, log_level: str) -> dict[str, Any]:
    """Drop file detail older than `days` days."""
    log = run_logger(log_level)
    report = prune_catalog(catalog, PruneConfig(days))
    log.info(
        "pruned %d session(s) older than %d days, %d bytes freed",
        len(report.sessions),
        days,
        report.bytes_freed,
    )
    for sid, why in report.not_removed.items():
        log.warning("rows of %s not removed: %s", sid, why)
    return report.to_dict()


@task(name="catalog-backup", persist_result=False)
def catalog_backup_task(
    catalog: str, library: str, pool: dict[str, Any], log_level: str
) -> dict[str, Any]:
    """Write the catalog to a cartridge of the pool (holds one drive of the library's tag)."""
    log = run_logger(log_level)
    result = backup_catalog(
        catalog,
        library,
        Pool.from_dict(pool),
        on_progress=progress_hook(log, f"catalog backup to pool {pool['name']}"),
    )
    log.info(
        "catalog backup %s (snapshot %s): %d members, %d bytes on %s",
        result.session_id,
        result.snapshot,
        result.members,
        result.bytes,
        ", ".join(f"{t['barcode']}#{t['tape_file']}" for t in result.tapes),
    )
    if result.missing_rows:
        log.warning("rows registered but missing on disk: %s", ", ".join(result.missing_rows))
    return result.to_dict()


@task(name="catalog-recover", persist_result=False)
def catalog_recover_task(
    library: str,
    target: str,
    as_of: datetime | None,
    pool: str | None,
    barcodes: list[str] | None,
    log_level: str,
) -> dict[str, Any]:
    """Find the newest catalog backup at or before `as_of` on tape and recover it."""
    log = run_logger(log_level)
    result = recover_catalog(
        library,
        target,
        as_of=as_of,
        pool=pool,
        barcodes=barcodes,
        on_progress=progress_hook(log, "catalog recovery: searching cartridges"),
    )
    log.info(
        "recovered catalog from %s (%s file %d, snapshot %s) into %s: %d sessions",
        result.session_id,
        result.barcode,
        result.tape_file,
        result.snapshot,
        result.catalog,
        result.sessions,
    )
    for line in result.skipped:
        log.warning("not searched: %s", line)
    return result.to_dict()


@task(name="scan-media", persist_result=False)
def scan_task(
    library: str, barcodes: list[str] | None, tape_file: int | None, log_level: str
) -> dict[str, Any]:
    """Read cartridges (or one session) without changing the catalog."""
    log = run_logger(log_level)
    run = scan_cartridges(
        library, barcodes, tape_file=tape_file, on_progress=progress_hook(log, "scanning media")
    )
    for scan in run.media:
        log.info("%s: %s, %d tape file(s)", scan.barcode, scan.status, len(scan.tape_files))
    for line in run.busy:
        log.warning("busy, not scanned: %s", line)
    return run.to_dict()


@task(name="merge-media", persist_result=False)
def merge_task(
    catalog: str, library: str, barcodes: list[str] | None, log_level: str
) -> dict[str, Any]:
    """Scan cartridges and merge what they hold into the catalog."""
    log = run_logger(log_level)
    result, run = merge_cartridges(
        catalog, library, barcodes, on_progress=progress_hook(log, "scanning media to merge")
    )
    log.info(
        "merged %d session(s), %d tape file(s), %d medium/media",
        len(result.sessions_added),
        len(result.tape_files_added),
        len(result.media_added),
    )
    for line in result.skipped:
        log.warning("skipped: %s", line)
    return {**merge_summary(result), "busy": run.busy}


@task(name="compare-session", persist_result=False)
def compare_task(
    catalog: str, session_id: str, root: str, content: bool, chain: bool, log_level: str
) -> dict[str, Any]:
    """Compare a session's files with a directory now."""
    log = run_logger(log_level)
    with Catalog(Path(catalog), read_only=True) as cat:
        result = compare_session(cat, session_id, root, chain=chain, content=content)
    log.info(
        "%s vs %s: %d compared, %d missing, %d extra, %d different",
        session_id,
        root,
        result.compared,
        len(result.missing),
        len(result.extra),
        len(result.different),
    )
    return compare_summary(result)


@task(name="count-source", persist_result=False)
def count_task(source: dict[str, Any], log_level: str) -> dict[str, Any]:
    """Count files, directories and bytes of a source under its globs."""
    log = run_logger(log_level)
    src = Source.from_dict(source)
    log.debug("counting %s (include %s, exclude %s)", src.path, src.include, src.exclude)
    result = count_source(src, on_progress=progress_hook(log, f"counting {src.name}"))
    log.info("%s: %d files, %d dirs, %d bytes", src.name, result.files, result.dirs, result.bytes)
    return result.to_dict()


@task(name="purge-source", persist_result=False)
def purge_task(
    source: dict[str, Any],
    older_than_days: float | None,
    remove_empty_dirs: bool,
    dry_run: bool,
    log_level: str,
) -> dict[str, Any]:
    """Delete files of a source (or, dry run, list what would go)."""
    log = run_logger(log_level)
    src = Source.from_dict(source)
    result = purge(
        src,
        older_than_days=older_than_days,
        remove_empty_dirs=remove_empty_dirs,
        dry_run=dry_run,
        on_progress=progress_hook(log, f"purging {src.name}"),
    )
    verb = "would delete" if dry_run else "deleted"
    count = result.selected if dry_run else result.deleted
    log.info("%s: %s %d file(s), %d bytes", src.name, verb, count, result.bytes)
    for path in result.paths:
        log.debug("%s %s", verb, path)
    for line in result.errors:
        log.error("not deleted: %s", line)
    return result.to_dict()


@task(name="copy-tree", persist_result=False)
def copy_task(
    source: dict[str, Any],
    target: str,
    mirror: bool,
    delete_source: bool,
    verify: str,
    log_level: str,
) -> dict[str, Any]:
    """Copy a directory into another (mirror and move options)."""
    log = run_logger(log_level)
    src = Source.from_dict(source)
    result = copy_tree(
        src,
        target,
        mirror=mirror,
        delete_source=delete_source,
        verify=verify,  # type: ignore[arg-type]
        on_progress=progress_hook(log, f"copying {src.name} to {target}"),
    )
    log.info(
        "%s -> %s: %d copied (%d bytes), %d unchanged, %d removed from target, %d from source",
        result.source,
        result.target,
        result.copied,
        result.bytes,
        result.unchanged,
        result.deleted_in_target,
        result.source_deleted,
    )
    for line in result.errors:
        log.error("copy: %s", line)
    return result.to_dict()
