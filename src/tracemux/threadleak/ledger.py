"""ThreadLedger: records where every thread started inside a block was created.

``threading.Thread.start`` is patched once for all active ledgers (reference counted) and
restored when the last one exits. At each start the patch keeps, per thread, the raw
creation stack (``(code, lineno)`` pairs, innermost first) and the ledgers the thread
belongs to; formatting waits until a leak is reported.

A thread belongs to a ledger when it was started while the ledger was active by the
thread that entered the ledger (or by any thread, with ``all_threads=True``), or when it
was started by a thread that belongs to the ledger (threads started by threads started
inside the block count too, as long as some ledger keeps the patch installed). A thread
that was alive before the block never belongs to it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from tracemux.threadleak.allow import AllowRule, compile_allow
from tracemux.threadleak.frames import (
    FirstPartyRule,
    RawFrames,
    make_first_party_rule,
    start_site,
    to_frames,
)
from tracemux.threadleak.report import LeakedThread, LeakReport, target_name

logger = logging.getLogger(__name__)

DEFAULT_MAX_DEPTH = 48
"""Frames kept per creation stack (innermost ones); about 0.1 µs each to capture."""


class _StartRecord:
    """What the patch keeps for one started thread."""

    __slots__ = ("excluded", "frames", "ledgers", "started_at")

    def __init__(
        self,
        frames: RawFrames,
        ledgers: tuple[ThreadLedger, ...],
        excluded: tuple[ThreadLedger, ...],
    ) -> None:
        self.frames = frames
        self.ledgers = ledgers
        self.excluded = excluded
        self.started_at = time.monotonic()


# The record lives on the Thread object itself (one attribute store: cheaper than a
# WeakKeyDictionary) and goes away with it.
_ATTR = "_tracemux_threadleak_start"


def _record_of(thread: threading.Thread) -> _StartRecord | None:
    rec = getattr(thread, _ATTR, None)
    return rec if isinstance(rec, _StartRecord) else None


_lock = threading.Lock()
_active: tuple[ThreadLedger, ...] = ()  # replaced, never mutated: read without the lock
_original_start: Callable[[threading.Thread], None] | None = None
_current_thread = threading.current_thread
_get_ident = threading.get_ident
_getframe = sys._getframe


def _record_start(thread: threading.Thread, active: tuple[ThreadLedger, ...]) -> None:
    ident = _get_ident()
    parent = getattr(_current_thread(), _ATTR, None)
    if parent is not None:
        members = list(parent.ledgers)
        excluded = parent.excluded
    else:
        members = []
        excluded = ()
    depth = DEFAULT_MAX_DEPTH
    for ledger in active:
        if ledger in members or ledger in excluded:
            continue
        owner = ledger._owner_ident == ident
        if not (owner or ledger._all_threads):
            continue
        if owner and ledger._paused:
            excluded = (*excluded, ledger)
            continue
        members.append(ledger)
        depth = max(depth, ledger._max_depth)
    if not members and not excluded:
        return
    frames: list[tuple[Any, int]] = []
    frame = _getframe(2)  # 0: here, 1: the patched start, 2: its caller
    while frame is not None and depth > 0:
        frames.append((frame.f_code, frame.f_lasti))  # f_lineno costs a line-table scan
        frame = frame.f_back
        depth -= 1
    setattr(thread, _ATTR, _StartRecord(tuple(frames), tuple(members), excluded))


def _patched_start(self: threading.Thread) -> None:
    """``Thread.start`` with creation sites recorded for the active ledgers."""
    active = _active
    if active:
        _record_start(self, active)
    assert _original_start is not None
    _original_start(self)


_patched_start.__wrapped__ = threading.Thread.start  # type: ignore[attr-defined]


def _activate(ledger: ThreadLedger) -> None:
    global _active, _original_start
    with _lock:
        if threading.Thread.start is not _patched_start:
            if _original_start is None or threading.Thread.start is not _original_start:
                _original_start = threading.Thread.start
            threading.Thread.start = _patched_start  # type: ignore[method-assign]
            logger.debug("Thread.start patched")
        _active = (*_active, ledger)


def _deactivate(ledger: ThreadLedger) -> None:
    global _active
    with _lock:
        _active = tuple(lg for lg in _active if lg is not ledger)
        if _active:
            return
        if threading.Thread.start is _patched_start and _original_start is not None:
            threading.Thread.start = _original_start  # type: ignore[method-assign]
            logger.debug("Thread.start restored")
        else:
            # Someone patched over us: stay installed as a pass-through.
            logger.debug("Thread.start was re-patched by someone else; leaving ours inert")


def _started_at(thread: threading.Thread) -> float:
    rec = _record_of(thread)
    return rec.started_at if rec is not None else 0.0


def is_patched() -> bool:
    """True while some ledger is active (``Thread.start`` is patched)."""
    return bool(_active)


class ThreadLedger:
    """Record the creation site of every thread started inside a ``with`` block.

    Example::

        with ThreadLedger() as ledger:
            run_something()
        report = ledger.leaks(grace=1.0)
        report.assert_no_leaks()

    Args:
        allow: allow-list rules (see :mod:`tracemux.threadleak.allow`): thread name globs,
            ``"target:..."``, ``"site:..."``, ``re:`` regexes, compiled patterns or
            predicates. Allowed threads are never reported.
        include_daemon: report daemon threads too (default True).
        first_party: what counts as the user's own code when naming the
            ``first_party`` frame: a predicate on the file name, or path prefixes.
            Default: anything outside the stdlib and site-packages.
        all_threads: also record threads started by *other* threads (not started
            inside the block) while the ledger is active. Default: only the thread
            that entered the ledger and the threads descending from it.
        max_depth: innermost frames kept per creation stack.
    """

    def __init__(
        self,
        *,
        allow: Iterable[AllowRule] = (),
        include_daemon: bool = True,
        first_party: FirstPartyRule | Iterable[str | os.PathLike[str]] | None = None,
        all_threads: bool = False,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._allow_rules = list(allow)
        self._allowed = compile_allow(self._allow_rules)
        self._include_daemon = include_daemon
        self._first_party = make_first_party_rule(first_party)
        self._all_threads = all_threads
        self._max_depth = max(1, int(max_depth))
        self._owner_ident: int | None = None
        self._paused = 0
        self._active = False
        self._entered_at: float | None = None
        self._exited_at: float | None = None

    # -- context management -------------------------------------------------------

    def __enter__(self) -> ThreadLedger:
        if self._active:
            raise RuntimeError("ThreadLedger is already active")
        self._owner_ident = threading.get_ident()
        self._active = True
        self._entered_at = time.monotonic()
        self._exited_at = None
        _activate(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop recording (same as leaving the ``with`` block). Idempotent."""
        if self._active:
            self._active = False
            self._exited_at = time.monotonic()
            _deactivate(self)

    @property
    def active(self) -> bool:
        """True between ``__enter__`` and ``__exit__``."""
        return self._active

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Exclude threads the owner thread starts inside this block (and their children).

        Used e.g. for fixtures that outlive a test: their threads belong to the fixture.
        """
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def allow(self, *rules: AllowRule) -> None:
        """Add allow-list rules."""
        self._allow_rules.extend(rules)
        self._allowed = compile_allow(self._allow_rules)

    # -- queries ------------------------------------------------------------------

    def started(self) -> list[threading.Thread]:
        """Threads recorded for this ledger that are still alive (no filtering, no wait)."""
        out: list[threading.Thread] = []
        for thread in threading.enumerate():
            rec = _record_of(thread)
            if rec is not None and self in rec.ledgers and thread.is_alive():
                out.append(thread)
        return out

    def describe(self, thread: threading.Thread) -> LeakedThread | None:
        """Creation details of a thread recorded by this ledger, or None."""
        rec = _record_of(thread)
        if rec is None or self not in rec.ledgers:
            return None
        frames = to_frames(rec.frames)
        flags = tuple(self._first_party(f.filename) for f in frames)
        first_party = next((f for f, flag in zip(reversed(frames), reversed(flags)) if flag), None)
        return LeakedThread(
            thread=thread,
            name=thread.name,
            daemon=thread.daemon,
            target=target_name(thread),
            stack=frames,
            site_frame=start_site(frames),
            first_party_frame=first_party,
            first_party_flags=flags,
        )

    def _candidates(
        self,
        cache: dict[threading.Thread, LeakedThread | None],
        extra_allow: Callable[[LeakedThread], bool] | None,
    ) -> list[LeakedThread]:
        me = threading.current_thread()
        out: list[LeakedThread] = []
        for thread in self.started():
            if thread is me or (thread.daemon and not self._include_daemon):
                continue
            if thread not in cache:
                info = self.describe(thread)
                if info is not None and (
                    self._allowed(info) or (extra_allow is not None and extra_allow(info))
                ):
                    info = None
                cache[thread] = info
            leaked = cache[thread]
            if leaked is not None:
                out.append(leaked)
        return out

    def leaks(
        self,
        grace: float = 1.0,
        *,
        allow: Callable[[LeakedThread], bool] | None = None,
    ) -> LeakReport:
        """Return the threads started inside the block that are still alive after ``grace``.

        Waits at most ``grace`` seconds for them to end, returning early as soon as all
        are gone. May be called inside the block too (a live view).

        Args:
            grace: seconds to wait for threads that are still finishing.
            allow: an extra predicate for this call (True = not a leak).
        """
        deadline = time.monotonic() + max(0.0, grace)
        cache: dict[threading.Thread, LeakedThread | None] = {}
        while True:
            alive = self._candidates(cache, allow)
            remaining = deadline - time.monotonic()
            if not alive or remaining <= 0:
                break
            for leaked in alive:
                leaked.thread.join(max(0.0, deadline - time.monotonic()))
        alive.sort(key=lambda t: _started_at(t.thread))
        return LeakReport(threads=tuple(alive), grace=grace)
