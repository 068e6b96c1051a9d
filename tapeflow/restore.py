"""Restore: pick members from the catalog as of a time, group them by cartridge, and extract
each by LOCATE to its recorded block (reading only what it needs), never outside the target.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from tapeflow.catalog import Catalog, session_media, tree_at
from tapeflow.library import Library
from tapeflow.maintenance.leased import leased_mounts
from tapeflow.scsi.tape import TapeDrive
from tapeflow.serverless.maps import blockmaps_dir, load_maps
from tapeflow.serverless.restore import restore_files
from tapeflow.tapefmt import extract_member_at

Overwrite = Literal["always", "never", "older"]


class NothingToRestore(ValueError):
    """The selection matches no file of the source at that time."""


@dataclass
class Item:
    """One member to restore and where its header is."""

    path: str
    type: str
    mtime_us: int
    session_id: str
    tape_file: int
    block: int
    offset: int
    sequence: int  # which part of the session's span holds the header


@dataclass
class CartridgeWork:
    """Everything to read from one cartridge, in tape order."""

    barcode: str
    items: list[Item]
    session_parts: dict[str, list[str]]  # session id -> barcodes in span order
    blockmaps: dict[str, str] = field(default_factory=dict)  # serverless session id -> maps dir

    def to_dict(self) -> dict[str, Any]:
        """JSON form (task parameter)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CartridgeWork:
        """Inverse of to_dict."""
        return cls(
            data["barcode"],
            [Item(**i) for i in data["items"]],
            data["session_parts"],
            dict(data.get("blockmaps") or {}),
        )


@dataclass
class RestoreResult:
    """What one cartridge's worker did."""

    barcode: str
    drive: int | None = None
    restored: int = 0
    skipped: list[str] = field(default_factory=list)  # "path: reason"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def _selected(path: str, selection: list[str]) -> bool:
    for sel in selection:
        sel = sel.strip("/")
        if not sel or path == sel or path.startswith(sel + "/"):
            return True
        if any(c in sel for c in "*?[") and fnmatch.fnmatchcase(path, sel):
            return True
    return False


def plan_restore(
    catalog_path: Path, source: str, selection: list[str], at: datetime | None = None
) -> list[CartridgeWork]:
    """Members of `source` as of `at` matching `selection` (paths, directories or globs)."""
    with Catalog(catalog_path, read_only=True) as cat:
        tree = tree_at(cat, source, at)
        rows = [r for r in tree.to_pylist() if _selected(r["path"], selection)]
        chosen = {r["path"] for r in rows}
        by_path = {r["path"]: r for r in tree.to_pylist()}
        for r in list(rows):  # a hard link needs the file it points to
            target = r.get("link_target")
            if r["type"] == "hardlink" and target and target not in chosen and target in by_path:
                rows.append(by_path[target])
                chosen.add(target)
        if not rows:
            what = ", ".join(s for s in selection if s) or "everything"
            raise NothingToRestore(f"nothing of {source!r} matches {what} as of {at or 'now'}")
        sessions = {r["session_id"] for r in rows}
        parts = {sid: session_media(cat, sid).column("barcode").to_pylist() for sid in sessions}
        maps_dir = str(blockmaps_dir(cat.files_dir))
        serverless = {sid: maps_dir for sid in sessions if cat.session(sid)["kind"] == "serverless"}
    work: dict[str, list[Item]] = defaultdict(list)
    for r in rows:
        seq = (
            parts[r["session_id"]].index(r["barcode"])
            if r["barcode"] in parts[r["session_id"]]
            else 0
        )
        work[r["barcode"]].append(
            Item(
                r["path"],
                r["type"],
                int(r["mtime"].timestamp() * 1e6),
                r["session_id"],
                r["tape_file"],
                r["block"],
                r["offset"],
                seq,
            )
        )
    return [
        CartridgeWork(
            barcode,
            sorted(items, key=lambda i: (i.tape_file, i.block, i.offset)),
            {sid: parts[sid] for sid in {i.session_id for i in items}},
            {sid: serverless[sid] for sid in {i.session_id for i in items} if sid in serverless},
        )
        for barcode, items in sorted(work.items())
    ]


def _keep_existing(target: Path, item: Item, overwrite: Overwrite) -> str | None:
    """Why an existing file is kept, or None to restore over it."""
    dest = target / item.path
    if item.type == "dir" or not os.path.lexists(dest):
        return None
    if overwrite == "never":
        return "exists (overwrite=never)"
    if overwrite == "older" and os.lstat(dest).st_mtime_ns // 1000 >= item.mtime_us:
        return "on-disk copy is not older (overwrite=older)"
    return None


def restore_cartridge(
    library: str,
    work: CartridgeWork,
    target: Path,
    overwrite: Overwrite = "always",
    drive_timeout: float = 24 * 3600,
) -> RestoreResult:
    """Lease `work.barcode` and a drive, extract its members by LOCATE, release everything.

    Leases are taken as every reader takes them (leased_mounts: the cartridge, then a drive);
    a member continued on another cartridge is followed there under that cartridge's lease,
    or fails with CartridgeBusy while a backup is writing it.
    """
    result = RestoreResult(work.barcode)
    target.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    lib = Library(library)
    holder = f"restore {work.barcode}"
    with lib, leased_mounts(lib, holder, [work.barcode], timeout=drive_timeout) as mounts:
        result.drive = mounts.drives[0]
        handle: TapeDrive = mounts.mount(work.barcode)
        volume_items: dict[str, list[str]] = defaultdict(list)
        for item in work.items:
            why = _keep_existing(target, item, overwrite)
            if why:
                result.skipped.append(f"{item.path}: {why}")
                continue
            if item.session_id in work.blockmaps:  # a file inside a volume image
                volume_items[item.session_id].append(item.path)
                continue
            parts = work.session_parts[item.session_id]

            def next_cartridge(seq: int, parts: list[str] = parts) -> TapeDrive:
                nonlocal handle
                handle = mounts.mount(parts[seq])  # the one drive: the other one goes home
                return handle

            handle = mounts.mount(work.barcode)  # back, if a previous member continued
            report = extract_member_at(
                handle,
                item.block,
                item.offset,
                target,
                next_cartridge=next_cartridge,
                session_id=item.session_id,
                sequence=item.sequence,
            )
            result.restored += len(report.extracted)
            result.skipped += [f"{s.name}: {s.reason}" for s in report.skipped]
        handle = mounts.mount(work.barcode)
        for sid, paths in volume_items.items():  # serverless: only their clusters
            maps, _ = load_maps(Path(work.blockmaps[sid]), sid)
            done = restore_files(handle, maps, paths, target, exact=True)
            result.restored += done.files + done.dirs
    result.seconds = time.monotonic() - start
    return result
