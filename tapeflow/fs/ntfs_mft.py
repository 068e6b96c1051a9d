"""MFT records: fixups, attribute walking, $ATTRIBUTE_LIST resolution, and the linear bulk scan.

The scan reads the MFT in large chunks and parses every in-use record once into a compact
`Record` (only the attributes the volume map needs are kept), collecting on the way every real
run of every non-resident attribute (for `unowned_runs`). A record that fails to parse does not
stop the scan: its error is kept and raised when something needs that record.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import CorruptStructure
from .ntfs_layout import (
    ALIST_ENTRY,
    AT_ATTRIBUTE_LIST,
    AT_BITMAP,
    AT_DATA,
    AT_END,
    AT_INDEX_ALLOCATION,
    AT_INDEX_ROOT,
    AT_STANDARD_INFORMATION,
    AT_VOLUME_NAME,
    ATTR,
    FILE_HDR,
    MAX_VCN,
    NONRES_TAIL,
    RECORD_IN_USE,
    REF_MASK,
    RES_TAIL,
    STD_INFO,
    Run,
    apply_fixups,
    check_no_overlap,
    decode_runlist,
    utf16,
)
from .ntfs_runs import covers

# attribute types a Record keeps (all others are only walked for their runs)
KEPT = frozenset(
    {AT_ATTRIBUTE_LIST, AT_VOLUME_NAME, AT_DATA, AT_INDEX_ROOT, AT_INDEX_ALLOCATION, AT_BITMAP}
)
_END_MARKER = b"\xff\xff\xff\xff"
_ZERO_MAGIC = b"\0\0\0\0"


class Attr:
    """One attribute record (or one fragment of a non-resident attribute split across records):
    `value` for a resident attribute, else the fragment's runs and the sizes."""

    __slots__ = (
        "type",
        "name",
        "instance",
        "flags",
        "value",
        "lowest_vcn",
        "highest_vcn",
        "alloc_size",
        "data_size",
        "init_size",
        "comp_unit",
        "runs",
    )

    def __init__(
        self,
        type_: int,
        name: str,
        instance: int,
        flags: int,
        value: bytes | None,
        lowest_vcn: int = 0,
        highest_vcn: int = -1,
        alloc_size: int = 0,
        data_size: int = 0,
        init_size: int = 0,
        comp_unit: int = 0,
        runs: list[Run] | None = None,
    ) -> None:
        self.type = type_
        self.name = name
        self.instance = instance
        self.flags = flags
        self.value = value
        self.lowest_vcn = lowest_vcn
        self.highest_vcn = highest_vcn
        self.alloc_size = alloc_size
        self.data_size = data_size
        self.init_size = init_size
        self.comp_unit = comp_unit
        self.runs = runs

    @property
    def resident(self) -> bool:
        """True when the value lives inside the MFT record."""
        return self.runs is None

    @property
    def size(self) -> int:
        """Logical size in bytes."""
        return len(self.value) if self.value is not None else self.data_size


class Record:
    """An in-use MFT record: header facts, $STANDARD_INFORMATION times (raw FILETIMEs:
    creation, modification, MFT change, access) and the kept attributes."""

    __slots__ = ("num", "seq", "flags", "base", "times", "attrs", "has_alist")

    def __init__(
        self,
        num: int,
        seq: int,
        flags: int,
        base: int,
        times: tuple[int, int, int, int] | None,
        attrs: list[Attr],
        has_alist: bool,
    ) -> None:
        self.num = num
        self.seq = seq
        self.flags = flags
        self.base = base  # base record number; 0 for a base record
        self.times = times
        self.attrs = attrs
        self.has_alist = has_alist


