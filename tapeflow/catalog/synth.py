"""Small FILE_SCHEMA tables built from plain Python values, for tests, examples and tools that
record a handful of rows; bulk producers should build Arrow arrays directly."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa

from .catalog import utc
from .incremental import BackupPlan
from .schema import FILE_SCHEMA


def file_rows(session_id: str, entries: Iterable[Mapping[str, Any]]) -> pa.Table:
    """FILE_SCHEMA rows from dicts (path and size required; type 'file', mtime epoch and the
    nullable columns null unless given)."""
    records = []
    for entry in entries:
        record = {name: entry.get(name) for name in FILE_SCHEMA.names}
        record["session_id"] = session_id
        record["type"] = entry.get("type", "file")
        record["mtime"] = utc(entry.get("mtime", datetime(1970, 1, 1)))
        records.append(record)
    return pa.Table.from_pylist(records, schema=FILE_SCHEMA)


def plan_rows(plan: BackupPlan, session_id: str, at: datetime, *, kind: str = "file") -> pa.Table:
    """The rows a session following `plan` would record: new and changed live rows (as `kind`,
    no tape position) plus 'deleted' rows for vanished paths."""
    live = plan.to_back_up()
    n = live.num_rows
    types = pa.repeat(kind, n).cast(pa.string())
    if "type" in live.column_names:
        types = pa.chunked_array([live["type"].combine_chunks().fill_null(kind)])
    given = {
        "session_id": pa.repeat(session_id, n).cast(pa.string()),
        "path": live["path"],
        "type": types,
        "size": live["size"],
        "mtime": live["mtime"],
        "ctime": live["ctime"],
        "inode": live["inode"],
    }
    arrays = [given[f.name] if f.name in given else pa.nulls(n, f.type) for f in FILE_SCHEMA]
    written = pa.Table.from_arrays(arrays, schema=FILE_SCHEMA)
    return pa.concat_tables([written, plan.deleted_rows(session_id, at)])
