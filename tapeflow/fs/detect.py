"""Pick the parser for a volume from its boot sector."""

from __future__ import annotations

from typing import BinaryIO

from tapeflow.fs.errors import UnknownFilesystem
from tapeflow.fs.model import Volume


def open_volume(image: BinaryIO, offset: int = 0) -> Volume:
    """Open the FAT or NTFS volume at byte `offset` of `image`; UnknownFilesystem otherwise."""
    from tapeflow.fs.fat import FatVolume
    from tapeflow.fs.ntfs import NtfsVolume

    image.seek(offset)
    boot = image.read(512)
    if len(boot) < 512:
        raise UnknownFilesystem(f"only {len(boot)} bytes where a boot sector should be")
    if boot[3:11] == b"NTFS    ":
        return NtfsVolume.open(image, offset)
    if boot[510:512] == b"\x55\xaa" or boot[0] in (0xEB, 0xE9):
        return FatVolume.open(image, offset)
    raise UnknownFilesystem("neither an NTFS nor a FAT boot sector")
