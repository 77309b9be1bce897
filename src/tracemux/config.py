"""Configuration from the environment: every variable is read and validated here.

A bad value is a :class:`ConfigError` naming the variable, raised when the service is
configured, never later inside a flow.

==================================  ===========================================  =========
variable                            meaning                                      default
==================================  ===========================================  =========
``TRACEMUX_DISABLED``               tracing becomes a no-op (1/true/yes/on)      off
``TRACEMUX_DB``                     path of the local SQLite store               user data dir
``TRACEMUX_MAX_QUEUE_SPANS``        spans held in memory at most                 100000
``TRACEMUX_MAX_QUEUE_BYTES``        bytes held in memory at most (k/M/G suffix)  64M
``TRACEMUX_BATCH_SIZE``             spans that wake the export thread            512
``TRACEMUX_FLUSH_INTERVAL``         seconds a span may wait before export        1.0
``TRACEMUX_EXIT_TIMEOUT``           seconds to deliver at interpreter exit       10.0
``TRACEMUX_MAX_VALUE_BYTES``        size of one captured value before truncation 64k
``TRACEMUX_MASK_SECRETS``           mask secret keys and values (1/0)            on
``TRACEMUX_STORE_MAX_RUNS``         runs the local store keeps                   100000
``TRACEMUX_STORE_MAX_AGE_DAYS``     days the local store keeps a run             30
``TRACEMUX_MAX_DESTINATIONS``       distinct destinations alive at once          256
``TRACEMUX_DESTINATION_IDLE_TTL``   seconds before an idle destination closes    300
==================================  ===========================================  =========

Remote destinations come from the backends' own variables (``LANGFUSE_*``, ``LANGSMITH_*``,
``PHOENIX_*``, ``OTEL_EXPORTER_OTLP_*``): see :mod:`tracemux.destinations.env`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from tracemux.destinations.base import Destination
from tracemux.destinations.stores import TraceStore, open_store
from tracemux.pipeline.worker import PipelineSettings

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Config:
    """Everything :meth:`TracingService.from_env` needs, validated."""

    disabled: bool = False
    destinations: tuple[Destination, ...] = ()
    max_value_bytes: int = 64 * 1024
    mask_secrets: bool = True
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG](?:i?[bB])?|[bB])?\s*$")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def parse_int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def parse_size(name: str, raw: str, minimum: int = 0) -> int:
    m = _SIZE.match(raw)
    if not m:
        raise ConfigError(f"{name}={raw!r} is not a size (examples: 65536, 64k, 32M, 1G)")
    unit = (m.group(2) or "").lower()[:1]
    value = int(m.group(1)) * _SIZE_UNITS[unit]
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum} bytes")
    return value


def parse_seconds(name: str, raw: str, minimum: float = 0.0) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if not (value >= minimum) or value != value or value == float("inf"):
        raise ConfigError(f"{name}={raw!r} must be a finite number of at least {minimum}")
    return value


def _get(env: Mapping[str, str], name: str, parse: Callable[[str, str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return parse(name, raw)


def from_env(env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the ``TRACEMUX_*`` variables (and, via destinations, the rest)."""
    env = os.environ if env is None else env
    disabled = _get(env, "TRACEMUX_DISABLED", parse_bool, False)
    defaults = PipelineSettings()
    pipeline = PipelineSettings(
        max_queue_spans=_get(
            env,
            "TRACEMUX_MAX_QUEUE_SPANS",
            lambda n, r: parse_int(n, r, 1),
            defaults.max_queue_spans,
        ),
        max_queue_bytes=_get(
            env,
            "TRACEMUX_MAX_QUEUE_BYTES",
            lambda n, r: parse_size(n, r, 1024),
            defaults.max_queue_bytes,
        ),
        batch_size=_get(
            env, "TRACEMUX_BATCH_SIZE", lambda n, r: parse_int(n, r, 1), defaults.batch_size
        ),
        flush_interval=_get(
            env,
            "TRACEMUX_FLUSH_INTERVAL",
            lambda n, r: parse_seconds(n, r, 0.001),
            defaults.flush_interval,
        ),
        exit_timeout=_get(env, "TRACEMUX_EXIT_TIMEOUT", parse_seconds, defaults.exit_timeout),
        max_destinations=_get(
            env,
            "TRACEMUX_MAX_DESTINATIONS",
            lambda n, r: parse_int(n, r, 1),
            defaults.max_destinations,
        ),
        idle_ttl=_get(
            env,
            "TRACEMUX_DESTINATION_IDLE_TTL",
            lambda n, r: parse_seconds(n, r, 0.001),
            defaults.idle_ttl,
        ),
    )
    max_value_bytes = _get(
        env, "TRACEMUX_MAX_VALUE_BYTES", lambda n, r: parse_size(n, r, 256), 64 * 1024
    )
    mask = _get(env, "TRACEMUX_MASK_SECRETS", parse_bool, True)
    return Config(
        disabled=disabled,
        destinations=() if disabled else destinations_from_env(env),
        max_value_bytes=max_value_bytes,
        mask_secrets=mask,
        pipeline=pipeline,
    )


def store_from_env(env: Mapping[str, str]) -> TraceStore:
    """The store (a SQLite file, or PostgreSQL for a ``postgresql://`` DSN) as
    ``TRACEMUX_DB`` and the ``TRACEMUX_STORE_*`` variables say."""
    path = env.get("TRACEMUX_DB") or None
    max_runs = _get(env, "TRACEMUX_STORE_MAX_RUNS", lambda n, r: parse_int(n, r, 1), 100_000)
    max_age = _get(
        env, "TRACEMUX_STORE_MAX_AGE_DAYS", lambda n, r: parse_seconds(n, r, 0.001), 30.0
    )
    return open_store(path, max_runs=max_runs, max_age_days=max_age)


def destinations_from_env(env: Mapping[str, str]) -> tuple[Destination, ...]:
    """The destinations the environment configures; the local store when there are none.

    Remote backends (Langfuse, LangSmith, Phoenix, any OTLP collector) are read by
    :mod:`tracemux.destinations.env`; with ``TRACEMUX_DB`` set the local store stays on
    beside them.
    """
    from tracemux.destinations.env import remote_destinations_from_env

    remote: list[Destination] = remote_destinations_from_env(env)
    if not remote or env.get("TRACEMUX_DB"):
        return (store_from_env(env), *remote)
    return tuple(remote)
