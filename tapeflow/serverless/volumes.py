"""Where a volume source lives and how to freeze it: a disk LUN of the job's library
(`disk:<name>`; the embedded SAN snapshots it copy-on-write and has a copy manager; iSCSI LUNs
are copied by the host) or an image file (frozen by reflink where the filesystem can)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tapeflow.backup.model import Source
from tapeflow.library.spec import LibrarySpec
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.serverless.blockfile import ImageBlockDevice, open_volume_file
from tapeflow.snapshot.errors import SnapshotUnsupported
from tapeflow.snapshot.providers import ReflinkProvider, Snapshot, SnapshotProvider, SourceRef
from tapeflow.snapshot.quiesce import file_probe, wait_for_quiet

if TYPE_CHECKING:
    from tapeflow.vtl import VirtualLibrary

log = logging.getLogger(__name__)

DISK_PREFIX = "disk:"


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


@dataclass
class FrozenVolume:
    """What the session writer reads: the live origin plus, when the snapshot tracks changes,
    the frozen device and the runs written since the freeze; else the frozen device alone."""

    origin: BlockDevice
    device: BlockDevice  # frozen content (the origin itself when nothing could be frozen)
    snapshot: Snapshot | None
    tracks_changes: bool
    warnings: list[str] = field(default_factory=list)

    def modified_runs(self) -> list[tuple[int, int]]:
        """Byte runs of the origin written since the freeze."""
        assert self.snapshot is not None
        blocks = self.snapshot.modified_blocks(512) or []
        return [(b * 512, n * 512) for b, n in blocks]


@dataclass
class VolumeAccess:
    """An opened volume source: its disk, the SAN's copy manager if any, how to freeze it."""

    source: Source
    origin: BlockDevice
    copy_manager: ScsiDevice | None
    provider: SnapshotProvider | None
    probe: object | None  # write-activity probe for quiesce, when one exists
    ref: str

    @classmethod
    def open(cls, library: LibrarySpec, source: Source) -> VolumeAccess:
        """Open `source.path`: `disk:<name>` on `library`, or an image file."""
        if source.path.startswith(DISK_PREFIX):
            name = source.path.removeprefix(DISK_PREFIX)
            origin = BlockDevice(library.open_disk(name), name)
            manager = library.open_copy_manager()
            if library.backend == "embedded":
                vl = library._embedded()  # noqa: SLF001 - the embedded SAN's own snapshot API
                store = vl.disk_store(name)
                return cls(
                    source,
                    origin,
                    ScsiDevice(manager) if manager else None,
                    EmbeddedDiskProvider(vl),
                    file_probe(store.image),  # every write moves the backing file's mtime
                    source.path,
                )
            return cls(source, origin, None, None, None, source.path)
        path = Path(source.path)
        if not path.is_file():
            raise FileNotFoundError(f"volume source {source.name}: no image file {path}")
        return cls(
            source, ImageBlockDevice(path), None, ReflinkProvider(), file_probe(path), str(path)
        )

    @contextmanager
    def frozen(self) -> Iterator[FrozenVolume]:
        """Quiesce (write inactivity), snapshot, yield; the snapshot is released on every path."""
        warnings: list[str] = []
        if self.probe is not None:
            wait_for_quiet(
                self.probe,
                quiet=self.source.quiet,
                timeout=self.source.freeze_timeout,
                label=self.ref,
            )
        else:
            warnings.append(f"{self.ref}: no write probe on this SAN; not quiesced")
        snap: Snapshot | None = None
        if self.provider is not None:
            try:
                snap = self.provider.snapshot(self.ref)
            except SnapshotUnsupported as exc:
                warnings.append(f"{self.ref}: no snapshot ({exc}); copied live after quiesce")
        else:
            warnings.append(f"{self.ref}: this SAN offers no snapshot; copied live after quiesce")
        device: BlockDevice | None = None
        try:
            if snap is None:
                yield FrozenVolume(self.origin, self.origin, None, False, warnings)
            else:
                device = (
                    snap.device() if isinstance(snap, DiskSnapshot) else ImageBlockDevice(snap.path)
                )  # type: ignore[arg-type]
                tracks = snap.modified_blocks(512) is not None
                yield FrozenVolume(self.origin, device, snap, tracks, warnings)
        finally:
            try:
                if device is not None:
                    device.close()
            finally:
                if snap is not None:
                    snap.release()

    def close(self) -> None:
        """Close the disk and copy manager handles."""
        self.origin.close()
        if self.copy_manager is not None:
            self.copy_manager.close()
