"""Verify a session on tape against the catalog: read it back (from the catalog's first tape
file, across its cartridges) and check every member's checksum, type and size against its row.
A serverless session is read whole the same way, its image and copy-on-write members checked
for type and size; its files have no checksum to check (`content_unchecked`).

Data problems are the result (VerifyResult), never exceptions; unusable input raises typed
errors: SessionNotFound, RowsUnavailable, NoTapeRecorded, CartridgeNotInLibrary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow.compute as pc

from tapeflow.catalog import Catalog, session_files, session_media
from tapeflow.library import Library
from tapeflow.maintenance.errors import CartridgeNotInLibrary, MaintenanceError, NoTapeRecorded
from tapeflow.maintenance.hashing import algorithm_of, hash_member
from tapeflow.maintenance.mounts import Mounts
from tapeflow.maintenance.scan import _row_path
from tapeflow.scsi.sense import ScsiError
from tapeflow.scsi.tape import TapeDrive
from tapeflow.serverless import format as fmt
from tapeflow.serverless.maps import blockmaps_dir, load_maps
from tapeflow.tapefmt import SessionReader, TapeFormatError, goto_session
from tapeflow.tapefmt.records import EndOfPart

PROBLEM_KINDS = ("mismatch", "missing", "unreadable", "extra")


@dataclass(frozen=True)
class MemberProblem:
    """One member that did not verify: what kind of problem, and what was expected and found."""

    path: str
    kind: str  # mismatch | missing | unreadable | extra
    expected: str | None = None
    actual: str | None = None
    detail: str = ""


@dataclass
class VerifyResult:
    """Counts and problems of a verify run; `error` says why reading stopped early, if it did."""

    session_id: str
    checked: int = 0  # catalog rows whose member was read
    ok: int = 0
    unchecked: int = 0  # read, but the checksum algorithm is not available here
    content_unchecked: int = 0  # files of a serverless session: the host never read them
    problems: list[MemberProblem] = field(default_factory=list)
    error: str | None = None

    def _of(self, kind: str) -> list[MemberProblem]:
        return [p for p in self.problems if p.kind == kind]

    @property
    def mismatched(self) -> list[MemberProblem]:
        """Members whose checksum, type or size differ from the catalog row."""
        return self._of("mismatch")

    @property
    def missing(self) -> list[MemberProblem]:
        """Catalog rows with no member on tape (the archive was read to its end)."""
        return self._of("missing")

    @property
    def unreadable(self) -> list[MemberProblem]:
        """Catalog rows whose member could not be read (tape cut, damaged, cartridge absent)."""
        return self._of("unreadable")

    @property
    def extra(self) -> list[MemberProblem]:
        """Members on tape the catalog has no row for."""
        return self._of("extra")

    @property
    def clean(self) -> bool:
        """Whether every row verified."""
        return not self.problems and self.error is None


def verify_session(
    cat: Catalog,
    library: Library | str,
    session_id: str,
    *,
    drives: Sequence[int] | None = None,
) -> VerifyResult:
    """Read `session_id` back from tape and check each member against its catalog row."""
    session = cat.session(session_id)
    rows = session_files(cat, session_id)
    rows = rows.filter(pc.not_equal(rows["type"], "deleted"))
    parts = [(r["barcode"], r["tape_file"]) for r in session_media(cat, session_id).to_pylist()]
    if not parts:
        raise NoTapeRecorded(f"session {session_id} has no tape file in the catalog")
    result = VerifyResult(session_id)
    if session["kind"] == fmt.KIND:  # the volume's members; its files' rows carry no checksum
        expected = _volume_members(cat, session_id, session["source"])
        result.content_unchecked = rows.num_rows
    else:
        expected = {r["path"]: r for r in rows.to_pylist()}
    lib = library if isinstance(library, Library) else Library(library)
    try:
        with Mounts(lib, drives) as mounts:
            first = parts[0][0]
            if first not in mounts.library_barcodes():
                raise CartridgeNotInLibrary(first)
            _read(mounts, parts, expected, result)
    finally:
        if not isinstance(library, Library):
            lib.close()
    return result


def _volume_members(cat: Catalog, session_id: str, source: str) -> dict[str, dict]:
    """Rows to check a serverless session's members against (type, and the image's size): the
    image, and the copy-on-write member that overlays it."""
    maps, _barcode = load_maps(blockmaps_dir(cat.files_dir), session_id)
    image, cow = fmt.member_names(source)
    row = {"type": "file", "size": maps.image_size, "checksum": None}
    # a freeze without change tracking (reflink, full copy) writes no copy-on-write member
    has_cow = "cow" in maps.tapemap.column("kind").to_pylist()
    return {image: dict(row), cow: {**row, "optional": not has_cow}}


def _read(
    mounts: Mounts,
    parts: list[tuple[str, int]],
    expected: dict[str, dict],
    result: VerifyResult,
) -> None:
    """Read the session and fill `result` (reading errors end it and become problems)."""
    seen: set[str] = set()

    def next_cartridge(sequence: int) -> TapeDrive:
        if sequence >= len(parts):
            raise EndOfPart(f"the catalog knows no part {sequence}")
        try:
            return mounts.mount(parts[sequence][0])
        except MaintenanceError as exc:
            raise EndOfPart(str(exc)) from exc

    try:
        drive = mounts.mount(parts[0][0])
        goto_session(drive, parts[0][1])
        reader = SessionReader(drive, next_cartridge=next_cartridge)
        for member, data in reader.entries():
            path = _row_path(member.name)
            row = expected.get(path)
            if row is None:
                for _ in data:
                    pass
                result.problems.append(MemberProblem(path, "extra", actual=member.type))
                continue
            algorithm = algorithm_of(row["checksum"]) if member.type == "file" else None
            actual = hash_member(member, data, algorithm) if algorithm else None
            for _ in data:  # anything a non-file member stores
                pass
            seen.add(path)
            result.checked += 1
            problem = _compare(path, row, member.type, member.size, actual)
            if problem is not None:
                result.problems.append(problem)
            elif algorithm and actual is None:
                result.unchecked += 1
            else:
                result.ok += 1
    except (TapeFormatError, ScsiError, EndOfPart, MaintenanceError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        for path in sorted(set(expected) - seen):
            result.problems.append(MemberProblem(path, "unreadable", detail=result.error))
        return
    for path in sorted(set(expected) - seen):
        if not expected[path].get("optional"):
            result.problems.append(MemberProblem(path, "missing", expected=expected[path]["type"]))


def _compare(
    path: str, row: dict, kind: str, size: int, actual: str | None
) -> MemberProblem | None:
    """A mismatch of type, size or checksum between a row and what tape holds, else None."""
    if row["type"] != kind:
        return MemberProblem(path, "mismatch", row["type"], kind, "type")
    if kind == "file" and row["size"] != size:
        return MemberProblem(path, "mismatch", str(row["size"]), str(size), "size")
    if actual is not None and row["checksum"] != actual:
        return MemberProblem(path, "mismatch", row["checksum"], actual, "checksum")
    return None
