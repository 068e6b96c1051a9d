"""Session writer vs GNU tar over the same trees, measured in one run, printed as a table.

Trees: 50,000 small files (10 B - 4 KB) and a few hundred MB of large files. Sinks: a null
drive that only counts records vs `tar -cf - -b 512 <tree> | cat >/dev/null` (tar special-cases
an archive that IS /dev/null and skips reading, hence the pipe); a file on disk for both; and,
for the writer only, a drive of the embedded library.

Runs of tar and of the writer alternate (the load of a shared machine changes within seconds),
and before each run the previous output is removed and dirty pages are flushed (untimed), so no
run pays for another's truncation or writeback. Every timing is printed below the table.

Usage: python -m bench.writer_bench [--small 50000] [--large-mb 400] [--runs 3] [--no-settle]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tapeflow.scsi.ssc import Position
from tapeflow.tapefmt import SessionInfo, SessionWriter
from tapeflow.tapefmt.memtape import NullDrive

RECORD = 256 * 1024


class FileDrive(NullDrive):
    """Writes each record to a file: the same disk cost tar pays for `-f file`."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.fh = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by close()

    def write(self, data: bytes | memoryview, fixed_block: int = 0) -> None:
        """Append the record."""
        self.fh.write(data)
        super().write(data)

    def close(self) -> None:
        """Close the file."""
        self.fh.close()

    def position(self) -> Position:
        """Where the next block goes."""
        return super().position()


def make_small(root: Path, count: int) -> int:
    """`count` files of 10 B - 4 KB in 100-file directories; returns total bytes."""
    rng = random.Random(1)
    total = 0
    payload = os.urandom(4096)
    for i in range(count):
        d = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True)
        size = rng.randint(10, 4096)
        (d / f"file{i:06d}.dat").write_bytes(payload[:size])
        total += size
    return total


def make_large(root: Path, mb: int) -> int:
    """Files of 40 MB up to `mb` MB; returns total bytes."""
    root.mkdir(parents=True)
    total = 0
    chunk = os.urandom(1 << 20)
    i = 0
    while total < mb * 1_000_000:
        with open(root / f"large{i:02d}.bin", "wb") as fh:
            for _ in range(40):
                fh.write(chunk)
        total += 40 << 20
        i += 1
    return total


SETTLE = True  # --no-settle: measure as before (each run pays for its predecessor's output)


def settle(out: Path | None = None) -> None:
    """Untimed, before every run: remove the last output and flush dirty pages, so that no run
    pays for the previous run's truncation or writeback."""
    if not SETTLE:
        return
    if out is not None:
        out.unlink(missing_ok=True)
    os.sync()


def best_pair(
    theirs: Callable[[], None], mine: Callable[[], None], runs: int, out: Path | None = None
) -> tuple[float, float, list[float], list[float]]:
    """Fastest of `runs` timings each, tar and ours alternating (the load of a shared machine
    changes within seconds); also every timing, for the spread."""
    t_theirs: list[float] = []
    t_mine: list[float] = []
    for _ in range(runs):
        for fn, times in ((theirs, t_theirs), (mine, t_mine)):
            settle(out)
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return min(t_theirs), min(t_mine), t_theirs, t_mine


def tar_pipe(tree: Path) -> None:
    """GNU tar to a pipe drained by cat into /dev/null."""
    subprocess.run(f"tar -cf - -b 512 -C {tree} . | cat > /dev/null", shell=True, check=True)


def tar_file(tree: Path, out: Path) -> None:
    """GNU tar to a file."""
    subprocess.run(["tar", "-cf", str(out), "-b", "512", "-C", str(tree), "."], check=True)


def ours(tree: Path, drive: NullDrive) -> None:
    """The session writer into `drive`."""
    with SessionWriter(drive, SessionInfo("bench")) as w:
        w.add_tree(tree)


