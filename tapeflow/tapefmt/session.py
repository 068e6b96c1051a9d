"""Session metadata carried in pax global headers (first member; continuation records)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from tapeflow.tapefmt.label import FORMAT_VERSION
from tapeflow.tapefmt.pax import (
    BLOCK,
    XGLTYPE,
    format_pax_time,
    header_checksum_ok,
    parse_header,
    parse_pax_records,
    parse_pax_time,
    pax_member,
    pax_member_sized,
    pax_record,
)

PREFIX = "tapeflow."
GLOBAL_NAME = b"././@GlobalHead"


@dataclass(frozen=True)
class SessionInfo:
    """What a session says about itself: who wrote it, what, when; and which part this is."""

    session_id: str
    job_id: str = ""
    source: str = ""
    kind: str = "files"
    level: int = 0
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    format_version: int = FORMAT_VERSION
    record_size: int = 256 * 1024
    sequence: int = 0  # 0 = the session's first part, n = n-th continuation
    offset: int = 0  # stream byte where this part continues (0 for the first part)

    def records(self) -> bytes:
        """The pax records of the global header."""
        created_ns = int(self.created.timestamp() * 1_000_000) * 1000
        items = [
            ("format", str(self.format_version).encode()),
            ("session", self.session_id.encode()),
            ("job", self.job_id.encode()),
            ("source", self.source.encode()),
            ("kind", self.kind.encode()),
            ("level", str(self.level).encode()),
            ("time", format_pax_time(created_ns)),
            ("record_size", str(self.record_size).encode()),
            ("sequence", str(self.sequence).encode()),
            ("offset", str(self.offset).encode()),
        ]
        return b"".join(pax_record(PREFIX + k, v) for k, v in items)

    def global_header(self) -> bytes:
        """The 'g' member opening a session."""
        return pax_member(self.records(), XGLTYPE, GLOBAL_NAME)

    def continuation_record(self, sequence: int, offset: int) -> bytes:
        """A whole record: a 'g' member for part `sequence`, padded with a comment to fill it."""
        part = replace(self, sequence=sequence, offset=offset)
        return pax_member_sized(part.records(), self.record_size, XGLTYPE, GLOBAL_NAME)

    @classmethod
    def from_pax(cls, values: dict[str, bytes]) -> SessionInfo | None:
        """Rebuild from global-header records; None when they are not tapeflow's."""
        if PREFIX + "session" not in values:
            return None

        def text(key: str, default: str = "") -> str:
            return values.get(PREFIX + key, default.encode()).decode("utf-8", "replace")

        created = datetime.fromtimestamp(
            parse_pax_time(values.get(PREFIX + "time", b"0")) / 1e9, UTC
        )
        return cls(
            session_id=text("session"),
            job_id=text("job"),
            source=text("source"),
            kind=text("kind", "files"),
            level=int(text("level", "0")),
            created=created,
            format_version=int(text("format", "1")),
            record_size=int(text("record_size", str(256 * 1024))),
            sequence=int(text("sequence", "0")),
            offset=int(text("offset", "0")),
        )


def global_info(record: bytes) -> SessionInfo | None:
    """Session info from a record that starts with a tapeflow pax global header, else None."""
    if len(record) < BLOCK or not header_checksum_ok(record[:BLOCK]):
        return None
    try:
        head = parse_header(record[:BLOCK])
        if head.typeflag != XGLTYPE or BLOCK + head.size > len(record):
            return None
        return SessionInfo.from_pax(parse_pax_records(record[BLOCK : BLOCK + head.size]))
    except (ValueError, TypeError, ArithmeticError):
        return None
    except Exception:  # construct errors: not a header of ours
        return None
