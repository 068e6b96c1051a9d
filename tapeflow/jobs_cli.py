"""`tapeflow find` and `tapeflow jobs`: catalog queries at a terminal (no Prefect needed)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from tapeflow.catalog import Catalog, path_versions
from tapeflow.library import default_home


def default_catalog() -> str:
    """$TAPEFLOW_CATALOG or ~/.tapeflow/catalog/catalog.duckdb."""
    return os.environ.get("TAPEFLOW_CATALOG", str(default_home() / "catalog" / "catalog.duckdb"))


def _fmt_time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def cmd_jobs(args: argparse.Namespace) -> int:
    """Jobs, newest first, with their sessions."""
    with Catalog(Path(args.catalog), read_only=True) as cat:
        jobs = cat.records("SELECT * FROM jobs ORDER BY started DESC LIMIT ?", [args.limit])
        for job in jobs:
            job["sessions"] = cat.sessions(job_id=job["id"])
    if args.json:
        print(json.dumps(jobs, default=str, indent=2))
        return 0
    for job in jobs:
        print(
            f"{job['id']}  {job['kind']:<7} {job['level'] or '-':<12} {job['state']:<9} "
            f"{_fmt_time(job['started'])}  pool {job['pool'] or '-'}"
        )
        for s in job["sessions"]:
            mb = (s["bytes"] or 0) / 1e6
            print(
                f"    {s['source']:<16} {s['level']:<12} {s['state']:<9} "
                f"{s['files'] or 0:>8} files {mb:>10.1f} MB  {s['id']}"
            )
    if not jobs:
        print("no jobs in the catalog yet")
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    """Every version of a path, with the cartridge and block that holds it."""
    with Catalog(Path(args.catalog), read_only=True) as cat:
        rows = path_versions(cat, args.path, source=args.source).to_pylist()
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    if not rows:
        print(f"{args.path}: not in the catalog")
        return 1
    for r in rows:
        where = f"{r['barcode']} file {r['tape_file']} block {r['block']}+{r['offset']}"
        print(
            f"{_fmt_time(r['session_started'])}  {r['source']:<12} {r['type']:<8} "
            f"{r['size']:>12} B  {where}  [{r['session_state']}]"
        )
    return 0


def add_commands(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register `jobs` and `find`."""
    cat = argparse.ArgumentParser(add_help=False)
    cat.add_argument("--catalog", default=default_catalog(), help="catalog .duckdb file")
    jobs = top.add_parser("jobs", parents=[common, cat], help="jobs and their sessions")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(func=cmd_jobs)
    find = top.add_parser("find", parents=[common, cat], help="every version of a path")
    find.add_argument("path", help="path relative to its source root")
    find.add_argument("--source")
    find.set_defaults(func=cmd_find)
