"""`tapeflow ...`: the library at a terminal; readable tables by default, `--json` for tools."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tapeflow.catalog import CatalogError
from tapeflow.fs.errors import FsError
from tapeflow.jobs_cli import add_commands as add_catalog_commands
from tapeflow.library import Inventory, Library, LibraryError, LibrarySpec, default_home
from tapeflow.library_cli import add_commands as add_library_commands
from tapeflow.maintenance_cli import add_commands as add_maintenance_commands
from tapeflow.reports_cli import add_commands as add_report_commands
from tapeflow.scsi.sense import ScsiError
from tapeflow.snapshot.errors import SnapshotError
from tapeflow.vtl.errors import VtlError


def default_library() -> str:
    """$TAPEFLOW_LIBRARY, else the embedded library under $TAPEFLOW_HOME (~/.tapeflow)."""
    return os.environ.get("TAPEFLOW_LIBRARY", f"embedded:{default_home() / 'library'}")


def format_inventory(inv: Inventory) -> str:
    """The inventory as aligned text a person can scan."""
    lines = ["DRIVES", f"  {'#':>3}  {'state':<8} {'cartridge':<10} {'from slot':>9}"]
    for d in inv.drives:
        state = "online" if d.online else "OFFLINE"
        src = str(d.source_slot) if d.source_slot else "-"
        lines.append(f"  {d.number:>3}  {state:<8} {d.barcode or '(empty)':<10} {src:>9}")
    used = sum(s.full for s in inv.slots)
    lines += ["", f"SLOTS ({used}/{len(inv.slots)} full)"]
    for s in inv.slots:
        lines.append(f"  {s.number:>3}  {s.barcode or ('(full)' if s.full else '-')}")
    if inv.mail_slots:
        lines += ["", "MAIL SLOTS"]
        for s in inv.mail_slots:
            lines.append(f"  {s.number:>3}  {s.barcode or ('(full)' if s.full else '-')}")
    return "\n".join(lines)


def _emit(args: argparse.Namespace, payload: object, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


def cmd_create(args: argparse.Namespace) -> int:
    """Create an embedded library directory."""
    from tapeflow.vtl import VirtualLibrary

    spec = LibrarySpec.parse(args.library)
    if spec.backend != "embedded" or spec.path is None:
        raise LibraryError("only an embedded library can be created: use embedded:/some/dir")
    VirtualLibrary.create(
        spec.path,
        drives=args.drives,
        slots=args.slots,
        mail_slots=args.mail_slots,
        capacity=args.capacity_mb * 1024 * 1024,
        speed_limit=args.speed_mb * 1e6 if args.speed_mb else None,
    )
    _emit(
        args,
        {"created": str(spec)},
        f"created {spec}: {args.drives} drives, {args.slots} slots, {args.mail_slots} mail slots",
    )
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    """Show drives, slots and barcodes; new cartridges in mail slots are imported first."""
    from tapeflow.library.media import import_new_media

    with Library(args.library) as lib:
        imported = [] if args.no_import else import_new_media(lib)
        inv = lib.inventory()
    text = format_inventory(inv)
    if imported:
        text = (
            "\n".join(f"imported {i.barcode} into slot {i.slot}" for i in imported) + "\n\n" + text
        )
    _emit(args, {**inv.to_dict(), "imported": [i.barcode for i in imported]}, text)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """One-paragraph summary of the library and its drives."""
    with Library(args.library) as lib:
        ident = lib.changer.inquiry()
        inv = lib.inventory()
    full = sum(s.full for s in inv.slots)
    online = sum(d.online for d in inv.drives)
    payload = {
        "library": str(lib.spec),
        "changer": f"{ident.vendor} {ident.product} {ident.revision}",
        "drives": len(inv.drives),
        "drives_online": online,
        "drives_loaded": sum(d.full for d in inv.drives),
        "slots": len(inv.slots),
        "slots_full": full,
        "mail_slots": len(inv.mail_slots),
    }
    text = "\n".join(f"{k.replace('_', ' '):<14} {v}" for k, v in payload.items())
    _emit(args, payload, text)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """Move a cartridge into a drive."""
    with Library(args.library) as lib:
        barcode = lib.load(args.drive, barcode=args.barcode, slot=args.slot)
    _emit(
        args, {"loaded": barcode, "drive": args.drive}, f"loaded {barcode} into drive {args.drive}"
    )
    return 0


def cmd_unload(args: argparse.Namespace) -> int:
    """Eject a drive's cartridge back to a slot."""
    with Library(args.library) as lib:
        barcode = lib.unload(args.drive, slot=args.slot)
    _emit(
        args,
        {"unloaded": barcode, "drive": args.drive},
        f"unloaded {barcode} from drive {args.drive}",
    )
    return 0


