"""Flow runs end as soon as their work does, not when Prefect's heartbeat thread wakes.

Prefect 3.9's sync flow engine runs a heartbeat thread that sleeps in 1 s steps and, as the
run ends, joins it: every flow run's end waits out the current step, up to a second (half on
average) on every backup, restore and maintenance job. Its async engine already leaves the
thread to stop by itself (`join_on_exit=False`); the sync engine does the same here. The
thread still stops at its next step, before emitting anything, and heartbeats (Prefect's crash
detection for flow runs) are unchanged while the run lasts.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import prefect.flow_engine as _flow_engine

from flows.patching import wrap_once


def _unjoined(send_heartbeats: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send_heartbeats)
    def send_heartbeats_unjoined(engine: Any, join_on_exit: bool = True) -> Any:
        return send_heartbeats(engine, join_on_exit=False)

    return send_heartbeats_unjoined


def unjoined_heartbeats(module: ModuleType = _flow_engine) -> bool:
    """Make `module`'s flow runs not wait for the heartbeat thread; False if this Prefect
    has no such thread to join (nothing to change)."""
    return wrap_once(
        module,
        "_send_heartbeats",
        _unjoined,
        lambda current: "join_on_exit" in inspect.signature(current).parameters,
    )
