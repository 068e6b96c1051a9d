"""Library management tasks: each one core call on a library address (JSON in, JSON out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_client, task
from prefect.exceptions import ObjectNotFound
from prefect.utilities.asyncutils import run_coro_as_sync

from tapeflow.catalog import record_media_changes
from tapeflow.library import Library, LibrarySpec
from tapeflow.library import groups as groupmod
from tapeflow.library import media as mediamod
from tapeflow.library import partitions as partmod


def _lib(spec: str) -> Library:
    """A Library from an address string (tasks get plain JSON parameters)."""
    return Library(LibrarySpec.parse(spec))


@task(name="import-new-media", persist_result=False)
def import_new_media(spec: str) -> list[dict[str, Any]]:
    """Move cartridges the operator put in the mail slots into free storage slots."""
    with _lib(spec) as lib:
        return [i.to_dict() for i in mediamod.import_new_media(lib)]


@task(name="read-inventory", persist_result=False)
def read_inventory(spec: str) -> list[dict[str, Any]]:
    """One row per drive, slot and mail slot: barcode, state, library group, virtual library."""
    with _lib(spec) as lib:
        inv = lib.inventory()
        groups = groupmod.load_groups(lib.state_dir)
        owners = partmod.load_partitions(lib.state_dir).values()
    drive_vlib = {d: p.name for p in owners for d in p.drives}
    slot_vlib = {s: p.name for p in owners for s in p.slots}
    rows: list[dict[str, Any]] = []
    for d in inv.drives:
        state = ("online" if d.online else "OFFLINE") + (" loaded" if d.full else "")
        rows.append(_row("drive", d.number, d.barcode, state, None, drive_vlib.get(d.number)))
    for s in inv.slots:
        state = "full" if s.full else "empty"
        group = groupmod.group_of(groups, s.number)
        rows.append(_row("slot", s.number, s.barcode, state, group, slot_vlib.get(s.number)))
    for m in inv.mail_slots:
        rows.append(_row("mail", m.number, m.barcode, "full" if m.full else "empty", None, None))
    return rows


def _row(
    kind: str, number: int, barcode: str | None, state: str, group: str | None, vlib: str | None
) -> dict[str, Any]:
    """One inventory artifact row."""
    return {
        "element": kind,
        "number": number,
        "barcode": barcode or "",
        "state": state,
        "group": group or "",
        "vlib": vlib or "",
    }


@task(name="label-media", persist_result=False)
def label_media(
    spec: str,
    slots: tuple[int, int] | None,
    barcodes: list[str],
    pool: str,
    force: bool,
    drive: int | None,
) -> list[dict[str, Any]]:
    """Label the blank cartridges of a slot range or barcode list for `pool`."""
    with _lib(spec) as lib:
        done = mediamod.label_media(
            lib, slots=slots, barcodes=barcodes, pool=pool, force=force, drive=drive
        )
    return [o.to_dict() for o in done]


@task(name="erase-media", persist_result=False)
def erase_media(
    spec: str,
    slots: tuple[int, int] | None,
    barcodes: list[str],
    long: bool,
    force: bool,
    drive: int | None,
) -> list[dict[str, Any]]:
    """Erase the cartridges of a slot range or barcode list (quick or long)."""
    with _lib(spec) as lib:
        done = mediamod.erase_media(
            lib, slots=slots, barcodes=barcodes, long=long, force=force, drive=drive
        )
    return [o.to_dict() for o in done]


@task(name="record-media", persist_result=False)
def record_media(
    catalog: str, overwritten: list[str], labelled: list[str], pool: str | None
) -> list[str]:
    """Tell an existing catalog what label or erase did (see record_media_changes)."""
    return record_media_changes(Path(catalog), overwritten, labelled, pool)


@task(name="import-media", persist_result=False)
def import_media(spec: str, mail_slot: int, slot: int | None) -> dict[str, Any]:
    """Move the cartridge of one mail slot into a storage slot (first free one by default)."""
    with _lib(spec) as lib:
        barcode = lib.import_media(mail_slot, slot=slot)
        where = next(s.number for s in lib.physical_inventory().slots if s.barcode == barcode)
    return {"mail_slot": mail_slot, "barcode": barcode, "slot": where}


@task(name="export-media", persist_result=False)
def export_media(spec: str, barcodes: list[str]) -> list[dict[str, Any]]:
    """Move cartridges to free mail slots for the operator to take."""
    with _lib(spec) as lib:
        moved = mediamod.export_media(lib, barcodes)
    return [{"barcode": b, "mail_slot": m} for b, m in moved]


@task(name="clean-drive", persist_result=False)
def clean_drive(spec: str, drive: int, timeout: float | None) -> dict[str, Any]:
    """Clean one drive with a cleaning cartridge and put the cartridge back."""
    with _lib(spec) as lib:
        return mediamod.clean_drive(lib, drive, timeout=timeout).to_dict()


@task(name="drive-numbers", persist_result=False)
def drive_numbers(spec: str) -> list[int]:
    """Every drive of the library (or virtual library), online or not."""
    with _lib(spec) as lib:
        return [d.number for d in lib.inventory().drives]


@task(name="set-drive-online", persist_result=False)
def set_drive_online(spec: str, drive: int, online: bool) -> list[str]:
    """Mark a drive online/offline; returns the virtual libraries that own it."""
    with _lib(spec) as lib:
        lib.set_online(drive, online)
        owners = partmod.load_partitions(lib.state_dir).values()
    return [p.name for p in owners if drive in p.drives]


@task(name="create-group", persist_result=False)
def create_group(spec: str, name: str, first: int, last: int) -> dict[str, Any]:
    """Add a library group (a named slot range)."""
    with _lib(spec) as lib:
        return groupmod.create_group(lib, name, first, last).to_dict()


@task(name="delete-group", persist_result=False)
def delete_group(spec: str, name: str) -> dict[str, Any]:
    """Remove a library group."""
    with _lib(spec) as lib:
        return groupmod.delete_group(lib, name).to_dict()


@task(name="list-groups", persist_result=False)
def list_groups(spec: str) -> list[dict[str, Any]]:
    """The library groups."""
    with _lib(spec) as lib:
        return [g.to_dict() for g in groupmod.list_groups(lib)]


@task(name="create-vlib", persist_result=False)
def create_vlib(spec: str, name: str, drives: list[int], slots: list[int]) -> dict[str, Any]:
    """Add a virtual library owning `drives` and `slots`."""
    with _lib(spec) as lib:
        return partmod.create_partition(lib, name, drives, slots).to_dict()


@task(name="delete-vlib", persist_result=False)
def delete_vlib(spec: str, name: str) -> dict[str, Any]:
    """Remove a virtual library (refused while a job holds one of its drives)."""
    with _lib(spec) as lib:
        return partmod.delete_partition(lib, name).to_dict()


@task(name="list-vlibs", persist_result=False)
def list_vlibs(spec: str) -> list[dict[str, Any]]:
    """The virtual libraries of the library."""
    with _lib(spec) as lib:
        return [p.to_dict() for p in partmod.list_partitions(lib)]


async def _drop_limit(tag: str) -> bool:
    """Delete the global limit `tag:<tag>`; False when there is none."""
    async with get_client() as client:
        try:
            await client.delete_global_concurrency_limit_by_name(f"tag:{tag}")
        except ObjectNotFound:
            return False
    return True


@task(name="drop-tag-limit", persist_result=False)
def drop_tag_limit(tag: str) -> bool:
    """Delete a drive tag's concurrency limit (of a deleted virtual library); False if none."""
    return run_coro_as_sync(_drop_limit(tag))
