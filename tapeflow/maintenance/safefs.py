"""Directory handles below a root opened one component at a time without following links, so
deleting or writing below the root can never be redirected outside it by a symlink (even one
swapped in after the tree was listed)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import TracebackType

from tapeflow.maintenance.errors import MaintenanceError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_OPEN = 64


class UnsafePath(MaintenanceError):
    """A path component below the root is a symlink or not a directory: refused."""


def split(rel: str) -> tuple[str, str]:
    """('a/b', 'c') for 'a/b/c'; ('', 'c') for 'c'."""
    head, _, leaf = rel.rpartition("/")
    return head, leaf


def inside(child: Path, parent: Path) -> bool:
    """Whether resolved `child` is `parent` or below it."""
    return child == parent or parent in child.parents


class DirFds:
    """Open directory descriptors below `root`, by relative '/'-separated path.

    A descriptor returned is valid until the next call (the cache may be flushed); the root's
    stays open until close().
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Open the root itself (it must be a real directory, not a symlink)."""
        self.root = Path(root)
        try:
            self.root_fd = os.open(self.root, DIR_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{self.root} is not a directory (or is a symlink)") from exc
            raise
        self._fds: dict[str, int] = {}

    def open(self, rel_dir: str, *, create: bool = False, mode: int = 0o700) -> int:
        """Descriptor of directory `rel_dir` ('' is the root); creates missing components
        when asked; UnsafePath when a component is a symlink or a file."""
        if not rel_dir:
            return self.root_fd
        found = self._fds.get(rel_dir)
        if found is not None:
            return found
        head, leaf = split(rel_dir)
        parent = self.open(head, create=create, mode=mode)
        try:
            fd = os.open(leaf, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(leaf, mode, dir_fd=parent)
            fd = os.open(leaf, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(
                    f"{rel_dir}: a symlink or file is where a directory should be: refused"
                ) from exc
            raise
        if len(self._fds) >= _MAX_OPEN:
            self._flush()  # the parent's handle was used above; it may go
        self._fds[rel_dir] = fd
        return fd

    def parent(self, rel: str, *, create: bool = False) -> tuple[int, str]:
        """(descriptor of the parent directory, leaf name) of a relative path."""
        head, leaf = split(rel)
        if not leaf or leaf in (".", ".."):
            raise UnsafePath(f"{rel!r} is not a usable relative path")
        return self.open(head, create=create), leaf

    def forget(self, rel_dir: str) -> None:
        """Close the handles of `rel_dir` and below (it was removed or replaced)."""
        for key in [k for k in self._fds if k == rel_dir or k.startswith(rel_dir + "/")]:
            os.close(self._fds.pop(key))

    def _flush(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def close(self) -> None:
        """Close every handle, the root's last."""
        try:
            self._flush()
        finally:
            os.close(self.root_fd)

    def __enter__(self) -> DirFds:
        """Use as a context manager."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close every handle."""
        self.close()
