"""One CSRF probe per Prefect API per process, instead of one per client.

Before its first write, every new Prefect client asks the server for a CSRF token, and a server
without CSRF protection (Prefect's default) answers 422. Prefect's engine opens a new client
for every drive-tag slot it releases and every lease it renews, so each drive hand-off paid
that extra round trip while the Prefect server was busiest. Here the first answer is kept for
the process: once a server has said its protection is off, new clients skip the probe. Should
that server later start enforcing CSRF, the refused write ("Missing CSRF token") forgets the
answer and is sent again with a token, so nothing fails.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

_unprotected: set[str] = set()  # API base URLs whose server said CSRF protection is off
_lock = threading.Lock()
_MARK = "_tapeflow_csrf_once"


def _api(client: httpx.Client | httpx.AsyncClient) -> str:
    return str(client.base_url)


def known_unprotected(url: str) -> bool:
    """Whether this process knows the API at `url` enforces no CSRF protection."""
    return url in _unprotected


def _learn(client: Any) -> None:
    """After Prefect's own probe: keep its answer for the clients to come."""
    with _lock:
        if client.enable_csrf_support:
            _unprotected.discard(_api(client))
        else:  # 422 "CSRF protection is disabled." (or an old server without the endpoint)
            _unprotected.add(_api(client))


def _refused_for_csrf(client: Any, response: httpx.Response) -> bool:
    """A write refused because protection was switched on since: forget, so it probes."""
    if response.status_code != 403 or "Missing CSRF token" not in response.text:
        return False
    with _lock:
        if _api(client) not in _unprotected:
            return False
        _unprotected.discard(_api(client))
    return True


def _async_methods() -> None:
    add, send = PrefectHttpxAsyncClient._add_csrf_headers, PrefectHttpxAsyncClient.send

    @functools.wraps(add)
    async def add_csrf_headers(self: PrefectHttpxAsyncClient, request: httpx.Request) -> None:
        if _api(self) in _unprotected:
            return
        await add(self, request)
        _learn(self)

    @functools.wraps(send)
    async def send_once_more(
        self: PrefectHttpxAsyncClient, request: httpx.Request, *args: Any, **kwargs: Any
    ) -> httpx.Response:
        return await _resent_async(self, lambda: send(self, request, *args, **kwargs))

    setattr(add_csrf_headers, _MARK, True)
    PrefectHttpxAsyncClient._add_csrf_headers = add_csrf_headers  # type: ignore[method-assign]
    PrefectHttpxAsyncClient.send = send_once_more  # type: ignore[method-assign]


async def _resent_async(
    client: Any, send: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """The response; a write refused for a CSRF token this process skipped goes once more."""
    try:
        response = await send()
    except httpx.HTTPStatusError as exc:
        if not _refused_for_csrf(client, exc.response):
            raise
        return await send()
    return await send() if _refused_for_csrf(client, response) else response


def _resent_sync(client: Any, send: Callable[[], httpx.Response]) -> httpx.Response:
    """The response; a write refused for a CSRF token this process skipped goes once more."""
    try:
        response = send()
    except httpx.HTTPStatusError as exc:
        if not _refused_for_csrf(client, exc.response):
            raise
        return send()
    return send() if _refused_for_csrf(client, response) else response


def _sync_methods() -> None:
    add, send = PrefectHttpxSyncClient._add_csrf_headers, PrefectHttpxSyncClient.send

    @functools.wraps(add)
    def add_csrf_headers(self: PrefectHttpxSyncClient, request: httpx.Request) -> None:
        if _api(self) in _unprotected:
            return
        add(self, request)
        _learn(self)

    @functools.wraps(send)
    def send_once_more(
        self: PrefectHttpxSyncClient, request: httpx.Request, *args: Any, **kwargs: Any
    ) -> httpx.Response:
        return _resent_sync(self, lambda: send(self, request, *args, **kwargs))

    setattr(add_csrf_headers, _MARK, True)
    PrefectHttpxSyncClient._add_csrf_headers = add_csrf_headers  # type: ignore[method-assign]
    PrefectHttpxSyncClient.send = send_once_more  # type: ignore[method-assign]


def probe_csrf_once() -> bool:
    """Make Prefect's clients share their CSRF probe; False if this Prefect has none."""
    for cls, install in (
        (PrefectHttpxAsyncClient, _async_methods),
        (PrefectHttpxSyncClient, _sync_methods),
    ):
        current = getattr(cls, "_add_csrf_headers", None)
        if current is None:
            return False
        if not getattr(current, _MARK, False):
            install()
    return True
