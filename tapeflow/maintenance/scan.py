"""Scan cartridges: label, every tape file, every session's global header and members with
their tape positions and checksums, so the catalog can be rebuilt from the tapes alone.

A session that spans cartridges is read across them (its later parts are found by searching
the library's cartridges for the continuation header), so a member cut by the cartridge end
still gets its checksum. A continuation part met first (sequence > 0) is recognised: its session
is read from part 0 when that cartridge is in the library. Each member row names the cartridge
holding its header, as the writer records it. Rows are FILE_SCHEMA rows without ctime and inode
(the tape does not carry them) and without 'deleted' rows (those are catalog-only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.catalog.schema import FILE_SCHEMA
from tapeflow.library import Library
from tapeflow.maintenance.errors import MaintenanceError
from tapeflow.maintenance.hashing import DEFAULT_ALGORITHM, hash_member
from tapeflow.maintenance.mounts import Mounts
from tapeflow.scsi.sense import EndOfData, FilemarkDetected, ScsiError
from tapeflow.scsi.tape import TapeDrive
from tapeflow.tapefmt import (
    BlankTape,
    ContinuationMismatch,
    CorruptRecord,
    ForeignTape,
    Member,
    SessionInfo,
    SessionReader,
    TapeFormatError,
    TruncatedSession,
    UnsupportedVersion,
    VolumeLabel,
    find_part,
    goto_session,
    read_label,
)
from tapeflow.tapefmt.label import describe_block
from tapeflow.tapefmt.records import EndOfPart
from tapeflow.tapefmt.session import global_info

LEVEL_NAMES = {0: "full", 1: "differential", 2: "incremental"}
PROBE = 8 * 1024 * 1024  # largest record asked for when probing a tape file
_END = object()  # end-of-data reached


class NotASession(MaintenanceError):
    """The tape file asked for holds no tapeflow session (empty, foreign, or past the end)."""


@dataclass(frozen=True)
class ScannedPart:
    """One cartridge's part of a session, as read: where it is and which stream bytes it holds."""

    barcode: str
    tape_file: int
    sequence: int
    offset: int  # stream byte where this part starts (0 for part 0)
    first_block: int  # tape block of the part's first record (after a continuation record)
    bytes: int = 0  # stream bytes on this part (data records x record size)


@dataclass
class ScannedSession:
    """A session read from tape: its header, parts in span order, member rows, and whether
    its end-of-archive was read (complete) or it was cut (partial, with the reason)."""

    info: SessionInfo
    parts: list[ScannedPart]
    state: str  # complete | partial
    rows: pa.Table  # FILE_SCHEMA; ctime/inode null, no 'deleted' rows
    members: int
    stream_bytes: int
    problem: str | None = None
    truncated_member: str | None = None  # member whose data was cut (not in rows)

    @property
    def session_id(self) -> str:
        """The session id from the global header."""
        return self.info.session_id

    @property
    def level(self) -> str:
        """Level name (full|differential|incremental) from the header's level number."""
        return LEVEL_NAMES.get(self.info.level, "full")

    @property
    def has_start(self) -> bool:
        """Whether part 0 was read (else only an orphan continuation part is known)."""
        return bool(self.parts) and self.parts[0].sequence == 0

    def rows_on(self, barcode: str) -> pa.Table:
        """Rows of members whose header is on `barcode`."""
        return self.rows.filter(pc.equal(self.rows["barcode"], barcode))


@dataclass(frozen=True)
class TapeFileScan:
    """What one tape file of a cartridge holds."""

    tape_file: int
    kind: str  # session | continuation | empty | foreign
    session_id: str | None = None
    sequence: int | None = None
    detail: str = ""


@dataclass
class MediaScan:
    """A cartridge as read: label status, its tape files, and the sessions with a part on it.

    status 'tapeflow' has a label; 'blank', 'foreign' and 'unsupported' cartridges are only
    reported (problem says why) and nothing is merged from them.
    """

    barcode: str
    status: str  # tapeflow | blank | foreign | unsupported
    label: VolumeLabel | None = None
    tape_files: list[TapeFileScan] = field(default_factory=list)
    sessions: list[ScannedSession] = field(default_factory=list)
    problem: str | None = None


