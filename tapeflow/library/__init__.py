"""Library layer: inventory, load/unload, drive online state, on any backend."""

from tapeflow.library.errors import LibraryError
from tapeflow.library.library import DriveStatus, Inventory, Library, SlotStatus
from tapeflow.library.spec import LibrarySpec, default_home

__all__ = [
    "DriveStatus",
    "Inventory",
    "Library",
    "LibraryError",
    "LibrarySpec",
    "SlotStatus",
    "default_home",
]