def parse_record(
    buf: bytearray,
    off: int,
    size: int,
    num: int,
    total_clusters: int,
    owned: list[tuple[int, int]] | None = None,
) -> Record | None:
    """Parse the `size`-byte MFT record `num` at `buf[off:]` (fixups applied in place); None when
    it is not in use. Real runs of every non-resident attribute are appended to `owned`."""
    (magic, usa_ofs, usa_cnt, _lsn, seq, _links, aoff, flags, used, alloc, base_ref, _ni, _rn) = (
        FILE_HDR.unpack_from(buf, off)
    )
    if magic != b"FILE":
        if magic == _ZERO_MAGIC:
            return None
        raise CorruptStructure(f"MFT record {num} has signature {bytes(magic)!r}, not FILE")
    if not flags & RECORD_IN_USE:
        return None
    if not apply_fixups(buf, off, size, usa_ofs, usa_cnt):
        raise CorruptStructure(f"MFT record {num} fails its update sequence (fixup) check")
    if alloc != size or used > size or aoff & 7 or aoff < usa_ofs + 2 * usa_cnt or aoff >= used:
        raise CorruptStructure(f"MFT record {num} has inconsistent header sizes")
    pos = off + aoff
    end = off + used
    times = None
    attrs: list[Attr] = []
    has_alist = False
    while True:  # each pass advances pos by >= 24 bytes inside [off, end)
        if pos + 16 > end:
            if pos + 4 <= end and buf[pos : pos + 4] == _END_MARKER:
                break
            raise CorruptStructure(f"MFT record {num}: attributes run past its bytes in use")
        atype, alen, nonres, nlen, noff, aflags, inst = ATTR.unpack_from(buf, pos)
        if atype == AT_END:
            break
        if alen < 24 or alen & 7 or pos + alen > end:
            raise CorruptStructure(
                f"MFT record {num}: attribute {atype:#x} of length {alen} runs past the record"
            )
        if nonres:
            if alen < 64:
                raise CorruptStructure(f"MFT record {num}: short non-resident attribute")
            lvcn, hvcn, mpo, cu, asz, dsz, isz = NONRES_TAIL.unpack_from(buf, pos + 16)
            if lvcn < 0 or hvcn < lvcn - 1 or hvcn >= MAX_VCN or mpo < 64 or mpo >= alen:
                raise CorruptStructure(f"MFT record {num}: bad non-resident header {atype:#x}")
            if lvcn == 0 and (asz < 0 or dsz < 0 or isz < 0 or isz > dsz):
                raise CorruptStructure(f"MFT record {num}: bad sizes in attribute {atype:#x}")
            runs = decode_runlist(buf, pos + mpo, pos + alen, lvcn, total_clusters)
            if runs:
                last = runs[-1]
                mapped = last[0] + last[2] - lvcn
            else:
                mapped = 0
            if mapped != hvcn - lvcn + 1:
                raise CorruptStructure(
                    f"MFT record {num}: runlist of attribute {atype:#x} maps {mapped} clusters, "
                    f"its header says {hvcn - lvcn + 1}"
                )
            if owned is not None:
                for _v, lcn, length in runs:
                    if lcn is not None:
                        owned.append((lcn, length))
            if atype in KEPT:
                if nlen and noff + 2 * nlen > alen:
                    raise CorruptStructure(f"MFT record {num}: attribute name past its end")
                name = utf16(buf[pos + noff : pos + noff + 2 * nlen]) if nlen else ""
                attrs.append(
                    Attr(atype, name, inst, aflags, None, lvcn, hvcn, asz, dsz, isz, cu, runs)
                )
                has_alist = has_alist or atype == AT_ATTRIBUTE_LIST
        elif atype == AT_STANDARD_INFORMATION:
            vlen, voff, _rf = RES_TAIL.unpack_from(buf, pos + 16)
            if vlen < STD_INFO.size or voff < 24 or voff + vlen > alen:
                raise CorruptStructure(f"MFT record {num}: bad $STANDARD_INFORMATION")
            times = STD_INFO.unpack_from(buf, pos + voff)[:4]
        elif atype in KEPT:
            vlen, voff, _rf = RES_TAIL.unpack_from(buf, pos + 16)
            if voff + vlen > alen or (vlen and voff < 24):
                raise CorruptStructure(f"MFT record {num}: resident value past attribute end")
            if nlen and noff + 2 * nlen > alen:
                raise CorruptStructure(f"MFT record {num}: attribute name past its end")
            name = utf16(buf[pos + noff : pos + noff + 2 * nlen]) if nlen else ""
            v = pos + voff
            attrs.append(Attr(atype, name, inst, aflags, bytes(buf[v : v + vlen])))
            has_alist = has_alist or atype == AT_ATTRIBUTE_LIST
        pos += alen
    base = base_ref & REF_MASK
    return Record(num, seq, flags, base, times, attrs, has_alist)


