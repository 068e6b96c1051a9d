"""POSIX pax building blocks: the ustar header (declared with construct), a fast header
builder for the writer, pax extended-header records, and defensive parsing for the reader.

The writer builds headers with `struct` (a few microseconds each, needed to keep up with
small files); `UstarHeader` below is the declaration they are tested against, and what the
reader parses with.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from construct import Adapter, Bytes, Struct

BLOCK = 512
USTAR_MAX_SIZE = 0o77777777777  # largest size an 11-digit octal field holds (8 GiB - 1)
USTAR_MAX_ID = 0o7777777
USTAR_MAX_TIME = 0o77777777777

# typeflags
REGTYPE = b"0"
AREGTYPE = b"\0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
CONTTYPE = b"7"
XHDTYPE = b"x"
XGLTYPE = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"


class NulString(Adapter):  # type: ignore[misc]
    """NUL-padded byte string field (names, link names, user names)."""

    def __init__(self, length: int) -> None:
        super().__init__(Bytes(length))
        self.length = length

    def _decode(self, obj: bytes, context: Any, path: Any) -> bytes:
        end = obj.find(b"\0")
        return obj if end < 0 else obj[:end]

    def _encode(self, obj: bytes, context: Any, path: Any) -> bytes:
        if len(obj) > self.length:
            raise ValueError(f"{obj!r} is longer than {self.length} bytes")
        return obj.ljust(self.length, b"\0")


class Octal(Adapter):  # type: ignore[misc]
    """Numeric field: NUL/space terminated octal, or GNU base-256 when the top bit is set."""

    def __init__(self, length: int) -> None:
        super().__init__(Bytes(length))
        self.length = length

    def _decode(self, obj: bytes, context: Any, path: Any) -> int:
        return parse_number(obj)

    def _encode(self, obj: int, context: Any, path: Any) -> bytes:
        return format_octal(obj, self.length)


UstarHeader = Struct(
    "name" / NulString(100),
    "mode" / Octal(8),
    "uid" / Octal(8),
    "gid" / Octal(8),
    "size" / Octal(12),
    "mtime" / Octal(12),
    "chksum" / Bytes(8),
    "typeflag" / Bytes(1),
    "linkname" / NulString(100),
    "magic" / Bytes(6),
    "version" / Bytes(2),
    "uname" / NulString(32),
    "gname" / NulString(32),
    "devmajor" / Octal(8),
    "devminor" / Octal(8),
    "prefix" / NulString(155),
    "pad" / Bytes(12),
)
assert UstarHeader.sizeof() == BLOCK

_PACK = struct.Struct("100s8s8s8s12s12s8sc100s6s2s32s32s8s8s155s12x")
_CHKSUM_BLANK = b"        "
_ZERO8 = b"0000000\0"


def format_octal(value: int, length: int) -> bytes:
    """`length-1` octal digits and a NUL (the POSIX form GNU tar writes)."""
    text = b"%0*o" % (length - 1, value)
    if len(text) > length - 1 or value < 0:
        raise ValueError(f"{value} does not fit a {length}-byte octal field")
    return text + b"\0"


def parse_number(field_bytes: bytes) -> int:
    """Decode an octal (or GNU base-256) numeric field; ValueError when it is neither."""
    if field_bytes and field_bytes[0] & 0x80:
        value = int.from_bytes(field_bytes[1:], "big")
        if field_bytes[0] == 0xFF:  # negative base-256
            value -= 1 << (8 * (len(field_bytes) - 1))
        return value
    text = field_bytes.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    return int(text, 8)


def build_header(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes = b"",
    uname: bytes = b"",
    gname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    """One 512-byte ustar header; values must already fit (the caller moves the rest to pax)."""
    dev = devmajor or devminor
    raw = bytearray(
        _PACK.pack(
            name,
            b"%07o\0" % mode,
            b"%07o\0" % uid,
            b"%07o\0" % gid,
            b"%011o\0" % size,
            b"%011o\0" % mtime,
            _CHKSUM_BLANK,
            typeflag,
            linkname,
            b"ustar\0",
            b"00",
            uname,
            gname,
            b"%07o\0" % devmajor if dev else _ZERO8,
            b"%07o\0" % devminor if dev else _ZERO8,
            b"",
        )
    )
    raw[148:156] = b"%06o\0 " % sum(raw)
    return bytes(raw)


def header_checksum_ok(block: bytes | memoryview) -> bool:
    """True when the stored checksum matches (unsigned, or signed as old tars computed it)."""
    stored_field = bytes(block[148:156])
    try:
        stored = parse_number(stored_field)
    except ValueError:
        return False
    raw = bytes(block)
    unsigned = sum(raw[:148]) + 256 + sum(raw[156:])
    if stored == unsigned:
        return True
    signed = sum(b - 256 if b > 127 else b for b in raw[:148] + raw[156:]) + 256
    return stored == signed


def pax_record(key: str, value: bytes) -> bytes:
    """One 'len key=value\\n' record, len counting itself."""
    body = b" " + key.encode("utf-8") + b"=" + value + b"\n"
    n = len(body)
    length = n + len(str(n))
    if len(str(length)) != len(str(n)):
        length = n + len(str(length))
    return str(length).encode("ascii") + body


_PAX_HEADS: dict[tuple[int, bytes, bytes], bytes] = {}


def pax_member(records: bytes, typeflag: bytes = XHDTYPE, name: bytes = b"././@PaxHeader") -> bytes:
    """An extended header member: ustar header + the records padded to 512."""
    key = (len(records), typeflag, name)
    head = _PAX_HEADS.get(key)
    if head is None:  # depends only on the length: cached, most members share a few lengths
        head = build_header(name[:100], 0o644, 0, 0, len(records), 0, typeflag)
        if len(_PAX_HEADS) < 4096:
            _PAX_HEADS[key] = head
    return head + records + bytes(-len(records) % BLOCK)


def pax_member_sized(
    records: bytes, size: int, typeflag: bytes = XGLTYPE, name: bytes = b"././@GlobalHead"
) -> bytes:
    """A pax header member of exactly `size` bytes (a multiple of 512, >= 512 + records),
    filled with a `comment` record that readers ignore: pads a stream to a record boundary."""
    room = size - BLOCK - len(records)
    if size % BLOCK or room < 0 or 0 < room < 12:
        raise ValueError(f"cannot build a {size}-byte pax member around {len(records)} bytes")
    comment = b""
    if room:
        width = room - len(b" comment=\n")
        while True:
            comment = pax_record("comment", b"." * max(width - len(str(room)), 0))
            if len(comment) == room:
                break
            width += room - len(comment)
    member = pax_member(records + comment, typeflag, name)
    assert len(member) == size, (len(member), size)
    return member


def parse_pax_records(data: bytes) -> dict[str, bytes]:
    """Decode pax records defensively; ValueError on a malformed one."""
    out: dict[str, bytes] = {}
    pos = 0
    end = len(data)
    while pos < end:
        if data[pos] == 0:  # trailing NUL padding
            break
        space = data.find(b" ", pos, min(end, pos + 24))
        if space < 0:
            raise ValueError(f"pax record without length at {pos}")
        length = int(data[pos:space])
        if length <= space - pos + 1 or pos + length > end or data[pos + length - 1] != 0x0A:
            raise ValueError(f"pax record length {length} out of bounds at {pos}")
        eq = data.find(b"=", space + 1, pos + length)
        if eq < 0:
            raise ValueError(f"pax record without '=' at {pos}")
        key = data[space + 1 : eq].decode("utf-8", "replace")
        out[key] = data[eq + 1 : pos + length - 1]
        pos += length
    return out


def format_pax_time(ns: int) -> bytes:
    """Nanoseconds since the epoch as a pax decimal time ('1700000000.5')."""
    sign = b"-" if ns < 0 else b""
    secs, frac = divmod(abs(ns), 1_000_000_000)
    if not frac:
        return sign + b"%d" % secs
    return sign + (b"%d.%09d" % (secs, frac)).rstrip(b"0")


def parse_pax_time(value: bytes) -> int:
    """A pax decimal time to nanoseconds since the epoch."""
    text = value.decode("ascii").strip()
    negative = text.startswith("-")
    text = text.lstrip("-+")
    whole, _, frac = text.partition(".")
    ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
    return -ns if negative else ns


@dataclass
class RawHeader:
    """A ustar header as parsed, before pax overrides are applied."""

    name: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    typeflag: bytes
    linkname: bytes
    uname: bytes
    gname: bytes
    devmajor: int
    devminor: int
    prefix: bytes
    extra: dict[str, bytes] = field(default_factory=dict)


def parse_header(block: bytes) -> RawHeader:
    """Parse one 512-byte header with the construct declaration (checksum checked by caller)."""
    h = UstarHeader.parse(block)
    return RawHeader(
        name=h.name,
        mode=h.mode,
        uid=h.uid,
        gid=h.gid,
        size=h.size,
        mtime=h.mtime,
        typeflag=h.typeflag,
        linkname=h.linkname,
        uname=h.uname,
        gname=h.gname,
        devmajor=h.devmajor,
        devminor=h.devminor,
        prefix=h.prefix if h.magic[:5] == b"ustar" else b"",
    )
