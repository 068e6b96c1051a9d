"""Quiesce by write inactivity: wait until a source has seen no write for a quiet period.

A probe is any callable returning an opaque "write marker" that changes whenever something was
written. Markers are only compared with each other (``!=``), never against the wall clock, so
clock skew between this host and a file server cannot fake or hide quiet. The clock used to
measure the quiet period is the local monotonic clock (injectable for tests).

Timing rule: a change is dated at the *end* of the probe that saw it (the write happened no
later than that), and quiet is measured up to the *start* of the probe that confirmed it (a
probe that reads many entries may miss a write landing behind it while it runs). So when
wait_for_quiet returns, no write was seen in a window of at least ``quiet`` seconds.

Timestamp granularity: on kernels without multigrain timestamps (< 6.13) two writes in one
timer tick (<= 10 ms) can share an mtime; a writer that keeps writing is still seen, the quiet
period may just start up to one tick early.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tapeflow.snapshot.errors import FreezeTimeout, SnapshotUnsupported

DEFAULT_QUIET = 3.0
DEFAULT_TIMEOUT = 80.0
MAX_POLL = 0.25
DEFAULT_MAX_ENTRIES = 100_000

Probe = Callable[[], object]


@dataclass(frozen=True)
class QuiesceResult:
    """Outcome of a successful wait: how long it took and how much activity it saw."""

    waited: float  # seconds from the first probe to the decision
    polls: int  # probes taken, the first one included
    writes_seen: int  # marker changes observed while waiting
    quiet: float
    timeout: float
    marker: object  # the write marker the quiet period was confirmed on


@dataclass(frozen=True)
class QuiesceProgress:
    """One poll's view, handed to on_progress (e.g. to update a Prefect progress artifact)."""

    elapsed: float
    quiet_for: float
    quiet: float
    timeout: float
    polls: int
    writes_seen: int


def default_poll(quiet: float) -> float:
    """Polling interval when none is given: min(0.25 s, quiet / 4), so quiet is seen promptly."""
    return min(MAX_POLL, quiet / 4) if quiet > 0 else MAX_POLL


def wait_for_quiet(
    probe: Probe,
    *,
    quiet: float = DEFAULT_QUIET,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[QuiesceProgress], None] | None = None,
    label: str | None = None,
) -> QuiesceResult:
    """Block until ``probe``'s marker has not changed for ``quiet`` seconds; raise FreezeTimeout
    after ``timeout`` seconds. Exceptions raised by the probe propagate unchanged."""
    if quiet < 0 or timeout < 0:
        raise ValueError(f"quiet ({quiet}) and timeout ({timeout}) must not be negative")
    if quiet > timeout:
        raise ValueError(f"quiet period {quiet} s can never fit in the {timeout} s timeout")
    interval = default_poll(quiet) if poll is None else poll
    if interval <= 0:
        raise ValueError(f"poll interval must be positive, got {interval}")
    name = label or str(getattr(probe, "label", "") or probe)

    start = clock()
    marker = probe()
    last_change = clock()  # a write may have landed just before the first look
    checked_at = start
    polls, writes = 1, 0
    while True:
        now = clock()
        quiet_for = max(0.0, checked_at - last_change)
        elapsed = now - start
        if on_progress is not None:
            on_progress(QuiesceProgress(elapsed, quiet_for, quiet, timeout, polls, writes))
        if quiet_for >= quiet:
            return QuiesceResult(elapsed, polls, writes, quiet, timeout, marker)
        if elapsed >= timeout:
            raise FreezeTimeout(
                source=name,
                waited=elapsed,
                timeout=timeout,
                quiet=quiet,
                last_write_ago=now - last_change,
                writes_seen=writes,
                polls=polls,
            )
        sleep(max(0.0, min(interval, last_change + quiet - now, start + timeout - now)))
        checked_at = clock()
        current = probe()
        polls += 1
        if current != marker:
            marker = current
            last_change = clock()
            writes += 1


