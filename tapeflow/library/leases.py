"""Exclusive leases on drives and cartridges, safe across threads, processes and flows.

A lease is an flock on a file in the library's state directory: it is released when the holder
closes it or dies (kill -9 included), so a crashed slave never leaves a drive or a cartridge
locked. Two master jobs on one host therefore never share a drive or a cartridge.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable
from pathlib import Path

from tapeflow.library.errors import LibraryError


class LeaseTimeout(LibraryError):
    """No drive (or cartridge) became free in time."""


class Lease:
    """One held lock file; `release()` (or leaving the with-block) frees it."""

    def __init__(self, path: Path, fd: int, key: str) -> None:
        self.path, self._fd, self.key = path, fd, key

    @property
    def held(self) -> bool:
        """True until released."""
        return self._fd >= 0

    def release(self) -> None:
        """Unlock and close; safe to call twice."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _try(path: Path, key: str, holder: str) -> Lease | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{holder} pid={os.getpid()} since={time.time():.3f}\n".encode())
    return Lease(path, fd, key)


class LeaseBoard:
    """The lock files of one library: `drive-<n>.lease` and `media-<barcode>.lease`."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "leases"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in key)
        return self.dir / f"{kind}-{safe}.lease"

    def try_drive(self, drives: Iterable[int], holder: str) -> Lease | None:
        """Lease the first free drive among `drives`, or None."""
        for n in drives:
            lease = _try(self._path("drive", str(n)), str(n), holder)
            if lease is not None:
                return lease
        return None

    def drive(
        self, drives: Iterable[int], holder: str, timeout: float = 3600.0, poll: float = 0.02
    ) -> Lease:
        """Wait (polling every `poll` s) for a free drive among `drives`."""
        candidates = list(drives)
        if not candidates:
            raise LeaseTimeout("no online drive to lease")
        deadline = time.monotonic() + timeout
        while (lease := self.try_drive(candidates, holder)) is None:
            if time.monotonic() >= deadline:
                raise LeaseTimeout(f"no free drive among {candidates} within {timeout:.0f} s")
            time.sleep(poll)
        return lease

    def media(
        self, barcode: str, holder: str, timeout: float = 3600.0, poll: float = 0.05
    ) -> Lease:
        """Wait for cartridge `barcode` to be free (another job may be writing it)."""
        deadline = time.monotonic() + timeout
        while (lease := self.try_media(barcode, holder)) is None:
            if time.monotonic() >= deadline:
                raise LeaseTimeout(f"cartridge {barcode} still in use after {timeout:.0f} s")
            time.sleep(poll)
        return lease

    def try_media(self, barcode: str, holder: str) -> Lease | None:
        """Lease cartridge `barcode` if nobody holds it."""
        return _try(self._path("media", barcode), barcode, holder)
