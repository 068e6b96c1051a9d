"""Real filesystems for snapshot tests: XFS (with or without reflinks) or btrfs, made on a
sparse file and loop-mounted (root only; the tests skip elsewhere)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def loop_mounted(fs: str, base: Path, *, reflink: bool = True) -> Iterator[Path]:
    """A freshly made XFS (reflink=1, or reflink=0 with ``reflink=False``) or btrfs filesystem
    on a loop-mounted sparse file under ``base``; skips the test where that cannot be done."""
    mkfs = shutil.which(f"mkfs.{fs}")
    if os.geteuid() != 0 or mkfs is None:
        pytest.skip(f"needs root and mkfs.{fs} (apt-get install xfsprogs btrfs-progs)")
    if fs != "xfs" and not reflink:
        raise ValueError(f"{fs} always shares extents: only XFS can be made without reflinks")
    image, mount_point = base / "fs.img", base / "mnt"
    mount_point.mkdir()
    with open(image, "wb") as f:
        f.truncate(320 * 1024 * 1024)
    options = ["-m", f"reflink={int(reflink)}"] if fs == "xfs" else []
    made = subprocess.run([mkfs, "-q", *options, str(image)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"mkfs.{fs} failed: {made.stderr.strip()}")
    mounted = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount {fs} here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
