"""The backup flow's `rotation` parameter: which pool and level a rotated run uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect.runtime import flow_run as current_run

from tapeflow.backup.model import Level, Pool
from tapeflow.backup.rotation import rotate


def rotated(
    rotation: str | dict[str, Any], pool: Pool, level: Level, when: datetime | None = None
) -> tuple[Pool, Level]:
    """The pool (the base pool renamed, with the tier's retention) and level of this run, by
    its scheduled start time (a late run still counts for the day it was scheduled)."""
    when = when or current_run.scheduled_start_time
    turn = rotate(rotation, when, pool)
    get_run_logger().info(
        "rotation: %s is a %s backup -> pool %s (kept %d days), level %s (not %s)",
        turn.day,
        turn.tier,
        turn.pool.name,
        turn.pool.retention_days,
        turn.level,
        level,
    )
    return turn.pool, turn.level
