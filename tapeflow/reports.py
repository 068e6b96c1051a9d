"""Reports people read: media status, pools, sessions per pool, jobs. Each is a list of plain
rows (JSON-friendly dicts: times as ISO 8601 UTC strings), and format_table / markdown_table
render rows as aligned text or Markdown. Prefect-free: the CLI and the flows share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from tapeflow.backup.model import SCRATCH_POOL
from tapeflow.backup.pools import EXPIRY_SQL, require_pool
from tapeflow.catalog import Catalog, utc
from tapeflow.library import Inventory

MEDIA_COLUMNS = (
    "barcode",
    "pool",
    "status",
    "state",
    "location",
    "bytes_used",
    "sessions",
    "first_use",
    "last_write",
    "expiry",
    "expired",
)
POOL_COLUMNS = (
    "pool",
    "retention_days",
    "append",
    "cartridges",
    "written",
    "expired",
    "full",
    "sessions",
    "bytes_used",
    "next_expiry",
)
POOL_SESSION_COLUMNS = (
    "pool",
    "barcode",
    "tape_file",
    "session_id",
    "source",
    "level",
    "state",
    "started",
    "bytes",
    "expiry",
)
JOB_COLUMNS = (
    "job_id",
    "kind",
    "level",
    "pool",
    "state",
    "started",
    "slaves",
    "sessions",
    "complete",
    "failed",
    "files",
    "bytes",
    "seconds",
    "mb_per_s",
    "errors",
)
JOB_SESSION_COLUMNS = (
    "source",
    "session_id",
    "level",
    "state",
    "files",
    "bytes",
    "seconds",
    "mb_per_s",
    "cartridges",
    "error",
)
_TIME_COLUMNS = {"first_use", "last_write", "expiry", "next_expiry", "started", "ended"}
_BYTE_COLUMNS = {"bytes", "bytes_used"}


def _time(value: datetime | None) -> str | None:
    return utc(value).isoformat(timespec="seconds") if value is not None else None


# -- media and pools ------------------------------------------------------------------------


def locations(inventory: Inventory) -> dict[str, str]:
    """Where each barcode is in the library: 'slot N', 'drive N' or 'mail slot N'."""
    where = {s.barcode: f"slot {s.number}" for s in inventory.slots if s.barcode}
    where |= {s.barcode: f"mail slot {s.number}" for s in inventory.mail_slots if s.barcode}
    where |= {d.barcode: f"drive {d.number}" for d in inventory.drives if d.barcode}
    return where


def _status(row: dict[str, Any], expired: bool) -> str:
    """One word a person reads first: scratch, expired, full, empty, in use, retired..."""
    if row["state"] in ("retired", "error"):
        return row["state"]
    if row["pool"] == SCRATCH_POOL:
        return "scratch"
    if expired:
        return "expired"
    if row["state"] == "full":
        return "full"
    return "in use" if row["sessions"] else "empty"


def media_report(
    cat: Catalog,
    *,
    pool: str | None = None,
    barcode: str | None = None,
    inventory: Inventory | None = None,
    as_of: datetime | None = None,
) -> list[dict[str, Any]]:
    """Each cartridge's status as of `as_of` (MEDIA_COLUMNS; live locations and uncatalogued
    cartridges from `inventory`); UnknownPool / NotFound for a bad filter."""
    if pool is not None:
        require_pool(cat, pool)
    if barcode is not None:
        cat.medium(barcode)
    now = utc(as_of)
    found = cat.records(
        "SELECT m.barcode, m.pool, m.state, m.location, m.bytes_used, m.sessions, m.first_use,"
        f" m.last_write, {EXPIRY_SQL} AS expiry FROM media AS m LEFT JOIN pools AS p "
        "ON p.name = m.pool WHERE (?::VARCHAR IS NULL OR m.pool = ?) AND "
        "(?::VARCHAR IS NULL OR m.barcode = ?) ORDER BY m.pool NULLS LAST, m.barcode",
        [pool, pool, barcode, barcode],
    )
    where = locations(inventory) if inventory is not None else {}
    rows = []
    for r in found:
        expired = r["sessions"] > 0 and r["expiry"] is not None and utc(r["expiry"]) <= now
        location = where.get(r["barcode"], "not in library") if inventory else r["location"]
        rows.append(
            {
                "barcode": r["barcode"],
                "pool": r["pool"],
                "status": _status(r, expired),
                "state": r["state"],
                "location": location,
                "bytes_used": int(r["bytes_used"]),
                "sessions": int(r["sessions"]),
                "first_use": _time(r["first_use"]),
                "last_write": _time(r["last_write"]),
                "expiry": _time(r["expiry"]),
                "expired": expired,
            }
        )
    if inventory is not None and pool is None and barcode is None:
        known = {r["barcode"] for r in rows}
        for code, place in sorted(where.items()):
            if code not in known and not code.startswith("CLN"):
                rows.append(
                    dict.fromkeys(MEDIA_COLUMNS)
                    | {"barcode": code, "status": "not in catalog", "location": place}
                    | {"bytes_used": 0, "sessions": 0, "expired": False}
                )
    return rows


def pool_report(cat: Catalog, *, as_of: datetime | None = None) -> list[dict[str, Any]]:
    """One row per pool: retention, append mode, cartridges (written, expired, full), sessions
    on its cartridges, bytes and the next expiry still to come."""
    now = utc(as_of)
    found = cat.records(
        "WITH names AS (SELECT name FROM pools UNION SELECT pool FROM media WHERE pool IS NOT "
        f"NULL), m AS (SELECT m.*, {EXPIRY_SQL} AS exp FROM media AS m LEFT JOIN pools AS p "
        "ON p.name = m.pool) SELECT n.name AS pool, p.retention_days, p.append, "
        "count(m.barcode) AS cartridges, "
        "count(m.barcode) FILTER (WHERE m.sessions > 0) AS written, "
        "count(m.barcode) FILTER (WHERE m.sessions > 0 AND m.exp <= ?) AS expired, "
        "count(m.barcode) FILTER (WHERE m.state = 'full') AS full, "
        "coalesce(sum(m.bytes_used), 0) AS bytes_used, min(m.exp) FILTER (WHERE m.exp > ?) "
        "AS next_expiry, (SELECT count(DISTINCT ms.session_id) FROM media_sessions AS ms "
        "JOIN media AS mm ON mm.barcode = ms.barcode WHERE mm.pool = n.name) AS sessions "
        "FROM names AS n LEFT JOIN pools AS p ON p.name = n.name LEFT JOIN m "
        "ON m.pool = n.name GROUP BY n.name, p.retention_days, p.append ORDER BY n.name",
        [now, now],
    )
    return [
        {
            **{k: r[k] for k in POOL_COLUMNS if k != "next_expiry"},
            "bytes_used": int(r["bytes_used"]),
            "next_expiry": _time(r["next_expiry"]),
        }
        for r in found
    ]


def pool_sessions(cat: Catalog, *, pool: str | None = None) -> list[dict[str, Any]]:
    """Sessions per pool: every tape file on the pool's cartridges, by pool, barcode, file."""
    if pool is not None:
        require_pool(cat, pool)
    found = cat.records(
        "SELECT m.pool, ms.barcode, ms.tape_file, ms.session_id, s.job_id, s.source, s.level,"
        f" s.state, s.started, ms.bytes, {EXPIRY_SQL} AS expiry FROM media_sessions AS ms "
        "JOIN media AS m ON m.barcode = ms.barcode LEFT JOIN pools AS p ON p.name = m.pool "
        "JOIN sessions AS s ON s.id = ms.session_id WHERE (?::VARCHAR IS NULL OR m.pool = ?) "
        "ORDER BY m.pool, ms.barcode, ms.tape_file, ms.sequence",
        [pool, pool],
    )
    return [
        {**r, "started": _time(r["started"]), "expiry": _time(r["expiry"]), "bytes": r["bytes"]}
        for r in found
    ]


