"""Backup jobs, Prefect-free: master planning/bookkeeping, the slave, sources, operations."""
