"""On-tape format: volume label (tape file 0) and sessions as pax streams in fixed records."""

from tapeflow.tapefmt.errors import (
    BlankTape,
    ContinuationMismatch,
    CorruptRecord,
    ForeignTape,
    OutOfTape,
    TapeFormatError,
    TapeNotBlank,
    TruncatedSession,
    UnsafeMember,
    UnsupportedVersion,
)
from tapeflow.tapefmt.label import VolumeLabel, read_label, write_label
from tapeflow.tapefmt.reader import (
    ExtractReport,
    Member,
    SessionReader,
    Skipped,
    extract_member_at,
    find_part,
    goto_session,
    read_member_at,
)
from tapeflow.tapefmt.records import DEFAULT_RECORD, Segment
from tapeflow.tapefmt.session import SessionInfo
from tapeflow.tapefmt.writer import SessionResult, SessionWriter

__all__ = [
    "DEFAULT_RECORD",
    "BlankTape",
    "ContinuationMismatch",
    "CorruptRecord",
    "ExtractReport",
    "ForeignTape",
    "Member",
    "OutOfTape",
    "Segment",
    "SessionInfo",
    "SessionReader",
    "SessionResult",
    "SessionWriter",
    "Skipped",
    "TapeFormatError",
    "TapeNotBlank",
    "TruncatedSession",
    "UnsafeMember",
    "UnsupportedVersion",
    "VolumeLabel",
    "extract_member_at",
    "find_part",
    "goto_session",
    "read_label",
    "read_member_at",
    "write_label",
]
