"""Host CPU of a serverless backup vs a file-level backup of the same data, in one run.

A FAT32 volume (default 2 GiB, filled with ~1 MiB files made by mcopy) sits on a disk LUN of
the embedded SAN. The serverless slave freezes it, maps it and has the copy manager move the
blocks to tape (EXTENDED COPY); the same backup again on the host path, as it runs where the SAN
has no copy manager (tgt): the host reads the blocks and writes the records itself; the
file-level slave reads the same files from a directory and packs them into a pax session. All
write to the embedded library's drives, each to its own pool's cartridge.

The embedded SAN (drives, disks, copy manager) runs inside this process, so the CPU its logical
units spend executing commands is measured per thread and reported apart: on a real SAN that
work is done by the array and the tape drive, not by the backup host. Host CPU = this process
(and its helper processes) minus that device CPU.

Target: serverless (copy manager) host CPU per GB at least 5x below the file-level backup's.

Usage: python -m bench.serverless_bench [--gb 2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tapeflow.backup.model import Pool, SlaveResult, SlaveSpec, Source
from tapeflow.backup.slave import run_slave
from tapeflow.serverless.slave import run_serverless_slave
from tapeflow.vtl import VirtualLibrary
from tapeflow.vtl.lun import LogicalUnit

FILE_MB = 1
TARGET_RATIO = 5.0  # "far less host CPU": serverless at least this many times below file-level
TOOL_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


class DeviceClock:
    """CPU seconds spent inside the embedded SAN's LUN command handlers, all threads."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._orig = LogicalUnit.execute

    def __enter__(self) -> DeviceClock:
        clock = self

        def execute(unit: LogicalUnit, *args: object, **kwargs: object) -> object:
            depth = getattr(clock._local, "depth", 0)
            clock._local.depth = depth + 1
            start = time.thread_time()
            try:
                return clock._orig(unit, *args, **kwargs)  # type: ignore[arg-type]
            finally:
                clock._local.depth = depth
                if depth == 0:  # nested: the copy manager driving a disk or a drive
                    with clock._lock:
                        clock.seconds += time.thread_time() - start

        LogicalUnit.execute = execute  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        LogicalUnit.execute = self._orig  # type: ignore[method-assign]


class BenchFailed(RuntimeError):
    """A backup under measurement did not complete as it must."""


