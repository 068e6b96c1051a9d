"""Fast path for the common member: a small regular file with a short ASCII name.

`pack()` turns a run of such files into finished stream bytes (pax 'x' header when the mtime
has a fraction, ustar header, content, padding) plus their catalog rows, with offsets relative
to the start of the bytes. Anything unusual (other types, hard links, sparse or large files,
long or non-ASCII names, ids or times that do not fit ustar, errors, a file changing size) is
handed back by index for the general path of the writer, so the bytes are exactly what the
general path writes.

The module imports only the standard library: the writer also runs it as a helper process
(`python -I -S fastpack.py`: entries in as pickles over its stdin; rows as pickles and stream
bytes raw over its stdout) that packs runs on the second core while the writer packs others;
the writer puts all of them on the stream in tree order.
"""

from __future__ import annotations

import grp
import os
import pickle
import pwd
import struct
import sys
from hashlib import sha256
from typing import Any

BLOCK = 512
FAST_MAX = 128 * 1024  # larger files take the general path (streamed through the records)
CHUNK = 128  # entries per run handed to pack()
USTAR_MAX_ID = 0o7777777
USTAR_MAX_TIME = 0o77777777777
_NS = 1_000_000_000
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)
_MAX_MTIME_NS = (USTAR_MAX_TIME + 1) * _NS
_S_IFMT = 0o170000
_S_IFREG = 0o100000
_ZEROS = bytes(BLOCK)

# name(100) | mode uid gid (24) | size mtime (24) | chksum (8) | typeflag .. pad (356)
_FAST = struct.Struct("100s24s24s8s356s")
_PAX_NAME = b"././@PaxHeader"

# a (uid, gid, mode) -> (mode/uid/gid fields, tail from typeflag on, checksum of both + blanks)
_Fixed = tuple[bytes, bytes, int]

Entry = tuple[str, str, bool]  # (filesystem path, member name, may be a regular file)
Row = tuple[Any, ...]
# One piece of a result: (stream bytes, rows with relative offsets), or the index of an entry
# for the general path.
Piece = tuple[bytes, list[Row]] | tuple[memoryview, list[Row]] | int


def _user(uid: int) -> bytes:
    try:
        return pwd.getpwuid(uid).pw_name.encode("utf-8", "surrogateescape")[:32]
    except KeyError:
        return b""


def _group(gid: int) -> bytes:
    try:
        return grp.getgrgid(gid).gr_name.encode("utf-8", "surrogateescape")[:32]
    except KeyError:
        return b""


def _tail(typeflag: bytes, uname: bytes, gname: bytes) -> bytes:
    """typeflag, empty linkname, magic, version, names, zero devices, empty prefix, pad."""
    return (
        typeflag
        + bytes(100)
        + b"ustar\x0000"
        + uname.ljust(32, b"\0")
        + gname.ljust(32, b"\0")
        + b"0000000\0" * 2
        + bytes(155 + 12)
    )


def _pax_head(length: int) -> bytes:
    """The ustar header of a pax 'x' member with `length` bytes of records."""
    fixed = b"%07o\0%07o\0%07o\0" % (0o644, 0, 0)
    tail = _tail(b"x", b"", b"")
    sm = b"%011o\0%011o\0" % (length, 0)
    chk = sum(_PAX_NAME) + sum(fixed) + sum(sm) + 256 + sum(tail)
    return _FAST.pack(_PAX_NAME, fixed, sm, b"%06o\0 " % chk, tail)


