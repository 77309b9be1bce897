"""A run's status finds every run where something failed, in new stores and in stores
written by tracemux before the status ``partial`` existed (upgraded in place)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import SCHEMA_VERSION

#: made by tracemux at schema 1 (the code before this change): runs "all-good" (ok),
#: "went-on" (a tool failed, the run went on: stored as "ok" with error_count 1) and
#: "failed" (the run failed)
V1_STORE = Path(__file__).parent / "data" / "store_v1.db"


def _raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def _names(store: SQLiteStore, status: str | None = None) -> set[str]:
    return {r.name or "" for r in store.runs(100, status=status)}


def _record_partial_and_failed(svc: TracingService) -> None:
    with svc.trace_run("went-on") as run:
        try:
            with run.span("Flaky", kind="tool"):
                raise TimeoutError("tool timed out")
        except TimeoutError:
            pass
    try:
        with svc.trace_run("failed"):
            raise ValueError("boom")
    except ValueError:
        pass
    with svc.trace_run("all-good"):
        pass
    assert svc.flush(10)


def test_statuses_and_filters(service: TracingService, store: SQLiteStore) -> None:
    _record_partial_and_failed(service)
    status = {r.name: (r.status, r.error_count) for r in store.runs(10)}
    assert status == {"went-on": ("partial", 1), "failed": ("error", 1), "all-good": ("ok", 0)}
    assert _names(store, "error") == {"went-on", "failed"}
    assert store.count_runs(status="error") == 2
    assert _names(store, "partial") == {"went-on"}
    assert _names(store, "failed") == {"failed"}
    assert _names(store, "ok") == {"all-good"}
    with pytest.raises(ValueError, match="status must be one of"):
        store.runs(status="bogus")


def test_a_running_run_with_a_failed_span_is_found_by_the_error_filter(
    service: TracingService, store: SQLiteStore
) -> None:
    with service.trace_run("still running") as run:
        try:
            with run.span("Flaky", kind="tool"):
                raise TimeoutError("tool timed out")
        except TimeoutError:
            pass
        assert service.flush(10)
        assert _names(store, "error") == {"still running"}
        assert store.runs(1)[0].status == "running"
    assert service.flush(10)
    assert store.runs(1)[0].status == "partial"


def test_a_schema_1_store_is_read_and_upgraded_in_place(make_service, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(V1_STORE, path)
    assert _raw(path, "PRAGMA user_version") == [(1,)]
    old = SQLiteStore(path)
    # read before any writer opened it: the filters work already, and nothing is written
    assert _names(old, "error") == {"went-on", "failed"}
    assert {r.name: r.status for r in old.runs(10)}["went-on"] == "partial"
    assert _raw(path, "SELECT status FROM runs WHERE name = 'went-on'") == [("ok",)]

    svc = make_service([old])
    with svc.trace_run("new run"):
        pass
    assert svc.flush(10)
    assert _raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _raw(path, "SELECT status FROM runs WHERE name = 'went-on'") == [("partial",)]
    indexes = {row[0] for row in _raw(path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert "runs_with_errors" in indexes
    assert _names(old) == {"all-good", "went-on", "failed", "new run"}
    assert _names(old, "error") == {"went-on", "failed"}
    assert old.count_runs(status="error") == 2
    # the old spans are all still there
    went_on = next(r for r in old.runs(10) if r.name == "went-on")
    assert {s.name for s in old.spans(went_on.run_id)} == {"went-on", "Flaky", "ChatModel"}


def test_match_runs_lists_what_a_prefix_could_mean(
    service: TracingService, store: SQLiteStore
) -> None:
    for run_id in ("abc-1", "abc-2", "abd-3", "a_c-4"):
        with service.trace_run("r", run_id=run_id):
            pass
    assert service.flush(10)
    assert {r.run_id for r in store.match_runs("ab")} == {"abc-1", "abc-2", "abd-3"}
    assert store.run("ab") is None  # ambiguous
    assert store.run("abd").run_id == "abd-3"
    assert [r.run_id for r in store.match_runs("a_")] == ["a_c-4"]  # _ is no wildcard
    assert len(store.match_runs("a", limit=2)) == 2
