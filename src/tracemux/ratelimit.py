"""Rate-limited logging and tracemux's own errors: logged, counted, never raised.

Tracing must never break the traced program, so tracemux swallows its own failures (a
serializer that raised, an exporter bug). Each is handled the same way, as sentry's
``capture_internal_exceptions`` does: counted (``stats()["internal_errors"]``) and logged
at most once per key and :data:`LOG_INTERVAL`, with a count of what was held back.

Each module binds its logger once and uses the result::

    log = logging.getLogger(__name__)
    _warn = rate_limited(log)

    try:
        ...
    except Exception:
        _warn.internal_error("end", "tracemux: could not queue a span")

    with _warn.capture("flush", "tracemux: flush callback failed"):   # the same, off hot paths
        ...

``_warn.warning(key, ...)`` / ``_warn.error(key, ...)`` log a rate-limited line that is not
an internal error (a bad argument ignored, a destination that refuses spans).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterator
from contextlib import contextmanager

#: how often one kind of message (one logger and key) is logged; the rest are counted
LOG_INTERVAL = 60.0


class RateLimitedLog:
    """Logs a message for a given key at most once per ``interval`` seconds."""

    def __init__(
        self, logger: logging.Logger, interval: float = LOG_INTERVAL, max_keys: int = 1000
    ):
        self.logger = logger
        self.interval = interval
        self._max_keys = max_keys
        # No lock, on purpose: a lock held by another thread at fork() would stay held
        # forever in the child, and its first warning would hang it. A race between two
        # threads can at worst log one line twice or miscount what was suppressed.
        self._last: dict[Hashable, tuple[float, int]] = {}

    def _allow(self, key: Hashable) -> int | None:
        now = time.monotonic()
        last, held = self._last.get(key, (-1e18, 0))
        if now - last < self.interval:
            self._last[key] = (last, held + 1)
            return None
        if len(self._last) >= self._max_keys:
            self._last.clear()
        self._last[key] = (now, 0)
        return held

    def log(
        self, level: int, key: Hashable, msg: str, *args: object, exc_info: bool = False
    ) -> None:
        """Log ``msg % args`` unless this key was logged less than ``interval`` ago."""
        held = self._allow(key)
        if held is None:
            return
        if held:
            msg += " (%d similar messages suppressed)"
            args = (*args, held)
        self.logger.log(level, msg, *args, exc_info=exc_info)

    def warning(self, key: Hashable, msg: str, *args: object, exc_info: bool = False) -> None:
        self.log(logging.WARNING, key, msg, *args, exc_info=exc_info)

    def error(self, key: Hashable, msg: str, *args: object, exc_info: bool = False) -> None:
        self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)

    def internal_error(
        self, key: Hashable, msg: str, *args: object, level: int = logging.ERROR
    ) -> None:
        """Count an error tracemux swallowed and log it (with its traceback), rate-limited.
        Call it in an ``except`` block."""
        global _internal_errors
        _internal_errors += 1
        self.log(level, key, msg, *args, exc_info=True)

    @contextmanager
    def capture(self, key: Hashable, msg: str, *args: object) -> Iterator[None]:
        """Run the block; an exception in it is swallowed as :meth:`internal_error`."""
        try:
            yield
        except Exception:
            self.internal_error(key, msg, *args)


_internal_errors = 0
_bound: dict[tuple[str, float], RateLimitedLog] = {}


def rate_limited(logger: logging.Logger, interval: float = LOG_INTERVAL) -> RateLimitedLog:
    """The rate-limited log of ``logger`` (one per logger: modules share nothing else)."""
    key = (logger.name, interval)
    found = _bound.get(key)
    if found is None:
        found = _bound[key] = RateLimitedLog(logger, interval)
    return found


def internal_errors() -> int:
    """How many internal errors tracemux swallowed in this process."""
    return _internal_errors
