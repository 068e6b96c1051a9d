"""The master backup job: pre operations, one slave per source on the drive tag, post operations."""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run as current_run
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from flows import resolve
from flows.artifacts import publish
from flows.reports import job_report_artifacts
from flows.rotation import rotated
from tapeflow.backup.master import (
    JobOutcome,
    abandon_job,
    close_job,
    largest_first,
    prepare_job,
    record_in,
    record_slaves,
)
from tapeflow.backup.model import Level, Pool, SlaveResult, SlaveSpec
from tapeflow.backup.operations import run_operation
from tapeflow.backup.slave import SlaveFailed
from tapeflow.catalog import Catalog
from tapeflow.library import Library, LibrarySpec
from tapeflow.library.media import unload_parked
from tasks import alerts
from tasks.backup import backup_slave
from tasks.drives import sync_drive_limit
from tasks.verify import verify as verify_task

MAX_STREAMS = 64


class JobFailed(RuntimeError):
    """Some slaves failed; a re-run of this flow run redoes only those."""


def slave_name(job_id: str, subjob: int) -> str:
    """The task-run name people see in the UI."""
    return f"MULTI STREAM [JOB {job_id}] SUBJOB {subjob}"


@dataclass
class Dispatched:
    """What run_slaves leaves to the job's end: every result, the last slaves' results not
    yet in the catalog (recorded with the job's end, in the same opening), the progress
    artifact to set to 100%."""

    results: list[SlaveResult]
    unrecorded: list[SlaveResult]
    progress: UUID | None


def run_slaves(
    specs: list[SlaveSpec],
    streams: int,
    tag: str,
    job_id: str,
    record: Callable[[list[SlaveResult]], None],
) -> Dispatched:
    """Keep at most `streams` slaves submitted; each completion submits the next at once.

    Submitting no more than there are drives means a slave never queues on the tag limit,
    whose retry interval (Prefect's Retry-After) would leave a freed drive idle for seconds.
    The next slave is submitted from the finished slave's own thread, and the master's
    bookkeeping (catalog rows, progress) waits HANDOFF_GRACE after a hand-off, so the two
    Prefect round trips that move the drive-tag slot do not compete with it for the CPU.
    The largest sources start first, so no drive is left writing a big one alone at the end.
    """
    log = get_run_logger()
    done: queue.Queue[_Finished] = queue.Queue()
    waiting = largest_first(specs)
    running: dict[PrefectFuture[Any], SlaveSpec] = {}
    lock = threading.RLock()  # re-entered when a future is already done as it is registered
    flow_context = contextvars.copy_context()  # submitting needs the flow run's context
    results: list[SlaveResult] = []

    def fill() -> None:
        with lock:
            while waiting and len(running) < streams:
                spec = waiting.pop(0)
                slave = backup_slave.with_options(
                    tags=[tag], task_run_name=slave_name(job_id, spec.subjob)
                )
                future = slave.submit(spec.to_dict())
                running[future] = spec
                future.add_done_callback(finished)

    def finished(future: PrefectFuture[Any]) -> None:
        error: BaseException | None = None
        with lock:
            spec = running.pop(future)
            before = len(running)
            try:
                flow_context.copy().run(fill)
            except BaseException as exc:  # handed to the master's thread, which raises it
                error = exc
            handed_off = len(running) > before
            last_round = not waiting and bool(running)
        now = time.monotonic()
        done.put(_Finished(future, spec, error, now if handed_off else None, last_round))

    if not specs:  # a re-run of a job whose sessions are all complete
        return Dispatched([], [], None)
    fill()
    progress = create_progress_artifact(0.0, description=f"job {job_id}: slaves finished")
    while True:
        batch = _settled(done)
        finished_now = [_result(item, log) for item in batch]
        results += finished_now
        for item in batch:
            if item.error is not None:
                record(finished_now)
                raise item.error
        if len(results) == len(specs):
            return Dispatched(results, finished_now, progress)
        record(finished_now)
        if progress is not None:
            update_progress_artifact(progress, 100.0 * len(results) / len(specs))


HANDOFF_GRACE = 0.25
"""Seconds the master's bookkeeping waits after a slave ends while the next one takes the
drive: drive time is what a backup window is short of, and a session recorded a quarter of a
second later loses nothing (the session is on tape; a re-run would rewrite an unrecorded one)."""
MAX_DEFER = 1.0
"""Seconds at most between a slave ending and its recording, however many hand-offs follow
(or however long the job's other last slaves run)."""


