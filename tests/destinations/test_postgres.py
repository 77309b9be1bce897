"""PostgresStore against a real PostgreSQL server (a throwaway cluster, see tests/pgserver.py):
the same answers as SQLiteStore from the same records, migrations, retention, and the
password never shown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.ui.conftest import fill_store, import_known_runs, record_chat_session
from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.destinations.postgres import SCHEMA_VERSION, PostgresStore, migrate
from tracemux.destinations.stores import TraceStore, open_store, store_exists

HOUR_NS = 3_600_000_000_000


def _both(
    make_service: Callable[..., TracingService], tmp_path: Path, dsn: str
) -> tuple[SQLiteStore, PostgresStore, object]:
    """A SQLite store and a PostgreSQL store sent the very same records."""
    lite, pg = SQLiteStore(tmp_path / "t.db"), PostgresStore(dsn)
    svc = make_service([lite, pg])
    # the pipeline's counters are the process's: earlier tests' drops are not this one's
    drops_before = svc.stats()["dropped_total"]
    rec = fill_store(svc, agent_runs=4)
    record_chat_session(svc)
    with svc.trace_run("nul\x00name", user_id="carol") as run:
        with run.span("step\x00", kind="tool", inputs={"x": "a\x00b"}):
            pass
    assert svc.flush(10)
    assert svc.stats()["dropped_total"] == drops_before
    return lite, pg, rec


def _ids(runs: list) -> list[str]:
    return [r.run_id for r in runs]


def test_read_api_gives_the_same_answers_as_sqlite(
    make_service: Callable[..., TracingService], tmp_path: Path, pg_dsn: str
) -> None:
    lite, pg, rec = _both(make_service, tmp_path, pg_dsn)
    assert isinstance(pg, TraceStore) and isinstance(lite, TraceStore)
    total = lite.count_runs()
    assert total == pg.count_runs() > 5
    assert [r.to_dict() for r in pg.runs(100)] == [_clean(r.to_dict()) for r in lite.runs(100)]
    for status in ("running", "ok", "partial", "error", "failed"):
        assert _ids(pg.runs(100, status=status)) == _ids(lite.runs(100, status=status)), status
        assert pg.count_runs(status=status) == lite.count_runs(status=status)
    assert pg.count_runs(status="error") >= 1
    for search in ("rotat", "support-agent", "SearchTimeout", "nothing-like-this", "a%_\\"):
        assert _ids(pg.runs(100, search=search)) == _ids(lite.runs(100, search=search)), search
    assert pg.runs(100, search="rotat")
    assert _ids(pg.runs(100, user_id="bob")) == _ids(lite.runs(100, user_id="bob"))
    assert _ids(pg.runs(3, 2)) == _ids(lite.runs(3, 2))
    for sort in ("start", "duration", "tokens", "spans"):
        for descending in (True, False):
            assert _pages(pg, sort, descending) == _pages(lite, sort, descending), sort
    assert pg.sessions(50) == lite.sessions(50)
    assert pg.count_sessions() == lite.count_sessions() >= 2
    assert pg.sessions(50, user_id="alice") == lite.sessions(50, user_id="alice")
    for s in lite.sessions(50):
        assert _ids(pg.session_runs(s.session_id)) == _ids(lite.session_runs(s.session_id))
    sessions = [s.session_id for s in lite.sessions(50)]
    assert pg.usage_by_session(sessions) == lite.usage_by_session(sessions)
    ids = _ids(lite.runs(100))
    assert pg.usage_by_run(ids) == lite.usage_by_run(ids) != {}
    for run_id in ids:
        assert [s.to_dict() for s in pg.spans(run_id)] == [
            _clean(s.to_dict()) for s in lite.spans(run_id)
        ]
    prefix = rec.failed_run[:6]
    assert _ids(pg.match_runs(prefix)) == _ids(lite.match_runs(prefix))
    assert pg.run(prefix) == lite.run(prefix)
    assert pg.run("no-such-run") is None
    assert pg.flows() == [f.replace("\x00", "\ufffd") for f in lite.flows()]
    now = time.time_ns()
    for step in (60_000_000_000, 24 * HOUR_NS):
        a = pg.dashboard_data(now - 2 * HOUR_NS, now + 1, step)
        b = lite.dashboard_data(now - 2 * HOUR_NS, now + 1, step)
        assert a.runs == b.runs and a.models == b.models
        assert sorted(map(_figure, a.figures)) == sorted(map(_figure, b.figures))


def _clean(d: dict) -> dict:
    """What PostgreSQL keeps of a value with a NUL character (U+FFFD in its place)."""
    return {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in d.items()}


def _figure(row: tuple) -> tuple:
    return (
        bool(row[0]),
        *(v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in row[1:]),
    )


def _pages(store: TraceStore, sort: str, descending: bool) -> list[str]:
    seen: list[str] = []
    page = store.runs_page(3, sort=sort, descending=descending)
    while True:
        seen += _ids(page.runs)
        if page.next is None:
            break
        page = store.runs_page(3, sort=sort, descending=descending, after=page.next)
    back = store.runs_page(3, sort=sort, descending=descending, before=page.prev)
    assert _ids(back.runs) == seen[-3 - len(page.runs) : -len(page.runs)]
    return seen


def test_writing_starts_no_thread_but_the_export_thread(
    make_service: Callable[..., TracingService], pg_dsn: str
) -> None:
    store = PostgresStore(pg_dsn)
    before = set(threading.enumerate())
    svc = make_service([store])
    for i in range(50):
        with svc.trace_run(f"flow-{i}") as run:
            run.span("step").end()
    assert svc.flush(10)
    store.runs(10), store.sessions(), store.dashboard_data(0, time.time_ns(), HOUR_NS)
    new = [t.name for t in set(threading.enumerate()) - before]
    assert all(name.startswith("tracemux") for name in new), new
    assert len(new) <= 1  # the process's export thread (none when it already ran)


def test_import_and_delete_as_sqlite(tmp_path: Path, pg_dsn: str) -> None:
    lite, pg = SQLiteStore(tmp_path / "k.db"), PostgresStore(pg_dsn)
    now = time.time_ns()
    import_known_runs(lite, now)
    import_known_runs(pg, now)
    assert [r.to_dict() for r in pg.runs(100)] == [r.to_dict() for r in lite.runs(100)]
    a = pg.dashboard_data(now - 6 * HOUR_NS, now + 1, 60_000_000_000, project="known")
    b = lite.dashboard_data(now - 6 * HOUR_NS, now + 1, 60_000_000_000, project="known")
    assert sorted(map(_figure, a.figures)) == sorted(map(_figure, b.figures)) != []
    assert pg.delete_runs(["alpha-00", "beta-01", "nope"]) == 2
    assert pg.run("alpha-00") is None and pg.spans("alpha-00") == []
    assert pg.count_runs() == 23


def test_empty_database_reads_as_an_empty_store(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    assert not store_exists(store)
    assert store.runs() == [] and store.count_runs() == 0 and store.sessions() == []
    assert store.runs_page().runs == [] and store.flows() == [] and store.spans("x") == []


def test_dsn_selects_the_store_and_garbage_fails_at_configuration(pg_dsn: str) -> None:
    assert isinstance(open_store(pg_dsn), PostgresStore)
    assert isinstance(open_store(pg_dsn.replace("postgresql://", "postgres://")), PostgresStore)
    assert isinstance(open_store("/tmp/x.db"), SQLiteStore)
    with pytest.raises(ValueError, match="schema"):
        PostgresStore(pg_dsn, schema="x; DROP TABLE runs")
    with pytest.raises(ValueError, match="not a valid connection string"):
        PostgresStore("postgresql://[::1")
    with pytest.raises(ValueError):
        PostgresStore(pg_dsn, statement_timeout=0)
    with pytest.raises(ValueError, match="port"):
        PostgresStore("postgresql://u:p@h:notaport/db")
    with pytest.raises(ValueError, match="sslmode"):
        PostgresStore(pg_dsn + "?sslmode=bogus")


def test_password_never_shows(
    make_service: Callable[..., TracingService],
    pg_cluster: object,
    pg_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "wr0ng-Pa55-visible?"
    bad = PostgresStore(pg_dsn.replace("pg-test-secret-7f3a", secret), connect_timeout=2)
    good = PostgresStore(pg_dsn)
    for store in (bad, good):
        for text in (store.describe(), repr(store), str(store), store.path):
            assert "pg-test-secret" not in text and secret not in text
    caplog.set_level(logging.DEBUG)
    svc = make_service([bad])
    with svc.trace_run("flow"):
        pass
    assert not svc.flush(1.5)
    stats = svc.stats()
    dest = stats["destinations"][bad.describe()]
    assert dest["failures"] >= 1
    svc.shutdown(3)  # gives up what it still holds: counted, with a reason
    stats = svc.stats()
    dest = stats["destinations"][bad.describe()]
    assert dest["exported"] == 0 and sum(dest["dropped"].values()) == 1, stats  # the run's span
    shown = caplog.text + repr(stats)
    assert secret not in shown and "authentication failed" in caplog.text
    with pytest.raises(ConnectionError) as info:
        bad.runs()
    assert secret not in str(info.value)


def test_schema_from_empty_and_from_a_previous_version(pg_dsn: str) -> None:
    old = PostgresStore(pg_dsn)
    with old.connect(autocommit=False) as conn:
        assert migrate(conn, target=1) == 0
        with conn.transaction():
            conn.execute(
                "INSERT INTO runs (run_id, trace_id, name, start_ns, end_ns, status, span_count)"
                " VALUES ('r1', 't1', 'old flow', 1, 2, 'ok', 1)"
            )
            conn.execute(
                "INSERT INTO spans (run_id, span_id, name, kind, start_ns, end_ns, status,"
                " outputs) VALUES ('r1', 's1', 'old flow', 'chain', 1, 2, 'ok',"
                ' \'{"text": "photosynthesis"}\')'
            )
    # many processes starting at once: one upgrades, the others wait and find it done
    found: list[int] = []
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            with old.connect(autocommit=False) as conn:
                found.append(migrate(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and sorted(found) == [1] + [SCHEMA_VERSION] * 5
    assert _ids(old.runs(search="photosynth")) == ["r1"]
    with psycopg.connect(pg_dsn) as conn:
        version = conn.execute("SELECT version FROM tracemux.schema_version").fetchall()
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
    assert version == [(SCHEMA_VERSION,)]
    assert {"spans_search", "runs_with_errors", "runs_by_session", "spans_with_model"} <= indexes


def test_retention_keeps_the_newest_runs(
    make_service: Callable[..., TracingService], pg_dsn: str
) -> None:
    store = PostgresStore(pg_dsn, max_runs=5, prune_every=0)
    svc = make_service([store])
    for i in range(12):
        with svc.trace_run(f"flow-{i}") as run:
            with run.span("step"):
                pass
        assert svc.flush(10)
    names = [r.name for r in store.runs(100)]
    assert names == [f"flow-{i}" for i in range(11, 6, -1)]
    with psycopg.connect(pg_dsn) as conn:
        orphans = conn.execute(
            "SELECT COUNT(*) FROM tracemux.spans WHERE run_id NOT IN"
            " (SELECT run_id FROM tracemux.runs)"
        ).fetchone()
    assert orphans == (0,)


def test_pruning_in_progress_never_blocks_writers(
    make_service: Callable[..., TracingService], pg_dsn: str
) -> None:
    store = PostgresStore(pg_dsn, statement_timeout=5)
    svc = make_service([store])
    for i in range(10):
        with svc.trace_run(f"old-{i}", run_id=f"old-{i}") as run:
            run.span("step").end()
    assert svc.flush(10)
    with psycopg.connect(pg_dsn) as pruner:  # another process, in the middle of a pass
        pruner.execute("DELETE FROM tracemux.spans WHERE run_id LIKE 'old-%'")
        pruner.execute("DELETE FROM tracemux.runs WHERE run_id LIKE 'old-%'")
        for i in range(10):
            with svc.trace_run(f"new-{i}", run_id=f"new-{i}") as run:
                run.span("step").end()
        assert svc.flush(10)  # written while the old rows are locked
        assert svc.stats()["destinations"][store.describe()]["failures"] == 0
        assert store.count_runs() == 20  # the pass is not committed yet
        pruner.commit()
    assert sorted(r.run_id for r in store.runs(100)) == [f"new-{i}" for i in range(10)]


def test_a_role_without_create_writes_and_a_read_only_role_reads(
    make_service: Callable[..., TracingService], pg_dsn: str
) -> None:
    owner = PostgresStore(pg_dsn)
    with owner.connect(autocommit=False) as conn:
        migrate(conn)  # created once, by a role that may
    db = pg_dsn.rsplit("/", 1)[1]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for role, grants in (  # roles are the cluster's: named after the test's database
            (f"w_{db}", "SELECT, INSERT, UPDATE, DELETE"),
            (f"r_{db}", "SELECT"),
        ):
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
            conn.execute(f"REVOKE CREATE ON DATABASE {db} FROM {role}")
            conn.execute(f"GRANT USAGE ON SCHEMA tracemux TO {role}")
            conn.execute(f"GRANT {grants} ON ALL TABLES IN SCHEMA tracemux TO {role}")
            conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA tracemux TO {role}")
    base = pg_dsn.split("://", 1)[1].split("@", 1)[1]
    writer = PostgresStore(f"postgresql://w_{db}:pw-w_{db}@{base}")
    reader = PostgresStore(f"postgresql://r_{db}:pw-r_{db}@{base}")
    svc = make_service([writer])
    with svc.trace_run("flow", run_id="by-writer") as run:
        run.span("step").end()
    assert svc.flush(10)
    assert svc.stats()["destinations"][writer.describe()]["failures"] == 0
    assert [r.run_id for r in reader.runs()] == ["by-writer"]
    assert len(reader.spans("by-writer")) == 2


def test_tracemux_db_selects_it_from_the_environment(pg_dsn: str) -> None:
    from tracemux.config import destinations_from_env

    (store,) = destinations_from_env({"TRACEMUX_DB": pg_dsn, "TRACEMUX_STORE_MAX_RUNS": "7"})
    assert isinstance(store, PostgresStore)
    assert store == PostgresStore(pg_dsn, max_runs=7)
