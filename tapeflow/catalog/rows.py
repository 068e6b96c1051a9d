"""Per-session Parquet files of bulk rows: written by the slave that produced them, without the
DuckDB lock (atomic tmp + rename), sorted by path so row-group statistics answer path lookups."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import CatalogError, RowsInvalid
from .schema import FILE_SCHEMA, ROW_TYPES

SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
FILES_DIRNAME = "files"
SCHEMA_FILE = "_schema.parquet"  # zero rows; keeps the glob non-empty and pins column types
SUFFIX = ".parquet"
CORRUPT_SUFFIX = ".parquet.corrupt"  # damaged files are renamed to this, never deleted

# Measured with bench/catalog_bench.py: rows sorted by path give tight row-group min/max; a
# bloom filter on path lets DuckDB skip row groups of files whose range covers the path but
# that lack it (incrementals); the page index with small pages lets it read a few pages of a
# matching row group instead of whole column chunks.
ROW_GROUP_ROWS = 128 * 1024
PAGE_ROWS = 2048
BLOOM_FPP = 0.01
DICTIONARY_COLUMNS = ["session_id", "type", "barcode", "link_target"]  # low cardinality only


RowsInput = pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch]


@dataclass(frozen=True)
class RowsFile:
    """A session's Parquet file as written or verified: where, how many rows, how many bytes."""

    session_id: str
    path: Path
    rows: int
    bytes: int


def check_session_id(session_id: str) -> str:
    """Return the id if it is safe as a file name (letters, digits, '.', '_', '-'), else raise."""
    if not isinstance(session_id, str) or not SESSION_ID_RE.fullmatch(session_id):
        raise CatalogError(
            f"invalid session id {session_id!r}: use 1-128 of A-Z a-z 0-9 . _ - "
            "(not starting with . _ -)"
        )
    return session_id


def rows_path(files_dir: Path, session_id: str) -> Path:
    """Where a session's Parquet rows live."""
    return Path(files_dir) / f"{check_session_id(session_id)}{SUFFIX}"


def _is_sorted(paths: pa.ChunkedArray | pa.Array) -> bool:
    """Whether the paths are already in byte order (walk order usually is)."""
    n = len(paths)
    return n < 2 or bool(pc.all(pc.less_equal(paths.slice(0, n - 1), paths.slice(1))).as_py())


def _take(table: pa.Table, order: pa.Array) -> pa.Table:
    """Rows of a table in the given order (chunked columns are gathered without first
    concatenating the whole table)."""
    return pa.Table.from_arrays(
        [column.take(order) for column in table.columns], schema=table.schema
    )


