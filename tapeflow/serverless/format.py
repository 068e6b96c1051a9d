"""How a serverless session lies on tape, readable by GNU tar without tapeflow:

  'g' global header (session metadata, kind=serverless)
  <volume>.img      the volume: a plain member (every block) or a GNU sparse 1.0 member
                    (metadata + clusters in use; the rest restores as zeros)
  'g' filler        pads the stream to a record boundary (the copy above ends here)
  <volume>.cow      GNU sparse 1.0: the freeze-time content of chunks written while the
                    image was copied from the live disk (empty map when none)
  end of archive    two zero blocks, then zeros to the record boundary

`tar -xf` gives both files; laying .cow's data chunks over .img yields the volume as it was
at the freeze; tapeflow's image and file restores do exactly that."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tapeflow.tapefmt.pax import (
    BLOCK,
    REGTYPE,
    USTAR_MAX_SIZE,
    build_header,
    pax_member,
    pax_member_sized,
    pax_record,
)
from tapeflow.tapefmt.session import SessionInfo
from tapeflow.tapefmt.sparse import encode_map

KIND = "serverless"


def member_names(source: str) -> tuple[str, str]:
    """The image and copy-on-write members of a volume's session."""
    return f"{source}.img", f"{source}.cow"


@dataclass(frozen=True, slots=True)
class Run:
    """`length` bytes of the volume at `offset` stored in the stream at `stream_offset`."""

    offset: int
    length: int
    stream_offset: int


def _header(name: str, size: int, mtime: datetime, extra: list[tuple[str, bytes]]) -> bytes:
    """pax + ustar header of a regular member of `size` stored bytes."""
    records = [pax_record(k, v) for k, v in extra]
    encoded = name.encode("utf-8")
    if len(encoded) > 100 or not name.isascii():
        records.append(pax_record("path", encoded))
    if size > USTAR_MAX_SIZE:
        records.append(pax_record("size", b"%d" % size))
    head = build_header(
        encoded[:100],
        0o600,
        0,
        0,
        0 if size > USTAR_MAX_SIZE else size,
        int(mtime.timestamp()),
        REGTYPE,
    )
    return (pax_member(b"".join(records)) if records else b"") + head


def sparse_member_header(
    name: str, real_size: int, chunks: list[tuple[int, int]], mtime: datetime
) -> bytes:
    """Header + sparse map of a GNU sparse 1.0 member whose data chunks follow."""
    if not chunks or chunks[-1][0] + chunks[-1][1] < real_size:
        chunks = [*chunks, (real_size, 0)]  # GNU convention: a zero chunk marks the real end
    smap = encode_map(chunks)
    stored = len(smap) + sum(n for _, n in chunks)
    extra = [
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", name.encode("utf-8")),
        ("GNU.sparse.realsize", b"%d" % real_size),
    ]
    return _header(f"GNUSparseFile.0/{name}", stored, mtime, extra) + smap


def image_member_header(
    name: str, size: int, chunks: list[tuple[int, int]] | None, mtime: datetime
) -> bytes:
    """Header of the image member: plain when every block is stored (`chunks` None)."""
    if chunks is None:
        return _header(name, size, mtime, [])
    return sparse_member_header(name, size, chunks, mtime)


def filler(stream_offset: int, record_size: int) -> bytes:
    """A 'g' member that ends exactly on the next record boundary ('' when already there)."""
    gap = -stream_offset % record_size
    if gap == 0:
        return b""
    if gap < BLOCK:
        raise ValueError(f"stream offset {stream_offset} is not 512-aligned")
    if gap < 2 * BLOCK:  # no room for records: a bare header (size 0) fills exactly 512
        return pax_member(b"", b"g", b"././@GlobalHead")
    return pax_member_sized(b"", gap)


def end_of_archive(stream_offset: int, record_size: int) -> bytes:
    """Two zero blocks, then zeros up to the record boundary."""
    end = stream_offset + 2 * BLOCK
    return bytes(2 * BLOCK + (-end % record_size))


def session_info(
    session_id: str, job_id: str, source: str, record_size: int, created: datetime
) -> SessionInfo:
    """The session's global header metadata."""
    return SessionInfo(
        session_id=session_id,
        job_id=job_id,
        source=source,
        kind=KIND,
        level=0,
        created=created,
        record_size=record_size,
    )