def cmd_online(args: argparse.Namespace) -> int:
    """Mark a drive online or offline."""
    online = args.command == "online"
    with Library(args.library) as lib:
        lib.set_online(args.drive, online)
    state = "online" if online else "offline"
    _emit(args, {"drive": args.drive, "online": online}, f"drive {args.drive} is {state}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Move a cartridge from a mail slot into a storage slot."""
    with Library(args.library) as lib:
        barcode = lib.import_media(args.mail_slot, slot=args.slot)
    _emit(args, {"imported": barcode}, f"imported {barcode}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Move a cartridge to a mail slot for removal."""
    with Library(args.library) as lib:
        mail = lib.export_media(args.barcode)
    _emit(
        args,
        {"exported": args.barcode, "mail_slot": mail},
        f"{args.barcode} is in mail slot {mail}",
    )
    return 0


def _embedded_library(address: str):  # noqa: ANN202 - VirtualLibrary, imported lazily
    from tapeflow.vtl import VirtualLibrary

    spec = LibrarySpec.parse(address)
    if spec.backend != "embedded" or spec.path is None:
        raise LibraryError("SAN disks are managed here for the embedded library only")
    return VirtualLibrary.open(spec.path)


def cmd_disk_add(args: argparse.Namespace) -> int:
    """Add a disk LUN to the embedded SAN, over an image file or new and zero-filled."""
    if (args.image is None) == (args.size_mb is None):
        raise LibraryError("give exactly one of --image PATH and --size-mb N")
    vl = _embedded_library(args.library)
    size = args.size_mb * 1024 * 1024 if args.size_mb is not None else None
    vl.add_disk(args.name, image=args.image, size=size)
    store = vl.disk_store(args.name)
    _emit(
        args,
        {"disk": args.name, "image": str(store.image), "bytes": store.size},
        f"disk {args.name}: {store.size / 1e6:.1f} MB over {store.image}",
    )
    return 0


def cmd_disk_list(args: argparse.Namespace) -> int:
    """The embedded SAN's disks and their snapshots."""
    vl = _embedded_library(args.library)
    rows = []
    for name in vl.disks():
        store = vl.disk_store(name)
        rows.append(
            {
                "disk": name,
                "image": str(store.image),
                "bytes": store.size,
                "snapshots": store.snapshots(),
            }
        )
    text = "\n".join(
        f"{r['disk']:<16} {r['bytes'] / 1e6:>10.1f} MB  {r['image']}"
        + (f"  snapshots: {', '.join(r['snapshots'])}" if r["snapshots"] else "")
        for r in rows
    )
    _emit(args, rows, text or "no disks")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--library",
        default=default_library(),
        help="embedded:/dir, iscsi://host:port/iqn/lun?drives=1,2 or sg:/dev/sgN?drives=... "
        "(default: $TAPEFLOW_LIBRARY or the embedded library in ~/.tapeflow)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog="tapeflow", description=__doc__)
    top = parser.add_subparsers(dest="group", required=True)

    lib = top.add_parser("library", help="inventory, load, unload, drives, mail slots")
    sub = lib.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", parents=[common], help="create an embedded library")
    create.add_argument("--drives", type=int, default=4)
    create.add_argument("--slots", type=int, default=24)
    create.add_argument("--mail-slots", type=int, default=4)
    create.add_argument("--capacity-mb", type=int, default=2048, help="per cartridge")
    create.add_argument("--speed-mb", type=float, default=0, help="per-drive MB/s limit (0 = none)")
    create.set_defaults(func=cmd_create)
    sub.add_parser("status", parents=[common], help="summary").set_defaults(func=cmd_status)
    inventory = sub.add_parser("inventory", parents=[common], help="drives and slots")
    inventory.add_argument(
        "--no-import", action="store_true", help="leave new cartridges in the mail slots"
    )
    inventory.set_defaults(func=cmd_inventory)
    load = sub.add_parser("load", parents=[common], help="cartridge -> drive")
    load.add_argument("drive", type=int, help="drive number (0-based)")
    which = load.add_mutually_exclusive_group(required=True)
    which.add_argument("--barcode")
    which.add_argument("--slot", type=int, help="slot number (1-based)")
    load.set_defaults(func=cmd_load)
    unload = sub.add_parser("unload", parents=[common], help="drive -> slot")
    unload.add_argument("drive", type=int)
    unload.add_argument("--slot", type=int, help="destination slot (default: its home slot)")
    unload.set_defaults(func=cmd_unload)
    for name in ("online", "offline"):
        p = sub.add_parser(name, parents=[common], help=f"mark a drive {name}")
        p.add_argument("drive", type=int)
        p.set_defaults(func=cmd_online)
    imp = sub.add_parser("import", parents=[common], help="mail slot -> storage slot")
    imp.add_argument("mail_slot", type=int)
    imp.add_argument("--slot", type=int)
    imp.set_defaults(func=cmd_import)
    exp = sub.add_parser("export", parents=[common], help="storage slot -> mail slot")
    exp.add_argument("barcode")
    exp.set_defaults(func=cmd_export)
    disk = sub.add_parser("disk", help="disk LUNs of the embedded SAN (serverless sources)")
    dsub = disk.add_subparsers(dest="disk_command", required=True)
    dadd = dsub.add_parser("add", parents=[common], help="add a disk LUN")
    dadd.add_argument("name")
    dadd.add_argument("--image", type=Path, help="use this image file in place")
    dadd.add_argument("--size-mb", type=int, help="or a new zero-filled disk of this size")
    dadd.set_defaults(func=cmd_disk_add)
    dsub.add_parser("list", parents=[common], help="disks and snapshots").set_defaults(
        func=cmd_disk_list
    )
    add_library_commands(sub, common)
    add_catalog_commands(top, common)
    add_maintenance_commands(top, common)
    add_report_commands(top, common)
    return parser


USER_ERRORS: tuple[type[BaseException], ...] = (
    LibraryError,
    ScsiError,
    VtlError,
    CatalogError,
    FsError,
    SnapshotError,
    ValueError,
    OSError,
)


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Entry point; library, device and catalog errors print one clear line and exit 2."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"tapeflow: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
