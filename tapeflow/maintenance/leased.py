"""Mounts that share the library politely with backups and restores: drives and cartridges are
taken through the library's lease board (the same flocks slaves use), so a maintenance reader
never loads a cartridge a backup is appending to, nor a drive a slave holds.

Order, as the verify task does it: the cartridges asked for first (sorted, waiting), then the
drives. Cartridges met only while following a spanned session are tried without waiting: a
busy one is skipped (CartridgeBusy), so a reader never waits while holding a drive.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from contextlib import ExitStack, contextmanager

from tapeflow.library import Library
from tapeflow.library.errors import DriveInUse
from tapeflow.library.leases import Lease, LeaseBoard
from tapeflow.library.media import bring_home
from tapeflow.maintenance.errors import MaintenanceError, NoDriveAvailable
from tapeflow.maintenance.mounts import Mounts
from tapeflow.scsi.tape import TapeDrive

DEFAULT_TIMEOUT = 3600.0


class CartridgeBusy(MaintenanceError):
    """Another job holds the cartridge's lease (it is being written or read)."""


class LeasedMounts(Mounts):
    """Mounts restricted to leased drives; each cartridge is mounted under its media lease."""

    def __init__(
        self, lib: Library, board: LeaseBoard, holder: str, drives: list[int], leased: set[str]
    ) -> None:
        """`drives` are leased by the caller; `leased` cartridges too (kept until close)."""
        super().__init__(lib, drives)
        self.board, self.holder, self.leased = board, holder, leased
        self._media: dict[str, Lease] = {}

    def mount(self, barcode: str, keep: Collection[str] = ()) -> TapeDrive:
        """Mount under the cartridge's lease (taken now, without waiting, if not held)."""
        if barcode in self._held:
            return super().mount(barcode, keep)
        lease = None
        if barcode not in self.leased:
            lease = self.board.try_media(barcode, self.holder)
            if lease is None:
                raise CartridgeBusy(f"cartridge {barcode} is in use by another job")
        try:
            self._bring_home(barcode)
            handle = super().mount(barcode, keep)
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        if lease is not None:
            self._media[barcode] = lease
        return handle

    def _bring_home(self, barcode: str) -> None:
        """A cartridge left in a drive that is not ours (kept for a backup's next slave, or
        left by a killed job) goes back to its slot, under that drive's lease, so we never
        read through a drive someone else may take."""
        try:
            bring_home(self.lib, self.board, barcode, self.holder, mine=self.drives)
        except DriveInUse as exc:
            raise NoDriveAvailable(str(exc)) from exc

    def release(self, barcode: str) -> None:
        """Unload (if we loaded it) and give its lease back (pre-leased ones stay leased)."""
        try:
            super().release(barcode)
        finally:
            lease = self._media.pop(barcode, None)
            if lease is not None:
                lease.release()


@contextmanager
def leased_mounts(
    library: Library,
    holder: str,
    barcodes: Iterable[str] = (),
    *,
    drives: int = 1,
    usable: Iterable[int] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[LeasedMounts]:
    """Lease `barcodes` (waiting), then `drives` free drives among `usable` (default: online
    ones; waiting), clear what killed jobs left in them, and yield mounts over them."""
    board = LeaseBoard(library.state_dir)
    candidates = list(usable) if usable is not None else library.online_drives()
    if not candidates:
        raise NoDriveAvailable("the library has no online drive")
    with ExitStack() as held:
        wanted = sorted(set(barcodes))
        for barcode in wanted:
            held.enter_context(board.media(barcode, holder, timeout))
        numbers: list[int] = []
        for _ in range(max(1, min(drives, len(candidates)))):
            free = [n for n in candidates if n not in numbers]
            lease = held.enter_context(board.drive(free, holder, timeout))
            numbers.append(int(lease.key))
            library.clear(int(lease.key))
        mounts = LeasedMounts(library, board, holder, numbers, set(wanted))
        held.callback(mounts.close)
        yield mounts
