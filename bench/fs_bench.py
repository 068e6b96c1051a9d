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
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tapeflow.fs.detect import open_volume
from tapeflow.fs.model import entries_to_batches

ISTAT_SAMPLE = 300
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


def ntfs_image(cache: Path, tree: Path) -> Path:
    img = cache / f"ntfs-{sum(1 for _ in tree.rglob('*.dat'))}.img"
    if not img.exists():
        tmp = img.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        subprocess.run(["truncate", "-s", "2G", str(tmp)], check=True)
        subprocess.run(["mkntfs", "-F", "-Q", str(tmp)], check=True, capture_output=True)
        mnt = cache / "mnt"
        mnt.mkdir(exist_ok=True)
        subprocess.run(["ntfs-3g", str(tmp), str(mnt)], check=True)
        try:
            for top in sorted(tree.iterdir()):
                shutil.copytree(top, mnt / top.name)
        finally:
            subprocess.run(["fusermount", "-u", str(mnt)], check=True)
        tmp.rename(img)
    return img


def cpu() -> float:
    """CPU seconds of this process and its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
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


def fls(img: Path) -> list[int]:
    out = subprocess.run(["fls", "-r", "-p", str(img)], check=True, capture_output=True).stdout
    inodes = []
    for line in out.decode("utf-8", "replace").splitlines():
        m = re.match(r"r/r \*?\s*(\d+)", line.replace("+ ", "").lstrip("+ "))
        if m:
            inodes.append(int(m.group(1)))
    return inodes


def istat_sample(img: Path, inodes: list[int]) -> float:
    sample = random.Random(2).sample(inodes, min(ISTAT_SAMPLE, len(inodes)))
    start = time.perf_counter()
    for inode in sample:
        subprocess.run(["istat", str(img), str(inode)], check=True, capture_output=True)
    return (time.perf_counter() - start) / len(sample)


def loaddb(img: Path, work: Path) -> None:
    db = work / f"{img.stem}.db"
    db.unlink(missing_ok=True)
    subprocess.run(["tsk_loaddb", "-d", str(db), str(img)], check=True, capture_output=True)


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
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for kind, make in (("FAT32", fat_image), ("NTFS", ntfs_image)):
            img = make(args.cache, tree)
            ours_wall, ours_cpu, (files, extents) = timed(lambda img=img: ours(img))
            fls_wall, _, inodes = timed(lambda img=img: fls(img))
            per_istat = istat_sample(img, inodes)  # type: ignore[arg-type]
            istat_all = per_istat * len(inodes)  # type: ignore[arg-type]
            db_wall, _, _ = timed(lambda img=img: loaddb(img, Path(work)))
            rows.append((kind, files, extents, ours_wall, ours_cpu, fls_wall, istat_all, db_wall))
    print(f"\nBlock-to-file maps of {args.files} files (one run; TSK measured in the same run)\n")
    head = (
        f"{'image':<6} {'entries':>8} {'extents':>8} {'ours s':>7} {'files/s':>9} "
        f"{'fls s':>6} {'fls+istat s':>11} {'tsk_loaddb s':>12} {'vs fls+istat':>12} "
        f"{'vs loaddb':>9}"
    )
    print(head)
    print("-" * len(head))
    for kind, files, extents, w, _c, f, i, d in rows:
        print(
            f"{kind:<6} {files:>8} {extents:>8} {w:>7.2f} {files / w:>9.0f} {f:>6.2f} "
            f"{f + i:>11.1f} {d:>12.2f} {(f + i) / w:>11.1f}x {d / w:>8.1f}x"
        )
    print(
        f"\n'fls+istat' = fls -r -p + istat per file ({ISTAT_SAMPLE} timed, scaled to all); "
        "ratios > 1 mean our full map took less time."
    )


if __name__ == "__main__":
    main()
