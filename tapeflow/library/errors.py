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
