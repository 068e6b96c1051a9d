"""The Catalog: one DuckDB file (jobs, sessions, media, pools, drives, events) beside a directory
of per-session Parquet rows, queried together through the `files` view."""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa

from . import rows as rowsmod
from .errors import (
    CatalogCorrupt,
    CatalogError,
    CatalogLocked,
    CorruptRowsWarning,
    NotFound,
    RowsUnavailable,
    SessionNotFound,
)
from .migrations import migrate

LOCK_WAIT = 60.0  # seconds an open waits while another process holds the DuckDB file
SESSION_STATES = ("running", "complete", "partial", "failed")
LEVELS = ("full", "differential", "incremental")
EVENT_LEVELS = ("debug", "info", "warning", "error")

_CORRUPT_DB_MARKERS = (
    "not a valid DuckDB database",
    "Corrupt database file",
    "Could not read enough bytes from file",
    "does not match stored checksum",
    "Failed to load metadata",
)
# errors about the statement itself: never a reason to suspect a Parquet file
_STATEMENT_ERRORS = (
    duckdb.ParserException,
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.ConstraintException,
    duckdb.ConversionException,
    duckdb.TransactionException,
    duckdb.InterruptException,
)
_LOCK_MARKER = "Could not set lock on file"


SESSION_BATCH = 500  # sessions per INSERT statement in start_sessions


class NewSession(NamedTuple):
    """A session for start_sessions to record as running."""

    source: str
    kind: str = "file"
    level: str = "full"
    base_session: str | None = None
    session_id: str | None = None  # None: a fresh one


class TapePiece(NamedTuple):
    """The next piece of a session on a cartridge, for record_tape_files."""

    session_id: str
    barcode: str
    tape_file: int
    bytes: int = 0


class SessionEnd(NamedTuple):
    """A session's end for finish_sessions; None counts keep what was recorded."""

    session_id: str
    state: str
    files: int | None = None
    bytes: int | None = None


def utc(value: datetime | None = None) -> datetime:
    """A timezone-aware UTC datetime (now when None; naive values are taken as UTC)."""
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def new_id(prefix: str) -> str:
    """A fresh id usable as a file name, e.g. 's-3f2a...'."""
    return f"{prefix}-{uuid.uuid4().hex}"


def _sql_literal(text: str) -> str:
    """Quote a string for the one place SQL can't take a parameter (a view's glob)."""
    return "'" + text.replace("'", "''") + "'"


