"""Parsing one setting's text: booleans, whole numbers, sizes, seconds, each range-checked.

The parsing half of :mod:`tracemux.config`, in a leaf module (it imports only
:mod:`tracemux.errors`) so that a low module reading its own variable (the run reaper's
``TRACEMUX_RUN_MAX_AGE``) parses it the same way without importing the configuration.
Every function raises :class:`~tracemux.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import math
import re

from tracemux.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SIZE = re.compile(r"^\s*(\d{1,30})\s*([kKmMgGtT](?:i?[bB])?|[bB])?\s*$")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_MAX_DIGITS = 30  # longer numbers are out of every range (and slow to convert)

#: The accepted range of each numeric variable: (least, most). A value outside it is a
#: ConfigError when the service is configured, never an overflow later.
RANGES: dict[str, tuple[float, float]] = {
    "TRACEMUX_MAX_QUEUE_SPANS": (1, 100_000_000),
    "TRACEMUX_MAX_QUEUE_BYTES": (1024, 1024**4),
    "TRACEMUX_BATCH_SIZE": (1, 1_000_000),
    "TRACEMUX_FLUSH_INTERVAL": (0.001, 3600.0),
    "TRACEMUX_EXIT_TIMEOUT": (0.0, 3600.0),
    "TRACEMUX_MAX_VALUE_BYTES": (256, 1024**3),
    "TRACEMUX_STORE_MAX_RUNS": (1, 1_000_000_000),
    "TRACEMUX_STORE_MAX_AGE_DAYS": (0.001, 36_500.0),
    "TRACEMUX_MAX_DESTINATIONS": (1, 1_000_000),
    "TRACEMUX_DESTINATION_IDLE_TTL": (0.001, 30 * 86400.0),
}

_UNITS = {"TRACEMUX_STORE_MAX_AGE_DAYS": " days", "TRACEMUX_MAX_QUEUE_SPANS": " spans"}


def _range_error(name: str, raw: str, unit: str = "") -> ConfigError:
    low, high = RANGES[name]
    unit = _UNITS.get(name, unit)
    shown = raw if len(raw) <= 40 else raw[:20] + f"... ({len(raw)} characters)"
    return ConfigError(f"{name}={shown!r} is out of range: use {low:,g} to {high:,g}{unit}")


def _in_range(name: str, value: float) -> bool:
    low, high = RANGES.get(name, (float("-inf"), float("inf")))
    return low <= value <= high


def parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw[:40]!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def parse_int(name: str, raw: str) -> int:
    text = raw.strip().replace("_", "")
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ConfigError(f"{name}={raw[:40]!r} is not a whole number")
    if len(text) > _MAX_DIGITS or not _in_range(name, int(text)):
        raise _range_error(name, raw)
    return int(text)


def parse_size(name: str, raw: str) -> int:
    m = _SIZE.match(raw)
    if not m:
        if re.fullmatch(r"\s*\d{31,}.*", raw):
            raise _range_error(name, raw, " bytes")
        raise ConfigError(f"{name}={raw[:40]!r} is not a size (examples: 65536, 64k, 32M, 1G)")
    unit = (m.group(2) or "").lower()[:1]
    value = int(m.group(1)) * _SIZE_UNITS[unit]
    if not _in_range(name, value):
        raise _range_error(name, raw, " bytes")
    return value


def parse_seconds(name: str, raw: str) -> float:
    text = raw.strip()
    try:
        value = float(text) if len(text) <= 64 else float("nan")
    except ValueError:
        raise ConfigError(f"{name}={raw[:40]!r} is not a number") from None
    if not math.isfinite(value) or not _in_range(name, value):
        raise _range_error(name, raw, " seconds")
    return value


DEFAULT_RUN_MAX_AGE = 3600.0


def parse_max_age(raw: str | None, name: str = "TRACEMUX_RUN_MAX_AGE") -> float:
    """Seconds from ``TRACEMUX_RUN_MAX_AGE`` (``inf`` for ``0``/``off``; the default, 3600,
    when unset). A bad value is a :class:`ConfigError` (a ValueError)."""
    if raw is None or not raw.strip():
        return DEFAULT_RUN_MAX_AGE
    text = raw.strip().lower()
    if text in ("0", "off", "none", "false"):
        return math.inf
    try:
        value = float(text) if len(text) <= 64 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={raw[:40]!r}: expected seconds >= 0, or 'off'")
    return value if value > 0 else math.inf
