"""Compare a session (its catalog rows, or its whole restore chain) with the files on disk now:
what is missing, extra, or different in type, size, mtime, mode, link target or content."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc

from tapeflow.catalog import Catalog, chain_tree, restore_chain, session_files
from tapeflow.maintenance.errors import SourceMissing
from tapeflow.maintenance.hashing import algorithm_of, new_hasher

_READ = 1 << 20


@dataclass(frozen=True)
class Difference:
    """One path whose disk state differs from the catalog row, and in which fields."""

    path: str
    fields: tuple[str, ...]  # of: type, size, mtime, mode, link_target, content
    expected: dict
    actual: dict


@dataclass
class CompareResult:
    """Missing on disk, extra on disk, and different paths, relative to `root`."""

    session_id: str
    root: str
    compared: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[Difference] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # content could not be read

    @property
    def same(self) -> bool:
        """Whether disk and catalog agree on everything compared."""
        return not (self.missing or self.extra or self.different or self.unreadable)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _disk(root: Path) -> dict[str, os.stat_result]:
    """Every path under root (relative, '/'-separated) with its lstat; links not followed."""
    found: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            try:
                found[rel] = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
    return found


def _content(path: Path, algorithm: str) -> str | None:
    """Checksum of a file's content in the catalog's form (None: unreadable or unsupported)."""
    hasher = new_hasher(algorithm)
    if hasher is None:
        return None
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_READ):
                hasher.update(chunk)
    except OSError:
        return None
    return f"{algorithm}:{hasher.hexdigest()}"


def compare_session(
    cat: Catalog,
    session_id: str,
    root: str | os.PathLike[str],
    *,
    chain: bool = True,
    content: bool = False,
    mtime: bool = True,
    dir_mtime: bool = False,
) -> CompareResult:
    """Compare a session with `root` now. chain=True compares the session's whole tree (its
    restore chain, deletions applied) and reports extra paths; chain=False only the session's own
    rows (extra paths are then reported only for a full). content=True compares checksums;
    dir_mtime=False ignores directory mtimes (they change whenever an entry is added)."""
    row = cat.session(session_id)
    base = Path(root)
    if not base.is_dir():
        raise SourceMissing(f"{base} is not a directory")
    if chain:
        rows = chain_tree(cat, restore_chain(cat, session_id))
    else:
        rows = session_files(cat, session_id)
        rows = rows.filter(pc.not_equal(rows["type"], "deleted"))
    disk = _disk(base)
    result = CompareResult(session_id, str(base))
    expected = {r["path"]: r for r in rows.to_pylist()}
    for path, r in sorted(expected.items()):
        st = disk.get(path)
        if st is None:
            result.missing.append(path)
            continue
        result.compared += 1
        kind = _kind(st.st_mode)
        want_kind = "file" if r["type"] == "hardlink" else r["type"]
        fields: list[str] = []
        actual: dict = {"type": kind}
        if kind != want_kind:
            fields.append("type")
        else:
            if kind == "file" and st.st_size != r["size"] and r["type"] == "file":
                fields.append("size")
            actual["size"] = st.st_size
            when = r["mtime"]
            disk_us = st.st_mtime_ns // 1000
            row_us = int(when.timestamp() * 1_000_000) if when is not None else None
            actual["mtime_us"] = disk_us
            if mtime and (kind != "dir" or dir_mtime) and row_us is not None and row_us != disk_us:
                fields.append("mtime")
            mode = stat.S_IMODE(st.st_mode)
            if r["mode"] is not None and kind != "symlink" and mode != r["mode"]:
                fields.append("mode")
            actual["mode"] = stat.S_IMODE(st.st_mode)
            if kind == "symlink":
                target = os.readlink(base / path)
                actual["link_target"] = target
                if target != r["link_target"]:
                    fields.append("link_target")
            algorithm = algorithm_of(r["checksum"])
            if content and kind == "file" and algorithm and "size" not in fields:
                got = _content(base / path, algorithm)
                actual["checksum"] = got
                if got is None:
                    result.unreadable.append(path)
                elif got != r["checksum"]:
                    fields.append("content")
        if fields:
            result.different.append(Difference(path, tuple(fields), r, actual))
    if chain or row["level"] == "full":
        result.extra = sorted(set(disk) - set(expected))
    return result
