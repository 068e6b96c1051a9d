"""tapeflow catalog: a DuckDB file for jobs, sessions, media, pools, drives and events, plus one
Parquet file of FILE_SCHEMA rows per session, queried together through DuckDB.

Representation of incrementals and deletions:
- sessions.level is full | differential | incremental and sessions.base_session names the
  session the backup was compared against (plan_backup decides it): nothing for a full, the
  latest complete full for a differential, the latest complete session of any level for an
  incremental. A session stores rows only for new and changed paths (all paths for a full).
- A path that vanished since the base is stored as a row of type 'deleted' (size 0, mtime =
  the session's snapshot time, no tape position) — the one value added to FILE_SCHEMA's type.
- The tree of a session is its restore chain (base_session links back to a full) merged
  newest-first per path, 'deleted' rows hiding the path. tree_at(source, T) uses the latest
  complete session started at or before T; partial/failed sessions and sessions whose cartridge
  was reformatted are never used.
"""

from __future__ import annotations

from .catalog import Catalog, NewSession, SessionEnd, TapePiece, new_id, utc
from .errors import (
    CatalogCorrupt,
    CatalogError,
    CatalogLocked,
    CatalogVersionError,
    CorruptRowsWarning,
    NotFound,
    RowsInvalid,
    RowsUnavailable,
    SessionNotFound,
)
from .incremental import BackupPlan, base_for, plan_backup
from .prune import DEFAULT_KEEP_DAYS, PruneResult, prune, record_media_changes, reformat_media
from .queries import (
    chain_tree,
    expiring_media,
    latest_session,
    media_contents,
    path_versions,
    restore_chain,
    session_files,
    session_media,
    tree_at,
)
from .rows import RowsFile, write_session_rows
from .schema import DELETED, FILE_SCHEMA, ROW_TYPES

__all__ = [
    "DEFAULT_KEEP_DAYS",
    "DELETED",
    "FILE_SCHEMA",
    "ROW_TYPES",
    "BackupPlan",
    "Catalog",
    "CatalogCorrupt",
    "CatalogError",
    "CatalogLocked",
    "CatalogVersionError",
    "CorruptRowsWarning",
    "NewSession",
    "NotFound",
    "PruneResult",
    "RowsFile",
    "RowsInvalid",
    "RowsUnavailable",
    "SessionEnd",
    "SessionNotFound",
    "TapePiece",
    "base_for",
    "chain_tree",
    "expiring_media",
    "latest_session",
    "media_contents",
    "new_id",
    "path_versions",
    "plan_backup",
    "prune",
    "record_media_changes",
    "reformat_media",
    "restore_chain",
    "session_files",
    "session_media",
    "tree_at",
    "utc",
    "write_session_rows",
]
