"""Master job benchmarks on the embedded library with per-drive speed limits.

1. Drive utilization of a job with 16 slaves on 4 drives, ~1 s of tape work each:
   busy / (drives x span), the span running from the first slave taking a drive to the last
   one releasing it, and the median gap between a slave releasing a drive and the next slave
   taking it (targets >= 0.9 and <= 100 ms). busy / (drives x the flow run's whole wall time)
   is printed too: it also charges the job's start and end (Prefect creating and ending the
   flow run, planning, the catalog and the artifacts), which no drive can use. The same
   job's gaps on one drive are shown as well: there hand-offs never overlap, while on 4
   drives of equal slaves they come in bursts that queue on the Prefect server.
2. Scaling: wall time of a 16-slave job on 1, 2 and 4 drives (target: 4 drives >= 3.5x
   faster), the whole flow run included: for that same ~1 s-slave job, where Prefect's fixed
   cost per job (about 1 s) and per slave (about 0.15 s) weigh, and for slaves of ~4 s of
   tape work, closer to real jobs whose slaves write for minutes. A 4-slave job on 4 drives
   runs first, so the one-time costs of the process (imports, Prefect's client services, the
   first concurrent slaves' threads and clients) are charged to no measured job; the 16-slave
   job on 4 drives then runs JOBS times, each printed, and their medians are the result.
3. Restore of one 1 MB file at the end of a 2 GB session vs a 200 MB session (time must not
   grow with the session).

Runs against $PREFECT_API_URL when set (`make bench` starts scripts/prefect-server.sh:
PostgreSQL + Redis, services apart), otherwise against prefect_test_harness (a temporary
SQLite server, where slot requests serialize and hand-offs take seconds). Usage:
python -m bench.master_bench [--skip-restore]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MB = 1_000_000
SPEED = 8 * MB  # bytes/s per drive
SLAVE_BYTES = 8 * MB  # ~1 s of tape work per slave
LONG_SLAVE_BYTES = 32 * MB  # ~4 s
RESTORES = 5  # restores of the 1 MB file per session size; the median is reported
JOBS = 3  # runs of the 4-drive job: one job's median gap swings by tens of ms on a shared host


def make_sources(root: Path, count: int, size: int) -> list[dict[str, str]]:
    """`count` sources of one incompressible file of `size` bytes each."""
    out = []
    for i in range(count):
        d = root / f"s{i:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "data.bin").write_bytes(os.urandom(size))
        out.append({"name": f"s{i:02d}", "path": str(d)})
    return out


def run_job(work: Path, drives: int, sources: list[dict[str, str]]) -> tuple[float, list]:
    """Wall time and (drive, start, end) of every slave of one full backup."""
    from flows.backup import backup
    from tapeflow.vtl import VirtualLibrary

    lib = work / f"lib{drives}-{time.time_ns()}"
    VirtualLibrary.create(
        lib,
        drives=drives,
        slots=40,
        mail_slots=0,
        capacity=4 * 1024**3,
        speed_limit=SPEED,
        cleaning_cartridges=0,
    )
    start = time.perf_counter()
    out = backup(
        sources=sources,
        library=f"embedded:{lib}",
        catalog=str(work / f"cat-{lib.name}" / "catalog.duckdb"),
    )
    return time.perf_counter() - start, out["timeline"]


def busy(timeline: list) -> float:
    """Seconds of drive time the slaves held, all drives together."""
    return sum(e - s for _, s, e in timeline)


def utilization(timeline: list, drives: int) -> tuple[float, float, float]:
    """(busy / (drives x span), median gap ms, max gap ms) over the slaves' drive time."""
    first = min(s for _, s, _ in timeline)
    last = max(e for _, _, e in timeline)
    gaps = []
    for d in {d for d, _, _ in timeline}:
        spans = sorted((s, e) for dd, s, e in timeline if dd == d)
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:], strict=False)]
    gaps = gaps or [0.0]
    return (
        busy(timeline) / (drives * (last - first)),
        statistics.median(gaps) * 1000,
        max(gaps) * 1000,
    )


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The Prefect server to use and a label for it."""
    if os.environ.get("PREFECT_API_URL"):
        yield f"server at {os.environ['PREFECT_API_URL']}"
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield "prefect_test_harness (SQLite)"


def restore_time(work: Path, session_mb: int) -> float:
    """Median seconds to restore a 1 MB file written last in a session of `session_mb` MB."""
    from tapeflow.backup.master import prepare_job, record_results
    from tapeflow.backup.model import Pool, Source
    from tapeflow.backup.slave import run_slave
    from tapeflow.restore import plan_restore, restore_cartridge
    from tapeflow.vtl import VirtualLibrary

    base = work / f"restore{session_mb}"
    src = base / "src"
    src.mkdir(parents=True)
    chunk = os.urandom(64 * 1024 * 1024)
    with open(src / "a-filler.bin", "wb") as fh:
        for _ in range(session_mb // 64):
            fh.write(chunk)
    (src / "z-last.bin").write_bytes(os.urandom(1024 * 1024))
    VirtualLibrary.create(
        base / "lib",
        drives=1,
        slots=4,
        mail_slots=0,
        capacity=(session_mb + 512) * 1024 * 1024,
        cleaning_cartridges=0,
    )
    library, catalog = f"embedded:{base / 'lib'}", base / "cat" / "catalog.duckdb"
    specs, skipped = prepare_job(
        catalog,
        "bench",
        sources=[Source("src", str(src))],
        pool=Pool(),
        level="full",
        library=library,
    )
    record_results(catalog, "bench", Pool(), [run_slave(s) for s in specs], skipped)
    (src / "a-filler.bin").unlink()
    work_items = plan_restore(catalog, "src", ["z-last.bin"])
    times = []
    for attempt in range(RESTORES):  # a single ~15 ms restore swings with the host's writeback
        out = base / f"out{attempt}"
        start = time.perf_counter()
        result = restore_cartridge(library, work_items[0], out)
        times.append(time.perf_counter() - start)
        assert result.restored == 1 and (out / "z-last.bin").stat().st_size == 1024 * 1024
    return statistics.median(times)


def main() -> None:
    """Run the three measurements and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-restore", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tapeflow-master-bench-") as tmp:
        work = Path(tmp)
        os.environ["TAPEFLOW_HOME"] = str(work / "home")
        with server() as where:
            sixteen = make_sources(work / "u", 16, SLAVE_BYTES)
            run_job(work, 4, sixteen[:4])  # warm-up: the process's one-time costs on no run
            print(f"\nmaster job, 16 slaves x ~1 s on 4 drives ({where})")
            print(
                f"{'job':>8} {'wall s':>8} {'utilization':>12} {'median gap ms':>14} {'of wall':>8}"
            )
            jobs = []
            for n in range(1, JOBS + 1):
                wall, timeline = run_job(work, 4, sixteen)
                jobs.append((wall, *utilization(timeline, 4), busy(timeline) / (4 * wall)))
                print(
                    f"{n:>8} {wall:>8.2f} {jobs[-1][1]:>12.2f} {jobs[-1][2]:>14.0f}"
                    f" {jobs[-1][4]:>8.2f}"
                )
            wall, util, gap = (statistics.median(job[i] for job in jobs) for i in range(3))
            worst = max(job[3] for job in jobs)
            of_wall = statistics.median(job[4] for job in jobs)
            print(
                f"{'median':>8} {wall:>8.2f} {util:>12.2f} {gap:>14.0f} {of_wall:>8.2f}   "
                f"(targets: >= 0.90, <= 100 ms; max gap {worst:.0f} ms)"
            )
            runs = {d: run_job(work, d, sixteen) for d in (1, 2)}
            _, alone, worst_alone = utilization(runs[1][1], 1)
            print(
                f"{'1 drive':>8} {runs[1][0]:>8.2f} {'':>12} {alone:>14.0f}   "
                f"(one hand-off at a time; max gap {worst_alone:.0f} ms)"
            )
            walls = {d: w for d, (w, _) in runs.items()} | {4: wall}
            longer = make_sources(work / "l", 16, LONG_SLAVE_BYTES)
            long_walls = {d: run_job(work, d, longer)[0] for d in (1, 2, 4)}
            print(f"\nscaling, 16 slaves, wall s and speed-up vs 1 drive ({where})")
            print(
                f"{'drives':>6} {'~1 s slaves':>12} {'speed-up':>9}"
                f" {'~4 s slaves':>12} {'speed-up':>9}"
            )
            for d in (1, 2, 4):
                print(
                    f"{d:>6} {walls[d]:>12.2f} {walls[1] / walls[d]:>9.2f}"
                    f" {long_walls[d]:>12.2f} {long_walls[1] / long_walls[d]:>9.2f}"
                )
            print("   (target: 4 drives >= 3.50x)")
        if not args.skip_restore:
            small, big = restore_time(work, 200), restore_time(work, 2048)
            print("\nrestore of one 1 MB file at the end of a session")
            print(f"{'session':>10} {'seconds':>8}")
            print(f"{'200 MB':>10} {small:>8.3f}\n{'2 GB':>10} {big:>8.3f}")
            print(f"   ratio 2 GB / 200 MB: {big / small:.2f} (must not grow with the session)")


if __name__ == "__main__":
    main()
