"""Where a volume source lives and how to freeze it: a disk LUN of the job's library
(`disk:<name>`; the embedded SAN snapshots it copy-on-write and has a copy manager; iSCSI LUNs
are copied by the host), an image file (frozen by reflink, else by a verified full copy), or
either one mirrored (snapshot="split-mirror": the source's commands split and rejoin it).

Policy: a backup that claims to be point-in-time is. When no snapshot provider can freeze the
volume, VolumeAccess.open() (or frozen(), if only the snapshot itself finds out) raises
NoSnapshot naming the volume and why, before anything is written to tape -- unless the source
says live_copy=True: then the volume is quiesced where a write probe exists, copied live, and
the FrozenVolume's warnings say it is a live copy, not a point-in-time one."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tapeflow.backup.model import Source
from tapeflow.backup.operations import OperationFailed, resolve, run_operation
from tapeflow.library.spec import LibrarySpec
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sbc import BlockDevice, Geometry, ShortTransfer
from tapeflow.serverless.blockfile import ImageBlockDevice, open_volume_file
from tapeflow.snapshot.errors import NoSnapshot, SnapshotFailed, SnapshotUnsupported
from tapeflow.snapshot.providers import (
    ReflinkProvider,
    Snapshot,
    SnapshotProvider,
    SourceRef,
    SplitMirrorProvider,
    filesystem_of,
)
from tapeflow.snapshot.quiesce import Probe, file_probe, wait_for_quiet

if TYPE_CHECKING:
    from tapeflow.vtl import VirtualLibrary

log = logging.getLogger(__name__)

DISK_PREFIX = "disk:"
LIVE = "live"  # FrozenVolume.method when nothing was frozen


class DiskSnapshot(Snapshot):
    """A copy-on-write snapshot of an embedded disk LUN, read through its own snapshot LUN."""

    def __init__(self, library: VirtualLibrary, disk: str, name: str, size: int) -> None:
        super().__init__(
            source=f"disk:{disk}", method="cow", created=datetime.now(UTC), size=size, path=None
        )
        self.library, self.disk, self.name = library, disk, name

    def device(self) -> BlockDevice:
        """A new handle on the snapshot LUN."""
        return BlockDevice(self.library.disk(self.disk, self.name), f"{self.disk}@{self.name}")

    def _open(self) -> BinaryIO:
        return open_volume_file(self.device())  # type: ignore[return-value]

    def modified_blocks(self, block_size: int) -> list[tuple[int, int]] | None:
        from tapeflow.vtl.disk import CHUNK

        self._check()
        chunks = self.library.disk_store(self.disk).modified_chunks(self.name)
        per = CHUNK // block_size
        return [(c * per, per) for c in chunks]

    def _release(self) -> None:
        self.library.disk_store(self.disk).drop_snapshot(self.name)


class EmbeddedDiskProvider(SnapshotProvider):
    """Snapshots of the embedded SAN's disks (copy-on-write, instant)."""

    name = "embedded-cow"

    def __init__(self, library: VirtualLibrary) -> None:
        self.library = library

    def snapshot(self, source: SourceRef) -> Snapshot:
        disk = str(source).removeprefix(DISK_PREFIX)
        store = self.library.disk_store(disk)
        return DiskSnapshot(self.library, disk, store.snapshot(), store.size)


