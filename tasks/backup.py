"""The slave task (one source -> one session on tape) and the master's bookkeeping tasks."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from tapeflow.backup.master import deleted_rows_for
from tapeflow.backup.model import SlaveSpec
from tapeflow.backup.slave import NoWritableCartridge, run_slave
from tapeflow.serverless.slave import run_serverless_slave
from tasks import alerts


@task(name="backup-slave", retries=0, persist_result=False)
def backup_slave(spec: dict[str, Any]) -> dict[str, Any]:
    """Write one source as one session; the drive tag on this task caps concurrency."""
    slave = SlaveSpec.from_dict(spec)
    log = get_run_logger()
    log.info(
        "subjob %s: source %s (%s) -> pool %s",
        slave.subjob,
        slave.source.name,
        slave.level,
        slave.pool.name,
    )
    step = {"next": 10_000}

    def progress(files: int) -> None:
        if files >= step["next"]:
            log.info("subjob %s: %d files on tape", slave.subjob, files)
            step["next"] = files + 10_000

    requested: list[NoWritableCartridge] = []

    def media_request(shortage: NoWritableCartridge) -> None:  # the slave waits for media
        requested.append(shortage)
        alerts.media_request(slave, str(shortage), shortage.reasons)

    try:
        if slave.source.kind == "volume":
            result = run_serverless_slave(slave, on_media_request=media_request)
        else:
            result = run_slave(
                slave,
                deleted_rows=deleted_rows_for(slave),
                on_progress=progress,
                on_media_request=media_request,
            )
    except Exception as exc:  # raise events for an automation to notify someone, then re-raise
        alerts.slave_failed(slave, str(exc))
        shortage = alerts.cause(exc, NoWritableCartridge)
        if shortage is not None and not requested:
            alerts.media_request(slave, str(shortage), shortage.reasons)
        raise
    tapes = ", ".join(f"{t.barcode}#{t.tape_file}" for t in result.tapes)
    log.info(
        "subjob %s done on drive %s: %d files, %.1f MB in %.1f s (%.0f MB/s) on %s",
        slave.subjob,
        result.drive,
        result.files,
        result.bytes / 1e6,
        result.seconds,
        result.mb_per_s,
        tapes,
    )
    for warning in result.warnings:
        log.warning("subjob %s: %s", slave.subjob, warning)
    return result.to_dict()
