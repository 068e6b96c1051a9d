"""Snapshot providers: turn a quiet source into a frozen, readable view that a slave streams to
tape while the source goes on being written.

Every snapshot is an acquisition with a release on every path: ``with provider.snapshot(src) as
snap:`` (or ``with freeze(...) as snap:``) releases it whether the body returns or raises.

``Snapshot.modified_blocks(block_size)`` returns None when the provider cannot know which blocks
of the origin were written since the snapshot (a full copy; a split mirror without a change
tracker). It never raises NotImplementedError: None means "assume everything changed".
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import stat
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast

from tapeflow.snapshot.errors import (
    SnapshotError,
    SnapshotFailed,
    SnapshotReleased,
    SnapshotUnsupported,
)
from tapeflow.snapshot.fiemap import changed_ranges, fiemap, to_block_runs
from tapeflow.snapshot.quiesce import (
    DEFAULT_QUIET,
    DEFAULT_TIMEOUT,
    Probe,
    QuiesceProgress,
    QuiesceResult,
    wait_for_quiet,
)

log = logging.getLogger("tapeflow.snapshot")

FICLONE = 0x40049409  # _IOW(0x94, 9, int): clone a whole file's extents (btrfs, XFS, bcachefs)
SNAPSHOT_DIR_NAME = ".tapeflow-snapshots"
COPY_CHUNK = 4 * 1024 * 1024

SourceRef = str | os.PathLike[str]
Opener = Callable[[], BinaryIO]
Detached = str | os.PathLike[str] | Opener
BlockRuns = list[tuple[int, int]]

# FICLONE errors meaning "this filesystem (or this pair of files) cannot share extents"
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS, errno.EXDEV}


def filesystem_of(path: SourceRef) -> tuple[str, str]:
    """(filesystem type, mount point) holding ``path``, from /proc/self/mountinfo; ("unknown",
    "") when that cannot be read. Used to say which filesystem refused a reflink."""
    target = os.path.realpath(path)
    best: tuple[str, str] = ("unknown", "")
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        mount_point = _unescape_mountinfo(fields[4])
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[1]):
            best = (tail[0], mount_point)  # later lines are mounted on top: >= keeps the last
    return best


def _unescape_mountinfo(field: str) -> str:
    """Undo mountinfo's octal escapes (\\040 for space, \\011 tab, \\012 newline, \\134 \\)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


