"""Fast packers derived from construct declarations, for the per-block hot path.

construct stays the single declaration of every binary layout; a `struct.Struct` with the exact
same bytes is derived from it (checked against construct's own size) because building a record
with construct costs microseconds and the write path runs thousands of times per second.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

from construct import Bytes, Construct, FormatField, Padded, Pass, Renamed, Struct


def _field_format(con: Construct) -> str:
    """struct format (no byte-order prefix) of one little-endian, fixed-size construct field."""
    if isinstance(con, Renamed):
        return _field_format(con.subcon)
    if isinstance(con, FormatField):
        if con.fmtstr[0] != "<":
            raise TypeError(f"only little-endian fields can be derived, got {con.fmtstr!r}")
        return con.fmtstr[1:]
    if isinstance(con, Padded) and con.subcon is Pass and isinstance(con.length, int):
        return f"{con.length}x"
    if isinstance(con, Bytes) and isinstance(con.length, int):
        return f"{con.length}s"
    raise TypeError(f"cannot derive a struct format from {con!r}")


def derive_struct(layout: Struct) -> struct.Struct:
    """The `struct.Struct` whose bytes equal `layout`'s (little-endian fixed-size fields only)."""
    packer = struct.Struct("<" + "".join(_field_format(sc) for sc in layout.subcons))
    if packer.size != layout.sizeof():
        raise TypeError(f"derived size {packer.size} != construct size {layout.sizeof()}")
    return packer


class MappedRecord:
    """Named field access to a construct-declared record living in a shared mmap."""

    def __init__(self, layout: Struct, buffer: mmap.mmap) -> None:
        derive_struct(layout)  # validates that every field is fixed-size and derivable
        self._buffer = buffer
        self._fields: dict[str, tuple[int, struct.Struct]] = {}
        offset = 0
        for sc in layout.subcons:
            field = struct.Struct("<" + _field_format(sc))
            if sc.name:
                self._fields[sc.name] = (offset, field)
            offset += field.size

    def get(self, name: str) -> Any:
        """Current value of field `name` (bytes fields come back as bytes)."""
        offset, field = self._fields[name]
        return field.unpack_from(self._buffer, offset)[0]

    def set(self, name: str, value: Any) -> None:
        """Store `value` into field `name`, visible at once to every process mapping the file."""
        offset, field = self._fields[name]
        field.pack_into(self._buffer, offset, value)