# --- $ATTRIBUTE_LIST ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One $ATTRIBUTE_LIST entry: where an attribute (fragment) of a file lives."""

    type: int
    name: str
    lowest_vcn: int
    record: int
    seq: int
    instance: int


def parse_attribute_list(value: bytes, owner: int) -> list[ListEntry]:
    """Decode a $ATTRIBUTE_LIST value (record `owner`'s)."""
    out: list[ListEntry] = []
    pos = 0
    n = len(value)
    while pos < n:  # each entry is >= 26 bytes
        if pos + ALIST_ENTRY.size > n:
            raise CorruptStructure(f"MFT record {owner}: truncated $ATTRIBUTE_LIST entry")
        atype, elen, nlen, noff, lvcn, ref, inst = ALIST_ENTRY.unpack_from(value, pos)
        if atype == 0 and elen == 0:  # zero padding after the last entry
            break
        if elen < ALIST_ENTRY.size or pos + elen > n or (nlen and noff + 2 * nlen > elen):
            raise CorruptStructure(f"MFT record {owner}: malformed $ATTRIBUTE_LIST entry")
        name = utf16(value[pos + noff : pos + noff + 2 * nlen]) if nlen else ""
        out.append(ListEntry(atype, name, lvcn, ref & REF_MASK, ref >> 48, inst))
        pos += elen
    return out


def gather_attrs(
    rec: Record,
    alist_value: bytes,
    lookup: Callable[[int], Record | None],
) -> list[Attr]:
    """All kept attributes of base record `rec` following its attribute list: its own plus those
    in its extension records (each must name `rec` as its base). `lookup` fetches a record."""
    attrs = [a for a in rec.attrs if a.type != AT_ATTRIBUTE_LIST]
    seen: set[tuple[int, int, int]] = set()
    for e in parse_attribute_list(alist_value, rec.num):
        if e.record == rec.num or e.type not in KEPT:
            continue
        key = (e.record, e.type, e.instance)
        if key in seen:
            raise CorruptStructure(f"MFT record {rec.num}: $ATTRIBUTE_LIST repeats an entry")
        seen.add(key)
        ext = lookup(e.record)
        if ext is None or ext.base != rec.num or (e.seq and ext.seq != e.seq):
            raise CorruptStructure(
                f"MFT record {rec.num}: $ATTRIBUTE_LIST names record {e.record}, which is not "
                "one of its extension records"
            )
        for a in ext.attrs:
            if a.type == e.type and a.instance == e.instance:
                attrs.append(a)
                break
        else:
            raise CorruptStructure(
                f"MFT record {rec.num}: attribute {e.type:#x} listed in record {e.record} is "
                "not there"
            )
    return attrs


def combine(frags: list[Attr], cluster_size: int, what: str) -> Attr:
    """Join the fragments of one attribute (split across records by VCN) into one; they must
    tile the VCN range from 0 without gap or overlap."""
    if len(frags) == 1 and (frags[0].resident or frags[0].lowest_vcn == 0):
        whole = frags[0]
    else:
        if any(f.resident for f in frags):
            raise CorruptStructure(f"{what}: a resident attribute appears more than once")
        frags = sorted(frags, key=lambda f: f.lowest_vcn)
        first = frags[0]
        runs: list[Run] = []
        expect = 0
        for f in frags:
            if f.lowest_vcn != expect:
                raise CorruptStructure(f"{what}: attribute fragments leave a gap or overlap")
            runs.extend(f.runs or ())
            expect = f.highest_vcn + 1
        check_no_overlap(runs)
        whole = Attr(
            first.type,
            first.name,
            first.instance,
            first.flags,
            None,
            0,
            expect - 1,
            first.alloc_size,
            first.data_size,
            first.init_size,
            first.comp_unit,
            runs,
        )
    if not whole.resident and whole.data_size > (whole.highest_vcn + 1) * cluster_size:
        raise CorruptStructure(f"{what}: size {whole.data_size} exceeds the clusters it maps")
    return whole


