"""Typed errors of the volume parsers: a corrupt or hostile image never hangs or crashes."""

from __future__ import annotations


class FsError(Exception):
    """Base of every volume-parsing error."""


class UnknownFilesystem(FsError):
    """The image carries neither a FAT nor an NTFS boot sector."""


class BadBootSector(FsError):
    """The boot sector / BPB is inconsistent (sizes zero, not a power of two, past the end...)."""


class CorruptStructure(FsError):
    """A metadata structure is damaged: a looping or out-of-range FAT chain, a runlist past
    the volume's end, an MFT record with a bad fixup or signature, a malformed directory."""


class UnsupportedFeature(FsError):
    """The volume uses something this parser does not read (encrypted file content)."""
