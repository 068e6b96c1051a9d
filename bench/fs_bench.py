"""Block-to-file map extraction: our FAT and NTFS parsers against The Sleuth Kit on the same
100,000-file images, made by the real tools (mkfs.fat + mcopy; mkntfs + an ntfs-3g mount).

The reference is what TSK needs to list the names and the extents: `fls -r -p` (names) plus
`istat` per file (extents; timed on a sample and scaled to every file), and `tsk_loaddb`, which
walks names and block runs of every file in one process. Images are cached between runs.

Usage: python -m bench.fs_bench [--files 100000] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tapeflow.fs.detect import open_volume
from tapeflow.fs.model import entries_to_batches
from tapeflow.testing.ntfs3g import mounted

ISTAT_SAMPLE = 300
T = TypeVar("T")
TOOL_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}


def make_tree(root: Path, files: int) -> None:
    """`files` files, 100 per directory, 70% tiny (resident on NTFS), the rest 1-20 KB."""
    rnd = random.Random(1)
    for n in range(files):
        d = root / f"dir{n // 5000:02d}" / f"sub{n // 100 % 50:02d}"
        if n % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = rnd.randint(0, 600) if rnd.random() < 0.7 else rnd.randint(1000, 20000)
        (d / f"file_{n % 100:03d}_{'x' * rnd.randint(0, 30)}.dat").write_bytes(os.urandom(size))


def fat_image(cache: Path, tree: Path) -> Path:
    img = cache / f"fat32-{sum(1 for _ in tree.rglob('*.dat'))}.img"
    if not img.exists():
        tmp = img.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        subprocess.run(
            ["mkfs.fat", "-F", "32", "-C", str(tmp), str(2 * 1024 * 1024)],
            check=True,
            capture_output=True,
        )
        for top in sorted(tree.iterdir()):
            subprocess.run(
                ["mcopy", "-s", "-i", str(tmp), str(top), "::/"], check=True, env=TOOL_ENV
            )
        tmp.rename(img)
    return img


class ImageBuildFailed(RuntimeError):
    """A tool failed while the benchmark built its image."""


def ntfs_image(cache: Path, tree: Path) -> Path:
    """An NTFS image holding `tree`, cached; the name says it was built by the flushing mount
    (`no_detach`), so an image from an earlier, unflushed build is never reused."""
    img = cache / f"ntfs-nodetach-{sum(1 for _ in tree.rglob('*.dat'))}.img"
    if not img.exists():
        tmp = img.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        subprocess.run(["truncate", "-s", "2G", str(tmp)], check=True)
        subprocess.run(["mkntfs", "-F", "-Q", str(tmp)], check=True, capture_output=True)
        mnt = cache / "mnt"
        mnt.mkdir(exist_ok=True)
        with mounted(tmp, mnt, mount_timeout=30, unmount_timeout=300):
            for top in sorted(tree.iterdir()):
                shutil.copytree(top, mnt / top.name)
        check = subprocess.run(
            ["ntfsfix", "--no-action", str(tmp)], capture_output=True, text=True, check=False
        )
        if check.returncode:
            raise ImageBuildFailed(f"ntfsfix finds {tmp} inconsistent: {check.stdout}")
        tmp.rename(img)
    return img


def cpu() -> float:
    """CPU seconds of this process and its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def timed(fn: Callable[[], T]) -> tuple[float, float, T]:
    """(wall s, CPU s, result) of `fn()`."""
    w, c = time.perf_counter(), cpu()
    out = fn()
    return time.perf_counter() - w, cpu() - c, out


def ours(img: Path) -> tuple[int, int]:
    """Full map: every entry with its extents, as the Arrow batches the catalog stores."""
    files = extents = 0
    with open(img, "rb", buffering=1024 * 1024) as fh:
        vol = open_volume(fh)
        for f, x in entries_to_batches(vol.entries()):
            files += f.num_rows
            extents += x.num_rows
        vol.used_runs()
    return files, extents


def fls(img: Path) -> tuple[list[int], int]:
    """`fls -r -p`: (inodes of its regular-file lines, for istat; allocated names it listed,
    neither deleted nor TSK's virtual entries)."""
    out = subprocess.run(["fls", "-r", "-p", str(img)], check=True, capture_output=True).stdout
    inodes = []
    names = 0
    for line in out.decode("utf-8", "replace").splitlines():
        m = re.match(r"r/r \*?\s*(\d+)", line.replace("+ ", "").lstrip("+ "))
        if m:
            inodes.append(int(m.group(1)))
        parts = line.partition(":\t")[0].split()
        if parts and "*" not in parts and not parts[0].lower().startswith("v/v"):
            names += 1
    return inodes, names


