"""The one export thread of the process, and the pipeline around it.

``ExportWorker`` owns the queue (:mod:`tracemux.pipeline.queue`) and starts a single daemon
thread named ``tracemux-export`` lazily on the first record; the thread runs a
:class:`~tracemux.pipeline.session.Session` (drain, mask, route to the lanes of
:mod:`tracemux.pipeline.batching`). This module is the worker's lifecycle and its
counters; the limits are :class:`~tracemux.pipeline.settings.PipelineSettings`.

Lifecycle, all in this module:
- ``flush(timeout)``: a marker travels through the queue; it completes when every lane
  has delivered or given up everything appended before it.
- ``shutdown(timeout)``: flush, then stop; returns within the timeout even if an
  exporter hangs (a stuck worker is abandoned, its records counted as dropped).
- at interpreter exit: shutdown with ``exit_timeout``.
- after ``fork()``: the child gets a fresh queue and no thread; a new one starts on its
  first record. The parent's exporters are never touched in the child.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

from tracemux.destinations.base import Destination
from tracemux.errors import ConfigError
from tracemux.model import Record
from tracemux.pipeline.batching import DROP_SHUTDOWN, RECORD_HOLD_BYTES, Lane, LaneStats
from tracemux.pipeline.queue import SpanQueue
from tracemux.pipeline.session import FlushMarker, Session, Stop
from tracemux.pipeline.settings import PipelineSettings
from tracemux.ratelimit import rate_limited
from tracemux.reaper import open_runs

log = logging.getLogger(__name__)
_warn = rate_limited(log)

THREAD_NAME = "tracemux-export"
#: what an export thread a shutdown gave up on (stuck in an exporter) is renamed to
ABANDONED_THREAD_NAME = "tracemux-export-abandoned"


class ExportWorker:
    """The process-wide pipeline: queue, one export thread, per-destination lanes."""

    def __init__(self, settings: PipelineSettings | None = None) -> None:
        self.settings = settings or PipelineSettings()
        self._settings_owner: weakref.ref[object] | None = None  # see configure()
        # re-entrant: a signal handler may record (and so start the thread) or shut down
        # while its own thread is inside one of these sections
        self._lock = threading.RLock()
        self._in_shutdown = threading.local()  # set while this thread runs shutdown()
        self.queue = self._new_queue()
        self._session: Session | None = None
        self._thread: threading.Thread | None = None  # set until that thread ended or is abandoned
        self._starting = False
        # destinations whose export blocked a thread that a shutdown abandoned, with that
        # thread: their spans wait in their buffer (bounded) until it returns, so the next
        # shutdown is not stranded on the same export again
        self._stuck: dict[Destination, threading.Thread] = {}
        self._exit_deadline: float | None = None  # set once the exit shutdown started
        self._late_lanes: list[Lane] = []  # abandoned lanes with a batch still in an export
        self._labels: dict[Destination, str] = {}  # describe() of destinations, cached
        # sessions given up on whose thread still runs: after fork() the child must keep
        # them (their exporters' connections) alive, never closing what the parent uses
        self._abandoned: list[tuple[Session, threading.Thread]] = []
        # set once an abandoned thread has counted what it left (see _abandon)
        self._uncounted: list[threading.Event] = []
        self._late_warned = False
        self._warned: str | None = None
        self._closed_stats: dict[str, LaneStats] = {}
        # spans exported by closed lanes whose counters were let go (the oldest of more than
        # 1,000 labels): kept in the total so that stats()["exported"] never goes down
        self._evicted_exported = 0
        self._live_lanes: dict[int, Lane] = {}
        self._inherited: list[Any] = []  # a parent's lanes, kept alive (never closed) in a child
        self._atexit_registered = False
        self._last_shutdown_undelivered = 0
        _register_fork_hook(self)

    def _new_queue(self) -> SpanQueue:
        s = self.settings
        queue = SpanQueue(s.max_queue_spans, s.max_queue_bytes, wake_at=s.batch_size)
        queue.on_span_drop = self._queue_dropped
        return queue

    def _queue_dropped(self, record: Record, reason: str) -> None:
        """A span the queue's bound dropped: count it for each of its destinations too."""
        try:
            for dest in record.run.destinations:
                self._book_drop(dest, reason, 1)
        except Exception:  # never into the recording call
            log.debug("tracemux: could not count a queue drop per destination", exc_info=True)

    def configure(self, settings: PipelineSettings, owner: object | None = None) -> None:
        """Change the limits. Takes effect for new records (queue) and new lanes.

        The limits are the process's, shared by every service. ``owner`` (the service
        asking) claims them until :meth:`shutdown`: another owner asking for different
        limits meanwhile is a :class:`~tracemux.errors.ConfigError`, not a silent change
        under the first one's feet. The same limits again are accepted.
        """
        with self._lock:
            holder = self._settings_owner() if self._settings_owner is not None else None
            if holder is not None and holder is not owner and settings != self.settings:
                raise ConfigError(
                    "pipeline settings are process-wide and another live TracingService set "
                    f"different ones ({self.settings}); pass the same settings, or none to "
                    "use those in force, or shut the other service down first"
                )
            if owner is not None:
                self._settings_owner = weakref.ref(owner)
            self.settings = settings
            q = self.queue
            q.max_spans = settings.max_queue_spans
            q.max_bytes = settings.max_queue_bytes
            q.wake_at = settings.batch_size

    # -- hot path ------------------------------------------------------------------------

    def submit(self, record: Record) -> bool:
        """Queue a finished record; start the export thread if needed. Never blocks long
        (except during interpreter exit, see :meth:`_deliver_late`)."""
        if self._thread is None:
            self._start()
        while True:
            queued = self.queue.put(record, record.nbytes + RECORD_HOLD_BYTES)
            if queued is not None:  # None: a shutdown swapped the queue under us
                break
        if self._exit_deadline is not None:
            self._deliver_late(record)
        return queued

    # -- lifecycle ----------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._starting:
                return  # started, stopping, or being started by the code we interrupted
            if sys.is_finalizing():
                return
            self._starting = True
            try:
                self._start_locked()
            finally:
                self._starting = False

    def _start_locked(self) -> None:
        session = Session(self, self.queue)
        thread = threading.Thread(target=session.run, name=THREAD_NAME, daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # interpreter shutting down: cannot start threads
            log.debug("tracemux: cannot start the export thread: %s", exc)
            return
        session.started.wait(5.0)
        self.queue.wake = session.wake
        self._session = session
        self._thread = thread
        if not self._atexit_registered:
            atexit.register(_at_exit, weakref.ref(self))
            self._atexit_registered = True

    @property
    def running(self) -> bool:
        """Whether the export thread is alive."""
        t = self._thread
        return t is not None and t.is_alive()

    def _resume_if_queued(self) -> Session | None:
        """The running session; one is started if records wait in the queue without a
        thread (recorded while a shutdown was stopping the last one)."""
        if self._session is None and self._thread is None and self.queue.in_flight[0]:
            self._start()
        return self._session

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything recorded before the call is exported or counted dropped."""
        deadline = time.monotonic() + max(0.0, timeout)
        session = self._resume_if_queued()
        if session is None:
            return self.queue.in_flight[0] == 0 and self._wait_counted(deadline)
        if threading.current_thread() is self._thread:
            return False  # an exporter cannot wait for itself
        done = threading.Event()
        marker = FlushMarker(done.set)
        if not self.queue.put_control(marker):
            return False  # a shutdown gave up on the thread meanwhile
        delivered = done.wait(max(0.0, timeout)) and not marker.aborted
        return delivered and session is self._session and self._wait_counted(deadline)

    def _wait_counted(self, deadline: float) -> bool:
        """Wait (until ``deadline``) for abandoned threads still counting what they left."""
        for counted in list(self._uncounted):
            if not counted.wait(max(0.0, deadline - time.monotonic())):
                return False
        self._uncounted = [e for e in self._uncounted if not e.is_set()]
        return True

    async def aflush(self, timeout: float = 5.0) -> bool:
        """Like :meth:`flush`, awaited on the caller's event loop without blocking it."""
        if self._resume_if_queued() is None:
            return self.queue.in_flight[0] == 0
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done() -> None:
            def set_result() -> None:
                if not fut.done():
                    fut.set_result(None)

            try:
                loop.call_soon_threadsafe(set_result)
            except RuntimeError:  # the caller gave up (timeout) and its loop is closed
                pass

        marker = FlushMarker(done)
        if not self.queue.put_control(marker):
            return False
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout=max(0.0, timeout))
        except asyncio.TimeoutError:
            return False
        while any(not counted.is_set() for counted in self._uncounted):  # rare: poll
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return not marker.aborted

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Flush, stop the export thread and close every exporter, within ``timeout``.

        Returns True when everything was delivered and the thread ended. Whatever could not
        be delivered in time is counted as dropped with reason ``shutdown``. Records that
        arrive while it stops are delivered, counted, or left queued for the next thread;
        recording afterwards starts a new export thread. Safe to call from several threads
        at once, and from a signal handler: there is never more than one export thread.
        A call re-entered on the same thread (a signal handler interrupting this thread's
        own shutdown) returns False at once: the call it interrupted finishes the job.
        """
        if getattr(self._in_shutdown, "active", False):
            return False
        self._in_shutdown.active = True
        try:
            return self._shutdown(timeout)
        finally:
            self._in_shutdown.active = False

    def _shutdown(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._settings_owner = None  # the next service may set its own limits
            session, thread = self._session, self._thread
            if session is None or thread is None:
                return self.queue.in_flight[0] == 0
            if session.stop is None and not session.stop_requested:
                session.stop_requested = True
                session.shutdown_drops_before = self._shutdown_drops()
                # deliver what it can until shortly before the deadline
                margin = min(0.25, max(0.0, timeout) * 0.2)
                self.queue.put_control(Stop(deadline - margin))
        if thread is threading.current_thread():
            return False  # an exporter cannot wait for its own thread: it stops after this
        thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._session is not session:  # another shutdown finished it meanwhile
                return self._last_shutdown_undelivered == 0 and not thread.is_alive()
            if thread.is_alive():
                self._abandon(session, thread)
                return False
            self._session = None
            self._thread = None
            self.queue.wake = None
            undelivered = self._shutdown_drops() - session.shutdown_drops_before
            self._last_shutdown_undelivered = undelivered
            return undelivered == 0

    def _shutdown_drops(self) -> int:
        return self.queue.dropped.get(DROP_SHUTDOWN, 0)

    def _abandon(self, session: Session, thread: threading.Thread) -> None:
        """The thread is stuck in an exporter: leave it (it is a daemon) and start clean.

        Called with ``self._lock`` held."""
        session.abandoned = True
        self._abandoned = [(s, t) for s, t in self._abandoned if t.is_alive()]
        self._abandoned.append((session, thread))
        old = self.queue
        fresh = self._new_queue()
        self.queue = fresh  # new records go here from now on...
        old.close()  # ...and a put racing with the swap is refused and retried
        fresh.replaces(old)  # counts made on old from now on (the job below) count too
        # The thread may be slow rather than stuck, in the middle of routing or booking:
        # what it left is counted by it as it lets go of its books, or now if it holds none.
        counted = threading.Event()

        def count() -> None:
            try:
                self._count_abandoned(session, old)
            finally:
                counted.set()

        if not session.books.leave(count, wait=0.05):
            self._uncounted.append(counted)  # flush() waits for it
        for lane in list(session.lanes.values()):
            if lane.calling:  # the thread is stuck in this exporter's own synchronous code:
                # never call into it again while that call hangs
                self._stuck[lane.destination] = thread
        thread.name = ABANDONED_THREAD_NAME  # the one live export thread keeps THREAD_NAME
        self._session = None
        self._thread = None

    def _count_abandoned(self, session: Session, old: SpanQueue) -> None:
        """Count what an abandoned session left: its lanes' records (unless it counted them
        itself on its way out) and what is still in its queue, once per destination that
        did not get them, in the destinations' own counters too. Runs under the session's
        books, exactly once."""
        lanes = list(session.lanes.values())
        late = 0
        if not session.counted:
            session.counted = True
            for lane in lanes:
                lane.on_late = self._book_late
                n = lane.abandon(DROP_SHUTDOWN)
                if n:
                    old.count_drop(DROP_SHUTDOWN, n)
                if lane.late:
                    self._late_lanes.append(lane)
                    late += lane.late_spans
        left = old.take_all()
        self._count_unrouted(old, left, DROP_SHUTDOWN)
        for item in left:  # nobody will reach these flush markers now: let waiters go
            if type(item) is FlushMarker and not item.aborted:
                item.aborted = True
                with _warn.capture("flush_callback", "tracemux: flush callback failed"):
                    item.callback()
        for lane in lanes:
            self.lane_closed(lane)
        count = self._shutdown_drops() - session.shutdown_drops_before
        self._last_shutdown_undelivered = count + late
        log.warning(
            "tracemux: export thread did not stop in time; %d spans not delivered"
            " (%d more in an export that has not returned)",
            count,
            late,
        )

    def _book_late(self, lane: Lane, exported: int, dropped: int) -> None:
        """The outcome of the batch an abandoned export thread was in, when it returned."""
        with self._lock:
            stats = self._stats_for(lane.label)
            stats.exported += exported
            if dropped:
                stats.dropped[DROP_SHUTDOWN] = stats.dropped.get(DROP_SHUTDOWN, 0) + dropped
                self.queue.count_drop(DROP_SHUTDOWN, dropped)
            if lane in self._late_lanes:
                self._late_lanes.remove(lane)

    def _stats_for(self, label: str) -> LaneStats:
        stats = self._closed_stats.get(label)
        if stats is None:
            stats = self._closed_stats[label] = LaneStats()
        return stats

    def _count_unrouted(self, queue: SpanQueue, items: Iterable[Any], reason: str) -> int:
        """Count queued spans that no lane got as dropped, once per destination, in the
        pipeline's and in each destination's counters. Returns how many."""
        # by destination tuple first (runs of one service share one): hashing a
        # destination (a dataclass) per span would take seconds for a full queue
        per_tuple: dict[int, list[Any]] = {}
        for item in items:
            if getattr(item, "is_span", False):
                dests = item.run.destinations
                entry = per_tuple.get(id(dests))
                if entry is None:
                    per_tuple[id(dests)] = [dests, 1]
                else:
                    entry[1] += 1
        per_dest: dict[Destination, int] = {}
        for dests, n in per_tuple.values():
            for dest in dests:
                per_dest[dest] = per_dest.get(dest, 0) + n
        total = 0
        for dest, n in per_dest.items():
            self._book_drop(dest, reason, n)
            total += n
        if total:
            queue.count_drop(reason, total)
        return total

    def _book_drop(self, dest: Destination, reason: str, n: int) -> None:
        """Count ``n`` drops in ``dest``'s own counters (kept with the closed lanes')."""
        label = self._labels.get(dest)
        if label is None:
            try:
                label = dest.describe()
            except Exception:
                label = type(dest).__name__
            if len(self._labels) >= 1000:
                self._labels.clear()
            self._labels[dest] = label
        stats = self._stats_for(label)
        stats.dropped[reason] = stats.dropped.get(reason, 0) + n

    # -- interpreter exit -----------------------------------------------------------------

    def at_exit(self) -> None:
        """At interpreter exit: deliver what is queued within ``exit_timeout``, then say in
        one WARNING line what was dropped or left undelivered, by destination and reason.

        Records made after this (in an atexit hook that ran later, or a thread still
        recording) are delivered as they come, each waiting for the rest of the same
        deadline (see :meth:`_deliver_late`)."""
        if self._exit_deadline is not None:
            return
        self._exit_deadline = time.monotonic() + self.settings.exit_timeout
        if self._session is None and self.queue.in_flight[0]:
            self._start()  # records queued after the last shutdown, with no thread yet
        if self._session is not None:
            self.shutdown(self.settings.exit_timeout)
        self._warn_undelivered()

    def _deliver_late(self, record: Record) -> None:
        """A record made after the exit shutdown: no later hook will flush it, so wait for
        it now, within what is left of the exit deadline. Past the deadline (or once the
        interpreter is finalizing) it stays queued, and one more WARNING says so."""
        left = (self._exit_deadline or 0.0) - time.monotonic()
        delivered = False
        if left > 0 and not sys.is_finalizing() and threading.current_thread() is not self._thread:
            if self._thread is None:
                self._start()
            delivered = self.flush(left)
        if not delivered and not self._late_warned:
            self._late_warned = True
            self._warned = None
            self._warn_undelivered()

    def _warn_undelivered(self) -> None:
        summary = self.undelivered_summary()
        if summary and summary != self._warned:
            self._warned = summary
            log.warning("tracemux: at exit, spans not delivered: %s", summary)

    def undelivered_summary(self) -> str:
        """Spans dropped or still queued, by destination and reason, as one line ('' if
        every span recorded so far was delivered)."""
        stats = self.stats()
        parts = []
        for label, dest in sorted(stats["destinations"].items()):
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(dest["dropped"].items()) if n)
            if reasons:
                parts.append(f"{label}: {reasons}")
        if stats["queue_size"]:
            parts.append(f"still queued: {stats['queue_size']}")
        if stats["abandoned_in_flight"]:
            parts.append(f"inside an export that never returned: {stats['abandoned_in_flight']}")
        return "; ".join(parts)

    @property
    def last_shutdown_undelivered(self) -> int:
        """How many records the last shutdown could not deliver."""
        return self._last_shutdown_undelivered

    # -- stats ----------------------------------------------------------------------------

    def stuck_thread(self, dest: Destination) -> threading.Thread | None:
        """The abandoned thread still inside an export to ``dest``, if any."""
        return self._stuck.get(dest)

    def lane_opened(self, lane: Lane) -> None:
        """A session opened ``lane``: its counters are live."""
        self._live_lanes[id(lane)] = lane

    def lane_closed(self, lane: Lane) -> None:
        """A session closed ``lane``: its counters are kept, merged per label."""
        if self._live_lanes.pop(id(lane), None) is None:
            return
        old = self._closed_stats.get(lane.label)
        if old is None:
            if len(self._closed_stats) >= 1000:
                evicted = self._closed_stats.pop(next(iter(self._closed_stats)))
                self._evicted_exported += evicted.exported
            self._closed_stats[lane.label] = lane.stats
        else:
            _merge_stats(old, lane.stats)

    def stats(self) -> dict[str, Any]:
        """Counters of the whole pipeline and of each destination."""
        per_dest: dict[str, dict[str, Any]] = {}
        for label, st in list(self._closed_stats.items()):
            per_dest[label] = st.as_dict()
        for lane in list(self._live_lanes.values()):
            d = lane.stats.as_dict()
            d["buffered"] = lane.pending
            prev = per_dest.get(lane.label)
            if prev is not None:
                for key in ("exported", "batches", "failures", "retries"):
                    d[key] = int(d[key]) + int(prev[key])  # type: ignore[call-overload]
                dropped = dict(prev["dropped"])
                for reason, n in d["dropped"].items():  # type: ignore[attr-defined]
                    dropped[reason] = dropped.get(reason, 0) + n
                d["dropped"] = dropped
            per_dest[lane.label] = d
        for lane in list(self._late_lanes):
            n = lane.late_spans
            d = per_dest.setdefault(lane.label, LaneStats().as_dict())
            d["abandoned_in_flight"] = int(d.get("abandoned_in_flight", 0)) + n  # type: ignore[call-overload]
        q = self.queue
        count, nbytes = q.in_flight
        dropped = q.dropped
        return {
            "recorded": q.recorded,
            "exported": self._evicted_exported + sum(int(d["exported"]) for d in per_dest.values()),
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
            # spans in an export a shutdown gave up on: delivered or not, if it returns
            "abandoned_in_flight": sum(
                int(d.get("abandoned_in_flight", 0))  # type: ignore[call-overload]
                for d in per_dest.values()
            ),
            "queue_size": count,
            "queue_bytes": nbytes,
            "queue_max_spans": q.max_spans,
            "queue_max_bytes": q.max_bytes,
            "destinations": per_dest,
            "threads": 1 if self.running else 0,
        }

    # -- fork and exit ------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # Everything the parent's thread owned stays untouched (never closed) in the child.
        self._inherited.append(
            (self._session, self.queue, list(self._live_lanes.values()), self._abandoned)
        )
        self._abandoned = []
        self._uncounted = []  # the parent's threads: none of them runs here
        self._lock = threading.RLock()
        self._starting = False
        self._stuck = {}
        self._late_lanes = []
        self._exit_deadline = None
        self._late_warned = False
        self._warned = None
        self.queue = self._new_queue()
        self._session = None
        self._thread = None
        self._live_lanes = {}
        self._closed_stats = {}
        self._evicted_exported = 0
        self._register_multiprocessing_exit()

    def _register_multiprocessing_exit(self) -> None:
        # multiprocessing children leave with os._exit, skipping atexit; its finalizers do run.
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.register_after_fork(self, _register_mp_finalizer)


def _register_mp_finalizer(worker: ExportWorker) -> None:
    import multiprocessing.util as mp_util

    mp_util.Finalize(None, _at_exit, args=(weakref.ref(worker),), exitpriority=100)


def _at_exit(ref: weakref.ReferenceType[ExportWorker]) -> None:
    worker = ref()
    if worker is not None:
        open_runs.end_all("still open at exit")  # exported with the rest, as incomplete
        worker.at_exit()


def _register_fork_hook(worker: ExportWorker) -> None:
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(worker)

    def after_in_child() -> None:
        w = ref()
        if w is not None:
            w._after_fork_in_child()

    os.register_at_fork(after_in_child=after_in_child)


def _merge_stats(into: LaneStats, other: LaneStats) -> None:
    into.exported += other.exported
    into.batches += other.batches
    into.failures += other.failures
    into.retries += other.retries
    for reason, n in other.dropped.items():
        into.dropped[reason] = into.dropped.get(reason, 0) + n


_shared: ExportWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> ExportWorker:
    """The process-wide pipeline every :class:`~tracemux.TracingService` submits to."""
    global _shared
    worker = _shared
    if worker is None:
        with _shared_lock:
            if _shared is None:
                _shared = ExportWorker()
            worker = _shared
    return worker
