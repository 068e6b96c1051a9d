"""Prefect renews a drive-tag slot's lease when the lease is 3/4 through, not the moment it
is taken.

Prefect 3.9 starts a renewal thread for every concurrency lease it acquires, and that thread
opens a client and renews at once, then every 3/4 of the lease (a task's tag slot is leased
for 60 s). The first renewal extends a lease created a few milliseconds earlier: for every
slave it is one more request on the API and one more client in the burst of a drive
hand-off, where requests queue behind each other, and for a slave shorter than 45 s it is
the only renewal.
Here the thread waits the 3/4 first and then runs Prefect's own loop unchanged, so the lease
is kept exactly as long and a renewal failure is handled as before.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any
from uuid import UUID

import prefect.concurrency._leases as _leases

from flows.patching import wrap_once

_PARAMETERS = ["lease_id", "lease_duration", "stop_event"]


def _deferred(loop: Callable[..., Any], fraction: float) -> Callable[..., Any]:
    @functools.wraps(loop)
    def lease_renewal_loop_deferred(
        lease_id: UUID, lease_duration: float, stop_event: threading.Event
    ) -> Any:
        if stop_event.wait(lease_duration * fraction):
            return None  # released before its first renewal was due
        return loop(lease_id, lease_duration, stop_event)

    return lease_renewal_loop_deferred


def defer_first_renewal(module: ModuleType = _leases) -> bool:
    """Make `module`'s lease renewal threads wait before their first renewal; False if this
    Prefect has no such loop (nothing to change)."""
    fraction = getattr(module, "_RENEWAL_FRACTION", None)
    if not isinstance(fraction, float) or not 0 < fraction < 1:
        return False
    return wrap_once(
        module,
        "_lease_renewal_loop",
        lambda loop: _deferred(loop, fraction),
        lambda current: list(inspect.signature(current).parameters) == _PARAMETERS,
    )
