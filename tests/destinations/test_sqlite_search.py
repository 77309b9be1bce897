"""Full-text search over spans' names, inputs, outputs, logs and errors (SQLite FTS5),
written by the export thread, kept in step by pruning and deletion, built for existing
stores on upgrade."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from tests.destinations.test_sqlite_status import V1_STORE
from tests.ui.conftest import TOOL_ONLY_WORD, fill_store, record_chat_session
from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import fts_query


def _ids(store: SQLiteStore, search: str) -> set[str]:
    return {r.run_id for r in store.runs(100, search=search)}


def _text_rows(path: str) -> int:
    """Entries in the full-text index (after checking it agrees with the spans)."""
    check_search_index(path)
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM span_text_docsize").fetchone()[0]


def check_search_index(path: str | Path) -> None:
    """The full-text index is sound and holds one entry per span, under the span's rowid."""
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO span_text (span_text) VALUES ('integrity-check')")
        indexed = conn.execute("SELECT id FROM span_text_docsize ORDER BY id").fetchall()
        assert indexed == conn.execute("SELECT rowid FROM spans ORDER BY rowid").fetchall()


def test_search_finds_words_anywhere_in_a_run(service: TracingService, store: SQLiteStore) -> None:
    rec = fill_store(service, agent_runs=2)
    chat = record_chat_session(service)
    assert service.flush(10)
    # a word that appears only inside one tool's output
    assert _ids(store, TOOL_ONLY_WORD) == {chat[0]}
    assert store.count_runs(search=TOOL_ONLY_WORD) == 1
    # in an error message, in a log message, in an input, by prefix, case and accents
    assert _ids(store, "positive") == {rec.failed_run}  # "chunk size must be positive"
    assert _ids(store, "retrying once") == set(rec.agent_runs)  # a log of WebSearch
    assert _ids(store, "KEYS ROTAT") == set(rec.agent_runs)
    assert _ids(store, "Zanzibarité") == {chat[0]}
    # names and ids still match as text; combined with the other filters
    assert _ids(store, rec.failed_run[:8]) == {rec.failed_run}
    assert _ids(store, "weather-chat") == set(chat)
    assert {r.run_id for r in store.runs(search="paris", status="ok")} == set(chat)
    assert _ids(store, "nothing-like-this-anywhere") == set()
    # one row of text per span
    assert _text_rows(store.path) == sum(r.span_count for r in store.runs(100))


def test_user_text_is_never_fts_syntax(service: TracingService, store: SQLiteStore) -> None:
    fill_store(service, agent_runs=1)
    for hostile in ('"', "NEAR(", "a OR b", "*", "-x", "col:x", "'", "^", "(", "\\"):
        store.runs(search=hostile)  # no sqlite3.OperationalError
        store.count_runs(search=hostile)
    assert fts_query('say "hi" OR (bye)') == '"say" "hi" "OR" "bye"*'
    assert fts_query("*** ---") is None


def test_deleting_and_pruning_remove_a_runs_text(make_service, store: SQLiteStore) -> None:
    svc: TracingService = make_service([store])
    chat = record_chat_session(svc)
    svc.shutdown(10)
    assert store.delete_runs([chat[0]]) == 1
    assert store.run(chat[0]) is None and store.spans(chat[0]) == []
    assert _ids(store, TOOL_ONLY_WORD) == set()
    assert _text_rows(store.path) == store.run(chat[1]).span_count
    small = SQLiteStore(store.path, max_runs=1, prune_every=0)
    svc = make_service([small])
    with svc.trace_run("newest"):
        pass
    svc.shutdown(10)
    assert [r.name for r in store.runs()] == ["newest"]
    assert _text_rows(store.path) == 1


def test_an_existing_store_is_indexed_on_upgrade(make_service, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(V1_STORE, path)
    old = SQLiteStore(path)
    went_on = next(r for r in old.runs() if r.name == "went-on")
    assert _ids(old, "hello") == set()  # not indexed yet: names and ids only
    assert _ids(old, "went") == {went_on.run_id}
    svc = make_service([old])
    with svc.trace_run("after upgrade"):
        pass
    svc.shutdown(10)
    assert _ids(old, "hello") == {went_on.run_id}  # the assistant's answer, stored before
    assert _ids(old, "timed out") == {went_on.run_id}  # an old span's error
    assert _text_rows(str(path)) == sum(r.span_count for r in old.runs(100))