def _row_path(name: str) -> str:
    """A member name as the writer stores it in a row (undecodable bytes replaced)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Rows:
    """Column lists of FILE_SCHEMA rows being collected."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.cols: dict[str, list] = {name: [] for name in FILE_SCHEMA.names}

    def add(self, m: Member, checksum: str | None, part: ScannedPart) -> None:
        c = self.cols
        c["session_id"].append(self.session_id)
        c["path"].append(_row_path(m.name))
        c["type"].append(m.type)
        c["size"].append(m.size if m.type == "file" else 0)
        c["mtime"].append(m.mtime_ns // 1000)
        c["ctime"].append(None)
        c["inode"].append(None)
        c["mode"].append(m.mode & 0o7777)
        c["uid"].append(m.uid)
        c["gid"].append(m.gid)
        c["link_target"].append(m.linkname or None)
        c["checksum"].append(checksum)
        c["barcode"].append(part.barcode)
        c["tape_file"].append(part.tape_file)
        c["block"].append(m.block)
        c["offset"].append(m.offset)

    def table(self) -> pa.Table:
        arrays = []
        for f in FILE_SCHEMA:
            values = self.cols[f.name]
            if pa.types.is_timestamp(f.type):
                arrays.append(pa.array(values, pa.int64()).cast(f.type))
            else:
                arrays.append(pa.array(values, f.type))
        return pa.Table.from_arrays(arrays, schema=FILE_SCHEMA)


class Scanner:
    """Reads cartridges of a library; sessions read once are remembered (a spanned session met
    again on its next cartridge is not read twice). Use as a context manager."""

    def __init__(
        self,
        library: Library | str,
        *,
        drives: Sequence[int] | None = None,
        candidates: Iterable[str] | None = None,
        algorithm: str = DEFAULT_ALGORITHM,
        follow: bool = True,
        mounts: Mounts | None = None,
    ) -> None:
        """`drives`: drives it may load (default online ones); `candidates`: cartridges searched
        for other parts of spanned sessions (default: all in the library); `follow=False` reads
        only the cartridge asked for (a spanned session then ends partial at its edge);
        `mounts`: mounts to use instead of its own (e.g. leased ones; closed with the scanner)."""
        self.lib = library if isinstance(library, Library) else Library(library)
        self._own_lib = not isinstance(library, Library)
        self.mounts = mounts if mounts is not None else Mounts(self.lib, drives)
        self.candidates = list(candidates) if candidates is not None else None
        self.algorithm = algorithm
        self.follow = follow
        self.sessions: dict[str, ScannedSession] = {}

    # --- public ------------------------------------------------------------------------------
    def scan_media(self, barcode: str) -> MediaScan:
        """Read a cartridge from its label through every tape file."""
        drive = self.mounts.mount(barcode)
        try:
            label = read_label(drive)
        except BlankTape as exc:
            return MediaScan(barcode, "blank", problem=str(exc))
        except ForeignTape as exc:
            return MediaScan(barcode, "foreign", problem=str(exc))
        except UnsupportedVersion as exc:
            return MediaScan(barcode, "unsupported", problem=str(exc))
        scan = MediaScan(barcode, "tapeflow", label)
        if label.barcode != barcode:
            scan.problem = f"label says barcode {label.barcode!r}, the library says {barcode!r}"
        number = 1
        while True:
            first = self._first_record(barcode, number)
            if first is _END:
                break
            if first is None:
                scan.tape_files.append(TapeFileScan(number, "empty"))
            else:
                assert isinstance(first, bytes)
                info = global_info(first)
                if info is None:
                    scan.tape_files.append(
                        TapeFileScan(number, "foreign", detail=describe_block(first))
                    )
                else:
                    session = self._session_at(barcode, number, info)
                    kind = "session" if info.sequence == 0 else "continuation"
                    scan.tape_files.append(
                        TapeFileScan(number, kind, info.session_id, info.sequence)
                    )
                    if all(s is not session for s in scan.sessions):
                        scan.sessions.append(session)
            number += 1
        return scan

    def scan_session(self, barcode: str, tape_file: int) -> ScannedSession:
        """Read the session whose part is tape file `tape_file` of a cartridge."""
        drive = self.mounts.mount(barcode)
        read_label(drive)  # BlankTape / ForeignTape for cartridges that are not ours
        first = self._first_record(barcode, tape_file)
        if not isinstance(first, bytes):
            raise NotASession(f"tape file {tape_file} of {barcode} is empty or past the end")
        info = global_info(first)
        if info is None:
            raise NotASession(
                f"tape file {tape_file} of {barcode} is not a tapeflow session "
                f"({describe_block(first)})"
            )
        return self._session_at(barcode, tape_file, info)

    def close(self) -> None:
        """Unload what was loaded."""
        try:
            self.mounts.close()
        finally:
            if self._own_lib:
                self.lib.close()

    def __enter__(self) -> Scanner:
        """Use as a context manager."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Unload what was loaded."""
        self.close()

    # --- internals ---------------------------------------------------------------------------
    def _first_record(self, barcode: str, number: int) -> bytes | None | object:
        """First record of tape file `number`: bytes, None for an empty file, _END past the end."""
        drive = self.mounts.mount(barcode)
        try:
            goto_session(drive, number)
            return drive.read(PROBE)
        except FilemarkDetected:
            return None
        except EndOfData:
            return _END

    def _known(self, session_id: str, barcode: str, number: int) -> ScannedSession | None:
        """The remembered session with a part at (barcode, tape file), if any."""
        known = self.sessions.get(session_id)
        if known is not None and any(
            p.barcode == barcode and p.tape_file == number for p in known.parts
        ):
            return known
        return None

    def _session_at(self, barcode: str, number: int, info: SessionInfo) -> ScannedSession:
        """The session with a part at (barcode, tape file): remembered, or read now."""
        known = self._known(info.session_id, barcode, number)
        if known is not None:
            return known
        if info.sequence == 0:
            session = self._read_session(barcode, number)
        else:
            start = self._find_part(info.session_id, 0, exclude={barcode}) if self.follow else None
            session = self._read_session(*start) if start else None
            if session is None or not self._known_in(session, barcode, number):
                why = (
                    "part 0 of the session is on no cartridge in the library"
                    if self.follow
                    else "continuation part read alone (follow=False)"
                )
                part = ScannedPart(barcode, number, info.sequence, info.offset, -1)
                return ScannedSession(
                    info, [part], "partial", FILE_SCHEMA.empty_table(), 0, 0, problem=why
                )
        self.sessions[session.session_id] = session
        return session

    @staticmethod
    def _known_in(session: ScannedSession, barcode: str, number: int) -> bool:
        return any(p.barcode == barcode and p.tape_file == number for p in session.parts)

    def _keep(self, origin: str) -> set[str]:
        """Cartridges not to evict while searching (the origin, when there is a second drive)."""
        return {origin} if len(self.mounts.drives) > 1 else set()

    def _find_part(
        self, session_id: str, sequence: int, *, exclude: set[str], origin: str | None = None
    ) -> tuple[str, int] | None:
        """(barcode, tape file) of part `sequence` of a session, searching the candidates; the
        drive holding it is left positioned after its continuation record."""
        candidates = (
            self.candidates if self.candidates is not None else (self.mounts.library_barcodes())
        )
        keep = self._keep(origin) if origin else set()
        for cand in candidates:
            if cand in exclude:
                continue
            try:
                drive = self.mounts.mount(cand, keep=keep)
                find_part(drive, session_id, sequence)
                pos = drive.position()
            except (TapeFormatError, ScsiError, MaintenanceError):
                if cand not in keep:
                    self.mounts.release(cand)
                continue
            return cand, pos.file if pos.file is not None else -1
        return None

    def _read_session(self, barcode: str, number: int) -> ScannedSession:
        """Read a session from part 0 at (barcode, tape file), following it across cartridges."""
        drive = self.mounts.mount(barcode)
        goto_session(drive, number)
        parts = [ScannedPart(barcode, number, 0, 0, drive.position().block)]
        reader: SessionReader | None = None

        def next_cartridge(sequence: int) -> TapeDrive:
            """The drive with the session's next part (EndOfPart when the session was cut)."""
            assert reader is not None
            if not self.follow:
                raise EndOfPart("follow=False: not reading onto other cartridges")
            if _more_after(reader.stream.drive):
                raise EndOfPart(f"{parts[-1].barcode} holds more after this part: it was cut")
            sid = reader.info.session_id if reader.info else None
            if sid is None:
                raise EndOfPart("no session header read")
            found = self._find_part(
                sid, sequence, exclude={p.barcode for p in parts}, origin=barcode
            )
            if found is None:
                raise EndOfPart(f"part {sequence} of session {sid} is on no cartridge here")
            cand, tape_file = found
            nxt = self.mounts.mount(cand)
            info = find_part(nxt, sid, sequence)
            parts.append(ScannedPart(cand, tape_file, sequence, info.offset, nxt.position().block))
            return nxt

        reader = SessionReader(drive, next_cartridge=next_cartridge)
        peeks: list[tuple[tuple[int | None, int], int]] = []
        original_peek: Callable[[], tuple[int | None, int]] = reader.stream.peek_block

        def peek_block() -> tuple[int | None, int]:
            here = original_peek()
            peeks.append((here, len(parts) - 1))
            return here

        reader.stream.peek_block = peek_block  # type: ignore[method-assign]
        rows: _Rows | None = None
        members = 0
        state, problem, cut = "complete", None, None
        try:
            for member, data in reader.entries():
                index = next(
                    (i for here, i in peeks if here == (member.block, member.offset)),
                    len(parts) - 1,
                )
                peeks.clear()
                checksum = (
                    hash_member(member, data, self.algorithm) if member.type == "file" else None
                )
                if rows is None:
                    rows = _Rows(reader.info.session_id if reader.info else "")
                rows.add(member, checksum, parts[index])
                members += 1
        except (TruncatedSession, CorruptRecord, ContinuationMismatch) as exc:
            state, problem = "partial", str(exc)
            cut = getattr(exc, "member", None)
        info = reader.info
        if info is None:
            raise NotASession(f"tape file {number} of {barcode} has no session header")
        record = info.record_size or reader.stream.record_size or 1
        stream_bytes = -(-reader.stream.tell() // record) * record
        sized = []
        for i, p in enumerate(parts):
            end = parts[i + 1].offset if i + 1 < len(parts) else stream_bytes
            sized.append(
                ScannedPart(
                    p.barcode,
                    p.tape_file,
                    p.sequence,
                    p.offset,
                    p.first_block,
                    max(end - p.offset, 0),
                )
            )
        table = rows.table() if rows is not None else FILE_SCHEMA.empty_table()
        if rows is not None and rows.session_id != info.session_id:
            table = table.set_column(
                0,
                FILE_SCHEMA.field("session_id"),
                pa.array([info.session_id] * table.num_rows, pa.string()),
            )
        return ScannedSession(info, sized, state, table, members, stream_bytes, problem, cut)


def _more_after(drive: TapeDrive) -> bool:
    """Whether anything is recorded after the filemark just passed (a cut, not a span)."""
    try:
        drive.read(PROBE)
    except FilemarkDetected:
        return True
    except EndOfData:
        return False
    except ScsiError:
        return False
    return True


def scan_media(library: Library | str, barcode: str, **options: object) -> MediaScan:
    """Scan one cartridge (Scanner options: drives, candidates, algorithm, follow)."""
    with Scanner(library, **options) as scanner:  # type: ignore[arg-type]
        return scanner.scan_media(barcode)


def scan_session(
    library: Library | str, barcode: str, tape_file: int, **options: object
) -> ScannedSession:
    """Scan the session at tape file `tape_file` of a cartridge."""
    with Scanner(library, **options) as scanner:  # type: ignore[arg-type]
        return scanner.scan_session(barcode, tape_file)


def scan_library(
    library: Library | str, barcodes: Iterable[str] | None = None, **options: object
) -> list[MediaScan]:
    """Scan cartridges (default: every data cartridge in the library), each session read once."""
    with Scanner(library, **options) as scanner:  # type: ignore[arg-type]
        chosen = list(barcodes) if barcodes is not None else scanner.mounts.library_barcodes()
        return [scanner.scan_media(b) for b in chosen]
