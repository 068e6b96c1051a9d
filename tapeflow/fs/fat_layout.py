"""On-disk layout of FAT12/16/32 (Microsoft FAT specification 1.03) declared with construct,
plus the decoders the FAT parser shares: DOS timestamps, 8.3 and VFAT long names.

The construct structs are the single declaration of every layout. Hot loops (directory
slots, thousands per second) use `struct` formats *derived from* those declarations by
`fast_format`, so the two can never disagree."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from construct import Bytes, FormatField, Int8ul, Int16ul, Int32ul, Renamed, Struct

SECTOR_MIN = 512
SECTOR_MAX = 4096
SIGNATURE = b"\x55\xaa"  # bytes 510-511 of the boot sector

# BIOS parameter block common to FAT12/16/32 (offsets 0-35).
BPB = Struct(
    "jump" / Bytes(3),
    "oem_name" / Bytes(8),
    "bytes_per_sector" / Int16ul,
    "sectors_per_cluster" / Int8ul,
    "reserved_sectors" / Int16ul,
    "num_fats" / Int8ul,
    "root_entries" / Int16ul,
    "total_sectors_16" / Int16ul,
    "media" / Int8ul,
    "fat_size_16" / Int16ul,
    "sectors_per_track" / Int16ul,
    "num_heads" / Int16ul,
    "hidden_sectors" / Int32ul,
    "total_sectors_32" / Int32ul,
)

# Extended boot record tail: at offset 36 on FAT12/16, at offset 64 on FAT32.
EBPB = Struct(
    "drive_number" / Int8ul,
    "reserved1" / Int8ul,
    "boot_signature" / Int8ul,  # 0x29: the three fields below are present
    "volume_id" / Int32ul,
    "volume_label" / Bytes(11),
    "fs_type" / Bytes(8),
)

# FAT32-only fields at offset 36, before the EBPB tail.
FAT32_BPB = Struct(
    "fat_size_32" / Int32ul,
    "ext_flags" / Int16ul,  # bit 7: only one FAT active; bits 0-3: which one
    "fs_version" / Int16ul,
    "root_cluster" / Int32ul,
    "fs_info_sector" / Int16ul,
    "backup_boot_sector" / Int16ul,
    "reserved" / Bytes(12),
)

# FAT32 FSInfo sector (at BPB fs_info_sector): free-cluster hints only, never trusted by the
# parser (it walks the FAT), but declared for tools and tests that read or reset the hints.
FSINFO = Struct(
    "lead_signature" / Int32ul,  # 0x41615252
    "reserved1" / Bytes(480),
    "struct_signature" / Int32ul,  # 0x61417272
    "free_count" / Int32ul,  # 0xFFFFFFFF: unknown
    "next_free" / Int32ul,  # 0xFFFFFFFF: unknown, allocators start from cluster 2
    "reserved2" / Bytes(12),
    "trail_signature" / Int32ul,  # 0xAA550000
)
FSINFO_LEAD = 0x41615252
FSINFO_STRUCT = 0x61417272
FSINFO_TRAIL = 0xAA550000

BOOT_SECTOR_16 = Struct("bpb" / BPB, "ebpb" / EBPB)  # 62 bytes
BOOT_SECTOR_32 = Struct("bpb" / BPB, "fat32" / FAT32_BPB, "ebpb" / EBPB)  # 90 bytes

# 32-byte short (8.3) directory entry.
DIR_ENTRY = Struct(
    "name" / Bytes(8),
    "ext" / Bytes(3),
    "attr" / Int8ul,
    "nt_flags" / Int8ul,  # 0x08: base name shown lower case, 0x10: extension lower case
    "create_tenths" / Int8ul,  # 10 ms units, 0-199
    "create_time" / Int16ul,
    "create_date" / Int16ul,
    "access_date" / Int16ul,
    "cluster_high" / Int16ul,  # FAT32 only
    "write_time" / Int16ul,
    "write_date" / Int16ul,
    "cluster_low" / Int16ul,
    "size" / Int32ul,
)

# 32-byte VFAT long-file-name entry: 13 UTF-16LE code units in three pieces.
LFN_ENTRY = Struct(
    "seq" / Int8ul,  # 1-20, 0x40 on the last (physically first) entry
    "name1" / Bytes(10),
    "attr" / Int8ul,  # always 0x0F
    "type" / Int8ul,
    "checksum" / Int8ul,  # of the 11-byte short name it belongs to
    "name2" / Bytes(12),
    "first_cluster" / Int16ul,  # always 0
    "name3" / Bytes(4),
)

DIR_ENTRY_SIZE = 32
ATTR_READ_ONLY = 0x01
ATTR_HIDDEN = 0x02
ATTR_SYSTEM = 0x04
ATTR_VOLUME_ID = 0x08
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_LFN = 0x0F
NT_LOWER_BASE = 0x08
NT_LOWER_EXT = 0x10
SLOT_FREE = 0xE5
SLOT_END = 0x00
SLOT_KANJI_E5 = 0x05  # first name byte 0x05 stands for a real 0xE5
LFN_LAST = 0x40
LFN_SEQ_MASK = 0x1F
LFN_MAX_SLOTS = 20  # 255 UTF-16 units / 13 per slot


def fast_format(declaration: Struct) -> str:
    """`struct` format string with the exact layout of a flat construct Struct of Bytes and
    fixed-width integers (little endian); the hot loops unpack with it."""
    parts = ["<"]
    for sub in declaration.subcons:
        inner = sub.subcon if isinstance(sub, Renamed) else sub
        if isinstance(inner, FormatField):
            if inner.fmtstr[0] != "<":
                raise TypeError(f"{sub.name}: only little-endian fields are supported")
            parts.append(inner.fmtstr[1:])
        elif isinstance(inner, Bytes) and isinstance(inner.length, int):
            parts.append(f"{inner.length}s")
        else:
            raise TypeError(f"{getattr(sub, 'name', sub)}: not a fixed-width field")
    fmt = "".join(parts)
    if struct.calcsize(fmt) != declaration.sizeof():
        raise TypeError(f"derived format {fmt} does not match the declared size")
    return fmt


DIR_ENTRY_FAST = struct.Struct(fast_format(DIR_ENTRY))
LFN_ENTRY_FAST = struct.Struct(fast_format(LFN_ENTRY))
assert DIR_ENTRY_FAST.size == LFN_ENTRY_FAST.size == DIR_ENTRY_SIZE

_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def dos_datetime(date: int, time: int = 0, tenths: int = 0) -> datetime | None:
    """A FAT date/time (local time with no zone) as a UTC-aware datetime, as TSK shows it with
    `-z UTC`; None when the date is unset (0) or not a real date/time."""
    if date == 0:
        return None
    day = date & 0x1F
    month = (date >> 5) & 0x0F
    if month == 0 or month > 12 or day == 0 or day > _DAYS[month]:
        return None
    second = (time & 0x1F) * 2
    minute = (time >> 5) & 0x3F
    hour = time >> 11
    if second > 58 or minute > 59 or hour > 23 or tenths > 199:
        return None
    second += tenths // 100
    try:
        return datetime(
            1980 + (date >> 9), month, day, hour, minute, second, (tenths % 100) * 10000, UTC
        )
    except ValueError:  # 29 February of a non-leap year
        return None


def lfn_checksum(short_name: bytes) -> int:
    """Checksum of the 11-byte short name that every LFN slot of the same file carries."""
    total = 0
    for byte in short_name:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


# Control characters and '/' cannot stand in a '/'-separated path: TSK prints them as '^'.
_UNSAFE = {c: "^" for c in range(0x20)} | {ord("/"): "^", 0x7F: "^"}


def safe_name(text: str) -> str:
    """`text` with control characters, DEL and '/' replaced by '^' (fast when there are none)."""
    if "/" in text or not text.isprintable():
        return text.translate(_UNSAFE)
    return text


def short_name(name: bytes, ext: bytes, nt_flags: int) -> str:
    """The 8.3 name as Windows and Linux show it: base and extension trimmed of padding, decoded
    as OEM code page 437, lower-cased per the NT flags, joined by '.'. (TSK lower-cases only
    A-Z and prints '^' for every non-ASCII byte: mtools writes "été.txt" as short name
    "ÉTÉ.TXT" + lower-case flag, which TSK shows as "^t^.txt" and we as "été.txt".)"""
    if name[0] == SLOT_KANJI_E5:
        name = b"\xe5" + name[1:]
    base = name.rstrip(b" ")
    extension = ext.rstrip(b" ")
    if nt_flags & (NT_LOWER_BASE | NT_LOWER_EXT):
        text_base = base.decode("cp437")
        text_ext = extension.decode("cp437")
        if nt_flags & NT_LOWER_BASE:
            text_base = text_base.lower()
        if nt_flags & NT_LOWER_EXT:
            text_ext = text_ext.lower()
        text = text_base + "." + text_ext if text_ext else text_base
    else:
        text = (base + b"." + extension if extension else base).decode("cp437")
    return safe_name(text)


def long_name(pieces: list[bytes]) -> str:
    """Join LFN slot payloads (26 bytes each, in name order) into the name: UTF-16LE up to the
    first NUL; unpaired surrogates become U+FFFD, control characters and '/' become '^'."""
    text = b"".join(pieces).decode("utf-16-le", "replace")
    end = text.find("\x00")
    return safe_name(text[:end] if end >= 0 else text)


def lfn_payload(slot: tuple) -> bytes:
    """The 26 name bytes of an unpacked LFN slot (LFN_ENTRY_FAST tuple)."""
    return slot[1] + slot[5] + slot[7]
