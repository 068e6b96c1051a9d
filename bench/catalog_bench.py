"""Catalog benchmark: ingest rate (Arrow table -> Parquet registered), versions of one path
among ~10 M rows, point-in-time listing of a 100,000-entry directory; printed as a table.

Synthetic rows come from DuckDB's vectorized range() (no Python loops); checksums are real
sha256 hex so compression is not flattered. Layout: one source of 1 M files (d0..d9, 100,000
entries each); 9 full sessions of 1 M rows and 100 incrementals of ~10,000 rows (5 % of them
deletions), i.e. ~10 M rows in 109 Parquet files. --worst adds a second catalog of 100 full
sessions of the same 100,000 paths (every path has 100 versions).

Usage: python -m bench.catalog_bench [--dir DIR] [--worst]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from tapeflow.catalog import FILE_SCHEMA, Catalog, path_versions, tree_at, write_session_rows

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FILES = 1_000_000
DIRS = 10
DAYS = 108
FULL_EVERY = 12
INCR_ROWS = 10_000

_ROWS_SQL = """
SELECT ?::VARCHAR AS session_id,
       'd' || (i // ?)::VARCHAR || '/sub' || lpad(((i // 1000) % 100)::VARCHAR, 2, '0')
           || '/file' || i::VARCHAR AS path,
       CASE WHEN ? > 0 AND hash(i, ?) % 20 = 0 THEN 'deleted' ELSE 'file' END AS type,
       (hash(i, ?) % 10000000)::BIGINT AS size,
       make_timestamp(1700000000000000 + (hash(i, ?, 1) % 100000000000000)::BIGINT)
           AT TIME ZONE 'UTC' AS mtime,
       make_timestamp(1700000000000000 + (hash(i, ?, 2) % 100000000000000)::BIGINT)
           AT TIME ZONE 'UTC' AS ctime,
       i::UBIGINT AS inode, 420 AS mode, 1000 AS uid, 1000 AS gid, NULL::VARCHAR AS link_target,
       'sha256:' || sha256(i::VARCHAR || ?::VARCHAR) AS checksum,
       'T' || lpad((? % 1000)::VARCHAR, 5, '0') || 'L8' AS barcode, 1 + ? % 50 AS tape_file,
       row_number() OVER () AS block, 0 AS "offset"
FROM (SELECT DISTINCT {index} AS i FROM range(?) AS t(r)) ORDER BY hash(i)
"""


def synth_rows(
    con: duckdb.DuckDBPyConnection, session_id: str, n: int, per_dir: int, seed: int, sample: int
) -> pa.Table:
    """n synthetic FILE_SCHEMA rows (a random sample of the tree when sample > 0), in random
    order as a writer might emit them; vectorized in DuckDB."""
    index = "(hash(r, ?) % ?)::BIGINT" if sample else "r + 0 * ? * ?"
    sql = _ROWS_SQL.format(index=index)
    params = [session_id, per_dir, sample, seed, seed, seed, seed, seed, seed, seed]
    params += [seed, sample or n, n]
    return con.sql(sql, params=params).to_arrow_table().cast(FILE_SCHEMA)


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall-clock seconds of `repeat` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def build_daily(cat: Catalog, gen: duckdb.DuckDBPyConnection) -> tuple[list[float], int]:
    """Fill the catalog with the daily layout; return per-full ingest rates and total rows."""
    job = cat.create_job("backup", started=T0)
    full = synth_rows(gen, "x", FILES, FILES // DIRS, 0, 0).sort_by("path")
    rates, total, previous = [], 0, None
    for day in range(DAYS):
        started = T0 + timedelta(days=day)
        level = "full" if day % FULL_EVERY == 0 else "incremental"
        sid = cat.start_session(
            job,
            "fs",
            level=level,
            started=started,
            base_session=previous,
            session_id=f"s{day:04d}",
        )
        if level == "full":
            table = full.set_column(0, "session_id", pa.repeat(sid, FILES).cast(pa.string()))
            start = time.perf_counter()
            cat.add_session_rows(sid, table)
            rates.append(FILES / (time.perf_counter() - start))
            rows = FILES
        else:
            table = synth_rows(gen, sid, INCR_ROWS, FILES // DIRS, day, FILES)
            rows = cat.add_session_rows(sid, table).rows
        total += rows
        cat.finish_session(sid, "complete", files=rows, ended=started + timedelta(hours=1))
        previous = sid
    return rates, total


def ingest(work: Path, gen: duckdb.DuckDBPyConnection) -> list[tuple[str, float]]:
    """Rows/s from an in-memory 1 M-row Arrow table to a registered Parquet file: walk-order
    (already path-sorted) input, random-order input, and two writers at once (slaves)."""
    table = synth_rows(gen, "x", FILES, FILES // DIRS, 7, 0)
    walk = table.sort_by("path")
    out = []
    with Catalog(work / "ingest" / "catalog.duckdb") as cat:
        job = cat.create_job("backup")

        def one(source: pa.Table) -> float:
            """Ingest one 1 M-row session from `source`; rows/s."""
            sid = cat.start_session(job, "fs")
            rows = source.set_column(0, "session_id", pa.repeat(sid, FILES).cast(pa.string()))
            start = time.perf_counter()
            cat.add_session_rows(sid, rows)
            return FILES / (time.perf_counter() - start)

        out.append(("walk-order input", statistics.median(one(walk) for _ in range(3))))
        out.append(("random-order input", statistics.median(one(table) for _ in range(3))))
        sids = [cat.start_session(job, "fs") for _ in range(2)]
        inputs = [
            table.set_column(0, "session_id", pa.repeat(sid, FILES).cast(pa.string()))
            for sid in sids
        ]
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:  # slaves write without the DuckDB lock
            list(
                pool.map(
                    lambda a: write_session_rows(cat.files_dir, *a), zip(sids, inputs, strict=True)
                )
            )
        for sid in sids:
            cat.register_session_rows(sid)
        out.append(("2 writers at once, random order", 2 * FILES / (time.perf_counter() - start)))
    return out


def lookups(cat: Catalog, paths: list[str]) -> tuple[float, list[float], int]:
    """Cold first lookup and warm lookups (seconds) of paths; versions found for the last."""
    start = time.perf_counter()
    found = path_versions(cat, paths[0]).num_rows
    cold = time.perf_counter() - start
    warm = []
    for path in paths[1:]:
        start = time.perf_counter()
        found = path_versions(cat, path).num_rows
        warm.append(time.perf_counter() - start)
    return cold, warm, found


def main() -> None:
    """Run the benchmark and print a table of measured values against the targets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: tmp)")
    parser.add_argument("--worst", action="store_true", help="also 100 fulls x 100,000 paths")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        results: list[tuple[str, str, str, bool]] = []
        gen = duckdb.connect()
        gen.execute("SET TimeZone = 'UTC'")
        for label, rate in ingest(Path(work), gen):
            results.append(
                (
                    f"ingest 1 M rows -> Parquet registered, {label}",
                    f"{rate / 1e6:.2f} M rows/s",
                    ">= 1.00 M rows/s",
                    rate >= 1e6,
                )
            )
        path = Path(work) / "daily" / "catalog.duckdb"
        build_start = time.perf_counter()
        with Catalog(path) as cat:
            rates, total = build_daily(cat, gen)
        build = time.perf_counter() - build_start
        probe = [f"d{k}/sub{(k * 7) % 100:02d}/file{k * 100_000 + k * 7013}" for k in range(10)]
        probe = probe + probe[1:]
        with Catalog(path) as cat:
            cold, warm, found = lookups(cat, probe)
        med, worst = statistics.median(warm) * 1e3, max(warm) * 1e3
        results.append(
            (
                f"versions of one path, {total / 1e6:.1f} M rows / {DAYS} files ({found} versions)",
                f"{med:.1f} ms median, {worst:.1f} max, {cold * 1e3:.1f} cold",
                "<= 50 ms",
                med <= 50,
            )
        )
        with Catalog(path) as cat:
            at = T0 + timedelta(days=102, hours=12)  # full of day 96 + 6 incrementals
            listing = tree_at(cat, "fs", at, prefix="d3")
            times = timed(lambda: tree_at(cat, "fs", at, prefix="d3"), 3)
        med = statistics.median(times)
        results.append(
            (
                f"point-in-time listing of d3 (7-session chain, {listing.num_rows} entries)",
                f"{med * 1e3:.0f} ms median, {max(times) * 1e3:.0f} max",
                "<= 1000 ms",
                med <= 1.0,
            )
        )
        if args.worst:
            wpath = Path(work) / "worst" / "catalog.duckdb"
            with Catalog(wpath) as cat:
                job = cat.create_job("backup", started=T0)
                base = synth_rows(gen, "x", 100_000, 10_000, 0, 0)
                for k in range(100):
                    sid = cat.start_session(job, "fs", started=T0 + timedelta(days=k))
                    cat.add_session_rows(
                        sid,
                        base.set_column(0, "session_id", pa.repeat(sid, 100_000).cast(pa.string())),
                    )
                    cat.finish_session(sid, "complete")
            with Catalog(wpath) as cat:
                ids = [k * 10_000 + k * 7 for k in range(10)]
                wprobe = [f"d{i // 10_000}/sub{(i // 1000) % 100:02d}/file{i}" for i in ids]
                cold, warm, found = lookups(cat, wprobe + wprobe[1:])
            med = statistics.median(warm) * 1e3
            results.append(
                (
                    f"versions of one path, worst: 100 fulls x 100,000 ({found} versions)",
                    f"{med:.1f} ms median, {max(warm) * 1e3:.1f} max, {cold * 1e3:.1f} cold",
                    "<= 50 ms",
                    med <= 50,
                )
            )
        width = max(len(r[0]) for r in results)
        vwidth = max(len(r[1]) for r in results)
        print(f"{'measure':{width}}  {'measured':{vwidth}}  {'target':18}  ok")
        for name, value, target, ok in results:
            print(f"{name:{width}}  {value:{vwidth}}  {target:18}  {'yes' if ok else 'NO'}")
        print(f"(building the daily catalog took {build:.0f} s; {total:,} rows)")


if __name__ == "__main__":
    main()
