"""Schedule defaults of the registered deployments, in a module free of Prefect imports so the
`tapeflow` command can show them in its help without loading Prefect."""

DEFAULT_TIMEZONE = "Europe/Berlin"
NIGHTLY_CRON = "0 1 * * 1-6"  # incremental, Monday to Saturday at 01:00
WEEKLY_CRON = "0 1 * * 0"  # full, Sunday at 01:00
