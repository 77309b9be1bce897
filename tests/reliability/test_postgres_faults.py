"""PostgresStore when the database misbehaves: stopped mid-run, too slow, a lane over its
memory budget while the server is down, writers killed with SIGKILL mid-batch. Every span
is stored or counted dropped with a reason; no half batch is ever visible."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.pgserver import PgCluster, bin_dir
from tests.reliability.conftest import popen_python, run_python, write_script
from tracemux import TracingService
from tracemux.destinations.postgres import PostgresStore
from tracemux.pipeline.worker import PipelineSettings

pytestmark = pytest.mark.reliability


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of the test's own, which it may stop and start."""
    bindir = bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/test.sh installs it)")
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def _consistent(dsn: str) -> dict[str, int]:
    """Checks that only whole batches are stored: each run's span count is the number of
    its spans, the dashboard's calls add up to the spans; returns the totals."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET search_path = tracemux")
        mismatched = conn.execute(
            "SELECT r.run_id, r.span_count, COUNT(s.span_id) FROM runs r"
            " LEFT JOIN spans s ON s.run_id = r.run_id GROUP BY r.run_id, r.span_count"
            " HAVING r.span_count <> COUNT(s.span_id)"
        ).fetchall()
        spans = conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        ended_without_root = conn.execute(
            "SELECT COUNT(*) FROM runs r WHERE end_ns IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM spans s WHERE s.run_id = r.run_id AND s.parent_id IS NULL)"
        ).fetchone()[0]
        calls = conn.execute("SELECT COALESCE(SUM(n), 0) FROM stats_spans WHERE grain = 'h'")
        hourly = int(calls.fetchone()[0])
    assert mismatched == []
    assert ended_without_root == 0
    assert hourly == spans
    return {"runs": runs, "spans": spans}


def _stored_spans(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM tracemux.spans").fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return 0


def _record(svc: TracingService, tag: str, runs: int, spans: int = 4) -> None:
    for i in range(runs):
        with svc.trace_run(f"{tag}-{i}", run_id=f"{tag}-{i}") as run:
            for j in range(spans - 1):
                run.span(f"step-{j}", inputs={"i": i, "j": j}).end()


def _dest(svc: TracingService, store: PostgresStore) -> dict[str, Any]:
    return svc.stats()["destinations"][store.describe()]


def test_server_stopped_mid_run_then_back(own_cluster: PgCluster, make_service: Any) -> None:
    dsn = own_cluster.new_database()
    store = PostgresStore(dsn, connect_timeout=2)
    svc = make_service([store])
    _record(svc, "before", 20)
    assert svc.flush(10)
    own_cluster.stop("immediate")
    _record(svc, "during", 30)
    deadline = time.monotonic() + 15
    while _dest(svc, store)["failures"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _dest(svc, store)["failures"] >= 2
    own_cluster.start()
    assert svc.flush(60)
    stats = _dest(svc, store)
    assert stats["dropped"] == {} and stats["exported"] == 200
    assert _consistent(dsn) == {"runs": 50, "spans": 200}


def test_statements_over_the_timeout_are_retried(pg_dsn: str, make_service: Any) -> None:
    store = PostgresStore(pg_dsn, statement_timeout=0.3)
    svc = make_service([store])
    _record(svc, "first", 1)
    assert svc.flush(10)
    with psycopg.connect(pg_dsn) as blocker:  # a server too slow: spans locked for 2 s
        blocker.execute("LOCK TABLE tracemux.spans IN ACCESS EXCLUSIVE MODE")
        _record(svc, "slow", 5)
        deadline = time.monotonic() + 15
        while _dest(svc, store)["failures"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _dest(svc, store)["failures"] >= 2
    assert svc.flush(30)
    assert _dest(svc, store)["dropped"] == {}
    assert _consistent(pg_dsn) == {"runs": 6, "spans": 24}


def test_a_server_out_of_connections_then_freed(make_service: Any) -> None:
    bindir = bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (scripts/test.sh installs it)")
    cluster = PgCluster(bindir, max_connections=6)
    held: list[psycopg.Connection[Any]] = []
    try:
        cluster.start()
        dsn = cluster.new_database()
        store = PostgresStore(dsn, connect_timeout=2)
        svc = make_service([store])
        _record(svc, "before", 5)
        assert svc.flush(10)

        def fill() -> None:  # take every connection slot the server has left
            while True:
                try:
                    held.append(psycopg.connect(dsn, autocommit=True))
                except psycopg.OperationalError as exc:
                    assert "too many clients" in str(exc)
                    return

        fill()
        held[0].execute(  # an administrator ends the writer's session; its slot is taken
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'tracemux'"
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # its slot is free once the backend has exited
            with contextlib.suppress(psycopg.OperationalError):
                held.append(psycopg.connect(dsn, autocommit=True))
                break
            time.sleep(0.02)
        fill()
        _record(svc, "full", 5)
        deadline = time.monotonic() + 15
        while _dest(svc, store)["failures"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _dest(svc, store)["failures"] >= 3
        with pytest.raises(ConnectionError, match="too many clients"):
            store.runs()  # the server is still full: so were the writer's reconnections
        for conn in held:
            conn.close()
        held.clear()
        assert svc.flush(30)
        assert _dest(svc, store)["dropped"] == {}
        assert _consistent(dsn) == {"runs": 10, "spans": 40}
    finally:
        for conn in held:
            conn.close()
        cluster.destroy()


DOWN_SCRIPT = """
import json, sys, time
import tracemux
from tracemux.destinations.postgres import PostgresStore
from tracemux.pipeline.worker import PipelineSettings

