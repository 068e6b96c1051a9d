"""Prefect deployments of tapeflow's flows: the registry, the serve script, prefect.yaml."""
