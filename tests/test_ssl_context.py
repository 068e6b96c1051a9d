"""Prefect API clients share one verifying TLS context per process (flows/ssl_context.py)."""

from __future__ import annotations

import ssl
from typing import Any

import prefect.client.orchestration as orchestration
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings

import flows  # noqa: F401  (installs the shared context)
from flows.ssl_context import share_ssl_context

API = "https://prefect.invalid/api"


def _context(client: Any) -> ssl.SSLContext:
    return client._client._transport._pool._ssl_context


def test_installed_for_this_prefect() -> None:
    assert share_ssl_context() is True
    assert share_ssl_context(orchestration) is True  # a second call changes nothing


def test_clients_share_one_verifying_context() -> None:
    first, second, sync = PrefectClient(API), PrefectClient(API), SyncPrefectClient(API)
    shared = _context(first)
    assert _context(second) is shared and _context(sync) is shared
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname


def test_unverified_contexts_are_never_shared() -> None:
    with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        one, two = PrefectClient(API), PrefectClient(API)
    assert _context(one) is not _context(two)
    assert _context(one).verify_mode == ssl.CERT_NONE
    after = PrefectClient(API)  # turning verification off once leaves later clients verifying
    assert _context(after).verify_mode == ssl.CERT_REQUIRED and _context(after).check_hostname


def test_other_modules_untouched() -> None:
    import types

    plain = types.ModuleType("plain")
    assert share_ssl_context(plain) is False and not hasattr(plain, "ssl")
