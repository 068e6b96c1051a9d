"""A drive-tag slot's lease is first renewed 3/4 through, not as it is taken (flows/leases.py)."""

from __future__ import annotations

import threading
import time
import types
import uuid
from typing import Any

import prefect.concurrency._leases as leases

import flows  # noqa: F401  (installs the change)
from flows.leases import defer_first_renewal
from tests.prefect_patches import assert_installed_once


def fake_prefect(fraction: float = 0.75) -> tuple[types.ModuleType, list[Any]]:
    """A module shaped like prefect.concurrency._leases whose loop records its calls."""
    calls: list[Any] = []
    module = types.ModuleType("fake_leases")

    def _lease_renewal_loop(
        lease_id: uuid.UUID, lease_duration: float, stop_event: threading.Event
    ) -> None:
        calls.append((lease_id, lease_duration, time.monotonic()))

    module._lease_renewal_loop = _lease_renewal_loop  # type: ignore[attr-defined]
    module._RENEWAL_FRACTION = fraction  # type: ignore[attr-defined]
    return module, calls


def test_installed_for_this_prefect() -> None:
    assert_installed_once(defer_first_renewal, leases, "_lease_renewal_loop")


def test_a_lease_released_early_is_never_renewed() -> None:
    module, calls = fake_prefect()
    assert defer_first_renewal(module)
    stop = threading.Event()
    thread = threading.Thread(target=module._lease_renewal_loop, args=(uuid.uuid4(), 60.0, stop))
    thread.start()
    time.sleep(0.05)
    stop.set()  # the slave ended: Prefect stops the renewal thread and joins it
    thread.join(timeout=1)
    assert not thread.is_alive() and calls == []


def test_prefect_s_loop_runs_once_3_4_of_the_lease_have_passed() -> None:
    module, calls = fake_prefect()
    assert defer_first_renewal(module)
    lease = uuid.uuid4()
    start = time.monotonic()
    module._lease_renewal_loop(lease, 0.2, threading.Event())
    assert [(lid, duration) for lid, duration, _ in calls] == [(lease, 0.2)]
    assert calls[0][2] - start >= 0.15


def test_a_prefect_without_that_loop_is_left_alone() -> None:
    other = types.ModuleType("other")
    assert defer_first_renewal(other) is False
    module, _ = fake_prefect(fraction=1.5)  # not a fraction of the lease
    loop = module._lease_renewal_loop
    assert defer_first_renewal(module) is False and module._lease_renewal_loop is loop

    def _lease_renewal_loop(lease_id: uuid.UUID, stop_event: threading.Event) -> None: ...

    module._lease_renewal_loop = _lease_renewal_loop  # type: ignore[attr-defined]
    assert defer_first_renewal(module) is False
