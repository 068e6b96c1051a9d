"""NTFS on-disk layouts, declared once with construct, plus the fast readers derived from them.

Each fixed-size layout below is a construct `Struct`; `fast()` turns it into a `struct.Struct`
with the same fields in the same order, which the hot loops (100,000s of MFT records and index
entries) use through `unpack_from`. Tests check both readers agree on random bytes and that every
layout round-trips (build -> parse). Variable parts (runlists, the update sequence array, names)
have a construct declaration too and a hand-written decoder checked against it.

References: the NTFS layout as documented by the Linux ntfs driver (layout.h) and ntfs-3g.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

from construct import (
    Array,
    BitStruct,
    Bytes,
    BytesInteger,
    Const,
    Construct,
    FormatField,
    GreedyBytes,
    If,
    Int8sl,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64sl,
    Int64ul,
    Nibble,
    Padded,
    Padding,
    Renamed,
    RepeatUntil,
    Struct,
    this,
)

from .errors import CorruptStructure

# --- constants ------------------------------------------------------------------------------

UPDATE_SEQUENCE_STRIDE = 512  # fixups protect the last 2 bytes of every 512, whatever the sector
REF_MASK = (1 << 48) - 1  # an MFT reference: record number (48 bits) + sequence number (16 bits)
MAX_VCN = 1 << 32  # Windows caps a volume (and so a file) at 2^32 clusters; larger is damage

AT_STANDARD_INFORMATION = 0x10
AT_ATTRIBUTE_LIST = 0x20
AT_FILE_NAME = 0x30
AT_VOLUME_NAME = 0x60
AT_DATA = 0x80
AT_INDEX_ROOT = 0x90
AT_INDEX_ALLOCATION = 0xA0
AT_BITMAP = 0xB0
AT_END = 0xFFFFFFFF

RECORD_IN_USE = 0x0001
RECORD_IS_DIRECTORY = 0x0002

ATTR_COMPRESSED = 0x0001
ATTR_ENCRYPTED = 0x4000
ATTR_SPARSE = 0x8000

INDEX_ENTRY_NODE = 0x01  # the entry ends with the VCN of a child index block
INDEX_ENTRY_END = 0x02  # last entry of a node; carries no key

NAMESPACE_POSIX, NAMESPACE_WIN32, NAMESPACE_DOS, NAMESPACE_WIN32_AND_DOS = 0, 1, 2, 3

ROOT_RECORD = 5
FIRST_USER_RECORD = 16  # records 0-15 are the fixed metafiles ($MFT ... $Extend, reserved)

# --- layouts --------------------------------------------------------------------------------

BOOT_SECTOR = Struct(
    "jump" / Bytes(3),
    "oem_id" / Bytes(8),  # b"NTFS    "
    "bytes_per_sector" / Int16ul,
    "sectors_per_cluster" / Int8ul,  # > 0x80: the cluster is 2^(256 - value) sectors
    "reserved_sectors" / Int16ul,
    "fats" / Int8ul,
    "root_entries" / Int16ul,
    "sectors16" / Int16ul,
    "media_descriptor" / Int8ul,
    "sectors_per_fat" / Int16ul,
    "sectors_per_track" / Int16ul,
    "heads" / Int16ul,
    "hidden_sectors" / Int32ul,
    "sectors32" / Int32ul,
    "drive_info" / Int32ul,  # 0x80 0x00 0x80 0x00 on real volumes
    "total_sectors" / Int64ul,
    "mft_lcn" / Int64ul,
    "mftmirr_lcn" / Int64ul,
    "clusters_per_mft_record" / Int8sl,  # < 0: a record is 2^-value bytes
    Padding(3),
    "clusters_per_index_record" / Int8sl,
    Padding(3),
    "serial" / Int64ul,
    "checksum" / Int32ul,
    "bootstrap" / Bytes(426),
    "signature" / Int16ul,  # 0xAA55
)

FILE_RECORD_HEADER = Struct(
    "magic" / Const(b"FILE"),
    "usa_offset" / Int16ul,
    "usa_count" / Int16ul,  # 1 + number of 512-byte strides
    "lsn" / Int64ul,
    "sequence" / Int16ul,
    "link_count" / Int16ul,
    "attrs_offset" / Int16ul,
    "flags" / Int16ul,  # RECORD_IN_USE | RECORD_IS_DIRECTORY
    "bytes_in_use" / Int32ul,
    "bytes_allocated" / Int32ul,
    "base_record" / Int64ul,  # 0 for a base record, else the base's MFT reference
    "next_attr_instance" / Int16ul,
    Padding(2),
    "record_number" / Int32ul,  # NTFS 3.1+
)

# parsed with context `count` (the header's usa_count)
UPDATE_SEQUENCE_ARRAY = Struct(
    "usn" / Int16ul,
    "saved" / Array(this._.count - 1, Int16ul),
)

ATTR_HEADER = Struct(
    "type" / Int32ul,
    "length" / Int32ul,
    "non_resident" / Int8ul,
    "name_length" / Int8ul,  # UTF-16 code units
    "name_offset" / Int16ul,
    "flags" / Int16ul,  # ATTR_COMPRESSED | ATTR_ENCRYPTED | ATTR_SPARSE
    "instance" / Int16ul,
)

RESIDENT_TAIL = Struct(  # follows ATTR_HEADER in a resident attribute
    "value_length" / Int32ul,
    "value_offset" / Int16ul,
    "resident_flags" / Int8ul,
    Padding(1),
)
RESIDENT_ATTR_HEADER = Struct(*ATTR_HEADER.subcons, *RESIDENT_TAIL.subcons)

NONRESIDENT_TAIL = Struct(  # follows ATTR_HEADER in a non-resident attribute
    "lowest_vcn" / Int64sl,
    "highest_vcn" / Int64sl,
    "mapping_pairs_offset" / Int16ul,
    "compression_unit" / Int8ul,  # log2 of clusters per compression unit; 0 = not compressed
    Padding(5),
    "allocated_size" / Int64sl,  # the next three are valid in the lowest_vcn == 0 fragment
    "data_size" / Int64sl,
    "initialized_size" / Int64sl,
)
NONRESIDENT_ATTR_HEADER = Struct(*ATTR_HEADER.subcons, *NONRESIDENT_TAIL.subcons)

STANDARD_INFORMATION = Struct(  # NTFS 3.x appends owner/security ids, quota, usn (72 bytes)
    "creation_time" / Int64ul,  # FILETIME: 100 ns since 1601-01-01 UTC
    "modification_time" / Int64ul,
    "mft_change_time" / Int64ul,
    "access_time" / Int64ul,
    "file_attributes" / Int32ul,
    "max_versions" / Int32ul,
    "version" / Int32ul,
    "class_id" / Int32ul,
)

FILE_NAME = Struct(
    "parent_ref" / Int64ul,
    "creation_time" / Int64ul,
    "modification_time" / Int64ul,
    "mft_change_time" / Int64ul,
    "access_time" / Int64ul,
    "allocated_size" / Int64sl,
    "data_size" / Int64sl,
    "file_attributes" / Int32ul,
    "reparse_or_ea" / Int32ul,
    "name_length" / Int8ul,
    "namespace" / Int8ul,  # NAMESPACE_*
)
FILE_NAME_WITH_NAME = Struct(*FILE_NAME.subcons, "name" / Bytes(this.name_length * 2))

ATTRIBUTE_LIST_ENTRY = Struct(
    "type" / Int32ul,
    "length" / Int16ul,
    "name_length" / Int8ul,
    "name_offset" / Int8ul,
    "lowest_vcn" / Int64sl,
    "mft_reference" / Int64ul,
    "instance" / Int16ul,
)

INDEX_ROOT = Struct(
    "indexed_type" / Int32ul,  # AT_FILE_NAME for directories ($I30)
    "collation_rule" / Int32ul,
    "index_block_size" / Int32ul,
    "clusters_per_index_block" / Int8sl,
    Padding(3),
)

INDEX_HEADER = Struct(  # offsets relative to the start of this header
    "entries_offset" / Int32ul,
    "index_length" / Int32ul,
    "allocated_size" / Int32ul,
    "flags" / Int8ul,  # 1: the root has child blocks in $INDEX_ALLOCATION
    Padding(3),
)

INDEX_BLOCK_HEADER = Struct(  # an INDX record; its INDEX_HEADER follows at offset 24
    "magic" / Const(b"INDX"),
    "usa_offset" / Int16ul,
    "usa_count" / Int16ul,
    "lsn" / Int64ul,
    "index_block_vcn" / Int64sl,
)

INDEX_ENTRY_HEADER = Struct(
    "file_reference" / Int64ul,
    "length" / Int16ul,
    "key_length" / Int16ul,
    "flags" / Int16ul,  # INDEX_ENTRY_NODE | INDEX_ENTRY_END
    Padding(2),
)

# A runlist ("mapping pairs"): header byte = offset size (high nibble) | length size (low
# nibble), then the run length, then the signed LCN delta from the previous run (absent for a
# sparse run); a 0 header byte ends it.
MAPPING_PAIR = Struct(
    "sizes" / BitStruct("offset_size" / Nibble, "length_size" / Nibble),
    "length" / If(this.sizes.length_size > 0, BytesInteger(this.sizes.length_size, swapped=True)),
    "delta"
    / If(
        this.sizes.offset_size > 0,
        BytesInteger(this.sizes.offset_size, signed=True, swapped=True),
    ),
)
MAPPING_PAIRS = RepeatUntil(lambda obj, lst, ctx: obj.sizes.length_size == 0, MAPPING_PAIR)

VOLUME_NAME = GreedyBytes  # UTF-16LE label, the whole resident value
BITMAP = GreedyBytes  # $Bitmap / $BITMAP: bit i (LSB first in each byte) = cluster/record i


# --- fast readers ---------------------------------------------------------------------------


class FastStruct(struct.Struct):
    """A `struct.Struct` derived from a fixed-size construct Struct; `names` lists its fields."""

    names: tuple[str, ...]


def fast(layout: Struct) -> FastStruct:
    """Derive a little-endian struct reader with the same named fields as `layout`."""
    fmt = ["<"]
    names: list[str] = []
    for sub in layout.subcons:
        if isinstance(sub, Padded):
            fmt.append(f"{sub.length}x")
            continue
        if not isinstance(sub, Renamed):
            raise TypeError(f"unsupported field {sub!r}")
        inner: Construct = sub.subcon
        if isinstance(inner, Const):
            inner = inner.subcon
        if isinstance(inner, FormatField):
            fmt.append(inner.fmtstr[1:])
        elif isinstance(inner, Bytes) and isinstance(inner.length, int):
            fmt.append(f"{inner.length}s")
        else:
            raise TypeError(f"field {sub.name} has no fixed struct format")
        names.append(sub.name)
    out = FastStruct("".join(fmt))
    out.names = tuple(names)
    if out.size != layout.sizeof():
        raise TypeError("derived struct size differs from the construct layout")
    return out


BOOT = fast(BOOT_SECTOR)
FILE_HDR = fast(FILE_RECORD_HEADER)
ATTR = fast(ATTR_HEADER)
RES_ATTR = fast(RESIDENT_ATTR_HEADER)
RES_TAIL = fast(RESIDENT_TAIL)
NONRES_ATTR = fast(NONRESIDENT_ATTR_HEADER)
NONRES_TAIL = fast(NONRESIDENT_TAIL)
STD_INFO = fast(STANDARD_INFORMATION)
FNAME = fast(FILE_NAME)
ALIST_ENTRY = fast(ATTRIBUTE_LIST_ENTRY)
IROOT = fast(INDEX_ROOT)
IHDR = fast(INDEX_HEADER)
IBLOCK = fast(INDEX_BLOCK_HEADER)
IENTRY = fast(INDEX_ENTRY_HEADER)
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


# --- update sequence array ------------------------------------------------------------------


def apply_fixups(buf: bytearray, off: int, size: int, usa_offset: int, usa_count: int) -> bool:
    """Undo the update sequence protection of the `size`-byte structure at `buf[off:]` in place.
    False when the array is malformed or a stride's tail does not carry the update sequence
    number (a torn or damaged write)."""
    if (
        usa_count != size // UPDATE_SEQUENCE_STRIDE + 1
        or size % UPDATE_SEQUENCE_STRIDE
        or usa_offset & 1
        or usa_offset < 8
        or usa_offset + 2 * usa_count > UPDATE_SEQUENCE_STRIDE - 2
    ):
        return False
    u = off + usa_offset
    usn = buf[u : u + 2]
    tail = off + UPDATE_SEQUENCE_STRIDE - 2
    for saved in range(u + 2, u + 2 * usa_count, 2):
        if buf[tail : tail + 2] != usn:
            return False
        buf[tail : tail + 2] = buf[saved : saved + 2]
        tail += UPDATE_SEQUENCE_STRIDE
    return True


# --- runlists -------------------------------------------------------------------------------

Run = tuple[int, int | None, int]  # (vcn, lcn or None when sparse, length in clusters)


def decode_runlist(
    buf: bytes | bytearray, pos: int, end: int, lowest_vcn: int, total_clusters: int
) -> list[Run]:
    """Decode the mapping pairs in `buf[pos:end]` into runs starting at `lowest_vcn`; every
    real run must lie inside the volume's `total_clusters`."""
    runs: list[Run] = []
    vcn = lowest_vcn
    lcn = 0
    while True:  # each pass consumes >= 2 bytes of the bounded slice
        if pos >= end:
            raise CorruptStructure("runlist runs past the end of its attribute")
        h = buf[pos]
        if h == 0:
            if len(runs) > 1:
                check_no_overlap(runs)
            return runs
        lsize = h & 0x0F
        osize = h >> 4
        if lsize == 0 or lsize > 8 or osize > 8:
            raise CorruptStructure(f"runlist has a bad header byte {h:#04x}")
        p = pos + 1
        pos = p + lsize + osize
        if pos > end:
            raise CorruptStructure("runlist runs past the end of its attribute")
        length = int.from_bytes(buf[p : p + lsize], "little", signed=True)
        if length <= 0:
            raise CorruptStructure(f"runlist has a run of {length} clusters")
        if osize:
            lcn += int.from_bytes(buf[p + lsize : pos], "little", signed=True)
            if lcn < 0 or lcn + length > total_clusters:
                raise CorruptStructure(
                    f"runlist maps clusters {lcn}..{lcn + length - 1}, past the volume's "
                    f"{total_clusters} clusters"
                )
            runs.append((vcn, lcn, length))
        else:
            runs.append((vcn, None, length))
        vcn += length
        if vcn > MAX_VCN:
            raise CorruptStructure("runlist maps more than 2^32 clusters")


