"""Schedule defaults of the registered deployments, in a module free of Prefect imports so the
`tapeflow` command can show them in its help without loading Prefect."""

from tapeflow.catalog.prune import DEFAULT_KEEP_DAYS as PRUNE_DAYS  # days the prune keeps

DEFAULT_TIMEZONE = "Europe/Berlin"
NIGHTLY_CRON = "0 1 * * 1-6"  # incremental, Monday to Saturday at 01:00
WEEKLY_CRON = "0 1 * * 0"  # full, Sunday at 01:00
PRUNE_CRON = "0 0 * * *"  # catalog prune: daily at 00:00
CLEAN_CRON = "0 6 * * 0"  # drive cleaning: Sundays at 06:00

__all__ = [
    "CLEAN_CRON",
    "DEFAULT_TIMEZONE",
    "NIGHTLY_CRON",
    "PRUNE_CRON",
    "PRUNE_DAYS",
    "WEEKLY_CRON",
]
