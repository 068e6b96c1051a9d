"""Typed catalog errors: callers tell a locked catalog from a damaged one from a bad argument."""

from __future__ import annotations

from pathlib import Path


class CatalogError(Exception):
    """Base of every catalog error, so one except clause can catch them all."""


class CatalogLocked(CatalogError):
    """Another process holds the DuckDB file's write lock; retry later or use that process."""

    def __init__(self, path: Path, detail: str) -> None:
        """Keep the path for callers that show or retry it."""
        super().__init__(
            f"catalog {path} is locked by another process (close it or wait): {detail}"
        )
        self.path = path


class CatalogCorrupt(CatalogError):
    """The DuckDB file is not a DuckDB database or is damaged; it was left untouched."""

    def __init__(self, path: Path, detail: str) -> None:
        """Keep the path for callers that show or retry it."""
        super().__init__(
            f"catalog {path} is not a valid or intact DuckDB database; it was left untouched "
            f"(restore it from a copy or rebuild the catalog from tape): {detail}"
        )
        self.path = path


class CatalogVersionError(CatalogError):
    """The catalog's schema is newer than this software understands."""


class SessionNotFound(CatalogError, KeyError):
    """No session with that id is recorded in the catalog."""

    def __init__(self, session_id: str) -> None:
        """Keep the session id for callers."""
        super().__init__(f"no session {session_id!r} in the catalog")
        self.session_id = session_id

    def __str__(self) -> str:
        """Plain message (KeyError would quote it)."""
        return str(self.args[0])


class NotFound(CatalogError, KeyError):
    """A job, cartridge, pool or drive named by the caller is not recorded."""

    def __str__(self) -> str:
        """Plain message (KeyError would quote it)."""
        return str(self.args[0])


class RowsUnavailable(CatalogError):
    """The file detail of some sessions is pruned, corrupt or missing, so a query can't answer."""

    def __init__(self, sessions: dict[str, str]) -> None:
        """Keep {session id: state} for callers."""
        listing = ", ".join(f"{sid} ({state})" for sid, state in sorted(sessions.items()))
        super().__init__(
            f"file detail unavailable for session(s): {listing}; rebuild them from tape"
        )
        self.sessions = sessions


class RowsInvalid(CatalogError):
    """A session's Parquet file does not match what the catalog expects (schema, ids, path)."""


class CorruptRowsWarning(UserWarning):
    """Some sessions' Parquet files are damaged: they were set aside and the query went on."""

    def __init__(self, files: dict[str, Path]) -> None:
        """Keep {session id: set-aside path} for callers."""
        listing = ", ".join(f"{sid} -> {path}" for sid, path in sorted(files.items()))
        super().__init__(f"corrupt Parquet rows set aside (not deleted): {listing}")
        self.files = files
