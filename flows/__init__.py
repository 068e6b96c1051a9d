"""Prefect flows: thin layers of parameters, mapping, hooks and artifacts over the core."""

from flows.csrf import probe_csrf_once
from flows.heartbeats import unjoined_heartbeats
from flows.leases import defer_first_renewal
from flows.ssl_context import share_ssl_context

share_ssl_context()
probe_csrf_once()
unjoined_heartbeats()
defer_first_renewal()
