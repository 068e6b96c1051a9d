"""Copy a directory tree into another, keeping modes and modification times: unchanged files
(same size and mtime) are skipped, symlinks are copied as links (never followed), special files
are reported and skipped. `mirror` deletes what the target holds that the source does not;
`delete_source` gives move semantics: each source entry is removed only after its copy was
verified (size + mtime, or content hash). Every write goes through directory handles opened
without following links, so nothing is ever written outside the target.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import itertools
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tapeflow.backup.model import Source
from tapeflow.backup.sources import walk
from tapeflow.maintenance.count import SourceLike, as_source
from tapeflow.maintenance.errors import BadInput, BadTarget
from tapeflow.maintenance.progress import ProgressHook, Reporter
from tapeflow.maintenance.safefs import DirFds, UnsafePath, inside, split

Verify = Literal["size-mtime", "hash"]
VERIFY_MODES = ("size-mtime", "hash")
CHUNK = 1 << 20
DEFAULT_LISTED = 1000
_TMP = ".tapeflow-copy"  # temporary names: short, whatever the length of the final name
_serial = itertools.count()


class CopyFailed(Exception):
    """One entry could not be copied or verified (kept in the source; reported)."""


@dataclass
class CopyResult:
    """What a copy did; `errors` are entries that were not copied or not verified (their
    source is never deleted)."""

    source: str
    target: str
    mirror: bool
    delete_source: bool
    verify: str
    copied: int = 0  # files written
    unchanged: int = 0  # files already identical in the target
    bytes: int = 0  # bytes written
    dirs: int = 0
    symlinks: int = 0
    special: list[str] = field(default_factory=list)  # fifos, sockets, devices: skipped
    deleted_in_target: int = 0  # mirror: entries removed from the target
    deleted_paths: list[str] = field(default_factory=list)  # first of them
    source_deleted: int = 0  # delete_source: entries removed from the source
    source_dirs_removed: int = 0
    errors: list[str] = field(default_factory=list)  # "path: reason"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def check_dirs(source: Path, target: Path) -> tuple[Path, Path]:
    """Resolved (source, target); BadTarget when they are the same or one holds the other, or
    the target exists and is not a directory."""
    src, tgt = source.resolve(), target.resolve()
    if src == tgt:
        raise BadTarget(f"source and target are the same directory: {src}")
    if inside(tgt, src):
        raise BadTarget(f"target {tgt} is inside the source {src}")
    if inside(src, tgt):
        raise BadTarget(f"source {src} is inside the target {tgt}")
    if tgt.exists() and not tgt.is_dir():
        raise BadTarget(f"target {tgt} exists and is not a directory")
    return src, tgt


def copy_tree(
    source: SourceLike,
    target: str | os.PathLike[str],
    *,
    mirror: bool = False,
    delete_source: bool = False,
    verify: Verify = "size-mtime",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    on_progress: ProgressHook | None = None,
    max_listed: int = DEFAULT_LISTED,
) -> CopyResult:
    """Copy the selected entries of `source` into `target` (created if missing); see the
    module doc for mirror, delete_source and verify."""
    if verify not in VERIFY_MODES:
        raise BadInput(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
    if not os.fspath(target):
        raise BadInput("no target directory given")
    src = as_source(source, include, exclude)
    src_root, tgt_root = check_dirs(Path(src.path), Path(target))
    src = Source(src.name, str(src_root), include=src.include, exclude=src.exclude)
    tgt_root.mkdir(parents=True, exist_ok=True)
    result = CopyResult(str(src_root), str(tgt_root), mirror, delete_source, verify)
    job = _Copier(src, src_root, tgt_root, result, Reporter(on_progress, "copy"), max_listed)
    with DirFds(tgt_root) as tfds, DirFds(src_root) as sfds:
        job.tfds, job.sfds = tfds, sfds
        job.run()
        if mirror:
            job.mirror()
        job.fix_dirs()
        if delete_source:
            job.remove_source_dirs()
    job.report("done", force=True, items=result.copied + result.unchanged, bytes=result.bytes)
    return result


class _Copier:
    """State of one copy: the walked source, directory handles, and the result being filled."""

    def __init__(
        self,
        src: Source,
        src_root: Path,
        tgt_root: Path,
        result: CopyResult,
        report: Reporter,
        max_listed: int,
    ) -> None:
        self.src, self.src_root, self.tgt_root = src, src_root, tgt_root
        self.result, self.report, self.max_listed = result, report, max_listed
        self.tfds: DirFds
        self.sfds: DirFds
        self.seen: set[str] = set()  # relative paths present in the (selected) source
        self.dirs: list[tuple[str, os.stat_result]] = []
        self.failed_dirs: set[str] = set()

    def run(self) -> None:
        """Copy every selected entry, parents first."""
        for _abs, rel, st in walk(self.src):
            self.seen.add(rel)
            head = split(rel)[0]
            if head in self.failed_dirs:
                self.failed_dirs.add(rel)
                self.result.errors.append(f"{rel}: its directory could not be created")
                continue
            try:
                if stat.S_ISDIR(st.st_mode):
                    self._dir(rel)
                    self.dirs.append((rel, st))
                elif stat.S_ISREG(st.st_mode):
                    self._file(rel, st)
                elif stat.S_ISLNK(st.st_mode):
                    self._link(rel, st)
                else:
                    self.result.special.append(rel)
            except (CopyFailed, UnsafePath, OSError) as exc:
                if stat.S_ISDIR(st.st_mode):
                    self.failed_dirs.add(rel)
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                self.result.errors.append(f"{rel}: {reason}")
            r = self.result
            self.report("copy", items=r.copied + r.unchanged, bytes=r.bytes, path=rel)

    # --- one entry --------------------------------------------------------------------------
    def _clear(self, parent: int, leaf: str, rel: str, *, keep_dir: bool) -> os.stat_result | None:
        """lstat of the target entry; a wrong-typed one is removed first (a non-empty directory
        only when mirroring). Returns the stat of what is left, or None."""
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        is_dir = stat.S_ISDIR(st.st_mode)
        if is_dir == keep_dir:
            return st
        if is_dir:
            self.tfds.forget(rel)
            if not self.result.mirror:
                try:
                    os.rmdir(leaf, dir_fd=parent)
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise CopyFailed(
                            "the target has a non-empty directory here (use mirror to replace it)"
                        ) from exc
                    raise
            else:
                shutil.rmtree(leaf, dir_fd=parent)
        else:
            os.unlink(leaf, dir_fd=parent)
        return None

    def _dir(self, rel: str) -> None:
        parent, leaf = self.tfds.parent(rel)
        if self._clear(parent, leaf, rel, keep_dir=True) is None:
            os.mkdir(leaf, 0o700, dir_fd=parent)
            self.result.dirs += 1

    def _file(self, rel: str, st: os.stat_result) -> None:
        parent, leaf = self.tfds.parent(rel)
        old = self._clear(parent, leaf, rel, keep_dir=False)
        same = (
            old is not None
            and stat.S_ISREG(old.st_mode)
            and old.st_size == st.st_size
            and old.st_mtime_ns == st.st_mtime_ns
        )
        if same:
            if stat.S_IMODE(old.st_mode) != stat.S_IMODE(st.st_mode):
                fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                try:
                    os.chmod(fd, stat.S_IMODE(st.st_mode))
                finally:
                    os.close(fd)
            digest = self._hash_source(rel) if self.result.verify == "hash" else None
            self.result.unchanged += 1
        else:
            digest = self._write(rel, st, parent, leaf)
            self.result.copied += 1
            self.result.bytes += st.st_size
        parent, leaf = self.tfds.parent(rel)
        self._verify(rel, st, parent, leaf, digest)
        if self.result.delete_source:
            self._unlink_source(rel, st)

    def _write(self, rel: str, st: os.stat_result, parent: int, leaf: str) -> str | None:
        """Copy content to a temporary name beside the target, set mode and times, rename it in
        place; returns the content's sha256 when verifying by hash."""
        hasher = hashlib.sha256() if self.result.verify == "hash" else None
        tmp = _tmp_name()
        sparent, sleaf = self.sfds.parent(rel)
        fin = os.open(sleaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sparent)
        try:
            fout = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,
                dir_fd=parent,
            )
            try:
                while chunk := os.read(fin, CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fout, view) :]
                    if hasher is not None:
                        hasher.update(chunk)
                os.fchmod(fout, stat.S_IMODE(st.st_mode))
                if self.result.delete_source:
                    os.fsync(fout)  # the source goes: the copy must be on disk first
                os.utime(fout, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fout)
            after = os.fstat(fin)
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                os.unlink(tmp, dir_fd=parent)
                raise CopyFailed("the source changed while it was copied; not copied")
            os.rename(tmp, leaf, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=parent)
            except FileNotFoundError:
                pass
            raise
        finally:
            os.close(fin)
        return f"sha256:{hasher.hexdigest()}" if hasher is not None else None

    def _hash_source(self, rel: str) -> str:
        parent, leaf = self.sfds.parent(rel)
        return _hash_at(parent, leaf)

    def _verify(
        self, rel: str, st: os.stat_result, parent: int, leaf: str, digest: str | None
    ) -> None:
        """The target entry must match the source's size and mtime (and content hash)."""
        got = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISREG(got.st_mode) or (got.st_size, got.st_mtime_ns) != (
            st.st_size,
            st.st_mtime_ns,
        ):
            raise CopyFailed("the copy does not match the source's size and mtime")
        if digest is not None and _hash_at(parent, leaf) != digest:
            raise CopyFailed("the copy's content hash differs from the source's")

    def _link(self, rel: str, st: os.stat_result) -> None:
        sparent, sleaf = self.sfds.parent(rel)
        value = os.readlink(sleaf, dir_fd=sparent)
        parent, leaf = self.tfds.parent(rel)
        old = self._clear(parent, leaf, rel, keep_dir=False)
        current = os.readlink(leaf, dir_fd=parent) if old and stat.S_ISLNK(old.st_mode) else None
        if current != value:
            tmp = _tmp_name()
            os.symlink(value, tmp, dir_fd=parent)
            os.rename(tmp, leaf, src_dir_fd=parent, dst_dir_fd=parent)
            self.result.symlinks += 1
        os.utime(leaf, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=parent, follow_symlinks=False)
        if os.readlink(leaf, dir_fd=parent) != value:
            raise CopyFailed("the copied link's target differs from the source's")
        if self.result.delete_source:
            self._unlink_source(rel, st)

    def _unlink_source(self, rel: str, listed: os.stat_result) -> None:
        """Remove a verified entry from the source, if it is still the one that was copied."""
        parent, leaf = self.sfds.parent(rel)
        now = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (
            listed.st_ino,
            listed.st_size,
            listed.st_mtime_ns,
        ):
            raise CopyFailed("the source changed after it was copied; kept in the source")
        os.unlink(leaf, dir_fd=parent)
        self.result.source_deleted += 1

    # --- after the walk ---------------------------------------------------------------------
    def _protected(self, rel: str, is_dir: bool) -> bool:
        """Whether a target entry lies outside the copy's selection (mirror leaves it alone)."""
        if any(fnmatch.fnmatchcase(rel, g) for g in self.src.exclude):
            return True
        if is_dir:
            return False
        return bool(self.src.include) and not any(
            fnmatch.fnmatchcase(rel, g) for g in self.src.include
        )

    def mirror(self) -> None:
        """Delete target entries the source does not have (their subtrees with them)."""
        for top, dirnames, filenames, dirfd in os.fwalk(self.tgt_root, follow_symlinks=False):
            rel_top = os.path.relpath(top, self.tgt_root)
            rel_top = "" if rel_top == "." else rel_top.replace(os.sep, "/")
            for name in list(dirnames):
                rel = f"{rel_top}/{name}" if rel_top else name
                if rel not in self.seen and not self._protected(rel, True):
                    dirnames.remove(name)  # not descended: removed whole
                    self._delete_target(rel, name, dirfd)
            for name in filenames:
                rel = f"{rel_top}/{name}" if rel_top else name
                if rel not in self.seen and not self._protected(rel, False):
                    self._delete_target(rel, name, dirfd)

    def _delete_target(self, rel: str, name: str, dirfd: int) -> None:
        """Remove one target entry (a directory with its subtree; a link as a link)."""
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                self.tfds.forget(rel)
                shutil.rmtree(name, dir_fd=dirfd)
            else:
                os.unlink(name, dir_fd=dirfd)
        except OSError as exc:
            self.result.errors.append(f"{rel}: not removed from the target: {exc.strerror}")
            return
        self.result.deleted_in_target += 1
        if len(self.result.deleted_paths) < self.max_listed:
            self.result.deleted_paths.append(rel)

    def fix_dirs(self) -> None:
        """Give target directories the source's modes and mtimes, deepest first (writing into
        a directory changes its mtime), the root last."""
        for rel, st in sorted(self.dirs, key=lambda d: d[0].count("/"), reverse=True):
            if rel in self.failed_dirs:
                continue
            try:
                fd = self.tfds.open(rel)
                os.chmod(fd, stat.S_IMODE(st.st_mode))
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            except (UnsafePath, OSError) as exc:
                self.result.errors.append(f"{rel}/: mode/mtime not set: {exc}")
        root = os.stat(self.src_root)
        os.chmod(self.tfds.root_fd, stat.S_IMODE(root.st_mode))
        os.utime(self.tfds.root_fd, ns=(root.st_atime_ns, root.st_mtime_ns))

    def remove_source_dirs(self) -> None:
        """Move semantics: remove source directories left empty, deepest first (never the
        root; a directory still holding something stays)."""
        for rel, _st in sorted(self.dirs, key=lambda d: d[0].count("/"), reverse=True):
            try:
                self.sfds.forget(rel)
                parent, leaf = self.sfds.parent(rel)
                os.rmdir(leaf, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    continue  # something was not moved (excluded, failed or special)
                self.result.errors.append(f"{rel}/: not removed from the source: {exc.strerror}")
                continue
            self.result.source_dirs_removed += 1


def _tmp_name() -> str:
    """A fresh temporary name for writing beside a target entry before renaming it in."""
    return f"{_TMP}.{os.getpid()}.{next(_serial)}"


def _hash_at(parent: int, leaf: str) -> str:
    """sha256 of a file opened relative to a directory handle, links not followed."""
    hasher = hashlib.sha256()
    fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        while chunk := os.read(fd, CHUNK):
            hasher.update(chunk)
    finally:
        os.close(fd)
    return f"sha256:{hasher.hexdigest()}"
