"""Fixtures shared by the whole suite."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.destinations.base import Destination
from tracemux.model import Record
from tracemux.pipeline.worker import PipelineSettings, shared_worker


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


@pytest.fixture
def pipeline_settings() -> Iterator[Any]:
    """Apply pipeline limits to the shared worker for one test; the defaults come back after."""
    worker = shared_worker()
    before = worker.settings

    def configure(**limits: Any) -> PipelineSettings:
        settings = PipelineSettings(**limits)
        worker.configure(settings)
        return settings

    yield configure
    worker.configure(before)


# -- test destinations ------------------------------------------------------------------


#: what each Recorder destination received, by name
RECEIVED: dict[str, list[Record]] = {}
_RECEIVED_LOCK = threading.Lock()


@dataclass(frozen=True)
class Recorder(Destination):
    """Keeps every span it is sent in ``RECEIVED[name]``.

    ``delay``: seconds each export takes (``asyncio.sleep`` when ``use_async``, else a
    blocking sleep). ``hang``: never return from export (blocks the thread when not async).
    """

    name: str
    delay: float = 0.0
    hang: bool = False
    use_async: bool = True

    def describe(self) -> str:
        return f"recorder:{self.name}"

    def open(self) -> Any:
        with _RECEIVED_LOCK:
            RECEIVED.setdefault(self.name, [])
        return _RecorderExporter(self) if not self.use_async else _AsyncRecorderExporter(self)


class _RecorderExporter:
    def __init__(self, dest: Recorder) -> None:
        self.dest = dest

    def export(self, batch: Sequence[Record]) -> None:
        if self.dest.hang:
            threading.Event().wait()
        if self.dest.delay:
            time.sleep(self.dest.delay)
        with _RECEIVED_LOCK:
            RECEIVED[self.dest.name].extend(r for r in batch if r.is_span)

    def close(self) -> None:
        pass


class _AsyncRecorderExporter(_RecorderExporter):
    async def export(self, batch: Sequence[Record]) -> None:  # type: ignore[override]
        if self.dest.hang:
            await asyncio.Event().wait()
        if self.dest.delay:
            await asyncio.sleep(self.dest.delay)
        with _RECEIVED_LOCK:
            RECEIVED[self.dest.name].extend(r for r in batch if r.is_span)


@pytest.fixture
def received() -> dict[str, list[Record]]:
    """The spans each Recorder destination got (cleared before each test)."""
    with _RECEIVED_LOCK:
        RECEIVED.clear()
    return RECEIVED


# -- PostgreSQL -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the whole session (see
    tests/pgserver.py); stopped and removed at the end."""
    from tests.pgserver import PgCluster, bin_dir

    bindir = bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/test.sh installs it)")
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_dsn(pg_cluster: Any) -> str:
    """The DSN of a fresh, empty database in the session's cluster."""
    return str(pg_cluster.new_database())
