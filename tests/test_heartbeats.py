"""Flow runs do not wait for Prefect's heartbeat thread to wake (flows/heartbeats.py)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import prefect.flow_engine as flow_engine

import flows  # noqa: F401  (installs the change)
from flows.heartbeats import unjoined_heartbeats
from tests.prefect_patches import assert_installed_once


class FakeEngine:
    """What Prefect's heartbeat context reads from its flow-run engine."""

    heartbeat_seconds = 30
    flow_run = None
    logger = logging.getLogger("test-heartbeats")

    def __init__(self) -> None:
        self.beats = 0
        self.emitted = threading.Event()

    def _build_heartbeat_event_template(self) -> tuple[dict[str, str], list[Any]]:
        return {}, []

    def _emit_flow_run_heartbeat(self, resource: Any, related: Any) -> None:
        self.beats += 1
        self.emitted.set()


def test_installed_for_this_prefect() -> None:
    assert_installed_once(unjoined_heartbeats, flow_engine, "_send_heartbeats")


def test_the_run_ends_while_the_thread_sleeps_and_the_thread_stops_silently() -> None:
    engine = FakeEngine()
    before = set(threading.enumerate())
    with flow_engine._send_heartbeats(engine):
        assert engine.emitted.wait(10)  # the first heartbeat goes out as the run starts
        (thread,) = set(threading.enumerate()) - before
    assert thread.is_alive()  # not joined: the run's end did not wait out the 1 s step
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert engine.beats == 1  # it stopped without another heartbeat


def test_prefect_without_the_join_parameter_is_left_alone() -> None:
    class Module:
        @staticmethod
        def _send_heartbeats(engine: Any) -> None:  # a Prefect whose context takes no flag
            return None

    original = Module._send_heartbeats
    assert unjoined_heartbeats(Module) is False  # type: ignore[arg-type]
    assert Module._send_heartbeats is original
