"""The serverless slave: lease a drive and a pool cartridge like any slave, freeze the volume,
map its files from the frozen view, have the copy manager (or the host) move the blocks, and
leave the session's rows and maps for the master to register."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from tapeflow.backup.model import SlaveResult, SlaveSpec, TapeUse
from tapeflow.backup.slave import NoWritableCartridge, SlaveFailed, mounted
from tapeflow.catalog.rows import write_session_rows
from tapeflow.fs.detect import open_volume
from tapeflow.fs.model import EXTENT_SCHEMA, VOLUME_FILE_SCHEMA, VolumeInfo, entries_to_batches
from tapeflow.library import LibrarySpec
from tapeflow.scsi.sbc import BlockDevice
from tapeflow.scsi.tape import TapeDrive
from tapeflow.serverless.backup import RECORD_SIZE, ServerlessResult, write_session
from tapeflow.serverless.blockfile import open_volume_file
from tapeflow.serverless.maps import blockmaps_dir
from tapeflow.serverless.volumes import FrozenVolume, VolumeAccess

log = logging.getLogger(__name__)

Tables = tuple[pa.Table, pa.Table]


def map_volume(device: BlockDevice) -> tuple[VolumeInfo, list[tuple[int, int]], Tables]:
    """Parse the frozen volume: (info, used cluster runs, (files table, extents table))."""
    with open_volume_file(device) as fh:
        volume = open_volume(fh)
        files, extents = [], []
        for f, x in entries_to_batches(volume.entries()):
            files.append(f)
            extents.append(x)
        used = volume.used_runs()
        tables = (
            pa.Table.from_batches(files, VOLUME_FILE_SCHEMA),
            pa.Table.from_batches(extents, EXTENT_SCHEMA),
        )
        return volume.info, used, tables


def backup_frozen(
    access: VolumeAccess,
    frozen: FrozenVolume,
    tape: TapeDrive,
    *,
    session_id: str,
    job_id: str,
    source: str,
    mode: str,
    record_size: int = RECORD_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ServerlessResult:
    """Map the frozen volume and write its session to `tape` (a labelled cartridge): the image
    from the live disk plus the changed chunks when the snapshot tracks changes, else the
    frozen view itself (the live disk, for a live copy)."""
    info, used, tables = map_volume(frozen.device)
    log.info(
        "%s: %s volume, %d bytes, %d entries mapped (frozen by %s)",
        source,
        info.kind,
        info.size,
        tables[0].num_rows,
        frozen.method,
    )
    return write_session(
        session_id=session_id,
        job_id=job_id,
        source=source,
        info=info,
        used=used,
        entries_tables=tables,
        origin=access.origin if frozen.tracks_changes else frozen.device,
        frozen=frozen if frozen.tracks_changes else None,
        tape=tape,
        copy_manager=None if frozen.host_only else access.copy_manager,
        mode=mode,
        record_size=record_size,
        progress=progress,
    )


def backup_volume(
    access: VolumeAccess,
    tape: TapeDrive,
    *,
    session_id: str,
    job_id: str,
    source: str,
    mode: str,
    record_size: int = RECORD_SIZE,
    progress: Callable[[int], None] | None = None,
    warnings: list[str] | None = None,
) -> ServerlessResult:
    """Freeze the volume and write its session to `tape` (see backup_frozen); the freeze's
    warnings (a live copy above all) are appended to `warnings` when given."""
    with access.frozen() as frozen:
        if warnings is not None:
            warnings.extend(frozen.warnings)
        return backup_frozen(
            access,
            frozen,
            tape,
            session_id=session_id,
            job_id=job_id,
            source=source,
            mode=mode,
            record_size=record_size,
            progress=progress,
        )


def run_serverless_slave(
    spec: SlaveSpec,
    *,
    on_progress: Callable[[int], None] | None = None,
    on_media_request: Callable[[NoWritableCartridge], None] | None = None,
    drive_timeout: float = 24 * 3600,
    copy_manager: bool = True,
) -> SlaveResult:
    """Back up the volume `spec.source` as one serverless session; SlaveFailed on error.
    `copy_manager` False has the host move the blocks even where the SAN could."""
    result = SlaveResult(spec.session_id, spec.subjob, spec.source.name, "failed")
    holder = f"job {spec.job_id} subjob {spec.subjob}"
    try:
        access = VolumeAccess.open(
            LibrarySpec.parse(spec.library), spec.source, copy_manager=copy_manager
        )
        try:
            with mounted(
                spec,
                result,
                holder,
                on_media_request=on_media_request,
                drive_timeout=drive_timeout,
            ) as (handle, mounter):
                session = backup_volume(
                    access,
                    handle,
                    session_id=spec.session_id,
                    job_id=spec.job_id,
                    source=spec.source.name,
                    mode=spec.source.mode,
                    progress=on_progress,
                    warnings=result.warnings,
                )
                barcode = mounter.barcode or ""
                assert session.maps is not None
                session.maps.write(blockmaps_dir(Path(spec.files_dir)), spec.session_id, barcode)
                write_session_rows(
                    Path(spec.files_dir),
                    spec.session_id,
                    session.maps.file_rows(spec.session_id, barcode),
                )
                result.files = session.maps.volfiles.num_rows
                result.bytes = session.stream_bytes
                result.tapes = [
                    TapeUse(barcode, session.tape_file, session.stream_bytes, session.early_warning)
                ]
                result.copy_path = session.path
                log.info(
                    "%s: copied by %s",
                    spec.source.name,
                    "the copy manager (EXTENDED COPY)"
                    if session.path == "xcopy"
                    else "the host (no copy manager in use on this SAN)",
                )
                result.state = "complete"
        finally:
            access.close()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        raise SlaveFailed(
            f"subjob {spec.subjob} ({spec.source.name}): {result.error}", result
        ) from exc
    return result