def _settled(done: queue.Queue[_Finished]) -> list[_Finished]:
    """The slaves that ended, taken once the hand-offs they started have had HANDOFF_GRACE
    and, in the job's last round, once the other running slaves have ended too (recorded
    together with the job's end, not one by one while the last ones still unload), never
    more than MAX_DEFER after the first."""
    batch = [done.get()]
    latest = time.monotonic() + MAX_DEFER
    while True:
        due = max((i.handed_off + HANDOFF_GRACE for i in batch if i.handed_off), default=0.0)
        if batch[-1].last_round:
            due = latest
        wait = min(due, latest) - time.monotonic()
        if wait <= 0:
            break
        with contextlib.suppress(queue.Empty):  # no other slave ended in the meantime
            batch.append(done.get(timeout=wait))
    while not done.empty():
        batch.append(done.get_nowait())
    return batch


@dataclass
class _Finished:
    """A slave that ended, when its drive-tag slot was handed to the next (if it was), and
    whether it ended in the job's last round (nothing left to submit, others still running)."""

    future: PrefectFuture[Any]
    spec: SlaveSpec
    error: BaseException | None  # from submitting the next slave
    handed_off: float | None
    last_round: bool = False


def _result(item: _Finished, log: Any) -> SlaveResult:
    """The slave's result; a failed slave gives a result marked failed (not swallowed)."""
    spec = item.spec
    try:  # the result, not future.state: the state may not be final when this wakes
        return SlaveResult.from_dict(item.future.result())
    except Exception as exc:
        result = (
            exc.result
            if isinstance(exc, SlaveFailed)
            else SlaveResult(spec.session_id, spec.subjob, spec.source.name, "failed")
        )
        result.state = "failed"
        result.error = result.error or f"{type(exc).__name__}: {exc}"
        log.error("subjob %s (%s) failed: %s", spec.subjob, spec.source.name, result.error)
        return result


def summary_rows(results: list[SlaveResult]) -> list[dict[str, Any]]:
    """One row per slave for the job summary artifact."""
    return [
        {
            "subjob": r.subjob,
            "source": r.source,
            "drive": r.drive,
            "cartridges": " ".join(t.barcode for t in r.tapes),
            "files": r.files,
            "MB": round(r.bytes / 1e6, 1),
            "MB/s": round(r.mb_per_s, 1),
            "copy": r.copy_path or "",
            "state": r.state,
            "warnings": "; ".join(r.warnings),
        }
        for r in sorted(results, key=lambda r: r.subjob)
    ]


def _online_drives(
    drive_limit: PrefectFuture[int],
    library: LibrarySpec,
    catalog_path: Path,
    job_id: str,
    pool: Pool,
    specs: list[SlaveSpec],
    skipped: list[str],
) -> int:
    """The drive count the tag limit was set to; a job that cannot start a slave (no online
    drive, or the limit could not be set) ends failed with its planned sessions."""
    try:
        drives = drive_limit.result()
        if drives == 0:
            raise JobFailed(f"library {library} has no online drive")
    except Exception as exc:
        abandon_job(catalog_path, job_id, pool, specs, skipped, f"{type(exc).__name__}: {exc}")
        raise
    return drives


@contextlib.contextmanager
def unloading_drives(library: LibrarySpec, job_id: str) -> Iterator[Callable[[], None]]:
    """Unload the cartridges the job's slaves kept loaded for one another, from the drives no
    other job holds: in the background from the moment the yielded callable is called (the
    slaves are done; the catalog and the artifacts take that long anyway), and at the latest
    on the way out, on every path."""
    with ThreadPoolExecutor(1, thread_name_prefix="unload-drives") as background:
        unloading: list[Future[list[str]]] = []

        def start() -> None:
            if not unloading:
                unloading.append(background.submit(_unload_parked, library, job_id))

        try:
            yield start
        finally:
            start()
            left = unloading[0].result()
    if left:
        get_run_logger().info("job %s: unloaded %s", job_id, ", ".join(left))


def _unload_parked(library: LibrarySpec, job_id: str) -> list[str]:
    """unload_parked on a library handle of its own (it runs in the unloading thread)."""
    with Library(library) as lib:
        return unload_parked(lib, f"job {job_id} end")


