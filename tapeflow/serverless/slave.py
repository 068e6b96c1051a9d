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
from tapeflow.fs.model import EXTENT_SCHEMA, VOLUME_FILE_SCHEMA, entries_to_batches
from tapeflow.library import LibrarySpec
from tapeflow.serverless.backup import ServerlessResult, write_session
from tapeflow.serverless.blockfile import open_volume_file
from tapeflow.serverless.maps import BLOCKMAPS_DIRNAME
from tapeflow.serverless.volumes import VolumeAccess

log = logging.getLogger(__name__)


def blockmaps_dir(files_dir: Path) -> Path:
    """Where serverless maps live: beside the catalog's per-session file rows."""
    return Path(files_dir).parent / BLOCKMAPS_DIRNAME


def map_volume(access: VolumeAccess, device) -> tuple:  # noqa: ANN001 - BlockDevice
    """Parse the frozen volume: (info, used runs, (files table, extents table))."""
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


def run_serverless_slave(
    spec: SlaveSpec,
    *,
    on_progress: Callable[[int], None] | None = None,
    on_media_request: Callable[[NoWritableCartridge], None] | None = None,
    drive_timeout: float = 24 * 3600,
) -> SlaveResult:
    """Back up the volume `spec.source` as one serverless session; SlaveFailed on error."""
    result = SlaveResult(spec.session_id, spec.subjob, spec.source.name, "failed")
    holder = f"job {spec.job_id} subjob {spec.subjob}"
    try:
        access = VolumeAccess.open(LibrarySpec.parse(spec.library), spec.source)
        try:
            with mounted(
                spec,
                result,
                holder,
                on_media_request=on_media_request,
                drive_timeout=drive_timeout,
            ) as (handle, mounter):
                session = _write(spec, access, handle, on_progress)
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
                    else "the host (the SAN has no copy manager)",
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


def _write(spec: SlaveSpec, access: VolumeAccess, tape, on_progress) -> ServerlessResult:  # noqa: ANN001
    with access.frozen() as frozen:
        for warning in frozen.warnings:
            log.warning("%s", warning)
        info, used, tables = map_volume(access, frozen.device)
        log.info(
            "%s: %s volume, %d bytes, %d entries mapped",
            spec.source.name,
            info.kind,
            info.size,
            tables[0].num_rows,
        )
        origin = access.origin if frozen.tracks_changes else frozen.device
        return write_session(
            session_id=spec.session_id,
            job_id=spec.job_id,
            source=spec.source.name,
            info=info,
            used=used,
            entries_tables=tables,
            origin=origin,
            frozen=frozen if frozen.tracks_changes else None,
            tape=tape,
            copy_manager=access.copy_manager
            if origin is access.origin or frozen.snapshot
            else None,
            mode=spec.source.mode,
            progress=on_progress,
        )
