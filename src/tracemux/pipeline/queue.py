"""The hand-off between recording threads and the export thread.

Bounded by count and by bytes. The bound covers a record from the moment it is put until
every destination it goes to is done with it (exported or dropped), so a destination that
is down cannot make memory grow past the bound: new records are dropped instead, and
every drop is counted by reason. The lock is held only for O(1) work on either side.

The lock is re-entrant: a signal handler (or any code the interrupted thread runs) that
records a span while its own thread is inside ``put`` must not deadlock on it. Between
two bytecodes the queue's state is consistent, so a nested ``put`` is safe.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

#: Drop reasons counted by the queue itself.
DROP_QUEUE_FULL = "queue_full"
DROP_QUEUE_BYTES = "queue_bytes"


class SpanQueue:
    """A bounded, counting hand-off queue. ``wake`` is called when a batch is ready."""

    __slots__ = (
        "_bytes",
        "_count",
        "_dropped",
        "_dropped_bytes",
        "_dropped_full",
        "_items",
        "_lock",
        "_previous",
        "accepted",
        "closed",
        "max_bytes",
        "max_spans",
        "on_span_drop",
        "wake",
        "wake_at",
    )

    def __init__(self, max_spans: int, max_bytes: int, wake_at: int = 512) -> None:
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self.wake_at = wake_at
        self.wake: Callable[[], None] | None = None
        self._lock = threading.RLock()
        self._items: deque[Any] = deque()
        self._count = 0  # records in flight: in the queue or in a destination lane
        self._bytes = 0
        self._dropped: dict[str, int] = {}  # by the export side (count_drop)
        # by put, apart: `+= 1` on an int attribute has no point where a signal handler
        # can run in the middle (a dict's get-then-set has one: its nested drop was lost)
        self._dropped_full = 0
        self._dropped_bytes = 0
        self.accepted = 0  # spans accepted (run-start records are not counted)
        self.closed = False  # replaced by a fresh queue: put() refuses, the caller retries
        self._previous: SpanQueue | None = None  # the closed queue this one replaced
        #: called (outside the lock) with each span the bound drops and the reason
        self.on_span_drop: Callable[[Any, str], None] | None = None

    def put(self, item: Any, nbytes: int) -> bool | None:
        """Add a record, or count it as dropped if the bound is reached. Never blocks long.

        True: queued; False: dropped (counted); None: this queue was closed (replaced by a
        fresh one), nothing counted: put it on the current queue instead."""
        with self._lock:
            if self.closed:
                return None
            if self._count < self.max_spans and self._bytes + nbytes <= self.max_bytes:
                self._count += 1  # (+= in place: a signal handler's nested put is not lost)
                self._bytes += nbytes
                if item.is_span:  # counted first: a signal handler may run in append
                    self.accepted += 1
                items = self._items
                items.append(item)
                if len(items) != self.wake_at:
                    return True
                reason = None  # a batch is ready: wake the consumer, outside the lock
            else:
                if not item.is_span:
                    return False
                if self._count >= self.max_spans:
                    reason = DROP_QUEUE_FULL
                    self._dropped_full += 1
                else:
                    reason = DROP_QUEUE_BYTES
                    self._dropped_bytes += 1
        if reason is None:
            wake = self.wake
            if wake is not None:
                wake()
            return True
        hook = self.on_span_drop  # called outside the lock
        if hook is not None:
            hook(item, reason)
        return False

    def put_control(self, item: Any) -> bool:
        """Add an unbounded control item (a flush marker) and wake the consumer; False if
        this queue was closed."""
        with self._lock:
            if self.closed:
                return False
            self._items.append(item)
        wake = self.wake
        if wake is not None:
            wake()
        return True

    def requeue_front(self, items: deque[Any]) -> None:
        """Put back ``items`` (taken by :meth:`take`, still counted) at the front, in order."""
        if items:
            with self._lock:
                self._items.extendleft(reversed(items))

    def snapshot(self) -> tuple[Any, ...]:
        """What is queued now, in order (nothing is removed)."""
        with self._lock:
            return tuple(self._items)

    def replaces(self, old: SpanQueue) -> None:
        """This queue takes over from ``old`` (closed): :attr:`recorded` and :attr:`dropped`
        include ``old``'s counts, also those made on it later (a put interrupted by the
        swap, an abandoned export thread finishing its counting). Each replaced queue
        costs a few counters; its records are released by whoever counts them."""
        self._previous = old

    def close(self) -> tuple[Any, ...]:
        """Refuse further puts; returns what is still queued (it stays counted)."""
        with self._lock:
            self.closed = True
            return tuple(self._items)

    def take_all(self) -> deque[Any]:
        """Everything queued so far, in order (the records stay counted until released)."""
        with self._lock:
            items = self._items
            if items:
                self._items = deque()
            else:
                items = deque()
        return items

    def take(self, limit: int) -> deque[Any]:
        """Up to ``limit`` items from the front, in order; the rest stay queued."""
        with self._lock:
            items = self._items
            if len(items) <= limit:
                self._items = deque()
                return items
            popleft = items.popleft
            return deque([popleft() for _ in range(limit)])

    def release(self, count: int, nbytes: int) -> None:
        """Records that every destination is done with no longer count against the bound."""
        with self._lock:
            self._count -= count
            self._bytes -= nbytes

    def count_drop(self, reason: str, n: int = 1) -> None:
        """Count records dropped for ``reason`` (by the queue or by the export side)."""
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + n

    def __len__(self) -> int:
        return len(self._items)

    @property
    def in_flight(self) -> tuple[int, int]:
        """(records, bytes) accepted and not yet released."""
        return self._count, self._bytes

    @property
    def recorded(self) -> int:
        """Spans accepted or dropped by the bound, here and on the queues this one
        replaced: every span a caller recorded."""
        total = 0
        queue: SpanQueue | None = self
        while queue is not None:
            total += queue.accepted + queue._dropped_full + queue._dropped_bytes
            queue = queue._previous
        return total

    @property
    def dropped(self) -> dict[str, int]:
        """Drops so far, by reason, here and on the queues this one replaced (a copy)."""
        out: dict[str, int] = {}
        queue: SpanQueue | None = self
        while queue is not None:
            with queue._lock:
                counts = [
                    *queue._dropped.items(),
                    (DROP_QUEUE_FULL, queue._dropped_full),
                    (DROP_QUEUE_BYTES, queue._dropped_bytes),
                ]
            for reason, n in counts:
                if n:
                    out[reason] = out.get(reason, 0) + n
            queue = queue._previous
        return out
