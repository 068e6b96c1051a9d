"""`tapeflow library label|erase|clean|scan-mail|group|vlib`: media and library management at a
terminal. Readable output by default, `--json` for tools; bad input raises a LibraryError (or
ValueError), which tapeflow.cli.main prints as one line with exit code 2, nothing changed."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tapeflow.catalog import record_media_changes
from tapeflow.jobs_cli import default_catalog
from tapeflow.library import Library, LibrarySpec
from tapeflow.library import groups as groupmod
from tapeflow.library import media as mediamod
from tapeflow.library import partitions as partmod

NOT_DONE = ("refused", "failed")


def _emit(args: argparse.Namespace, payload: object, text: str) -> None:
    """Print JSON with --json, else the readable text."""
    print(json.dumps(payload, indent=2) if args.json else text)


def slot_range(text: str) -> tuple[int, int]:
    """'3' or '1-12' -> (first, last); argparse shows the error on anything else."""
    first, dash, last = text.partition("-")
    if not first.isdigit() or (dash and not last.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: want a slot or a range like 1-12")
    return int(first), int(last) if dash else int(first)


def numbers(text: str) -> list[int]:
    """'0,1' or '1-12,15' -> numbers; argparse shows the error on anything else."""
    try:
        return partmod.parse_numbers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def format_outcomes(outcomes: list[mediamod.MediaOutcome]) -> str:
    """One line per slot: slot, barcode, what happened, why."""
    lines = [f"  {'slot':>4}  {'cartridge':<10} {'result':<9} detail"]
    for o in outcomes:
        lines.append(f"  {o.slot:>4}  {o.barcode or '-':<10} {o.action:<9} {o.detail}")
    return "\n".join(lines)


def _media_command(
    args: argparse.Namespace,
    run: Callable[..., list[mediamod.MediaOutcome]],
    pool: str | None = None,
    **kw: Any,
) -> int:
    """Run label or erase on the selection and tell the catalog, as the flows do; exit 1 when
    a cartridge was refused or failed."""
    if pool is not None:
        kw["pool"] = pool
    with Library(args.library) as lib:
        outcomes = run(lib, slots=args.slots, barcodes=args.barcode or (), drive=args.drive, **kw)
    forgotten = record_media_changes(
        Path(args.catalog),
        [o.barcode for o in outcomes if o.overwritten and o.barcode],
        [o.barcode for o in outcomes if o.action == "labelled" and o.barcode],
        pool,
    )
    text = format_outcomes(outcomes)
    if forgotten:
        text += f"\ncatalog: sessions on {', '.join(forgotten)} are gone with their tapes"
    _emit(args, [o.to_dict() for o in outcomes], text)
    return 1 if any(o.action in NOT_DONE for o in outcomes) else 0


def cmd_label(args: argparse.Namespace) -> int:
    """Label blank cartridges (exit 1 when some were refused or failed)."""
    return _media_command(args, mediamod.label_media, args.pool, force=args.force)


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase cartridges (exit 1 when some were refused or failed)."""
    return _media_command(args, mediamod.erase_media, long=args.long, force=args.force)


def cmd_clean(args: argparse.Namespace) -> int:
    """Clean a drive from a cleaning cartridge."""
    with Library(args.library) as lib:
        done = mediamod.clean_drive(lib, args.drive, timeout=args.timeout)
    uses = "" if done.uses_left is None else f", {done.uses_left} uses left"
    _emit(
        args,
        done.to_dict(),
        f"drive {done.drive} cleaned with {done.barcode} in {done.seconds:.1f} s{uses}",
    )
    return 0


def cmd_scan_mail(args: argparse.Namespace) -> int:
    """Import every new cartridge found in the mail slots."""
    with Library(args.library) as lib:
        imported = mediamod.import_new_media(lib)
    text = "\n".join(
        f"imported {i.barcode} from mail slot {i.mail_slot} into slot {i.slot}" for i in imported
    )
    _emit(args, [i.to_dict() for i in imported], text or "no new cartridge in the mail slots")
    return 0


def cmd_group_add(args: argparse.Namespace) -> int:
    """Create a library group."""
    with Library(args.library) as lib:
        group = groupmod.create_group(lib, args.name, args.first, args.last)
    _emit(args, group.to_dict(), f"group {group.name}: slots {group.first}-{group.last}")
    return 0


def cmd_group_rm(args: argparse.Namespace) -> int:
    """Delete a library group."""
    with Library(args.library) as lib:
        group = groupmod.delete_group(lib, args.name)
    _emit(args, group.to_dict(), f"deleted group {group.name} (slots {group.first}-{group.last})")
    return 0


def cmd_group_list(args: argparse.Namespace) -> int:
    """List library groups."""
    with Library(args.library) as lib:
        groups = groupmod.list_groups(lib)
    text = "\n".join(f"  {g.name:<8}  slots {g.first}-{g.last}" for g in groups)
    _emit(args, [g.to_dict() for g in groups], text or "no library groups")
    return 0