class Catalog:
    """Open (creating and migrating) the catalog DuckDB file at `path`; Parquet rows go to
    `files_dir` (default: a `files` directory beside the DuckDB file).

    One Catalog holds DuckDB's process-wide write lock and is not thread-safe: serialize calls.
    Slaves in other processes write rows with rows.write_session_rows (no lock) instead.
    Every holder keeps the file briefly, so opening waits up to `lock_wait` seconds for
    another process (a reader's `find`, a master recording a slave) before CatalogLocked.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        files_dir: str | Path | None = None,
        read_only: bool = False,
        lock_wait: float = LOCK_WAIT,
    ) -> None:
        """Connect, migrate, check readability and create the views."""
        self.path = Path(path).resolve()
        self.files_dir = (
            Path(files_dir).resolve() if files_dir else self.path.parent / rowsmod.FILES_DIRNAME
        )
        self.read_only = read_only
        self._depth = 0
        self.con = self._connect(lock_wait)
        try:
            self.schema_version = migrate(self.con) if not read_only else self._version_ro()
            self._check_readable()
            rowsmod.ensure_schema_file(self.files_dir)
            self._create_views()
        except duckdb.Error as exc:
            self.con.close()
            raise self._translate(exc) from exc
        except BaseException:
            self.con.close()
            raise

    # -- connection, errors, transactions -------------------------------------------------

    def _connect(self, lock_wait: float) -> duckdb.DuckDBPyConnection:
        """Connect, waiting up to `lock_wait` s for another process's lock; lock and
        not-a-database failures become typed errors."""
        if self.path.exists() and self.path.is_dir():
            raise CatalogError(f"catalog path {self.path} is a directory, not a DuckDB file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + lock_wait
        pause = 0.01
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
                break
            except duckdb.Error as exc:
                error = self._translate(exc)
                if not isinstance(error, CatalogLocked) or time.monotonic() >= deadline:
                    raise error from exc
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.2)
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET parquet_metadata_cache = true")
        return con

    def _version_ro(self) -> int:
        """Schema version of a catalog opened read-only (must already be current)."""
        from .migrations import SCHEMA_VERSION, current_version

        version = current_version(self.con)
        if version != SCHEMA_VERSION:
            raise CatalogError(
                f"catalog {self.path} has schema version {version}, expected {SCHEMA_VERSION}; "
                "open it read-write once to migrate"
            )
        return version

    def _check_readable(self) -> None:
        """Touch every table so a damaged file is reported at open, not mid-backup."""
        for table in ("jobs", "sessions", "media", "media_sessions", "pools", "drives", "events"):
            self.con.execute(f"SELECT count(*) FROM {table}").fetchone()

    def _translate(self, exc: duckdb.Error) -> CatalogError:
        """Map a DuckDB error to CatalogLocked / CatalogCorrupt / CatalogError."""
        text = str(exc)
        if _LOCK_MARKER in text:
            return CatalogLocked(self.path, text)
        if any(marker in text for marker in _CORRUPT_DB_MARKERS) and "parquet" not in text.lower():
            return CatalogCorrupt(self.path, text)
        return CatalogError(text)

    def close(self) -> None:
        """Release the DuckDB file (and its lock)."""
        self.con.close()

    def __enter__(self) -> Catalog:
        """Use as a context manager: closes on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the catalog."""
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Catalog]:
        """All catalog writes inside commit together or not at all (nesting joins the outer)."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self.con.execute("ROLLBACK")
            raise
        self._depth = 0
        self.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple]:
        """Run parameterized SQL on the DuckDB file; return all rows; typed errors."""
        try:
            result = self.con.execute(sql, params)
            return result.fetchall() if result.description else []
        except duckdb.Error as exc:
            raise self._translate(exc) from exc

    def records(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict]:
        """Run parameterized SQL; return rows as dicts keyed by column name."""
        try:
            result = self.con.execute(sql, params)
            names = [d[0] for d in result.description or ()]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        except duckdb.Error as exc:
            raise self._translate(exc) from exc

    def arrow(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | Callable[[], Sequence[Any]] = (),
        *,
        partial_ok: bool = True,
    ) -> pa.Table:
        """Run parameterized SQL that may read Parquet rows; return an Arrow table.

        A damaged session file is renamed to <id>.parquet.corrupt (kept), its session marked
        rows_state='corrupt', a CorruptRowsWarning names it, and the query is answered from the
        other sessions (params may be a callable, re-evaluated for the retry, e.g. to list
        the files that are still present). With partial_ok=False (answers that need every
        session, e.g. a restore chain) RowsUnavailable names the damaged sessions instead.
        """
        while True:
            try:
                values = params() if callable(params) else params
                return self.con.sql(sql, params=values).to_arrow_table()
            except duckdb.Error as exc:
                if isinstance(exc, _STATEMENT_ERRORS):
                    raise self._translate(exc) from exc
                quarantined = self._quarantine_after(exc)
                if not quarantined:
                    raise self._translate(exc) from exc
                if not partial_ok:
                    raise RowsUnavailable(dict.fromkeys(quarantined, "corrupt")) from exc
                warnings.warn(CorruptRowsWarning(quarantined), stacklevel=2)

    # -- Parquet health ---------------------------------------------------------------------

    def _present_files(self) -> dict[str, Path]:
        """Registered, present session files by session id."""
        rows = self.execute("SELECT id FROM sessions WHERE rows_state = 'present' ORDER BY id")
        return {sid: rowsmod.rows_path(self.files_dir, sid) for (sid,) in rows}

    def queryable_files(self, source: str | None = None) -> list[str]:
        """Parquet files of the sessions the `files` view shows (present rows, media intact),
        optionally of one source; the schema file first so the list is never empty."""
        rows = self.execute(
            "SELECT id FROM sessions WHERE rows_state = 'present' AND media_erased IS NULL "
            "AND (?::VARCHAR IS NULL OR source = ?) ORDER BY started, id",
            [source, source],
        )
        files = [str(self.files_dir / rowsmod.SCHEMA_FILE)]
        return files + [str(rowsmod.rows_path(self.files_dir, sid)) for (sid,) in rows]

    def _quarantine_after(self, exc: duckdb.Error) -> dict[str, Path]:
        """After a failed read, find damaged session files and set them aside; {id: new path}."""
        text = str(exc)
        present = self._present_files()
        named = {sid: p for sid, p in present.items() if p.name in text}
        suspects = named or present
        damaged = {}
        for sid, path in suspects.items():
            problem = rowsmod.read_problem(path) if path.exists() else "file missing"
            if problem:
                damaged[sid] = (path, problem)
        if not damaged and _schema_problem(self.files_dir, text):
            damaged["_schema"] = (self.files_dir / rowsmod.SCHEMA_FILE, "schema file damaged")
        return {sid: self._quarantine(sid, path, why) for sid, (path, why) in damaged.items()}

    def _quarantine(self, session_id: str, path: Path, why: str) -> Path:
        """Rename a damaged file out of the glob, mark its session, log an event."""
        target = path.with_name(path.name.removesuffix(rowsmod.SUFFIX) + rowsmod.CORRUPT_SUFFIX)
        if path.exists():
            path.replace(target)
        if session_id == "_schema":
            rowsmod.ensure_schema_file(self.files_dir)
            return target
        with self.transaction():
            self.execute("UPDATE sessions SET rows_state = 'corrupt' WHERE id = ?", [session_id])
            self.log(
                f"Parquet rows of session {session_id} are damaged ({why}); set aside as {target}",
                level="error",
                session_id=session_id,
            )
        return target

    def check_rows(self) -> dict[str, str]:
        """Fully read every registered session file; {session id: problem} for those that fail
        (nothing is moved; use it for a health report)."""
        problems = {}
        for sid, path in self._present_files().items():
            problem = rowsmod.read_problem(path) if path.exists() else "file missing"
            if problem:
                problems[sid] = problem
        return problems

    def _create_views(self) -> None:
        """(Re)create the `files` view over all session Parquet files, joined to sessions."""
        glob = _sql_literal(str(self.files_dir / f"*{rowsmod.SUFFIX}"))
        self.con.execute(
            f"""CREATE OR REPLACE TEMP VIEW files AS
            SELECT f.*, s.job_id, s.source, s.kind AS session_kind, s.level,
                   s.state AS session_state, s.started AS session_started,
                   s.ended AS session_ended
            FROM read_parquet({glob}, union_by_name = true) AS f
            JOIN sessions AS s ON s.id = f.session_id
            WHERE s.rows_state = 'present' AND s.media_erased IS NULL"""
        )

    # -- pools, media, drives -------------------------------------------------------------

    def set_pool(
        self, name: str, retention_days: int, *, append: bool = True, description: str | None = None
    ) -> None:
        """Create or update a media pool (append=False: one session per cartridge)."""
        self.execute(
            "INSERT INTO pools VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "retention_days = excluded.retention_days, append = excluded.append, "
            "description = excluded.description",
            [name, retention_days, append, description],
        )

    def add_media(
        self,
        barcode: str,
        pool: str | None,
        *,
        capacity: int | None = None,
        location: str | None = None,
        labelled: bool = False,
    ) -> None:
        """Record a cartridge (new or re-pooled); counters of an existing one are kept."""
        self.execute(
            "INSERT INTO media (barcode, pool, capacity, location, labelled, state) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (barcode) DO UPDATE SET pool = excluded.pool, "
            "capacity = coalesce(excluded.capacity, media.capacity), "
            "location = coalesce(excluded.location, media.location), "
            "labelled = excluded.labelled OR media.labelled",
            [barcode, pool, capacity, location, labelled, "labelled" if labelled else "blank"],
        )

    def update_media(self, barcode: str, **fields: Any) -> None:
        """Set some of a cartridge's columns (location, state, labelled, expiry, capacity...)."""
        allowed = {"pool", "location", "capacity", "state", "labelled", "expiry", "bytes_used"}
        unknown = set(fields) - allowed
        if unknown:
            raise CatalogError(f"cannot set media column(s) {sorted(unknown)}")
        self.medium(barcode)
        for name, value in fields.items():  # column names come from the allow-list above
            self.execute(f"UPDATE media SET {name} = ? WHERE barcode = ?", [value, barcode])

    def medium(self, barcode: str) -> dict:
        """One cartridge's row, or NotFound."""
        found = self.records("SELECT * FROM media WHERE barcode = ?", [barcode])
        if not found:
            raise NotFound(f"no cartridge {barcode!r} in the catalog")
        return found[0]

    def set_drive(
        self, library: str, number: int, *, online: bool = True, serial: str | None = None
    ) -> None:
        """Create or update a drive of a library (online state follows operator actions)."""
        self.execute(
            "INSERT INTO drives VALUES (?, ?, ?, ?) ON CONFLICT (library, number) DO UPDATE SET "
            "online = excluded.online, serial = coalesce(excluded.serial, drives.serial)",
            [library, number, online, serial],
        )

    def drives(self, library: str | None = None) -> list[dict]:
        """Drives (of one library or all), ordered by library and number."""
        return self.records(
            "SELECT * FROM drives WHERE ?::VARCHAR IS NULL OR library = ? ORDER BY library, number",
            [library, library],
        )

    # -- jobs and sessions ----------------------------------------------------------------

    def create_job(
        self,
        kind: str,
        *,
        level: str | None = None,
        pool: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        job_id: str | None = None,
        started: datetime | None = None,
    ) -> str:
        """Record a running job; return its id."""
        job_id = job_id or new_id("j")
        self.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, 'running', ?, NULL, ?, ?)",
            [job_id, kind, level, utc(started), pool, json.dumps(parameters or {})],
        )
        return job_id

    def finish_job(self, job_id: str, state: str, *, ended: datetime | None = None) -> None:
        """Record a job's outcome (complete|partial|failed|cancelled)."""
        self.job(job_id)
        self.execute(
            "UPDATE jobs SET state = ?, ended = ? WHERE id = ?", [state, utc(ended), job_id]
        )

    def job(self, job_id: str) -> dict:
        """One job's row (parameters decoded), or NotFound."""
        found = self.records("SELECT * FROM jobs WHERE id = ?", [job_id])
        if not found:
            raise NotFound(f"no job {job_id!r} in the catalog")
        row = found[0]
        row["parameters"] = json.loads(row["parameters"]) if row["parameters"] else {}
        return row

    def start_session(
        self,
        job_id: str,
        source: str,
        *,
        kind: str = "file",
        level: str = "full",
        base_session: str | None = None,
        session_id: str | None = None,
        started: datetime | None = None,
    ) -> str:
        """Record a running session of a job; return its id (safe as a file name)."""
        new = NewSession(source, kind, level, base_session, session_id)
        return self.start_sessions(job_id, [new], started=started)[0]

    def start_sessions(
        self, job_id: str, sessions: Sequence[NewSession], *, started: datetime | None = None
    ) -> list[str]:
        """Record running sessions of a job with one statement per SESSION_BATCH (a job
        planning hundreds of sources would otherwise pay a statement each); their ids."""
        for new in sessions:
            if new.level not in LEVELS:
                raise CatalogError(f"unknown level {new.level!r}; use one of {LEVELS}")
        self.job(job_id)
        bases = sorted({new.base_session for new in sessions if new.base_session is not None})
        if bases:
            self.require_sessions(bases)
        ids = [rowsmod.check_session_id(new.session_id or new_id("s")) for new in sessions]
        when = utc(started)
        rows = [
            [sid, job_id, new.source, new.kind, new.level, when, new.base_session]
            for sid, new in zip(ids, sessions, strict=True)
        ]
        with self.transaction():
            for first in range(0, len(rows), SESSION_BATCH):
                batch = rows[first : first + SESSION_BATCH]
                self.execute(
                    "INSERT INTO sessions (id, job_id, source, kind, level, state, started,"
                    " base_session) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, 'running', ?, ?)"] * len(batch)),
                    [value for row in batch for value in row],
                )
        return ids

    def finish_session(
        self,
        session_id: str,
        state: str,
        *,
        files: int | None = None,
        bytes: int | None = None,  # noqa: A002 - the column's name
        ended: datetime | None = None,
    ) -> None:
        """Record a session's end state (complete|partial|failed) and its counts."""
        self.finish_sessions([SessionEnd(session_id, state, files, bytes)], ended=ended)

    def finish_sessions(self, ends: Sequence[SessionEnd], *, ended: datetime | None = None) -> None:
        """Record sessions' ends with one statement (a master records a batch of slaves at
        once, and each statement costs about a millisecond)."""
        for end in ends:
            if end.state not in SESSION_STATES:
                raise CatalogError(
                    f"unknown session state {end.state!r}; use one of {SESSION_STATES}"
                )
        if not ends:
            return
        latest: dict[str, SessionEnd] = {}  # one row a session, as calls one after another
        for end in ends:
            before = latest.get(end.session_id)
            if before is not None:
                end = end._replace(
                    files=before.files if end.files is None else end.files,
                    bytes=before.bytes if end.bytes is None else end.bytes,
                )
            latest[end.session_id] = end
        self.require_sessions(list(latest))
        self.execute(
            "UPDATE sessions SET state = v.state, ended = ?, files = coalesce(v.files, "
            "sessions.files), bytes = coalesce(v.bytes, sessions.bytes) FROM (VALUES "
            + ", ".join(["(?, ?, ?::BIGINT, ?::BIGINT)"] * len(latest))
            + ") AS v(id, state, files, bytes) WHERE sessions.id = v.id",
            [utc(ended), *(value for end in latest.values() for value in end)],
        )

    def require_sessions(self, session_ids: Sequence[str]) -> None:
        """SessionNotFound for the first of these sessions the catalog does not hold."""
        self._require("sessions", "id", session_ids, SessionNotFound)

    def require_media(self, barcodes: Sequence[str]) -> None:
        """NotFound for the first of these cartridges the catalog does not hold."""

        def missing(barcode: str) -> NotFound:
            return NotFound(f"no cartridge {barcode!r} in the catalog")

        self._require("media", "barcode", barcodes, missing)

    def _require(
        self, table: str, column: str, keys: Sequence[str], error: Callable[[str], Exception]
    ) -> None:
        """One query for the existence of many keys (table and column are ours, not input)."""
        wanted = list(dict.fromkeys(keys))
        found = {
            row[0]
            for row in self.execute(
                f"SELECT {column} FROM {table} WHERE list_contains(?, {column})", [wanted]
            )
        }
        for key in wanted:
            if key not in found:
                raise error(key)

    def mark_running_partial(self, job_id: str) -> int:
        """A cancelled/crashed job: its still-running sessions become partial; return how many."""
        rows = self.execute(
            "UPDATE sessions SET state = 'partial', ended = ? WHERE job_id = ? "
            "AND state = 'running' RETURNING id",
            [utc(), job_id],
        )
        return len(rows)

    def session(self, session_id: str) -> dict:
        """One session's row, or SessionNotFound."""
        found = self.records("SELECT * FROM sessions WHERE id = ?", [session_id])
        if not found:
            raise SessionNotFound(session_id)
        return found[0]

    def sessions(self, *, source: str | None = None, job_id: str | None = None) -> list[dict]:
        """Sessions, optionally of one source and/or job, oldest first."""
        return self.records(
            "SELECT * FROM sessions WHERE (?::VARCHAR IS NULL OR source = ?) AND "
            "(?::VARCHAR IS NULL OR job_id = ?) ORDER BY started, id",
            [source, source, job_id, job_id],
        )

    def record_tape_file(
        self,
        session_id: str,
        barcode: str,
        tape_file: int,
        *,
        bytes: int = 0,  # noqa: A002 - the column's name
        when: datetime | None = None,
    ) -> int:
        """Record that (the next piece of) a session is tape file N of a cartridge; update the
        cartridge's counters; return the piece's sequence number (0 = first)."""
        return self.record_tape_files(
            [TapePiece(session_id, barcode, tape_file, bytes)], when=when
        )[0]

    def record_tape_files(
        self, pieces: Sequence[TapePiece], *, when: datetime | None = None
    ) -> list[int]:
        """record_tape_file for many pieces, in order, with one statement per table; their
        sequence numbers. A cartridge counts a session once, however many pieces it holds."""
        if not pieces:
            return []
        when = utc(when)
        with self.transaction():
            self.require_sessions([p.session_id for p in pieces])
            self.require_media([p.barcode for p in pieces])
            known = self.execute(
                "SELECT session_id, max(sequence) + 1, list(DISTINCT barcode) FROM media_sessions "
                "WHERE list_contains(?, session_id) GROUP BY session_id",
                [list({p.session_id for p in pieces})],
            )
            following = {sid: int(n) for sid, n, _ in known}
            on_media = {(sid, barcode) for sid, _, barcodes in known for barcode in barcodes}
            rows, firsts, media = [], [], {}  # media: barcode -> [sessions added, bytes]
            for piece in pieces:
                sequence = following.get(piece.session_id, 0)
                following[piece.session_id] = sequence + 1
                row = [piece.session_id, sequence, piece.barcode, piece.tape_file, piece.bytes]
                rows.append(row)
                if sequence == 0:
                    firsts += [piece.session_id, piece.barcode, piece.tape_file]
                counts = media.setdefault(piece.barcode, [0, 0])
                if (piece.session_id, piece.barcode) not in on_media:
                    on_media.add((piece.session_id, piece.barcode))
                    counts[0] += 1
                counts[1] += piece.bytes
            self.execute(
                "INSERT INTO media_sessions VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(rows)),
                [value for row in rows for value in row],
            )
            if firsts:
                self.execute(
                    "UPDATE sessions SET first_barcode = v.barcode, first_tape_file = v.tape_file "
                    "FROM (VALUES "
                    + ", ".join(["(?, ?, ?::INTEGER)"] * (len(firsts) // 3))
                    + ") AS v(id, barcode, tape_file) WHERE sessions.id = v.id",
                    firsts,
                )
            self.execute(
                "UPDATE media SET sessions = media.sessions + v.added, "
                "bytes_used = media.bytes_used + v.bytes, first_use = coalesce(first_use, ?), "
                "last_write = ?, labelled = TRUE, "
                "state = CASE WHEN state = 'blank' THEN 'labelled' ELSE state END FROM (VALUES "
                + ", ".join(["(?, ?::BIGINT, ?::BIGINT)"] * len(media))
                + ") AS v(barcode, added, bytes) WHERE media.barcode = v.barcode",
                [when, when, *(v for barcode, c in media.items() for v in (barcode, *c))],
            )
        return [row[1] for row in rows]

    # -- events ---------------------------------------------------------------------------

    def log(
        self,
        message: str,
        *,
        level: str = "info",
        job_id: str | None = None,
        session_id: str | None = None,
        time: datetime | None = None,
    ) -> None:
        """Append an event to the catalog's log."""
        if level not in EVENT_LEVELS:
            raise CatalogError(f"unknown event level {level!r}; use one of {EVENT_LEVELS}")
        self.execute(
            "INSERT INTO events (time, level, job_id, session_id, message) VALUES (?, ?, ?, ?, ?)",
            [utc(time), level, job_id, session_id, message],
        )

    def events(
        self, *, job_id: str | None = None, session_id: str | None = None, limit: int = 1000
    ) -> list[dict]:
        """Latest events (optionally of a job or session), oldest first."""
        return self.records(
            "SELECT * FROM (SELECT * FROM events WHERE (?::VARCHAR IS NULL OR job_id = ?) AND "
            "(?::VARCHAR IS NULL OR session_id = ?) ORDER BY id DESC LIMIT ?) ORDER BY id",
            [job_id, job_id, session_id, session_id, limit],
        )

    # -- Parquet rows ---------------------------------------------------------------------

    def rows_path(self, session_id: str) -> Path:
        """Where a session's Parquet rows are (or will be) written."""
        return rowsmod.rows_path(self.files_dir, session_id)

    def add_session_rows(self, session_id: str, data: rowsmod.RowsInput) -> rowsmod.RowsFile:
        """Write a session's rows to Parquet and register them (in-process slave or master)."""
        self.session(session_id)
        rowsmod.write_session_rows(self.files_dir, session_id, data)
        return self.register_session_rows(session_id)

    def register_session_rows(self, session_id: str) -> rowsmod.RowsFile:
        """Register the Parquet file another process wrote with write_session_rows()."""
        return self.register_sessions_rows([session_id])[0]

    def register_sessions_rows(self, session_ids: Sequence[str]) -> list[rowsmod.RowsFile]:
        """register_session_rows for many sessions: every file is checked before one
        statement registers them all."""
        if not session_ids:
            return []
        self.require_sessions(session_ids)
        infos = {sid: rowsmod.verify_rows_file(self.rows_path(sid), sid) for sid in session_ids}
        self.execute(
            "UPDATE sessions SET rows_state = 'present', row_count = v.rows, "
            "rows_bytes = v.bytes, pruned_at = NULL FROM (VALUES "
            + ", ".join(["(?, ?::BIGINT, ?::BIGINT)"] * len(infos))
            + ") AS v(id, rows, bytes) WHERE sessions.id = v.id",
            [value for sid, info in infos.items() for value in (sid, info.rows, info.bytes)],
        )
        return [infos[sid] for sid in session_ids]

    def unavailable_rows(self, session_ids: Sequence[str]) -> dict[str, str]:
        """Of these sessions, those whose rows can't be read: {id: rows_state or 'media erased'}."""
        if not session_ids:
            return {}
        found = self.execute(
            "SELECT id, CASE WHEN media_erased IS NOT NULL THEN 'media erased' ELSE rows_state "
            "END FROM sessions WHERE list_contains(?, id)",
            [list(session_ids)],
        )
        states = dict(found)
        for sid in session_ids:
            if sid not in states:
                raise SessionNotFound(sid)
        return {sid: state for sid, state in states.items() if state != "present"}


def _schema_problem(files_dir: Path, text: str) -> bool:
    """Whether a DuckDB error names the schema file and that file is unreadable."""
    path = files_dir / rowsmod.SCHEMA_FILE
    return rowsmod.SCHEMA_FILE in text and rowsmod.read_problem(path) is not None
