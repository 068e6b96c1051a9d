"""The master's bookkeeping yields to drive hand-offs (flows/backup._settled)."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest

import flows.backup as backup
from flows.backup import _Finished, _settled


def finished(handed_off: float | None, last_round: bool = False) -> _Finished:
    return _Finished(None, None, None, handed_off, last_round)  # type: ignore[arg-type]


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


def test_the_last_round_is_taken_in_one_batch_when_its_last_slave_ends(short: None) -> None:
    """Nothing left to submit: a slave that ends while others still run waits for them, so
    the job's last slaves are recorded together (with the job's end), not one by one."""
    done: queue.Queue[_Finished] = queue.Queue()
    start = time.monotonic()
    first, second, last = finished(None, True), finished(None, True), finished(None, False)
    done.put(first)
    threads = [put_later(done, second, 0.05), put_later(done, last, 0.15)]
    assert _settled(done) == [first, second, last]
    assert time.monotonic() - start < backup.MAX_DEFER  # taken as the last one ended
    for thread in threads:
        thread.join()


def test_a_long_last_slave_does_not_hold_the_others_past_the_limit(short: None) -> None:
    done: queue.Queue[_Finished] = queue.Queue()
    start = time.monotonic()
    done.put(first := finished(None, True))
    longer = put_later(done, finished(None, False), backup.MAX_DEFER + 0.4)
    assert _settled(done) == [first]
    assert backup.MAX_DEFER <= time.monotonic() - start < backup.MAX_DEFER + 0.3
    longer.join()
