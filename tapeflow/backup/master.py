"""The master job's bookkeeping, Prefect-free: plan the slaves, record what they did.

The catalog (DuckDB) is opened only here, briefly, by the master; slaves never touch it. A job
id is stable across re-runs of the same master (the flow run id), so a re-run finds which
sources already have a complete session and plans only the others.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from tapeflow.backup.model import Level, Pool, SlaveResult, SlaveSpec, Source
from tapeflow.backup.pools import note_writes, plan_media, record_relabel
from tapeflow.backup.sources import SourceUnavailable, live_listing
from tapeflow.catalog import (
    BackupPlan,
    Catalog,
    NewSession,
    NotFound,
    SessionEnd,
    TapePiece,
    plan_backup,
)


@dataclass
class JobOutcome:
    """What post operations receive: counts, bytes, failures."""

    job_id: str
    state: str  # complete | partial | failed
    sessions: int
    complete: int
    failed: int
    files: int
    bytes: int
    skipped: list[str] = field(default_factory=list)  # sources done by an earlier run
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return self.__dict__.copy()


def _work_dir(catalog_path: Path, job_id: str) -> Path:
    return catalog_path.parent / "work" / job_id


def prepare_job(
    catalog_path: Path,
    job_id: str,
    *,
    sources: list[Source],
    pool: Pool,
    level: Level,
    library: str,
    compression: bool = False,
    media_wait: float = 0.0,
    parameters: dict[str, Any] | None = None,
    keep_loaded: bool = False,
) -> tuple[list[SlaveSpec], list[str]]:
    """Record the job, plan one session per source still to do; returns (specs, skipped).

    Incremental and differential slaves get the list of paths to write (an Arrow file) and
    the 'deleted' rows of vanished paths; a source without a base falls back to full.
    keep_loaded: slaves leave their cartridge in the drive for the next one; the caller then
    unloads the drives at the job's end (tapeflow.library.media.unload_parked).
    """
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    work = _work_dir(catalog_path, job_id)
    work.mkdir(parents=True, exist_ok=True)
    specs: list[SlaveSpec] = []
    skipped: list[str] = []
    with Catalog(catalog_path) as cat, cat.transaction():  # one commit, not one per session
        cat.set_pool(pool.name, pool.retention_days, append=pool.append)
        try:
            cat.job(job_id)
            cat.mark_running_partial(job_id)  # a re-run: what was running died with it
        except NotFound:
            cat.create_job(
                "backup", level=level, pool=pool.name, parameters=parameters, job_id=job_id
            )
        done = {s["source"] for s in cat.sessions(job_id=job_id) if s["state"] == "complete"}
        media = plan_media(cat, pool)  # append / recycle / scratch / never relabel
        unusable = tuple(media.unusable)
        planned: list[tuple[int, Source, BackupPlan | None]] = []
        for subjob, source in enumerate(sources, start=1):
            if source.name in done:
                skipped.append(source.name)
                continue
            try:
                plan = None
                if source.kind != "volume":  # serverless: always the whole image
                    plan = plan_backup(cat, source.name, live_listing(source), level)
            except SourceUnavailable as exc:
                # planned as a full: its slave meets the same error and fails alone, so the
                # other sources are still backed up and a re-run redoes just this one
                cat.log(f"cannot list source {source.name}: {exc}", level="error", job_id=job_id)
                plan = None
            planned.append((subjob, source, plan))
        session_ids = cat.start_sessions(
            job_id,
            [
                NewSession(
                    source.name,
                    kind="serverless" if source.kind == "volume" else "file",
                    level=plan.level if plan else "full",
                    base_session=plan.base_session if plan else None,
                )
                for _, source, plan in planned
            ],
        )
        for (subjob, source, plan), session_id in zip(planned, session_ids, strict=True):
            paths_file = None
            if plan is not None and plan.level != "full":
                paths_file = str(work / f"{session_id}.paths.arrow")
                _write_arrow(paths_file, plan.to_back_up().select(["path"]))
                _write_arrow(
                    str(work / f"{session_id}.deleted.arrow"),
                    plan.deleted_rows(session_id, datetime.now(UTC)),
                )
            specs.append(
                SlaveSpec(
                    job_id=job_id,
                    session_id=session_id,
                    subjob=subjob,
                    source=source,
                    level=plan.level if plan else "full",  # type: ignore[arg-type]
                    pool=pool,
                    library=library,
                    files_dir=str(cat.files_dir),
                    paths_file=paths_file,
                    unusable=unusable,
                    compression=compression,
                    media_wait=media_wait,
                    media=media,
                    expected_bytes=_planned_bytes(plan),
                    keep_loaded=keep_loaded,
                )
            )
        cat.log(f"job planned: {len(specs)} slave(s), {len(skipped)} already done", job_id=job_id)
    return specs, skipped


def _planned_bytes(plan: BackupPlan | None) -> int | None:
    """Content bytes a planned session will write; None when there is no plan (a volume, or a
    source that could not be listed)."""
    if plan is None:
        return None
    return int(pc.sum(plan.to_back_up()["size"]).as_py() or 0)


def largest_first(specs: Sequence[SlaveSpec]) -> list[SlaveSpec]:
    """The order to start slaves in: the longest first, so that the job's last slave is a
    short one and the drives finish together. Unknown sizes (volumes, usually the largest)
    go first; ties keep the order of the sources."""
    return sorted(
        specs,
        key=lambda s: (s.expected_bytes is not None, -(s.expected_bytes or 0)),
    )


def deleted_rows_for(spec: SlaveSpec) -> pa.Table | None:
    """The 'deleted' rows the master planned for this slave's session, if any."""
    if spec.paths_file is None:
        return None
    path = Path(spec.paths_file).with_name(f"{spec.session_id}.deleted.arrow")
    if not path.exists():
        return None
    with ipc.open_file(path) as reader:
        return reader.read_all()


