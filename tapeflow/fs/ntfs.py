"""NTFS volume parser: the file -> extents map of a volume image, without mounting it.

How a map is built:
1. `open` validates the boot sector (BPB), reads $MFT's record 0 and assembles the MFT's own
   runlist, following its $ATTRIBUTE_LIST into extension records when the MFT is that
   fragmented, then reads $Volume (record 3) for the label.
2. The first call that needs files scans the whole MFT linearly in large reads (ntfs_mft), once:
   every in-use record is parsed a single time, with struct readers derived from the construct
   layouts, and every non-resident attribute's runs are collected for `unowned_runs`.
3. `entries()` walks the directory tree from the root (record 5) through each directory's $I30
   index ($INDEX_ROOT + INDX blocks): the index is the path source, as for Windows and The Sleuth
   Kit (a file is on the volume when a directory lists it; $FILE_NAME parent references are not
   used), and the scanned records supply sizes, times and runs. Hard links appear once per name;
   a directory reached twice, an index node visited twice, an entry whose key names another
   parent, or a name that is empty, "." , ".." or holds "/" or NUL is CorruptStructure.

FsEntry: inode = MFT record number; size = unnamed $DATA's real size; times from
$STANDARD_INFORMATION (ctime = MFT change time), UTC, truncated to microseconds; resident bytes,
or extents = the runlist as stored (sparse runs have lcn None; compressed files list their
stored clusters and sparse tails per compression unit; runs cover the allocated size, which may
extend past the last byte). Named streams are not content, but their clusters are owned.
VolumeInfo.size = total sectors x sector size as the boot sector declares (the backup boot sector
lies in the sector after). `read_file` holds the content in memory; encrypted (EFS) content
raises UnsupportedFeature.

Naming rules:
- DOS 8.3 index entries are skipped (the Win32/POSIX entry of the same file is kept).
- Metafiles are not user files: entries for MFT records 0-15 ($MFT, $MFTMirr, $LogFile, $Volume,
  $AttrDef, the root's own "." entry, $Bitmap, $Boot, $BadClus, $Secure, $UpCase, $Extend and
  reserved records) are skipped wherever they appear, and so is everything below $Extend.
- An index entry naming a free record or one reused since (sequence number mismatch) is stale:
  it is skipped and noted in `problems`.

Ownership (`unowned_runs`): every real run of every non-resident attribute of every in-use MFT
record (base or extension, reached from the root or not) owns its clusters; metafiles included
($MFT, $MFTMirr, $LogFile, $Boot, $Bitmap, $Secure:$SDS, $UpCase, and $BadClus:$Bad, whose runs
are the bad clusters: they are owned, so never copied as unowned).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from typing import BinaryIO

from construct import ConstructError

from .content import compressed_content
from .errors import BadBootSector, CorruptStructure, FsError, UnsupportedFeature
from .model import Extent, FsEntry, Volume, VolumeInfo, coalesce
from .ntfs_boot import parse_boot
from .ntfs_index import directory_entries
from .ntfs_layout import (
    AT_ATTRIBUTE_LIST,
    AT_DATA,
    AT_INDEX_ALLOCATION,
    AT_INDEX_ROOT,
    AT_VOLUME_NAME,
    ATTR_COMPRESSED,
    ATTR_ENCRYPTED,
    FIRST_USER_RECORD,
    RECORD_IS_DIRECTORY,
    ROOT_RECORD,
    Run,
    entry_times,
    utf16,
)
from .ntfs_mft import (
    Attr,
    MftScan,
    Record,
    assemble_mft,
    combine,
    gather_attrs,
    parse_record,
    scan_mft,
)
from .ntfs_runs import bitmap_runs, subtract_runs

_BITMAP_RECORD = 6
_VOLUME_RECORD = 3
_I30 = "$I30"
_NO_TIMES = (None, None, None, None)
# what a hostile image can make low-level code raise; turned into CorruptStructure
_LOW_LEVEL = (IndexError, KeyError, ValueError, struct.error, OverflowError, ConstructError)


class NtfsVolume(Volume):
    """An NTFS volume inside a binary image; see the module docstring for the rules."""

    def __init__(
        self,
        image: BinaryIO,
        offset: int,
        info: VolumeInfo,
        record_size: int,
        index_record_size: int,
    ) -> None:
        self._image = image
        self._offset = offset
        self.info = info
        self.record_size = record_size
        self.index_record_size = index_record_size
        self.mft_runs: list[Run] = []
        self.mft_records = 0  # records the $MFT holds
        self._mft_scanned = 0  # records inside its initialized size
        self._scan: MftScan | None = None
        self._attr_cache: dict[int, list[Attr]] = {}
        self.problems: list[str] = []  # stale entries and unreadable records met on the way
        self._noted: set[str] = set()

    def _note(self, problem: str) -> None:
        if problem not in self._noted:
            self._noted.add(problem)
            self.problems.append(problem)

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, image: BinaryIO, offset: int = 0) -> NtfsVolume:
        """Validate the boot sector at `offset` of `image` and load the MFT's runlist."""
        try:
            return cls._open(image, offset)
        except FsError:
            raise
        except _LOW_LEVEL as exc:
            raise CorruptStructure(f"malformed NTFS metadata: {exc!r}") from exc

    @classmethod
    def _open(cls, image: BinaryIO, offset: int) -> NtfsVolume:
        image.seek(offset)
        b = parse_boot(image.read(512))
        image.seek(0, 2)
        volume_bytes = b.total_sectors * b.sector_size
        if image.tell() < offset + volume_bytes:
            raise BadBootSector("the volume extends past the end of the image")
        label_info = VolumeInfo(
            kind="ntfs",
            size=volume_bytes,
            sector_size=b.sector_size,
            cluster_size=b.cluster_size,
            cluster_base=0,
            total_clusters=b.total_clusters,
            serial=b.serial,
        )
        vol = cls(image, offset, label_info, b.record_size, b.index_record_size)
        vol._load_mft_runs(b.mft_lcn)
        vol.info = dataclasses.replace(label_info, label=vol._read_label())
        return vol

    def _load_mft_runs(self, mft_lcn: int) -> None:
        """Assemble $MFT's unnamed $DATA from record 0 and, through its $ATTRIBUTE_LIST, from
        extension records that the already known part of the MFT can reach."""
        cs, rs = self.info.cluster_size, self.record_size
        buf = bytearray(self._read(mft_lcn * cs, rs))
        rec0 = parse_record(buf, 0, rs, 0, self.info.total_clusters)
        if rec0 is None or rec0.base:
            raise CorruptStructure("MFT record 0 ($MFT) is not an in-use base record")
        total = self.info.total_clusters

        def fetch(known: list[Run], num: int) -> Record | None:
            rbuf = bytearray(self._read_runs(known, num * rs, rs, metadata=True))
            return parse_record(rbuf, 0, rs, num, total)

        alist = self._alist_value(rec0) if rec0.has_alist else None
        mft = assemble_mft(rec0, alist, fetch, rs, cs, total)
        self.mft_runs = mft.runs or []
        self.mft_records = mft.data_size // rs
        self._mft_scanned = min(self.mft_records, mft.init_size // rs)

    def _read_label(self) -> str:
        rec = self._record(_VOLUME_RECORD)
        if rec is None:
            raise CorruptStructure("$Volume (record 3) is not in use")
        for a in self._attrs(rec):
            if a.type == AT_VOLUME_NAME and a.value is not None:
                return utf16(a.value)
        return ""

    # --- low-level reads ----------------------------------------------------------------

    def _read(self, pos: int, length: int) -> bytes:
        """`length` bytes at volume byte `pos`."""
        self._image.seek(self._offset + pos)
        data = self._image.read(length)
        if len(data) != length:
            raise CorruptStructure(f"image ends before volume byte {pos + length}")
        return data

    def _read_runs(self, runs: list[Run], start: int, length: int, metadata: bool = False) -> bytes:
        """Bytes `start`..`start+length` of an attribute mapped by `runs` (sorted by VCN);
        sparse runs read as zeros, except in `metadata` (MFT, index, list, bitmap), which is
        never sparse nor larger than the volume: there they are damage."""
        cs = self.info.cluster_size
        if metadata and start + length > self.info.total_clusters * cs:
            raise CorruptStructure(f"metadata stream of {start + length} bytes exceeds the volume")
        out = bytearray()
        pos, stop = start, start + length
        for vcn, lcn, n in runs:
            if pos >= stop:
                break
            rstart, rend = vcn * cs, (vcn + n) * cs
            if rend <= pos:
                continue
            if rstart > pos:
                break
            take = min(rend, stop) - pos
            if lcn is None:
                if metadata:
                    raise CorruptStructure("sparse run in a metadata stream")
                out += bytes(take)
            else:
                out += self._read(lcn * cs + pos - rstart, take)
            pos += take
        if pos < stop:
            raise CorruptStructure(f"read of bytes {start}..{stop} past an attribute's runs")
        return bytes(out)

    # --- records --------------------------------------------------------------------------

    def _load(self) -> MftScan:
        """Scan the whole MFT once (bulk reads), keeping a compact form of every record."""
        if self._scan is None:
            runs = self.mft_runs
            scan = scan_mft(
                lambda s, n: self._read_runs(runs, s, n, metadata=True),
                self._mft_scanned,
                self.record_size,
                self.info.total_clusters,
            )
            scan.records.extend([None] * (self.mft_records - self._mft_scanned))
            self._scan = scan
        return self._scan

    def _record(self, num: int) -> Record | None:
        """Record `num` (None when free); raises CorruptStructure when it is unreadable."""
        if not 0 <= num < self.mft_records:
            raise CorruptStructure(f"reference to MFT record {num}, past the MFT's end")
        if self._scan is None:  # before a scan: read just this record
            if num >= self._mft_scanned:
                return None
            rs = self.record_size
            buf = bytearray(self._read_runs(self.mft_runs, num * rs, rs, metadata=True))
            return parse_record(buf, 0, rs, num, self.info.total_clusters)
        bad = self._scan.bad.get(num)
        if bad is not None:
            raise CorruptStructure(bad)
        return self._scan.records[num]

    def _attrs(self, rec: Record) -> list[Attr]:
        """The record's kept attributes, including those its $ATTRIBUTE_LIST places in
        extension records."""
        if not rec.has_alist:
            return rec.attrs
        cached = self._attr_cache.get(rec.num)
        if cached is None:
            cached = gather_attrs(rec, self._alist_value(rec), self._record)
            self._attr_cache[rec.num] = cached
        return cached

    def _alist_value(self, rec: Record) -> bytes:
        lists = [a for a in rec.attrs if a.type == AT_ATTRIBUTE_LIST]
        if len(lists) != 1:
            raise CorruptStructure(f"MFT record {rec.num} has {len(lists)} attribute lists")
        a = combine(lists, self.info.cluster_size, f"MFT record {rec.num} $ATTRIBUTE_LIST")
        if a.value is not None:
            return a.value
        return self._read_runs(a.runs or [], 0, a.data_size, metadata=True)

    def _named(self, rec: Record, atype: int, name: str) -> Attr | None:
        """One attribute of `rec` by type and name, its fragments joined; None if absent."""
        frags = [a for a in self._attrs(rec) if a.type == atype and a.name == name]
        if not frags:
            return None
        return combine(frags, self.info.cluster_size, f"MFT record {rec.num} {atype:#x} {name}")

    def _data(self, rec: Record) -> Attr | None:
        """The unnamed $DATA (the file's content) of `rec`, fragments joined; None if absent."""
        if not rec.has_alist:  # fast path: one complete attribute in the base record
            found = None
            for a in rec.attrs:
                if a.type == AT_DATA and not a.name:
                    if found is not None:
                        found = None
                        break
                    found = a
            if found is not None and (
                found.runs is None
                or found.lowest_vcn == 0
                and found.data_size <= (found.highest_vcn + 1) * self.info.cluster_size
            ):
                return found
        return self._named(rec, AT_DATA, "")

    # --- the tree -------------------------------------------------------------------------

    def entries(self) -> Iterator[FsEntry]:
        """Every user file and directory below the root, parents first (module docstring)."""
        try:
            yield from self._entries()
        except FsError:
            raise
        except _LOW_LEVEL as exc:
            raise CorruptStructure(f"malformed NTFS metadata: {exc!r}") from exc

    def _dir_entries(self, rec: Record) -> list[tuple[str, int, int]]:
        root = self._named(rec, AT_INDEX_ROOT, _I30)
        if root is None or root.value is None:
            raise CorruptStructure(f"directory {rec.num} has no resident $I30 index root")
        ia = self._named(rec, AT_INDEX_ALLOCATION, _I30)
        alloc = None
        if ia is not None:
            if ia.runs is None:
                raise CorruptStructure(f"directory {rec.num}: resident $INDEX_ALLOCATION")
            alloc = bytearray(self._read_runs(ia.runs, 0, ia.data_size, metadata=True))
        return directory_entries(rec.num, root.value, alloc, self.info.cluster_size)

    def _entries(self) -> Iterator[FsEntry]:
        self._load()
        root = self._record(ROOT_RECORD)
        if root is None or not root.flags & RECORD_IS_DIRECTORY:
            raise CorruptStructure("the root directory (record 5) is not an in-use directory")
        visited = {ROOT_RECORD}
        stack: list[tuple[Record, str]] = [(root, "")]
        record = self._record
        while stack:  # each directory record is pushed at most once (`visited`)
            drec, dpath = stack.pop()
            for name, num, seq in self._dir_entries(drec):
                if num < FIRST_USER_RECORD:
                    continue
                if not name or name in (".", "..") or "/" in name or "\0" in name:
                    raise CorruptStructure(f"directory {drec.num} holds an invalid name {name!r}")
                path = f"{dpath}/{name}" if dpath else name
                rec = record(num)
                if rec is None or rec.base or (seq and rec.seq != seq):
                    self._note(f"{path}: stale index entry for MFT record {num}")
                    continue
                times = entry_times(rec.times) if rec.times else _NO_TIMES
                if rec.flags & RECORD_IS_DIRECTORY:
                    if num in visited:
                        raise CorruptStructure(f"directory loop: record {num} reached twice")
                    visited.add(num)
                    stack.append((rec, path))
                    yield FsEntry(path, "dir", 0, num, *times)
                    continue
                data = self._data(rec)
                if data is None:
                    yield FsEntry(path, "file", 0, num, *times)
                elif data.value is not None:
                    yield FsEntry(path, "file", len(data.value), num, *times, data.value)
                else:
                    extents = [Extent(v, lcn, n) for v, lcn, n in data.runs or ()]
                    entry = FsEntry(path, "file", data.data_size, num, *times, None, extents)
                    if data.flags & ATTR_COMPRESSED:
                        entry.compression_unit = 1 << data.comp_unit
                    if data.init_size < data.data_size:
                        entry.initialized = data.init_size
                    yield entry

    # --- clusters -------------------------------------------------------------------------

    def used_runs(self) -> list[tuple[int, int]]:
        """Clusters set in $Bitmap (record 6), as coalesced (lcn, length) runs."""
        try:
            return self._used_runs()
        except FsError:
            raise
        except _LOW_LEVEL as exc:
            raise CorruptStructure(f"malformed $Bitmap: {exc!r}") from exc

    def _used_runs(self) -> list[tuple[int, int]]:
        rec = self._record(_BITMAP_RECORD)
        if rec is None:
            raise CorruptStructure("$Bitmap (record 6) is not in use")
        data = self._named(rec, AT_DATA, "")
        total = self.info.total_clusters
        need = -(-total // 8)
        if data is None or data.size < need:
            raise CorruptStructure("$Bitmap is missing or shorter than the volume")
        bitmap = (
            data.value[:need]
            if data.value is not None
            else self._read_runs(data.runs or [], 0, need, metadata=True)
        )
        return bitmap_runs(bitmap, total)

    def unowned_runs(self) -> list[tuple[int, int]]:
        """Clusters in use per $Bitmap that no non-resident attribute of any in-use MFT record
        owns (all records, not only those reached from the root; see the module docstring).
        Clusters of unreadable records count as unowned, and are noted in `problems`."""
        used = self.used_runs()
        try:
            scan = self._load()
        except FsError:
            raise
        except _LOW_LEVEL as exc:
            raise CorruptStructure(f"malformed MFT: {exc!r}") from exc
        for num, why in sorted(scan.bad.items()):
            self._note(f"unreadable MFT record {num}: {why}")
        return subtract_runs(used, coalesce(scan.owned))

    def read_file(self, entry: FsEntry) -> bytes:
        """The unnamed $DATA of the entry's MFT record: resident bytes, or read through its
        runs (sparse = zeros, past the initialized size = zeros, LZNT1-compressed units
        decompressed). Held in memory: meant for checks, not for large files."""
        try:
            return self._read_file(entry)
        except FsError:
            raise
        except _LOW_LEVEL as exc:
            raise CorruptStructure(f"malformed file {entry.path!r}: {exc!r}") from exc

    def _read_file(self, entry: FsEntry) -> bytes:
        rec = self._record(entry.inode)
        if rec is None or rec.base:
            raise CorruptStructure(f"{entry.path}: MFT record {entry.inode} is not in use")
        data = self._data(rec)
        if data is None:
            return b""
        if data.value is not None:
            return data.value
        runs = data.runs or []
        if data.flags & ATTR_ENCRYPTED:
            raise UnsupportedFeature(f"{entry.path} is encrypted (EFS)")
        if data.flags & ATTR_COMPRESSED:
            if data.comp_unit != 4:  # what Windows and ntfs-3g write: 16-cluster units
                raise UnsupportedFeature(
                    f"{entry.path}: compression unit of 2^{data.comp_unit} clusters"
                )
            content = self._read_compressed(runs, data.data_size, 1 << data.comp_unit)
        else:
            content = self._read_runs(runs, 0, min(data.init_size, data.data_size))
        if data.init_size < data.data_size:
            content = content[: data.init_size] + bytes(data.data_size - data.init_size)
        return content

    def _read_compressed(self, runs: list[Run], size: int, unit: int) -> bytes:
        """Content of a compressed attribute, one compression unit (`unit` clusters) at a time."""
        cs = self.info.cluster_size
        return compressed_content(runs, size, unit, cs, lambda lcn, n: self._read(lcn * cs, n * cs))
