"""`tapeflow serve`: register every deployment (deployments/registry.py) and run them here until
stopped, so the UI, `prefect deployment run` and the job queue can start them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from deployments.defaults import (
    CLEAN_CRON,
    DEFAULT_TIMEZONE,
    NIGHTLY_CRON,
    PRUNE_CRON,
    PRUNE_DAYS,
    WEEKLY_CRON,
)


def parse_source(text: str) -> str | dict[str, Any]:
    """`NAME=PATH` -> a source dict; anything else is a BackupSource block name."""
    name, sep, path = text.partition("=")
    return {"name": name, "path": path} if sep else text


def cmd_serve(args: argparse.Namespace) -> int:
    """Build every deployment (bad cron/timezone: error before anything is registered), then
    serve them, or only list them with --list."""
    from prefect import serve  # imported here: other `tapeflow` commands need no Prefect

    from deployments.registry import all_deployments, describe, full_name

    deployments = all_deployments(
        sources=[parse_source(s) for s in args.source] or None,
        timezone=args.timezone,
        nightly_cron=args.nightly,
        weekly_cron=args.weekly,
        rotation=args.rotation,
        library=args.library,
        catalog=args.catalog,
        prune_cron=args.prune_cron,
        prune_days=args.prune_days,
        clean_cron=args.clean_cron,
    )
    if args.list:
        rows = [
            {
                "deployment": full_name(d),
                "schedules": [describe(s) for s in d.schedules],
                "parameters": d.parameters,
            }
            for d in deployments
        ]
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
        else:
            for row in rows:
                print(f"{row['deployment']:<45} {'; '.join(row['schedules']) or 'on demand'}")
        return 0
    keep_holds(deployments)
    serve(*deployments, limit=args.limit)
    return 0


def keep_holds(deployments: list[Any]) -> list[str]:
    """Registering a deployment resumes it: those an operator put on HOLD are registered
    paused and tagged again. Returns their names."""
    from deployments.registry import full_name
    from flows.queue import HOLD_TAG, held_deployments

    held = held_deployments()
    kept = []
    for d in deployments:
        if full_name(d) in held:
            d.paused = True
            d.tags = [*d.tags, HOLD_TAG]
            kept.append(full_name(d))
    return kept


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The serve options (shared by `tapeflow serve` and `python deployments/serve.py`)."""
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        help="scheduled backups' sources: NAME=PATH or a BackupSource block name "
        "(repeat; default: the block named 'default')",
    )
    parser.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="IANA timezone of schedules")
    parser.add_argument("--nightly", default=NIGHTLY_CRON, help="cron of the nightly incremental")
    parser.add_argument("--weekly", default=WEEKLY_CRON, help="cron of the weekly full backup")
    parser.add_argument("--prune-cron", default=PRUNE_CRON, help="cron of the catalog prune")
    parser.add_argument(
        "--prune-days", type=int, default=PRUNE_DAYS, help="days of sessions the prune keeps"
    )
    parser.add_argument("--clean-cron", default=CLEAN_CRON, help="cron of the drive cleaning")
    parser.add_argument(
        "--rotation",
        choices=["simple", "gfs"],
        default="simple",
        help="active schedules: nightly+weekly, or grandfather-father-son pools",
    )
    parser.add_argument("--limit", type=int, default=8, help="flow runs at once in this process")
    parser.add_argument("--list", action="store_true", help="print the deployments and exit")
    parser.set_defaults(func=cmd_serve)


def add_commands(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `serve` to the `tapeflow` command (`common`: --library, --catalog, --json)."""
    parser = top.add_parser(
        "serve", parents=[common], help="register the deployments and run them until stopped"
    )
    add_arguments(parser)
