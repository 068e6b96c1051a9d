"""`tapeflow catalog prune|backup|recover|backups`, `scan`, `merge`, `compare`, `count`, `purge`
and `copy`: the maintenance core at a terminal, without Prefect. Readable text by default,
`--json` for tools; bad input prints one line and exits 2; `purge` only reports unless `--yes`.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tapeflow.backup.operations import OperationFailed, run_operation
from tapeflow.catalog import DEFAULT_KEEP_DAYS, Catalog, CatalogError
from tapeflow.jobs_cli import default_catalog
from tapeflow.library import Library, LibraryError
from tapeflow.maintenance import (
    BadInput,
    MaintenanceError,
    Progress,
    PruneConfig,
    backup_catalog,
    compare_session,
    copy_tree,
    count_source,
    find_catalog_backups,
    leased_mounts,
    merge_cartridges,
    prune_catalog,
    purge,
    recover_catalog,
    scan_cartridges,
)
from tapeflow.maintenance.catalog_backup import DEFAULT_POOL
from tapeflow.maintenance.tapes import compare_summary, merge_summary
from tapeflow.scsi.sense import ScsiError
from tapeflow.tapefmt import TapeFormatError
from tapeflow.vtl.errors import VtlError

USER_ERRORS: tuple[type[BaseException], ...] = (
    MaintenanceError,
    OperationFailed,
    CatalogError,
    LibraryError,
    ScsiError,
    VtlError,
    TapeFormatError,
    ValueError,
    OSError,
)
SHOWN = 20  # paths shown in text output before "... and N more"

Command = Callable[[argparse.Namespace], int]


def _guarded(fn: Command) -> Command:
    """Run a command between its --pre and --post operations, as the maintenance flows do
    (post also runs after a failure, and gets the outcome); a user error becomes one line on
    stderr and exit status 2."""
    operation = fn.__name__.removeprefix("cmd_").replace("_", "-")

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        log = _OperationsLog(args.log_level)
        try:
            for op in args.pre:
                log.info("pre: %s", op)
                log.debug("pre %s said: %s", op, run_operation(op))
            try:
                code = fn(args)
            except USER_ERRORS as exc:
                outcome = {"operation": operation, "state": "failed", "error": str(exc)}
                for op in args.post:
                    log.info("post (after failure): %s", op)
                    run_operation(op, outcome)
                raise
            state = "complete" if code == 0 else "failed"
            for op in args.post:
                log.info("post: %s", op)
                said = run_operation(op, {"operation": operation, "state": state, "exit": code})
                log.debug("post %s said: %s", op, said)
            return code
        except USER_ERRORS as exc:
            print(f"tapeflow: error: {exc}", file=sys.stderr)
            return 2

    return run


class _OperationsLog:
    """What the pre/post operations do, on stderr at --log-level (stdout stays the result)."""

    def __init__(self, level: str) -> None:
        self.level = logging.getLevelName(level)

    def _say(self, level: int, message: str, *args: object) -> None:
        if level >= self.level:
            print(f"{logging.getLevelName(level)} {message % args}", file=sys.stderr)

    def info(self, message: str, *args: object) -> None:
        self._say(logging.INFO, message, *args)

    def debug(self, message: str, *args: object) -> None:
        self._say(logging.DEBUG, message, *args)


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else text)


def _progress(args: argparse.Namespace) -> Callable[[Progress], None] | None:
    """A hook that keeps one status line on an interactive stderr (none for --json/pipes)."""
    if args.json or not sys.stderr.isatty():
        return None

    def show(p: Progress) -> None:
        done = f" {p.fraction:.0%}" if p.fraction is not None else ""
        where = f" {p.path}" if p.path else ""
        print(
            f"\r{p.operation}: {p.phase} {p.items}{done}{where}"[:100].ljust(100),
            end="",
            file=sys.stderr,
        )
        if p.phase == "done":
            print(file=sys.stderr)

    return show


def _listing(paths: list[str], total: int, indent: str = "  ") -> list[str]:
    lines = [f"{indent}{p}" for p in paths[:SHOWN]]
    if total > SHOWN:
        lines.append(f"{indent}... and {total - SHOWN} more")
    return lines


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _as_of(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadInput(f"--as-of {text!r} is not an ISO 8601 date or time") from exc


# --- catalog ---------------------------------------------------------------------------------
@_guarded
def cmd_prune(args: argparse.Namespace) -> int:
    """Drop file detail older than --days."""
    report = prune_catalog(args.catalog, PruneConfig(args.days))
    _emit(
        args,
        report.to_dict(),
        f"pruned file detail of {len(report.sessions)} session(s) older than {report.days} "
        f"days: {_mb(report.bytes_freed)} freed"
        + "".join(f"\n  not removed: {sid}: {why}" for sid, why in report.not_removed.items()),
    )
    return 1 if report.not_removed else 0


@_guarded
def cmd_catalog_backup(args: argparse.Namespace) -> int:
    """Write the catalog to a cartridge of the pool."""
    r = backup_catalog(args.catalog, args.library, args.pool, on_progress=_progress(args))
    where = ", ".join(f"{t['barcode']} file {t['tape_file']}" for t in r.tapes)
    _emit(
        args,
        r.to_dict(),
        f"catalog backup {r.session_id} (snapshot {r.snapshot}): {r.members} members, "
        f"{_mb(r.bytes)} on {where} (pool {r.pool})",
    )
    return 0


@_guarded
def cmd_catalog_recover(args: argparse.Namespace) -> int:
    """Recover a catalog from tape alone into a new directory."""
    r = recover_catalog(
        args.library,
        args.target,
        as_of=_as_of(args.as_of),
        pool=args.pool,
        barcodes=args.barcode or None,
        on_progress=_progress(args),
    )
    lines = [
        f"recovered the catalog as of {r.snapshot} from backup {r.session_id} "
        f"({r.barcode} file {r.tape_file}) into {r.catalog}",
        f"  {r.sessions} sessions, {r.jobs} jobs; newer sessions: run `tapeflow merge` "
        "on the cartridges written since",
    ]
    lines += [f"  not searched: {s}" for s in r.skipped]
    lines += [f"  rows problem: {sid}: {why}" for sid, why in r.problems.items()]
    _emit(args, r.to_dict(), "\n".join(lines))
    return 0


@_guarded
def cmd_catalog_backups(args: argparse.Namespace) -> int:
    """List catalog backups found on the cartridges (reads only each tape file's header)."""
    with Library(args.library) as lib, leased_mounts(lib, "catalog backups list") as mounts:
        found, skipped = find_catalog_backups(mounts, args.barcode or None, pool=args.pool)
    lines = [
        f"{b.created.isoformat()}  {b.session_id}  {b.barcode} file {b.tape_file}  pool {b.pool}"
        for b in found
    ] or ["no catalog backup found"]
    lines += [f"not searched: {s}" for s in skipped]
    _emit(args, {"found": [b.to_dict() for b in found], "skipped": skipped}, "\n".join(lines))
    return 0


# --- tapes -----------------------------------------------------------------------------------
@_guarded
def cmd_scan(args: argparse.Namespace) -> int:
    """Read cartridges (or one session) and show what they hold."""
    run = scan_cartridges(
        args.library, args.barcode or None, tape_file=args.tape_file, on_progress=_progress(args)
    )
    data = run.to_dict()
    lines = []
    if data["session"] is not None:
        s = data["session"]
        lines.append(_session_line(s, ""))
    for m in data["media"]:
        head = f"{m['barcode']}  {m['status']}"
        if m["pool"] is not None:
            head += f"  pool {m['pool']}"
        lines.append(head + (f"  ({m['problem']})" if m["problem"] else ""))
        sessions = {s["session_id"]: s for s in m["sessions"]}
        for t in m["tape_files"]:
            if t["session_id"] in sessions:
                lines.append(
                    f"  file {t['tape_file']:>3}  {t['kind']:<12} "
                    + _session_line(sessions[t["session_id"]], "")
                )
            else:
                lines.append(f"  file {t['tape_file']:>3}  {t['kind']:<12} {t['detail']}")
    lines += [f"busy, not scanned: {b}" for b in run.busy]
    _emit(args, data, "\n".join(lines) or "nothing scanned")
    return 0


def _session_line(s: dict[str, Any], indent: str) -> str:
    problem = f" ({s['problem']})" if s["problem"] else ""
    return (
        f"{indent}{s['session_id']}  {s['source']}  {s['kind']}/{s['level']}  {s['state']}  "
        f"{s['members']} members  {_mb(s['stream_bytes'])}  {s['created']}{problem}"
    )


@_guarded
def cmd_merge(args: argparse.Namespace) -> int:
    """Scan cartridges and merge what they hold into the catalog."""
    result, run = merge_cartridges(
        args.catalog, args.library, args.barcode or None, on_progress=_progress(args)
    )
    data = {**merge_summary(result), "busy": run.busy}
    lines = [
        f"merged into {args.catalog}: {len(result.media_added)} media, "
        f"{len(result.jobs_added)} jobs, {len(result.sessions_added)} sessions, "
        f"{len(result.tape_files_added)} tape files, rows of {len(result.rows_written)} sessions"
        + ("" if result.changed else " (the catalog already knew everything)")
    ]
    blank = [m.barcode for m in run.media if m.status == "blank"]
    if blank:
        lines.append(f"  {len(blank)} blank cartridge(s): nothing to merge")
    lines += [f"  skipped: {s}" for s in result.skipped if s.split(":")[0] not in blank]
    lines += [f"  busy, not scanned: {b}" for b in run.busy]
    _emit(args, data, "\n".join(lines))
    return 0


@_guarded
def cmd_compare(args: argparse.Namespace) -> int:
    """Compare a session with a directory; exit 1 when they differ."""
    if not Path(args.catalog).is_file():
        raise BadInput(f"no catalog at {args.catalog}")
    with Catalog(Path(args.catalog), read_only=True) as cat:
        result = compare_session(
            cat, args.session, args.root, chain=not args.own_rows, content=args.content
        )
    data = compare_summary(result)
    lines = [
        f"session {result.session_id} vs {result.root}: {result.compared} compared, "
        f"{len(result.missing)} missing, {len(result.extra)} extra, "
        f"{len(result.different)} different, {len(result.unreadable)} unreadable"
        + (" - the same" if result.same else "")
    ]
    for title, paths in (
        ("missing on disk", result.missing),
        ("extra on disk", result.extra),
        ("different", [f"{d.path} ({', '.join(d.fields)})" for d in result.different]),
        ("unreadable", result.unreadable),
    ):
        if paths:
            lines += [f"{title}:", *_listing(paths, len(paths))]
    _emit(args, data, "\n".join(lines))
    return 0 if result.same else 1


# --- sources ---------------------------------------------------------------------------------
@_guarded
def cmd_count(args: argparse.Namespace) -> int:
    """Count what a source holds under its globs."""
    r = count_source(
        args.path, include=args.include, exclude=args.exclude, on_progress=_progress(args)
    )
    text = (
        f"{r.root}: {r.files} files, {r.dirs} dirs, {r.symlinks} symlinks, {r.other} other, "
        f"{_mb(r.bytes)}"
    )
    if r.largest:
        text += f"\n  largest: {r.largest} ({_mb(r.largest_bytes)})"
    _emit(args, r.to_dict(), text)
    return 0


@_guarded
def cmd_purge(args: argparse.Namespace) -> int:
    """Delete files of a source (a dry run unless --yes)."""
    r = purge(
        args.path,
        include=args.include,
        exclude=args.exclude,
        older_than_days=args.older_than,
        remove_empty_dirs=args.remove_empty_dirs,
        dry_run=not args.yes,
        on_progress=_progress(args),
    )
    if r.dry_run:
        lines = [
            f"DRY RUN: would delete {r.selected} file(s), {_mb(r.bytes)}, and "
            f"{r.dirs_removed} empty dir(s) under {r.root}",
            *_listing(r.paths, r.selected),
            "nothing was deleted: run again with --yes to delete",
        ]
    else:
        lines = [
            f"deleted {r.deleted} of {r.selected} file(s), {_mb(r.bytes)}, and "
            f"{r.dirs_removed} empty dir(s) under {r.root}"
        ]
    lines += [f"  error: {e}" for e in r.errors]
    _emit(args, r.to_dict(), "\n".join(lines))
    return 1 if r.errors else 0


@_guarded
def cmd_copy(args: argparse.Namespace) -> int:
    """Copy a directory into another (mirror / move options)."""
    r = copy_tree(
        args.source,
        args.target,
        mirror=args.mirror,
        delete_source=args.delete_source,
        verify=args.verify,
        include=args.include,
        exclude=args.exclude,
        on_progress=_progress(args),
    )
    lines = [
        f"{r.source} -> {r.target}: copied {r.copied} file(s), {_mb(r.bytes)}; "
        f"{r.unchanged} unchanged, {r.dirs} new dir(s), {r.symlinks} link(s)"
    ]
    if r.mirror:
        lines.append(f"  mirror: removed {r.deleted_in_target} entr(ies) from the target")
        lines += _listing(r.deleted_paths, r.deleted_in_target, "    ")
    if r.delete_source:
        lines.append(
            f"  moved: {r.source_deleted} entr(ies) and {r.source_dirs_removed} dir(s) "
            "removed from the source after verification"
        )
    lines += [f"  skipped special file: {p}" for p in r.special]
    lines += [f"  error: {e}" for e in r.errors]
    _emit(args, r.to_dict(), "\n".join(lines))
    return 1 if r.errors else 0


# --- registration ----------------------------------------------------------------------------
def _globs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--include", action="append", default=[], help="glob on relative paths")
    p.add_argument("--exclude", action="append", default=[], help="glob on relative paths")


def add_commands(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register `catalog prune|backup|recover|backups`, `scan`, `merge`, `compare`, `count`,
    `purge` and `copy` (`common` brings --library and --json)."""
    cat = argparse.ArgumentParser(add_help=False)
    cat.add_argument("--catalog", default=default_catalog(), help="catalog .duckdb file")
    ops = argparse.ArgumentParser(add_help=False)  # every maintenance command, as its flow
    ops.add_argument("--pre", action="append", default=[], help="shell command or py:mod:func")
    ops.add_argument(
        "--post",
        action="append",
        default=[],
        help="run after, also after a failure (TAPEFLOW_OPERATION, TAPEFLOW_STATE, ...)",
    )
    ops.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default="WARNING",
        help="on stderr: INFO names each pre/post operation, DEBUG adds what it said",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[common, ops])

    group = top.add_parser("catalog", help="catalog prune, backup to tape, recovery from tape")
    sub = group.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prune", parents=[common, cat], help="drop old file detail")
    p.add_argument("--days", type=int, default=DEFAULT_KEEP_DAYS, help="keep this many days")
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("backup", parents=[common, cat], help="back up the catalog to tape")
    p.add_argument("--pool", default=DEFAULT_POOL, help=f"media pool (default {DEFAULT_POOL})")
    p.set_defaults(func=cmd_catalog_backup)
    p = sub.add_parser("recover", parents=[common], help="recover the catalog from tape alone")
    p.add_argument("--target", required=True, help="empty directory for the recovered catalog")
    p.add_argument("--as-of", help="ISO 8601 date/time (default: the newest backup)")
    p.add_argument("--pool", help="search only cartridges labelled for this pool")
    p.add_argument("--barcode", action="append", default=[], help="search only these")
    p.set_defaults(func=cmd_catalog_recover)
    p = sub.add_parser("backups", parents=[common], help="list catalog backups on tape")
    p.add_argument("--pool", help="search only cartridges labelled for this pool")
    p.add_argument("--barcode", action="append", default=[], help="search only these")
    p.set_defaults(func=cmd_catalog_backups)

    p = top.add_parser("scan", parents=[common], help="read cartridges: labels and sessions")
    p.add_argument("barcode", nargs="*", help="cartridges (default: all)")
    p.add_argument("--tape-file", type=int, help="scan only the session at this tape file")
    p.set_defaults(func=cmd_scan)
    p = top.add_parser("merge", parents=[common, cat], help="scan cartridges into the catalog")
    p.add_argument("barcode", nargs="*", help="cartridges (default: all)")
    p.set_defaults(func=cmd_merge)
    p = top.add_parser(
        "compare", parents=[common, cat], help="session vs directory (exit 1 if different)"
    )
    p.add_argument("session")
    p.add_argument("root", help="directory to compare with")
    p.add_argument("--content", action="store_true", help="compare checksums too")
    p.add_argument("--own-rows", action="store_true", help="only the session's own rows")
    p.set_defaults(func=cmd_compare)

    p = top.add_parser("count", parents=[common], help="files, dirs and bytes of a source")
    p.add_argument("path")
    _globs(p)
    p.set_defaults(func=cmd_count)
    p = top.add_parser("purge", parents=[common], help="delete files of a source (dry run)")
    p.add_argument("path")
    _globs(p)
    p.add_argument("--older-than", type=float, help="only files older than this many days")
    p.add_argument("--remove-empty-dirs", action="store_true")
    p.add_argument("--yes", action="store_true", help="really delete (default: dry run)")
    p.set_defaults(func=cmd_purge)
    p = top.add_parser("copy", parents=[common], help="directory to directory copy")
    p.add_argument("source")
    p.add_argument("target")
    _globs(p)
    p.add_argument("--mirror", action="store_true", help="delete in target what source lacks")
    p.add_argument("--delete-source", action="store_true", help="move: delete after verify")
    p.add_argument("--verify", choices=["size-mtime", "hash"], default="size-mtime")
    p.set_defaults(func=cmd_copy)
