"""Typed errors of the snapshot layer: why a source could not be frozen, in words an operator
can act on (what was waited for, which filesystem refused, what to use instead)."""

from __future__ import annotations


class SnapshotError(Exception):
    """Base of every snapshot-layer error, so a slave can catch one type and fail its source."""


class FreezeTimeout(SnapshotError):
    """The source never stayed unwritten for the quiet period before the timeout ran out.

    Carries the numbers so a flow can show them: how long it waited, the quiet period wanted,
    how many writes it saw and how long before giving up the last one was seen."""

    def __init__(
        self,
        *,
        source: str,
        waited: float,
        timeout: float,
        quiet: float,
        last_write_ago: float,
        writes_seen: int,
        polls: int,
    ) -> None:
        self.source = source
        self.waited = waited
        self.timeout = timeout
        self.quiet = quiet
        self.last_write_ago = last_write_ago
        self.writes_seen = writes_seen
        self.polls = polls
        super().__init__(
            f"{source} was never quiet for {quiet:g} s within the {timeout:g} s timeout: "
            f"waited {waited:.2f} s, saw {writes_seen} write(s) in {polls} polls, the last one "
            f"{last_write_ago:.2f} s before giving up; stop or pause the writer, or raise the "
            f"timeout / lower the quiet period"
        )


class SnapshotUnsupported(SnapshotError):
    """This provider cannot snapshot this source here (e.g. no reflink on the filesystem);
    the message names the path, the filesystem and what to use instead."""

    def __init__(
        self, message: str, *, path: str = "", filesystem: str = "", reason: str = ""
    ) -> None:
        self.path = path
        self.filesystem = filesystem
        self.reason = reason or message  # the short "why", for messages that add their own advice
        super().__init__(message)


class NoSnapshot(SnapshotUnsupported):
    """No snapshot provider can freeze this volume and its source does not accept a live copy,
    so the backup fails before writing anything; names the volume, why, and the way out."""

    def __init__(
        self, volume: str, why: str, *, hint: str = "", path: str = "", filesystem: str = ""
    ) -> None:
        self.volume = volume
        self.why = why
        advice = f"{hint}; " if hint else ""
        super().__init__(
            f"cannot freeze {volume} for a point-in-time backup: {why}. Nothing was backed up; "
            f"{advice}or set live_copy=True on the source to accept a live copy (quiesced where "
            f"possible, but not point-in-time)",
            path=path,
            filesystem=filesystem,
            reason=why,
        )


class SnapshotFailed(SnapshotError):
    """The provider supports the source but taking, checking or releasing the snapshot failed
    (I/O error, no space, source changed during a full copy, split/rejoin raised...)."""


class SnapshotReleased(SnapshotError):
    """The snapshot was already released: its frozen view is gone and must not be read."""
