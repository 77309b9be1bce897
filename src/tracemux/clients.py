"""Shared SDK clients: one client per configuration, bounded, closed off the caller's path.

Some users need an official SDK client itself (prompt management, scores) next to tracemux.
Building one per run leaks: a langfuse 2.x client starts three background threads that
nothing stops without ``shutdown()``. Caching a single client fixes that only for one
credential set and leaks again on every credential change. :class:`SharedClients` keeps one
client per *whole configuration* and closes every client it drops with the user's own close
function::

    from tracemux.clients import SharedClients

    pool = SharedClients(factory=lambda cfg: Langfuse(**cfg), close=lambda c: c.shutdown(),
                         max_size=8, idle_ttl=300.0)
    client = pool.get({"public_key": pk, "secret_key": sk, "host": host})
    ...
    pool.close_all()

Keys
    A configuration is turned into a canonical form (mappings with sorted items, sequences,
    sets sorted, bytes, well-known value types by value, any other object by identity) and
    hashed with keyed BLAKE2b under a random per-pool salt. Only the 16-byte digest is kept:
    the secret is never stored, logged or shown in a printable key. Any changed field (a
    rotated secret, another host) is a different client.

Creation
    Exactly one factory call per key, however many threads ask at once: the first caller
    registers a pending creation and runs the factory with no pool lock held, so slow
    factories for different keys run in parallel; the others wait for its result (or its
    exception, which every waiter re-raises; the next ``get`` tries again).

Bounds and closing
    Past ``max_size`` clients the least recently used one is evicted; a client unused for
    ``idle_ttl`` seconds expires. Either way it is handed to the close function, never
    just dropped. Idle expiry is checked on every :meth:`SharedClients.get` and by the
    closer thread while it runs; there is no permanent timer, so with no ``get`` and no
    closer running an idle client waits for the next ``get``, :meth:`~SharedClients.close_all`
    or exit.

    *Eviction does not wait for users.* A client is closed when it is evicted or expires,
    even if a caller still holds it; size ``max_size`` to at least the number of
    configurations in concurrent use, and keep ``idle_ttl`` above the longest use of one
    client.

    *Backpressure.* If the closer falls ``max_closing`` clients behind (some SDKs take a
    second to shut down), a ``get`` that has to create a client first waits, at most
    ``close_backlog_wait`` seconds, for the closer to catch up. Otherwise a fast rotation
    of configurations would pile up unclosed clients exactly like the leak this module
    fixes. Cache hits never wait.

The closer thread (a deliberate exception to the one-thread rule)
    tracemux runs one background thread per process (``tracemux-export``). Closing an SDK
    client can block for seconds and must not run on the caller's path or on the export
    thread, so a pool with something to close starts one daemon thread named
    ``tracemux-client-closer``. It is started only when a client is waiting to be closed,
    closes them one at a time, checks idle expiry while it runs, and exits once it has had
    nothing to do for ``closer_idle`` seconds. A pool at rest has no thread.

Exit and fork
    At interpreter exit every client is closed with a deadline (``exit_timeout``); close
    errors are logged on ``tracemux.clients``, never raised. (CPython 3.12.0 and 3.12.1
    refuse new threads in exit handlers; there the clients are closed inline, and the
    deadline is checked between clients only.) The exit hook holds a pool that has created
    a client until exit; call :meth:`~SharedClients.close_all` to release clients earlier.
    After ``os.fork()`` the child starts with an empty pool and no closer; the parent's
    clients are kept referenced but never closed (nor finalised) in the child.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import decimal
import enum
import fractions
import hashlib
import json
import logging
import os
import pathlib
import threading
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tracemux.ratelimit import rate_limited

__all__ = ["CLOSER_THREAD_NAME", "SharedClients", "SharedClientsStats", "config_key"]

log = logging.getLogger(__name__)
_warn = rate_limited(log)

CLOSER_THREAD_NAME = "tracemux-client-closer"

C = TypeVar("C")

#: Types canonicalised by value (type name and ``repr``) rather than by identity.
_VALUE_TYPES: tuple[type, ...] = (
    complex,
    decimal.Decimal,
    fractions.Fraction,
    _dt.date,
    _dt.time,
    _dt.timedelta,
    _dt.timezone,
    pathlib.PurePath,
    uuid.UUID,
    range,
)


def _canonical(value: Any, pins: list[object], stack: set[int]) -> Any:
    """Return a JSON-serialisable, unambiguous form of ``value``.

    Every container is tagged (``{"d": ...}`` mapping, ``{"l": ...}`` sequence, ``{"s": ...}``
    set), so no two different configurations share a form. Objects of unknown types are
    keyed by identity; they are appended to ``pins`` so the pool can keep them alive (an
    identity is unique only while its object lives).
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, enum.Enum):
            return {"e": [_type_name(value), value.name]}
        if type(value) in (bool, int, float, str) or value is None:
            return value
        return {"v": [_type_name(value), repr(value)]}  # e.g. an int or str subclass
    if isinstance(value, enum.Enum):
        return {"e": [_type_name(value), value.name]}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b": bytes(value).hex()}
    if isinstance(value, _VALUE_TYPES):
        return {"v": [_type_name(value), repr(value)]}
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        marker = id(value)
        if marker in stack:
            raise TypeError("configuration contains a reference cycle")
        stack.add(marker)
        try:
            if isinstance(value, Mapping):
                items = [
                    [_canonical(k, pins, stack), _canonical(v, pins, stack)]
                    for k, v in value.items()
                ]
                items.sort(key=lambda kv: _dumps(kv[0]))
                return {"d": items}
            if isinstance(value, (set, frozenset)):
                return {"s": sorted((_canonical(v, pins, stack) for v in value), key=_dumps)}
            return {"l": [_canonical(v, pins, stack) for v in value]}
        finally:
            stack.discard(marker)
    pins.append(value)
    return {"o": [_type_name(value), id(value)]}


