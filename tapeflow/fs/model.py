"""What every volume parser produces: files with their extents (the block-to-file map), as
plain objects and as Arrow tables shaped for the catalog's Parquet rows.

Cluster addressing is uniform across FAT and NTFS: the byte offset of cluster `lcn` within the
volume is `cluster_base + lcn * cluster_size` (NTFS: base 0; FAT: base = data area - 2 clusters,
since FAT's first data cluster is number 2)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa


@dataclass(frozen=True, slots=True)
class Extent:
    """A run of a file's clusters: `length` clusters from file cluster `vcn` at volume cluster
    `lcn`; `lcn` is None for a sparse run (reads as zeros, nothing on disk)."""

    vcn: int
    lcn: int | None
    length: int


@dataclass(slots=True)
class FsEntry:
    """One file or directory of a volume."""

    path: str  # '/'-separated, relative to the volume root, no leading '/'
    type: str  # "file" | "dir"
    size: int  # logical size in bytes (0 for directories)
    inode: int  # NTFS: MFT record number; FAT: The Sleuth Kit's inode address of the entry
    mtime: datetime | None = None
    atime: datetime | None = None
    ctime: datetime | None = None  # NTFS: MFT change time; FAT: None
    crtime: datetime | None = None  # creation time
    resident: bytes | None = None  # NTFS resident $DATA (then `extents` is empty)
    extents: list[Extent] = field(default_factory=list)
    compression_unit: int = 0  # NTFS: clusters per LZNT1 compression unit; 0 = not compressed
    initialized: int | None = None  # NTFS: bytes of valid data when less than `size`


@dataclass(frozen=True, slots=True)
class VolumeInfo:
    """Geometry a block-level backup needs, whatever the filesystem."""

    kind: str  # "fat12" | "fat16" | "fat32" | "ntfs"
    size: int  # bytes of the volume
    sector_size: int
    cluster_size: int
    cluster_base: int  # byte offset of cluster 0 (see module docstring)
    total_clusters: int  # clusters addressable by the filesystem (FAT: highest valid + 1)
    label: str = ""
    serial: int = 0

    def cluster_offset(self, lcn: int) -> int:
        """Byte offset of volume cluster `lcn` within the volume."""
        return self.cluster_base + lcn * self.cluster_size


VOLUME_FILE_SCHEMA = pa.schema(
    [
        pa.field("inode", pa.uint64(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("mtime", pa.timestamp("us", tz="UTC")),
        pa.field("atime", pa.timestamp("us", tz="UTC")),
        pa.field("ctime", pa.timestamp("us", tz="UTC")),
        pa.field("crtime", pa.timestamp("us", tz="UTC")),
        pa.field("resident", pa.binary()),
        pa.field("compression_unit", pa.int32()),
        pa.field("initialized", pa.int64()),
    ]
)

# One row per run; `lcn` null = sparse. Joined to files by inode.
EXTENT_SCHEMA = pa.schema(
    [
        pa.field("inode", pa.uint64(), nullable=False),
        pa.field("vcn", pa.int64(), nullable=False),
        pa.field("lcn", pa.int64()),
        pa.field("length", pa.int64(), nullable=False),
    ]
)


def entries_to_batches(
    entries: Iterable[FsEntry], batch_size: int = 65536
) -> Iterator[tuple[pa.RecordBatch, pa.RecordBatch]]:
    """Turn parsed entries into (files, extents) Arrow batches of about `batch_size` files."""
    cols: dict[str, list] = {name: [] for name in VOLUME_FILE_SCHEMA.names}
    ext: dict[str, list] = {name: [] for name in EXTENT_SCHEMA.names}

    def flush() -> tuple[pa.RecordBatch, pa.RecordBatch]:
        out = (
            pa.RecordBatch.from_pydict(cols, schema=VOLUME_FILE_SCHEMA),
            pa.RecordBatch.from_pydict(ext, schema=EXTENT_SCHEMA),
        )
        for v in (*cols.values(), *ext.values()):
            v.clear()
        return out

    for e in entries:
        cols["inode"].append(e.inode)
        cols["path"].append(e.path)
        cols["type"].append(e.type)
        cols["size"].append(e.size)
        cols["mtime"].append(e.mtime)
        cols["atime"].append(e.atime)
        cols["ctime"].append(e.ctime)
        cols["crtime"].append(e.crtime)
        cols["resident"].append(e.resident)
        cols["compression_unit"].append(e.compression_unit or None)
        cols["initialized"].append(e.initialized)
        for x in e.extents:
            ext["inode"].append(e.inode)
            ext["vcn"].append(x.vcn)
            ext["lcn"].append(x.lcn)
            ext["length"].append(x.length)
        if len(cols["inode"]) >= batch_size:
            yield flush()
    if cols["inode"]:
        yield flush()


def coalesce(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge (start, length) cluster runs that touch or overlap; sorted result."""
    out: list[tuple[int, int]] = []
    for start, length in sorted(runs):
        if length <= 0:
            continue
        if out and start <= out[-1][0] + out[-1][1]:
            last_start, last_len = out[-1]
            out[-1] = (last_start, max(last_len, start + length - last_start))
        else:
            out.append((start, length))
    return out


class Volume:
    """Interface both parsers implement. `image` is a binary file object (seekable, read-only
    use); the volume starts at byte `offset` of it. Parsing is lazy: opening reads the boot
    sector and the little needed to validate it; `entries()` walks the tree."""

    info: VolumeInfo

    def entries(self) -> Iterator[FsEntry]:
        """Every file and directory below the root (root itself excluded), parents first."""
        raise NotImplementedError

    def used_runs(self) -> list[tuple[int, int]]:
        """Allocated clusters as coalesced (lcn, length) runs (FAT: non-free FAT entries;
        NTFS: set bits of $Bitmap)."""
        raise NotImplementedError

    def unowned_runs(self) -> list[tuple[int, int]]:
        """Allocated clusters that belong to no file or directory reached from the root
        (FAT: lost chains; NTFS: in use per $Bitmap but in no walked attribute)."""
        raise NotImplementedError

    def read_file(self, entry: FsEntry) -> bytes:
        """The file's content read through its extents (or resident bytes); for checks."""
        raise NotImplementedError
