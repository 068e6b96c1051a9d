"""Errors of the library layer (what the operator asked for cannot be done)."""

from __future__ import annotations


class LibraryError(Exception):
    """Base: a library request that is wrong for the library's current state or layout."""


class BadLibrarySpec(LibraryError):
    """A library address that does not parse or names no library."""


class UnknownBarcode(LibraryError):
    """No cartridge with that barcode is in the library."""


class SlotOutOfRange(LibraryError):
    """A slot number outside the library."""


class DriveOutOfRange(LibraryError):
    """A drive number outside the library."""


class DriveOccupied(LibraryError):
    """The drive already holds a cartridge."""


class DriveEmpty(LibraryError):
    """The drive holds no cartridge."""


class SlotOccupied(LibraryError):
    """The slot already holds a cartridge."""


class NoFreeSlot(LibraryError):
    """Every storage slot is full."""


class DriveOffline(LibraryError):
    """The drive is marked offline."""


class SlotEmpty(LibraryError):
    """The slot holds no cartridge."""


class InvalidName(LibraryError, ValueError):
    """A library group or virtual library name outside the allowed characters or length."""


class CorruptState(LibraryError):
    """A tapeflow state file of the library (groups, virtual libraries) does not parse."""


class UnknownGroup(LibraryError):
    """No library group of that name."""


class GroupExists(LibraryError):
    """A library group of that name already exists."""


class GroupOverlap(LibraryError):
    """The slot range overlaps another library group's."""


class UnknownPartition(LibraryError):
    """No virtual library of that name in the physical library."""


class PartitionExists(LibraryError):
    """A virtual library of that name already exists."""


class PartitionOverlap(LibraryError):
    """A drive or slot already belongs to another virtual library."""


class EmptyPartition(LibraryError):
    """A virtual library needs at least one drive and one slot."""


class PartitionBusy(LibraryError):
    """A drive of the virtual library is in use by a job."""


class NotInPartition(LibraryError):
    """The drive, slot or cartridge is outside this virtual library."""


class NoCleaningCartridge(LibraryError):
    """No cleaning cartridge with uses left is in the library."""


class MediaBusy(LibraryError):
    """A running job holds the cartridge."""


class DriveInUse(LibraryError):
    """Another job holds the drive's lease: what it holds cannot be moved now."""


class EraseUnsupported(LibraryError):
    """The drive does not implement ERASE (tgt 1.0.85), so a long erase cannot be done."""
