"""Token-bucket pacing of a drive's data transfers, to emulate a real drive's speed."""

from __future__ import annotations

import time

BURST_SECONDS = 0.01  # how far ahead of the pace a transfer may run before sleeping


class Throttle:
    """Keeps the average transfer rate at or below `rate` bytes/s (None = unlimited)."""

    def __init__(self) -> None:
        self._clock: float | None = None  # virtual time at which the transferred bytes "finish"

    def consume(self, nbytes: int, rate: float | None) -> None:
        """Account for `nbytes` just transferred; sleep if we are ahead of the allowed pace."""
        if not rate:
            self._clock = None
            return
        now = time.monotonic()
        start = (
            now - BURST_SECONDS if self._clock is None else max(self._clock, now - BURST_SECONDS)
        )
        self._clock = start + nbytes / rate
        delay = self._clock - now
        if delay > 0:
            time.sleep(delay)