class FileProbe:
    """Write marker of one regular file (e.g. a volume image): device, inode, size, mtime and
    ctime in ns. Replacing the file by rename shows as a new inode; a missing file is None."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.label = str(self.path)
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
            raise ValueError(
                f"{self.path} is a device: its node's timestamps do not change when it is "
                f"written; use block_device_probe() or counter_probe() instead"
            )

    def __call__(self) -> tuple[int, int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def __repr__(self) -> str:
        return f"file_probe({self.label!r})"


def file_probe(path: str | os.PathLike[str]) -> FileProbe:
    """Probe for one file: changes whenever the file is written, truncated, touched or replaced."""
    return FileProbe(path)


@dataclass(frozen=True)
class TreeMarker:
    """Write marker of a directory tree. Newest mtime/ctime and the entry count catch most
    writes; total size and an order-free digest of every entry's stat catch the rest (e.g. a
    file set back in time, or a rename that keeps the count)."""

    entries: int
    max_mtime_ns: int
    max_ctime_ns: int
    total_size: int
    digest: int


class TreeProbe:
    """Walks a tree with lstat (no symlink following), by default staying on one filesystem.
    Cost is bounded: more than ``max_entries`` entries raises instead of polling forever."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        one_filesystem: bool = True,
    ) -> None:
        self.root = Path(root)
        self.label = str(self.root)
        self.max_entries = max_entries
        self.one_filesystem = one_filesystem

    def __call__(self) -> TreeMarker | None:
        try:
            root_st = os.lstat(self.root)
        except FileNotFoundError:
            return None
        entries, max_m, max_c, total, digest = 0, 0, 0, 0, 0
        mask = (1 << 64) - 1

        def account(rel: str, st: os.stat_result) -> None:
            """Fold one entry into the marker, refusing to go past max_entries."""
            nonlocal entries, max_m, max_c, total, digest
            entries += 1
            if entries > self.max_entries:
                raise SnapshotUnsupported(
                    f"{self.root} holds more than {self.max_entries} entries: tree_probe stats "
                    f"every entry on each poll; raise max_entries, or quiesce on a write "
                    f"counter (counter_probe / block_device_probe) of the volume instead",
                    path=str(self.root),
                )
            max_m = max(max_m, st.st_mtime_ns)
            max_c = max(max_c, st.st_ctime_ns)
            total += st.st_size
            entry = (rel, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
            digest = (digest + hash(entry)) & mask

        account("", root_st)
        stack = [(self.root, "")] if stat.S_ISDIR(root_st.st_mode) else []
        while stack:
            directory, rel_dir = stack.pop()
            try:
                with os.scandir(directory) as it:
                    listing = list(it)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked: the parent's mtime and the count show it
            for entry in listing:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                rel = f"{rel_dir}/{entry.name}"
                account(rel, st)
                if stat.S_ISDIR(st.st_mode) and (
                    not self.one_filesystem or st.st_dev == root_st.st_dev
                ):
                    stack.append((Path(entry.path), rel))
        return TreeMarker(entries, max_m, max_c, total, digest)

    def __repr__(self) -> str:
        return f"tree_probe({self.label!r})"


def tree_probe(
    root: str | os.PathLike[str],
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    one_filesystem: bool = True,
) -> TreeProbe:
    """Probe for a directory tree: sees files created, modified, renamed or deleted under root."""
    return TreeProbe(root, max_entries=max_entries, one_filesystem=one_filesystem)


class CounterProbe:
    """Marker is whatever the wrapped callable returns (a write generation, an I/O counter)."""

    def __init__(self, fn: Callable[[], object], label: str | None = None) -> None:
        self.fn = fn
        self.label = label or getattr(fn, "__qualname__", repr(fn))

    def __call__(self) -> object:
        return self.fn()

    def __repr__(self) -> str:
        return f"counter_probe({self.label})"


def counter_probe(fn: Callable[[], object], label: str | None = None) -> CounterProbe:
    """Probe over a device's own write counter, e.g. a VTL disk LUN's ``write_generation``."""
    return CounterProbe(fn, label)


def block_device_probe(device: str | os.PathLike[str]) -> CounterProbe:
    """Probe over a Linux block device's kernel I/O counters (/sys/dev/block/M:m/stat: writes,
    sectors written, discards). Writes through a filesystem mounted on the device only count at
    writeback (up to ~30 s later), so use it for raw devices written directly (VMs, O_DIRECT)."""
    st = os.stat(device)
    if not stat.S_ISBLK(st.st_mode):
        raise ValueError(f"{device} is not a block device")
    stat_file = Path(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}/stat")

    def read_counters() -> tuple[int, ...]:
        """(writes completed, sectors written, discards completed) since boot."""
        fields = [int(f) for f in stat_file.read_text().split()]
        if len(fields) < 11:
            raise OSError(f"{stat_file}: unexpected format {fields!r}")
        writes, write_sectors = fields[4], fields[6]
        discards = fields[11] if len(fields) > 11 else 0
        return (writes, write_sectors, discards)

    return CounterProbe(read_counters, label=str(device))
