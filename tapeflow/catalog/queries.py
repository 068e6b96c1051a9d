"""Catalog queries: versions of a path, a tree as of a time, a session's files, what a cartridge
holds, what media expire. Each returns an Arrow table."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from .catalog import Catalog, utc
from .errors import CatalogError, RowsUnavailable


def normalize_prefix(prefix: str) -> str:
    """A tree prefix in catalog form: relative, '/'-separated, no leading/trailing '/'."""
    parts = [p for p in prefix.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CatalogError(f"prefix {prefix!r} may not contain '..'")
    return "/".join(parts)


def _prefix_filter(prefix: str) -> tuple[str, list[str]]:
    """SQL condition + params selecting a path and everything under it (range form, so
    Parquet row-group statistics of the path-sorted files can skip the rest)."""
    prefix = normalize_prefix(prefix)
    if not prefix:
        return "TRUE", []
    # '0' is the character after '/', so [p/, p0) is exactly the paths below p
    return "(f.path = ? OR (f.path >= ? AND f.path < ?))", [prefix, prefix + "/", prefix + "0"]


def path_versions(cat: Catalog, path: str, *, source: str | None = None) -> pa.Table:
    """Every recorded version of one path (all sessions with file detail), oldest first:
    session, job, time, state, type, size, mtime, checksum, barcode, tape_file, block, offset.

    Reads the listed session files directly (same rows as the `files` view, without its glob
    and join on the Parquet side): path-sorted files, bloom filters and the page index make
    this a few page reads per session that holds the path.
    """
    path = normalize_prefix(path)
    return cat.arrow(
        "WITH v AS (SELECT session_id, path, type, size, mtime, ctime, inode, checksum, barcode,"
        ' tape_file, block, "offset" FROM read_parquet(?, union_by_name = true) '
        "WHERE path = ?) SELECT v.session_id, s.job_id, s.source, s.level, "
        "s.state AS session_state, s.started AS session_started, v.* EXCLUDE (session_id) "
        "FROM v JOIN sessions AS s ON s.id = v.session_id ORDER BY s.started, v.session_id",
        lambda: [cat.queryable_files(source), path],
    )


def latest_session(
    cat: Catalog, source: str, *, at: datetime | None = None, level: str | None = None
) -> str | None:
    """Latest complete session of a source started at or before `at` (optionally of one
    level) whose media are intact; None if there is none."""
    found = cat.execute(
        "SELECT id FROM sessions WHERE source = ? AND state = 'complete' AND media_erased IS NULL"
        " AND started <= ? AND (?::VARCHAR IS NULL OR level = ?) ORDER BY started DESC, id DESC"
        " LIMIT 1",
        [source, utc(at), level, level],
    )
    return found[0][0] if found else None


def restore_chain(cat: Catalog, session_id: str) -> list[str]:
    """Sessions that together give the tree of `session_id`: follow base_session links back to
    a full (or a session without a base), oldest first."""
    chain: list[str] = []
    current: str | None = session_id
    while current is not None:
        if current in chain:
            raise CatalogError(f"base_session links of {session_id} form a cycle at {current}")
        row = cat.session(current)
        if row["state"] != "complete" and current != session_id:
            raise CatalogError(f"session {current}, base of {chain[-1]}, is {row['state']}")
        chain.append(current)
        current = None if row["level"] == "full" else row["base_session"]
    chain.reverse()
    return chain


def chain_tree(cat: Catalog, chain: list[str], *, prefix: str = "") -> pa.Table:
    """Merged tree of a restore chain: latest row of each path under prefix, deletions applied;
    FILE_SCHEMA columns sorted by path. RowsUnavailable if any session lacks its rows."""
    missing = cat.unavailable_rows(chain)
    if missing:
        raise RowsUnavailable(missing)
    condition, params = _prefix_filter(prefix)
    files = [str(cat.rows_path(sid)) for sid in chain]
    return cat.arrow(
        "SELECT * EXCLUDE (pos) FROM (SELECT f.*, list_position(?, f.session_id) AS pos "
        f"FROM read_parquet(?, union_by_name = true) AS f WHERE {condition}) "
        "QUALIFY row_number() OVER (PARTITION BY path ORDER BY pos DESC) = 1 "
        "AND type <> 'deleted' ORDER BY path",
        [chain, files, *params],
        partial_ok=False,
    )


def tree_at(cat: Catalog, source: str, at: datetime | None = None, *, prefix: str = "") -> pa.Table:
    """What the tree under `prefix` of a source looked like at time `at` (default now), for a
    point-in-time restore: the restore chain of the latest complete session started by then.
    Empty when no session qualifies."""
    latest = latest_session(cat, source, at=at)
    if latest is None:
        from .schema import FILE_SCHEMA

        return FILE_SCHEMA.empty_table()
    return chain_tree(cat, restore_chain(cat, latest), prefix=prefix)


def session_files(cat: Catalog, session_id: str) -> pa.Table:
    """All rows of one session (FILE_SCHEMA, by path); SessionNotFound / RowsUnavailable."""
    missing = cat.unavailable_rows([session_id])
    if missing:
        raise RowsUnavailable(missing)
    return cat.arrow(
        "SELECT * FROM read_parquet(?) ORDER BY path",
        [str(cat.rows_path(session_id))],
        partial_ok=False,
    )


def media_contents(cat: Catalog, barcode: str) -> pa.Table:
    """Sessions and tape files on a cartridge, in tape-file order (NotFound if unknown)."""
    cat.medium(barcode)
    return cat.arrow(
        "SELECT ms.barcode, ms.tape_file, ms.session_id, ms.sequence, ms.bytes AS piece_bytes, "
        "s.job_id, s.source, s.kind, s.level, s.state, s.started, s.ended, s.files, s.bytes, "
        "s.rows_state FROM media_sessions AS ms JOIN sessions AS s ON s.id = ms.session_id "
        "WHERE ms.barcode = ? ORDER BY ms.tape_file, ms.sequence",
        [barcode],
    )


def session_media(cat: Catalog, session_id: str) -> pa.Table:
    """Cartridges and tape files holding a session, in span order (SessionNotFound if unknown)."""
    cat.session(session_id)
    return cat.arrow(
        "SELECT sequence, barcode, tape_file, bytes FROM media_sessions WHERE session_id = ? "
        "ORDER BY sequence",
        [session_id],
    )


def expiring_media(
    cat: Catalog, as_of: datetime | None = None, *, pool: str | None = None
) -> pa.Table:
    """Written cartridges whose expiry (explicit, else last write + pool retention) is at or
    before `as_of` (default now): candidates for recycling."""
    return cat.arrow(
        "SELECT * FROM (SELECT m.barcode, m.pool, m.location, m.sessions, m.bytes_used, "
        "m.last_write, p.retention_days, coalesce(m.expiry, m.last_write + "
        "to_days(p.retention_days)) AS expiry FROM media AS m LEFT JOIN pools AS p "
        "ON p.name = m.pool WHERE m.state <> 'retired' AND (?::VARCHAR IS NULL OR m.pool = ?)) "
        "WHERE expiry IS NOT NULL AND expiry <= ? ORDER BY expiry, barcode",
        [pool, pool, utc(as_of)],
    )
