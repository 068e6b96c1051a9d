"""Library management in the core, on the embedded library and on tgt: label, erase, clean, mail
slots, library groups, virtual libraries, the `tapeflow library ...` commands, and bad input
everywhere (typed errors, nothing changed)."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tapeflow.backup.model import Pool, SlaveSpec, Source
from tapeflow.backup.slave import SlaveFailed, pool_candidates, run_slave
from tapeflow.cli import main as cli_main
from tapeflow.library import Library, LibrarySpec
from tapeflow.library import groups as groupmod
from tapeflow.library import media as mediamod
from tapeflow.library import partitions as partmod
from tapeflow.library.errors import (
    BadLibrarySpec,
    DriveOutOfRange,
    EmptyPartition,
    EraseUnsupported,
    GroupExists,
    GroupOverlap,
    InvalidName,
    LibraryError,
    NoCleaningCartridge,
    NoFreeSlot,
    NotInPartition,
    PartitionBusy,
    PartitionExists,
    PartitionOverlap,
    SlotOutOfRange,
    UnknownBarcode,
    UnknownGroup,
    UnknownPartition,
)
from tapeflow.library.leases import LeaseBoard
from tapeflow.library_cli import add_commands
from tapeflow.scsi.sense import EndOfData, FilemarkDetected
from tapeflow.tapefmt import BlankTape, ForeignTape, read_label, write_label
from tests.conftest import Backend

STATE_FILES = ("groups.json", "vlibs.json", "drives-online.json")


# --- helpers ---------------------------------------------------------------------------------
def barcode_of(b: Backend, slot: int) -> str:
    """The barcode in a (full) storage slot."""
    found = b.library.physical_inventory().slots[slot - 1].barcode
    assert found, f"slot {slot} is empty"
    return found


def snapshot(lib: Library) -> dict[str, Any]:
    """Everything a refused request must leave as it was."""
    files = {
        n: (lib.state_dir / n).read_text() if (lib.state_dir / n).exists() else None
        for n in STATE_FILES
    }
    return {"inventory": lib.physical_inventory().to_dict(), "files": files}


def assert_idle(lib: Library) -> None:
    """No cartridge left in a drive, no drive or cartridge lease left held."""
    inv = lib.physical_inventory()
    assert not any(d.full for d in inv.drives), inv.drives
    board = LeaseBoard(lib.state_dir)
    for n in range(len(inv.drives)):
        lease = board.try_drive([n], "test")
        assert lease is not None, f"drive {n} still leased"
        lease.release()
    for barcode in inv.barcodes():
        lease = board.try_media(barcode, "test")
        assert lease is not None, f"{barcode} still leased"
        lease.release()


def tape_state(lib: Library, slot: int) -> tuple[str, int]:
    """('blank' | 'foreign' | pool name, number of tape files) of a slot's cartridge."""
    lib.load(0, slot=slot)
    handle = lib.open_drive(0)
    try:
        try:
            what = read_label(handle).pool
        except BlankTape:
            what = "blank"
        except ForeignTape:
            what = "foreign"
        handle.rewind()
        files = 0
        while True:
            try:
                handle.read(8 * 1024 * 1024)
            except FilemarkDetected:
                files += 1
            except EndOfData:
                break
        return what, files
    finally:
        handle.close()
        lib.unload(0)


def write_raw(lib: Library, slot: int, *, label_pool: str | None, extra_files: int) -> None:
    """Put a tapeflow label (or foreign data when label_pool is None) and `extra_files` more
    tape files on a slot's cartridge."""
    barcode = lib.load(0, slot=slot)
    handle = lib.open_drive(0)
    try:
        handle.set_block_size(0)
        handle.rewind()
        if label_pool is None:
            handle.write(b"NOT A TAPEFLOW TAPE " * 50)
            handle.write_filemarks(1)
        else:
            write_label(handle, barcode, barcode, label_pool, force=True)
        for i in range(extra_files):
            handle.write(f"session {i} ".encode() * 400)
            handle.write_filemarks(1)
    finally:
        handle.close()
        lib.unload(0)


