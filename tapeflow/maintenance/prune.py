"""Catalog prune as a maintenance operation: drop the file detail (Parquet rows) of sessions
older than `days` (default 30, the catalog's retention of file detail), keep everything else."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tapeflow.catalog import DEFAULT_KEEP_DAYS, Catalog, prune
from tapeflow.maintenance.errors import BadInput


@dataclass(frozen=True)
class PruneConfig:
    """How much file detail to keep: `days` of sessions (>= 0)."""

    days: int = DEFAULT_KEEP_DAYS

    def __post_init__(self) -> None:
        """Reject a negative or non-integer retention before anything is touched."""
        if isinstance(self.days, bool) or not isinstance(self.days, int) or self.days < 0:
            raise BadInput(f"prune days must be a whole number >= 0, not {self.days!r}")


@dataclass
class PruneReport:
    """What a prune dropped: sessions, bytes freed, files that could not be removed."""

    catalog: str
    days: int
    sessions: list[str]
    bytes_freed: int
    not_removed: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def prune_catalog(
    catalog: str | os.PathLike[str],
    config: PruneConfig = PruneConfig(),
    *,
    now: datetime | None = None,
) -> PruneReport:
    """Prune the catalog at `catalog` (it must exist: a prune never creates one)."""
    path = Path(catalog)
    if not path.is_file():
        raise BadInput(f"no catalog at {path}")
    with Catalog(path) as cat:
        result = prune(cat, keep_days=config.days, now=now)
    return PruneReport(
        str(path), config.days, result.sessions, result.bytes_freed, result.not_removed
    )
