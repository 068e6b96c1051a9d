"""The NTFS boot sector (BPB): validated geometry, or BadBootSector saying what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadBootSector, UnknownFilesystem
from .ntfs_layout import BOOT_SECTOR

_BOOT = BOOT_SECTOR.compile()


@dataclass(frozen=True, slots=True)
class BootParams:
    """What the rest of the parser needs from the boot sector, checked for consistency."""

    sector_size: int
    cluster_size: int
    total_sectors: int
    total_clusters: int
    mft_lcn: int
    record_size: int  # bytes of an MFT record
    index_record_size: int  # bytes of an INDX block
    serial: int


def _pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _record_bytes(code: int, cluster_size: int, what: str) -> int:
    """Decode a clusters-per-record byte: > 0 counts clusters, < 0 means 2^-code bytes."""
    size = code * cluster_size if code > 0 else 1 << -code if -code < 31 else 0
    if not _pow2(size) or not 512 <= size <= 1 << 16:
        raise BadBootSector(f"{what} size code {code} gives {size} bytes")
    return size


def parse_boot(raw: bytes) -> BootParams:
    """Parse and validate a 512-byte NTFS boot sector."""
    if len(raw) < 512 or raw[3:11] != b"NTFS    ":
        raise UnknownFilesystem("no NTFS boot sector (OEM id 'NTFS    ')")
    b = _BOOT.parse(raw[:512])
    bps = b.bytes_per_sector
    if not _pow2(bps) or not 256 <= bps <= 4096:
        raise BadBootSector(f"bytes per sector {bps} is not a power of two in 256..4096")
    spc = b.sectors_per_cluster
    if spc > 0x80:  # large clusters: 2^(256 - value) sectors
        if 256 - spc > 12:
            raise BadBootSector(f"sectors per cluster code {spc:#x} out of range")
        spc = 1 << (256 - spc)
    if not _pow2(spc):
        raise BadBootSector(f"sectors per cluster {spc} is not a power of two")
    cs = bps * spc
    if cs > 2 << 20:
        raise BadBootSector(f"cluster size {cs} above 2 MiB")
    if b.signature != 0xAA55:
        raise BadBootSector("boot sector lacks its 0x55AA signature")
    total_clusters = b.total_sectors * bps // cs
    if total_clusters < 16 or total_clusters > 1 << 32:
        raise BadBootSector(f"volume of {total_clusters} clusters is out of range")
    for what, lcn in (("MFT", b.mft_lcn), ("MFT mirror", b.mftmirr_lcn)):
        if lcn == 0 or lcn >= total_clusters:
            raise BadBootSector(f"{what} cluster {lcn} outside the volume")
    return BootParams(
        sector_size=bps,
        cluster_size=cs,
        total_sectors=b.total_sectors,
        total_clusters=total_clusters,
        mft_lcn=b.mft_lcn,
        record_size=_record_bytes(b.clusters_per_mft_record, cs, "MFT record"),
        index_record_size=_record_bytes(b.clusters_per_index_record, cs, "index record"),
        serial=b.serial,
    )
