"""Typed errors of the on-tape format: what a label or a session stream says is wrong."""

from __future__ import annotations


class TapeFormatError(Exception):
    """Base: the tape's content is not what the format expects."""


class BlankTape(TapeFormatError):
    """Nothing is recorded at the beginning of the tape (no label)."""


class ForeignTape(TapeFormatError):
    """The tape holds data that is not a tapeflow volume (e.g. a tar archive at BOT)."""


class TapeNotBlank(TapeFormatError):
    """Formatting refused: the tape already holds data (pass force=True to overwrite)."""


class UnsupportedVersion(TapeFormatError):
    """The label or session was written by a newer, incompatible format version."""


class CorruptRecord(TapeFormatError):
    """A header in a record does not verify (bad checksum, bad field, bad pax record)."""

    def __init__(self, message: str, *, block: int | None, offset: int) -> None:
        self.block = block
        self.offset = offset
        where = f"block {block}" if block is not None else "stream"
        super().__init__(f"{message} at {where}, byte offset {offset}")


class TruncatedSession(TapeFormatError):
    """The session ends (filemark, end-of-data) before a member or the archive is complete."""

    def __init__(self, message: str, *, member: str | None) -> None:
        self.member = member
        super().__init__(message)


class ContinuationMismatch(TapeFormatError):
    """The next cartridge's continuation header does not continue this session here."""


class OutOfTape(TapeFormatError):
    """The cartridge is full and no next cartridge was supplied to continue the session."""


class UnsafeMember(TapeFormatError):
    """A member would land outside the target directory (absolute path, '..', symlink)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name!r}: {reason}")
