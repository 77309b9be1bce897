"""The export thread's session: one asyncio loop that drains, masks and routes.

A :class:`Session` is the state of one running export thread. Its loop, top to bottom:
wait for a wake-up (the queue's batch threshold, a flush, a tick); drain up to
:data:`DRAIN_CHUNK` items from the queue; mask secrets in them (:mod:`tracemux.redact`);
route each record to the lanes of its run's destinations (:mod:`tracemux.pipeline.batching`),
opening lanes on first use and closing idle ones; let the lanes export concurrently; and
complete flush markers once every lane has done what came before them. On a stop item it
finishes: what is in flight is cancelled, what is left counted, exporters and shared
resources (:class:`~tracemux.destinations.base.ExportContext`) closed.

The session knows its owner only through :class:`SessionOwner` (the settings, and where
to book lanes opened and closed): the worker's lifecycle lives in
:mod:`tracemux.pipeline.worker`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from tracemux.destinations.base import Destination, ExportContext
from tracemux.model import Record, RunInfo, RunStart
from tracemux.pipeline.batching import DROP_SHUTDOWN, RECORD_HOLD_BYTES, Lane
from tracemux.pipeline.queue import SpanQueue
from tracemux.pipeline.settings import PipelineSettings
from tracemux.ratelimit import rate_limited
from tracemux.redact import CleanValues, MaskingPass

log = logging.getLogger(__name__)
_warn = rate_limited(log)

#: items routed per pass of the export loop; lanes get to export between passes. Each
#: pass gives the GIL away at least once (the loop's poll, the masking scan), and a busy
#: application thread keeps it for a whole switch interval (5 ms) before it comes back:
#: a pass must carry enough records to keep up with the application at full speed.
DRAIN_CHUNK = 4096
#: eighths of the pipeline's bound above which the destinations far behind shed records
SHED_ABOVE = 7
SHED_AT_LEAST = 256  # records a destination gives up at a time when it sheds

_RUN = operator.attrgetter("run")
_NBYTES = operator.attrgetter("nbytes")


class SessionOwner(Protocol):
    """What a session needs of the worker that runs it."""

    settings: PipelineSettings

    def stuck_thread(self, dest: Destination) -> threading.Thread | None: ...

    def lane_opened(self, lane: Lane) -> None: ...

    def lane_closed(self, lane: Lane) -> None: ...


class Books:
    """The lock under which a session routes records and books each export's outcome.

    A shutdown that gives up on the thread (:meth:`ExportWorker._abandon`) must count what
    the thread leaves behind exactly once, and never while the thread is half-way through
    booking. It hands that job to :meth:`leave`: the job runs at once if the lock is free
    (the thread waits on an exporter), else on the thread itself, as it leaves the step it
    is in (steps are short and never wait for an exporter). Re-entrant, like the RLock it
    wraps; the job runs when the outermost hold ends."""

    __slots__ = ("_depth", "_job", "_lock")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # holds by the owning thread (only the owner changes it)
        self._job: Callable[[], None] | None = None

    def __enter__(self) -> Books:
        self._lock.acquire()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._depth == 1 and self._job is not None:
                job, self._job = self._job, None
                with _warn.capture(
                    "abandon_count", "tracemux: counting an abandoned export failed"
                ):
                    job()
        finally:
            self._depth -= 1
            self._lock.release()

    def leave(self, job: Callable[[], None], wait: float) -> bool:
        """Run ``job`` under the lock: now if it is free within ``wait`` seconds (True),
        else when its holder lets go (False). Exactly once either way."""
        self._job = job  # first: a holder letting go from now on runs it
        if not self._lock.acquire(timeout=wait):
            return False
        self._depth += 1
        self.__exit__()
        return True


class FlushMarker:
    """Travels through the queue; done when every lane has completed what came before."""

    __slots__ = ("aborted", "callback", "targets")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.aborted = False  # the thread stopped before it got to this marker
        self.targets: list[tuple[Lane, int]] = []

    def is_done(self) -> bool:
        return all(lane.completed >= target for lane, target in self.targets)


class Stop:
    __slots__ = ("deadline",)

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline


class Session:
    """The state of one running export thread: its loop, lanes and pending markers."""

    def __init__(self, worker: SessionOwner, queue: SpanQueue) -> None:
        self.worker = worker
        self.queue = queue
        self.lanes: dict[Destination, Lane] = {}
        self.markers: list[FlushMarker] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake_event: asyncio.Event | None = None
        self.stop: Stop | None = None
        self.stop_requested = False  # a Stop is on its way through the queue
        self.shutdown_drops_before = 0
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.abandoned = False
        # whoever counts what is left at the end (this thread in _finish, or a shutdown that
        # gave up on it in ExportWorker._abandon) does it under this lock, exactly once; the
        # thread also routes records and books each export's outcome under it, so a record
        # is never both counted as dropped by _abandon and then as exported
        self.books = Books()
        self.counted = False
        self.export_context = ExportContext()
        self.clean = CleanValues()  # values the masking scan found clean (bounded)

    # -- called from other threads -----------------------------------------------------

    def wake(self) -> None:
        loop, event = self.loop, self.wake_event
        if loop is None or event is None:
            return
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # loop closed
            pass

    # -- the thread ----------------------------------------------------------------------

    def run(self) -> None:
        self.export_context.make_current()
        try:
            asyncio.run(self._main())
        except BaseException:  # never let the thread die with a traceback on stderr
            _warn.internal_error("export_thread", "tracemux: export thread failed")
        finally:
            self.stopped.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.wake_event = asyncio.Event()
        self.started.set()
        settings = self.worker.settings
        tick = min(settings.flush_interval, 0.25)
        event = self.wake_event
        while True:
            if event.is_set():  # a backlog (or a wake-up) is waiting: one turn of the loop,
                await asyncio.sleep(0)  # for the lanes' exports, and on
            else:
                try:
                    wait = tick
                    if self.stop is not None:
                        wait = max(0.0, min(tick, self.stop.deadline - time.monotonic()))
                    await asyncio.wait_for(event.wait(), timeout=wait)
                except asyncio.TimeoutError:
                    pass
            event.clear()
            if self.abandoned:  # a shutdown gave up on this thread and counted what is left
                break
            self._drain()
            self._shed_backlog()
            if self.stop is None and len(self.queue):  # a backlog: another pass soon
                event.set()
            now = time.monotonic()
            stop = self.stop
            for lane in list(self.lanes.values()):
                lane.poke(now, urgent=stop is not None)
            if stop is not None:
                if self._all_idle() or now >= stop.deadline:
                    break
            else:
                self._evict_idle(now)
        await self._finish(self.stop.deadline if self.stop else time.monotonic())

    def _all_idle(self) -> bool:
        return all(not lane.pending and not lane.busy for lane in self.lanes.values())

    def _drain(self, limit: int = DRAIN_CHUNK) -> None:
        """Route up to ``limit`` queued items to their lanes (the rest wait for the next
        pass, so that lanes export between passes and a big backlog cannot overflow a
        healthy destination's buffer)."""
        with self.books:
            # abandoned: _abandon counted what is queued; stopping: the rest is the next
            # thread's
            if not self.abandoned and self.stop is None:
                self._route_pass(limit)

    def _shed_backlog(self) -> None:
        """Near the pipeline's bound, the destinations that fail and are far behind give up
        their oldest records (counted as ``destination_buffer_full``), so that the others
        keep getting every span (one that is only slow keeps its backlog: shedding it would
        help no one). One destination may hold 3/4 of the bound; two that are down at once
        (each backing off, holding different records) could together fill it, and then new
        spans were dropped for every destination, the healthy local store too."""
        queue = self.queue
        count, nbytes = queue.in_flight
        if count * 8 <= queue.max_spans * SHED_ABOVE and nbytes * 8 <= queue.max_bytes * SHED_ABOVE:
            return  # the usual case: far from the bound
        with self.books:  # a shutdown giving up on this thread counts what lanes hold
            if not self.abandoned and self.stop is None:
                self._shed_pass()
        self._check_markers()

    def _shed_pass(self) -> None:
        queue = self.queue
        max_count = queue.max_spans * SHED_ABOVE // 8
        max_bytes = queue.max_bytes * SHED_ABOVE // 8
        behind = max(1, queue.max_spans // 4)  # a backlog no healthy destination has
        count, nbytes = queue.in_flight
        while count > max_count or nbytes > max_bytes:
            lanes = [
                x for x in self.lanes.values() if x.failing and x.pending >= behind and not x.busy
            ]
            if not lanes:
                return
            excess = count - max_count
            if nbytes > max_bytes:
                excess = max(excess, (nbytes - max_bytes) * count // max(1, nbytes))
            share = max(SHED_AT_LEAST, excess // len(lanes))
            if not sum(lane.shed(share) for lane in lanes):
                return
            before, (count, nbytes) = count, queue.in_flight
            if count >= before:  # what was shed is held by other lanes too: freed nothing
                return

    def _route_pass(self, limit: int) -> None:
        items = self.queue.take(limit)
        if not items:
            return
        kinds = set(map(type, items))
        if FlushMarker in kinds or Stop in kinds:
            self._route_around_controls(items)
        else:
            self._route_records(list(items), RunStart in kinds)
        self._check_markers()

    def _route_around_controls(self, items: deque[Any]) -> None:
        """Route the records between flush markers and stops, in order."""
        records: list[Record] = []
        has_starts = False
        popleft = items.popleft
        while items:
            item = popleft()
            kind = type(item)
            if kind is not FlushMarker and kind is not Stop:
                records.append(item)
                has_starts = has_starts or kind is RunStart
                continue
            self._route_records(records, has_starts)
            records, has_starts = [], False
            if kind is FlushMarker:
                self._place_marker(item)
                continue
            # stop: what was recorded after the shutdown began waits for the next thread
            self.stop = item
            self.queue.requeue_front(items)
            break
        self._route_records(records, has_starts)

    def _route_records(self, records: list[Record], has_starts: bool) -> None:
        """Mask ``records`` (no control items among them), then hand each to the lanes of
        its run's destinations: all in one step when they share one destination tuple."""
        if not records:
            return
        runs = set(map(_RUN, records))
        spans = [r for r in records if r.is_span] if has_starts else records
        failed = self._mask(spans, [run for run in runs if not run.redacted])
        if failed:
            records = [r for r in records if id(r) not in failed]
        if not has_starts:
            first = records[0].run.destinations if records else ()
            if all(run.destinations is first for run in runs):
                self._route(records, self._lanes_for(first))
                return
        last_dests: object = None
        lanes: list[Lane] = []
        group: list[Record] = []  # consecutive records going to the same lanes
        for record in records:
            run = record.run
            dests = run.destinations if record.is_span else run.start_destinations
            if dests is not last_dests:  # runs of one service share one tuple: look up once
                self._route(group, lanes)
                group = []
                lanes = self._lanes_for(dests)
                last_dests = dests
            group.append(record)
        self._route(group, lanes)

    def _mask(self, spans: list[Any], new_runs: list[RunInfo]) -> set[int] | None:
        """Mask secrets in ``spans`` and in the runs seen for the first time (one scan);
        returns the ids of spans dropped because masking them failed, or None."""
        masking = MaskingPass(self.clean)
        for run in new_runs:
            run.redacted = True
            masking.add_run(run)
        masking.add_spans(spans)
        failed = masking.run()
        if not failed:
            return None
        for span in failed:
            self.queue.count_drop("mask_error")
            self.release(1, span.nbytes)
        return {id(span) for span in failed}

    def release(self, count: int, nbytes: int) -> None:
        """``count`` records (``nbytes`` of content) no longer count against the bound."""
        self.queue.release(count, nbytes + count * RECORD_HOLD_BYTES)

    def _route(self, group: list[Record], lanes: list[Lane]) -> None:
        if not group:
            return
        nbytes = sum(map(_NBYTES, group))
        if not lanes:
            self.release(len(group), nbytes)
            return
        refs = len(lanes)
        if refs > 1:  # a record one lane alone holds is released by that lane
            for record in group:
                record.refs = refs
        for lane in lanes:
            lane.extend(group, nbytes, shared=refs > 1)

    def _place_marker(self, marker: FlushMarker) -> None:
        marker.targets = [
            (lane, lane.appended) for lane in self.lanes.values() if lane.completed < lane.appended
        ]
        for lane, target in marker.targets:
            lane.flush_to = max(lane.flush_to, target)
        self.markers.append(marker)

    def _lanes_for(self, dests: tuple[Destination, ...]) -> list[Lane]:
        lanes = self.lanes
        return [lanes.get(dest) or self._open_lane(dest) for dest in dests]

    def _open_lane(self, dest: Destination) -> Lane:
        settings = self.worker.settings
        if len(self.lanes) >= settings.max_destinations:
            self._evict_one()
        lane = Lane(
            dest,
            books=self.books,
            release=self.release,
            on_drop=self._on_drop,
            on_done=self._on_lane_done,
            # one destination may hold up to 3/4 of the memory budget: a burst fits, and a
            # destination that is down still leaves room for the others
            max_spans=max(1, settings.max_queue_spans * 3 // 4),
            max_bytes=max(1024, settings.max_queue_bytes * 3 // 4),
            interval=settings.flush_interval,
        )
        lane.blocked_by = self.worker.stuck_thread(dest)
        self.lanes[dest] = lane
        self.worker.lane_opened(lane)
        return lane

    def _on_drop(self, reason: str, n: int) -> None:
        self.queue.count_drop(reason, n)

    def _on_lane_done(self, lane: Lane) -> None:
        self._check_markers()
        lane.poke(time.monotonic(), urgent=self.stop is not None)
        if self.stop is not None and self.wake_event is not None:
            self.wake_event.set()

    def _check_markers(self) -> None:
        if not self.markers:
            return
        still = []
        for marker in self.markers:
            if marker.is_done():
                call_quietly(marker.callback)
            else:
                still.append(marker)
        self.markers = still

    def _evict_idle(self, now: float) -> None:
        settings = self.worker.settings
        ttl = settings.idle_ttl
        for dest, lane in list(self.lanes.items()):
            if not lane.pending and not lane.busy and now - lane.last_active > ttl:
                self._close_lane_soon(dest, lane)
        excess = len(self.lanes) - settings.max_destinations
        if excess > 0:  # over the cap (all were busy when one opened): flush, then close
            idle = sorted(
                (
                    (lane.last_active, dest)
                    for dest, lane in self.lanes.items()
                    if not lane.busy and not lane.pending
                ),
                key=lambda item: item[0],
            )
            for _, dest in idle[:excess]:
                self._close_lane_soon(dest, self.lanes[dest])
            if len(idle) < excess:
                for lane in self.lanes.values():
                    lane.poke(now, urgent=True)

    def _evict_one(self) -> None:
        """Make room for a new destination: close the least recently active idle lane.

        Only a lane with nothing buffered or in flight is closed, so eviction never loses
        a record; when every lane is busy the cap is exceeded until one is idle again.
        """
        idle = [
            (lane.last_active, dest)
            for dest, lane in self.lanes.items()
            if not lane.busy and not lane.pending
        ]
        if not idle:
            now = time.monotonic()
            for lane in self.lanes.values():  # flush them, so that they become idle
                lane.poke(now, urgent=True)
            _warn.warning(
                "cap",
                "tracemux: more than %d destinations busy at once",
                self.worker.settings.max_destinations,
            )
            return
        _, dest = min(idle, key=lambda item: item[0])
        self._close_lane_soon(dest, self.lanes[dest])

    def _close_lane_soon(self, dest: Destination, lane: Lane) -> None:
        del self.lanes[dest]
        self.worker.lane_closed(lane)
        if self.loop is not None:
            self.loop.create_task(close_quietly(lane, timeout=10.0))

    async def _finish(self, deadline: float) -> None:
        """Stop: cancel what is still in flight, count what is left, close exporters."""
        for lane in self.lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        tasks = [lane.task for lane in self.lanes.values() if lane.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with self.books:  # synchronous: no await while it is held
            count = not self.counted  # False: a shutdown gave up on us and counted already
            self.counted = True
            while self.stop is None and not self.abandoned and len(self.queue):
                self._route_pass(len(self.queue))  # the backlog up to the stop marker
            for lane in self.lanes.values():
                lane.drop_all(DROP_SHUTDOWN, count=count)
        # what was queued after the stop marker stays queued (still counted) for the next
        # thread; flushes waiting behind it are told now that this thread will not do it
        for item in self.queue.snapshot():
            if type(item) is FlushMarker:
                item.aborted = True
                call_quietly(item.callback)
        self._check_markers()
        for marker in self.markers:  # nothing more will be done: let waiters go
            call_quietly(marker.callback)
        self.markers = []
        remaining = max(0.05, deadline - time.monotonic())
        closing = [close_quietly(lane, timeout=remaining) for lane in self.lanes.values()]
        for lane in self.lanes.values():
            self.worker.lane_closed(lane)
        self.lanes.clear()
        if closing:
            await asyncio.gather(*closing)
        # shared resources (the HTTP client), after the exporters that use them
        for callback in reversed(self.export_context.exit_callbacks):
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, timeout=max(0.05, deadline - time.monotonic()))
            except Exception as exc:
                log.warning(
                    "tracemux: export-thread cleanup failed: %s: %s", type(exc).__name__, exc
                )


async def close_quietly(lane: Lane, timeout: float) -> None:
    try:
        await asyncio.wait_for(lane.close(), timeout=timeout)
    except Exception as exc:
        log.warning("tracemux: closing %s failed: %s: %s", lane.label, type(exc).__name__, exc)


def call_quietly(fn: Callable[[], None]) -> None:
    with _warn.capture("flush_callback", "tracemux: flush callback failed"):
        fn()