def _type_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def config_key(config: Mapping[str, Any], salt: bytes) -> tuple[bytes, tuple[object, ...]]:
    """Return ``(digest, pins)`` for ``config``: the pool key and the objects keyed by identity.

    The digest is a 16-byte keyed BLAKE2b of the canonical JSON form under ``salt``; equal
    configurations (whatever their item order) give equal digests, any changed value a
    different one. The canonical text is discarded at once.

    Raises:
        TypeError: if ``config`` is not a mapping or contains a reference cycle.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, not {type(config).__name__}")
    pins: list[object] = []
    canonical = _canonical(config, pins, set())
    digest = hashlib.blake2b(
        _dumps(canonical).encode("utf-8", "surrogatepass"), key=salt, digest_size=16
    ).digest()
    return digest, tuple(pins)


@dataclass(frozen=True)
class SharedClientsStats:
    """Counters of one pool. ``created == live + closing + closed`` once creations settle."""

    created: int
    """Clients the factory returned."""
    closed: int
    """Clients whose close function returned or raised."""
    live: int
    """Clients in the pool now."""
    closing: int
    """Evicted, expired or discarded clients waiting for (or in) their close function."""
    creating: int
    """Factory calls in progress."""
    hits: int
    """``get`` calls answered without a factory call of their own (cached, or awaited)."""
    evicted: int
    """Clients dropped for ``max_size`` (least recently used)."""
    expired: int
    """Clients dropped for ``idle_ttl``."""
    close_errors: int
    """Close functions that raised (logged, never propagated)."""
    create_errors: int
    """Factory calls that raised (propagated to every caller waiting for them)."""
    closer_running: bool
    """Whether the ``tracemux-client-closer`` thread is alive."""


class _Entry(Generic[C]):
    __slots__ = ("client", "last_used", "pins")

    def __init__(self, client: C, last_used: float, pins: tuple[object, ...]) -> None:
        self.client = client
        self.last_used = last_used
        self.pins = pins  # keeps identity-keyed config objects alive while the key is in use


class _Pending(Generic[C]):
    """The result of one factory call, awaited by every concurrent caller for its key."""

    __slots__ = ("_done", "client", "error")

    def __init__(self) -> None:
        self._done = threading.Event()
        self.client: C | None = None
        self.error: BaseException | None = None

    def set(self, client: C | None, error: BaseException | None) -> None:
        self.client, self.error = client, error
        self._done.set()

    def wait(self) -> C:
        self._done.wait()
        if self.error is not None:
            raise self.error
        return self.client  # type: ignore[return-value]


class SharedClients(Generic[C]):
    """A bounded pool of SDK clients, one per configuration, closed with their own function.

    Args:
        factory: builds a client from a configuration mapping (called with the mapping
            given to :meth:`get`, with no pool lock held).
        close: releases a client (e.g. ``lambda c: c.shutdown()``). Called once per client,
            on the closer thread (or inline at exit when no thread can be started).
            Exceptions are logged, never raised. It must not call back into the pool
            (:meth:`close_all` from it raises ``RuntimeError``).
        max_size: most clients kept; past it the least recently used one is closed.
        idle_ttl: seconds a client may go unused before it is closed; ``None`` keeps it.
        max_closing: how many clients may wait for the closer before a ``get`` that creates
            a client waits for it (backpressure); default ``max_size``.
        close_backlog_wait: the longest such a wait lasts (a stuck close function must not
            stall the pool forever); after it the ``get`` goes on and a warning is logged.
        closer_idle: seconds the closer thread stays with nothing to do before it exits.
        exit_timeout: deadline for closing every client at interpreter exit.

    Raises:
        ValueError: if a limit is out of range.
    """

    def __init__(
        self,
        factory: Callable[[Mapping[str, Any]], C],
        close: Callable[[C], object],
        *,
        max_size: int = 8,
        idle_ttl: float | None = 300.0,
        max_closing: int | None = None,
        close_backlog_wait: float = 10.0,
        closer_idle: float = 1.0,
        exit_timeout: float = 5.0,
    ) -> None:
        checks = {
            "max_size": max_size >= 1,
            "idle_ttl": idle_ttl is None or idle_ttl > 0,
            "max_closing": max_closing is None or max_closing >= 1,
            "close_backlog_wait": close_backlog_wait >= 0,
            "closer_idle": closer_idle >= 0,
            "exit_timeout": exit_timeout >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"SharedClients {name} is out of range: {locals()[name]!r}")
        self._factory = factory
        self._close = close
        self.max_size = max_size
        self.idle_ttl = idle_ttl
        self.max_closing = max_closing if max_closing is not None else max_size
        self.close_backlog_wait = close_backlog_wait
        self.closer_idle = closer_idle
        self.exit_timeout = exit_timeout
        self._atexit_registered = False
        self._inherited: list[object] = []  # parents' clients, kept (never closed) after fork
        self._reset_state()
        _register_fork_hook(self)

    def _reset_state(self) -> None:
        self._salt = os.urandom(16)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._entries: OrderedDict[bytes, _Entry[C]] = OrderedDict()
        self._pending: dict[bytes, _Pending[C]] = {}
        self._to_close: deque[C] = deque()
        self._closing_now = 0
        self._closer: threading.Thread | None = None
        self._closer_exit_when_drained = False
        self._created = self._closed = self._hits = 0
        self._evicted = self._expired = self._close_errors = self._create_errors = 0

    # -- public API ---------------------------------------------------------------------

    def get(self, config: Mapping[str, Any]) -> C:
        """Return the client for ``config``, creating it (once, whatever the concurrency).

        Raises:
            TypeError: if ``config`` is not a mapping or contains a reference cycle.
            Exception: whatever the factory raised (every concurrent caller for the same
                configuration gets it; the next call tries again).
        """
        key, pins = config_key(config, self._salt)
        with self._cond:
            now = time.monotonic()
            self._expire_idle_locked(now)
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = now
                self._entries.move_to_end(key)
                self._hits += 1
                return entry.client
            pending = self._pending.get(key)
            if pending is not None:
                creator = False
            else:
                creator = True
                pending = self._pending[key] = _Pending()
                if not self._atexit_registered:
                    atexit.register(self._at_exit)
                    self._atexit_registered = True
                self._wait_for_backlog_locked()
        if not creator:
            client = pending.wait()
            with self._lock:
                self._hits += 1
            return client
        return self._create(key, pins, config, pending)

    def close_all(self, timeout: float | None = 5.0) -> bool:
        """Close every client now and wait, at most ``timeout`` seconds, until all are closed.

        Clients already waiting for the closer are included, and the closer thread is
        joined (within the timeout) rather than left to linger. The pool stays usable: a later
        :meth:`get` creates a new client. A creation still running when this is called
        completes into the emptied pool. Close errors are logged, never raised.

        Returns:
            True if every client was closed within ``timeout``; False if some close
            function is still running (it goes on in the background).

        Raises:
            RuntimeError: if called from a close function (on the closer thread).
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            if self._closer is not None and threading.current_thread() is self._closer:
                raise RuntimeError("close_all() called from a close function")
            while self._entries:
                _, entry = self._entries.popitem(last=False)
                self._to_close.append(entry.client)
            if not self._to_close and self._closing_now == 0 and self._closer is None:
                return True
            self._closer_exit_when_drained = True  # a lingering closer exits too
            inline: list[C] = []
            if self._to_close:
                if not self._ensure_closer_locked():
                    inline = self._take_all_locked()
            elif self._closer is not None:
                self._cond.notify_all()
            closer = self._closer
        if inline:
            return self._close_inline(inline, deadline)
        with self._cond:
            done = self._cond.wait_for(
                lambda: not self._to_close and self._closing_now == 0,
                None if deadline is None else max(0.0, deadline - time.monotonic()),
            )
        if done and closer is not None:
            closer.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return done

    def stats(self) -> SharedClientsStats:
        """Return a snapshot of the pool's counters."""
        with self._lock:
            closer = self._closer
            return SharedClientsStats(
                created=self._created,
                closed=self._closed,
                live=len(self._entries),
                closing=len(self._to_close) + self._closing_now,
                creating=len(self._pending),
                hits=self._hits,
                evicted=self._evicted,
                expired=self._expired,
                close_errors=self._close_errors,
                create_errors=self._create_errors,
                closer_running=closer is not None and closer.is_alive(),
            )

    def __enter__(self) -> SharedClients[C]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_all()

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<SharedClients live={s.live} closing={s.closing} created={s.created} "
            f"closed={s.closed} max_size={self.max_size}>"
        )

    # -- creation -----------------------------------------------------------------------

    def _create(
        self, key: bytes, pins: tuple[object, ...], config: Mapping[str, Any], pending: _Pending[C]
    ) -> C:
        try:
            client = self._factory(config)
        except BaseException as exc:
            with self._cond:
                if self._pending.get(key) is pending:
                    del self._pending[key]
                self._create_errors += 1
            pending.set(None, exc)
            raise
        with self._cond:
            if self._pending.get(key) is pending:
                del self._pending[key]
            self._created += 1
            self._entries[key] = _Entry(client, time.monotonic(), pins)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                _, old = self._entries.popitem(last=False)
                self._evicted += 1
                self._to_close.append(old.client)
            if self._to_close:
                self._ensure_closer_locked()
        pending.set(client, None)
        log.debug("created a shared client (%d live)", len(self._entries))
        return client

    def _wait_for_backlog_locked(self) -> None:
        """Backpressure: wait (bounded) while the closer is ``max_closing`` clients behind."""

        def caught_up() -> bool:
            return len(self._to_close) + self._closing_now < self.max_closing or (
                self._closer is None
            )

        if caught_up() or self.close_backlog_wait == 0:
            return
        if not self._cond.wait_for(caught_up, self.close_backlog_wait):
            _warn.warning(
                "backlog",
                "tracemux.clients: %d clients still waiting to be closed after %.1fs; "
                "creating another one anyway (is a close function stuck?)",
                len(self._to_close) + self._closing_now,
                self.close_backlog_wait,
            )

    # -- expiry and closing ---------------------------------------------------------------

    def _expire_idle_locked(self, now: float) -> None:
        ttl = self.idle_ttl
        if ttl is None:
            return
        expired = False
        while self._entries:
            entry = next(iter(self._entries.values()))  # least recently used first
            if now - entry.last_used < ttl:
                break
            self._entries.popitem(last=False)
            self._expired += 1
            self._to_close.append(entry.client)
            expired = True
        if expired:
            self._ensure_closer_locked()

    def _next_expiry_locked(self) -> float | None:
        if self.idle_ttl is None or not self._entries:
            return None
        return next(iter(self._entries.values())).last_used + self.idle_ttl

    def _ensure_closer_locked(self) -> bool:
        """Start the closer if none runs; False if no thread can be started (late exit)."""
        if self._closer is not None:
            self._cond.notify_all()
            return True
        thread = threading.Thread(target=self._closer_main, name=CLOSER_THREAD_NAME, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: callers close inline
            return False
        self._closer = thread
        return True

    def _take_all_locked(self) -> list[C]:
        items = list(self._to_close)
        self._to_close.clear()
        self._closing_now += len(items)
        return items

    def _closer_main(self) -> None:
        me = threading.current_thread()
        idle_since = time.monotonic()
        try:
            while True:
                with self._cond:
                    if self._closer is not me:  # forked child or replaced: not ours to run
                        return
                    now = time.monotonic()
                    self._expire_idle_locked(now)
                    if self._to_close:
                        client = self._to_close.popleft()
                        self._closing_now += 1
                    else:
                        wait = self.closer_idle - (now - idle_since)
                        if self._closer_exit_when_drained or wait <= 0:
                            self._closer = None
                            self._closer_exit_when_drained = False
                            self._cond.notify_all()
                            return
                        next_expiry = self._next_expiry_locked()
                        if next_expiry is not None:
                            wait = min(wait, max(0.0, next_expiry - now))
                        self._cond.wait(wait)
                        continue
                self._close_one(client)
                idle_since = time.monotonic()
        except BaseException:  # pragma: no cover - defensive: never leave a dead closer set
            _warn.internal_error("closer", "tracemux.clients: closer thread failed")
            with self._cond:
                if self._closer is me:
                    self._closer = None
                    self._closer_exit_when_drained = False
                    self._cond.notify_all()

    def _close_one(self, client: C) -> None:
        """Run the close function for ``client`` (counted in ``_closing_now`` by the caller)."""
        failed = False
        try:
            self._close(client)
        except Exception:
            failed = True
            log.warning("tracemux.clients: closing a shared client failed", exc_info=True)
        finally:
            with self._cond:
                self._closing_now -= 1
                self._closed += 1
                self._close_errors += failed
                self._cond.notify_all()

    def _close_inline(self, clients: list[C], deadline: float | None) -> bool:
        for i, client in enumerate(clients):
            if deadline is not None and time.monotonic() >= deadline:
                left = len(clients) - i
                log.warning("tracemux.clients: %d clients left unclosed at the deadline", left)
                with self._cond:
                    self._closing_now -= left
                    self._to_close.extend(clients[i:])
                return False
            self._close_one(client)
        return True

    # -- exit and fork --------------------------------------------------------------------

    def _at_exit(self) -> None:
        try:
            if not self.close_all(self.exit_timeout):
                log.warning(
                    "tracemux.clients: not every client closed within %.1fs at exit",
                    self.exit_timeout,
                )
        except Exception:
            _warn.internal_error(
                "close_at_exit", "tracemux.clients: closing clients at exit failed"
            )

    def _after_fork_in_child(self) -> None:
        # The parent's clients (and their threads) belong to the parent: keep the objects
        # alive so no finaliser runs here, and never close them in the child.
        self._inherited.append(([e.client for e in self._entries.values()], list(self._to_close)))
        self._reset_state()


def _register_fork_hook(pool: SharedClients[Any]) -> None:
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(pool)

    def after_in_child() -> None:
        p = ref()
        if p is not None:
            p._after_fork_in_child()

    os.register_at_fork(after_in_child=after_in_child)
