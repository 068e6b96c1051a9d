"""The master's bookkeeping yields to drive hand-offs (flows/backup._settled)."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest

import flows.backup as backup
from flows.backup import _Finished, _settled


def finished(handed_off: float | None) -> _Finished:
    return _Finished(future=None, spec=None, error=None, handed_off=handed_off)  # type: ignore[arg-type]


def put_later(done: queue.Queue[Any], item: _Finished, after: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(after), done.put(item)))
    thread.start()
    return thread


@pytest.fixture
def short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup, "HANDOFF_GRACE", 0.2)
    monkeypatch.setattr(backup, "MAX_DEFER", 0.6)


def test_without_a_hand_off_the_result_is_taken_at_once(short: None) -> None:
    done: queue.Queue[_Finished] = queue.Queue()
    first = finished(None)
    done.put(first)
    later = put_later(done, finished(None), 0.3)
    assert _settled(done) == [first]
    later.join()


def test_a_hand_off_gets_its_grace_and_the_slaves_ending_meanwhile_join(short: None) -> None:
    done: queue.Queue[_Finished] = queue.Queue()
    start = time.monotonic()
    first, second = finished(start), finished(None)
    done.put(first)
    meanwhile = put_later(done, second, 0.05)
    batch = _settled(done)
    assert batch == [first, second]
    assert time.monotonic() - start >= backup.HANDOFF_GRACE
    meanwhile.join()


def test_hand_offs_in_a_row_never_defer_past_the_limit(short: None) -> None:
    done: queue.Queue[_Finished] = queue.Queue()
    start = time.monotonic()
    done.put(finished(start))
    stop = threading.Event()

    def keep_ending() -> None:  # a slave ends (and hands off) every 50 ms
        while not stop.wait(0.05):
            done.put(finished(time.monotonic()))

    ender = threading.Thread(target=keep_ending)
    ender.start()
    try:
        batch = _settled(done)
    finally:
        stop.set()
        ender.join()
    took = time.monotonic() - start
    assert backup.MAX_DEFER <= took < backup.MAX_DEFER + 0.5
    assert len(batch) > 1
