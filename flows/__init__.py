"""Prefect flows: thin layers of parameters, mapping, hooks and artifacts over the core."""
