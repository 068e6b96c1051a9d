"""Pruning: drop the file detail (Parquet) of old sessions, or of sessions whose cartridge was
reformatted, while keeping job, session and media rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from .catalog import Catalog, utc

DEFAULT_KEEP_DAYS = 30


@dataclass
class PruneResult:
    """Sessions whose rows were dropped, bytes freed, and files that could not be removed."""

    sessions: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    not_removed: dict[str, str] = field(default_factory=dict)


def _drop_rows(cat: Catalog, session_ids: list[str], now: datetime) -> PruneResult:
    """Mark sessions pruned (committed first, so a crash never leaves a registered hole) and
    then remove their Parquet files."""
    result = PruneResult(sessions=list(session_ids))
    if not session_ids:
        return result
    with cat.transaction():
        cat.execute(
            "UPDATE sessions SET rows_state = 'pruned', pruned_at = ? WHERE list_contains(?, id)",
            [now, session_ids],
        )
        cat.execute(
            "UPDATE media SET reformat_pending = FALSE WHERE reformat_pending AND NOT EXISTS ("
            "SELECT 1 FROM sessions WHERE media_erased IS NOT NULL AND rows_state = 'present')"
        )
    for sid in session_ids:
        path: Path = cat.rows_path(sid)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            result.not_removed[sid] = str(exc)
            cat.log(f"prune could not remove {path}: {exc}", level="warning", session_id=sid)
            continue
        result.bytes_freed += size
    cat.log(f"pruned file detail of {len(session_ids)} session(s), {result.bytes_freed} bytes")
    return result


def prune(
    cat: Catalog, *, keep_days: int = DEFAULT_KEEP_DAYS, now: datetime | None = None
) -> PruneResult:
    """Drop file detail of sessions started more than keep_days ago, and of sessions flagged
    by a reformat (media_erased); sessions become rows_state='pruned'."""
    now = utc(now)
    cutoff = now - timedelta(days=keep_days)
    found = cat.execute(
        "SELECT id FROM sessions WHERE rows_state = 'present' AND "
        "(started < ? OR media_erased IS NOT NULL) ORDER BY started, id",
        [cutoff],
    )
    return _drop_rows(cat, [sid for (sid,) in found], now)


def reformat_media(
    cat: Catalog, barcode: str, *, drop_now: bool = False, now: datetime | None = None
) -> PruneResult:
    """A cartridge was relabelled: its sessions' tape files are gone. Forget its tape files,
    reset its counters, mark those sessions media_erased (hidden from queries at once) and
    either drop their rows now or flag the cartridge reformat_pending for the next prune."""
    now = utc(now)
    with cat.transaction():
        cat.medium(barcode)
        affected = [
            sid
            for (sid,) in cat.execute(
                "SELECT DISTINCT session_id FROM media_sessions WHERE barcode = ? ORDER BY 1",
                [barcode],
            )
        ]
        cat.execute("DELETE FROM media_sessions WHERE barcode = ?", [barcode])
        cat.execute(
            "UPDATE sessions SET media_erased = ? WHERE list_contains(?, id)", [now, affected]
        )
        pending = bool(affected) and not drop_now
        cat.execute(
            "UPDATE media SET bytes_used = 0, sessions = 0, first_use = NULL, last_write = NULL,"
            " expiry = NULL, state = 'labelled', labelled = TRUE, reformat_pending = ? "
            "WHERE barcode = ?",
            [pending, barcode],
        )
        cat.log(
            f"cartridge {barcode} reformatted; {len(affected)} session(s) lost their tape files"
        )
    if not drop_now:
        return PruneResult()
    present = [
        sid
        for (sid,) in cat.execute(
            "SELECT id FROM sessions WHERE list_contains(?, id) AND rows_state = 'present'",
            [affected],
        )
    ]
    return _drop_rows(cat, present, now)


def record_media_changes(
    path: Path, overwritten: Sequence[str], labelled: Sequence[str], pool: str | None
) -> list[str]:
    """Tell an existing catalog what label or erase did: overwritten cartridges lost their
    sessions (so jobs may write them again), labelled ones now belong to `pool`. Returns the
    overwritten cartridges the catalog knew; no catalog yet means nothing to tell."""
    if not (overwritten or labelled) or not path.exists():
        return []
    with Catalog(path) as cat:
        known = [
            b for b in overwritten if cat.execute("SELECT 1 FROM media WHERE barcode = ?", [b])
        ]
        for barcode in known:
            reformat_media(cat, barcode)
        for barcode in labelled:
            cat.add_media(barcode, pool, labelled=True)
    return known
