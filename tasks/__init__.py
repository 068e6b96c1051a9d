"""Prefect tasks: each does one thing and calls the core."""
