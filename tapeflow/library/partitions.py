"""Virtual libraries: one physical library's drives and slots split into named logical libraries.

Each virtual library owns >= 1 drive and >= 1 storage slot; a drive or slot belongs to at most
one. They are kept in `vlibs.json` in the physical library's state dir. A virtual library is
addressed as the physical address plus `?vlib=NAME` (see LibrarySpec); Library then shows and
uses only its drives and slots (physical numbers kept), and its drive tag is
`tape-drive:<physical>:<NAME>` (Prefect bans "/" in limit names). Mail slots are shared.
Every change is validated completely before the file is replaced, so a refused change leaves
everything as it was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapeflow.library.errors import (
    CorruptState,
    DriveOutOfRange,
    EmptyPartition,
    LibraryError,
    PartitionBusy,
    PartitionExists,
    PartitionOverlap,
    SlotOutOfRange,
    UnknownPartition,
)
from tapeflow.library.leases import LeaseBoard
from tapeflow.library.spec import VLIB_NAME_MAX
from tapeflow.library.statefile import check_name, locked, read_json, write_json

if TYPE_CHECKING:
    from tapeflow.library.library import Library

STATE_FILE = "vlibs.json"


@dataclass(frozen=True)
class Partition:
    """One virtual library: its drives (0-based) and storage slots (1-based), physical numbers."""

    name: str
    drives: tuple[int, ...]
    slots: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "drives": list(self.drives), "slots": list(self.slots)}

    @classmethod
    def from_dict(cls, name: str, data: Any) -> Partition:
        """Inverse of to_dict (the name is the file's key); CorruptState on nonsense."""
        try:
            drives = tuple(sorted(int(d) for d in data["drives"]))
            slots = tuple(sorted(int(s) for s in data["slots"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptState(f"virtual library {name!r}: bad entry {data!r}") from exc
        return cls(name, drives, slots)


def _path(state_dir: Path) -> Path:
    """The virtual libraries file of a physical library."""
    return state_dir / STATE_FILE


def load_partitions(state_dir: Path) -> dict[str, Partition]:
    """Every virtual library of the physical library whose state dir this is, by name."""
    raw = read_json(_path(state_dir))
    return {name: Partition.from_dict(name, data) for name, data in sorted(raw.items())}


def get_partition(state_dir: Path, name: str) -> Partition:
    """The virtual library `name`; UnknownPartition when there is none."""
    found = load_partitions(state_dir).get(name)
    if found is None:
        raise UnknownPartition(f"no virtual library {name!r} in this library")
    return found


def _physical(lib: Library) -> None:
    """Refuse managing virtual libraries through a virtual library's address."""
    if lib.spec.vlib is not None:
        raise LibraryError(
            f"virtual libraries are managed on the physical library, not on vlib {lib.spec.vlib!r}"
        )


def list_partitions(lib: Library) -> list[Partition]:
    """The virtual libraries of `lib` (a virtual library address lists only itself)."""
    parts = load_partitions(lib.state_dir)
    if lib.spec.vlib is not None:
        return [get_partition(lib.state_dir, lib.spec.vlib)]
    return list(parts.values())


def create_partition(
    lib: Library, name: str, drives: Iterable[int], slots: Iterable[int]
) -> Partition:
    """Add virtual library `name` owning `drives` and `slots`; refused with nothing changed when
    the name is taken or bad, a set is empty, a number is outside the library, or a drive/slot
    already belongs to another virtual library."""
    _physical(lib)
    check_name("virtual library", name, VLIB_NAME_MAX)
    wanted = Partition(name, tuple(sorted(set(drives))), tuple(sorted(set(slots))))
    if not wanted.drives:
        raise EmptyPartition(f"virtual library {name!r} needs at least one drive")
    if not wanted.slots:
        raise EmptyPartition(f"virtual library {name!r} needs at least one slot")
    inv = lib.physical_inventory()
    bad_drives = [d for d in wanted.drives if not 0 <= d < len(inv.drives)]
    if bad_drives:
        raise DriveOutOfRange(
            f"drive(s) {bad_drives} out of range 0..{len(inv.drives) - 1} "
            f"for virtual library {name!r}"
        )
    bad_slots = [s for s in wanted.slots if not 1 <= s <= len(inv.slots)]
    if bad_slots:
        raise SlotOutOfRange(
            f"slot(s) {format_numbers(bad_slots)} out of range 1..{len(inv.slots)} "
            f"for virtual library {name!r}"
        )
    with locked(_path(lib.state_dir)):
        parts = load_partitions(lib.state_dir)
        if name in parts:
            raise PartitionExists(f"virtual library {name!r} already exists")
        for other in parts.values():
            shared_drives = sorted(set(wanted.drives) & set(other.drives))
            if shared_drives:
                raise PartitionOverlap(
                    f"drive(s) {shared_drives} already belong to virtual library {other.name!r}"
                )
            shared_slots = sorted(set(wanted.slots) & set(other.slots))
            if shared_slots:
                raise PartitionOverlap(
                    f"slot(s) {format_numbers(shared_slots)} already belong to virtual library "
                    f"{other.name!r}"
                )
        parts[name] = wanted
        write_json(_path(lib.state_dir), {n: p.to_dict() for n, p in parts.items()})
    return wanted


def delete_partition(lib: Library, name: str) -> Partition:
    """Remove virtual library `name` (its drives and slots return to the physical library);
    refused while a job holds one of its drives."""
    _physical(lib)
    board = LeaseBoard(lib.state_dir)
    with locked(_path(lib.state_dir)):
        parts = load_partitions(lib.state_dir)
        if name not in parts:
            raise UnknownPartition(f"no virtual library {name!r} in this library")
        gone = parts.pop(name)
        held = []
        try:
            for drive in gone.drives:
                lease = board.try_drive([drive], f"delete vlib {name}")
                if lease is None:
                    raise PartitionBusy(
                        f"virtual library {name!r}: drive {drive} is in use by a job; "
                        "try again when it is idle"
                    )
                held.append(lease)
            write_json(_path(lib.state_dir), {n: p.to_dict() for n, p in parts.items()})
        finally:
            for lease in held:
                lease.release()
    return gone


def format_numbers(numbers: Iterable[int]) -> str:
    """Slot or drive numbers as compact ranges: 1,2,3,7 -> '1-3,7'."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def parse_numbers(text: str) -> list[int]:
    """'0,1' or '1-12,15' -> sorted distinct numbers; ValueError on anything else."""
    numbers: set[int] = set()
    for part in text.replace(" ", "").split(","):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{text!r}: want numbers and ranges like 0,1 or 1-12,15")
        low, high = int(first), int(last) if dash else int(first)
        if low > high:
            raise ValueError(f"{text!r}: range {part} runs backwards")
        numbers.update(range(low, high + 1))
    return sorted(numbers)