class SnapshotBlockDevice(BlockDevice):
    """A frozen view only ``Snapshot.open()`` can read (a detached mirror half on a block
    device, or an opener), seen as a read-only 512-byte-block device for the host path."""

    def __init__(self, snap: Snapshot) -> None:
        if snap.size % 512:
            raise SnapshotFailed(f"{snap!r}: size {snap.size} is not a multiple of 512")
        self.name = f"{snap.method} of {snap.source}"
        self._file = snap.open()
        self._lock = threading.Lock()
        self._geometry = Geometry(snap.size // 512, 512)

    def geometry(self) -> Geometry:
        return self._geometry

    def read(self, lba: int, blocks: int) -> bytes:
        want = blocks * 512
        with self._lock:
            self._file.seek(lba * 512)
            data = bytearray()
            while len(data) < want:
                part = self._file.read(want - len(data))
                if not part:
                    break
                data += part
        if len(data) != want:
            raise ShortTransfer(f"{self.name}: {blocks} blocks at {lba} run past its end")
        return bytes(data)

    def write(self, lba: int, data: bytes | memoryview) -> None:
        raise io.UnsupportedOperation(f"{self.name} is a frozen view: it is never written")

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self._file.close()


def _operation(op: str, context: dict[str, str]) -> str:
    """Run a mirror operation: a shell command (context in TAPEFLOW_* variables; its stdout)
    or py:module:function (called with the context; str of what it returns)."""
    fn = resolve(op)
    if fn is None:
        return run_operation(op, context)
    try:
        value = fn(dict(context))
    except Exception as exc:
        raise OperationFailed(f"{op}: {type(exc).__name__}: {exc}") from exc
    return "" if value is None else str(value)


def mirror_provider(source: Source, ref: str) -> SplitMirrorProvider:
    """A SplitMirrorProvider run by the source's mirror_split (its last output line, or return
    value, is the absolute path of the detached half) and mirror_rejoin operations."""
    context = {"source": source.name, "volume": ref}

    def split() -> str:
        """Split the mirror; the detached half's path."""
        lines = [line.strip() for line in _operation(source.mirror_split, context).splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            raise SnapshotFailed(f"mirror_split {source.mirror_split!r} named no detached half")
        half = Path(lines[-1])
        if not half.is_absolute() or not half.exists():
            raise SnapshotFailed(
                f"mirror_split {source.mirror_split!r} gave {lines[-1]!r}, which is not an "
                "existing absolute path; its last output line must name the detached half"
            )
        return str(half)

    def rejoin() -> None:
        """Rejoin the mirror (also called to undo a failed split)."""
        _operation(source.mirror_rejoin, context)

    return SplitMirrorProvider(split, rejoin)


@dataclass
class FrozenVolume:
    """What the session writer reads: the live origin plus, when the snapshot tracks changes,
    the frozen device and the runs written since the freeze; else the frozen device alone (the
    origin itself for a live copy, which ``live`` and ``warnings`` then say)."""

    origin: BlockDevice
    device: BlockDevice  # frozen content (the origin itself when nothing could be frozen)
    snapshot: Snapshot | None
    tracks_changes: bool
    warnings: list[str] = field(default_factory=list)
    method: str = LIVE  # "cow", "reflink", "copy", "split-mirror", or "live"
    host_only: bool = False  # `device` is no SCSI unit: a copy manager cannot read it

    @property
    def live(self) -> bool:
        """True when nothing was frozen: the copy is not point-in-time."""
        return self.snapshot is None

    def modified_runs(self) -> list[tuple[int, int]]:
        """Byte runs of the origin written since the freeze."""
        assert self.snapshot is not None
        blocks = self.snapshot.modified_blocks(512) or []
        return [(b * 512, n * 512) for b, n in blocks]


def _hint(on_disk: bool, embedded: bool, choice: str) -> str:
    """What to choose instead when `choice` cannot freeze this kind of volume."""
    if not on_disk:
        if choice == "reflink":
            return (
                "keep the image on XFS (mkfs.xfs -m reflink=1) or btrfs, or use snapshot='auto' "
                "(a verified full copy where there is no reflink) or 'split-mirror'"
            )
        return (
            "keep the image on XFS (mkfs.xfs -m reflink=1) or btrfs, free space for a full "
            "copy, or use snapshot='split-mirror'"
        )
    if embedded:
        return "use snapshot='auto' (the embedded SAN's copy-on-write LUN snapshot)"
    return "use snapshot='split-mirror' with commands that split and rejoin a mirror of the LUN"


@dataclass
class VolumeAccess:
    """An opened volume source: its disk, the SAN's copy manager if any, how to freeze it.
    ``provider`` None with ``unfrozen`` set means a live copy the source allowed."""

    source: Source
    origin: BlockDevice
    copy_manager: ScsiDevice | None
    provider: SnapshotProvider | None
    probe: Probe | None  # write-activity probe for quiesce, when one exists
    ref: str
    unfrozen: str | None = None  # why nothing can freeze the volume (live copies only)
    hint: str = ""  # what to choose instead, for NoSnapshot raised by frozen()

    @classmethod
    def open(
        cls, library: LibrarySpec, source: Source, *, copy_manager: bool = True
    ) -> VolumeAccess:
        """Open `source.path` (`disk:<name>` on `library`, or an image file) and choose how to
        freeze it; NoSnapshot, before any device is opened, when nothing can and the source
        does not allow a live copy. `copy_manager` False leaves the SAN's copy manager unused,
        so the host executes the plan as it does on a SAN without one (tgt)."""
        on_disk = source.path.startswith(DISK_PREFIX)
        embedded = on_disk and library.backend == "embedded"
        ref = source.path if on_disk else str(Path(source.path))
        if not on_disk and not Path(ref).is_file():
            raise FileNotFoundError(f"volume source {source.name}: no image file {ref}")
        vl = library._embedded() if embedded else None  # noqa: SLF001 - the SAN's own API
        name = source.path.removeprefix(DISK_PREFIX)
        probe: Probe | None = None
        if vl is not None:
            probe = file_probe(vl.disk_store(name).image)  # every write moves its mtime
        elif not on_disk:
            probe = file_probe(ref)
        provider, unfrozen = cls._provider(source, ref, vl, library.backend)
        hint = _hint(on_disk, embedded, source.snapshot)
        refusal: SnapshotUnsupported | None = None
        if provider is not None:
            try:
                provider.check(ref)
            except SnapshotUnsupported as exc:
                provider, unfrozen, refusal = None, exc.reason, exc
        if unfrozen is not None:
            if not source.live_copy:
                raise NoSnapshot(
                    ref,
                    unfrozen,
                    hint=hint,
                    path=ref,
                    filesystem=refusal.filesystem if refusal is not None else "",
                ) from refusal
            log.warning("%s: %s; copying it live (live_copy=True)", ref, unfrozen)
        if not on_disk:
            return cls(source, ImageBlockDevice(ref), None, provider, probe, ref, unfrozen, hint)
        origin = BlockDevice(library.open_disk(name), name)
        manager = library.open_copy_manager() if embedded and copy_manager else None
        return cls(
            source,
            origin,
            ScsiDevice(manager) if manager else None,
            provider,
            probe,
            ref,
            unfrozen,
            hint,
        )

    @staticmethod
    def _provider(
        source: Source, ref: str, vl: VirtualLibrary | None, backend: str
    ) -> tuple[SnapshotProvider | None, str | None]:
        """(provider, None), or (None, why nothing can freeze `ref` as `source` asks)."""
        choice, on_disk = source.snapshot, ref.startswith(DISK_PREFIX)
        if choice == "none":
            return None, "the source asks for no snapshot (snapshot='none')"
        if choice == "split-mirror":
            return mirror_provider(source, ref), None
        if on_disk and choice in ("auto", "lun"):
            if vl is not None:
                return EmbeddedDiskProvider(vl), None
            return None, (
                f"{ref} is a LUN of an {backend} SAN, whose LUNs tapeflow cannot snapshot "
                "(tgt, for one, has no snapshots)"
            )
        if not on_disk and choice in ("auto", "reflink"):
            return ReflinkProvider(allow_copy=choice == "auto"), None
        kind = "a disk LUN" if on_disk else "an image file"
        return None, f"{ref} is {kind}, which snapshot={choice!r} cannot freeze"

    @contextmanager
    def frozen(self) -> Iterator[FrozenVolume]:
        """Quiesce (write inactivity), snapshot, yield; the snapshot is released on every path.
        NoSnapshot if the provider finds it cannot after all and no live copy is allowed."""
        warnings: list[str] = []
        if self.probe is not None:
            wait_for_quiet(
                self.probe,
                quiet=self.source.quiet,
                timeout=self.source.freeze_timeout,
                label=self.ref,
            )
        snap: Snapshot | None = None
        unfrozen = self.unfrozen
        if self.provider is not None:
            try:
                snap = self.provider.snapshot(self.ref)
            except SnapshotUnsupported as exc:
                if not self.source.live_copy:
                    raise NoSnapshot(
                        self.ref,
                        exc.reason,
                        hint=self.hint,
                        path=exc.path or self.ref,
                        filesystem=exc.filesystem,
                    ) from exc
                unfrozen = exc.reason
        warnings += self._notes(snap, unfrozen)
        for warning in warnings:
            log.warning("%s", warning)
        device: BlockDevice | None = None
        try:
            if snap is None:
                host = isinstance(self.origin, ImageBlockDevice)
                yield FrozenVolume(self.origin, self.origin, None, False, warnings, LIVE, host)
            else:
                device, host = self._reader(snap)
                tracks = snap.modified_blocks(512) is not None
                yield FrozenVolume(self.origin, device, snap, tracks, warnings, snap.method, host)
        finally:
            try:
                if device is not None:
                    device.close()
            finally:
                if snap is not None:
                    snap.release()

    def _notes(self, snap: Snapshot | None, unfrozen: str | None) -> list[str]:
        """Warnings for the job summary: a live copy above all, then freezes that cost more or
        guarantee less than usual (a full copy; a snapshot taken without quiesce)."""
        quiesced = (
            f"quiesced first ({self.source.quiet:g} s without writes)"
            if self.probe is not None
            else "not quiesced either (no write probe for this SAN's LUNs)"
        )
        if snap is None:
            return [
                f"LIVE COPY of {self.ref}, not point-in-time: {unfrozen}; {quiesced}, but what "
                "is written during the copy may leave the backed-up volume inconsistent"
            ]
        notes = []
        if snap.method == "copy":
            fs_type, mount_point = filesystem_of(self.ref)
            notes.append(
                f"{self.ref}: {fs_type} at {mount_point} has no reflink, so it was frozen by a "
                f"verified full copy ({snap.size} bytes read and stored beside it first)"
            )
        if self.probe is None:
            notes.append(
                f"{self.ref}: frozen by {snap.method} without quiesce (no write probe for this "
                "SAN's LUNs): the snapshot is crash-consistent"
            )
        return notes

    @staticmethod
    def _reader(snap: Snapshot) -> tuple[BlockDevice, bool]:
        """A device reading the frozen view, and whether only the host can read it."""
        if isinstance(snap, DiskSnapshot):
            return snap.device(), False
        if snap.path is not None and snap.path.is_file():
            return ImageBlockDevice(snap.path), True
        return SnapshotBlockDevice(snap), True

    def close(self) -> None:
        """Close the disk and copy manager handles."""
        self.origin.close()
        if self.copy_manager is not None:
            self.copy_manager.close()
