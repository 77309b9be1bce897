"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tracemux import TracingService
from tracemux.destinations import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    """A fresh SQLite store in the test's temporary directory."""
    return SQLiteStore(tmp_path / "traces.db")


@pytest.fixture
def make_service() -> Iterator[Callable[..., TracingService]]:
    """Build services; each is shut down (and its export thread stopped) after the test."""
    made: list[TracingService] = []

    def make(*args: Any, **kwargs: Any) -> TracingService:
        svc = TracingService(*args, **kwargs)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.shutdown(10)


@pytest.fixture
def service(make_service: Callable[..., TracingService], store: SQLiteStore) -> TracingService:
    """A service writing to the test's own store."""
    return make_service([store])
