"""Library groups: named slot ranges (1-8 characters) a job's pool can be limited to.

Kept in `groups.json` in the library's state dir (shared by its virtual libraries). Ranges never
overlap, so a cartridge's slot names at most one group; a backup whose pool names a group only
loads cartridges from that group's slots, spanning included. Every change is validated before
the file is replaced: a refused change leaves everything as it was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapeflow.library.errors import (
    CorruptState,
    GroupExists,
    GroupOverlap,
    NotInPartition,
    SlotOutOfRange,
    UnknownGroup,
)
from tapeflow.library.statefile import check_name, locked, read_json, write_json

if TYPE_CHECKING:
    from tapeflow.library.library import Library

GROUP_NAME_MAX = 8
STATE_FILE = "groups.json"


@dataclass(frozen=True)
class Group:
    """Slots `first`..`last` (1-based, inclusive, physical numbers) under one name."""

    name: str
    first: int
    last: int

    def __contains__(self, slot: object) -> bool:
        return isinstance(slot, int) and self.first <= slot <= self.last

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, name: str, data: Any) -> Group:
        """Inverse of to_dict (the name is the file's key); CorruptState on nonsense."""
        try:
            return cls(name, int(data["first"]), int(data["last"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptState(f"library group {name!r}: bad entry {data!r}") from exc


def _path(state_dir: Path) -> Path:
    """The groups file of a library."""
    return state_dir / STATE_FILE


def load_groups(state_dir: Path) -> dict[str, Group]:
    """Every group of the library whose state dir this is, by name."""
    raw = read_json(_path(state_dir))
    return {name: Group.from_dict(name, data) for name, data in sorted(raw.items())}


def get_group(state_dir: Path, name: str) -> Group:
    """Group `name`; UnknownGroup when there is none."""
    found = load_groups(state_dir).get(name)
    if found is None:
        raise UnknownGroup(f"no library group {name!r}")
    return found


def group_of(groups: dict[str, Group], slot: int) -> str | None:
    """The name of the group holding `slot`, if any."""
    return next((g.name for g in groups.values() if slot in g), None)


def list_groups(lib: Library) -> list[Group]:
    """The groups of `lib` (a virtual library lists those inside its slots)."""
    groups = load_groups(lib.state_dir)
    part = lib.partition()
    if part is None:
        return list(groups.values())
    inside = set(part.slots)
    return [g for g in groups.values() if set(range(g.first, g.last + 1)) <= inside]


def create_group(lib: Library, name: str, first: int, last: int) -> Group:
    """Add group `name` = slots first..last; refused with nothing changed when the name is bad
    or taken, the range is empty or leaves the library (or its vlib), or overlaps a group."""
    check_name("library group", name, GROUP_NAME_MAX)
    if first > last:
        raise SlotOutOfRange(f"group {name!r}: first slot {first} is after last slot {last}")
    count = len(lib.physical_inventory().slots)
    for slot in (first, last):
        if not 1 <= slot <= count:
            raise SlotOutOfRange(f"group {name!r}: slot {slot} is out of range 1..{count}")
    part = lib.partition()
    if part is not None:
        outside = sorted(set(range(first, last + 1)) - set(part.slots))
        if outside:
            raise NotInPartition(
                f"group {name!r}: slot {outside[0]} is not in virtual library {part.name!r}"
            )
    wanted = Group(name, first, last)
    with locked(_path(lib.state_dir)):
        groups = load_groups(lib.state_dir)
        if name in groups:
            old = groups[name]
            raise GroupExists(
                f"library group {name!r} already exists (slots {old.first}-{old.last})"
            )
        for other in groups.values():
            if first <= other.last and other.first <= last:
                raise GroupOverlap(
                    f"slots {first}-{last} overlap group {other.name!r} "
                    f"(slots {other.first}-{other.last})"
                )
        groups[name] = wanted
        write_json(_path(lib.state_dir), {n: g.to_dict() for n, g in groups.items()})
    return wanted


def delete_group(lib: Library, name: str) -> Group:
    """Remove group `name` (its cartridges stay where they are); UnknownGroup if absent."""
    with locked(_path(lib.state_dir)):
        groups = load_groups(lib.state_dir)
        if name not in groups:
            raise UnknownGroup(f"no library group {name!r}")
        gone = groups.pop(name)
        part = lib.partition()
        if part is not None and not set(range(gone.first, gone.last + 1)) <= set(part.slots):
            raise NotInPartition(f"group {name!r} is not in virtual library {part.name!r}")
        write_json(_path(lib.state_dir), {n: g.to_dict() for n, g in groups.items()})
    return gone
