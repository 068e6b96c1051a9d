"""Grandfather-father-son rotation: a date is a daily, weekly or monthly backup, each written to
its own pool with its own retention and level. Prefect-free; the flow's `rotation` parameter.

Defaults: Sunday is weekly, the first Sunday of a month is monthly, every other day is daily;
gfs-daily keeps 7 days (incremental), gfs-weekly 35 days (full), gfs-monthly 365 days (full).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tapeflow.backup.model import Level, Pool

TIERS = ("daily", "weekly", "monthly")
WEEKDAYS = tuple(name.lower() for name in calendar.day_name)  # monday = 0
MONTHLY_WEEKS = ("first", "last")


class RotationError(ValueError):
    """A rotation name or configuration that does not parse or makes no sense."""


@dataclass(frozen=True)
class GfsTier:
    """One generation: the pool it writes, how long it keeps it, which backup level."""

    pool: str
    retention_days: int
    level: Level

    def __post_init__(self) -> None:
        if self.retention_days < 0:
            raise RotationError(
                f"GFS pool {self.pool!r}: retention_days must be >= 0, not {self.retention_days}"
            )
        if self.level not in get_args(Level):
            raise RotationError(f"GFS pool {self.pool!r}: unknown level {self.level!r}")


def _default(tier: str) -> GfsTier:
    days = {"daily": 7, "weekly": 35, "monthly": 365}[tier]
    return GfsTier(f"gfs-{tier}", days, "incremental" if tier == "daily" else "full")


@dataclass(frozen=True)
class GfsPolicy:
    """Which days are weekly/monthly, in which time zone, and each tier's pool."""

    daily: GfsTier = field(default_factory=lambda: _default("daily"))
    weekly: GfsTier = field(default_factory=lambda: _default("weekly"))
    monthly: GfsTier = field(default_factory=lambda: _default("monthly"))
    weekday: int = 6  # the weekly day, Monday = 0 (Sunday)
    monthly_week: str = "first"  # the first or last weekly day of a month is monthly
    timezone: str = "UTC"  # whose calendar decides the day of a timestamp

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise RotationError(f"weekday must be 0 (Monday) .. 6 (Sunday), not {self.weekday}")
        if self.monthly_week not in MONTHLY_WEEKS:
            raise RotationError(f"monthly_week must be one of {MONTHLY_WEEKS}")
        pools = [self.daily.pool, self.weekly.pool, self.monthly.pool]
        if len(set(pools)) != 3:
            raise RotationError(f"the three GFS tiers need three different pools, not {pools}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise RotationError(f"unknown time zone {self.timezone!r}") from exc

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GfsPolicy:
        """Build from a parameter dict (weekday a number or a name; tiers as partial dicts of
        pool, retention_days, level); RotationError for anything unknown."""
        unknown = set(data) - {"kind", "weekday", "monthly_week", "timezone", *TIERS}
        if unknown:
            raise RotationError(f"unknown GFS setting(s) {sorted(unknown)}")
        weekday = data.get("weekday", 6)
        if isinstance(weekday, str):
            if weekday.lower() not in WEEKDAYS:
                raise RotationError(f"weekday {weekday!r} is not one of {WEEKDAYS}")
            weekday = WEEKDAYS.index(weekday.lower())
        tiers = {}
        for tier in TIERS:
            given = data.get(tier) or {}
            extra = set(given) - {"pool", "retention_days", "level"}
            if extra:
                raise RotationError(f"unknown {tier} setting(s) {sorted(extra)}")
            base = _default(tier)
            tiers[tier] = GfsTier(
                pool=str(given.get("pool", base.pool)),
                retention_days=int(given.get("retention_days", base.retention_days)),
                level=given.get("level", base.level),
            )
        return cls(
            **tiers,
            weekday=int(weekday),
            monthly_week=str(data.get("monthly_week", "first")),
            timezone=str(data.get("timezone", "UTC")),
        )

    def local_date(self, when: date | datetime) -> date:
        """The calendar day of `when` in the policy's time zone (a date is taken as is)."""
        if isinstance(when, datetime):
            if when.tzinfo is None:
                when = when.replace(tzinfo=ZoneInfo("UTC"))
            return when.astimezone(ZoneInfo(self.timezone)).date()
        return when

    def tier_name(self, when: date | datetime) -> str:
        """'daily', 'weekly' or 'monthly' for a day."""
        day = self.local_date(when)
        if day.weekday() != self.weekday:
            return "daily"
        if self.monthly_week == "first":
            monthly = day.day <= 7
        else:
            monthly = day.day + 7 > calendar.monthrange(day.year, day.month)[1]
        return "monthly" if monthly else "weekly"

    def tier(self, when: date | datetime) -> GfsTier:
        """The tier (pool, retention, level) of a day."""
        return getattr(self, self.tier_name(when))

    def pool_for(self, when: date | datetime, base: Pool | None = None) -> Pool:
        """The day's pool: `base` (cartridges, append, scratch...) renamed, with the tier's
        retention."""
        tier = self.tier(when)
        return replace(base or Pool(), name=tier.pool, retention_days=tier.retention_days)


@dataclass(frozen=True)
class Rotation:
    """What a rotation decided for one run."""

    tier: str
    pool: Pool
    level: Level
    day: date


def parse_rotation(rotation: str | dict[str, Any]) -> GfsPolicy:
    """'gfs' (the defaults) or a dict {'kind': 'gfs', ...settings}; RotationError otherwise."""
    if isinstance(rotation, str):
        if rotation.lower() != "gfs":
            raise RotationError(f"unknown rotation {rotation!r}: use 'gfs' or a GFS settings dict")
        return GfsPolicy()
    if not isinstance(rotation, dict):
        raise RotationError(f"rotation must be 'gfs' or a dict, not {type(rotation).__name__}")
    if str(rotation.get("kind", "gfs")).lower() != "gfs":
        raise RotationError(f"unknown rotation kind {rotation.get('kind')!r}: only 'gfs'")
    return GfsPolicy.from_dict(rotation)


def rotate(rotation: str | dict[str, Any], when: date | datetime, base: Pool | None) -> Rotation:
    """The pool and level a rotated backup run at `when` uses."""
    policy = parse_rotation(rotation)
    tier = policy.tier(when)
    return Rotation(
        tier=policy.tier_name(when),
        pool=policy.pool_for(when, base),
        level=tier.level,
        day=policy.local_date(when),
    )
