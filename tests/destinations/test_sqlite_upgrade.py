"""Stores made by older tracemux versions are upgraded in place to today's schema, and every
reader returns what it returned before the upgrade.

``data/store_v6.db`` was written by the schema-6 code (WITHOUT ROWID spans, a copy of the
search text), with ``data/store_v6_readers.json``: what every reader returned from it then
(see ``data/make_store_v6.py``). ``data/store_v1.db``: schema 1 (see ``make_store_v1.py``).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import orjson

from tests.destinations.data.make_store_v6 import READERS, readers
from tests.destinations.test_sqlite_search import check_search_index
from tests.destinations.test_sqlite_status import V1_STORE
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import SCHEMA_VERSION

V6_STORE = Path(__file__).parent / "data" / "store_v6.db"


def _raw(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def _upgrade(path: Path) -> None:
    """Open a writer on the store (what the export thread does first), write nothing."""
    exporter = SQLiteStore(path).open()
    exporter.close()


def test_a_schema_6_store_reads_the_same_before_and_after_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    shutil.copy(V6_STORE, path)
    expected = orjson.loads(READERS.read_bytes())
    assert _raw(path, "PRAGMA user_version") == [(6,)]
    # read as it is (a reader never writes): the old search text is still used
    assert readers(SQLiteStore(path)) == expected
    assert _raw(path, "PRAGMA user_version") == [(6,)]

    _upgrade(path)
    assert _raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _raw(path, "PRAGMA integrity_check") == [("ok",)]
    assert _raw(path, "SELECT COUNT(*) FROM sqlite_master WHERE sql LIKE '%WITHOUT ROWID%'"
                " AND name = 'spans'") == [(0,)]  # fmt: skip
    check_search_index(path)
    assert readers(SQLiteStore(path)) == expected


def test_a_schema_6_store_takes_new_runs_after_the_upgrade(make_service, tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    shutil.copy(V6_STORE, path)
    store = SQLiteStore(path)
    svc = make_service([store])
    with svc.trace_run("after-upgrade", run_id="run-new", session_id="s1") as run:
        with run.span("Tool", kind="tool", inputs={"q": "zanzibar"}) as tool:
            tool.set_outputs({"answer": "hello again"})
    assert svc.flush(10)
    assert [r.run_id for r in store.runs(100, search="zanzibar")] == ["run-new"]
    assert {r.run_id for r in store.runs(100, search="hello")} == {"run-went-on", "run-new"}
    assert [r.run_id for r in store.session_runs("s1")] == [
        "run-all-good",
        "run-went-on",
        "run-new",
    ]
    new = store.run("run-new")
    assert new is not None and new.status == "ok" and new.span_count == 2
    check_search_index(path)
    # deleting runs takes their search text with them
    assert store.delete_runs(["run-went-on", "run-new"]) == 2
    assert store.runs(100, search="hello") == []
    check_search_index(path)


def test_a_schema_1_store_reads_the_same_after_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    shutil.copy(V1_STORE, path)
    before = readers(SQLiteStore(path))
    _upgrade(path)
    assert _raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    after = readers(SQLiteStore(path))
    check_search_index(path)
    # what a schema-1 store could not answer before its upgrade: search in the spans'
    # text (it searched names and ids), the dashboard's figures (it had none)
    for key in ("search", "flows", "dashboard_hour", "dashboard_day"):
        before.pop(key), after.pop(key)
    assert after == before
    went_on = next(r["run_id"] for r in after["runs"] if r["name"] == "went-on")
    assert [r.run_id for r in SQLiteStore(path).runs(search="hello")] == [went_on]
