"""The `tapeflow` command: the core's library/catalog commands plus backup, restore and demo,
which run as Prefect flows (a local server is started for the run when none is configured)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from flows import queue_cli, serve_cli
from tapeflow import cli as core_cli


def cmd_backup(args: argparse.Namespace) -> int:
    """Run the master backup flow."""
    from flows.backup import backup

    outcome = backup(
        sources=[serve_cli.parse_source(item) for item in args.source],
        pool=args.pool,
        level=args.level,
        library=args.library,
        catalog=args.catalog,
        multistream=not args.single_stream,
        media_wait=args.media_wait,
        verify=args.verify,
        compression=args.compression,
        pre=args.pre,
        post=args.post,
    )
    print(
        json.dumps(outcome, indent=2)
        if args.json
        else f"job {outcome['job_id']}: {outcome['state']}, {outcome['files']} files, "
        f"{outcome['bytes'] / 1e6:.1f} MB"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Run the restore flow."""
    from flows.restore import restore

    at = datetime.fromisoformat(args.at) if args.at else None
    out = restore(
        source=args.source,
        selection=args.select or None,
        at=at,
        target=args.target,
        overwrite=args.overwrite,
        library=args.library,
        catalog=args.catalog,
    )
    print(
        json.dumps(out, indent=2)
        if args.json
        else f"restored {out['restored']} members into {out['target']} ({out['skipped']} skipped)"
    )
    return 0


def cmd_serverless(args: argparse.Namespace) -> int:
    """Run a serverless backup of volumes."""
    from flows.serverless import serverless_backup

    outcome = serverless_backup(
        volumes=args.volume,
        pool=args.pool,
        library=args.library,
        catalog=args.catalog,
        mode=args.mode,
        multistream=not args.single_stream,
        snapshot=args.snapshot,
        live_copy=args.live_copy,
        verify=args.verify,
    )
    if args.json:
        print(json.dumps(outcome, indent=2))
    else:
        print(f"job {outcome['job_id']}: {outcome['state']}, {outcome['bytes'] / 1e6:.1f} MB")
        for row in outcome["slaves"]:
            print(f"  {row['source']:<16} {row['state']:<9} {row['MB']:>9} MB  by {row['copy']}")
            if row["warnings"]:
                print(f"    warning: {row['warnings']}")
    return 0


def cmd_restore_image(args: argparse.Namespace) -> int:
    """Write a volume back from its serverless backup."""
    from flows.serverless import restore_image

    out = restore_image(
        source=args.source,
        target=args.target,
        at=datetime.fromisoformat(args.at) if args.at else None,
        overwrite=args.overwrite,
        library=args.library,
        catalog=args.catalog,
    )
    print(
        json.dumps(out, indent=2)
        if args.json
        else f"{args.source} -> {out['target']}: {out['bytes'] / 1e6:.1f} MB by {out['path']}"
    )
    return 0


def cmd_drive(args: argparse.Namespace) -> int:
    """Mark a drive online or offline with the flow, so the drive tag limits follow at once."""
    from flows.library import library_drive

    out = library_drive(args.drive, args.command == "online", library=args.library)
    limits = ", ".join(f"{tag} = {n}" for tag, n in out["limits"].items())
    state = "online" if out["online"] else "offline"
    print(json.dumps(out) if args.json else f"drive {args.drive} is {state}; limits: {limits}")
    return 0


def cmd_vlib_add(args: argparse.Namespace) -> int:
    """Create a virtual library with the flow, which also creates its drive tag's limit."""
    from flows.library import library_vlib_create

    out = library_vlib_create(args.name, args.drives, args.slots, library=args.library)
    text = (
        f"virtual library {out['name']}: address {out['library']}\n"
        f"  drive tag {out['tag']}, limit {out['limit']}"
    )
    print(json.dumps(out) if args.json else text)
    return 0


def cmd_vlib_rm(args: argparse.Namespace) -> int:
    """Delete a virtual library with the flow, which also drops its drive tag's limit."""
    from flows.library import library_vlib_delete

    out = library_vlib_delete(args.name, library=args.library)
    print(json.dumps(out) if args.json else f"deleted virtual library {out['name']}")
    return 0


