"""One TLS context per process for Prefect's API clients, instead of one per client.

Prefect builds a new `ssl.SSLContext` (reading the whole CA bundle, ~17 ms of CPU) every time
it opens an API client, and its engine opens one per task to release the task's drive-tag
slot. On the drive hand-off path that CPU competes with the next slave's start. The context's
settings (CA file, verification) are the same for every client of a process, so sharing it
changes no behaviour; only a CA bundle replaced while the process runs is seen on restart.
Upstream: PrefectHQ/prefect#19106 (custom SSL contexts), still open.
"""

from __future__ import annotations

import functools
import ssl
from types import ModuleType
from typing import Any

import prefect.client.orchestration as _orchestration


class _SharedContexts:
    """Stands in for the `ssl` module inside prefect.client.orchestration."""

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    @staticmethod
    def create_default_context(
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: str | bytes | None = None,
    ) -> ssl.SSLContext:
        """The verifying context for a CA file, built once; any other call gets a fresh one
        (Prefect turns the argument-less one into an unverified context by mutating it)."""
        if cafile is None or capath is not None or cadata is not None:
            return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        return _verifying(purpose, cafile)


@functools.cache
def _verifying(purpose: ssl.Purpose, cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(purpose, cafile=cafile)


def share_ssl_context(module: ModuleType = _orchestration) -> bool:
    """Make `module`'s clients share contexts; False if this Prefect builds them elsewhere."""
    current = getattr(module, "ssl", None)
    if isinstance(current, _SharedContexts):
        return True
    if current is not ssl:
        return False
    module.ssl = _SharedContexts()  # type: ignore[attr-defined]
    return True