def _sorted_parts(table: pa.Table) -> Iterator[pa.Table]:
    """Yield the table's rows in path order as consecutive parts (key ranges split at sampled
    pivots); a worker thread sorts the next part while the caller writes the current one."""
    table = table.combine_chunks()
    paths = table["path"].chunk(0)
    n = len(paths)
    parts = max(2, n // ROW_GROUP_ROWS)
    step = max(1, n // (64 * parts))
    sample = paths.take(pa.array(range(0, n, step), pa.int64()))
    sample = sample.take(pc.sort_indices(sample))
    bucket = pa.repeat(pa.scalar(0, pa.int32()), n)
    for k in range(1, parts):
        pivot = sample[len(sample) * k // parts]
        bucket = pc.add(bucket, pc.cast(pc.greater_equal(paths, pivot), pa.int32()))

    def part(k: int) -> pa.Table:
        """Sorted rows of bucket k (runs in the worker thread)."""
        rows = pc.indices_nonzero(pc.equal(bucket, k))
        return _take(table, rows.take(pc.sort_indices(paths.take(rows))))

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(part, k) for k in range(parts)]
        try:
            for future in pending:
                yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _write_atomic(table: pa.Table, target: Path) -> int:
    """Write the table sorted by path to target via a unique temp file, fsync and rename;
    return bytes written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    ndv = max(1, min(table.num_rows, ROW_GROUP_ROWS))
    try:
        with pq.ParquetWriter(
            tmp,
            FILE_SCHEMA,
            compression="zstd",
            use_dictionary=DICTIONARY_COLUMNS,
            write_page_index=True,
            max_rows_per_page=PAGE_ROWS,
            bloom_filter_options={"path": {"ndv": ndv, "fpp": BLOOM_FPP}},
            sorting_columns=[pq.SortingColumn(FILE_SCHEMA.names.index("path"))],
        ) as writer:
            if _is_sorted(table["path"]):
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            elif table.num_rows <= 2 * ROW_GROUP_ROWS:
                writer.write_table(table.sort_by("path"), row_group_size=ROW_GROUP_ROWS)
            else:
                for part in _sorted_parts(table):
                    writer.write_table(part, row_group_size=ROW_GROUP_ROWS)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target.stat().st_size


def ensure_schema_file(files_dir: Path) -> Path:
    """Create the zero-row schema file the `files` view's glob always matches."""
    path = Path(files_dir) / SCHEMA_FILE
    if not path.exists():
        _write_atomic(FILE_SCHEMA.empty_table(), path)
    return path


def conform(session_id: str, data: RowsInput) -> pa.Table:
    """Turn batches/tables into a FILE_SCHEMA table of this session; validate ids and types."""
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    else:
        batches = list(data)
        table = pa.Table.from_batches(batches) if batches else FILE_SCHEMA.empty_table()
    if "session_id" not in table.column_names:
        table = table.append_column(
            "session_id", pa.repeat(session_id, table.num_rows).cast(pa.string())
        )
    for field in FILE_SCHEMA:  # nullable columns the producer doesn't know become nulls
        if field.nullable and field.name not in table.column_names:
            table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
    missing = [name for name in FILE_SCHEMA.names if name not in table.column_names]
    if missing:
        raise RowsInvalid(f"rows of session {session_id} lack column(s) {missing}")
    try:
        table = table.select(FILE_SCHEMA.names).cast(FILE_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise RowsInvalid(f"rows of session {session_id} don't fit FILE_SCHEMA: {exc}") from exc
    if table.num_rows == 0:
        return table
    if not pc.all(pc.equal(table["session_id"], session_id)).as_py():
        raise RowsInvalid(f"rows given for session {session_id} carry other session ids")
    if not pc.all(pc.is_in(table["type"], value_set=pa.array(ROW_TYPES))).as_py():
        bad = pc.unique(
            pc.filter(table["type"], pc.invert(pc.is_in(table["type"], pa.array(ROW_TYPES))))
        )
        raise RowsInvalid(f"rows of session {session_id} have unknown type(s) {bad.to_pylist()}")
    return table


def write_session_rows(files_dir: Path, session_id: str, data: RowsInput) -> RowsFile:
    """Write a session's rows to <files_dir>/<session_id>.parquet atomically (no DuckDB lock).

    Slaves call this in their own process; the master then calls
    Catalog.register_session_rows(session_id). Rewriting replaces the file atomically.
    """
    check_session_id(session_id)
    table = conform(session_id, data)
    target = rows_path(files_dir, session_id)
    size = _write_atomic(table, target)
    return RowsFile(session_id, target, table.num_rows, size)


def verify_rows_file(path: Path, session_id: str) -> RowsFile:
    """Check a session's Parquet footer: readable, FILE_SCHEMA columns, only this session's id."""
    try:
        meta = pq.ParquetFile(path).metadata
        schema = meta.schema.to_arrow_schema()
    except FileNotFoundError as exc:
        raise RowsInvalid(f"no Parquet rows for session {session_id} at {path}") from exc
    except (OSError, pa.ArrowException) as exc:
        raise RowsInvalid(
            f"Parquet rows of session {session_id} at {path} are damaged: {exc}"
        ) from exc
    for field in FILE_SCHEMA:
        if field.name not in schema.names or schema.field(field.name).type != field.type:
            raise RowsInvalid(f"{path}: column {field.name} missing or not {field.type}")
    column = schema.names.index("session_id")
    for group in range(meta.num_row_groups):
        if meta.row_group(group).num_rows == 0:
            continue
        stats = meta.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max or {stats.min, stats.max} != {session_id}:
            raise RowsInvalid(f"{path}: row group {group} holds rows of other sessions")
    return RowsFile(session_id, Path(path), meta.num_rows, Path(path).stat().st_size)


def read_problem(path: Path) -> str | None:
    """Fully read a Parquet file; return why it is unreadable, or None if it reads cleanly."""
    try:
        pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
