"""What the commands share: finding the store, formatting durations and values."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from tracemux.config import store_from_env
from tracemux.destinations.stores import TraceStore


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
    return store_from_env(path=args.db)


def store_path_problem(path: Path) -> str:
    """Why a store cannot be created or written at ``path``; empty when it can."""
    if str(path) == ":memory:":
        return ""
    if path.exists():
        if not path.is_file():
            return f"{path} exists and is not a file"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{path} is not writable"
        with open(path, "rb") as f:
            head = f.read(16)
        if head and head != b"SQLite format 3\x00":
            return f"{path} is not a SQLite database"
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a directory: the store cannot be created under it"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return ""


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
