"""Media pools on the catalog side: expiry, which cartridges a job may append to, recycle or take
from scratch (the MediaPlan a slave's Mounter follows), and pool administration.

A cartridge's expiry is its last write + its pool's retention (fixed when written, never moved
earlier). An expired cartridge may be relabelled by a job of its own pool, which drops its old
sessions through the reformat/prune path; an unexpired one is never relabelled. Cartridges of
the scratch pool are labelled but hold no session; a pool with none free takes one, and it
becomes that pool's on its label and in the catalog. Prefect-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tapeflow.backup.model import SCRATCH_POOL, KnownTape, MediaPlan, Pool
from tapeflow.catalog import Catalog, CatalogError, NotFound, reformat_media, utc

# explicit expiry (recorded at write), else last write + the pool's retention
EXPIRY_SQL = "coalesce(m.expiry, m.last_write + to_days(p.retention_days))"
SCRATCH_DESCRIPTION = "unassigned labelled-blank cartridges; pools take them when they have none"


class PoolError(CatalogError):
    """A pool or cartridge request the catalog's state forbids; nothing was changed."""


class UnknownPool(NotFound, PoolError):
    """No pool of that name is recorded in the catalog."""


class InvalidPool(PoolError, ValueError):
    """A pool definition that makes no sense (negative retention, bad name)."""


def _iso(value: datetime | None) -> str:
    return utc(value).isoformat(timespec="seconds") if value is not None else "never"


def pool_names(cat: Catalog) -> list[str]:
    """Pools the catalog knows: defined ones and those its cartridges name."""
    rows = cat.execute(
        "SELECT name FROM pools UNION SELECT pool FROM media WHERE pool IS NOT NULL ORDER BY 1"
    )
    return [name for (name,) in rows]


def require_pool(cat: Catalog, name: str) -> None:
    """UnknownPool (listing the known ones) unless the catalog knows pool `name`."""
    known = pool_names(cat)
    if name not in known:
        raise UnknownPool(f"no pool {name!r} in the catalog (known: {', '.join(known) or 'none'})")


def define_pool(
    cat: Catalog,
    name: str,
    retention_days: int,
    *,
    append: bool = True,
    description: str | None = None,
) -> None:
    """Create or change a pool's retention and append mode; InvalidPool (nothing written) for a
    negative retention or a bad name."""
    try:
        if name != SCRATCH_POOL:
            Pool(name=name, retention_days=retention_days, append=append)
        elif retention_days < 0:
            raise ValueError(f"retention_days must be >= 0, not {retention_days}")
    except ValueError as exc:
        raise InvalidPool(str(exc)) from exc
    cat.set_pool(name, retention_days, append=append, description=description)


def ensure_scratch_pool(cat: Catalog, name: str = SCRATCH_POOL) -> None:
    """Record the scratch pool (retention 0: it holds no sessions) if it is not yet defined."""
    if not cat.execute("SELECT 1 FROM pools WHERE name = ?", [name]):
        cat.set_pool(name, 0, append=True, description=SCRATCH_DESCRIPTION)


def media_expiry(cat: Catalog, barcode: str) -> datetime | None:
    """When a cartridge's data expires (None: it holds none); NotFound for an unknown one."""
    cat.medium(barcode)
    (expiry,) = cat.execute(
        f"SELECT {EXPIRY_SQL} FROM media AS m LEFT JOIN pools AS p ON p.name = m.pool "
        "WHERE m.barcode = ?",
        [barcode],
    )[0]
    return utc(expiry) if expiry is not None else None


def note_write(cat: Catalog, barcode: str, retention_days: int) -> datetime:
    """After a write: expiry = last write + retention, never earlier than it was; returns it."""
    expiry = note_writes(cat, [barcode], retention_days).get(barcode)
    if expiry is None:
        raise CatalogError(f"cartridge {barcode} has no write to count its retention from")
    return expiry


def note_writes(cat: Catalog, barcodes: Sequence[str], retention_days: int) -> dict[str, datetime]:
    """note_write for many cartridges with one statement; their new expiry by barcode."""
    if retention_days < 0:
        raise InvalidPool(f"retention_days must be >= 0, not {retention_days}")
    if not barcodes:
        return {}
    cat.require_media(barcodes)
    found = cat.execute(
        "UPDATE media SET expiry = greatest(coalesce(expiry, last_write + to_days(?)), "
        "last_write + to_days(?)) WHERE list_contains(?, barcode) AND last_write IS NOT NULL "
        "RETURNING barcode, expiry",
        [retention_days, retention_days, list(dict.fromkeys(barcodes))],
    )
    return {barcode: utc(expiry) for barcode, expiry in found}


