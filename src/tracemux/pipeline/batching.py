"""One lane per destination: its buffer, its batches, its retries.

A lane lives on the export thread. Records are appended in the order they were drained
from the queue, and leave in that order: a batch is taken from the front and removed
only once it is delivered or given up, so retries keep per-run order. Each lane has its
own buffer bound, so one destination that is down fills its own buffer and drops its own
records (counted), while the others carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import operator
import random
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from tracemux.destinations.base import Destination, Exporter, ExportError
from tracemux.model import Record
from tracemux.ratelimit import rate_limited

log = logging.getLogger(__name__)
_warn = rate_limited(log, interval=30.0)  # retry warnings: docs/guarantees.md

DROP_BUFFER_FULL = "destination_buffer_full"
DROP_EXPORT_ERROR = "export_error"
DROP_TOO_LARGE = "too_large"
DROP_SHUTDOWN = "shutdown"
DROP_EVICTED = "destination_evicted"

#: an unexpected exception (a bug, not the network) is retried this many times, then dropped
MAX_UNEXPECTED_FAILURES = 3

#: What holding one record costs the pipeline beyond its ``nbytes`` (what the recording
#: side counts: the captured values, the name, a fixed part for the object): the three
#: 64-bit integers (span id, start, end; 40 bytes each), the headers of the bytes objects
#: of inputs and outputs (33 each), allocator rounding, and the slots of the queue's and
#: the lanes' deques. Charged for every record from ``put`` to its release, so that the
#: byte bound is a bound on memory (tests/pipeline/test_memory_bound.py measures it).
RECORD_HOLD_BYTES = 192

#: how long one lane task may keep exporting batch after batch to a synchronous exporter
#: (one that returns without awaiting) before it gives the event loop back
SYNC_EXPORT_BUDGET = 0.02

_NBYTES = operator.attrgetter("nbytes")
_IS_SPAN = operator.attrgetter("is_span")


@dataclass
class LaneStats:
    """Counters of one destination, as reported by ``stats()``."""

    exported: int = 0
    batches: int = 0
    failures: int = 0
    retries: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "exported": self.exported,
            "batches": self.batches,
            "failures": self.failures,
            "retries": self.retries,
            "dropped": dict(self.dropped),
        }


class Lane:
    """The buffer and export state of one destination."""

    def __init__(
        self,
        destination: Destination,
        *,
        books: AbstractContextManager[Any] | None = None,
        release: Callable[[int, int], None],
        on_drop: Callable[[str, int], None],
        on_done: Callable[[Lane], None],
        max_spans: int,
        max_bytes: int,
        interval: float,
    ) -> None:
        self.destination = destination
        self.label = destination.describe()
        self.exporter: Exporter | None = None  # opened on the first export, retried on failure
        # held while an export's outcome is booked; a shutdown that gives up on the export
        # thread takes it to count what is left, and sets ``abandoned``: from then on
        # nothing is booked, so no record is counted both as dropped and as exported
        self._books = books if books is not None else contextlib.nullcontext()
        self.abandoned = False
        # records of the batch in the exporter when the lane was abandoned: its outcome
        # (delivered or not) is booked through ``on_late`` if the export ever returns
        self.late = 0
        self.on_late: Callable[[Lane, int, int], None] | None = None
        self._batch_len = 0
        # the abandoned export thread still stuck in this destination's exporter, if any:
        # while it is alive, nothing more is sent there (the buffer holds, within its bound)
        self.blocked_by: Any = None
        self.calling = False  # inside the exporter's (or open's) own code right now
        self.stats = LaneStats()
        self._release = release
        self._on_drop = on_drop
        self._on_done = on_done
        self._max_spans = max_spans
        self._max_bytes = max_bytes
        self._interval = interval
        self._buffer: deque[Record] = deque()
        self._bytes = 0
        self._oldest = 0.0  # monotonic time the front record was appended
        self._batch_limit = destination.max_batch
        self._not_before = 0.0  # backoff: no attempt before this monotonic time
        self._attempt = 0
        self._unexpected = 0
        self.task: asyncio.Task[None] | None = None
        self.appended = 0  # records ever appended (or dropped on arrival)
        self.completed = 0  # records ever delivered or given up, in order
        # records appended before this count may be held by other lanes too (``refs``)
        self._shared_until = 0
        self._urgent = False  # the last poke asked to export whatever is buffered
        self.flush_to = 0  # export regardless of batch size until completed reaches this
        self.last_active = time.monotonic()

    # -- filling ------------------------------------------------------------------------

    def append(self, record: Record, *, shared: bool = False) -> None:
        """Append one record, or drop it (counted) if the buffer is full. ``shared``: other
        lanes hold it too (its ``refs`` says how many)."""
        self.appended += 1
        nbytes = record.nbytes
        if (
            len(self._buffer) >= self._max_spans
            or self._bytes + nbytes + RECORD_HOLD_BYTES > self._max_bytes
        ):
            self.completed += 1
            if record.is_span:
                self._count_drop(DROP_BUFFER_FULL, 1)
            if shared:
                record.refs -= 1
            if not shared or record.refs <= 0:
                self._release(1, nbytes)
            return
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append(record)
        self._bytes += nbytes + RECORD_HOLD_BYTES
        if shared:
            self._shared_until = self.appended

    def extend(self, records: list[Record], nbytes: int, *, shared: bool = False) -> None:
        """Append ``records`` (``nbytes`` of content in all): one bound check when they
        all fit. ``shared``: other lanes hold them too (each one's ``refs`` says how many);
        a record this lane alone holds is released when it leaves this lane."""
        buf = self._buffer
        held = nbytes + len(records) * RECORD_HOLD_BYTES
        if len(buf) + len(records) > self._max_spans or self._bytes + held > self._max_bytes:
            for record in records:
                self.append(record, shared=shared)
            return
        if not buf:
            self._oldest = time.monotonic()
        buf.extend(records)
        self._bytes += held
        self.appended += len(records)
        if shared:
            self._shared_until = self.appended

    @property
    def pending(self) -> int:
        return len(self._buffer)

    @property
    def busy(self) -> bool:
        return self.task is not None

    @property
    def failing(self) -> bool:
        """Whether the last export failed and this lane backs off before the next try."""
        return self._attempt > 0

    # -- exporting ----------------------------------------------------------------------

    def poke(self, now: float, *, urgent: bool = False) -> None:
        """Start an export if one is due and none is running."""
        if self.task is not None:
            return
        self._urgent = urgent
        if self._due(now):
            self.task = asyncio.get_running_loop().create_task(self._export_front())

    def _due(self, now: float) -> bool:
        """Whether an export should start now (none running)."""
        if not self._buffer or now < self._not_before or self.abandoned:
            return False
        if self.blocked_by is not None:
            if self.blocked_by.is_alive():
                return False
            self.blocked_by = None
        return (
            self._urgent
            or len(self._buffer) >= self._batch_limit
            or self.flush_to > self.completed
            or now - self._oldest >= self._interval
        )

    async def _export_front(self) -> None:
        """Export the front batch; while the exporter answers synchronously and more is
        due, the next one too, within :data:`SYNC_EXPORT_BUDGET` (one event-loop turn, and
        so one hand-over of the GIL, for many batches rather than one each)."""
        budget_end = time.monotonic() + SYNC_EXPORT_BUDGET
        try:
            while await self._export_batch():
                now = time.monotonic()
                if now >= budget_end or not self._due(now):
                    break
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in the bookkeeping itself: say so, keep the thread alive
            _warn.internal_error(("lane", self.label), "tracemux: lane %s failed", self.label)
        finally:
            self.task = None
            self.last_active = time.monotonic()
        self._on_done(self)

    async def _export_batch(self) -> bool:
        """Export the front batch and book the outcome. True if it was delivered without
        awaiting anything (another batch may follow in the same task)."""
        batch = list(itertools.islice(self._buffer, self._batch_limit))
        self._batch_len = len(batch)
        result = None
        try:
            self.calling = True  # a synchronous call that never returns is seen here
            try:
                exporter = self.exporter
                if exporter is None:
                    exporter = self.exporter = self._open()
                result = exporter.export(batch)
            finally:
                self.calling = False
            if inspect.isawaitable(result):
                await result
        except ExportError as exc:
            with self._books:
                if not self.abandoned:
                    self._failed(batch, exc)
                else:
                    self._book_late(batch, delivered=False)
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            with self._books:
                if not self.abandoned:
                    self._unexpected_failure(batch, exc)
                else:
                    self._book_late(batch, delivered=False)
            return False
        with self._books:
            if self.abandoned:
                self._book_late(batch, delivered=True)
                return False
            self._delivered(batch)
        return result is None

    def _open(self) -> Exporter:
        try:
            return self.destination.open()
        except ExportError:
            raise
        except Exception as exc:  # a file that is locked, a disk that is full: try later
            raise ExportError(f"cannot open: {type(exc).__name__}: {exc}") from None

    def _unexpected_failure(self, batch: list[Record], exc: Exception) -> None:
        self._unexpected += 1
        if self._unexpected >= MAX_UNEXPECTED_FAILURES:
            _warn.warning(
                ("unexpected", self.label),
                "tracemux: dropping %d spans for %s after %d failures: %s: %s",
                _span_count(batch),
                self.label,
                self._unexpected,
                type(exc).__name__,
                exc,
            )
            self._give_up(len(batch), DROP_EXPORT_ERROR)
        else:
            self._failed(batch, ExportError(f"{type(exc).__name__}: {exc}"))

    def _delivered(self, batch: list[Record]) -> None:
        n = len(batch)
        self.stats.exported += sum(map(_IS_SPAN, batch))
        self.stats.batches += 1
        self._attempt = 0
        self._unexpected = 0
        self._batch_limit = self.destination.max_batch
        self._pop(n)

    def _failed(self, batch: list[Record], exc: ExportError) -> None:
        self.stats.failures += 1
        if exc.too_large:
            if len(batch) > 1:
                self._batch_limit = max(1, len(batch) // 2)
                self.stats.retries += 1
                return
            _warn.warning(
                ("too_large", self.label),
                "tracemux: %s rejected a single span as too large; dropped (%s)",
                self.label,
                exc,
            )
            self._give_up(1, DROP_TOO_LARGE)
            return
        if not exc.retryable:
            _warn.warning(
                ("rejected", self.label, exc.reason),
                "tracemux: %s rejected %d spans; dropped (%s)",
                self.label,
                _span_count(batch),
                exc,
            )
            self._give_up(len(batch), exc.reason)
            return
        self._attempt += 1
        self.stats.retries += 1
        delay = min(30.0, 0.25 * 2 ** (self._attempt - 1)) * random.uniform(0.5, 1.0)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, 300.0))
        self._not_before = time.monotonic() + delay
        _warn.warning(
            ("retry", self.label),
            "tracemux: export to %s failed (%s); retrying %d spans in %.1fs",
            self.label,
            exc,
            _span_count(batch),
            delay,
        )

    def _give_up(self, n: int, reason: str) -> None:
        self._attempt = 0
        self._unexpected = 0
        self._batch_limit = self.destination.max_batch
        self._drop_front(n, reason)

    def _drop_front(self, n: int, reason: str) -> None:
        """Drop the ``n`` oldest buffered records, counting their spans for ``reason``."""
        self._count_drop(reason, sum(1 for r in itertools.islice(self._buffer, n) if r.is_span))
        self._pop(n)

    def _pop(self, n: int) -> None:
        """Remove ``n`` records from the front; release those no other lane holds."""
        buf = self._buffer
        if n >= len(buf):
            popped = list(buf)
            buf.clear()
        else:
            popped = list(itertools.starmap(buf.popleft, itertools.repeat((), n)))
        n = len(popped)
        popped_bytes = freed_bytes = sum(map(_NBYTES, popped))
        freed = n
        if self.completed < self._shared_until:  # some may be held by other lanes too
            freed = freed_bytes = 0
            for record in popped[: self._shared_until - self.completed]:
                refs = getattr(record, "refs", 0) - 1
                record.refs = refs
                if refs <= 0:
                    freed += 1
                    freed_bytes += record.nbytes
            for record in popped[self._shared_until - self.completed :]:
                freed += 1
                freed_bytes += record.nbytes
        self._bytes -= popped_bytes + n * RECORD_HOLD_BYTES
        if freed:
            self._release(freed, freed_bytes)
        self.completed += n
        if buf:
            self._oldest = time.monotonic()

    def abandon(self, reason: str) -> int:
        """The export thread is given up on: count what is buffered as dropped for
        ``reason`` (in this lane's counters only; returns how many spans), except the batch
        in the exporter right now, whose outcome is booked if its export ever returns."""
        records = tuple(self._buffer)  # tuple() copies a deque without running Python code
        self.late = min(self._batch_len, len(records)) if self.calling else 0
        spans = sum(1 for r in records[self.late :] if r.is_span)
        if spans:
            self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + spans
        self.abandoned = True  # an export finishing now books only that batch
        return spans

    @property
    def late_spans(self) -> int:
        """Spans of the batch still in an abandoned export (neither delivered nor dropped)."""
        return sum(1 for r in tuple(self._buffer)[: self.late] if r.is_span)

    def _book_late(self, batch: list[Record], *, delivered: bool) -> None:
        if not self.late:
            return
        spans = sum(1 for r in batch[: self.late] if r.is_span)
        self.late = 0
        if self.on_late is not None:
            self.on_late(self, spans if delivered else 0, 0 if delivered else spans)

    def shed(self, n: int) -> int:
        """Give up the ``n`` oldest buffered records, counted as ``destination_buffer_full``
        (to make room in the pipeline's bound for the other destinations). Nothing is shed
        while an export is running: its batch is the front of the buffer. Returns the
        records given up."""
        if self.task is not None or self.calling or self.abandoned or n <= 0:
            return 0
        n = min(n, len(self._buffer))
        self._drop_front(n, DROP_BUFFER_FULL)
        return n

    def drop_all(self, reason: str, *, count: bool = True) -> int:
        """Give up everything still buffered (shutdown, eviction). Returns spans dropped.

        ``count=False``: they were counted already (by a shutdown that gave up waiting)."""
        spans = sum(1 for r in self._buffer if r.is_span)
        if spans and count:
            self._count_drop(reason, spans)
        self._pop(len(self._buffer))
        return spans

    def _count_drop(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        dropped = self.stats.dropped
        dropped[reason] = dropped.get(reason, 0) + n
        self._on_drop(reason, n)

    async def close(self) -> None:
        if self.exporter is None:
            return
        result = self.exporter.close()
        if inspect.isawaitable(result):
            await result


def _span_count(batch: list[Record]) -> int:
    """The spans in ``batch`` (it may also hold run-start records, which are not spans)."""
    return sum(1 for r in batch if r.is_span)