def istat_sample(img: Path, inodes: list[int]) -> float:
    sample = random.Random(2).sample(inodes, min(ISTAT_SAMPLE, len(inodes)))
    start = time.perf_counter()
    for inode in sample:
        subprocess.run(["istat", str(img), str(inode)], check=True, capture_output=True)
    return (time.perf_counter() - start) / len(sample)


def loaddb(img: Path, work: Path) -> int:
    """Run `tsk_loaddb` (names and block runs of every file into SQLite); the allocated files
    and directories it recorded, without '.' and '..'."""
    db = work / f"{img.stem}.db"
    db.unlink(missing_ok=True)
    subprocess.run(["tsk_loaddb", "-d", str(db), str(img)], check=True, capture_output=True)
    with closing(sqlite3.connect(db)) as con:
        (count,) = con.execute(
            "SELECT count(*) FROM tsk_files WHERE type = 0 AND dir_flags = 1"
            " AND meta_type IN (1, 2) AND name NOT IN ('.', '..')"
        ).fetchone()
    return int(count)


@dataclass(frozen=True, slots=True)
class Row:
    """One image's measurements: our map, and TSK's two ways to list names and extents."""

    kind: str
    entries: int  # files and directories we mapped
    extents: int
    ours_s: float
    fls_s: float
    fls_names: int  # allocated names fls listed
    istat_s: float  # istat for every regular file (sampled, scaled)
    loaddb_s: float
    loaddb_files: int  # allocated files and directories tsk_loaddb recorded

    @property
    def fls_istat_s(self) -> float:
        """TSK's names (fls) plus every file's extents (istat), one process per file."""
        return self.fls_s + self.istat_s

    @property
    def tsk_best_s(self) -> float:
        """The faster of TSK's two ways to list names and extents."""
        return min(self.fls_istat_s, self.loaddb_s)

    @property
    def passed(self) -> bool:
        """The target: our full map in less time than TSK needs to list names and extents."""
        return self.ours_s < self.tsk_best_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "tapeflow-bench-fs"
    )
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    tree = args.cache / f"tree-{args.files}"
    if not tree.exists():
        make_tree(tree.with_suffix(".tmp"), args.files)
        tree.with_suffix(".tmp").rename(tree)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as work:
        for kind, make in (("FAT32", fat_image), ("NTFS", ntfs_image)):
            img = make(args.cache, tree)
            ours_wall, _, (files, extents) = timed(lambda img=img: ours(img))
            fls_wall, _, (inodes, names) = timed(lambda img=img: fls(img))
            istat_all = istat_sample(img, inodes) * len(inodes)
            db_wall, _, db_files = timed(lambda img=img: loaddb(img, Path(work)))
            rows.append(
                Row(kind, files, extents, ours_wall, fls_wall, names, istat_all, db_wall, db_files)
            )
    print(f"\nBlock-to-file maps of {args.files} files (one run; TSK measured in the same run)\n")
    head = (
        f"{'image':<6} {'entries':>8} {'extents':>8} {'ours s':>7} {'files/s':>9} "
        f"{'fls s':>6} {'fls+istat s':>11} {'files/s':>8} {'tsk_loaddb s':>12} {'files/s':>8} "
        f"{'vs fls+istat':>12} {'vs loaddb':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.kind:<6} {r.entries:>8} {r.extents:>8} {r.ours_s:>7.2f} "
            f"{r.entries / r.ours_s:>9.0f} {r.fls_s:>6.2f} {r.fls_istat_s:>11.1f} "
            f"{r.fls_names / r.fls_istat_s:>8.0f} {r.loaddb_s:>12.2f} "
            f"{r.loaddb_files / r.loaddb_s:>8.0f} {r.fls_istat_s / r.ours_s:>11.1f}x "
            f"{r.loaddb_s / r.ours_s:>8.1f}x"
        )
    print(
        f"\n'fls+istat' = fls -r -p + istat per regular file ({ISTAT_SAMPLE} timed, scaled to "
        "all); its files/s = names fls listed / that time. tsk_loaddb files/s = files and "
        "directories in its database / its time. Ratios > 1 mean our full map took less time.\n"
    )
    for r in rows:
        verdict = "PASS" if r.passed else "FAIL"
        print(
            f"{verdict} {r.kind}: our full map {r.ours_s:.2f} s vs TSK listing names and extents "
            f"{r.tsk_best_s:.2f} s (faster of fls+istat {r.fls_istat_s:.1f} s, "
            f"tsk_loaddb {r.loaddb_s:.2f} s)"
        )


if __name__ == "__main__":
    main()