def ours_file(tree: Path, out: Path) -> None:
    """The session writer into a file, one write per record."""
    drive = FileDrive(out)
    try:
        ours(tree, drive)
    finally:
        drive.close()


def ours_vtl(tree: Path, work: Path) -> float:
    """Seconds for the writer into drive 0 of a fresh embedded library."""
    from tapeflow.library import Library, LibrarySpec
    from tapeflow.tapefmt import write_label
    from tapeflow.vtl.library import VirtualLibrary

    VirtualLibrary.create(
        work,
        drives=1,
        slots=2,
        mail_slots=0,
        cartridges=1,
        capacity=8 << 30,
        early_warning=64 << 20,
        cleaning_cartridges=0,
    )
    with Library(LibrarySpec.parse(f"embedded:{work}")) as lib:
        barcode = lib.load(0, slot=1)
        drive = lib.open_drive(0)
        try:
            write_label(drive, "bench", barcode)
            start = time.perf_counter()
            with SessionWriter(drive, SessionInfo("bench"), barcode=barcode) as w:
                w.add_tree(tree)
            return time.perf_counter() - start
        finally:
            drive.close()


def main() -> None:
    """Build the trees, time everything, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--large-mb", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-settle", action="store_true", help="no unlink/sync between runs")
    args = parser.parse_args()
    global SETTLE
    SETTLE = not args.no_settle
    with tempfile.TemporaryDirectory(prefix="tapeflow-wbench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        os.environ.setdefault("TAPEFLOW_HOME", str(work / "home"))
        trees = {
            f"{args.small} small files": (work / "small", make_small(work / "small", args.small)),
            f"large files ({args.large_mb} MB)": (
                work / "large",
                make_large(work / "large", args.large_mb),
            ),
        }
        rows = []
        spread = []
        for label, (tree, total) in trees.items():
            out = work / "out.tar"
            tar_pipe(tree)  # warm the page cache for both sides
            t_tar, t_ours, all_tar, all_ours = best_pair(
                lambda tree=tree: tar_pipe(tree),
                lambda tree=tree: ours(tree, NullDrive()),
                args.runs,
            )
            t_tar_f, t_ours_f, all_tar_f, all_ours_f = best_pair(
                lambda tree=tree, out=out: tar_file(tree, out),
                lambda tree=tree, out=out: ours_file(tree, out),
                args.runs,
                out,
            )
            out.unlink()
            settle()
            t_vtl = ours_vtl(tree, work / f"vtl-{len(rows)}")
            rows.append((label, total, t_tar, t_ours, t_tar_f, t_ours_f, t_vtl))
            for sink, times in (
                ("tar|pipe", all_tar),
                ("ours|null", all_ours),
                ("tar>file", all_tar_f),
                ("ours>file", all_ours_f),
            ):
                spread.append(f"{label:<26}{sink:<10}" + " ".join(f"{t:.3f}" for t in times))
    print(
        "\nsession writer vs GNU tar 1.34 (-b 512 = 256 KiB records), best of "
        f"{args.runs}; MB/s of file content"
    )
    head = ("tree", "tar|pipe", "ours|null", "ratio", "tar>file", "ours>file", "ratio", "ours>VTL")
    print(f"{head[0]:<26}" + "".join(f"{h:>11}" for h in head[1:]))
    for label, total, t_tar, t_ours, t_tar_f, t_ours_f, t_vtl in rows:
        mb = total / 1e6
        print(
            f"{label:<26}{mb / t_tar:>11.0f}{mb / t_ours:>11.0f}{t_tar / t_ours:>11.2f}"
            f"{mb / t_tar_f:>11.0f}{mb / t_ours_f:>11.0f}{t_tar_f / t_ours_f:>11.2f}"
            f"{mb / t_vtl:>11.0f}"
        )
    print("targets: ratio >= 0.5 for small files, >= 0.9 for large files")
    print("\nevery timing (s), in run order:")
    print("\n".join(spread))


if __name__ == "__main__":
    main()
