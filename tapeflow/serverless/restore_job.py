"""Image-level restore as a job: find the source's serverless session as of a time, lease a
drive and the cartridge, write the volume back onto a disk LUN (through the copy manager when
the SAN has one) or into an image file."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tapeflow.catalog import Catalog
from tapeflow.library import Library
from tapeflow.maintenance.leased import leased_mounts
from tapeflow.scsi.device import ScsiDevice
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.serverless.blockfile import ImageBlockDevice
from tapeflow.serverless.maps import blockmaps_dir, load_maps
from tapeflow.serverless.restore import restore_image
from tapeflow.serverless.volumes import DISK_PREFIX


class NoVolumeBackup(LookupError):
    """The source has no complete serverless session at that time."""


@dataclass(slots=True)
class ImageRestoreResult:
    """What an image-level restore did."""

    session_id: str
    barcode: str
    target: str
    path: str  # "xcopy" | "host"
    bytes: int
    seconds: float
    drive: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def volume_session(cat: Catalog, source: str, at: datetime | None) -> str:
    """Id of the latest complete serverless session of `source` started at or before `at`."""
    found = [
        s["id"]
        for s in cat.sessions(source=source)
        if s["kind"] == "serverless"
        and s["state"] == "complete"
        and (at is None or s["started"] <= at)
    ]
    if not found:
        raise NoVolumeBackup(f"no complete serverless backup of {source!r} as of {at or 'now'}")
    return found[-1]


def restore_volume(
    catalog_path: Path,
    library: str,
    source: str,
    target: str,
    *,
    at: datetime | None = None,
    overwrite: bool = False,
    drive_timeout: float = 24 * 3600,
) -> ImageRestoreResult:
    """Write the volume `source` as of `at` onto `target`: `disk:<name>` of the library, or an
    image file path (created at the volume's size; an existing file only with `overwrite`)."""
    started = time.monotonic()
    with Catalog(catalog_path, read_only=True) as cat:
        session_id = volume_session(cat, source, at)
        maps_dir = blockmaps_dir(cat.files_dir)
    maps, barcode = load_maps(maps_dir, session_id)
    lib = Library(library)
    manager: ScsiDevice | None = None
    if target.startswith(DISK_PREFIX):
        device: BlockDevice = BlockDevice(lib.spec.open_disk(target.removeprefix(DISK_PREFIX)))
        raw = lib.spec.open_copy_manager()
        manager = ScsiDevice(raw) if raw is not None else None
    else:
        path = Path(target)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite to replace it")
        with open(path, "wb") as fh:
            fh.truncate(maps.image_size)
        device = ImageBlockDevice(path, writable=True)
    holder = f"image restore {source}"
    try:
        with lib, leased_mounts(lib, holder, [barcode], timeout=drive_timeout) as mounts:
            drive = mounts.drives[0]
            outcome = restore_image(mounts.mount(barcode), maps, device, manager)
            device.flush()
    finally:
        device.close()
        if manager is not None:
            manager.close()
    return ImageRestoreResult(
        session_id,
        barcode,
        target,
        outcome.path,
        outcome.stream_bytes,
        time.monotonic() - started,
        drive,
    )