class Snapshot(ABC):
    """A frozen, readable view of a source, held until ``release()``; a context manager that
    releases on exit, exceptions included. ``release()`` is idempotent and thread-safe.

    Attributes: ``source`` (what was frozen), ``method`` (how: "reflink", "copy",
    "split-mirror"), ``created`` (UTC, taken just before the freeze, so "changed since created"
    never misses a write), ``size`` in bytes, ``path`` (an image file of the frozen view, or
    None when only ``open()`` can read it) and ``quiesce`` (set by freeze())."""

    def __init__(
        self, *, source: str, method: str, created: datetime, size: int, path: Path | None
    ) -> None:
        self.source = source
        self.method = method
        self.created = created
        self.size = size
        self.path = path
        self.quiesce: QuiesceResult | None = None
        self._lock = threading.RLock()
        self._closed = False
        self._released = False
        self._files: list[BinaryIO] = []

    @property
    def released(self) -> bool:
        """True once the frozen view is gone (release() completed)."""
        return self._released

    def _check(self) -> None:
        if self._closed:
            raise SnapshotReleased(f"snapshot of {self.source} ({self.method}) was released")

    def open(self) -> BinaryIO:
        """A new binary reader of the frozen view; release() closes any still open, so a reader
        can never go on reading the source after the view is gone."""
        with self._lock:
            self._check()
            f = self._open()
            self._files.append(f)
            return f

    def _open(self) -> BinaryIO:
        if self.path is None:
            raise NotImplementedError(f"{type(self).__name__} has neither path nor opener")
        return open(self.path, "rb")

    def modified_blocks(self, block_size: int) -> BlockRuns | None:
        """Runs (first_block, block_count) of the origin written since the snapshot, in units of
        ``block_size`` and within the origin's current size; None when the provider cannot know."""
        self._check()
        return None

    def release(self) -> None:
        """Close readers and free the frozen view (delete the clone, rejoin the mirror). If that
        fails it raises SnapshotFailed and stays unreleased, so release() may be retried."""
        with self._lock:
            if self._released:
                return
            self._closed = True
            files, self._files = self._files, []
            for f in files:
                try:
                    f.close()
                except OSError:  # pragma: no cover - closing a reader must not block release
                    log.debug("closing a reader of %s failed", self.source, exc_info=True)
            self._release()
            self._released = True
        log.debug("snapshot of %s (%s) released", self.source, self.method)

    @abstractmethod
    def _release(self) -> None:
        """Provider-specific release; raise SnapshotFailed when it cannot be done."""

    def __enter__(self) -> Snapshot:
        self._check()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        if not getattr(self, "_released", True):
            warnings.warn(
                f"snapshot of {self.source} ({self.method}) was never released",
                ResourceWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return (
            f"<{type(self).__name__} {self.method} of {self.source!r}, {self.size} bytes, "
            f"{self.created:%Y-%m-%dT%H:%M:%S}Z, {state}>"
        )


class SnapshotProvider(ABC):
    """Something that can freeze a source: ``snapshot(source)`` returns a held Snapshot (use it
    in a ``with``), or raises SnapshotUnsupported / SnapshotFailed having released everything."""

    name: str = "snapshot"

    @abstractmethod
    def snapshot(self, source: SourceRef) -> Snapshot:
        """Freeze ``source`` now and return the held snapshot."""

    def check(self, source: SourceRef) -> None:
        """Raise SnapshotUnsupported if this provider cannot snapshot ``source`` here, without
        taking a snapshot, so a backup can refuse before it takes a drive; by default it trusts
        snapshot() to tell."""
        return None


class FileSnapshot(Snapshot):
    """A snapshot that is a file next to the origin (reflink clone or full copy); release
    deletes it, and the default snapshot directory too once it is empty."""

    def __init__(
        self,
        *,
        origin: Path,
        path: Path,
        method: str,
        created: datetime,
        size: int,
        remove_dir: bool,
    ) -> None:
        super().__init__(source=str(origin), method=method, created=created, size=size, path=path)
        self.origin = origin
        self._remove_dir = remove_dir

    def modified_blocks(self, block_size: int) -> BlockRuns | None:
        """For a reflink clone, the origin's ranges that no longer share extents with the clone
        (FIEMAP, no data read); None for a full copy or a filesystem without FIEMAP."""
        self._check()
        if block_size <= 0:
            raise ValueError(f"block size must be positive, got {block_size}")
        if self.method != "reflink" or self.path is None:
            return None
        try:
            with open(self.origin, "rb") as o, open(self.path, "rb") as s:
                ours, theirs = fiemap(o.fileno()), fiemap(s.fileno())
                ours_size, theirs_size = os.fstat(o.fileno()).st_size, os.fstat(s.fileno()).st_size
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY):
                return None
            raise SnapshotFailed(
                f"cannot map extents of {self.origin} / {self.path}: {exc.strerror}"
            ) from exc
        return to_block_runs(changed_ranges(ours, ours_size, theirs, theirs_size), block_size)

    def _release(self) -> None:
        assert self.path is not None
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise SnapshotFailed(f"cannot delete snapshot {self.path}: {exc.strerror}") from exc
        if self._remove_dir:
            try:
                self.path.parent.rmdir()
            except OSError:
                pass  # another snapshot still lives there