class Packer:
    """Packs runs of small files; keeps its caches (names, header parts) between runs."""

    def __init__(self, sparse: bool = True, pax_size_from: int = 0o77777777777 + 1) -> None:
        self.sparse = sparse
        self.size_limit = min(FAST_MAX + 1, pax_size_from)
        self._fixed: dict[tuple[int, int, int], _Fixed] = {}
        self._pax: dict[int, bytes] = {}

    def _fixed_for(self, uid: int, gid: int, mode: int) -> _Fixed:
        fixed = b"%07o\0%07o\0%07o\0" % (mode, uid, gid)
        tail = _tail(b"0", _user(uid), _group(gid))
        got = (fixed, tail, sum(fixed) + sum(tail) + 256)
        self._fixed[(uid, gid, mode)] = got
        return got

    def pack(self, entries: list[Entry]) -> list[Piece]:
        """Stream bytes and rows for `entries`, in order; indexes of entries left over."""
        pieces: list[Piece] = []
        out: list[bytes] = []
        rows: list[Row] = []
        pos = 0
        fixed_cache = self._fixed
        pax_cache = self._pax
        limit = self.size_limit
        sparse = self.sparse
        fopen, fstat, fread, fclose = os.open, os.fstat, os.read, os.close
        pack_head = _FAST.pack
        zeros = _ZEROS
        for i, (path, name, maybe) in enumerate(entries):
            # Only directory entries of type DT_REG get here: open first (O_NOFOLLOW, and
            # O_NONBLOCK should it have become a FIFO since), then fstat the open file.
            data = st = None
            if maybe and name.isascii() and len(name) <= 100:
                try:
                    fd = fopen(path, _OPEN)
                except OSError:
                    fd = -1
                if fd >= 0:
                    try:
                        st = fstat(fd)
                        size = st.st_size
                        if (
                            st.st_mode & _S_IFMT == _S_IFREG
                            and st.st_nlink == 1
                            and size < limit
                            and st.st_uid <= USTAR_MAX_ID
                            and st.st_gid <= USTAR_MAX_ID
                            and 0 <= st.st_mtime_ns < _MAX_MTIME_NS
                            and not (sparse and size and st.st_blocks * 512 < size)
                        ):
                            data = fread(fd, size) if size else b""
                    except OSError:
                        data = None
                    finally:
                        fclose(fd)
            if data is None or len(data) != size:
                if out:
                    pieces.append((b"".join(out), rows))
                    out, rows, pos = [], [], 0
                pieces.append(i)
                continue
            mtime_ns = st.st_mtime_ns
            mtime, frac = divmod(mtime_ns, _NS)
            start = pos
            if frac:
                body = (b" mtime=%d.%09d" % (mtime, frac)).rstrip(b"0") + b"\n"
                n = len(body) + 2  # mtime records are 10..99 bytes: two length digits
                head = pax_cache.get(n)
                if head is None:
                    head = pax_cache[n] = _pax_head(n)
                out.append(head)
                out.append(b"%d" % n + body + zeros[n:])
                pos += 1024
            mode = st.st_mode & 0o7777
            uid, gid = st.st_uid, st.st_gid
            got = fixed_cache.get((uid, gid, mode))
            if got is None:
                got = self._fixed_for(uid, gid, mode)
            nb = name.encode("ascii")
            sm = b"%011o\0%011o\0" % (size, mtime)
            chk = got[2] + sum(nb) + sum(sm)
            out.append(pack_head(nb, got[0], sm, b"%06o\0 " % chk, got[1]))
            pos += BLOCK
            if size:
                out.append(data)
                pad = -size % BLOCK
                if pad:
                    out.append(zeros[:pad])
                pos += size + pad
            rows.append(
                (
                    name,
                    "file",
                    size,
                    mtime_ns,
                    st.st_ctime_ns,
                    st.st_ino,
                    mode,
                    uid,
                    gid,
                    None,
                    "sha256:" + sha256(data).hexdigest(),
                    start,
                    pos,
                )
            )
        if out:
            pieces.append((b"".join(out), rows))
        return pieces


# --- helper process ----------------------------------------------------------------------------
_LEN = struct.Struct("<Q")


def send(fd: int, obj: object) -> None:
    """Length-prefixed pickle on a pipe."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def recv(fd: int) -> Any:
    """The next length-prefixed pickle from a pipe (EOFError when it is closed)."""
    head = _read_exact(fd, _LEN.size)
    return pickle.loads(_read_exact(fd, _LEN.unpack(head)[0]))


def _read_exact(fd: int, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if not k:
            raise EOFError("helper pipe closed")
        got += k
    return buf


def send_pieces(fd: int, pieces: list[Piece]) -> None:
    """A run's result: its shape (pickled, stream bytes replaced by their length), then the
    stream bytes raw, so that neither side copies them into or out of a pickle."""
    shape = [p if isinstance(p, int) else (len(p[0]), p[1]) for p in pieces]
    send(fd, shape)
    for piece in pieces:
        if not isinstance(piece, int):
            view = memoryview(piece[0])
            while view:
                view = view[os.write(fd, view) :]


class Receiver:
    """Reads send_pieces() results into one reused buffer (no fresh pages per run)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray(1 << 20)

    def recv_pieces(self) -> list[tuple[memoryview, list[Row]] | int]:
        """The next result; its stream bytes are views valid until the next call."""
        shape = recv(self.fd)
        total = sum(p[0] for p in shape if not isinstance(p, int))
        if total > len(self._buf):
            self._buf = bytearray(total)  # views of the old buffer keep it alive
        view = memoryview(self._buf)
        got = 0
        while got < total:
            k = os.readv(self.fd, [view[got:total]])
            if not k:
                raise EOFError("helper pipe closed")
            got += k
        pieces: list[tuple[memoryview, list[Row]] | int] = []
        pos = 0
        for p in shape:
            if isinstance(p, int):
                pieces.append(p)
            else:
                pieces.append((view[pos : pos + p[0]], p[1]))
                pos += p[0]
        return pieces


def serve(rfd: int, wfd: int) -> None:
    """Helper loop: settings first, then a run of entries in, its pieces out, until EOF."""
    try:
        sparse, pax_size_from = recv(rfd)
        packer = Packer(sparse, pax_size_from)
        while True:
            send_pieces(wfd, packer.pack(recv(rfd)))
    except (EOFError, BrokenPipeError):
        return


if __name__ == "__main__":
    serve(sys.stdin.fileno(), sys.stdout.fileno())
