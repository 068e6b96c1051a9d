"""Typed errors of maintenance work: input that cannot be used (not data problems, which are
reported in the results)."""

from __future__ import annotations


class MaintenanceError(Exception):
    """Base of every maintenance error, so one except clause can catch them all."""


class CartridgeNotInLibrary(MaintenanceError):
    """A cartridge the work needs is not in the library (export/import it first)."""

    def __init__(self, barcode: str, detail: str = "") -> None:
        """Keep the barcode for callers."""
        suffix = f": {detail}" if detail else ""
        super().__init__(f"cartridge {barcode!r} is not in the library{suffix}")
        self.barcode = barcode


class NoDriveAvailable(MaintenanceError):
    """Every drive the work may use holds a cartridge it must keep."""


class NoTapeRecorded(MaintenanceError):
    """The catalog knows the session but not where it is on tape (no media_sessions rows)."""


class SourceMissing(MaintenanceError, FileNotFoundError):
    """The directory to compare against does not exist or is not a directory."""


class BadInput(MaintenanceError, ValueError):
    """An argument that cannot be used (bad path, bad glob, negative days...); nothing changed."""


class BadTarget(BadInput):
    """A copy/purge/recovery target that would overlap its source or is not a directory."""


class NoCatalogBackup(MaintenanceError):
    """No catalog backup session at or before the requested date on the cartridges searched."""


class CatalogBackupDamaged(MaintenanceError):
    """A catalog backup read from tape does not match its manifest (checksums, files)."""