store = PostgresStore(sys.argv[1], connect_timeout=1)
svc = tracemux.TracingService(
    [store], pipeline=PipelineSettings(max_queue_spans=400, flush_interval=0.05))
for i in range(300):
    with svc.trace_run(f"r-{i}", run_id=f"r-{i}") as run:
        for j in range(3):
            run.span(f"s{j}").end()
svc.flush(3)
s = svc.stats()
d = s["destinations"][store.describe()]
print(json.dumps({"recorded": s["recorded"], "exported": d["exported"],
                  "dropped": s["dropped"], "dropped_total": s["dropped_total"]}))
svc.shutdown(2)
"""


def test_a_database_that_is_down_keeps_memory_bounded(tmp_path: Path, pg_cluster: Any) -> None:
    dsn = pg_cluster.dsn().replace(str(pg_cluster.port), "1")  # nothing listens on port 1
    script = write_script(tmp_path, "down.py", DOWN_SCRIPT)
    report = json.loads(run_python(script, dsn, timeout=120).stdout.strip().splitlines()[-1])
    assert report["recorded"] == 1200 and report["exported"] == 0
    # what is not dropped is held: at most the memory budget (400 spans); the rest counted
    assert 1200 - report["dropped_total"] <= 400
    assert set(report["dropped"]) <= {"queue_full", "destination_buffer_full"}, report


WRITER_SCRIPT = """
import sys, time
import tracemux
from tracemux.destinations.postgres import PostgresStore
from tracemux.pipeline.worker import PipelineSettings

store = PostgresStore(sys.argv[1])
tag = sys.argv[2]
svc = tracemux.TracingService([store], pipeline=PipelineSettings(flush_interval=0.02))
i = 0
while True:
    with svc.trace_run(f"{tag}-{i}", run_id=f"{tag}-{i}") as run:
        for j in range(19):
            run.span(f"s{j}", inputs={"pad": "x" * 200}).end()
    i += 1
    if i % 200 == 0:
        print(i, flush=True)
"""


def test_writers_killed_mid_batch_leave_whole_batches(tmp_path: Path, pg_dsn: str) -> None:
    script = write_script(tmp_path, "writer.py", WRITER_SCRIPT)
    procs = [popen_python(script, pg_dsn, f"w{k}", stdout=-1) for k in range(3)]
    try:
        for proc in procs:  # each is recording
            assert proc.stdout is not None
            proc.stdout.readline()
        deadline = time.monotonic() + 30
        while _stored_spans(pg_dsn) < 5000 and time.monotonic() < deadline:
            time.sleep(0.1)  # ... and its batches are being written
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    totals = _consistent(pg_dsn)
    assert totals["spans"] >= 5000
    # the store is still in use: a new writer appends to it
    store = PostgresStore(pg_dsn)
    svc = TracingService([store], pipeline=PipelineSettings())
    try:
        _record(svc, "after", 3)
        assert svc.flush(10)
    finally:
        svc.shutdown(10)
    assert _consistent(pg_dsn)["spans"] == totals["spans"] + 12
