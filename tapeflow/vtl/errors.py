"""Typed errors of the embedded virtual tape library (operator actions and on-disk problems).

SCSI-level failures never raise: they come back as CHECK CONDITION with sense, like a device.
"""

from __future__ import annotations


class VtlError(Exception):
    """Base class of every error raised by the virtual tape library."""


class NotALibraryError(VtlError):
    """The directory is not a virtual tape library (missing or unreadable library.json)."""


class LibraryExistsError(VtlError):
    """create() refused to overwrite an existing library (or a non-empty directory)."""


class CorruptLibraryError(VtlError):
    """A library file exists but its content is invalid (wrong magic, bad JSON, bad fields)."""


class NoSuchUnitError(VtlError, IndexError):
    """A drive index or LUN outside the library."""


class UnknownCartridgeError(VtlError, KeyError):
    """No cartridge with that barcode exists (in the library or on the shelf)."""


class CartridgeInLibraryError(VtlError):
    """insert() of a barcode that is already inside the library."""


class MailSlotError(VtlError):
    """An import/export element is out of range, occupied (insert) or empty (remove)."""


class InvalidBarcodeError(VtlError, ValueError):
    """A barcode that is not 1-32 characters of [A-Za-z0-9_-]."""