def plan_media(cat: Catalog, pool: Pool, now: datetime | None = None) -> MediaPlan:
    """The catalog's cartridges sorted for a job of `pool` as of `now` (appendable, expired by
    age, scratch, unusable with why); every one holding unexpired data is listed as protected."""
    now = utc(now)
    rows = cat.records(
        "SELECT m.barcode, m.pool, m.state, m.sessions, "
        f"{EXPIRY_SQL} AS expiry, "
        "(SELECT max(tape_file) FROM media_sessions AS ms WHERE ms.barcode = m.barcode) "
        "AS last_file, "
        "(SELECT session_id FROM media_sessions AS ms WHERE ms.barcode = m.barcode "
        "ORDER BY tape_file DESC, sequence DESC LIMIT 1) AS last_session "
        "FROM media AS m LEFT JOIN pools AS p ON p.name = m.pool "
        "ORDER BY expiry NULLS LAST, m.barcode"
    )
    plan = MediaPlan()
    appendable: list[str] = []
    scratch: list[str] = []
    for row in rows:
        barcode, expiry = row["barcode"], row["expiry"]
        has_data = row["sessions"] > 0 or row["last_file"] is not None
        expired = has_data and expiry is not None and utc(expiry) <= now
        if has_data and not expired:
            plan.protected[barcode] = _iso(expiry)
        if row["state"] in ("retired", "error"):
            plan.unusable[barcode] = f"{row['state']} in the catalog"
        elif row["pool"] == pool.name:
            _sort_own(plan, appendable, row, pool, has_data, expired)
        elif pool.scratch is not None and row["pool"] == pool.scratch:
            if has_data:
                plan.unusable[barcode] = (
                    f"scratch cartridge holding sessions (until {_iso(expiry)})"
                )
            else:
                scratch.append(barcode)
        elif row["state"] == "full":
            plan.unusable[barcode] = f"full (pool {row['pool']})"
    plan.appendable, plan.scratch = tuple(appendable), tuple(scratch)
    return plan


def _sort_own(
    plan: MediaPlan,
    appendable: list[str],
    row: dict[str, Any],
    pool: Pool,
    has_data: bool,
    expired: bool,
) -> None:
    """Place one of the pool's own cartridges in the plan."""
    barcode, until = row["barcode"], _iso(row["expiry"])
    if expired:
        if row["last_file"] is None:
            plan.unusable[barcode] = "expired, but the catalog lacks its tape files: scan it"
        else:
            plan.reusable[barcode] = KnownTape(row["last_file"] + 1, row["last_session"])
    elif row["state"] == "full":
        plan.unusable[barcode] = f"full, kept until {until}"
    elif has_data and not pool.append:
        plan.unusable[barcode] = (
            f"holds a session kept until {until} (pool {pool.name} writes one per cartridge)"
        )
    else:
        appendable.append(barcode)


def record_relabel(
    cat: Catalog, barcode: str, pool: str, job_id: str, now: datetime | None = None
) -> str:
    """A slave relabelled `barcode` for `pool`: drop other jobs' sessions on it (reformat, rows
    pruned now) and make it the pool's, since its old content is gone; says what happened."""
    try:
        before = cat.medium(barcode)
    except NotFound:
        cat.add_media(barcode, pool, labelled=True)
        cat.log(f"cartridge {barcode} labelled for pool {pool}", job_id=job_id)
        return f"{barcode}: labelled for pool {pool}"
    ((older,),) = cat.execute(
        "SELECT count(DISTINCT ms.session_id) FROM media_sessions AS ms JOIN sessions AS s "
        "ON s.id = ms.session_id WHERE ms.barcode = ? AND s.job_id <> ?",
        [barcode, job_id],
    )
    what = []
    if older:
        reformat_media(cat, barcode, drop_now=True, now=now)
        what.append(f"recycled, {older} expired session(s) dropped")
    if before["pool"] != pool:
        what.append(f"taken from pool {before['pool'] or '(none)'}")
    cat.add_media(barcode, pool, labelled=True)
    message = f"cartridge {barcode} relabelled for pool {pool}: {', '.join(what) or 'was blank'}"
    cat.log(message, job_id=job_id)
    return message


def assign_pool(
    cat: Catalog,
    barcodes: Sequence[str],
    pool: str,
    *,
    create: bool = False,
) -> list[str]:
    """Move cartridges holding no session to `pool` (or scratch; create=True records new ones),
    all or nothing: NotFound / UnknownPool / PoolError before any change."""
    if not barcodes:
        raise PoolError("no barcodes given")
    if pool != SCRATCH_POOL:
        require_pool(cat, pool)
    problems, unknown = [], []
    for barcode in dict.fromkeys(barcodes):
        try:
            row = cat.medium(barcode)
        except NotFound:
            unknown.append(barcode)
            continue
        if row["sessions"] or cat.execute(
            "SELECT 1 FROM media_sessions WHERE barcode = ? LIMIT 1", [barcode]
        ):
            problems.append(
                f"{barcode} holds {row['sessions']} session(s) of pool {row['pool']}: it changes "
                "pool only when a job of that pool recycles it after expiry"
            )
        elif row["state"] in ("retired", "error"):
            problems.append(f"{barcode} is {row['state']}")
    if unknown and not create:
        raise NotFound(
            f"unknown barcode(s) {', '.join(unknown)}: not in the catalog "
            "(record new cartridges with create=True, `--new` at the command line)"
        )
    if problems:
        raise PoolError("; ".join(problems))
    with cat.transaction():
        if pool == SCRATCH_POOL:
            ensure_scratch_pool(cat)
        for barcode in dict.fromkeys(barcodes):
            cat.add_media(barcode, pool, labelled=True)
        cat.log(f"cartridge(s) {', '.join(dict.fromkeys(barcodes))} assigned to pool {pool}")
    return list(dict.fromkeys(barcodes))
