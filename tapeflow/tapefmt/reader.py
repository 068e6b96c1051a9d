"""Session reader: list members with their tape positions, extract safely into a target
directory, read one member after LOCATE, and follow a spanned session onto later cartridges.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tapeflow.scsi.sense import EndOfData, FilemarkDetected
from tapeflow.tapefmt.errors import (
    ContinuationMismatch,
    CorruptRecord,
    TruncatedSession,
    UnsafeMember,
)
from tapeflow.tapefmt.pax import (
    AREGTYPE,
    BLKTYPE,
    BLOCK,
    CHRTYPE,
    CONTTYPE,
    DIRTYPE,
    FIFOTYPE,
    GNU_LONGLINK,
    GNU_LONGNAME,
    LNKTYPE,
    REGTYPE,
    SYMTYPE,
    XGLTYPE,
    XHDTYPE,
    header_checksum_ok,
    parse_header,
    parse_pax_records,
    parse_pax_time,
)
from tapeflow.tapefmt.records import Drive, EndOfPart, RecordStream
from tapeflow.tapefmt.session import SessionInfo, global_info

_ZERO = bytes(BLOCK)
_NS = 1_000_000_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TYPES = {
    REGTYPE: "file",
    AREGTYPE: "file",
    CONTTYPE: "file",
    DIRTYPE: "dir",
    SYMTYPE: "symlink",
    LNKTYPE: "hardlink",
}


@dataclass
class Member:
    """One archive member as the reader sees it, with where its header starts on tape."""

    name: str
    type: str  # file|dir|symlink|hardlink|other (FILE_TYPES)
    size: int  # logical size (real size of a sparse file)
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime_ns: int
    linkname: str
    block: int | None  # tape block of the header (LOCATE target)
    offset: int  # byte offset of the header within that block
    typeflag: bytes = REGTYPE
    devmajor: int = 0
    devminor: int = 0
    stored: int = 0  # bytes in the archive after the header
    sparse: list[tuple[int, int]] | None = None


@dataclass(frozen=True)
class Skipped:
    """A member not extracted, and why."""

    name: str
    reason: str


@dataclass
class ExtractReport:
    """What an extraction did."""

    extracted: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def goto_session(drive: Drive, tape_file: int) -> None:
    """Position at the start of tape file `tape_file` (like `mt rewind; mt fsf N`)."""
    drive.set_block_size(0)
    drive.rewind()
    if tape_file:
        drive.space_filemarks(tape_file)


def find_part(drive: Drive, session_id: str | None, sequence: int) -> SessionInfo:
    """Scan the loaded cartridge for part `sequence` of a session; leave the drive after its
    continuation record (at the part's first data record)."""
    goto_session(drive, 1)
    while True:
        try:
            first = drive.read(8 * 1024 * 1024)
        except FilemarkDetected:
            continue  # an empty tape file
        except EndOfData as exc:
            raise ContinuationMismatch(
                f"no part {sequence} of session {session_id} on this cartridge"
            ) from exc
        info = global_info(first)
        if (
            info is not None
            and info.sequence == sequence
            and (session_id is None or info.session_id == session_id)
        ):
            return info
        try:
            drive.space_filemarks(1)
        except EndOfData as exc:
            raise ContinuationMismatch(
                f"no part {sequence} of session {session_id} on this cartridge"
            ) from exc


class SessionReader:
    """Reads one session from the current position (start of its tape file, or a member's
    header after LOCATE). `next_cartridge(sequence)` returns a drive holding the cartridge
    with the session's next part, when the session spans."""

    def __init__(
        self,
        drive: Drive,
        *,
        next_cartridge: Callable[[int], Drive] | None = None,
        session_id: str | None = None,
        skip: int = 0,
        stream_offset: int | None = 0,
    ) -> None:
        self.info: SessionInfo | None = None
        self._session_id = session_id
        self._next_cartridge = next_cartridge
        self._sequence = 0
        self._check_offset = stream_offset is not None
        self.stream = RecordStream(
            drive,
            next_part=self._next_part if next_cartridge else None,
            start_offset=stream_offset or 0,
        )
        if skip:
            self.stream.skip(skip)

    def _next_part(self, offset: int) -> Drive:
        """Find and check the next part of the session on the next cartridge."""
        assert self._next_cartridge is not None
        self._sequence += 1
        drive = self._next_cartridge(self._sequence)
        sid = self.info.session_id if self.info else self._session_id
        info = find_part(drive, sid, self._sequence)
        if self._check_offset and info.offset != offset:
            raise ContinuationMismatch(
                f"part {self._sequence} continues at byte {info.offset}, expected {offset}"
            )
        return drive

    # --- parsing -----------------------------------------------------------------------------
    def _read(self, n: int, member: str | None) -> bytes:
        try:
            return self.stream.read(n)
        except EndOfPart as exc:
            what = f"in member {member!r}" if member else "before the end of the archive"
            raise TruncatedSession(f"session ends {what}", member=member) from exc

    def entries(self) -> Iterator[tuple[Member, Iterator[memoryview]]]:
        """Members in order, each with an iterator over its stored data (consume or leave)."""
        pending: dict[str, bytes] = {}
        global_pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        start: tuple[int | None, int] | None = None
        while True:
            try:
                here = self.stream.peek_block()
            except EndOfPart as exc:
                raise TruncatedSession(
                    "session ends before the end of the archive", member=None
                ) from exc
            if start is None:
                start = here
            block = self._read(BLOCK, None)
            if block == _ZERO:
                nxt = self._read(BLOCK, None)
                if nxt == _ZERO:
                    return
                raise CorruptRecord(
                    "a lone zero block inside the archive", block=here[0], offset=here[1]
                )
            if not header_checksum_ok(block):
                raise CorruptRecord("bad tar header checksum", block=here[0], offset=here[1])
            try:
                head = parse_header(block)
            except Exception as exc:  # construct/ValueError: a field that does not decode
                raise CorruptRecord(
                    f"bad tar header ({exc})", block=here[0], offset=here[1]
                ) from exc
            flag = head.typeflag
            if flag in (XHDTYPE, XGLTYPE, GNU_LONGNAME, GNU_LONGLINK):
                data = self._read(head.size + (-head.size % BLOCK), None)[: head.size]
                if flag in (XHDTYPE, XGLTYPE):
                    try:
                        recs = parse_pax_records(data)
                    except ValueError as exc:
                        raise CorruptRecord(
                            f"bad pax header: {exc}", block=here[0], offset=here[1]
                        ) from exc
                    if flag == XHDTYPE:
                        pending.update(recs)
                    else:
                        global_pax.update(recs)
                        info = SessionInfo.from_pax(recs)
                        if info is not None and self.info is None:
                            self.info = info
                        start = None
                elif flag == GNU_LONGNAME:
                    long_name = data.split(b"\0", 1)[0]
                else:
                    long_link = data.split(b"\0", 1)[0]
                continue
            pax = {**global_pax, **pending}
            member = self._member(head, pax, long_name, long_link, start)
            pending, long_name, long_link, start = {}, None, None, None
            used = self._sparse_map(member) if member.sparse is not None else 0
            data_iter = self._data(member, member.stored - used)
            yield member, data_iter
            for _ in data_iter:  # whatever the consumer left
                pass
            self._read(-member.stored % BLOCK, member.name)

    def _member(
        self,
        head: object,
        pax: dict[str, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
        start: tuple[int | None, int],
    ) -> Member:
        """Apply pax/GNU overrides to a parsed ustar header."""
        h = head  # RawHeader
        name_b = (
            pax.get("path")
            or long_name
            or (
                h.prefix + b"/" + h.name if h.prefix else h.name  # type: ignore[attr-defined]
            )
        )
        link_b = pax.get("linkpath") or long_link or h.linkname  # type: ignore[attr-defined]
        stored = int(pax["size"]) if "size" in pax else h.size  # type: ignore[attr-defined]
        mtime_ns = (
            parse_pax_time(pax["mtime"]) if "mtime" in pax else h.mtime * _NS  # type: ignore[attr-defined]
        )
        flag = h.typeflag  # type: ignore[attr-defined]
        size = stored
        sparse = None
        if pax.get("GNU.sparse.major") == b"1" and "GNU.sparse.name" in pax:
            name_b = pax["GNU.sparse.name"]
            size = int(pax.get("GNU.sparse.realsize", b"0"))
            sparse = []
        kind = _TYPES.get(flag, "other")
        name = _text(name_b).rstrip("/") if kind == "dir" else _text(name_b)
        return Member(
            name=name,
            type=kind,
            size=size if kind == "file" else 0,
            mode=h.mode,  # type: ignore[attr-defined]
            uid=int(pax["uid"]) if "uid" in pax else h.uid,  # type: ignore[attr-defined]
            gid=int(pax["gid"]) if "gid" in pax else h.gid,  # type: ignore[attr-defined]
            uname=_text(pax.get("uname") or h.uname),  # type: ignore[attr-defined]
            gname=_text(pax.get("gname") or h.gname),  # type: ignore[attr-defined]
            mtime_ns=mtime_ns,
            linkname=_text(link_b),
            block=start[0],
            offset=start[1],
            typeflag=flag,
            devmajor=h.devmajor,  # type: ignore[attr-defined]
            devminor=h.devminor,  # type: ignore[attr-defined]
            stored=stored if flag not in (LNKTYPE, SYMTYPE, DIRTYPE) else 0,
            sparse=sparse,
        )

    def _sparse_map(self, member: Member) -> int:
        """Read a GNU 1.0 sparse map (decimal lines padded to 512); returns bytes consumed."""
        head = b""
        while True:
            if len(head) + BLOCK > member.stored:
                raise CorruptRecord(
                    f"sparse map of {member.name!r} overruns the member",
                    block=member.block,
                    offset=member.offset,
                )
            head += self._read(BLOCK, member.name)
            lines = head.split(b"\n")
            try:
                count = int(lines[0])
                if len(lines) > 2 * count + 1:
                    nums = [int(x) for x in lines[1 : 2 * count + 1]]
                    member.sparse = list(zip(nums[0::2], nums[1::2], strict=True))
                    return len(head)
            except ValueError as exc:
                raise CorruptRecord(
                    f"bad sparse map of {member.name!r}", block=member.block, offset=member.offset
                ) from exc

    def _data(self, member: Member, remaining: int) -> Iterator[memoryview]:
        """The member's stored bytes after the header (and after a sparse map)."""
        try:
            yield from self.stream.chunks(remaining)
        except EndOfPart as exc:
            raise TruncatedSession(
                f"session ends in member {member.name!r}", member=member.name
            ) from exc

    def members(self) -> Iterator[Member]:
        """Every member (data skipped)."""
        for member, _ in self.entries():
            yield member

    def read_member(self) -> tuple[Member, bytes]:
        """The first member from here and its content (for a LOCATE + read restore)."""
        for member, data in self.entries():
            return member, _assemble(member, data)
        raise TruncatedSession("no member here", member=None)

    # --- extraction --------------------------------------------------------------------------
    def extract(
        self,
        target: str | os.PathLike[str],
        select: Iterable[str] | Callable[[Member], bool] | None = None,
        *,
        limit: int | None = None,
    ) -> ExtractReport:
        """Extract (selected) members under `target`; unsafe ones are skipped and reported."""
        if select is None or callable(select):
            wanted = select
        else:
            names = set(select)

            def wanted(m: Member) -> bool:
                return m.name in names

        ex = _Extractor(Path(target))
        try:
            done = 0
            for member, data in self.entries():
                if wanted is not None and not wanted(member):
                    continue
                ex.member(member, data)
                done += 1
                if limit is not None and done >= limit:
                    break
        finally:
            ex.finish()
        return ex.report


def _assemble(member: Member, data: Iterator[memoryview]) -> bytes:
    """A member's logical content in memory (holes of a sparse file filled with zeros)."""
    if member.sparse is None:
        return b"".join(bytes(c) for c in data)
    out = bytearray(member.size)
    buf = b"".join(bytes(c) for c in data)
    pos = 0
    for off, length in member.sparse:
        out[off : off + length] = buf[pos : pos + length]
        pos += length
    return bytes(out)


def reader_at(
    drive: Drive,
    block: int,
    offset: int,
    *,
    next_cartridge: Callable[[int], Drive] | None = None,
    session_id: str | None = None,
    sequence: int = 0,
) -> SessionReader:
    """LOCATE to a member's recorded block; a reader whose next member is that one."""
    drive.set_block_size(0)
    drive.locate(block)
    reader = SessionReader(
        drive,
        next_cartridge=next_cartridge,
        session_id=session_id,
        skip=offset,
        stream_offset=None,
    )
    reader._sequence = sequence
    return reader


def read_member_at(
    drive: Drive,
    block: int,
    offset: int,
    *,
    next_cartridge: Callable[[int], Drive] | None = None,
    session_id: str | None = None,
    sequence: int = 0,
) -> tuple[Member, bytes]:
    """Read one member by LOCATE, without reading the session from its start."""
    return reader_at(
        drive,
        block,
        offset,
        next_cartridge=next_cartridge,
        session_id=session_id,
        sequence=sequence,
    ).read_member()


def extract_member_at(
    drive: Drive,
    block: int,
    offset: int,
    target: str | os.PathLike[str],
    *,
    next_cartridge: Callable[[int], Drive] | None = None,
    session_id: str | None = None,
    sequence: int = 0,
) -> ExtractReport:
    """LOCATE to a member and extract just it under `target`."""
    return reader_at(
        drive,
        block,
        offset,
        next_cartridge=next_cartridge,
        session_id=session_id,
        sequence=sequence,
    ).extract(target, limit=1)


def safe_parts(name: str) -> list[str]:
    """Path components of a member name; UnsafeMember for absolute paths or '..'."""
    if name.startswith("/"):
        raise UnsafeMember(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeMember(name, "'..' component")
    if not parts:
        raise UnsafeMember(name, "empty name")
    return parts


class _Extractor:
    """Creates members under a root, walking with O_NOFOLLOW so no symlink is ever followed."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.report = ExtractReport()
        self._dirs: list[tuple[list[str], int, int]] = []
        self._cached: tuple[tuple[str, ...], int] | None = None
        self._is_root = os.geteuid() == 0

    def finish(self) -> None:
        """Apply directory modes and times (deepest first), close handles."""
        try:
            for parts, mode, mtime_ns in sorted(self._dirs, key=lambda d: -len(d[0])):
                try:
                    fd = self._walk(parts, create=False)
                except (UnsafeMember, FileNotFoundError) as exc:
                    self.report.skipped.append(Skipped("/".join(parts), f"directory attrs: {exc}"))
                    continue
                try:
                    os.chmod(fd, mode)
                    os.utime(fd, ns=(mtime_ns, mtime_ns))
                finally:
                    os.close(fd)
        finally:
            self._drop_cache()
            os.close(self.root_fd)

    def _drop_cache(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def _walk(self, parts: list[str], create: bool) -> int:
        """An fd of the directory `parts` under root (created if asked), never via a symlink."""
        fd = os.dup(self.root_fd)
        try:
            for comp in parts:
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(comp, 0o700, dir_fd=fd)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafeMember(
                            "/".join(parts), f"{comp!r} is a symlink or not a directory"
                        ) from exc
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parent(self, parts: list[str]) -> int:
        """Parent directory fd of a member (cached for siblings)."""
        key = tuple(parts[:-1])
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        self._drop_cache()
        fd = self._walk(list(key), create=True)
        self._cached = (key, fd)
        return fd

    def _clear(self, name: str, pfd: int) -> None:
        """Remove a non-directory entry in the way (never follows it)."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=pfd)
        else:
            os.unlink(name, dir_fd=pfd)

    def member(self, m: Member, data: Iterator[memoryview]) -> None:
        """Extract one member; unsafe or impossible ones go to the skipped list."""
        try:
            parts = safe_parts(m.name)
            if m.type == "dir":
                self._dir(parts, m)
            else:
                pfd = self._parent(parts)
                leaf = parts[-1]
                if m.type == "file":
                    self._file(pfd, leaf, m, data)
                elif m.type == "symlink":
                    self._clear(leaf, pfd)
                    os.symlink(m.linkname, leaf, dir_fd=pfd)
                    os.utime(leaf, ns=(m.mtime_ns, m.mtime_ns), dir_fd=pfd, follow_symlinks=False)
                elif m.type == "hardlink":
                    self._link(pfd, leaf, m)
                elif m.typeflag == FIFOTYPE:
                    self._clear(leaf, pfd)
                    os.mkfifo(leaf, m.mode & 0o7777, dir_fd=pfd)
                elif m.typeflag in (CHRTYPE, BLKTYPE) and self._is_root:
                    self._clear(leaf, pfd)
                    kind = stat.S_IFCHR if m.typeflag == CHRTYPE else stat.S_IFBLK
                    os.mknod(
                        leaf,
                        kind | (m.mode & 0o7777),
                        os.makedev(m.devmajor, m.devminor),
                        dir_fd=pfd,
                    )
                else:
                    self.report.skipped.append(Skipped(m.name, f"type {m.typeflag!r} not restored"))
                    return
        except UnsafeMember as exc:
            self.report.skipped.append(Skipped(m.name, exc.reason))
            return
        except OSError as exc:
            self.report.skipped.append(Skipped(m.name, f"{exc.strerror} ({exc.errno})"))
            return
        self.report.extracted.append(m.name)

    def _dir(self, parts: list[str], m: Member) -> None:
        """Create the directory now; mode and mtime at the end."""
        pfd = self._parent(parts)
        try:
            st = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(parts[-1], dir_fd=pfd)
                os.mkdir(parts[-1], 0o700, dir_fd=pfd)
        except FileNotFoundError:
            os.mkdir(parts[-1], 0o700, dir_fd=pfd)
        self._dirs.append((parts, m.mode & 0o7777, m.mtime_ns))

    def _file(self, pfd: int, leaf: str, m: Member, data: Iterator[memoryview]) -> None:
        """Write a regular (or sparse) file; never through an existing link."""
        self._clear(leaf, pfd)
        fd = os.open(
            leaf,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=pfd,
        )
        try:
            if m.sparse is None:
                for chunk in data:
                    os.write(fd, chunk)
            else:
                self._sparse(fd, m, data)
            if self._is_root:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))
        finally:
            os.close(fd)

    def _sparse(self, fd: int, m: Member, data: Iterator[memoryview]) -> None:
        """Place each data chunk at its offset; holes stay holes."""
        assert m.sparse is not None
        chunks = iter(m.sparse)
        off, left = next(chunks, (0, 0))
        for piece in data:
            view = piece
            while len(view):
                while left == 0:
                    off, left = next(chunks)
                take = min(left, len(view))
                os.pwrite(fd, view[:take], off)
                off += take
                left -= take
                view = view[take:]
        os.ftruncate(fd, m.size)

    def _link(self, pfd: int, leaf: str, m: Member) -> None:
        """A hard link to an earlier member, both inside the root."""
        src = safe_parts(m.linkname)
        spfd = self._walk(src[:-1], create=False)
        try:
            os.stat(src[-1], dir_fd=spfd, follow_symlinks=False)
        except FileNotFoundError as exc:
            os.close(spfd)
            raise UnsafeMember(m.name, f"link target {m.linkname!r} was not extracted") from exc
        try:
            self._clear(leaf, pfd)
            os.link(src[-1], leaf, src_dir_fd=spfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(spfd)