def _write_arrow(path: str, table: pa.Table) -> None:
    with ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)


def record_slave(catalog_path: Path, job_id: str, pool: Pool, r: SlaveResult) -> None:
    """Record one finished slave at once (rows, tape files, media, session state), so a master
    that dies later still knows which sources are done and a re-run skips them."""
    record_slaves(catalog_path, job_id, pool, [r])


def record_slaves(catalog_path: Path, job_id: str, pool: Pool, results: list[SlaveResult]) -> None:
    """Record finished slaves in one opening of the catalog and one transaction."""
    with Catalog(catalog_path) as cat:
        record_in(cat, job_id, pool, results)


def record_in(cat: Catalog, job_id: str, pool: Pool, results: list[SlaveResult]) -> None:
    """record_slaves on a catalog the caller holds open (to finish the job in it too): the
    relabels, then every slave's tape files, media use and session state in one transaction,
    a statement per table rather than a dozen per slave."""
    for r in results:
        for barcode in r.labelled:  # blank, expired (its old sessions dropped) or from scratch
            record_relabel(cat, barcode, pool.name, job_id)
    uses = [(r, use) for r in results for use in r.tapes if use.barcode]
    barcodes = list(dict.fromkeys(use.barcode for _, use in uses))
    with cat.transaction():
        known = {
            row[0]
            for row in cat.execute(
                "SELECT barcode FROM media WHERE list_contains(?, barcode)", [barcodes]
            )
        }
        for barcode in barcodes:
            if barcode not in known:
                cat.add_media(barcode, pool.name, labelled=True)
        cat.record_tape_files(
            [TapePiece(r.session_id, use.barcode, use.tape_file, use.bytes) for r, use in uses]
        )
        note_writes(cat, barcodes, pool.retention_days)  # expiry = write + retention
        for barcode in dict.fromkeys(use.barcode for _, use in uses if use.full):
            cat.update_media(barcode, state="full")
        cat.register_sessions_rows([r.session_id for r in results if r.state == "complete"])
        cat.finish_sessions(
            [SessionEnd(r.session_id, _end_state(r), r.files, r.bytes) for r in results]
        )
        for r in results:
            if r.state != "complete":
                cat.log(
                    f"subjob {r.subjob} ({r.source}) failed: {r.error}",
                    level="error",
                    job_id=job_id,
                    session_id=r.session_id,
                )
            for warning in r.warnings:  # e.g. a live (not point-in-time) volume copy
                cat.log(
                    f"subjob {r.subjob} ({r.source}): {warning}",
                    level="warning",
                    job_id=job_id,
                    session_id=r.session_id,
                )


def _end_state(r: SlaveResult) -> str:
    """The session's state: complete, partial (something reached tape) or failed."""
    if r.state == "complete":
        return "complete"
    return "partial" if r.tapes else "failed"


def finish_job(
    catalog_path: Path,
    job_id: str,
    results: list[SlaveResult],
    skipped: list[str],
    problems: list[str] | None = None,
) -> JobOutcome:
    """The job's state from its recorded slaves (and those done by an earlier run); any
    verification problem fails the job."""
    with Catalog(catalog_path) as cat:
        return close_job(cat, job_id, results, skipped, problems)


def close_job(
    cat: Catalog,
    job_id: str,
    results: list[SlaveResult],
    skipped: list[str],
    problems: list[str] | None = None,
) -> JobOutcome:
    """finish_job on a catalog the caller holds open, to read the job's report in the same
    opening (an opening costs ~25 ms: DuckDB builds its function catalog each time)."""
    errors = [f"{r.source}: {r.error}" for r in results if r.state != "complete"]
    errors += problems or []
    total = len(results) + len(skipped)
    complete = sum(1 for r in results if r.state == "complete") + len(skipped)
    state = "complete" if complete == total else ("partial" if complete else "failed")
    if problems:
        state = "failed"
    cat.finish_job(job_id, state)
    cat.log(f"job {state}: {complete}/{total} sessions complete", job_id=job_id)
    work = _work_dir(cat.path, job_id)
    if state == "complete" and work.exists():
        shutil.rmtree(work)  # plans of failed sessions stay for inspection until a re-run
    return JobOutcome(
        job_id=job_id,
        state=state,
        sessions=total,
        complete=complete,
        failed=total - complete,
        files=sum(r.files for r in results),
        bytes=sum(r.bytes for r in results),
        skipped=skipped,
        errors=errors,
    )


def record_results(
    catalog_path: Path, job_id: str, pool: Pool, results: list[SlaveResult], skipped: list[str]
) -> JobOutcome:
    """Record every slave, then finish the job (for callers that run slaves themselves)."""
    record_slaves(catalog_path, job_id, pool, results)
    return finish_job(catalog_path, job_id, results, skipped)


def abandon_job(
    catalog_path: Path,
    job_id: str,
    pool: Pool,
    specs: list[SlaveSpec],
    skipped: list[str],
    error: str,
) -> JobOutcome:
    """A planned job none of whose slaves can start (no online drive, the library or the
    Prefect API unreachable): its sessions and the job end failed, so none stays running."""
    failed = [
        SlaveResult(s.session_id, s.subjob, s.source.name, "failed", error=error) for s in specs
    ]
    return record_results(catalog_path, job_id, pool, failed, skipped)
