"""Sample data for the demo and tests: a reproducible tree and its digest."""

from __future__ import annotations

import hashlib
from pathlib import Path


def make_sample_tree(root: Path, files: int = 400, seed: int = 7) -> int:
    """A small tree of text and binary files; returns its size in bytes."""
    total = 0
    for i in range(files):
        d = root / f"dir{i % 8}" / f"sub{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        size = (i * 7919 + seed) % 60000 if i % 50 else 2 * 1024 * 1024
        data = hashlib.sha256(f"{seed}:{i}".encode()).digest() * (size // 32 + 1)
        (d / f"file{i:04d}.dat").write_bytes(data[:size])
        total += size
    return total


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every regular file."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