def cpu() -> float:
    """CPU seconds of this process and its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def make_volume(cache: Path, gb: float) -> tuple[Path, Path]:
    """(tree of ~1 MiB files, FAT32 image holding the same files), cached."""
    tree = cache / f"tree-{gb}"
    img = cache / f"fat32-{gb}.img"
    files = int(gb * 1024 * 0.9) // FILE_MB
    if not tree.exists():
        tmp = tree.with_suffix(".tmp")
        for i in range(files):
            d = tmp / f"d{i // 100:03d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}.bin").write_bytes(os.urandom(FILE_MB * 1024 * 1024))
        tmp.rename(tree)
    if not img.exists():
        tmp = img.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        kib = int(gb * 1024 * 1024)
        subprocess.run(
            ["mkfs.fat", "-F", "32", "-C", str(tmp), str(kib)], check=True, capture_output=True
        )
        for top in sorted(tree.iterdir()):
            subprocess.run(
                ["mcopy", "-s", "-i", str(tmp), str(top), "::/"], check=True, env=TOOL_ENV
            )
        tmp.rename(img)
    return tree, img


def measure(run: callable) -> tuple[SlaveResult, float, float, float]:  # type: ignore[valid-type]
    """(result, wall s, host CPU s, device CPU s) of one slave."""
    with DeviceClock() as dev:
        wall, c0 = time.perf_counter(), cpu()
        result = run()
        wall, total = time.perf_counter() - wall, cpu() - c0
    return result, wall, total - dev.seconds, dev.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "tapeflow-bench-serverless"
    )
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    tree, img = make_volume(args.cache, args.gb)
    with tempfile.TemporaryDirectory(dir=args.cache) as work:
        root = Path(work)
        vl = VirtualLibrary.create(
            root / "vtl", drives=2, slots=6, capacity=int((args.gb + 1) * 1024**3)
        )
        vl.add_disk("vol", image=img)
        common = {
            "level": "full",
            "library": f"embedded:{vl.root}",
            "files_dir": str(root / "catalog" / "files"),
        }
        volume = Source("vol", "disk:vol", kind="volume", quiet=0.5)
        serverless = SlaveSpec(
            job_id="j1", session_id="s1", subjob=1, source=volume, pool=Pool("xcopy"), **common
        )  # type: ignore[arg-type]
        host_path = SlaveSpec(
            job_id="j3", session_id="s3", subjob=1, source=volume, pool=Pool("host"), **common
        )  # type: ignore[arg-type]
        files = SlaveSpec(
            job_id="j2",
            session_id="s2",
            subjob=1,
            source=Source("tree", str(tree)),
            pool=Pool("files"),
            **common,
        )  # type: ignore[arg-type]
        rows = [
            ("serverless (copy manager)", *measure(lambda: run_serverless_slave(serverless))),
            (
                "serverless (host path)",  # as on a SAN without a copy manager (tgt, sg)
                *measure(lambda: run_serverless_slave(host_path, copy_manager=False)),
            ),
            ("file-level (pax session)", *measure(lambda: run_slave(files))),
        ]
    for name, result, *_ in rows:
        if result.state != "complete":
            raise BenchFailed(f"{name}: the backup did not complete ({result.error})")
    gb = [r[1].bytes / 1e9 for r in rows]
    per_gb = [r[3] / size for r, size in zip(rows, gb, strict=True)]
    print(f"\nHost CPU per GB: serverless vs file-level backup of the same {args.gb} GiB\n")
    head = (
        f"{'backup':<27} {'GB':>6} {'wall s':>7} {'MB/s':>7} {'host CPU s':>10} "
        f"{'host s/GB':>10} {'SAN/drive CPU s':>15} {'path':>6}"
    )
    print(head)
    print("-" * len(head))
    for (name, result, wall, host, dev), size, rate in zip(rows, gb, per_gb, strict=True):
        print(
            f"{name:<27} {size:>6.2f} {wall:>7.1f} {size * 1000 / wall:>7.0f} {host:>10.2f} "
            f"{rate:>10.3f} {dev:>15.2f} {result.copy_path or '-':>6}"
        )
    print(
        "\nhost CPU s = CPU of this process and its finished helper processes during the backup"
        " (getrusage)\n  minus 'SAN/drive CPU s': the CPU the in-process embedded SAN spent"
        " executing SCSI commands\n  in its disk LUNs, tape drives and copy manager (thread"
        " CPU time per command), which a real\n  disk array and tape drive spend outside the"
        " backup host. GB = bytes written to tape."
    )

    def ratio(i: int) -> float:
        """File-level host CPU per GB over row i's."""
        return per_gb[2] / per_gb[i] if per_gb[i] > 0 else float("inf")

    print(
        f"\nfile-level host CPU per GB / serverless (copy manager) = {ratio(0):.1f}x; "
        f"/ serverless (host path) = {ratio(1):.1f}x"
    )
    verdict = "PASS" if ratio(0) >= TARGET_RATIO else "FAIL"
    print(
        f"{verdict} far less host CPU: serverless (copy manager) {per_gb[0]:.3f} host CPU s/GB is"
        f" {ratio(0):.1f}x below file-level {per_gb[2]:.3f} s/GB (target: at least"
        f" {TARGET_RATIO:.0f}x)"
    )
    print(
        f"(info) serverless host path {per_gb[1]:.3f} host CPU s/GB: the host moves every byte"
        " where the SAN has no copy manager; no target"
    )


if __name__ == "__main__":
    main()
