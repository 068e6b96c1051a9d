"""Library management flows: inventory, label, erase, import/export, cleaning, drives online or
offline, library groups and virtual libraries. Thin: parameters, tasks, artifacts; the work is in
tapeflow.library (media, groups, partitions)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows import resolve
from tapeflow.library import LibrarySpec
from tapeflow.library.partitions import format_numbers, parse_numbers
from tapeflow.library.spec import VLIB_TAG_SEPARATOR, vlib_tag
from tasks import library as lt
from tasks.drives import sync_drive_limit


class MediaNotDone(RuntimeError):
    """Some cartridges were refused or failed (the others were done); the artifact lists all."""


def physical(library: str | None) -> tuple[LibrarySpec, str]:
    """(spec, drive tag) of the physical library behind a block name or address."""
    spec, tag = resolve.library(library)
    if spec.vlib:
        return spec.with_vlib(None), tag.removesuffix(f"{VLIB_TAG_SEPARATOR}{spec.vlib}")
    return spec, tag


def _slot_range(first_slot: int | None, last_slot: int | None) -> tuple[int, int] | None:
    """(first, last) from flow parameters; last defaults to first."""
    if first_slot is None:
        if last_slot is not None:
            raise ValueError("last_slot without first_slot")
        return None
    return (first_slot, last_slot if last_slot is not None else first_slot)


def _numbers(value: list[int] | str) -> list[int]:
    """Drive or slot numbers from a list or text like '1-12,15'; blank text is none (so the
    core says what is missing, as for an empty list)."""
    if isinstance(value, str):
        return parse_numbers(value) if value.strip() else []
    return [int(v) for v in value]


def _report_media(
    what: str, outcomes: list[dict[str, Any]], catalog: str | None, pool: str | None = None
) -> None:
    """Make an artifact of the run, record it in the catalog (if there is one), then raise
    MediaNotDone if a cartridge was refused or failed."""
    log = get_run_logger()
    counts = {a: sum(o["action"] == a for o in outcomes) for a in ("refused", "failed")}
    create_table_artifact(
        outcomes,
        key=f"library-{what}",
        description=f"{what}: {len(outcomes)} slot(s), {counts['refused']} refused, "
        f"{counts['failed']} failed",
    )
    for o in outcomes:
        if o["action"] in ("refused", "failed"):
            log.warning("slot %s (%s) %s: %s", o["slot"], o["barcode"], o["action"], o["detail"])
    gone = [o["barcode"] for o in outcomes if o["overwritten"]]
    labelled = [o["barcode"] for o in outcomes if o["action"] == "labelled"]
    forgotten = lt.record_media(str(resolve.catalog(catalog)), gone, labelled, pool)
    if forgotten:
        log.info("catalog: sessions on %s are gone with their tapes", ", ".join(forgotten))
    if counts["refused"] or counts["failed"]:
        raise MediaNotDone(
            f"{what}: {counts['refused']} cartridge(s) refused, {counts['failed']} failed "
            "(see the artifact)"
        )


@flow(name="tapeflow-library-inventory")
def library_inventory(library: str | None = None, import_new: bool = True) -> dict[str, Any]:
    """Drives, slots and mail slots with barcodes; new media in the mail slots are imported
    first (into free slots), so the next job, or a retried one that ran out, can take them."""
    spec, _tag = resolve.library(library)
    imported = lt.import_new_media(str(spec)) if import_new else []
    rows = lt.read_inventory(str(spec))
    create_table_artifact(
        rows,
        key="library-inventory",
        description=f"{spec.tag_name}: {sum(bool(r['barcode']) for r in rows)} cartridges, "
        f"{len(imported)} imported from the mail slots",
    )
    return {"imported": imported, "elements": rows}


@flow(name="tapeflow-library-label")
def library_label(
    first_slot: int | None = None,
    last_slot: int | None = None,
    barcodes: list[str] | None = None,
    pool: str = "default",
    force: bool = False,
    drive: int | None = None,
    library: str | None = None,
    catalog: str | None = None,
) -> list[dict[str, Any]]:
    """Label (format) the blank cartridges of a slot range or barcode list for `pool`; foreign
    or labelled ones are refused unless `force`. The catalog, if there is one, records the new
    labels and forgets the sessions of overwritten cartridges."""
    spec, _tag = resolve.library(library)
    slots = _slot_range(first_slot, last_slot)
    outcomes = lt.label_media(str(spec), slots, barcodes or [], pool, force, drive)
    _report_media("label", outcomes, catalog, pool)
    return outcomes


@flow(name="tapeflow-library-erase")
def library_erase(
    first_slot: int | None = None,
    last_slot: int | None = None,
    barcodes: list[str] | None = None,
    long: bool = False,
    force: bool = False,
    drive: int | None = None,
    library: str | None = None,
    catalog: str | None = None,
) -> list[dict[str, Any]]:
    """Erase the cartridges of a slot range or barcode list: quick (the tape reads blank) or
    long (the whole cartridge); foreign tapes only with `force`. The catalog forgets the
    sessions that were on them."""
    spec, _tag = resolve.library(library)
    slots = _slot_range(first_slot, last_slot)
    outcomes = lt.erase_media(str(spec), slots, barcodes or [], long, force, drive)
    _report_media("erase", outcomes, catalog)
    return outcomes


@flow(name="tapeflow-library-import")
def library_import(
    mail_slot: int | None = None, slot: int | None = None, library: str | None = None
) -> list[dict[str, Any]]:
    """Import the cartridge of `mail_slot` (into `slot` or the first free one), or every new
    cartridge in the mail slots when no mail slot is given."""
    spec, _tag = resolve.library(library)
    if mail_slot is None:
        if slot is not None:
            raise ValueError("slot needs mail_slot")
        return lt.import_new_media(str(spec))
    return [lt.import_media(str(spec), mail_slot, slot)]


@flow(name="tapeflow-library-export")
def library_export(barcodes: list[str], library: str | None = None) -> list[dict[str, Any]]:
    """Move cartridges to the mail slots for the operator to take away."""
    spec, _tag = resolve.library(library)
    return lt.export_media(str(spec), barcodes)


@flow(name="tapeflow-library-clean")
def library_clean(
    drive: int | None = None, timeout: float | None = None, library: str | None = None
) -> list[dict[str, Any]]:
    """Clean `drive` (default: every drive, one after another) from a cleaning cartridge."""
    spec, _tag = resolve.library(library)
    drives = [drive] if drive is not None else lt.drive_numbers(str(spec))
    done = [lt.clean_drive(str(spec), n, timeout) for n in drives]
    create_table_artifact(done, key="library-clean", description=f"{len(done)} drive(s) cleaned")
    return done


@flow(name="tapeflow-library-drive")
def library_drive(drive: int, online: bool, library: str | None = None) -> dict[str, Any]:
    """Mark a drive online or offline; the drive tag limits (the library's and its virtual
    library's) follow the online drive count."""
    spec, _tag = resolve.library(library)
    base, tag = physical(library)
    owners = lt.set_drive_online(str(spec), drive, online)
    limits = {tag: sync_drive_limit(str(base), tag)}
    for name in owners:
        vtag = vlib_tag(tag, name)
        limits[vtag] = sync_drive_limit(str(base.with_vlib(name)), vtag)
    state = "online" if online else "offline"
    get_run_logger().info("drive %d %s; drive tag limits now %s", drive, state, limits)
    return {"drive": drive, "online": online, "limits": limits}


@flow(name="tapeflow-library-group-create")
def library_group_create(
    name: str, first_slot: int, last_slot: int, library: str | None = None
) -> dict[str, Any]:
    """Name slots first..last a library group (1-8 characters) a job's pool can target."""
    spec, _tag = resolve.library(library)
    return lt.create_group(str(spec), name, first_slot, last_slot)


@flow(name="tapeflow-library-group-delete")
def library_group_delete(name: str, library: str | None = None) -> dict[str, Any]:
    """Remove a library group (its cartridges stay where they are)."""
    spec, _tag = resolve.library(library)
    return lt.delete_group(str(spec), name)


@flow(name="tapeflow-library-group-list")
def library_group_list(library: str | None = None) -> list[dict[str, Any]]:
    """The library groups, as an artifact table."""
    spec, _tag = resolve.library(library)
    groups = lt.list_groups(str(spec))
    create_table_artifact(groups, key="library-groups", description=f"{len(groups)} group(s)")
    return groups


@flow(name="tapeflow-library-vlib-create")
def library_vlib_create(
    name: str, drives: list[int] | str, slots: list[int] | str, library: str | None = None
) -> dict[str, Any]:
    """Make drives and slots (lists, or text like '0,1' and '1-12') a virtual library with its
    own drive tag, whose limit is set to its online drive count."""
    base, tag = physical(library)
    created = lt.create_vlib(str(base), name, _numbers(drives), _numbers(slots))
    vtag = vlib_tag(tag, name)
    limit = sync_drive_limit(str(base.with_vlib(name)), vtag)
    return {**created, "library": str(base.with_vlib(name)), "tag": vtag, "limit": limit}


@flow(name="tapeflow-library-vlib-delete")
def library_vlib_delete(name: str, library: str | None = None) -> dict[str, Any]:
    """Remove a virtual library (refused while a job uses it) and its drive tag limit."""
    base, tag = physical(library)
    deleted = lt.delete_vlib(str(base), name)
    lt.drop_tag_limit(vlib_tag(tag, name))
    return deleted


@flow(name="tapeflow-library-vlib-list")
def library_vlib_list(library: str | None = None) -> list[dict[str, Any]]:
    """The virtual libraries with their addresses and drive tags, as an artifact table."""
    base, tag = physical(library)
    rows = [
        {
            "name": p["name"],
            "drives": format_numbers(p["drives"]),
            "slots": format_numbers(p["slots"]),
            "library": str(base.with_vlib(p["name"])),
            "tag": vlib_tag(tag, p["name"]),
        }
        for p in lt.list_vlibs(str(base))
    ]
    create_table_artifact(rows, key="library-vlibs", description=f"{len(rows)} virtual libraries")
    return rows
