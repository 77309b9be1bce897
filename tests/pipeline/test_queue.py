"""SpanQueue.put: the bound by count and by bytes, every drop counted, re-entrant."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tracemux.pipeline.queue import DROP_QUEUE_BYTES, DROP_QUEUE_FULL, SpanQueue


class _Span:
    is_span = True


class _Start:
    is_span = False


def test_the_count_bound_drops_and_counts_what_does_not_fit():
    q = SpanQueue(max_spans=3, max_bytes=10**9)
    hooked: list[tuple[Any, str]] = []
    q.on_span_drop = lambda item, reason: hooked.append((item, reason))
    spans = [_Span() for _ in range(5)]
    assert [q.put(s, 10) for s in spans] == [True, True, True, False, False]
    assert q.dropped == {DROP_QUEUE_FULL: 2}
    assert hooked == [(spans[3], DROP_QUEUE_FULL), (spans[4], DROP_QUEUE_FULL)]
    assert q.accepted == 3 and q.in_flight == (3, 30)
    q.release(1, 10)  # a destination is done with one: room for one more
    assert q.put(spans[3], 10) is True
    assert q.in_flight == (3, 30)


def test_the_byte_bound_holds_exactly_and_counts_its_drops():
    q = SpanQueue(max_spans=10**6, max_bytes=1000)
    results = [q.put(_Span(), 300) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert q.in_flight == (3, 900)
    assert q.put(_Span(), 100) is True  # exactly at the bound fits
    assert q.put(_Span(), 1) is False
    assert q.in_flight == (4, 1000)
    assert q.dropped == {DROP_QUEUE_BYTES: 3}


def test_a_run_start_that_does_not_fit_is_refused_but_not_counted_as_a_span():
    q = SpanQueue(max_spans=1, max_bytes=10**6)
    assert q.put(_Start(), 10) is True
    assert q.put(_Start(), 10) is False
    assert q.accepted == 0 and q.dropped == {}


def test_a_closed_queue_refuses_without_counting():
    q = SpanQueue(max_spans=10, max_bytes=10**6)
    q.put(_Span(), 5)
    assert len(q.close()) == 1
    assert q.put(_Span(), 5) is None
    assert q.accepted == 1 and q.in_flight == (1, 5) and q.dropped == {}


def test_the_consumer_is_woken_once_per_batch():
    q = SpanQueue(max_spans=10**6, max_bytes=10**9, wake_at=4)
    wakes: list[int] = []
    q.wake = lambda: wakes.append(len(q))
    for _ in range(10):
        q.put(_Span(), 1)
    assert wakes == [4]  # the 4th put made the batch; the consumer takes it from there
    q.take_all()
    for _ in range(4):
        q.put(_Span(), 1)
    assert wakes == [4, 4]


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_puts_from_a_signal_handler_interrupting_a_put_are_all_counted():
    """A handler that records while its thread is inside put (holding the lock) neither
    deadlocks nor loses count: every accepted byte and every drop is accounted for."""
    q = SpanQueue(max_spans=5000, max_bytes=10**9)
    outcomes = {True: 0, False: 0}

    def handler(signum: int, frame: Any) -> None:
        outcomes[q.put(_Span(), 7)] += 1

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
    try:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            outcomes[q.put(_Span(), 7)] += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert outcomes[True] == 5000  # the bound was reached: every put after it dropped
    assert q.in_flight == (5000, 5000 * 7) and q.accepted == 5000 and len(q) == 5000
    assert q.dropped == {DROP_QUEUE_FULL: outcomes[False]}
