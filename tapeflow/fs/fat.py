"""FAT12/16/32 volume parser: the block-to-file map (path -> cluster extents) of a FAT volume,
read straight from its image, with The Sleuth Kit's inode numbering so maps can be checked
against `fls`/`istat`.

Layout (sectors relative to the volume start, as TSK counts them):
  reserved (boot sector...) | FAT 0 .. FAT n-1 | root dir (FAT12/16 only) | clusters 2..max
TSK numbers directory-entry slots from the first sector after the FATs ("firstdatasect"):
slot k of sector s has inode (s - firstdatasect) * (sector_size / 32) + k + 3; the root is 2.

Every structure comes from `fat_layout`; every loop is bounded (a cluster is walked at most
once per pass, chains are capped by the size they must cover), and a hostile image raises only
`FsError` subclasses."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import wraps
from typing import BinaryIO, ParamSpec, TypeVar

from construct import ConstructError

from tapeflow.fs import fat_layout as L
from tapeflow.fs.errors import BadBootSector, CorruptStructure, FsError, UnknownFilesystem
from tapeflow.fs.fat_table import BITS, FatTable, fat_bytes
from tapeflow.fs.model import Extent, FsEntry, Volume, VolumeInfo

FAT12_MAX_CLUSTERS = 4085  # fewer clusters than this: FAT12 (Microsoft's rule)
FAT16_MAX_CLUSTERS = 65525  # fewer than this: FAT16; otherwise FAT32
FAT32_MAX_CLUSTER = 0x0FFFFFF6
ROOT_INODE = 2
FIRST_INODE = 3
LABEL_SCAN = 64 * 1024  # bytes of the root directory searched for the volume label at open
# Longest path accepted (Linux PATH_MAX): bounds the memory a hostile deep tree can cost, since
# every pending directory holds its full path.
MAX_PATH = 4096

_DOT_NAMES = (b".          ", b"..         ")
_STRAY = (IndexError, KeyError, ValueError, OverflowError, struct.error, ConstructError)

P = ParamSpec("P")
T = TypeVar("T")


def _typed_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Turn a stray low-level error on hostile input into CorruptStructure (never leak)."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except FsError:
            raise
        except _STRAY as exc:
            raise CorruptStructure(f"{func.__name__}: malformed structure ({exc!r})") from exc

    return wrapper


class FatVolume(Volume):
    """A FAT12/16/32 volume in `image` starting at byte `offset`. Opening parses and validates
    the boot sector; the FAT is loaded on first use and the tree is walked by `entries()`."""

    def __init__(self, image: BinaryIO, offset: int = 0) -> None:
        self._image = image
        self._offset = offset
        self._fat: FatTable | None = None
        self._owned: bytearray | None = None  # clusters reached from the root by the last walk
        self._times: dict[int, datetime | None] = {}
        try:
            self._parse_boot_sector()
            label = self._root_label()
        except FsError:
            raise
        except _STRAY as exc:
            raise BadBootSector(f"unreadable boot sector ({exc!r})") from exc
        self.info = VolumeInfo(
            kind=self.kind,
            size=self._total_sectors * self._bps,
            sector_size=self._bps,
            cluster_size=self._cs,
            cluster_base=self._first_cluster_sector * self._bps - 2 * self._cs,
            total_clusters=self._max_cluster + 1,
            label=label if label is not None else self._bpb_label,
            serial=self._serial,
        )

    @classmethod
    def open(cls, image: BinaryIO, offset: int = 0) -> FatVolume:
        """Open the FAT volume at `offset` of `image` (validates the boot sector)."""
        return cls(image, offset)

    # ---------------------------------------------------------------- boot sector / geometry

    def _parse_boot_sector(self) -> None:
        """Read the BPB, decide FAT12/16/32 by cluster count and validate the geometry."""
        self._image.seek(0, 2)
        available = self._image.tell() - self._offset
        if available < L.SECTOR_MIN:
            raise UnknownFilesystem(f"image holds {max(available, 0)} bytes: no boot sector")
        raw = self._read(0, L.SECTOR_MIN, what="boot sector")
        jump_ok = (raw[0] == 0xEB and raw[2] == 0x90) or raw[0] == 0xE9
        if raw[3:11] in (b"NTFS    ", b"EXFAT   ") or not (jump_ok or raw[510:] == L.SIGNATURE):
            raise UnknownFilesystem("no FAT boot sector (jump instruction and 0x55AA missing)")
        bpb = L.BPB.parse(raw)
        bps = bpb.bytes_per_sector
        if bps < L.SECTOR_MIN or bps > L.SECTOR_MAX or bps & (bps - 1):
            raise BadBootSector(f"bytes per sector {bps} is not a power of two in 512..4096")
        spc = bpb.sectors_per_cluster
        if spc == 0 or spc & (spc - 1):
            raise BadBootSector(f"sectors per cluster {spc} is not a power of two")
        if bpb.reserved_sectors == 0:
            raise BadBootSector("no reserved sectors (the boot sector is one)")
        if bpb.num_fats == 0:
            raise BadBootSector("no FAT")
        total = bpb.total_sectors_16 or bpb.total_sectors_32
        if total == 0:
            raise BadBootSector("total sector count is zero")
        ext32 = L.BOOT_SECTOR_32.parse(raw)
        fat_size = bpb.fat_size_16 or ext32.fat32.fat_size_32
        if fat_size == 0:
            raise BadBootSector("FAT size is zero")
        root_sectors = (bpb.root_entries * L.DIR_ENTRY_SIZE + bps - 1) // bps
        first_data = bpb.reserved_sectors + bpb.num_fats * fat_size
        first_cluster = first_data + root_sectors
        if first_cluster >= total:
            raise BadBootSector(
                f"FATs and root directory end at sector {first_cluster}, past the volume's "
                f"{total} sectors"
            )
        count = (total - first_cluster) // spc
        if count == 0:
            raise BadBootSector("no data cluster")
        if count < FAT12_MAX_CLUSTERS:
            kind = "fat12"
        elif count < FAT16_MAX_CLUSTERS:
            kind = "fat16"
        else:
            kind = "fat32"
        active_fat = 0
        if kind == "fat32":
            if bpb.root_entries != 0 or bpb.fat_size_16 != 0:
                raise BadBootSector("FAT32 by cluster count, but the BPB has FAT12/16 fields")
            if ext32.fat32.ext_flags & 0x80:
                active_fat = ext32.fat32.ext_flags & 0x0F
                if active_fat >= bpb.num_fats:
                    raise BadBootSector(f"active FAT {active_fat} of {bpb.num_fats}")
            ebpb = ext32.ebpb
        else:
            if bpb.root_entries == 0:
                raise BadBootSector(f"{kind.upper()} by cluster count, but no root directory")
            ebpb = L.BOOT_SECTOR_16.parse(raw).ebpb
        # Highest cluster: what the data area holds, capped by what the FAT can describe.
        fat_entries = fat_size * bps * 8 // BITS[kind]
        max_cluster = min(count + 1, fat_entries - 1)
        if kind == "fat32":
            max_cluster = min(max_cluster, FAT32_MAX_CLUSTER)
        if max_cluster < 2:
            raise BadBootSector("the FAT describes no data cluster")
        if total * bps > available:
            raise BadBootSector(
                f"volume declares {total * bps} bytes but the image holds {available}"
            )
        self.kind = kind
        self._bps = bps
        self._cs = bps * spc
        self._epc = self._cs // L.DIR_ENTRY_SIZE  # directory entries per cluster
        self._total_sectors = total
        self._fat_offset = (bpb.reserved_sectors + active_fat * fat_size) * bps
        self._root_entries = bpb.root_entries
        self._first_data_sector = first_data
        self._first_cluster_sector = first_cluster
        self._max_cluster = max_cluster
        # inode of slot 0 of cluster 2; slot j of cluster c is that + (c - 2) * epc + j
        self._cluster_inode_base = root_sectors * (bps // L.DIR_ENTRY_SIZE) + FIRST_INODE
        self._root_cluster = 0
        if kind == "fat32":
            self._root_cluster = ext32.fat32.root_cluster
            if not 2 <= self._root_cluster <= max_cluster:
                raise BadBootSector(f"root cluster {self._root_cluster} outside 2..{max_cluster}")
        self._serial = ebpb.volume_id if ebpb.boot_signature in (0x28, 0x29) else 0
        label = b""
        if ebpb.boot_signature == 0x29 and ebpb.volume_label != b"NO NAME    ":
            label = ebpb.volume_label
        self._bpb_label = L.safe_name(label.decode("cp437").rstrip(" "))

    def _root_label(self) -> str | None:
        """The volume label entry in the start of the root directory (Windows shows this one
        rather than the boot sector's copy); None when there is none."""
        if self.kind == "fat32":
            pos = self._cluster_pos(self._root_cluster)
            length = self._cs
        else:
            pos = self._first_data_sector * self._bps
            length = self._root_entries * L.DIR_ENTRY_SIZE
        data = self._read(pos, min(length, LABEL_SCAN), what="root directory")
        for slot in L.DIR_ENTRY_FAST.iter_unpack(data):
            first = slot[0][0]
            if first == L.SLOT_END:
                break
            if first != L.SLOT_FREE and slot[2] & 0x3F != L.ATTR_LFN and slot[2] & 0x08:
                return L.safe_name((slot[0] + slot[1]).decode("cp437").rstrip(" "))
        return None

    # ------------------------------------------------------------------------------- I/O

    def _read(self, pos: int, length: int, what: str = "data") -> bytes:
        """`length` bytes at volume byte `pos`; a short read means the image is truncated."""
        self._image.seek(self._offset + pos)
        data = self._image.read(length)
        if len(data) != length:
            raise CorruptStructure(f"{what}: {length} bytes at {pos} run past the image end")
        return data

    def _cluster_pos(self, lcn: int) -> int:
        """Byte offset of cluster `lcn` within the volume."""
        return self._first_cluster_sector * self._bps + (lcn - 2) * self._cs

    def _table(self) -> FatTable:
        """The active FAT, read and decoded on first use."""
        if self._fat is None:
            n = self._max_cluster + 1
            raw = self._read(self._fat_offset, fat_bytes(self.kind, n), what="FAT")
            self._fat = FatTable(self.kind, raw, self._max_cluster)
        return self._fat

    # --------------------------------------------------------------------- directories

    def _time(self, date: int, time: int, tenths: int = -1) -> datetime | None:
        """dos_datetime through the per-volume cache the directory loop reads inline (a volume
        has few distinct timestamps); keys: date << 16 | time, or with tenths (creation) the
        same << 8 | tenths | 1 << 40."""
        if len(self._times) > 200_000:
            self._times.clear()
        if tenths < 0:
            value = self._times[date << 16 | time] = L.dos_datetime(date, time)
        else:
            key = (date << 16 | time) << 8 | tenths | 1 << 40
            value = self._times[key] = L.dos_datetime(date, time, tenths)
        return value

    def _directory(
        self, prefix: str, extents: list[Extent] | None, seen: bytearray
    ) -> Iterator[FsEntry]:
        """Entries of one directory (root when `extents` is None on FAT12/16), in slot order;
        subdirectory chains are walked (and marked in `seen`) as they are met."""
        if extents is None:
            data = self._read(
                self._first_data_sector * self._bps,
                self._root_entries * L.DIR_ENTRY_SIZE,
                what="root directory",
            )
            bases = [FIRST_INODE]
            per = len(data) // L.DIR_ENTRY_SIZE or 1
        else:
            cs = self._cs
            data = b"".join(
                self._read(self._cluster_pos(x.lcn), x.length * cs, what=prefix or "root")
                for x in extents
            )
            epc = self._epc
            first = self._cluster_inode_base - 2 * epc
            bases = [first + c * epc for x in extents for c in range(x.lcn, x.lcn + x.length)]
            per = epc
        fat32 = self.kind == "fat32"
        cs = self._cs
        tcache = self._times
        time_of = self._time
        chain = self._table().chain
        unpack_short = L.DIR_ENTRY_FAST.unpack_from
        unpack_lfn = L.LFN_ENTRY_FAST.unpack_from
        lfn_payload = L.lfn_payload
        pieces: list[bytes] = []
        lfn_sum = -1
        lfn_next = 0
        for off in range(0, len(data) - L.DIR_ENTRY_SIZE + 1, L.DIR_ENTRY_SIZE):
            first = data[off]
            if first == L.SLOT_END:
                break
            if first == L.SLOT_FREE:
                pieces = []
                continue
            attr = data[off + 11]
            if attr & 0x3F == L.ATTR_LFN:
                lfn = unpack_lfn(data, off)
                if first & L.LFN_LAST:
                    n = first & L.LFN_SEQ_MASK
                    if 1 <= n <= L.LFN_MAX_SLOTS and first < 0x60:
                        pieces = [lfn_payload(lfn)]
                        lfn_sum = lfn[4]
                        lfn_next = n - 1
                    else:
                        pieces = []
                elif pieces and first == lfn_next and first >= 1 and lfn[4] == lfn_sum:
                    pieces.append(lfn_payload(lfn))
                    lfn_next -= 1
                else:
                    pieces = []
                continue
            if attr & L.ATTR_VOLUME_ID:
                pieces = []
                continue
            (name, ext, attr, nt, tenths, ctime, cdate, adate, high, wtime, wdate, low, size) = (
                unpack_short(data, off)
            )
            if first == 0x2E and (name + ext) in _DOT_NAMES:
                pieces = []
                continue
            leaf = ""
            if pieces:
                if lfn_next == 0 and L.lfn_checksum(name + ext) == lfn_sum:
                    pieces.reverse()
                    leaf = L.long_name(pieces)
                pieces = []
            if not leaf or leaf == "." or leaf == "..":
                leaf = L.short_name(name, ext, nt)
                if not leaf or leaf == "." or leaf == "..":
                    leaf = "^" * max(1, len(leaf))
            path = prefix + leaf
            if len(path) > MAX_PATH:
                raise CorruptStructure(f"path longer than {MAX_PATH} characters: {path[:80]}...")
            cluster = (high << 16 | low) if fat32 else low
            k, j = divmod(off // L.DIR_ENTRY_SIZE, per)
            inode = bases[k] + j
            if attr & L.ATTR_DIRECTORY:
                if cluster == 0:
                    raise CorruptStructure(f"{path}: directory without a cluster")
                runs = chain(cluster, None, seen, path)
                size = 0
                kind = "dir"
            else:
                if cluster == 0:
                    if size:
                        raise CorruptStructure(f"{path}: {size} bytes but no cluster")
                    runs = []
                else:
                    runs = chain(cluster, (size + cs - 1) // cs, seen, path)
                kind = "file"
            key = wdate << 16 | wtime
            mtime = tcache[key] if key in tcache else time_of(wdate, wtime)
            key = adate << 16
            atime = tcache[key] if key in tcache else time_of(adate, 0)
            key = (cdate << 16 | ctime) << 8 | tenths | 1 << 40
            crtime = tcache[key] if key in tcache else time_of(cdate, ctime, tenths)
            yield FsEntry(
                path,
                kind,
                size,
                inode,
                mtime,
                atime,
                None,
                crtime,
                None,
                runs,
            )

    def _walk(self) -> Iterator[FsEntry]:
        """Depth-first walk of the tree from the root; records the clusters it reached."""
        seen = bytearray(self._max_cluster + 1)
        root: list[Extent] | None = None
        if self.kind == "fat32":
            root = self._table().chain(self._root_cluster, None, seen, "root directory")
        stack: list[tuple[str, list[Extent] | None]] = [("", root)]
        while stack:
            prefix, extents = stack.pop()
            subdirs: list[tuple[str, list[Extent] | None]] = []
            for entry in self._directory(prefix, extents, seen):
                yield entry
                if entry.type == "dir":
                    subdirs.append((entry.path + "/", entry.extents))
            subdirs.reverse()
            stack.extend(subdirs)
        self._owned = seen

    # ---------------------------------------------------------------------- interface

    def entries(self) -> Iterator[FsEntry]:
        """Every file and directory below the root, parents first, each with its extents."""
        try:
            yield from self._walk()
        except FsError:
            raise
        except _STRAY as exc:
            raise CorruptStructure(f"directory walk: malformed structure ({exc!r})") from exc

    @_typed_errors
    def used_runs(self) -> list[tuple[int, int]]:
        """Allocated clusters (FAT value neither free nor bad) as coalesced (lcn, length) runs."""
        return self._table().allocated_runs()

    @_typed_errors
    def unowned_runs(self) -> list[tuple[int, int]]:
        """Allocated clusters no chain reached from the root reaches: lost chains."""
        if self._owned is None:
            for _ in self.entries():
                pass
        return self._table().allocated_runs(self._owned)

    @_typed_errors
    def read_file(self, entry: FsEntry) -> bytes:
        """The file's bytes read through its extents, cut to its size."""
        parts = []
        remaining = entry.size
        for x in entry.extents:
            if remaining <= 0:
                break
            if x.lcn is None or not 2 <= x.lcn <= x.lcn + x.length - 1 <= self._max_cluster:
                raise CorruptStructure(f"{entry.path}: extent {x} outside the volume")
            length = min(x.length * self._cs, remaining)
            parts.append(self._read(self._cluster_pos(x.lcn), length, what=entry.path))
            remaining -= length
        if remaining > 0:
            raise CorruptStructure(f"{entry.path}: extents cover less than {entry.size} bytes")
        return b"".join(parts)
