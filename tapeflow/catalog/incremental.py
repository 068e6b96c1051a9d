"""What a backup must write: compare a live filesystem listing with the tree of its base
(latest full for a differential, latest session of any level for an incremental)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from .catalog import LEVELS, Catalog, utc
from .errors import CatalogError
from .queries import chain_tree, latest_session, restore_chain
from .schema import DELETED, FILE_SCHEMA

LIVE_REQUIRED = ("path", "size", "mtime")
LIVE_OPTIONAL = {"ctime": pa.timestamp("us", tz="UTC"), "inode": pa.uint64(), "type": pa.string()}


@dataclass(frozen=True)
class BackupPlan:
    """The outcome of comparing a live listing with the base tree.

    level is the effective level (a differential/incremental without any base becomes full);
    base_session is what to record as the new session's base_session; chain the sessions whose
    merged tree was the reference. new/changed are live-listing rows; deleted holds path, type.
    """

    level: str
    base_session: str | None
    chain: tuple[str, ...]
    new: pa.Table
    changed: pa.Table
    deleted: pa.Table
    unchanged: int

    def to_back_up(self) -> pa.Table:
        """Live rows to write in the session (new then changed, each sorted by path)."""
        return pa.concat_tables([self.new, self.changed])

    def deleted_rows(self, session_id: str, at: datetime) -> pa.Table:
        """FILE_SCHEMA rows of type 'deleted' the new session stores for the vanished paths."""
        n = self.deleted.num_rows
        columns = {
            "session_id": pa.repeat(session_id, n).cast(pa.string()),
            "path": self.deleted["path"].combine_chunks().cast(pa.string()),
            "type": pa.repeat(DELETED, n).cast(pa.string()),
            "size": pa.repeat(0, n).cast(pa.int64()),
            "mtime": pa.repeat(utc(at), n).cast(pa.timestamp("us", tz="UTC")),
        }
        arrays = [
            columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in FILE_SCHEMA
        ]
        return pa.Table.from_arrays(arrays, schema=FILE_SCHEMA)


def conform_live(live: pa.Table) -> pa.Table:
    """A live listing with path,size,mtime (+ ctime, inode, type if known) in catalog types."""
    missing = [name for name in LIVE_REQUIRED if name not in live.column_names]
    if missing:
        raise CatalogError(f"live listing lacks column(s) {missing}")
    n = live.num_rows
    arrays = [
        live["path"].cast(pa.string()),
        live["size"].cast(pa.int64()),
        live["mtime"].cast(pa.timestamp("us", tz="UTC")),
    ]
    names = list(LIVE_REQUIRED)
    for name, kind in LIVE_OPTIONAL.items():
        arrays.append(live[name].cast(kind) if name in live.column_names else pa.nulls(n, kind))
        names.append(name)
    return pa.table(arrays, names=names)


def base_for(cat: Catalog, source: str, level: str, at: datetime | None = None) -> str | None:
    """The session a new backup of `level` compares against (None: there is none, do a full)."""
    if level not in LEVELS:
        raise CatalogError(f"unknown level {level!r}; use one of {LEVELS}")
    if level == "full":
        return None
    return latest_session(cat, source, at=at, level="full" if level == "differential" else None)


def plan_backup(
    cat: Catalog, source: str, live: pa.Table, level: str, *, at: datetime | None = None
) -> BackupPlan:
    """Which live paths are new, changed (size, mtime, ctime or inode differ; ctime/inode only
    when both sides know them; type when the listing has it) or deleted, relative to the base."""
    live = conform_live(live)
    base = base_for(cat, source, level, at)
    if base is None:
        empty = pa.table({"path": pa.array([], pa.string()), "type": pa.array([], pa.string())})
        return BackupPlan("full", None, (), live.sort_by("path"), live.slice(0, 0), empty, 0)
    chain = restore_chain(cat, base)
    reference = chain_tree(cat, chain)
    suffix = uuid.uuid4().hex
    live_name, ref_name = f"tf_live_{suffix}", f"tf_ref_{suffix}"
    cat.con.register(live_name, live)
    cat.con.register(ref_name, reference)
    try:
        new = cat.arrow(
            f"SELECT l.* FROM {live_name} AS l ANTI JOIN {ref_name} AS r ON l.path = r.path "
            "ORDER BY l.path"
        )
        changed = cat.arrow(
            f"SELECT l.* FROM {live_name} AS l JOIN {ref_name} AS r ON l.path = r.path "
            "WHERE l.size <> r.size OR l.mtime <> r.mtime "
            "OR (l.ctime IS NOT NULL AND r.ctime IS NOT NULL AND l.ctime <> r.ctime) "
            "OR (l.inode IS NOT NULL AND r.inode IS NOT NULL AND l.inode <> r.inode) "
            "OR (l.type IS NOT NULL AND l.type <> r.type) ORDER BY l.path"
        )
        deleted = cat.arrow(
            f"SELECT r.path, r.type FROM {ref_name} AS r ANTI JOIN {live_name} AS l "
            "ON l.path = r.path ORDER BY r.path"
        )
    finally:
        cat.con.unregister(live_name)
        cat.con.unregister(ref_name)
    unchanged = live.num_rows - new.num_rows - changed.num_rows
    return BackupPlan(level, base, tuple(chain), new, changed, deleted, unchanged)