# -- jobs -----------------------------------------------------------------------------------


def _errors(cat: Catalog, job_id: str) -> list[str]:
    return [e["message"] for e in cat.events(job_id=job_id) if e["level"] == "error"]


def _rate(nbytes: int, seconds: float | None) -> float:
    return round(nbytes / seconds / 1e6, 1) if seconds else 0.0


def job_report(cat: Catalog, *, job_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Per job (one, or the latest `limit`): slaves, sessions, files, bytes, seconds, MB/s,
    state and errors (JOB_COLUMNS); NotFound for an unknown job."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, not {limit}")
    if job_id is not None:
        jobs = [cat.job(job_id)]
    else:
        jobs = cat.records("SELECT * FROM jobs ORDER BY started DESC, id LIMIT ?", [limit])
    rows = []
    for job in jobs:
        sessions = cat.sessions(job_id=job["id"])
        nbytes = sum(int(s["bytes"] or 0) for s in sessions)
        seconds = (
            (utc(job["ended"]) - utc(job["started"])).total_seconds() if job["ended"] else None
        )
        rows.append(
            {
                "job_id": job["id"],
                "kind": job["kind"],
                "level": job["level"],
                "pool": job["pool"],
                "state": job["state"],
                "started": _time(job["started"]),
                "ended": _time(job["ended"]),
                "slaves": len({s["source"] for s in sessions}),
                "sessions": len(sessions),
                "complete": sum(s["state"] == "complete" for s in sessions),
                "failed": sum(s["state"] in ("failed", "partial") for s in sessions),
                "files": sum(int(s["files"] or 0) for s in sessions),
                "bytes": nbytes,
                "seconds": round(seconds, 1) if seconds is not None else None,
                "mb_per_s": _rate(nbytes, seconds),
                "errors": _errors(cat, job["id"]),
            }
        )
    return rows


