"""Session writer: a tree of files -> one pax stream in fixed records on tape, plus one
catalog row per member (FILE_SCHEMA) with the tape position of its header.
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import os
import pwd
import select
import stat
import subprocess
import sys
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from types import TracebackType
from typing import Any

import blake3
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.catalog.schema import FILE_SCHEMA
from tapeflow.tapefmt import fastpack
from tapeflow.tapefmt import sparse as sparse_mod
from tapeflow.tapefmt.pax import (
    BLKTYPE,
    BLOCK,
    CHRTYPE,
    DIRTYPE,
    FIFOTYPE,
    LNKTYPE,
    REGTYPE,
    SYMTYPE,
    USTAR_MAX_ID,
    USTAR_MAX_SIZE,
    USTAR_MAX_TIME,
    build_header,
    format_pax_time,
    pax_member,
    pax_record,
)
from tapeflow.tapefmt.records import (
    DEFAULT_RECORD,
    Drive,
    RecordWriter,
    Segment,
    locate_offset,
)
from tapeflow.tapefmt.session import SessionInfo

_BY_NAME = attrgetter("name")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOATIME", 0)
_NS = 1_000_000_000


@dataclass
class SessionResult:
    """What a finished session wrote: parts per cartridge, counts, rows, warnings."""

    info: SessionInfo
    segments: list[Segment]
    members: int
    stream_bytes: int
    records: int
    batches: list[pa.RecordBatch] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def table(self) -> pa.Table:
        """All rows as one Arrow table (FILE_SCHEMA)."""
        return pa.Table.from_batches(self.batches, schema=FILE_SCHEMA)


def _encode_name(name: str) -> tuple[bytes, bool]:
    """(bytes, needs_binary_charset) for a member name."""
    try:
        return name.encode("utf-8"), False
    except UnicodeEncodeError:
        return os.fsencode(name), True


# Files at least this large are hashed with BLAKE3 (about 4x SHA-256's speed on one core, so
# a large file streams to the drive at disk speed); smaller ones keep SHA-256, which the
# stdlib-only fastpack helper computes. The catalog names the algorithm in each checksum.
BLAKE3_FROM = 1 << 20


def checksum_algorithm(size: int) -> str:
    """The algorithm the writer uses for a file of `size` bytes."""
    return "blake3" if size >= BLAKE3_FROM else "sha256"


def content_hasher(size: int) -> Any:
    """A fresh hasher for a file of `size` bytes: BLAKE3 for large files, else SHA-256."""
    if checksum_algorithm(size) == "blake3":
        return blake3.blake3()
    return hashlib.sha256()


class _Helper:
    """The fastpack helper process: packs every other run of small files on the second core."""

    def __init__(self, sparse: bool, pax_size_from: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", fastpack.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            env={**os.environ, **HELPER_MALLOC},
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        for fd in (self.wfd, self.rfd):  # whole runs per write: fewer context switches
            try:
                fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
            except OSError:
                pass
        self.inflight = 0
        self._receiver = fastpack.Receiver(self.rfd)
        fastpack.send(self.wfd, (sparse, pax_size_from))

    def submit(self, entries: list[fastpack.Entry]) -> None:
        fastpack.send(self.wfd, entries)
        self.inflight += 1

    def ready(self) -> bool:
        """True when a result can be read without waiting for the helper to finish a run."""
        return bool(select.select([self.rfd], [], [], 0)[0])

    def result(self) -> list[fastpack.Piece]:
        """The oldest run's pieces; their bytes are valid until the next call."""
        self.inflight -= 1
        return self._receiver.recv_pieces()  # type: ignore[return-value]

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.stdout.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# A catalog row as the writer keeps it: FILE_SCHEMA's own columns, times in ns, and where the
# member's bytes start and end in the stream.
_ROW = pa.struct(
    [
        ("path", pa.string()),
        ("type", pa.string()),
        ("size", pa.int64()),
        ("mtime", pa.int64()),
        ("ctime", pa.int64()),
        ("inode", pa.uint64()),
        ("mode", pa.int32()),
        ("uid", pa.int32()),
        ("gid", pa.int32()),
        ("link_target", pa.string()),
        ("checksum", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
    ]
)


def _micros(ns: pa.Array) -> pa.Array:
    """Nanoseconds since the epoch as a UTC microsecond timestamp, rounded down."""
    stamp = ns.cast(pa.timestamp("ns", tz="UTC"))
    return pc.floor_temporal(stamp, unit="microsecond").cast(pa.timestamp("us", tz="UTC"))


def _printable(path: str) -> str:
    """A name that is not valid UTF-8 (surrogate-escaped bytes) as UTF-8 with U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


HELPER_RUNS = 3  # runs in flight in the helper
# The helper's runs are ~0.5 MB blobs, freed as soon as they are sent: glibc would map and unmap
# each one (hundreds of thousands of page faults per 50,000 files); keep them on the heap.
HELPER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}
# Packed bytes held back behind a run the helper has not returned yet before waiting for it
# (when the helper's core is busy, this side packs more runs meanwhile instead of waiting).
MAX_HELD = 64 << 20


class SessionWriter:
    """Writes one session (one tape file) as a pax stream; use as a context manager.

    The drive is positioned at end-of-data first (append=True), so the session follows the
    label and earlier sessions. `next_cartridge()` returns a drive holding the next labeled
    cartridge when this one fills up (the caller loads/unloads; we stop using the old drive).

    Small regular files take a fast path (`fastpack`): runs of them become finished stream
    bytes and rows in one tight loop, alternately here and in a helper process (pipeline=True
    and enough files), and are written in tree order; everything else takes the general path.
    """

    def __init__(
        self,
        drive: Drive,
        info: SessionInfo,
        *,
        barcode: str | None = None,
        next_cartridge: Callable[[], Drive] | None = None,
        append: bool = True,
        on_batch: Callable[[pa.RecordBatch], None] | None = None,
        batch_rows: int = 16384,
        pax_size_from: int = USTAR_MAX_SIZE + 1,
        sparse: bool = True,
        pipeline: bool = True,
    ) -> None:
        self.info = info
        self.record_size = info.record_size or DEFAULT_RECORD
        self._rw = RecordWriter(
            drive,
            record_size=self.record_size,
            barcode=barcode,
            next_cartridge=next_cartridge,
            continuation=info.continuation_record,
            append=append,
            pipeline=pipeline,
        )
        self._on_batch = on_batch
        self._batch_rows = batch_rows
        self._pax_size_from = pax_size_from
        self._sparse = sparse
        self._rows: list[tuple] = []  # stream offsets (items 11, 12) relative to _bases[i]
        self._bases: list[int] = []
        self._batches: list[pa.RecordBatch] = []
        self._links: dict[tuple[int, int], str] = {}
        self._unames: dict[int, bytes] = {}
        self._gnames: dict[int, bytes] = {}
        self.warnings: list[str] = []
        self.members = 0
        self._closed = False
        self._packer = fastpack.Packer(sparse, pax_size_from)
        self._use_helper = pipeline
        self._helper: _Helper | None = None
        # in stream order: ["w", warning] | ["r", entries, pieces (None until packed), held]
        self._pending: deque[list] = deque()
        self._held = 0  # bytes of packed runs in _pending
        self._rw.write(info.global_header())

    # --- public ------------------------------------------------------------------------------
    def add_tree(self, root: str | os.PathLike[str], prefix: str = "") -> None:
        """Add everything under `root` (not following symlinks); names are relative to root.

        With a `prefix`, the root itself is stored under that name and the rest below it.
        """
        root_s = os.fspath(root)
        if prefix:
            self.add_path(root_s, prefix)
            if not os.path.isdir(root_s) or os.path.islink(root_s):
                return
        self._walk(root_s, prefix.rstrip("/"))

    def _walk(self, directory: str, name: str) -> None:
        """Depth-first, sorted: a directory's contents right after it (what tar expects).

        Entries are collected into runs for the fast path; those that are not regular files
        by their directory entry's type are marked for the general path right away.
        """
        stack: list[Iterator[os.DirEntry[str]]] = []
        names: list[str] = []
        try:
            with os.scandir(directory) as it:
                stack.append(iter(sorted(it, key=_BY_NAME)))
                names.append(name)
        except OSError as exc:
            self.warnings.append(f"{directory}: cannot list: {exc.strerror}")
            return
        pending = self._pending
        run: list[fastpack.Entry] = []
        chunk = fastpack.CHUNK
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                names.pop()
                continue
            member = f"{names[-1]}/{entry.name}" if names[-1] else entry.name
            if entry.is_file(follow_symlinks=False):
                run.append((entry.path, member, True))
            else:
                run.append((entry.path, member, False))  # the general path, in order
                if entry.is_dir(follow_symlinks=False):
                    try:
                        with os.scandir(entry.path) as it:
                            stack.append(iter(sorted(it, key=_BY_NAME)))
                            names.append(member)
                    except OSError as exc:
                        self._queue_run(run)
                        run = []
                        pending.append(["w", f"{entry.path}: cannot list: {exc.strerror}"])
            if len(run) >= chunk:
                self._queue_run(run)
                run = []
        if run:
            self._queue_run(run)
        self._drain(wait=True)

    # --- fast path scheduling ----------------------------------------------------------------
    def _queue_run(self, run: list[fastpack.Entry]) -> None:
        """Queue a run of regular files: to the helper when it has room, else pack it here."""
        helper = self._helper
        if helper is None and self._use_helper and len(run) >= fastpack.CHUNK:
            try:
                helper = self._helper = _Helper(self._sparse, self._pax_size_from)
            except OSError:
                self._use_helper = False
        if helper is not None and helper.inflight >= HELPER_RUNS:
            self._drain(wait=False)  # take finished runs off the helper before packing here
        if helper is not None and helper.inflight < HELPER_RUNS:
            try:
                helper.submit(run)
            except OSError:
                self._helper_failed()
            else:
                self._pending.append(["r", run, None, 0])
                self._drain(wait=False)
                return
        self._pending.append(self._packed(run))
        self._drain(wait=self._held > MAX_HELD)

    def _packed(self, run: list[fastpack.Entry]) -> list:
        """A queue item for a run packed here."""
        pieces = self._packer.pack(run)
        held = sum(len(p[0]) for p in pieces if not isinstance(p, int))
        self._held += held
        return ["r", run, pieces, held]

    def _helper_failed(self) -> None:
        """The helper is gone: pack what it had here (nothing was written for it yet)."""
        helper, self._helper = self._helper, None
        self._use_helper = False
        if helper is not None:
            try:
                helper.close()
            except OSError:
                pass
        for item in self._pending:
            if item[0] == "r" and item[2] is None:
                item[2:] = self._packed(item[1])[2:]

    def _drain(self, wait: bool) -> None:
        """Write queued items in order, as far as they are ready (all of them with `wait`)."""
        pending = self._pending
        while pending:
            item = pending[0]
            kind = item[0]
            if kind == "r":
                if item[2] is None:
                    helper = self._helper
                    assert helper is not None
                    if not wait and not helper.ready():
                        return
                    try:
                        item[2] = helper.result()
                    except (OSError, EOFError):
                        self._helper_failed()
                pending.popleft()
                self._held -= item[3]
                self._write_pieces(item[1], item[2])
            else:
                pending.popleft()
                self.warnings.append(item[1])

    def _write_pieces(self, entries: list[fastpack.Entry], pieces: list[fastpack.Piece]) -> None:
        """Put packed bytes on the stream and their rows in the queue; the rest the long way."""
        rw = self._rw
        for piece in pieces:
            if isinstance(piece, int):
                path, name, _ = entries[piece]
                self.add_paths(((path, name),))
                continue
            blob, rows = piece
            base = rw.tell()
            rw.write(blob)
            self._rows.extend(rows)
            self._bases.extend([base] * len(rows))
            self.members += len(rows)
            if len(self._rows) >= self._batch_rows:
                self._emit(final=False)

    def _stop_helper(self) -> None:
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()

    def add_path(self, path: str | os.PathLike[str], name: str) -> None:
        """Add one filesystem object (no recursion) as member `name`."""
        path_s = os.fspath(path)
        self._add(path_s, name, os.lstat(path_s))

    def add_paths(self, items: Iterable[tuple[str, str]]) -> None:
        """Add (path, member name) pairs, e.g. an incremental's changed files."""
        for path, name in items:
            try:
                st = os.lstat(path)
            except OSError as exc:
                self.warnings.append(f"{path}: cannot stat: {exc.strerror}")
                continue
            self._add(path, name, st)

    def close(self) -> SessionResult:
        """End the archive (two zero blocks), pad the last record, write the filemark."""
        self._stop_helper()
        if not self._closed:
            self._rw.write_zeros(2 * BLOCK)
            self._rw.finish()
            self._closed = True
            self._emit(final=True)
        return SessionResult(
            info=self.info,
            segments=list(self._rw.segments),
            members=self.members,
            stream_bytes=self._rw.tell(),
            records=self._rw.records,
            batches=self._batches,
            warnings=self.warnings + self._rw.warnings,
        )

    def abort(self) -> None:
        """Stop without an end-of-archive: what is on tape stays, readable up to here."""
        self._pending.clear()
        self._held = 0
        self._stop_helper()
        if not self._closed:
            self._closed = True
            self._rw.abort()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    # --- members -----------------------------------------------------------------------------
    def _add(self, path: str, name: str, st: os.stat_result) -> None:
        """Dispatch on file type."""
        mode = st.st_mode
        fmt = stat.S_IFMT(mode)
        if fmt == stat.S_IFREG:
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self._links.get(key)
                if first is not None:
                    self._header(name, st, LNKTYPE, 0, first, "hardlink")
                    return
                self._links[key] = name
            self._add_file(path, name, st)
        elif fmt == stat.S_IFDIR:
            self._header(name + "/", st, DIRTYPE, 0, "", "dir", row_name=name)
        elif fmt == stat.S_IFLNK:
            try:
                target = os.readlink(path)
            except OSError as exc:
                self.warnings.append(f"{path}: cannot read link: {exc.strerror}")
                return
            self._header(name, st, SYMTYPE, 0, target, "symlink")
        elif fmt in (stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK):
            flag = {stat.S_IFIFO: FIFOTYPE, stat.S_IFCHR: CHRTYPE, stat.S_IFBLK: BLKTYPE}[fmt]
            self._header(name, st, flag, 0, "", "other")
        else:
            self.warnings.append(f"{path}: sockets and unknown types are not stored")

    def _add_file(self, path: str, name: str, st: os.stat_result) -> None:
        """A regular file: header, then content read straight into the record buffer."""
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except PermissionError:
            try:
                fd = os.open(path, _OPEN_FLAGS & ~getattr(os, "O_NOATIME", 0))
            except OSError as exc:
                self.warnings.append(f"{path}: cannot open: {exc.strerror}")
                return
        except OSError as exc:
            self.warnings.append(f"{path}: cannot open: {exc.strerror}")
            return
        try:
            size = st.st_size
            hasher = content_hasher(size)
            chunks = None
            if self._sparse and size and st.st_blocks * 512 < size:
                chunks = sparse_mod.data_map(fd, size)
            if chunks is not None:
                start = self._sparse_file(fd, name, st, chunks, hasher)
            else:
                start = self._header(name, st, REGTYPE, size, "", None)
                got = self._rw.write_from_fd(fd, size, hasher)
                if got < size:
                    self.warnings.append(f"{path}: shrank while read; zero-filled {size - got}")
                self._rw.pad()
        finally:
            os.close(fd)
        self._row(name, "file", size, st, "", hasher, start)

    def _sparse_file(
        self,
        fd: int,
        name: str,
        st: os.stat_result,
        chunks: list[tuple[int, int]],
        hasher: Any,  # hashlib or blake3 hasher
    ) -> int:
        """GNU pax sparse 1.0: map in the data area, then only the data chunks."""
        smap = sparse_mod.encode_map(chunks)
        stored = len(smap) + sum(n for _, n in chunks)
        extra = [
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", _encode_name(name)[0]),
            ("GNU.sparse.realsize", b"%d" % st.st_size),
        ]
        dirname, _, base = name.rpartition("/")
        fake = f"{dirname}/GNUSparseFile.0/{base}" if dirname else f"GNUSparseFile.0/{base}"
        start = self._header(fake, st, REGTYPE, stored, "", None, extra=extra)
        self._rw.write(smap)
        sparse_mod.copy_chunks(self._rw, fd, chunks, hasher, st.st_size)
        self._rw.pad()
        return start

    def _name(self, uid: int, table: dict[int, bytes], lookup: Callable[[int], str]) -> bytes:
        """Cached user/group name (b'' when unknown)."""
        got = table.get(uid)
        if got is None:
            try:
                got = lookup(uid).encode("utf-8", "surrogateescape")[:32]
            except KeyError:
                got = b""
            table[uid] = got
        return got

    def _header(
        self,
        name: str,
        st: os.stat_result,
        typeflag: bytes,
        size: int,
        link: str,
        row_type: str | None,
        *,
        row_name: str | None = None,
        extra: list[tuple[str, bytes]] | None = None,
    ) -> int:
        """Write the (pax +) ustar header; returns the stream offset where it starts."""
        start = self._rw.tell()
        recs: list[bytes] = []
        binary = False
        if extra:
            recs.extend(pax_record(k, v) for k, v in extra)
        nb, bad = _encode_name(name)
        if len(nb) > 100 or not name.isascii():
            recs.append(pax_record("path", nb))
            binary |= bad
        lb = b""
        if link:
            lb, bad = _encode_name(link)
            if len(lb) > 100 or not link.isascii():
                recs.append(pax_record("linkpath", lb))
                binary |= bad
        mtime_ns = st.st_mtime_ns
        mtime = mtime_ns // _NS
        if mtime_ns % _NS or not 0 <= mtime <= USTAR_MAX_TIME:
            recs.append(pax_record("mtime", format_pax_time(mtime_ns)))
            if not 0 <= mtime <= USTAR_MAX_TIME:
                mtime = 0
        if size >= self._pax_size_from:
            recs.append(pax_record("size", b"%d" % size))
            size_field = 0 if size > USTAR_MAX_SIZE else size
        else:
            size_field = size
        uid, gid = st.st_uid, st.st_gid
        if uid > USTAR_MAX_ID:
            recs.append(pax_record("uid", b"%d" % uid))
            uid = 0
        if gid > USTAR_MAX_ID:
            recs.append(pax_record("gid", b"%d" % gid))
            gid = 0
        uname = self._name(st.st_uid, self._unames, lambda i: pwd.getpwuid(i).pw_name)
        gname = self._name(st.st_gid, self._gnames, lambda i: grp.getgrgid(i).gr_name)
        if binary:
            recs.insert(0, pax_record("hdrcharset", b"BINARY"))
        dev_major = dev_minor = 0
        if typeflag in (CHRTYPE, BLKTYPE):
            dev_major, dev_minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        head = build_header(
            nb[:100],
            stat.S_IMODE(st.st_mode),
            uid,
            gid,
            size_field,
            mtime,
            typeflag,
            lb[:100],
            uname,
            gname,
            dev_major,
            dev_minor,
        )
        if recs:
            self._rw.write(pax_member(b"".join(recs)) + head)
        else:
            self._rw.write(head)
        if row_type is not None:
            self._row(row_name or name, row_type, 0, st, link, None, start)
        return start

    # --- rows --------------------------------------------------------------------------------
    def _row(
        self,
        name: str,
        kind: str,
        size: int,
        st: os.stat_result,
        link: str,
        hasher: Any | None,  # hashlib or blake3 hasher
        start: int,
    ) -> None:
        """Remember one catalog row; emitted once its bytes are on tape."""
        self.members += 1
        self._bases.append(0)
        self._rows.append(
            (
                name,
                kind,
                size,
                st.st_mtime_ns,
                st.st_ctime_ns,
                st.st_ino,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                link or None,
                None if hasher is None else f"{hasher.name}:{hasher.hexdigest()}",
                start,
                self._rw.tell(),
            )
        )
        if len(self._rows) >= self._batch_rows:
            self._emit(final=False)

    def _emit(self, final: bool) -> None:
        """Turn rows whose bytes are committed into a RecordBatch."""
        rows, bases = self._rows, self._bases
        if final:
            ready = len(rows)
        else:  # rows end in stream order: the first one past what is on tape
            committed = self._rw.committed
            ready = bisect_right(range(len(rows)), committed, key=lambda i: rows[i][12] + bases[i])
        if not ready:
            return
        self._rows, self._bases = rows[ready:], bases[ready:]
        batch = self._batch(rows[:ready], bases[:ready])
        self._batches.append(batch)
        if self._on_batch is not None:
            self._on_batch(batch)

    def _batch(self, rows: list[tuple], bases: list[int]) -> pa.RecordBatch:
        """Columns of FILE_SCHEMA from row tuples (converted by Arrow in one pass), positions
        resolved against the segments."""
        try:
            table = pa.array(rows, _ROW)
        except (UnicodeEncodeError, pa.ArrowInvalid):  # names that are not UTF-8
            table = pa.array([(_printable(r[0]), *r[1:]) for r in rows], _ROW)
        cols = dict(zip(_ROW.names, table.flatten(), strict=True))
        n = len(rows)
        starts = pc.add(cols["start"], pa.array(bases, pa.int64()))
        segs = self._rw.segments
        rs = self.record_size
        if len(segs) == 1:  # one cartridge so far: whole columns at once
            seg = segs[0]
            rel = pc.subtract(starts, seg.stream_start)  # never negative: no rounding issue
            block = pc.divide(rel, rs)
            barcodes = pa.array([seg.barcode] * n, pa.string())
            files = pa.array([seg.tape_file] * n, pa.int32())
            blocks = pc.add(block, seg.first_block)
            offsets = pc.subtract(rel, pc.multiply(block, rs)).cast(pa.int32())
        else:
            located = [locate_offset(segs, start, rs) for start in starts.to_pylist()]
            barcodes = pa.array([seg.barcode for seg, _, _ in located], pa.string())
            files = pa.array([seg.tape_file for seg, _, _ in located], pa.int32())
            blocks = pa.array([block for _, block, _ in located], pa.int64())
            offsets = pa.array([off for _, _, off in located], pa.int32())
        arrays = [
            pa.array([self.info.session_id] * n, pa.string()),
            cols["path"],
            cols["type"],
            cols["size"],
            _micros(cols["mtime"]),
            _micros(cols["ctime"]),
            cols["inode"],
            cols["mode"],
            cols["uid"],
            cols["gid"],
            cols["link_target"],
            cols["checksum"],
            barcodes,
            files,
            blocks,
            offsets,
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=FILE_SCHEMA)
