"""Configuration from the environment: every variable is read and validated here.

A bad value is a :class:`ConfigError` naming the variable, raised when the service is
configured, never later inside a flow. The whole environment is checked before the error
is raised, so one error lists every problem (``ConfigError.problems``). Numbers are
range-checked here, so that no value can overflow later (at exit, when pruning).
``TracingService.from_env()`` and ``tracemux doctor`` both run :func:`from_env`: doctor
passes exactly what the service accepts.

=================================  ======================================  =======  =============
variable                           meaning                                 default  accepted
=================================  ======================================  =======  =============
``TRACEMUX_DISABLED``              tracing becomes a no-op (1/true/yes)    off      a boolean
``TRACEMUX_DB``                    path of the local SQLite store          [1]_     a path
``TRACEMUX_MAX_QUEUE_SPANS``       spans held in memory at most            100000   1 to 1e8
``TRACEMUX_MAX_QUEUE_BYTES``       bytes held in memory at most (k/M/G/T)  64M      1k to 1T
``TRACEMUX_BATCH_SIZE``            spans that wake the export thread       512      1 to 1e6
``TRACEMUX_FLUSH_INTERVAL``        seconds a span may wait before export   1.0      0.001 to 3600
``TRACEMUX_EXIT_TIMEOUT``          seconds to deliver at interpreter exit  10.0     0 to 3600
``TRACEMUX_MAX_VALUE_BYTES``       a captured value's size before cut      64k      256 to 1G
``TRACEMUX_MASK_SECRETS``          mask secret keys and values (1/0)       on       a boolean
``TRACEMUX_STORE_MAX_RUNS``        runs the local store keeps              100000   1 to 1e9
``TRACEMUX_STORE_MAX_AGE_DAYS``    days the local store keeps a run        30       0.001 to 36500
``TRACEMUX_MAX_DESTINATIONS``      distinct destinations alive at once     256      1 to 1e6
``TRACEMUX_DESTINATION_IDLE_TTL``  seconds an idle destination stays open  300      0.001 to 30 d
=================================  ======================================  =======  =============

.. [1] the user data directory (``~/.local/share/tracemux/traces.db`` on Linux)

Remote destinations come from the backends' own variables (``LANGFUSE_*``, ``LANGSMITH_*``,
``PHOENIX_*``, ``OTEL_EXPORTER_OTLP_*``): see :mod:`tracemux.destinations.env`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from tracemux.destinations.base import Destination
from tracemux.destinations.env import remote_destinations_from_env
from tracemux.destinations.stores import TraceStore, open_store
from tracemux.envparse import (
    RANGES,
    parse_bool,
    parse_int,
    parse_seconds,
    parse_size,
)
from tracemux.errors import ConfigError
from tracemux.pipeline.settings import PipelineSettings

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    """Everything :meth:`TracingService.from_env` needs, validated."""

    disabled: bool = False
    destinations: tuple[Destination, ...] = ()
    max_value_bytes: int = 64 * 1024
    mask_secrets: bool = True
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)


#: every ``TRACEMUX_*`` variable read here (``tracemux doctor`` lists those that are set)
TRACEMUX_VARIABLES: tuple[str, ...] = (
    "TRACEMUX_DISABLED",
    "TRACEMUX_DB",
    *RANGES,
    "TRACEMUX_MASK_SECRETS",
    "TRACEMUX_RUN_MAX_AGE",  # read by tracemux.reaper
    "TRACEMUX_PRICES",  # read by tracemux.cost
)


def unknown_variables(env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``TRACEMUX_*`` variables set in ``env`` that tracemux does not read (a typo such as
    ``TRACEMUX_DISABLE``), each with the closest known name, if one is close."""
    import difflib

    known = set(TRACEMUX_VARIABLES)
    return [
        (name, next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None))
        for name in sorted(env)
        if name.startswith("TRACEMUX_") and name not in known and not name.startswith(_OTHER)
    ]


#: ``TRACEMUX_*`` names used by tests, benchmarks and tools, not by the service
_OTHER = ("TRACEMUX_RELIABILITY", "TRACEMUX_BENCH", "TRACEMUX_TEST")