def _vlib_row(spec: LibrarySpec, part: partmod.Partition) -> dict[str, Any]:
    """A virtual library with its address and drive tag."""
    vspec = spec.with_vlib(part.name)
    return {
        **part.to_dict(),
        "library": str(vspec),
        "tag": f"tape-drive:{vspec.tag_name}",
    }


def cmd_vlib_add(args: argparse.Namespace) -> int:
    """Create a virtual library."""
    with Library(args.library) as lib:
        part = partmod.create_partition(lib, args.name, args.drives, args.slots)
        row = _vlib_row(lib.spec, part)
    _emit(
        args,
        row,
        f"virtual library {part.name}: drives {partmod.format_numbers(part.drives)}, "
        f"slots {partmod.format_numbers(part.slots)}\n  address {row['library']}\n"
        f"  drive tag {row['tag']} (its limit is set by the flows and by each backup)",
    )
    return 0


def cmd_vlib_rm(args: argparse.Namespace) -> int:
    """Delete a virtual library."""
    with Library(args.library) as lib:
        part = partmod.delete_partition(lib, args.name)
    _emit(args, part.to_dict(), f"deleted virtual library {part.name}")
    return 0


def cmd_vlib_list(args: argparse.Namespace) -> int:
    """List virtual libraries."""
    with Library(args.library) as lib:
        rows = [_vlib_row(lib.spec, p) for p in partmod.list_partitions(lib)]
    text = "\n".join(
        f"  {r['name']:<16} drives {partmod.format_numbers(r['drives']):<8} "
        f"slots {partmod.format_numbers(r['slots']):<12} {r['library']}"
        for r in rows
    )
    _emit(args, rows, text or "no virtual libraries")
    return 0


def _selection(parser: argparse.ArgumentParser) -> None:
    """Options shared by label and erase: which cartridges, force, which drive."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--slots", type=slot_range, help="slot or range: 3 or 1-12")
    which.add_argument("--barcode", action="append", help="a cartridge (repeatable)")
    parser.add_argument("--force", action="store_true", help="also foreign/labelled tapes")
    parser.add_argument("--drive", type=int, help="drive to use (default: any online one)")
    parser.add_argument(
        "--catalog",
        default=default_catalog(),
        help="catalog told what was overwritten and labelled (default: $TAPEFLOW_CATALOG or "
        "~/.tapeflow/catalog/catalog.duckdb; none there: nothing to tell)",
    )


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register label, erase, clean, scan-mail, group and vlib under `tapeflow library`."""
    label = sub.add_parser("label", parents=[common], help="label blank cartridges for a pool")
    _selection(label)
    label.add_argument("--pool", default="default", help="pool written on the label")
    label.set_defaults(func=cmd_label)

    erase = sub.add_parser("erase", parents=[common], help="erase cartridges (quick or long)")
    _selection(erase)
    erase.add_argument("--long", action="store_true", help="erase the whole cartridge (slow)")
    erase.set_defaults(func=cmd_erase)

    clean = sub.add_parser("clean", parents=[common], help="clean a drive")
    clean.add_argument("drive", type=int)
    clean.add_argument("--timeout", type=float, help="max seconds to wait for the cleaning")
    clean.set_defaults(func=cmd_clean)

    scan = sub.add_parser("scan-mail", parents=[common], help="import new mail-slot media")
    scan.set_defaults(func=cmd_scan_mail)

    group = sub.add_parser("group", help="library groups: named slot ranges")
    gsub = group.add_subparsers(dest="group_command", required=True)
    gadd = gsub.add_parser("add", parents=[common], help="name a slot range")
    gadd.add_argument("name", help="1-8 of [A-Za-z0-9_-]")
    gadd.add_argument("first", type=int)
    gadd.add_argument("last", type=int)
    gadd.set_defaults(func=cmd_group_add)
    grm = gsub.add_parser("rm", parents=[common], help="delete a group")
    grm.add_argument("name")
    grm.set_defaults(func=cmd_group_rm)
    gsub.add_parser("list", parents=[common], help="list groups").set_defaults(func=cmd_group_list)

    vlib = sub.add_parser("vlib", help="virtual libraries: partitions of drives and slots")
    vsub = vlib.add_subparsers(dest="vlib_command", required=True)
    vadd = vsub.add_parser("add", parents=[common], help="create a virtual library")
    vadd.add_argument("name", help="1-16 of [A-Za-z0-9_-]")
    vadd.add_argument("--drives", type=numbers, required=True, help="e.g. 0,1")
    vadd.add_argument("--slots", type=numbers, required=True, help="e.g. 1-12")
    vadd.set_defaults(func=cmd_vlib_add)
    vrm = vsub.add_parser("rm", parents=[common], help="delete a virtual library")
    vrm.add_argument("name")
    vrm.set_defaults(func=cmd_vlib_rm)
    vsub.add_parser("list", parents=[common], help="list virtual libraries").set_defaults(
        func=cmd_vlib_list
    )
