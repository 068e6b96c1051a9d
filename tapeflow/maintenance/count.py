"""Count a source: files, directories, links and bytes, selected by the same include/exclude
globs a backup uses (tapeflow.backup.sources.walk), so the numbers say what a backup would take.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tapeflow.backup.model import Source
from tapeflow.backup.sources import walk
from tapeflow.maintenance.errors import BadInput, SourceMissing
from tapeflow.maintenance.progress import ProgressHook, Reporter

SourceLike = Source | str | os.PathLike[str]


def as_source(
    source: SourceLike, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Source:
    """A directory Source from a Source or a path (globs given here are added to its own);
    SourceMissing when the directory does not exist, BadInput for a volume source."""
    if isinstance(source, Source):
        if source.kind != "directory":
            raise BadInput(f"source {source.name!r} is a {source.kind}, not a directory tree")
        chosen = Source(
            source.name,
            source.path,
            include=tuple(source.include) + tuple(include),
            exclude=tuple(source.exclude) + tuple(exclude),
        )
    else:
        path = os.fspath(source)
        if not path:
            raise BadInput("no source directory given")
        name = Path(path).name or "root"
        chosen = Source(name, path, include=tuple(include), exclude=tuple(exclude))
    for glob in (*chosen.include, *chosen.exclude):
        if not glob or glob.startswith("/"):
            raise BadInput(f"glob {glob!r} must be a non-empty pattern relative to the source root")
    if not Path(chosen.path).is_dir():
        raise SourceMissing(f"source {chosen.name!r}: {chosen.path} is not a directory")
    return chosen


def _iso(us: int | None) -> str | None:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat() if us is not None else None


@dataclass
class CountResult:
    """What a source holds under its globs: entries by type, bytes of regular files, and the
    oldest/newest file modification times (microseconds since the epoch)."""

    source: str
    root: str
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    other: int = 0  # fifos, sockets, devices
    bytes: int = 0  # apparent size of regular files (hard links counted each time)
    largest: str | None = None
    largest_bytes: int = 0
    oldest_us: int | None = None
    newest_us: int | None = None

    @property
    def entries(self) -> int:
        """Everything counted."""
        return self.files + self.dirs + self.symlinks + self.other

    def to_dict(self) -> dict[str, Any]:
        """JSON form (times as ISO strings too)."""
        out = asdict(self)
        out["entries"] = self.entries
        out["oldest"], out["newest"] = _iso(self.oldest_us), _iso(self.newest_us)
        return out


def count_source(
    source: SourceLike,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    on_progress: ProgressHook | None = None,
) -> CountResult:
    """Walk the source (links not followed, the root not counted) and count what is selected."""
    src = as_source(source, include, exclude)
    result = CountResult(src.name, str(Path(src.path)))
    report = Reporter(on_progress, "count")
    for _abs, rel, st in walk(src):
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            result.dirs += 1
        elif stat.S_ISLNK(mode):
            result.symlinks += 1
        elif stat.S_ISREG(mode):
            result.files += 1
            result.bytes += st.st_size
            if st.st_size > result.largest_bytes or result.largest is None:
                result.largest, result.largest_bytes = rel, st.st_size
            mtime = st.st_mtime_ns // 1000
            result.oldest_us = mtime if result.oldest_us is None else min(result.oldest_us, mtime)
            result.newest_us = mtime if result.newest_us is None else max(result.newest_us, mtime)
        else:
            result.other += 1
        report("walk", items=result.entries, bytes=result.bytes, path=rel)
    report("done", force=True, items=result.entries, bytes=result.bytes)
    return result