class _Reader:
    """Reads variables from ``env``, collecting every problem instead of stopping at one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str, parse: Callable[[str, str], T], default: T) -> T:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        return self.attempt(lambda: parse(name, raw), default)

    def attempt(self, build: Callable[[], T], default: T) -> T:
        try:
            return build()
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return default


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the ``TRACEMUX_*`` variables (and, via destinations, the rest).

    Every variable is checked; a :class:`ConfigError` lists every problem found. This is
    the one validation: ``TracingService.from_env`` and ``tracemux doctor`` both run it.
    """
    env = os.environ if env is None else env
    for name, close in unknown_variables(env):
        hint = f" (did you mean {close}?)" if close else ""
        log.warning("tracemux: %s is not a tracemux variable: it is ignored%s", name, hint)
    read = _Reader(env)
    disabled = read.get("TRACEMUX_DISABLED", parse_bool, False)
    d = PipelineSettings()
    pipeline = PipelineSettings(
        max_queue_spans=read.get("TRACEMUX_MAX_QUEUE_SPANS", parse_int, d.max_queue_spans),
        max_queue_bytes=read.get("TRACEMUX_MAX_QUEUE_BYTES", parse_size, d.max_queue_bytes),
        batch_size=read.get("TRACEMUX_BATCH_SIZE", parse_int, d.batch_size),
        flush_interval=read.get("TRACEMUX_FLUSH_INTERVAL", parse_seconds, d.flush_interval),
        exit_timeout=read.get("TRACEMUX_EXIT_TIMEOUT", parse_seconds, d.exit_timeout),
        max_destinations=read.get("TRACEMUX_MAX_DESTINATIONS", parse_int, d.max_destinations),
        idle_ttl=read.get("TRACEMUX_DESTINATION_IDLE_TTL", parse_seconds, d.idle_ttl),
    )
    max_value_bytes = read.get("TRACEMUX_MAX_VALUE_BYTES", parse_size, 64 * 1024)
    mask = read.get("TRACEMUX_MASK_SECRETS", parse_bool, True)
    destinations: tuple[Destination, ...] = ()
    if not disabled:
        destinations = read.attempt(lambda: destinations_from_env(env), ())
    if read.problems:
        raise ConfigError.of(read.problems)
    return Config(
        disabled=disabled,
        destinations=destinations,
        max_value_bytes=max_value_bytes,
        mask_secrets=mask,
        pipeline=pipeline,
    )


def store_from_env(env: Mapping[str, str] | None = None, *, path: str | None = None) -> TraceStore:
    """The store (a SQLite file, or PostgreSQL for a ``postgresql://`` DSN) as
    ``TRACEMUX_DB`` and the ``TRACEMUX_STORE_*`` variables say; ``path`` (a command's
    ``--db``) takes precedence over ``TRACEMUX_DB``. The one place the store is chosen:
    ``TracingService()``'s default store, ``from_env()`` and the CLI all come here."""
    env = os.environ if env is None else env
    path = path or (env.get("TRACEMUX_DB") or "").strip() or None
    read = _Reader(env)
    max_runs = read.get("TRACEMUX_STORE_MAX_RUNS", parse_int, 100_000)
    max_age = read.get("TRACEMUX_STORE_MAX_AGE_DAYS", parse_seconds, 30.0)
    if read.problems:
        raise ConfigError.of(read.problems)
    return open_store(path, max_runs=max_runs, max_age_days=max_age)


def disabled_from_env(env: Mapping[str, str] | None = None) -> bool:
    """``TRACEMUX_DISABLED`` (False when unset); a :class:`ConfigError` when not a boolean."""
    env = os.environ if env is None else env
    raw = env.get("TRACEMUX_DISABLED") or ""
    return parse_bool("TRACEMUX_DISABLED", raw) if raw.strip() else False


def destinations_from_env(env: Mapping[str, str]) -> tuple[Destination, ...]:
    """The destinations the environment configures; the local store when there are none.

    Remote backends (Langfuse, LangSmith, Phoenix, any OTLP collector) are read by
    :mod:`tracemux.destinations.env`; with ``TRACEMUX_DB`` set the local store stays on
    beside them.
    """
    read = _Reader(env)
    remote: list[Destination] = remote_destinations_from_env(env)
    if not remote or (env.get("TRACEMUX_DB") or "").strip():
        store = read.attempt(lambda: store_from_env(env), None)
        if store is not None:
            remote.insert(0, store)
    if read.problems:
        raise ConfigError.of(read.problems)
    return tuple(remote)
