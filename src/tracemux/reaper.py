"""Runs that were started and never ended: found, ended as incomplete, exported.

A flow engine may start a run and never end it: lfx's ``Graph.async_start`` does not call
``end_tracers`` when a component raises, and a task cancelled at the wrong moment skips
the ``end()`` of its run. Such a run would stay "running" in the store for ever, and the
open handle would keep its run's data in memory.

:data:`open_runs` keeps every run between ``trace_run`` and its ``end()``, oldest first.
A run still open :attr:`OpenRuns.max_age` seconds after it started is ended with an error
of type ``IncompleteRun`` (status ``error``, message starting with ``incomplete:``) and so
exported like any other; so is every run still open at shutdown (``TracingService.shutdown``,
Langflow's teardown, and the export thread's own shutdown at interpreter exit). Ended that
way, a run is counted in :attr:`OpenRuns.incomplete` (``stats()["incomplete_runs"]``).

The check costs O(1) per run (only the oldest open run is looked at) and happens when a
run starts, when ``stats()`` is read and at shutdown: no thread of its own. In a process
that starts no more runs, an old open run is ended at the next of those.

``TRACEMUX_RUN_MAX_AGE`` sets the age in seconds (default 3600; ``0`` or ``off``: only at
shutdown), parsed by :func:`tracemux.envparse.parse_max_age`. This module is a leaf: it
knows nothing of spans beyond the few methods below.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Protocol

from tracemux.envparse import DEFAULT_RUN_MAX_AGE, parse_max_age
from tracemux.errors import ConfigError
from tracemux.ratelimit import rate_limited

log = logging.getLogger(__name__)
_warn = rate_limited(log)

DEFAULT_MAX_AGE = DEFAULT_RUN_MAX_AGE
ENV_VARIABLE = "TRACEMUX_RUN_MAX_AGE"


class IncompleteRun(Exception):
    """The error recorded on a run that was never ended by the code that started it."""


class _Run(Protocol):
    error: object

    @property
    def ended(self) -> bool: ...

    def set_error(self, error: BaseException | str) -> None: ...

    def end(self) -> None: ...


def _max_age_from_env() -> float:
    raw = os.environ.get(ENV_VARIABLE)
    try:
        return parse_max_age(raw)
    except ConfigError as exc:
        log.error("tracemux: %s; using %ss", exc, DEFAULT_MAX_AGE)
        return DEFAULT_MAX_AGE


class OpenRuns:
    """The runs started and not yet ended in this process, oldest first."""

    def __init__(self, max_age: float = DEFAULT_MAX_AGE) -> None:
        self.max_age = max_age
        #: runs ended here because nobody else did
        self.incomplete = 0
        # reentrant: ending a run here calls its end(), which calls discard()
        self._lock = threading.RLock()
        self._runs: dict[int, tuple[float, _Run]] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def add(self, run: _Run) -> None:
        """Remember ``run`` (just started); end the oldest open runs if they are too old."""
        with self._lock:
            now = time.monotonic()
            self._sweep(now)
            self._runs[id(run)] = (now, run)

    def discard(self, run: _Run) -> None:
        """Forget ``run``: it is ending. Waits while a sweep is ending runs, so that a run
        is never ended twice at once."""
        with self._lock:
            self._runs.pop(id(run), None)

    def sweep(self) -> int:
        """End every run open longer than :attr:`max_age`; the number ended."""
        with self._lock:
            return self._sweep(time.monotonic())

    def end_all(self, why: str = "still open at shutdown") -> int:
        """End every open run (at shutdown); the number ended."""
        with self._lock:
            victims = [run for _, run in self._runs.values()]
            self._runs.clear()
            return self._end(victims, why)

    def _sweep(self, now: float) -> int:
        runs = self._runs
        if not runs:
            return 0
        limit = now - self.max_age
        victims = []
        for key, (started, _run) in runs.items():
            if started > limit:
                break
            victims.append(key)
        if not victims:
            return 0
        ended = [runs.pop(key)[1] for key in victims]
        return self._end(ended, f"still open after {self.max_age:g} s")

    def _end(self, runs: list[_Run], why: str) -> int:
        n = 0
        for run in runs:
            try:
                if run.ended:
                    continue
                if run.error is None:
                    run.set_error(IncompleteRun(f"incomplete: the run was never ended ({why})"))
                run.end()
                n += 1
            except Exception:
                _warn.internal_error("end_open_run", "tracemux: could not end an open run")
        self.incomplete += n
        return n

    def _after_fork_in_child(self) -> None:
        # the parent's runs belong to the parent: ending them here would export them twice
        self._lock = threading.RLock()
        self._runs = {}


#: the process-wide registry used by :class:`tracemux.TracingService`
open_runs = OpenRuns(_max_age_from_env())

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=open_runs._after_fork_in_child)