def job_sessions(cat: Catalog, job_id: str) -> list[dict[str, Any]]:
    """One row per session of a job (JOB_SESSION_COLUMNS: counts, MB/s, cartridges, error);
    NotFound for an unknown job."""
    cat.job(job_id)
    errors: dict[str, str] = {}
    for event in cat.events(job_id=job_id):
        if event["level"] == "error" and event["session_id"]:
            errors[event["session_id"]] = event["message"]
    tapes: dict[str, list[str]] = {}
    for session_id, barcode in cat.execute(
        "SELECT m.session_id, m.barcode FROM media_sessions m JOIN sessions s"
        " ON s.id = m.session_id WHERE s.job_id = ? ORDER BY m.session_id, m.sequence",
        [job_id],
    ):
        tapes.setdefault(session_id, []).append(barcode)
    rows = []
    for s in cat.sessions(job_id=job_id):
        seconds = (utc(s["ended"]) - utc(s["started"])).total_seconds() if s["ended"] else None
        rows.append(
            {
                "source": s["source"],
                "session_id": s["id"],
                "level": s["level"],
                "state": s["state"],
                "files": int(s["files"] or 0),
                "bytes": int(s["bytes"] or 0),
                "seconds": round(seconds, 1) if seconds is not None else None,
                "mb_per_s": _rate(int(s["bytes"] or 0), seconds),
                "cartridges": " ".join(tapes.get(s["id"], [])),
                "error": errors.get(s["id"]),
            }
        )
    return rows


# -- rendering ------------------------------------------------------------------------------


def _cell(column: str, value: Any) -> str:
    """How one value reads in a table."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column in _BYTE_COLUMNS and isinstance(value, int):
        return human_bytes(value)
    if column in _TIME_COLUMNS and isinstance(value, str):
        return value.replace("T", " ").removesuffix("+00:00")
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value) or "-"
    return str(value)


def human_bytes(value: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _grid(rows: Iterable[dict[str, Any]], columns: Sequence[str] | None) -> tuple[list, list]:
    rows = list(rows)
    cols = list(columns or (rows[0].keys() if rows else ()))
    return cols, [[_cell(c, r.get(c)) for c in cols] for r in rows]


def format_table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    title: str | None = None,
    empty: str = "(none)",
) -> str:
    """Rows as an aligned text table (numbers right-aligned), with an optional title line."""
    cols, cells = _grid(rows, columns)
    lines = [title] if title else []
    if not cells:
        return "\n".join([*lines, empty])
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    numeric = [all(_numeric(row[i]) for row in cells) for i in range(len(cols))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines += [line(cols), line(["-" * w for w in widths]), *(line(row) for row in cells)]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    head = text.split(" ")[0]
    return text == "-" or head.replace(".", "", 1).isdigit()


def markdown_table(rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as a GitHub-flavoured Markdown table (for Prefect markdown artifacts)."""
    cols, cells = _grid(rows, columns)
    if not cols:
        return "_none_"

    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in cells]
    return "\n".join(lines)


def job_markdown(job: dict[str, Any], sessions: list[dict[str, Any]]) -> str:
    """The job report as Markdown: a summary line, the sessions table, the errors."""
    head = (
        f"### Job {job['job_id']}: {job['state']}\n\n"
        f"{job['slaves']} slave(s), {job['sessions']} session(s) ({job['complete']} complete, "
        f"{job['failed']} failed), {job['files']} files, {human_bytes(job['bytes'])} in "
        f"{_cell('seconds', job['seconds'])} s ({job['mb_per_s']:.1f} MB/s), pool "
        f"{job['pool'] or '-'}\n"
    )
    errors = "".join(f"\n- {e}" for e in job["errors"])
    return (
        head
        + "\n"
        + markdown_table(sessions, JOB_SESSION_COLUMNS)
        + (f"\n\n**Errors**\n{errors}" if errors else "")
    )
