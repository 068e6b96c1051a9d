"""Purge a source: delete its files (optionally only those matching globs, or older than N
days), and optionally the directories that become empty. Dry run by default: it reports what
would go. Symlinks are removed as links, never followed; every deletion goes through directory
handles opened without following links, so nothing outside the source root is touched, and the
root itself is never removed."""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tapeflow.backup.model import Source
from tapeflow.backup.sources import walk
from tapeflow.maintenance.count import SourceLike, as_source
from tapeflow.maintenance.errors import BadInput, BadTarget
from tapeflow.maintenance.progress import ProgressHook, Reporter
from tapeflow.maintenance.safefs import DirFds, UnsafePath, split

DEFAULT_LISTED = 1000


@dataclass
class PurgeResult:
    """What was (dry run: would be) deleted; `errors` are files that could not be deleted."""

    source: str
    root: str
    dry_run: bool
    selected: int = 0  # files/links/others chosen for deletion
    bytes: int = 0  # their sizes (regular files)
    deleted: int = 0  # actually deleted (0 in a dry run)
    dirs_removed: int = 0  # empty directories removed (dry run: that would be)
    paths: list[str] = field(default_factory=list)  # first `max_listed` chosen paths
    truncated: bool = False  # more were chosen than listed
    errors: list[str] = field(default_factory=list)  # "path: reason"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def purge(
    source: SourceLike,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    older_than_days: float | None = None,
    remove_empty_dirs: bool = False,
    dry_run: bool = True,
    now: float | None = None,
    on_progress: ProgressHook | None = None,
    max_listed: int = DEFAULT_LISTED,
) -> PurgeResult:
    """Delete the selected files of a source (globs as in backups; age by each entry's own
    mtime); with remove_empty_dirs, then remove directories left empty (never the root)."""
    if older_than_days is not None and older_than_days < 0:
        raise BadInput(f"older_than_days must be >= 0, not {older_than_days}")
    src = as_source(source, include, exclude)
    root = Path(src.path).resolve()
    if root == Path(root.anchor):
        raise BadTarget(f"refusing to purge the filesystem root {root}")
    src = Source(src.name, str(root), include=src.include, exclude=src.exclude)
    cutoff_ns = None
    if older_than_days is not None:
        cutoff_ns = int(((now if now is not None else time.time()) - older_than_days * 86400) * 1e9)
    result = PurgeResult(src.name, str(root), dry_run)
    report = Reporter(on_progress, "purge")
    dirs: list[str] = []
    gone: dict[str, set[str]] = defaultdict(set)  # dir -> names deleted (or that would be)
    with DirFds(root) as fds:
        for _abs, rel, st in walk(src):
            if stat.S_ISDIR(st.st_mode):
                dirs.append(rel)
                continue
            if cutoff_ns is not None and st.st_mtime_ns >= cutoff_ns:
                continue
            result.selected += 1
            result.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
            if len(result.paths) < max_listed:
                result.paths.append(rel)
            else:
                result.truncated = True
            if dry_run or _delete(fds, rel, st, result):
                gone[split(rel)[0]].add(split(rel)[1])
            report("delete", items=result.selected, bytes=result.bytes, path=rel)
        if remove_empty_dirs:
            _remove_empty(fds, dirs, gone, result)
    report("done", force=True, items=result.selected, bytes=result.bytes)
    return result


def _delete(fds: DirFds, rel: str, listed: os.stat_result, result: PurgeResult) -> bool:
    """Unlink one entry if it is still the one listed; failures go to result.errors."""
    try:
        parent, leaf = fds.parent(rel)
        now = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (listed.st_dev, listed.st_ino) or stat.S_ISDIR(now.st_mode):
            result.errors.append(f"{rel}: replaced since it was listed; kept")
            return False
        os.unlink(leaf, dir_fd=parent)
    except (UnsafePath, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        result.errors.append(f"{rel}: {reason}")
        return False
    result.deleted += 1
    return True


def _remove_empty(
    fds: DirFds, dirs: list[str], gone: dict[str, set[str]], result: PurgeResult
) -> None:
    """Remove (dry run: count) walked directories whose every entry is gone, deepest first."""
    for rel in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
        try:
            fd = fds.open(rel)
            left = set(os.listdir(fd)) - gone.get(rel, set())
        except (UnsafePath, OSError) as exc:
            result.errors.append(f"{rel}/: {exc}")
            continue
        if left:
            continue
        if not result.dry_run:
            fds.forget(rel)
            parent, leaf = fds.parent(rel)
            try:
                os.rmdir(leaf, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # something arrived meanwhile: the directory stays
                result.errors.append(f"{rel}/: {exc.strerror}")
                continue
        result.dirs_removed += 1
        gone[split(rel)[0]].add(split(rel)[1])