class ReflinkProvider(SnapshotProvider):
    """Snapshot of an image file by reflink (FICLONE): instant, no data copied, on filesystems
    that share extents (XFS with reflink, btrfs, bcachefs). Elsewhere it raises
    SnapshotUnsupported, unless ``allow_copy=True``: then it makes a real, sparse-aware full
    copy (``method == "copy"``) and fails if the source is written while copying."""

    name = "reflink"

    def __init__(self, snapshot_dir: SourceRef | None = None, *, allow_copy: bool = False) -> None:
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self.allow_copy = allow_copy

    def snapshot(self, source: SourceRef) -> Snapshot:
        """Clone ``source`` into the snapshot directory (default: ``.tapeflow-snapshots`` next to
        it, which must be on the same filesystem for a reflink)."""
        src = Path(source)
        self._regular(src)
        created = datetime.now(UTC)
        fd, dst, remove_dir = self._create_target(src, created)
        try:
            method = self._clone(src, fd, dst)
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            dst.unlink(missing_ok=True)
            if remove_dir:
                try:
                    dst.parent.rmdir()
                except OSError:
                    pass
            raise
        os.close(fd)
        return FileSnapshot(
            origin=src, path=dst, method=method, created=created, size=size, remove_dir=remove_dir
        )

    def check(self, source: SourceRef) -> None:
        """Refuse what snapshot() would refuse: not a regular file, no reflink between the
        source's and the snapshot directory's filesystems (tried on two empty probe files)
        and, when a full copy is allowed instead, too little free space for it."""
        src = Path(source)
        self._regular(src)
        directory = self.snapshot_dir or src.parent / SNAPSHOT_DIR_NAME
        made = not directory.exists()
        try:
            directory.mkdir(mode=0o700, parents=self.snapshot_dir is not None, exist_ok=True)
        except OSError as exc:
            raise SnapshotFailed(f"cannot create snapshot directory {directory}: {exc}") from exc
        probe = directory / f".probe.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            failure = _probe_reflink(src, probe)
            if failure is None:
                return
            why, reason, fs_type = _no_reflink_reason(src, probe, failure)
            if not self.allow_copy:
                raise SnapshotUnsupported(why, path=str(src), filesystem=fs_type, reason=reason)
            _check_copy_space(src, directory)
        finally:
            if made and self.snapshot_dir is None:
                try:
                    directory.rmdir()
                except OSError:
                    pass  # a snapshot was taken there meanwhile

    @staticmethod
    def _regular(src: Path) -> None:
        """SnapshotFailed if ``src`` cannot be read, SnapshotUnsupported if it is no file."""
        try:
            st = os.stat(src)
        except OSError as exc:
            raise SnapshotFailed(f"cannot snapshot {src}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise SnapshotUnsupported(
                f"{src} is not a regular file: a reflink snapshot clones an image file; for a "
                f"block device use SplitMirrorProvider or a volume-manager snapshot",
                path=str(src),
                reason=f"{src} is not a regular file, so it cannot be cloned",
            )

    def _create_target(self, src: Path, created: datetime) -> tuple[int, Path, bool]:
        """Create the empty snapshot file (0600, exclusive) and say whether its directory is ours
        to remove; retries when a concurrent release removed the directory under us."""
        directory = self.snapshot_dir or src.parent / SNAPSHOT_DIR_NAME
        name = f"{src.name}.{created:%Y%m%dT%H%M%S%fZ}.{os.getpid()}.{secrets.token_hex(4)}.snap"
        dst = directory / name
        for attempt in range(5):
            try:
                directory.mkdir(mode=0o700, parents=self.snapshot_dir is not None, exist_ok=True)
                fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                if attempt < 4:
                    continue
                raise SnapshotFailed(f"snapshot directory {directory} keeps vanishing") from None
            except OSError as exc:
                raise SnapshotFailed(f"cannot create snapshot {dst}: {exc.strerror}") from exc
            return fd, dst, self.snapshot_dir is None
        raise AssertionError("unreachable")  # pragma: no cover

    def _clone(self, src: Path, fd: int, dst: Path) -> str:
        """Reflink src into the open fd; fall back to a full copy only when allowed."""
        with open(src, "rb") as sf:
            try:
                fcntl.ioctl(fd, FICLONE, sf.fileno())
                log.debug("reflinked %s -> %s", src, dst)
                return "reflink"
            except OSError as exc:
                failure = exc
        if failure.errno not in _NO_REFLINK:
            raise SnapshotFailed(
                f"reflink of {src} to {dst} failed: {failure.strerror}"
            ) from failure
        why, reason, fs_type = _no_reflink_reason(src, dst, failure)
        if not self.allow_copy:
            raise SnapshotUnsupported(
                why, path=str(src), filesystem=fs_type, reason=reason
            ) from failure
        _check_copy_space(src, dst.parent)
        log.warning("no reflink for %s (%s); making a full copy (allow_copy=True)", src, reason)
        _full_copy(src, fd)
        return "copy"


