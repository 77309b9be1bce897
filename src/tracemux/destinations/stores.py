"""The stores the CLI and the viewer read: the interface both stores implement, and the
store a ``--db``/``TRACEMUX_DB`` value names (a SQLite file, or a ``postgresql://`` DSN)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from tracemux.destinations.postgres import PostgresStore, is_postgres_dsn
from tracemux.destinations.sqlite import (
    DashboardData,
    RunsPage,
    SQLiteStore,
    StoredRun,
    StoredSession,
    StoredSpan,
)

__all__ = ["TraceStore", "open_store", "store_exists"]


@runtime_checkable
class TraceStore(Protocol):
    """What the CLI and the viewer read (and the few writes they make): implemented by
    :class:`SQLiteStore` and :class:`PostgresStore` with the same meanings."""

    @property
    def path(self) -> str: ...

    def describe(self) -> str: ...

    def runs(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        search: str | None = None,
        status: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> list[StoredRun]: ...

    def runs_page(self, limit: int = 50, **kwargs: Any) -> RunsPage: ...

    def count_runs(self, **filters: Any) -> int: ...

    def run(self, run_id: str) -> StoredRun | None: ...

    def match_runs(self, prefix: str, limit: int = 10) -> list[StoredRun]: ...

    def spans(self, run_id: str) -> list[StoredSpan]: ...

    def usage_by_run(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, int, int]]]: ...

    def sessions(
        self, limit: int = 50, offset: int = 0, *, user_id: str | None = None
    ) -> list[StoredSession]: ...

    def count_sessions(self, *, user_id: str | None = None) -> int: ...

    def session_runs(self, session_id: str, limit: int = 500) -> list[StoredRun]: ...

    def usage_by_session(
        self, session_ids: Sequence[str]
    ) -> dict[str, list[tuple[str, int, int]]]: ...

    def dashboard_data(
        self,
        since_ns: int,
        until_ns: int,
        step_ns: int,
        *,
        project: str | None = None,
        flow: str | None = None,
    ) -> DashboardData: ...

    def flows(self, limit: int = 200) -> list[str]: ...

    def import_runs(self, runs: Sequence[StoredRun], spans: Sequence[StoredSpan]) -> int: ...

    def delete_runs(self, run_ids: Sequence[str]) -> int: ...


def open_store(target: str | os.PathLike[str] | None = None, **limits: Any) -> TraceStore:
    """The store ``target`` names: a ``postgresql://`` (or ``postgres://``) DSN gives a
    :class:`PostgresStore` (needs the ``postgres`` extra), anything else a SQLite file (the
    default path when None). ``limits``: ``max_runs``, ``max_age_days``..."""
    if target is not None and is_postgres_dsn(str(target)):
        return PostgresStore(str(target), **limits)
    return SQLiteStore(target, **limits)


def store_exists(store: TraceStore) -> bool:
    """Whether the store holds anything yet (its file exists, or its tables do)."""
    if isinstance(store, PostgresStore):
        return store.exists()
    return os.path.exists(store.path)
