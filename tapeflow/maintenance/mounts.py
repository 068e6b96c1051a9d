"""Cartridge mounting for maintenance readers: load by barcode into a free drive, reuse a drive
that already holds it, evict the least recently used of ours when no drive is free."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from types import TracebackType

from tapeflow.library import Library
from tapeflow.library.errors import LibraryError
from tapeflow.maintenance.errors import CartridgeNotInLibrary, NoDriveAvailable
from tapeflow.scsi.tape import TapeDrive


class Mounts:
    """Open drive handles by barcode; unloads on close only what it loaded itself."""

    def __init__(self, lib: Library, drives: Sequence[int] | None = None) -> None:
        """Use `drives` (default: the library's online drives)."""
        self.lib = lib
        self.drives = list(drives) if drives is not None else lib.online_drives()
        self._held: dict[str, tuple[int, TapeDrive, bool]] = {}  # barcode -> drive, handle, ours
        self._order: list[str] = []  # least recently used first

    def library_barcodes(self) -> list[str]:
        """Data cartridges in the library (slots, mail slots, drives), cleaning ones left out."""
        return [b for b in self.lib.inventory().barcodes() if not b.startswith("CLN")]

    def mount(self, barcode: str, keep: Collection[str] = ()) -> TapeDrive:
        """A handle to a drive holding `barcode` (loaded if needed; `keep` are not evicted)."""
        if barcode in self._held:
            self._touch(barcode)
            return self._held[barcode][1]
        inv = self.lib.inventory()
        for d in inv.drives:
            if d.full and d.barcode == barcode:
                return self._open(barcode, d.number, loaded=False)
        if barcode not in inv.barcodes():
            raise CartridgeNotInLibrary(barcode)
        free = [d.number for d in inv.drives if not d.full and d.number in self.drives]
        if not free:
            victims = [b for b in self._order if b not in keep and self._held[b][2]]
            if not victims:
                raise NoDriveAvailable(f"no free drive among {self.drives} to load {barcode}")
            number = self._held[victims[0]][0]
            self.release(victims[0])
            free = [number]
        try:
            self.lib.load(free[0], barcode=barcode)
        except LibraryError as exc:
            raise CartridgeNotInLibrary(barcode, str(exc)) from exc
        return self._open(barcode, free[0], loaded=True)

    def _open(self, barcode: str, number: int, *, loaded: bool) -> TapeDrive:
        handle = self.lib.open_drive(number)
        self._held[barcode] = (number, handle, loaded)
        self._touch(barcode)
        return handle

    def _touch(self, barcode: str) -> None:
        if barcode in self._order:
            self._order.remove(barcode)
        self._order.append(barcode)

    def release(self, barcode: str) -> None:
        """Close the handle; unload the cartridge if we loaded it."""
        held = self._held.pop(barcode, None)
        if barcode in self._order:
            self._order.remove(barcode)
        if held is None:
            return
        number, handle, loaded = held
        try:
            handle.close()
        finally:
            if loaded:
                self.lib.unload(number)

    def close(self) -> None:
        """Release everything (each even if another fails)."""
        errors: list[BaseException] = []
        for barcode in list(self._held):
            try:
                self.release(barcode)
            except Exception as exc:  # keep going: every drive must be freed
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Mounts:
        """Use as a context manager."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Release everything."""
        self.close()