def insert_new(b: Backend, barcode: str) -> None:
    """The operator puts a new cartridge into mail slot 1."""
    if b.name == "tgt":
        tgt = b.extra["tgt"]
        tgt.make_cartridge(barcode)
        tgt.place(tgt.mail_addresses[0], barcode)
    else:
        from tapeflow.vtl import VirtualLibrary

        assert b.library.spec.path is not None
        VirtualLibrary.open(b.library.spec.path).insert(barcode, mail_slot=0)


def add_cleaning(b: Backend, slot: int, uses: int, barcode: str = "CLN001L1") -> None:
    """Put a cleaning cartridge (`uses` cleanings left, embedded only) into empty `slot`."""
    if b.name == "tgt":
        tgt = b.extra["tgt"]
        subprocess.run(
            [
                "tgtimg", "--op", "new", "--device-type", "tape", "--barcode", barcode,
                "--size", "16", "--type", "clean", "--file", str(tgt.cartridge_path(barcode)),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        tgt.place(tgt.slot_addresses[slot - 1], barcode)
        return
    from tapeflow.vtl import VirtualLibrary
    from tapeflow.vtl.config import LibraryPaths
    from tapeflow.vtl.store import Cartridge, CartridgeMeta

    root = b.library.spec.path
    assert root is not None
    meta = CartridgeMeta(barcode, 1 << 20, 1 << 18, cleaning=True, cleaning_uses_left=uses)
    Cartridge.create(LibraryPaths(root).cartridge(barcode), meta)
    VirtualLibrary.open(root).insert(barcode, mail_slot=0)
    b.library.import_media(1, slot=slot)


# --- label -----------------------------------------------------------------------------------
def test_label_range_labels_blank_and_refuses_labelled_and_foreign(backend: Backend) -> None:
    lib = backend.library
    done = mediamod.label_media(lib, slots=(1, 3), pool="weekly")
    assert [(o.slot, o.action) for o in done] == [(1, "labelled"), (2, "labelled"), (3, "labelled")]
    assert [o.barcode for o in done] == [barcode_of(backend, n) for n in (1, 2, 3)]
    assert tape_state(lib, 2) == ("weekly", 1)
    write_raw(lib, 5, label_pool=None, extra_files=0)  # someone else's tape
    again = mediamod.label_media(lib, slots=(1, 8), pool="weekly")
    actions = {o.slot: (o.action, o.detail) for o in again}
    assert all(actions[n][0] == "refused" for n in (1, 2, 3))
    assert "for pool 'weekly'; use force" in actions[1][1]
    assert actions[4][0] == "labelled"
    assert actions[5][0] == "refused" and "foreign" in actions[5][1]
    assert actions[6][0] == "labelled"
    assert actions[7] == ("skipped", "empty slot") and actions[8] == ("skipped", "empty slot")
    assert tape_state(lib, 5) == ("foreign", 1)  # refused means untouched
    forced = mediamod.label_media(lib, barcodes=[barcode_of(backend, 5)], pool="daily", force=True)
    assert forced[0].action == "labelled" and forced[0].overwritten
    assert tape_state(lib, 5) == ("daily", 1)
    assert_idle(lib)


def test_a_cartridge_held_by_a_job_is_refused(backend: Backend) -> None:
    lib = backend.library
    board = LeaseBoard(lib.state_dir)
    with board.media(barcode_of(backend, 2), "running job"):
        done = mediamod.label_media(lib, slots=(1, 2), pool="p")
    assert [o.action for o in done] == ["labelled", "refused"]
    assert done[1].detail == "in use by a running job"
    assert tape_state(lib, 2) == ("blank", 0)
    assert_idle(lib)


# --- erase -----------------------------------------------------------------------------------
def test_erase_quick_and_long(backend: Backend) -> None:
    lib = backend.library
    write_raw(lib, 1, label_pool="old", extra_files=2)
    write_raw(lib, 2, label_pool="old", extra_files=1)
    write_raw(lib, 3, label_pool=None, extra_files=1)
    quick = mediamod.erase_media(lib, slots=(1, 4))
    actions = {o.slot: o.action for o in quick}
    assert actions == {1: "erased", 2: "erased", 3: "refused", 4: "skipped"}
    assert "foreign" in quick[2].detail and quick[3].detail == "already blank"
    assert tape_state(lib, 3) == ("foreign", 2)
    if backend.name == "tgt":  # tgt 1.0.85 has no ERASE: the label is rewritten, sessions cut
        assert "label rewritten" in quick[0].detail
        assert tape_state(lib, 1) == ("old", 1)
    else:
        assert tape_state(lib, 1) == ("blank", 0)
    forced = mediamod.erase_media(lib, barcodes=[barcode_of(backend, 3)], force=True)
    assert forced[0].action == "erased"
    if backend.name == "tgt":  # relabelled with no pool: label it for one to use it
        assert tape_state(lib, 3) == ("", 1)
    else:
        assert tape_state(lib, 3) == ("blank", 0)
    write_raw(lib, 2, label_pool="old", extra_files=1)
    before = snapshot(lib)
    if backend.name == "tgt":
        with pytest.raises(EraseUnsupported, match="long erase"):
            mediamod.erase_media(lib, slots=(2, 2), long=True)
        assert tape_state(lib, 2) == ("old", 2)  # nothing written
    else:
        long = mediamod.erase_media(lib, slots=(2, 2), long=True)
        assert long[0].action == "erased" and long[0].detail == "long: whole cartridge"
        assert tape_state(lib, 2) == ("blank", 0)
    assert snapshot(lib) == before
    assert_idle(lib)


# --- cleaning --------------------------------------------------------------------------------
def test_clean_drive_from_a_cleaning_cartridge(backend: Backend) -> None:
    lib = backend.library
    before = snapshot(lib)
    with pytest.raises(NoCleaningCartridge, match="none in the storage slots"):
        mediamod.clean_drive(lib, 1)
    assert snapshot(lib) == before
    add_cleaning(backend, 8, uses=2)
    done = mediamod.clean_drive(lib, 1, timeout=0.5, poll=0.05)
    assert done.drive == 1 and done.barcode == "CLN001L1" and done.slot == 8
    assert barcode_of(backend, 8) == "CLN001L1"  # back in its slot
    if backend.name == "tgt":  # tgt treats a cleaning cartridge as a plain one: no use count
        assert done.status == "ready" and done.uses_left is None
    else:  # embedded: cleaning happens on load, the cartridge counts its uses
        assert done.status == "cleaning cartridge installed" and done.uses_left == 1
        lib.set_online(0, False)  # an offline drive can still be cleaned
        assert mediamod.clean_drive(lib, 0).uses_left == 0
        spent = snapshot(lib)
        with pytest.raises(NoCleaningCartridge, match="CLN001L1 is used up"):
            mediamod.clean_drive(lib, 1)
        assert snapshot(lib) == spent
    with pytest.raises(DriveOutOfRange):
        mediamod.clean_drive(lib, 7)
    assert_idle(lib)


def test_clean_a_drive_that_ejects_the_cleaning_cartridge_itself(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.name == "tgt":
        pytest.skip("tgt's LOAD/UNLOAD is a no-op: a drive ejecting by itself cannot be shown")
    lib = backend.library
    add_cleaning(backend, 7, uses=5)
    wait = mediamod._wait_cleaned

    def ejecting(handle: Any, timeout: float, poll: float) -> str:
        handle.unload()  # what a real drive does when its cleaning is done
        return wait(handle, timeout, poll)

    monkeypatch.setattr(mediamod, "_wait_cleaned", ejecting)
    done = mediamod.clean_drive(lib, 0)
    assert done.status == "ejected" and done.uses_left == 4
    assert barcode_of(backend, 7) == "CLN001L1"
    assert_idle(lib)


# --- mail slots ------------------------------------------------------------------------------
def test_new_mail_media_are_imported_exported_ones_are_not(backend: Backend) -> None:
    lib = backend.library
    assert mediamod.import_new_media(lib) == []
    insert_new(backend, "NEW001")
    assert mediamod.new_mail_media(lib) == [(1, "NEW001")]
    imported = mediamod.import_new_media(lib)
    assert [i.to_dict() for i in imported] == [{"mail_slot": 1, "barcode": "NEW001", "slot": 7}]
    assert barcode_of(backend, 7) == "NEW001"
    leaving = barcode_of(backend, 2)
    assert mediamod.export_media(lib, [leaving]) == [(leaving, 1)]
    assert mediamod.new_mail_media(lib) == []  # waiting for the operator, not new
    assert mediamod.import_new_media(lib) == []
    before = snapshot(lib)
    with pytest.raises(NoFreeSlot, match="free mail slot"):
        mediamod.export_media(lib, [barcode_of(backend, 1)])
    with pytest.raises(UnknownBarcode, match="NOPE01"):
        mediamod.export_media(lib, ["NOPE01"])
    assert snapshot(lib) == before
    assert_idle(lib)


# --- library groups --------------------------------------------------------------------------
def test_groups_persist_and_refuse_bad_input_unchanged(backend: Backend) -> None:
    lib = backend.library
    assert groupmod.create_group(lib, "G1", 1, 3).to_dict() == {"name": "G1", "first": 1, "last": 3}
    groupmod.create_group(lib, "weekly-2", 4, 6)
    before = snapshot(lib)
    bad: list[tuple[type[Exception], str, tuple[str, int, int]]] = [
        (GroupOverlap, "overlap group 'G1'", ("G3", 3, 4)),
        (GroupOverlap, "overlap group 'weekly-2'", ("G3", 5, 8)),
        (InvalidName, "1-8", ("TOOLONG99", 7, 8)),
        (InvalidName, "1-8", ("a b", 7, 8)),
        (InvalidName, "1-8", ("", 7, 8)),
        (SlotOutOfRange, "out of range 1..8", ("G3", 7, 9)),
        (SlotOutOfRange, "out of range 1..8", ("G3", 0, 1)),
        (SlotOutOfRange, "after last slot", ("G3", 8, 7)),
        (GroupExists, "already exists", ("G1", 7, 8)),
    ]
    for error, message, args in bad:
        with pytest.raises(error, match=message):
            groupmod.create_group(lib, *args)
    with pytest.raises(UnknownGroup):
        groupmod.delete_group(lib, "nosuch")
    assert snapshot(lib) == before
    with Library(lib.spec) as again:  # persisted, seen by a new handle
        assert [g.name for g in groupmod.list_groups(again)] == ["G1", "weekly-2"]
    assert groupmod.delete_group(lib, "G1").first == 1
    assert [g.name for g in groupmod.list_groups(lib)] == ["weekly-2"]
    in_group = pool_candidates(lib, Pool("p", group="weekly-2"), ())
    assert in_group == [barcode_of(backend, n) for n in (4, 5, 6)]
    with pytest.raises(UnknownGroup):
        pool_candidates(lib, Pool("p", group="G1"), ())


def _slave(lib: Library, tmp: Path, group: str, megabytes: int, n: int) -> SlaveSpec:
    """A slave writing `megabytes` of incompressible files to a pool limited to `group`."""
    src = tmp / f"src{n}"
    src.mkdir()
    rng = random.Random(n)
    for i in range(megabytes // 2):
        (src / f"f{i:02d}.bin").write_bytes(rng.randbytes(2 * 1024 * 1024))
    return SlaveSpec(
        job_id=f"job{n}",
        session_id=f"session{n}",
        subjob=1,
        source=Source(f"src{n}", str(src)),
        level="full",
        pool=Pool(f"pool{n}", group=group),
        library=str(lib.spec),
        files_dir=str(tmp / "rows"),
    )


def test_backup_to_a_group_writes_only_its_cartridges_also_when_spanning(
    backend: Backend, tmp_path: Path
) -> None:
    lib = backend.library
    groupmod.create_group(lib, "SPAN", 2, 4)
    groupmod.create_group(lib, "ONE", 5, 5)
    group = {barcode_of(backend, n) for n in (2, 3, 4)}
    result = run_slave(_slave(lib, tmp_path, "SPAN", 24, 1))  # 24 MiB on 16 MiB cartridges
    used = [t.barcode for t in result.tapes]
    assert len(used) >= 2 and set(used) <= group and set(result.labelled) <= group
    with pytest.raises(SlaveFailed) as failed:  # the group runs out: never spills outside
        run_slave(_slave(lib, tmp_path, "ONE", 24, 2))
    assert "NoWritableCartridge" in str(failed.value)
    assert {t.barcode for t in failed.value.result.tapes} <= {barcode_of(backend, 5)}
    for slot in (1, 6):
        assert tape_state(lib, slot) == ("blank", 0)
    assert_idle(lib)


# --- virtual libraries -----------------------------------------------------------------------
def test_virtual_libraries_partition_drives_and_slots(backend: Backend) -> None:
    lib = backend.library
    partmod.create_partition(lib, "A", [0], range(1, 5))
    partmod.create_partition(lib, "B", [1], [5, 6, 7, 8])
    assert [p.to_dict() for p in partmod.list_partitions(lib)] == [
        {"name": "A", "drives": [0], "slots": [1, 2, 3, 4]},
        {"name": "B", "drives": [1], "slots": [5, 6, 7, 8]},
    ]
    spec_a = lib.spec.with_vlib("A")
    assert spec_a.tag_name == f"{lib.spec.name}:A"
    with Library(str(spec_a)) as a, Library(lib.spec.with_vlib("B")) as vb:
        inv = a.inventory()
        assert [d.number for d in inv.drives] == [0] and [s.number for s in inv.slots] == [
            1,
            2,
            3,
            4,
        ]
        assert len(inv.mail_slots) == 1  # shared
        assert a.online_drives() == [0] and vb.online_drives() == [1]
        assert pool_candidates(a, Pool("p"), ()) == [barcode_of(backend, n) for n in (1, 2, 3, 4)]
        with pytest.raises(NotInPartition, match="drive 1"):
            a.load(1, slot=1)
        with pytest.raises(NotInPartition, match="slot 5"):
            a.load(0, slot=5)
        with pytest.raises(NotInPartition, match="drive 1"):
            a.set_online(1, False)
        with pytest.raises(NotInPartition):
            mediamod.label_media(a, slots=(4, 5))
        done = mediamod.label_media(a, slots=(4, 4), pool="pa")  # runs in drive 0 only
        assert done[0].action == "labelled"
        with pytest.raises(NotInPartition):  # groups of a vlib stay inside it
            groupmod.create_group(a, "GA", 4, 5)
        groupmod.create_group(a, "GA", 3, 4)
        groupmod.create_group(lib, "GB", 5, 6)
        assert [g.name for g in groupmod.list_groups(a)] == ["GA"]
        insert_new(backend, "NEW002")
        with pytest.raises(NoFreeSlot):  # A's slots are all full
            mediamod.import_new_media(a)
        assert mediamod.import_new_media(vb)[0].slot == 7  # B's first free slot
        with pytest.raises(LibraryError, match="physical library"):
            partmod.create_partition(a, "C", [0], [1])
    assert_idle(lib)


def test_virtual_library_bad_input_changes_nothing(backend: Backend) -> None:
    lib = backend.library
    partmod.create_partition(lib, "A", [0], [1, 2, 3])
    before = snapshot(lib)
    bad: list[tuple[type[Exception], str, tuple[Any, ...]]] = [
        (EmptyPartition, "at least one drive", ("B", [], [4])),
        (EmptyPartition, "at least one slot", ("B", [1], [])),
        (
            PartitionOverlap,
            r"drive\(s\) \[0\] already belong to virtual library 'A'",
            ("B", [0, 1], [4]),
        ),
        (PartitionOverlap, r"slot\(s\) 3 already belong", ("B", [1], [3, 4])),
        (DriveOutOfRange, "out of range 0..1", ("B", [2], [4])),
        (SlotOutOfRange, "out of range 1..8", ("B", [1], [8, 9])),
        (InvalidName, "virtual library name", ("no/slash", [1], [4])),
        (InvalidName, "virtual library name", ("x" * 17, [1], [4])),
        (PartitionExists, "already exists", ("A", [1], [4])),
    ]
    for error, message, args in bad:
        with pytest.raises(error, match=message):
            partmod.create_partition(lib, *args)
    with pytest.raises(UnknownPartition):
        partmod.delete_partition(lib, "nosuch")
    with Library(lib.spec.with_vlib("nosuch")) as ghost, pytest.raises(UnknownPartition):
        ghost.inventory()
    with LeaseBoard(lib.state_dir).drive([0], "running job"):  # a job uses A's drive
        with pytest.raises(PartitionBusy, match="drive 0 is in use"):
            partmod.delete_partition(lib, "A")
    assert snapshot(lib) == before
    assert partmod.delete_partition(lib, "A").drives == (0,)
    assert partmod.list_partitions(lib) == []


# --- bad input for media operations ----------------------------------------------------------
def test_media_bad_input_changes_nothing(backend: Backend) -> None:
    lib = backend.library
    before = snapshot(lib)
    cases: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (SlotOutOfRange, "slot 0 is out of range 1..8", {"slots": (0, 2)}),
        (SlotOutOfRange, "slot 99 is out of range", {"slots": (1, 99)}),
        (SlotOutOfRange, "after last slot", {"slots": (5, 2)}),
        (UnknownBarcode, "NOPE01 is unknown", {"barcodes": [barcode_of(backend, 1), "NOPE01"]}),
        (DriveOutOfRange, "drive 5", {"slots": (1, 1), "drive": 5}),
        (ValueError, "exactly one", {}),
    ]
    for error, message, kw in cases:
        for run in (mediamod.label_media, mediamod.erase_media):
            with pytest.raises(error, match=message):
                run(lib, **kw)
    with pytest.raises(InvalidName, match="pool name"):
        mediamod.label_media(lib, slots=(1, 1), pool="x" * 33)
    assert snapshot(lib) == before
    assert tape_state(lib, 1) == ("blank", 0)
    assert_idle(lib)


# --- the `tapeflow library ...` commands -----------------------------------------------------
def parser() -> argparse.ArgumentParser:
    """A parser built like tapeflow/cli.py's, with only add_commands under `library`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--library", required=True)
    common.add_argument("--json", action="store_true")
    top = argparse.ArgumentParser(prog="tapeflow")
    groups = top.add_subparsers(dest="group", required=True)
    lib = groups.add_parser("library")
    add_commands(lib.add_subparsers(dest="command", required=True), common)
    return top


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `tapeflow library <argv>`."""
    capsys.readouterr()
    code = cli_main(["library", *argv], parser())
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_commands_and_their_errors(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = backend.library
    at = ["--library", str(lib.spec)]
    code, out, _ = run(capsys, "label", "--slots", "1-2", "--pool", "weekly", *at)
    assert code == 0 and "labelled" in out and barcode_of(backend, 1) in out
    code, out, _ = run(capsys, "label", "--slots", "1-3", "--pool", "weekly", "--json", *at)
    assert code == 1  # some were refused
    assert [o["action"] for o in json.loads(out)] == ["refused", "refused", "labelled"]
    code, out, _ = run(capsys, "erase", "--barcode", barcode_of(backend, 3), "--json", *at)
    assert code == 0 and json.loads(out)[0]["action"] == "erased"
    assert run(capsys, "group", "add", "G1", "1", "4", *at)[:2] == (0, "group G1: slots 1-4\n")
    code, out, _ = run(capsys, "group", "list", "--json", *at)
    assert json.loads(out) == [{"name": "G1", "first": 1, "last": 4}]
    code, out, _ = run(capsys, "vlib", "add", "A", "--drives", "0", "--slots", "1-4", *at)
    assert code == 0 and f"tape-drive:{lib.spec.name}:A" in out and "vlib=A" in out
    code, out, _ = run(capsys, "vlib", "list", "--json", *at)
    assert json.loads(out)[0]["library"] == str(lib.spec.with_vlib("A"))
    insert_new(backend, "NEW003")
    code, out, _ = run(capsys, "scan-mail", *at)
    assert code == 0 and "imported NEW003 from mail slot 1 into slot 7" in out
    before = snapshot(lib)
    errors = [
        (("group", "add", "TOOLONG99", "5", "6"), "invalid library group name 'TOOLONG99'"),
        (("group", "add", "G2", "4", "6"), "overlap group 'G1'"),
        (("group", "add", "G2", "7", "9"), "slot 9 is out of range 1..8"),
        (("group", "rm", "nosuch"), "no library group 'nosuch'"),
        (("vlib", "add", "B", "--drives", "0,1", "--slots", "5-6"), "already belong"),
        (("vlib", "add", "B", "--drives", "1", "--slots", "8-9"), "out of range 1..8"),
        (("vlib", "rm", "nosuch"), "no virtual library 'nosuch'"),
        (("label", "--slots", "1-99"), "slot 99 is out of range"),
        (("label", "--barcode", "NOPE01"), "NOPE01 is unknown"),
        (("erase", "--slots", "1", "--drive", "9"), "drive 9 is out of range"),
        (("clean", "0"), "no usable cleaning cartridge"),
    ]
    for argv, message in errors:
        code, out, err = run(capsys, *argv, *at)
        assert code == 2 and out == "" and err.startswith("tapeflow: error:"), (argv, err)
        assert message in err, (argv, err)
    with pytest.raises(SystemExit) as bad_syntax:  # argparse: usage error, exit 2
        run(capsys, "vlib", "add", "B", "--drives", "x", "--slots", "1", *at)
    assert bad_syntax.value.code == 2
    assert snapshot(lib) == before
    assert run(capsys, "vlib", "rm", "A", *at)[0] == 0
    assert run(capsys, "group", "rm", "G1", *at)[0] == 0
    assert run(capsys, "group", "list", *at)[1] == "no library groups\n"
    assert_idle(lib)


# --- virtual library addresses ---------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "embedded:/srv/vtl?vlib=A",
        "iscsi://127.0.0.1:3261/iqn.2026-11.io.tapeflow:lib/3?drives=1,2&vlib=weekly-2",
        "iscsi://h:3260/iqn.x:lib/0?name=big&vlib=B",
        "sg:/dev/sg5?drives=/dev/sg3,/dev/sg4&vlib=C_1",
    ],
)
def test_virtual_library_addresses_round_trip(address: str) -> None:
    spec = LibrarySpec.parse(address)
    assert spec.vlib and LibrarySpec.parse(str(spec)) == spec
    assert spec.tag_name == f"{spec.name}:{spec.vlib}"
    physical = spec.with_vlib(None)
    assert physical.vlib is None and physical.state_dir() == spec.state_dir()


@pytest.mark.parametrize(
    "bad",
    ["embedded:/srv/vtl?vlib=", "embedded:/srv/vtl?vlib=a/b", "embedded:/srv/vtl?x=1",
     f"iscsi://h/iqn.x:lib/0?vlib={'x' * 17}", "sg:/dev/sg5?drives=/dev/sg3&vlib=a b"],
)  # fmt: skip
def test_bad_virtual_library_addresses(bad: str) -> None:
    with pytest.raises(BadLibrarySpec):
        LibrarySpec.parse(bad)