def _subcommand(parser: argparse.ArgumentParser, *path: str) -> argparse.ArgumentParser:
    """The parser of `tapeflow <path...>` in the core's command tree."""
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def cmd_demo(args: argparse.Namespace) -> int:
    """Backup and restore demo on a fresh embedded library."""
    from flows.demo import run_demo

    return run_demo(Path(args.dir) if args.dir else None, out=sys.stdout)


def build_parser() -> argparse.ArgumentParser:
    """The core's parser with the flow commands added."""
    parser = core_cli.build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--library",
        default=None,
        help="TapeLibrary block name or library address (default: embedded)",
    )
    common.add_argument("--catalog", default=None, help="Catalog block name or .duckdb path")
    common.add_argument("--json", action="store_true")
    serve_cli.add_commands(top, common)
    queue_cli.add_commands(top, common)
    # commands whose effect reaches Prefect (drive tag limits) run as the library flows
    for name in ("online", "offline"):
        _subcommand(parser, "library", name).set_defaults(func=cmd_drive)
    _subcommand(parser, "library", "vlib", "add").set_defaults(func=cmd_vlib_add)
    _subcommand(parser, "library", "vlib", "rm").set_defaults(func=cmd_vlib_rm)

    demo = top.add_parser("demo", help="backup + restore demo on a fresh embedded library")
    demo.add_argument("--dir", help="where to put the demo (default: a temp dir)")
    demo.set_defaults(func=cmd_demo)

    b = top.add_parser("backup", parents=[common], help="run a master backup job")
    b.add_argument("source", nargs="+", help="NAME=PATH, or a BackupSource block name")
    b.add_argument("--pool", default=None)
    b.add_argument("--level", choices=["full", "incremental", "differential"], default="full")
    b.add_argument("--single-stream", action="store_true", help="one slave at a time")
    b.add_argument("--verify", action="store_true", help="read each session back and check it")
    b.add_argument("--compression", action="store_true", help="compress the sessions")
    b.add_argument(
        "--media-wait", type=float, default=0.0, help="seconds to wait for new media (mail slot)"
    )
    b.add_argument("--pre", action="append", default=[], help="shell command or py:mod:func")
    b.add_argument("--post", action="append", default=[], help="shell command or py:mod:func")
    b.set_defaults(func=cmd_backup)

    r = top.add_parser("restore", parents=[common], help="restore files of a source")
    r.add_argument("source")
    r.add_argument("select", nargs="*", help="paths, directories or globs (default: all)")
    r.add_argument("--at", help="point in time, ISO 8601 (default: latest)")
    r.add_argument("--target", help="directory (default: the source's original directory)")
    r.add_argument("--overwrite", choices=["always", "never", "older"], default="always")
    r.set_defaults(func=cmd_restore)

    s = top.add_parser("serverless", parents=[common], help="block-level backup of volumes")
    s.add_argument("volume", nargs="+", help="NAME=disk:<lun or name> or NAME=/path/to/image")
    s.add_argument("--pool", default=None)
    s.add_argument("--mode", choices=["all", "used"], default="all")
    s.add_argument("--single-stream", action="store_true", help="one slave at a time")
    s.add_argument(
        "--verify",
        action="store_true",
        help="read each session back: members whole and sized (files have no checksum)",
    )
    s.add_argument(
        "--snapshot",
        choices=["auto", "lun", "reflink", "split-mirror", "none"],
        default="auto",
        help="how each volume is frozen (auto: LUN snapshot, reflink or verified full copy)",
    )
    s.add_argument(
        "--live-copy",
        action="store_true",
        help="where nothing can freeze a volume (e.g. tgt), copy it live, with a warning",
    )
    s.set_defaults(func=cmd_serverless)

    ri = top.add_parser("restore-image", parents=[common], help="write a volume back")
    ri.add_argument("source")
    ri.add_argument("target", help="disk:<name> of the library, or an image file path")
    ri.add_argument("--at", help="point in time, ISO 8601 (default: latest)")
    ri.add_argument("--overwrite", action="store_true", help="replace an existing image file")
    ri.set_defaults(func=cmd_restore_image)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tapeflow` console script."""
    return core_cli.main(argv, build_parser())


if __name__ == "__main__":
    raise SystemExit(main())
