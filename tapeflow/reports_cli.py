"""`tapeflow report jobs|media|pools` and `tapeflow pool define|assign`: reports and pool
administration at a terminal (readable tables, `--json` for tools; no Prefect needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tapeflow import reports
from tapeflow.backup.pools import assign_pool, define_pool
from tapeflow.catalog import Catalog, CatalogError
from tapeflow.jobs_cli import default_catalog
from tapeflow.library import Library, default_home


def _open(args: argparse.Namespace, *, write: bool = False) -> Catalog:
    """The catalog named by --catalog; a clear error when there is none (nothing created)."""
    path = Path(args.catalog).expanduser()
    if not path.is_file():
        raise CatalogError(f"no catalog at {path} (run a backup first, or pass --catalog)")
    return Catalog(path, read_only=not write)


def _print(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else text)


def cmd_report_jobs(args: argparse.Namespace) -> int:
    """Jobs (newest first, or one with --job): slaves, sessions, bytes, MB/s, state, errors."""
    with _open(args) as cat:
        jobs = reports.job_report(cat, job_id=args.job, limit=args.limit)
        sessions = {j["job_id"]: reports.job_sessions(cat, j["job_id"]) for j in jobs}
    if args.json:
        _print(args, [{**j, "session_rows": sessions[j["job_id"]]} for j in jobs], "")
        return 0
    columns = [c for c in reports.JOB_COLUMNS if c != "errors"]
    parts = [reports.format_table(jobs, columns, title="JOBS", empty="no jobs in the catalog")]
    for job in jobs:
        if args.job:
            parts.append(
                reports.format_table(
                    sessions[job["job_id"]],
                    [c for c in reports.JOB_SESSION_COLUMNS if c != "error"],
                    title=f"\nSESSIONS OF {job['job_id']}",
                )
            )
        if job["errors"]:
            parts.append(f"\nerrors of {job['job_id']}:")
            parts += [f"  - {e}" for e in job["errors"]]
    print("\n".join(parts))
    return 0


def cmd_report_media(args: argparse.Namespace) -> int:
    """Media status per pool; --live reads locations from the library."""
    inventory = None
    if args.live:
        with Library(args.library or f"embedded:{default_home() / 'library'}") as lib:
            inventory = lib.inventory()
    with _open(args) as cat:
        rows = reports.media_report(cat, pool=args.pool, barcode=args.barcode, inventory=inventory)
    title = "MEDIA" + (f" OF POOL {args.pool}" if args.pool else "")
    _print(args, rows, reports.format_table(rows, reports.MEDIA_COLUMNS, title=title))
    return 0


def cmd_report_pools(args: argparse.Namespace) -> int:
    """Pools (retention, cartridges, expiry) and, with --sessions or --pool, their sessions."""
    with _open(args) as cat:
        pools = reports.pool_report(cat)
        want_sessions = args.sessions or args.pool is not None
        sessions = reports.pool_sessions(cat, pool=args.pool) if want_sessions else []
    if args.pool is not None:
        pools = [p for p in pools if p["pool"] == args.pool]
    text = reports.format_table(pools, reports.POOL_COLUMNS, title="POOLS", empty="no pools")
    if want_sessions:
        text += "\n\n" + reports.format_table(
            sessions, reports.POOL_SESSION_COLUMNS, title="SESSIONS PER POOL"
        )
    _print(args, {"pools": pools, "sessions": sessions} if want_sessions else pools, text)
    return 0


def cmd_pool_define(args: argparse.Namespace) -> int:
    """Create a pool or change its retention and append mode."""
    with Catalog(Path(args.catalog).expanduser()) as cat:
        define_pool(cat, args.name, args.retention_days, append=not args.no_append)
    _print(
        args,
        {"pool": args.name, "retention_days": args.retention_days, "append": not args.no_append},
        f"pool {args.name}: kept {args.retention_days} days, "
        + ("one session per cartridge" if args.no_append else "appending"),
    )
    return 0


def cmd_pool_assign(args: argparse.Namespace) -> int:
    """Move cartridges holding no session to a pool (`scratch`: any pool may take them)."""
    with _open(args, write=True) as cat:
        moved = assign_pool(cat, args.barcode, args.to, create=args.new)
    _print(args, {"pool": args.to, "barcodes": moved}, f"{' '.join(moved)} -> pool {args.to}")
    return 0


def add_commands(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register `report jobs|media|pools` and `pool define|assign` on the `tapeflow` parser."""
    cat = argparse.ArgumentParser(add_help=False)
    cat.add_argument("--catalog", default=default_catalog(), help="catalog .duckdb file")

    report = top.add_parser("report", help="job, media and pool reports")
    sub = report.add_subparsers(dest="command", required=True)
    jobs = sub.add_parser("jobs", parents=[common, cat], help="jobs: slaves, bytes, MB/s, errors")
    jobs.add_argument("--job", help="one job, with its sessions")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(func=cmd_report_jobs)
    media = sub.add_parser("media", parents=[common, cat], help="media status per pool")
    media.add_argument("--pool")
    media.add_argument("--barcode")
    media.add_argument("--live", action="store_true", help="locations from the library now")
    media.set_defaults(func=cmd_report_media)
    pools = sub.add_parser("pools", parents=[common, cat], help="pools and sessions per pool")
    pools.add_argument("--pool", help="one pool, with its sessions")
    pools.add_argument("--sessions", action="store_true", help="list the sessions per pool")
    pools.set_defaults(func=cmd_report_pools)

    pool = top.add_parser("pool", help="define pools; move blank cartridges between pools")
    psub = pool.add_subparsers(dest="command", required=True)
    define = psub.add_parser("define", parents=[common, cat], help="create or change a pool")
    define.add_argument("name")
    define.add_argument("--retention-days", type=int, required=True)
    define.add_argument("--no-append", action="store_true", help="one session per cartridge")
    define.set_defaults(func=cmd_pool_define)
    assign = psub.add_parser(
        "assign", parents=[common, cat], help="cartridges with no session -> a pool or scratch"
    )
    assign.add_argument("barcode", nargs="+")
    assign.add_argument("--to", required=True, help="pool name (scratch: the scratch pool)")
    assign.add_argument("--new", action="store_true", help="also record barcodes new to it")
    assign.set_defaults(func=cmd_pool_assign)
