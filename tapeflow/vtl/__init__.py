"""Embedded virtual tape library: a file-backed changer and drives that answer SCSI CDBs."""

from tapeflow.vtl.errors import (
    CartridgeInLibraryError,
    CorruptLibraryError,
    InvalidBarcodeError,
    LibraryExistsError,
    MailSlotError,
    NoSuchUnitError,
    NotALibraryError,
    UnknownCartridgeError,
    VtlError,
)
from tapeflow.vtl.library import VirtualLibrary

__all__ = [
    "CartridgeInLibraryError",
    "CorruptLibraryError",
    "InvalidBarcodeError",
    "LibraryExistsError",
    "MailSlotError",
    "NoSuchUnitError",
    "NotALibraryError",
    "UnknownCartridgeError",
    "VirtualLibrary",
    "VtlError",
]
