"""Progress reports of long maintenance work, throttled so a hook is not called per file."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Where a long operation is: its phase, items and bytes done (and totals when known)."""

    operation: str  # count | purge | copy | catalog-backup | catalog-recover
    phase: str
    items: int = 0
    bytes: int = 0
    total_items: int | None = None
    total_bytes: int | None = None
    path: str | None = None  # the item just done, if any

    @property
    def fraction(self) -> float | None:
        """Share done (0..1) when a total is known, else None."""
        if self.total_bytes:
            return min(self.bytes / self.total_bytes, 1.0)
        if self.total_items:
            return min(self.items / self.total_items, 1.0)
        return None


ProgressHook = Callable[[Progress], None]


class Reporter:
    """Calls a hook at most every `interval` seconds (and always for `force=True`), so per-file
    loops can report cheaply."""

    def __init__(self, hook: ProgressHook | None, operation: str, interval: float = 1.0) -> None:
        """Report through `hook` (None: report nothing)."""
        self.hook, self.operation, self.interval = hook, operation, interval
        self._last = 0.0

    def __call__(self, phase: str, *, force: bool = False, **fields: object) -> None:
        """Report `phase` with Progress fields when due."""
        if self.hook is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self.hook(Progress(self.operation, phase, **fields))  # type: ignore[arg-type]
