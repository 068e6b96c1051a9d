"""Prefect clients share their CSRF probe per API and process (flows/csrf.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import PrefectClient, SyncPrefectClient
from prefect.server.api.server import create_app
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_CSRF_PROTECTION_ENABLED,
    temporary_settings,
)

import flows  # noqa: F401  (installs the change)
from flows import csrf


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget what earlier tests' clients learnt."""
    monkeypatch.setattr(csrf, "_unprotected", set())


def _client(seen: list[str]) -> SyncPrefectClient:
    def note(request: httpx.Request) -> None:
        seen.append(f"{request.method} {request.url.path.rsplit('/api', 1)[-1]}")

    return SyncPrefectClient(
        PREFECT_API_URL.value(), httpx_settings={"event_hooks": {"request": [note]}}
    )


def test_installed_for_this_prefect() -> None:
    assert csrf.probe_csrf_once() is True
    assert csrf.probe_csrf_once() is True  # a second call wraps nothing twice


def test_one_probe_for_every_client_of_an_unprotected_server(
    prefect_server: None, fresh: None
) -> None:
    first: list[str] = []
    with _client(first) as client:
        client.create_flow_from_name("csrf-first")
    assert first[0] == "GET /csrf-token"  # Prefect's own probe: 422, protection is off
    assert csrf.known_unprotected(str(client._client.base_url))
    later: list[str] = []
    for name in ("csrf-second", "csrf-third"):
        with _client(later) as client:
            client.create_flow_from_name(name)
    assert later == ["POST /flows/", "POST /flows/"]


def test_a_server_that_starts_enforcing_csrf_gets_tokens(prefect_server: None, fresh: None) -> None:
    answers: list[str] = []

    async def note(response: httpx.Response) -> None:
        answers.append(f"{response.status_code} {response.request.url.path.rsplit('/api', 1)[-1]}")

    async def write() -> Any:
        app = create_app(ephemeral=True, ignore_cache=True)
        hooks = {"event_hooks": {"response": [note]}}
        async with PrefectClient(api=app, httpx_settings=hooks) as client:
            url = str(client._client.base_url)
            csrf._unprotected.add(url)  # learnt before the server turned protection on
            flow_id = await client.create_flow_from_name("csrf-protected")
            return url, flow_id, client._client.csrf_token

    with temporary_settings({PREFECT_SERVER_CSRF_PROTECTION_ENABLED: True}):
        url, flow_id, token = asyncio.run(write())
    assert answers == ["403 /flows/", "200 /csrf-token", "201 /flows/"]
    assert flow_id is not None and token  # refused once ("Missing CSRF token"), then sent with one
    assert not csrf.known_unprotected(url)