def check_no_overlap(runs: list[Run]) -> None:
    """Raise when two real runs of one attribute share a cluster (a looping runlist)."""
    real = sorted((lcn, n) for _v, lcn, n in runs if lcn is not None)
    for (a, an), (b, _bn) in zip(real, real[1:], strict=False):
        if b < a + an:
            raise CorruptStructure(f"runlist maps cluster {b} twice")


def _signed_bytes(value: int) -> bytes:
    """Shortest little-endian two's complement encoding of `value` (at least one byte)."""
    n = 1
    while not -(1 << (8 * n - 1)) <= value < (1 << (8 * n - 1)):
        n += 1
    return value.to_bytes(n, "little", signed=True)


def encode_runlist(runs: list[Run]) -> bytes:
    """Encode runs (as `decode_runlist` returns them) into mapping pairs, shortest form."""
    out = bytearray()
    prev = 0
    for _vcn, lcn, length in runs:
        lb = _signed_bytes(length)
        if lcn is None:
            ob = b""
        else:
            ob = _signed_bytes(lcn - prev)
            prev = lcn
        out.append((len(ob) << 4) | len(lb))
        out += lb + ob
    out.append(0)
    return bytes(out)


# --- times ----------------------------------------------------------------------------------

_EPOCH_1601 = datetime(1601, 1, 1, tzinfo=UTC)
_MAX_FILETIME = (
    (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH_1601) // timedelta(microseconds=1) * 10
)


def filetime(value: int) -> datetime | None:
    """A FILETIME (100 ns ticks since 1601-01-01 UTC) as a UTC datetime (microseconds); None
    for 0 (never set) and for values past year 9999, which datetime cannot hold."""
    if 0 < value <= _MAX_FILETIME:
        return _EPOCH_1601 + timedelta(microseconds=value // 10)
    return None


def entry_times(
    times: tuple[int, int, int, int],
) -> tuple[datetime | None, datetime | None, datetime | None, datetime | None]:
    """$STANDARD_INFORMATION's (creation, modification, MFT change, access) FILETIMEs as
    FsEntry's (mtime, atime, ctime, crtime), converting equal values once (they often are)."""
    c, m, ch, a = times
    crtime = filetime(c)
    mtime = crtime if m == c else filetime(m)
    ctime = mtime if ch == m else crtime if ch == c else filetime(ch)
    atime = crtime if a == c else mtime if a == m else ctime if a == ch else filetime(a)
    return mtime, atime, ctime, crtime


def utf16(raw: bytes | bytearray) -> str:
    """Decode an NTFS name; unpaired surrogates (legal on disk) become U+FFFD."""
    return bytes(raw).decode("utf-16-le", "replace")