def mark_partial(flow: Any, flow_run: Any, state: State) -> None:
    """On cancel or crash: the job's running sessions become partial in the catalog, and
    the cartridges its slaves kept loaded go back to their slots."""
    catalog = resolve.catalog(flow_run.parameters.get("catalog"))
    if catalog.exists():
        ended = "cancelled" if state.is_cancelled() or state.is_cancelling() else "failed"
        with Catalog(catalog) as cat:
            cat.mark_running_partial(str(flow_run.id))
            cat.finish_job(str(flow_run.id), ended)
    spec, _ = resolve.library(flow_run.parameters.get("library"))
    _unload_parked(spec, str(flow_run.id))


@flow(
    name="tapeflow-backup",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_STREAMS),
    on_cancellation=[mark_partial],
    on_crashed=[mark_partial],
)
def backup(
    sources: list[str | dict[str, Any]],
    pool: str | dict[str, Any] | None = None,
    level: Level = "full",
    library: str | None = None,
    catalog: str | None = None,
    verify: bool = False,
    compression: bool = False,
    media_wait: float = 0.0,
    multistream: bool = True,
    pre: list[str] | None = None,
    post: list[str] | None = None,
    rotation: str | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Back up `sources` (one slave each) to `pool` on `library`; returns the job outcome.
    rotation="gfs" (or a GFS settings dict) picks the day's pool and level instead."""
    log = get_run_logger()
    job_id = str(current_run.id or f"local-{time.time_ns()}")
    spec, tag = resolve.library(library)
    media_pool = resolve.pool(pool)
    if rotation is not None:
        media_pool, level = rotated(rotation, media_pool, level)
    source_list = resolve.sources(sources)
    catalog_path = resolve.catalog(catalog)
    for op in pre or []:
        log.info("pre: %s", op)
        run_operation(op)
    drive_limit = sync_drive_limit.submit(str(spec), tag)  # while the job is planned
    specs, skipped = prepare_job(
        catalog_path,
        job_id,
        sources=source_list,
        pool=media_pool,
        level=level,
        library=str(spec),
        compression=compression,
        media_wait=media_wait,
        parameters={
            "sources": [s.__dict__ for s in source_list],
            "level": level,
            "verify": verify,
            "compression": compression,
        },
        keep_loaded=True,  # a drive's next slave of the job appends without a reload
    )
    drives = _online_drives(drive_limit, spec, catalog_path, job_id, media_pool, specs, skipped)
    streams = drives if multistream else 1
    log.info(
        "job %s: %d slave(s) on %d stream(s) (tag %s = %d drives); %s already done",
        job_id,
        len(specs),
        streams,
        tag,
        drives,
        skipped or "none",
    )

    def record(done: list[SlaveResult]) -> None:
        record_slaves(catalog_path, job_id, media_pool, done)

    problems: list[str] = []
    with unloading_drives(spec, job_id) as slaves_done:
        dispatched = run_slaves(specs, streams, tag, job_id, record)
        results, unrecorded = dispatched.results, dispatched.unrecorded
        if verify:  # reads the sessions' rows from the catalog
            record(unrecorded)
            unrecorded = []
            checks = [
                verify_task.with_options(tags=[tag]).submit(
                    str(catalog_path), str(spec), r.session_id
                )
                for r in results
                if r.state == "complete"
            ]
            for check in checks:
                found = check.result()
                problems += [f"verify {found['session_id']}: {p}" for p in found["problems"]]
        slaves_done()  # the drives unload while the job's end is recorded and published
        # one catalog opening: the last slaves, the job's end, its report
        with Catalog(catalog_path) as cat:
            record_in(cat, job_id, media_pool, unrecorded)
            outcome: JobOutcome = close_job(cat, job_id, results, skipped, problems)
            report = job_report_artifacts(cat, job_id)
        rows = summary_rows(results)
        summary = partial(
            create_table_artifact,
            rows,
            key="backup-summary",
            description=f"job {job_id}: {outcome.state}, {outcome.files} files, "
            f"{outcome.bytes / 1e6:.1f} MB",
        )
        all_done = [partial(update_progress_artifact, dispatched.progress, 100.0)]
        publish(summary, *report, *(all_done if dispatched.progress is not None else []))
    for op in post or []:
        log.info("post: %s", op)
        run_operation(op, outcome.to_dict())
    if outcome.state != "complete":
        alerts.job_failed(job_id, spec.name, media_pool.name, outcome.state, outcome.errors)
        raise JobFailed(f"job {job_id} {outcome.state}: " + "; ".join(outcome.errors))
    timeline = [(r.drive, r.started, r.ended) for r in results if r.drive is not None]
    return {**outcome.to_dict(), "slaves": rows, "timeline": timeline}
