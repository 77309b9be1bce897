"""Rate-limited logging: one line per key and interval, with a count of what was held back."""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable


class RateLimitedLog:
    """Logs a message for a given key at most once per ``interval`` seconds."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0, max_keys: int = 1000):
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