def _probe_reflink(src: Path, probe: Path) -> OSError | None:
    """None if ``src`` could be reflinked into ``probe``'s directory, else the OSError saying
    why: EXDEV across mounts (FICLONE refuses those), else what cloning an empty probe file onto
    another there answers. Both probe files are removed."""
    if filesystem_of(src)[1] != filesystem_of(probe.parent)[1]:
        return OSError(errno.EXDEV, os.strerror(errno.EXDEV))
    origin = probe.with_name(f"{probe.name}.src")
    fds: list[int] = []
    try:
        for path, flags in ((origin, os.O_RDWR), (probe, os.O_WRONLY)):
            try:
                fds.append(os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            except OSError as exc:
                raise SnapshotFailed(f"cannot create reflink probe {path}: {exc.strerror}") from exc
        try:
            fcntl.ioctl(fds[1], FICLONE, fds[0])
        except OSError as exc:
            if exc.errno not in _NO_REFLINK:
                raise SnapshotFailed(
                    f"reflink probe in {probe.parent} failed: {exc.strerror}"
                ) from exc
            return exc
    finally:
        for fd in fds:
            os.close(fd)
        origin.unlink(missing_ok=True)
        probe.unlink(missing_ok=True)
    return None


def _no_reflink_reason(src: Path, dst: Path, failure: OSError) -> tuple[str, str, str]:
    """(full message with advice, short reason, filesystem type) for a refused reflink of
    ``src`` into ``dst``'s directory."""
    fs_type, mount_point = filesystem_of(src)
    if failure.errno == errno.EXDEV:
        dst_type, dst_mount = filesystem_of(dst.parent)
        reason = (
            f"the snapshot directory {dst.parent} ({dst_type} at {dst_mount}) is not on the "
            f"filesystem of {src} ({fs_type} at {mount_point})"
        )
        why = (
            f"{reason}; reflinks only work within one filesystem: use a snapshot_dir on the same "
            f"filesystem"
        )
    else:
        reason = f"{fs_type} at {mount_point} has no reflink (FICLONE: {failure.strerror})"
        why = (
            f"{fs_type} at {mount_point} does not support reflinks (FICLONE: "
            f"{failure.strerror}), so {src} cannot be snapshotted by reflink: keep images on "
            f"XFS (mkfs.xfs -m reflink=1) or btrfs, or use SplitMirrorProvider / a "
            f"volume-manager snapshot (LVM, ZFS)"
        )
    why += (
        "; or pass allow_copy=True for a full copy (reads every byte, needs as much free space, "
        "and fails if the source is written meanwhile)"
    )
    return why, reason, fs_type


def _check_copy_space(src: Path, directory: Path) -> None:
    """SnapshotUnsupported when ``directory`` lacks the free space a full copy of ``src``'s
    allocated data needs: refuse up front rather than fill the filesystem mid-copy."""
    try:
        need = os.stat(src).st_blocks * 512
        vfs = os.statvfs(directory)
    except OSError as exc:
        raise SnapshotFailed(f"cannot size a full copy of {src}: {exc.strerror}") from exc
    free = vfs.f_bavail * vfs.f_frsize
    if need > free:
        fs_type, mount_point = filesystem_of(directory)
        reason = (
            f"a full copy of {src} needs {need} bytes but {fs_type} at {mount_point} has "
            f"{free} free"
        )
        raise SnapshotUnsupported(
            f"{reason}; free space, or keep images on a reflink filesystem (XFS, btrfs)",
            path=str(src),
            filesystem=fs_type,
            reason=reason,
        )


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _full_copy(src: Path, dst_fd: int) -> int:
    """Copy src's data into dst_fd with plain reads and writes (never copy_file_range, which may
    reflink or share), keeping holes; fail if src changed meanwhile. Returns bytes copied."""
    started = time.monotonic()
    with open(src, "rb") as f:
        before = _identity(os.fstat(f.fileno()))
        size = before[2]
        copied = _copy_data(f.fileno(), dst_fd, size)
        os.ftruncate(dst_fd, size)
        after = _identity(os.stat(src))
    if after != before:
        raise SnapshotFailed(
            f"{src} was written during the full copy (size/mtime/ctime changed), so the copy is "
            f"not a consistent snapshot; quiesce the writer or use a reflink filesystem"
        )
    log.info(
        "full copy of %s: %d data bytes of %d in %.2f s",
        src,
        copied,
        size,
        time.monotonic() - started,
    )
    return copied


def _copy_data(src_fd: int, dst_fd: int, size: int) -> int:
    """The data regions of src (SEEK_DATA/SEEK_HOLE; the whole file where unsupported) copied to
    the same offsets of dst. Returns the bytes copied."""
    copied, pos = 0, 0
    while pos < size:
        try:
            start = os.lseek(src_fd, pos, os.SEEK_DATA)
            end = min(os.lseek(src_fd, start, os.SEEK_HOLE), size)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole left
                break
            if exc.errno != errno.EINVAL:
                raise
            start, end = pos, size
        off = start
        while off < end:
            buf = os.pread(src_fd, min(COPY_CHUNK, end - off), off)
            if not buf:  # file shrank under us: the identity check will report it
                return copied
            view = memoryview(buf)
            while view:
                written = os.pwrite(dst_fd, view, off)
                view, off = view[written:], off + written
            copied += len(buf)
        pos = max(end, start + 1)
    return copied


class MirrorSnapshot(Snapshot):
    """The detached half of a split mirror; release rejoins it (the mirror resyncs)."""

    def __init__(
        self,
        *,
        source: str,
        created: datetime,
        size: int,
        path: Path | None,
        opener: Opener | None,
        provider: SplitMirrorProvider,
    ) -> None:
        super().__init__(
            source=source, method="split-mirror", created=created, size=size, path=path
        )
        self._opener = opener
        self._provider = provider

    def _open(self) -> BinaryIO:
        if self._opener is not None:
            return self._opener()
        return super()._open()

    def modified_blocks(self, block_size: int) -> BlockRuns | None:
        """What the provider's change tracker (e.g. the mirror's dirty-region log) says, or None."""
        self._check()
        if block_size <= 0:
            raise ValueError(f"block size must be positive, got {block_size}")
        tracker = self._provider.changed_blocks
        return None if tracker is None else list(tracker(block_size))

    def _release(self) -> None:
        self._provider._rejoin_for(self)


class SplitMirrorProvider(SnapshotProvider):
    """A mirror whose second half is split off to be the snapshot and rejoined afterwards.
    ``split()`` returns the detached half as a path or as an opener of a binary reader;
    ``rejoin()`` reattaches it. split is called by snapshot(), rejoin by release() -- and also
    when split itself failed, to undo a partial split, so rejoin must tolerate an intact mirror.
    One snapshot at a time per provider (per mirror)."""

    name = "split-mirror"

    def __init__(
        self,
        split: Callable[[], Detached],
        rejoin: Callable[[], None],
        *,
        changed_blocks: Callable[[int], BlockRuns] | None = None,
    ) -> None:
        self._split = split
        self._rejoin = rejoin
        self.changed_blocks = changed_blocks
        self._lock = threading.Lock()
        self._held: MirrorSnapshot | None = None

    def snapshot(self, source: SourceRef) -> Snapshot:
        """Split the mirror of ``source`` (a label here: split() knows the mirror)."""
        label = str(source)
        with self._lock:
            if self._held is not None:
                raise SnapshotFailed(f"the mirror of {label} is already split for {self._held!r}")
            created = datetime.now(UTC)
            try:
                detached = self._split()
                path, opener = _detached(detached)
                size = _measure(path, opener)
            except BaseException as exc:
                self._undo_split(label, exc)
                if isinstance(exc, Exception):
                    raise SnapshotFailed(f"split of the mirror of {label} failed: {exc}") from exc
                raise
            snap = MirrorSnapshot(
                source=label, created=created, size=size, path=path, opener=opener, provider=self
            )
            self._held = snap
            return snap

    def _undo_split(self, label: str, cause: BaseException) -> None:
        try:
            self._rejoin()
        except Exception as exc:
            log.error("rejoin after the failed split of %s also failed: %s", label, exc)
            cause.add_note(f"rejoin after the failed split also failed: {exc!r}")

    def _rejoin_for(self, snap: MirrorSnapshot) -> None:
        try:
            self._rejoin()
        except Exception as exc:
            raise SnapshotFailed(f"rejoin of the mirror of {snap.source} failed: {exc}") from exc
        with self._lock:
            if self._held is snap:
                self._held = None


def _detached(value: object) -> tuple[Path | None, Opener | None]:
    if isinstance(value, str | os.PathLike):
        return Path(value), None
    if callable(value):
        return None, cast(Opener, value)
    raise TypeError(f"split() must return a path or an opener, not {type(value).__name__}")


def _measure(path: Path | None, opener: Opener | None) -> int:
    """Size of the detached half by seeking to its end (works for block devices too)."""
    if path is not None:
        f: BinaryIO = open(path, "rb")
    elif opener is not None:
        f = opener()
    else:  # pragma: no cover - _detached always returns one of the two
        raise TypeError("neither a path nor an opener")
    with f:
        return f.seek(0, os.SEEK_END)


@contextmanager
def freeze(
    source_probe: Probe,
    provider: SnapshotProvider,
    source: SourceRef,
    *,
    quiet: float = DEFAULT_QUIET,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float | None = None,
    on_progress: Callable[[QuiesceProgress], None] | None = None,
) -> Iterator[Snapshot]:
    """Wait for ``source`` to be quiet (per ``source_probe``), snapshot it with ``provider`` and
    yield the snapshot; it is released on every path. FreezeTimeout means nothing was taken."""
    label = str(source)
    log.info("quiescing %s: waiting for %g s without writes (timeout %g s)", label, quiet, timeout)
    result = wait_for_quiet(
        source_probe, quiet=quiet, timeout=timeout, poll=poll, on_progress=on_progress, label=label
    )
    log.info(
        "%s quiet after %.2f s (%d polls, %d writes seen)",
        label,
        result.waited,
        result.polls,
        result.writes_seen,
    )
    started = time.monotonic()
    snap = provider.snapshot(source)
    taken = time.monotonic()
    try:
        snap.quiesce = result
        log.info(
            "snapshot of %s taken by %s (%s, %d bytes) in %.2f s",
            label,
            provider.name,
            snap.method,
            snap.size,
            taken - started,
        )
        yield snap
    finally:
        try:
            snap.release()
        except SnapshotError:
            log.error("releasing the snapshot of %s failed", label)
            raise
        log.info("snapshot of %s released after %.2f s", label, time.monotonic() - taken)
