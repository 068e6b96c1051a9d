"""Maintenance flows: catalog prune, backup and recovery; scan, merge and compare; count, purge
and copy. Each runs its pre operations, one task, a summary table artifact, then its post
operations with the outcome (also when the work failed), at the log level it is given."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows import resolve
from tapeflow.backup.operations import run_operation
from tapeflow.catalog import DEFAULT_KEEP_DAYS, Catalog
from tapeflow.maintenance import BadInput, PruneConfig
from tapeflow.maintenance.catalog_backup import DEFAULT_POOL
from tapeflow.maintenance.copy import VERIFY_MODES
from tasks.drives import sync_drive_limit
from tasks.maintenance import (
    catalog_backup_task,
    catalog_recover_task,
    check_level,
    compare_task,
    copy_task,
    count_task,
    merge_task,
    prune_task,
    purge_task,
    run_logger,
    scan_task,
)

Work = Callable[[], dict[str, Any]]
Rows = Callable[[dict[str, Any]], list[dict[str, Any]]]


class MaintenanceFailed(RuntimeError):
    """The operation ran but some items failed (files not deleted or not copied)."""


def outcome_for_post(operation: str, state: str, result: dict[str, Any]) -> dict[str, Any]:
    """What post operations receive: the result's scalar fields, and counts of its lists and
    mappings (they can be long; shell operations get each as a TAPEFLOW_* variable)."""
    out: dict[str, Any] = {"operation": operation, "state": state}
    for key, value in result.items():
        out[key] = len(value) if isinstance(value, list | dict | tuple) else value
    return out


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A two-column table of the result's scalar fields and list sizes."""
    rows = []
    for key, value in result.items():
        shown = len(value) if isinstance(value, list | dict | tuple) else value
        rows.append({"item": key.replace("_", " "), "value": shown})
    return rows


def run_maintenance(
    operation: str,
    log_level: str,
    pre: list[str] | None,
    post: list[str] | None,
    work: Work,
    rows: Rows = summary_rows,
    describe: Callable[[dict[str, Any]], str] | None = None,
) -> dict[str, Any]:
    """Pre operations, the work, its table artifact, post operations with the outcome; a
    failure of the work still runs post (state 'failed', the error) and is then re-raised."""
    log = run_logger(log_level)
    log.debug("%s: log level %s, pre %s, post %s", operation, log_level, pre, post)
    for op in pre or []:
        log.info("pre: %s", op)
        said = run_operation(op)
        log.debug("pre %s said: %s", op, said)
    try:
        result = work()
    except Exception as exc:
        failed = {"error": f"{type(exc).__name__}: {exc}"}
        for op in post or []:
            log.info("post (after failure): %s", op)
            run_operation(op, outcome_for_post(operation, "failed", failed))
        raise
    state = "failed" if result.get("errors") else "complete"
    create_table_artifact(
        rows(result) or [{"item": "nothing to list", "value": ""}],
        key=f"{operation}-summary",
        description=f"{operation}: {state}" + (f", {describe(result)}" if describe else ""),
    )
    for op in post or []:
        log.info("post: %s", op)
        said = run_operation(op, outcome_for_post(operation, state, result))
        log.debug("post %s said: %s", op, said)
    if state == "failed":
        raise MaintenanceFailed(f"{operation}: " + "; ".join(result["errors"][:10]))
    return {"operation": operation, "state": state, **result}


def _source(
    value: str | dict[str, Any], include: list[str] | None, exclude: list[str] | None
) -> dict[str, Any]:
    """A source dict from a path, a dict of Source fields, or a BackupSource block name."""
    if isinstance(value, str) and ("/" in value or value.startswith(".")):
        name = Path(value).name or "root"
        chosen = {"name": name, "path": value}
    else:
        chosen = resolve.sources([value])[0].__dict__.copy()
    chosen["include"] = list(chosen.get("include") or ()) + list(include or ())
    chosen["exclude"] = list(chosen.get("exclude") or ()) + list(exclude or ())
    return chosen


