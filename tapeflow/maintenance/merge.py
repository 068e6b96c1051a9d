"""Merge scan results into a Catalog: media, jobs, sessions, tape files in span order and each
session's Parquet rows. Idempotent: what the catalog already knows is left as it is, so merging
the same cartridge twice, or a cartridge whose sessions the catalog recorded while writing,
adds nothing.

What the tape cannot give back: 'deleted' rows of incrementals (a vanished path is not a tape
member), ctime and inode of members (not in the pax headers), a session's real start time (the
header's creation time is used, for start and end) and its base_session (inferred: the latest
complete session of the source started before it; the latest complete full for a differential).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tapeflow.catalog import Catalog, NotFound, SessionNotFound, latest_session
from tapeflow.maintenance.scan import MediaScan, ScannedSession

KIND_NAMES = {"files": "file"}  # tape header kind -> catalog session kind


@dataclass
class MergeResult:
    """What a merge added (empty lists: the catalog already knew everything) and what it left."""

    media_added: list[str] = field(default_factory=list)
    jobs_added: list[str] = field(default_factory=list)
    sessions_added: list[str] = field(default_factory=list)
    tape_files_added: list[tuple[str, str, int]] = field(default_factory=list)  # sid, bc, file
    rows_written: list[str] = field(default_factory=list)
    bases_inferred: dict[str, str] = field(default_factory=dict)  # session -> base session
    skipped: list[str] = field(default_factory=list)  # why something was not merged

    @property
    def changed(self) -> bool:
        """Whether the catalog was changed at all."""
        return bool(
            self.media_added
            or self.jobs_added
            or self.sessions_added
            or self.tape_files_added
            or self.rows_written
            or self.bases_inferred
        )


def merge_scans(cat: Catalog, scans: Iterable[MediaScan | ScannedSession]) -> MergeResult:
    """Put media scans (or single scanned sessions) into the catalog; see the module doc."""
    result = MergeResult()
    new_jobs: dict[str, list[str]] = {}
    for scan in scans:
        if isinstance(scan, MediaScan):
            if scan.status != "tapeflow" or scan.label is None:
                result.skipped.append(f"{scan.barcode}: {scan.status} ({scan.problem})")
                continue
            _ensure_media(cat, scan.barcode, scan.label.pool or None, result)
            for session in scan.sessions:
                _merge_session(cat, session, scan.label.pool or None, result, new_jobs)
        else:
            _merge_session(cat, scan, None, result, new_jobs)
    for job_id, sids in new_jobs.items():
        states = {cat.session(sid)["state"] for sid in sids}
        state = "complete" if states == {"complete"} else "partial"
        ended = max(cat.session(sid)["started"] for sid in sids)
        cat.finish_job(job_id, state, ended=ended)
    _infer_bases(cat, result)
    if result.changed:
        cat.log(
            f"merged from tape: {len(result.media_added)} media, {len(result.jobs_added)} jobs, "
            f"{len(result.sessions_added)} sessions, {len(result.tape_files_added)} tape files, "
            f"rows of {len(result.rows_written)} sessions"
        )
    return result


def _ensure_media(cat: Catalog, barcode: str, pool: str | None, result: MergeResult) -> None:
    """Record a labelled cartridge the catalog does not know yet."""
    try:
        cat.medium(barcode)
    except NotFound:
        cat.add_media(barcode, pool, labelled=True)
        result.media_added.append(barcode)


def _merge_session(
    cat: Catalog,
    session: ScannedSession,
    pool: str | None,
    result: MergeResult,
    new_jobs: dict[str, list[str]],
) -> None:
    """Job, session, tape files and rows of one scanned session (what is missing only)."""
    sid = session.session_id
    if not session.has_start:
        result.skipped.append(
            f"session {sid}: only part {session.parts[0].sequence} on "
            f"{session.parts[0].barcode} was read ({session.problem})"
        )
        return
    info = session.info
    created = info.created
    with cat.transaction():
        for part in session.parts:
            _ensure_media(cat, part.barcode, pool, result)
        job_id = info.job_id or f"scan-{sid}"
        try:
            cat.job(job_id)
        except NotFound:
            cat.create_job(
                "backup",
                level=session.level,
                pool=pool,
                parameters={"rebuilt_from_tape": True},
                job_id=job_id,
                started=created,
            )
            result.jobs_added.append(job_id)
            new_jobs[job_id] = []
        try:
            existing = cat.session(sid)
        except SessionNotFound:
            cat.start_session(
                job_id,
                info.source,
                kind=KIND_NAMES.get(info.kind, info.kind),
                level=session.level,
                session_id=sid,
                started=created,
            )
            cat.finish_session(
                sid,
                session.state,
                files=session.members,
                bytes=session.stream_bytes,
                ended=created,
            )
            result.sessions_added.append(sid)
            if job_id in new_jobs:
                new_jobs[job_id].append(sid)
            existing = cat.session(sid)
        else:
            if existing["state"] == "running":
                cat.finish_session(
                    sid, session.state, files=session.members, bytes=session.stream_bytes
                )
        _merge_tape_files(cat, session, result)
    has_rows = session.rows.num_rows > 0 or session.state == "complete"
    if existing["rows_state"] != "present" and has_rows:
        cat.add_session_rows(sid, session.rows)
        result.rows_written.append(sid)


def _merge_tape_files(cat: Catalog, session: ScannedSession, result: MergeResult) -> None:
    """Record the session's parts the catalog lacks, in span order; full cartridges marked."""
    sid = session.session_id
    known = {
        int(seq): (bc, int(tf))
        for seq, bc, tf in cat.execute(
            "SELECT sequence, barcode, tape_file FROM media_sessions WHERE session_id = ?", [sid]
        )
    }
    for i, part in enumerate(session.parts):
        if part.sequence in known:
            if known[part.sequence] != (part.barcode, part.tape_file):
                result.skipped.append(
                    f"session {sid} part {part.sequence}: catalog says {known[part.sequence]}, "
                    f"tape says {(part.barcode, part.tape_file)}; catalog kept"
                )
            continue
        if part.sequence != len(known):
            result.skipped.append(f"session {sid} part {part.sequence}: earlier parts unknown")
            break
        cat.record_tape_file(
            sid, part.barcode, part.tape_file, bytes=part.bytes, when=session.info.created
        )
        known[part.sequence] = (part.barcode, part.tape_file)
        result.tape_files_added.append((sid, part.barcode, part.tape_file))
        if i + 1 < len(session.parts) and cat.medium(part.barcode)["state"] != "full":
            cat.update_media(part.barcode, state="full")


def _infer_bases(cat: Catalog, result: MergeResult) -> None:
    """Give incrementals/differentials without a base the session they were most likely
    compared against (what plan_backup would have chosen at their start)."""
    rows = cat.execute(
        "SELECT id, source, level, started FROM sessions WHERE level <> 'full' "
        "AND base_session IS NULL ORDER BY started, id"
    )
    for sid, source, level, started in rows:
        at: datetime = started - timedelta(microseconds=1)
        base = latest_session(cat, source, at=at, level="full" if level == "differential" else None)
        if base is not None and base != sid:
            cat.execute("UPDATE sessions SET base_session = ? WHERE id = ?", [base, sid])
            result.bases_inferred[sid] = base
