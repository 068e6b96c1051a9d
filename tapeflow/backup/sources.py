"""Walk a source tree with include/exclude globs: the live listing an incremental compares."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from tapeflow.backup.model import Source

LIVE_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime", pa.timestamp("us", tz="UTC")),
        ("ctime", pa.timestamp("us", tz="UTC")),
        ("inode", pa.uint64()),
    ]
)


class SourceUnavailable(OSError):
    """The source directory does not exist or cannot be read."""


def _selected(rel: str, source: Source) -> bool:
    if source.include and not any(fnmatch.fnmatchcase(rel, g) for g in source.include):
        return False
    return not any(fnmatch.fnmatchcase(rel, g) for g in source.exclude)


def walk(source: Source) -> Iterator[tuple[str, str, os.stat_result]]:
    """(absolute path, relative member name, lstat) for every selected entry, parents first.

    Directories are always listed (so restores recreate them); globs select files. An
    excluded directory (its relative path matches an exclude glob) is not descended into.
    """
    root = Path(source.path)
    if not root.is_dir():
        raise SourceUnavailable(f"source {source.name!r}: {root} is not a readable directory")
    stack = [(str(root), "")]
    while stack:
        directory, rel_dir = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise SourceUnavailable(
                f"source {source.name!r}: cannot list {directory}: {exc}"
            ) from exc
        subdirs = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            if entry.is_dir(follow_symlinks=False):
                if any(fnmatch.fnmatchcase(rel, g) for g in source.exclude):
                    continue
                yield entry.path, rel, st
                subdirs.append((entry.path, rel))
            elif _selected(rel, source):
                yield entry.path, rel, st
        stack.extend(reversed(subdirs))


def live_listing(source: Source) -> pa.Table:
    """The source as it is now (LIVE_SCHEMA), for incremental planning."""
    paths, sizes, mtimes, ctimes, inodes = [], [], [], [], []
    for _abs, rel, st in walk(source):
        paths.append(rel)
        sizes.append(st.st_size if not os.path.isdir(_abs) else 0)
        mtimes.append(st.st_mtime_ns // 1000)
        ctimes.append(st.st_ctime_ns // 1000)
        inodes.append(st.st_ino)
    return pa.table(
        [
            pa.array(paths, pa.string()),
            pa.array(sizes, pa.int64()),
            pa.array(mtimes, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(ctimes, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(inodes, pa.uint64()),
        ],
        schema=LIVE_SCHEMA,
    )