# --- catalog ---------------------------------------------------------------------------------
@flow(name="tapeflow-catalog-prune")
def catalog_prune(
    days: int = DEFAULT_KEEP_DAYS,
    catalog: str | None = None,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Drop the file detail of sessions older than `days` (default 30); daily at 00:00."""
    check_level(log_level)
    PruneConfig(days)
    path = str(resolve.catalog(catalog))
    return run_maintenance(
        "catalog-prune",
        log_level,
        pre,
        post,
        lambda: prune_task(path, days, log_level),
        describe=lambda r: f"{len(r['sessions'])} session(s), {r['bytes_freed']} bytes freed",
    )


@flow(name="tapeflow-catalog-backup")
def catalog_backup(
    pool: str | dict[str, Any] | None = DEFAULT_POOL,
    library: str | None = None,
    catalog: str | None = None,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Back up the catalog (consistent snapshot) to a cartridge of `pool` as a session of
    source __catalog__, recorded in the catalog and findable from the tapes alone."""
    check_level(log_level)
    spec, tag = resolve.library(library)
    media_pool = resolve.pool(pool)
    path = str(resolve.catalog(catalog))

    def work() -> dict[str, Any]:
        sync_drive_limit(str(spec), tag)
        backup = catalog_backup_task.with_options(tags=[tag])
        return backup(path, str(spec), media_pool.__dict__, log_level)

    return run_maintenance(
        "catalog-backup",
        log_level,
        pre,
        post,
        work,
        rows=lambda r: [
            {"session": r["session_id"], "snapshot": r["snapshot"], **t} for t in r["tapes"]
        ],
        describe=lambda r: f"{r['members']} members, {r['bytes']} bytes, pool {r['pool']}",
    )


@flow(name="tapeflow-catalog-recover")
def catalog_recover(
    target: str,
    as_of: datetime | None = None,
    pool: str | None = None,
    barcodes: list[str] | None = None,
    library: str | None = None,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Recover the catalog as of `as_of` (default: newest) into the empty directory `target`,
    from the tapes alone (cartridges labelled for `pool`, default any)."""
    check_level(log_level)
    spec, tag = resolve.library(library)

    def work() -> dict[str, Any]:
        sync_drive_limit(str(spec), tag)
        recover = catalog_recover_task.with_options(tags=[tag])
        return recover(str(spec), target, as_of, pool, barcodes, log_level)

    return run_maintenance(
        "catalog-recover",
        log_level,
        pre,
        post,
        work,
        rows=lambda r: [
            {
                "session": b["session_id"],
                "created": b["created"],
                "cartridge": b["barcode"],
                "tape file": b["tape_file"],
                "recovered": b["session_id"] == r["session_id"],
            }
            for b in r["found"]
        ],
        describe=lambda r: f"snapshot {r['snapshot']} into {r['catalog']}",
    )


# --- tapes -----------------------------------------------------------------------------------
def _scan_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for m in result["media"]:
        sessions = {s["session_id"]: s for s in m["sessions"]}
        for t in m["tape_files"] or [{"tape_file": None, "kind": m["status"], "session_id": None}]:
            s = sessions.get(t["session_id"] or "", {})
            rows.append(
                {
                    "cartridge": m["barcode"],
                    "tape file": t["tape_file"],
                    "kind": t["kind"],
                    "session": t["session_id"] or "",
                    "source": s.get("source", ""),
                    "state": s.get("state", ""),
                    "members": s.get("members", ""),
                }
            )
    if result["session"]:
        s = result["session"]
        rows.append(
            {
                "session": s["session_id"],
                "source": s["source"],
                "state": s["state"],
                "members": s["members"],
                "parts": len(s["parts"]),
            }
        )
    return rows


@flow(name="tapeflow-scan")
def scan(
    barcodes: list[str] | None = None,
    tape_file: int | None = None,
    library: str | None = None,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Read cartridges (default all; or, with `tape_file`, the one session there on the single
    barcode given) and report labels, tape files and sessions; the catalog is not touched."""
    check_level(log_level)
    if tape_file is not None and len(barcodes or []) != 1:
        raise BadInput("a session scan needs exactly one barcode with its tape file")
    spec, tag = resolve.library(library)

    def work() -> dict[str, Any]:
        sync_drive_limit(str(spec), tag)
        return scan_task.with_options(tags=[tag])(str(spec), barcodes, tape_file, log_level)

    return run_maintenance("scan", log_level, pre, post, work, rows=_scan_rows)


@flow(name="tapeflow-merge")
def merge(
    barcodes: list[str] | None = None,
    library: str | None = None,
    catalog: str | None = None,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Scan cartridges (default all) and merge what they hold into the catalog (idempotent)."""
    check_level(log_level)
    spec, tag = resolve.library(library)
    path = str(resolve.catalog(catalog))

    def work() -> dict[str, Any]:
        sync_drive_limit(str(spec), tag)
        return merge_task.with_options(tags=[tag])(path, str(spec), barcodes, log_level)

    return run_maintenance(
        "merge",
        log_level,
        pre,
        post,
        work,
        describe=lambda r: f"{len(r['sessions_added'])} session(s) added",
    )


def _session_root(catalog: Path, session_id: str) -> str:
    """The directory a session's source had when it was backed up (its job's parameters)."""
    with Catalog(catalog, read_only=True) as cat:
        row = cat.session(session_id)
        for recorded in cat.job(row["job_id"])["parameters"].get("sources", []):
            if recorded.get("name") == row["source"]:
                return str(recorded["path"])
    raise BadInput(f"session {session_id}'s job does not record its source's path: give root")


@flow(name="tapeflow-compare")
def compare(
    session_id: str,
    root: str | None = None,
    content: bool = False,
    chain: bool = True,
    catalog: str | None = None,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Compare a session (its whole tree, or with chain=False its own rows) with `root`
    (default: the source's original directory) now; content=True compares checksums."""
    check_level(log_level)
    path = resolve.catalog(catalog)

    def work() -> dict[str, Any]:
        where = root or _session_root(path, session_id)
        return compare_task(str(path), session_id, where, content, chain, log_level)

    return run_maintenance(
        "compare",
        log_level,
        pre,
        post,
        work,
        rows=lambda r: (
            [{"path": p, "difference": "missing on disk"} for p in r["missing_paths"]]
            + [{"path": p, "difference": "extra on disk"} for p in r["extra_paths"]]
            + [
                {"path": d["path"], "difference": ", ".join(d["fields"])}
                for d in r["different_paths"]
            ]
            + [{"path": p, "difference": "unreadable"} for p in r["unreadable_paths"]]
        ),
        describe=lambda r: (
            f"{r['compared']} compared, "
            + (
                "the same"
                if r["same"]
                else f"{r['missing']} missing, {r['extra']} extra, {r['different']} different"
            )
        ),
    )


# --- sources ---------------------------------------------------------------------------------
@flow(name="tapeflow-count")
def count(
    source: str | dict[str, Any],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Count files, directories and bytes of a source (a path, a dict of Source fields or a
    BackupSource block name) under its include/exclude globs."""
    check_level(log_level)
    chosen = _source(source, include, exclude)
    return run_maintenance(
        "count",
        log_level,
        pre,
        post,
        lambda: count_task(chosen, log_level),
        describe=lambda r: f"{r['files']} files, {r['dirs']} dirs, {r['bytes']} bytes",
    )


@flow(name="tapeflow-purge")
def purge(
    source: str | dict[str, Any],
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    older_than_days: float | None = None,
    remove_empty_dirs: bool = False,
    dry_run: bool = True,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Delete files of a source (optionally only matching globs / older than N days); a dry
    run unless dry_run=False, reporting what would go."""
    check_level(log_level)
    if older_than_days is not None and older_than_days < 0:
        raise BadInput(f"older_than_days must be >= 0, not {older_than_days}")
    chosen = _source(source, include, exclude)
    return run_maintenance(
        "purge",
        log_level,
        pre,
        post,
        lambda: purge_task(chosen, older_than_days, remove_empty_dirs, dry_run, log_level),
        rows=lambda r: (
            summary_rows({k: v for k, v in r.items() if k != "paths"})
            + [
                {"item": "would delete" if r["dry_run"] else "deleted", "value": p}
                for p in r["paths"][:200]
            ]
        ),
        describe=lambda r: (
            ("DRY RUN, would delete " if r["dry_run"] else "deleted ")
            + f"{r['selected'] if r['dry_run'] else r['deleted']} file(s)"
        ),
    )


@flow(name="tapeflow-copy")
def copy(
    source: str | dict[str, Any],
    target: str,
    mirror: bool = False,
    delete_source: bool = False,
    verify: str = "size-mtime",
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    log_level: str = "INFO",
) -> dict[str, Any]:
    """Copy a directory into `target`, keeping modes and mtimes; mirror deletes in the target
    what the source lacks; delete_source moves (each file removed once its copy verified)."""
    check_level(log_level)
    if verify not in VERIFY_MODES:
        raise BadInput(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
    chosen = _source(source, include, exclude)
    return run_maintenance(
        "copy",
        log_level,
        pre,
        post,
        lambda: copy_task(chosen, target, mirror, delete_source, verify, log_level),
        describe=lambda r: f"{r['copied']} copied, {r['unchanged']} unchanged",
    )
