"""What the commands share: finding the store, formatting durations and values."""

from __future__ import annotations

import argparse
import os
from typing import Any

import orjson
from rich.console import Console

from tracemux.destinations.stores import TraceStore, open_store


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH|DSN",
        default=None,
        help="the store: a SQLite file or a postgresql:// DSN"
        " (default: $TRACEMUX_DB, else the user data directory)",
    )


def store_for(args: argparse.Namespace) -> TraceStore:
    """The store named by ``--db``, else ``TRACEMUX_DB``, else the default path."""
    return open_store(args.db or os.environ.get("TRACEMUX_DB") or None)


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)


def fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


def fmt_value(value: Any, width: int = 80) -> str:
    """A one-line, abbreviated rendering of a captured value."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