def assemble_mft(
    rec0: Record,
    alist: bytes | None,
    fetch: Callable[[list[Run], int], Record | None],
    record_size: int,
    cluster_size: int,
    total_clusters: int,
) -> Attr:
    """$MFT's whole unnamed $DATA from record 0 and, when record 0 has an attribute list
    (`alist`, its value), from the extension records it names; `fetch(runs, n)` reads record n
    through the runs known so far. A fragment whose record only later fragments would map is
    an unresolvable cycle: CorruptStructure."""
    rs, cs = record_size, cluster_size
    frags = [a for a in rec0.attrs if a.type == AT_DATA and not a.name]
    pending = [] if alist is None else parse_attribute_list(alist, 0)
    pending = [e for e in pending if e.type == AT_DATA and not e.name and e.record != 0]
    while pending:  # each pass resolves >= 1 entry or raises
        known = sorted((r for f in frags for r in f.runs or ()), key=lambda r: r[0])
        left = []
        for e in pending:
            start = e.record * rs
            if not covers(known, start // cs, -(-(start + rs) // cs)):
                left.append(e)
                continue
            ext = fetch(known, e.record)
            if ext is None or ext.base != 0 or (e.seq and ext.seq != e.seq):
                raise CorruptStructure(f"$MFT extension record {e.record} is not one")
            match = [a for a in ext.attrs if a.type == AT_DATA and a.instance == e.instance]
            if not match:
                raise CorruptStructure(f"$MFT $DATA fragment missing in record {e.record}")
            frags.append(match[0])
        if len(left) == len(pending):
            raise CorruptStructure("$MFT's attribute list needs records it cannot reach")
        pending = left
    if not frags:
        raise CorruptStructure("$MFT has no $DATA attribute")
    mft = combine(frags, cs, "$MFT $DATA")
    if mft.runs is None or mft.data_size < 16 * rs:
        raise CorruptStructure("$MFT $DATA is resident or too small")
    if mft.data_size > total_clusters * cs or any(r[1] is None for r in mft.runs):
        raise CorruptStructure("$MFT $DATA is sparse or larger than the volume")
    return mft


# --- the linear scan ------------------------------------------------------------------------


@dataclass
class MftScan:
    """Result of one pass over the whole MFT."""

    records: list[Record | None]  # by record number; None when free
    bad: dict[int, str] = field(default_factory=dict)  # record number -> why it is unreadable
    owned: list[tuple[int, int]] = field(default_factory=list)  # (lcn, length) of every real run


def scan_mft(
    read: Callable[[int, int], bytes],
    count: int,
    record_size: int,
    total_clusters: int,
    chunk_bytes: int = 8 << 20,
) -> MftScan:
    """Parse records 0..count-1; `read(start, length)` returns bytes of the $MFT stream.
    The cyclic garbage collector is paused meanwhile: the scan only allocates (100,000s of
    acyclic objects), and collections triggered by that would cost a fifth of the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _scan(read, count, record_size, total_clusters, chunk_bytes)
    finally:
        if was_enabled:
            gc.enable()


def _scan(
    read: Callable[[int, int], bytes],
    count: int,
    record_size: int,
    total_clusters: int,
    chunk_bytes: int,
) -> MftScan:
    per_chunk = max(1, chunk_bytes // record_size)
    scan = MftScan([None] * count)
    records = scan.records
    owned = scan.owned
    for first in range(0, count, per_chunk):
        n = min(per_chunk, count - first)
        buf = bytearray(read(first * record_size, n * record_size))
        off = 0
        for num in range(first, first + n):
            if buf[off + 22] & RECORD_IN_USE:  # cheap pre-test of the header flags
                mark = len(owned)
                try:
                    records[num] = parse_record(buf, off, record_size, num, total_clusters, owned)
                except CorruptStructure as exc:
                    del owned[mark:]
                    scan.bad[num] = str(exc)
            elif buf[off : off + 4] not in (b"FILE", _ZERO_MAGIC):
                # free per its flags but not a record at all; an error only if something uses it
                scan.bad[num] = f"MFT record {num} has signature {bytes(buf[off : off + 4])!r}"
            off += record_size
    return scan
