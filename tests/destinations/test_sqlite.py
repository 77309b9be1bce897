"""SQLiteStore: what it keeps, how it reads back, pruning, and surviving a kill."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from tracemux.destinations import SQLiteStore

SRC = str(Path(__file__).resolve().parents[2] / "src")


def record_runs(svc, n, **kwargs):
    ids = []
    for i in range(n):
        with svc.trace_run(f"run-{i}", **kwargs) as run:
            with run.span("child", kind="tool") as s:
                s.set_usage(input_tokens=2, output_tokens=3)
        ids.append(run.run_id)
        time.sleep(0.001)  # distinct start times
    return ids


def test_runs_newest_first_with_pagination_and_filters(service, store):
    ids = record_runs(service, 5, user_id="alice", session_id="s1")
    ids += record_runs(service, 3, user_id="bob", session_id="s2")
    with service.trace_run("special failing run", user_id="bob"):
        try:
            with service.span("boom"):
                raise ValueError("x")
        except ValueError:
            pass
    assert service.flush(10)

    runs = store.runs(limit=100)
    assert len(runs) == store.count_runs() == 9
    starts = [r.start_ns for r in runs]
    assert starts == sorted(starts, reverse=True)
    assert [r.run_id for r in store.runs(limit=3, offset=1)] == [r.run_id for r in runs[1:4]]
    assert {r.user_id for r in store.runs(user_id="alice")} == {"alice"}
    assert store.count_runs(user_id="bob") == 4
    assert store.count_runs(session_id="s2") == 3
    assert [r.name for r in store.runs(search="special")] == ["special failing run"]
    assert store.count_runs(search="run-") == 9  # full-text: the word "run" is in every name
    assert store.count_runs(search="%") == 0  # LIKE wildcards are literal
    # the error was handled inside the run: the run went on (partial), and is found
    assert store.runs(status="failed") == []
    [handled] = store.runs(search="special")
    assert handled.error_count == 1 and handled.status == "partial"
    assert store.runs(status="error") == [handled]
    r = store.run(ids[0])
    assert r is not None and r.span_count == 2 and (r.input_tokens, r.output_tokens) == (2, 3)
    assert store.run(ids[0][:8]).run_id == ids[0]  # a unique prefix is enough
    assert store.run("nonexistent") is None


def test_runs_in_progress_show_as_running(service, store):
    run = service.trace_run("long run", user_id="u")
    run.__enter__()
    with run.span("first step"):
        pass
    assert service.flush(10)
    [stored] = store.runs()
    assert stored.status == "running" and stored.end_ns is None and stored.user_id == "u"
    run.__exit__(None, None, None)
    assert service.flush(10)
    [stored] = store.runs()
    assert stored.status == "ok" and stored.end_ns is not None and stored.span_count == 2


def test_reading_a_missing_store_is_empty(tmp_path):
    store = SQLiteStore(tmp_path / "none.db")
    assert store.runs() == [] and store.spans("x") == [] and store.run("x") is None
    assert store.count_runs() == 0
    assert not (tmp_path / "none.db").exists()


def test_store_prunes_by_count_and_age(make_service, tmp_path):
    store = SQLiteStore(tmp_path / "prune.db", max_runs=5, prune_every=0)
    svc = make_service([store])
    ids = record_runs(svc, 12)
    assert svc.flush(10)
    record_runs(svc, 1)  # the next batch prunes
    assert svc.flush(10)
    kept = [r.run_id for r in store.runs(limit=100)]
    assert len(kept) == 5
    assert ids[0] not in kept and ids[-1] in kept
    assert store.spans(ids[0]) == []
    conn = sqlite3.connect(store.path)
    orphans = conn.execute(
        "SELECT COUNT(*) FROM spans WHERE run_id NOT IN (SELECT run_id FROM runs)"
    ).fetchone()[0]
    assert orphans == 0

    aged = SQLiteStore(tmp_path / "aged.db", max_age_days=1e-6, prune_every=0)  # 86 ms
    svc2 = make_service([aged])
    record_runs(svc2, 3)
    assert svc2.flush(10)
    time.sleep(0.2)
    record_runs(svc2, 1)
    assert svc2.flush(10)
    assert len(aged.runs()) <= 1


def test_equal_stores_are_one_destination(tmp_path):
    a = SQLiteStore(tmp_path / "same.db")
    b = SQLiteStore(str(tmp_path / "same.db"))
    assert a == b and hash(a) == hash(b)
    assert a != SQLiteStore(tmp_path / "same.db", max_runs=3)


def wait_for_committed_spans(
    db: Path, writer: subprocess.Popen, log: Path, timeout: float = 60.0
) -> None:
    """Return once the writer has committed a span; else fail with its threads' stacks."""
    deadline = time.monotonic() + timeout
    uri = f"{db.as_uri()}?mode=ro"  # never create the file before the writer does
    while time.monotonic() < deadline and writer.poll() is None:
        try:
            conn = sqlite3.connect(uri, uri=True)
            try:
                if conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0]:
                    return
            finally:
                conn.close()
        except sqlite3.OperationalError:
            pass  # not created yet
        time.sleep(0.05)
    if writer.poll() is None:
        writer.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack to the log
        time.sleep(1)
    writer.kill()
    writer.wait(10)
    raise AssertionError(f"the writer committed nothing; its stderr:\n{log.read_text()}")


def test_killed_writer_leaves_a_consistent_database(tmp_path):
    db = tmp_path / "killed.db"
    code = textwrap.dedent(
        f"""
        import faulthandler, itertools, signal, sys, tracemux
        from tracemux.destinations import SQLiteStore
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        svc = tracemux.TracingService([SQLiteStore({str(db)!r})])
        for i in itertools.count():
            with svc.trace_run(f"r{{i}}") as run:
                for j in range(20):
                    with run.span(f"s{{j}}", inputs={{"i": i, "j": j, "pad": "x" * 200}}):
                        pass
            if i == 50:
                print("writing", flush=True)
            if i % 2000 == 0:
                print(i, svc.stats(), file=sys.stderr, flush=True)
        """
    )
    # the writer sees no TRACEMUX_ settings that other tests of this process may have left
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEMUX_")}
    for attempt in range(5):
        log = tmp_path / f"writer-{attempt}.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-c", code],
                env={**env, "PYTHONPATH": SRC},
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing", log.read_text()
        wait_for_committed_spans(db, proc, log)
        time.sleep(0.05 + 0.13 * attempt)  # and then mid-batch
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # every committed batch is whole: a run's span count matches its span rows
        mismatched = conn.execute(
            "SELECT COUNT(*) FROM runs r WHERE span_count != "
            "(SELECT COUNT(*) FROM spans s WHERE s.run_id = r.run_id)"
        ).fetchone()[0]
        assert mismatched == 0
        assert conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0] > 0
        conn.close()
    assert len(SQLiteStore(db).runs(limit=10)) == 10


def test_odd_sized_batches_are_written_whole_whatever_the_variable_limit(
    make_service, tmp_path, monkeypatch
):
    """Rows go in multi-row statements of 1024/256/64/16/4/1 rows: every count must come out
    exact, also where SQLite allows only 999 variables per statement (before 3.32)."""
    import tracemux.destinations.sqlite as sqlite_mod

    for limit in (999, 32766):
        monkeypatch.setattr(sqlite_mod, "_max_variables", lambda conn, limit=limit: limit)
        store = SQLiteStore(tmp_path / f"odd-{limit}.db")
        svc = make_service([store])
        sizes = [1, 3, 17, 70, 337, 1100]  # spans per run, root included
        run_ids = []
        for n in sizes:
            with svc.trace_run(f"run-{n}", inputs={"n": n}) as run:
                for j in range(n - 1):
                    with run.span(f"s{j}", inputs={"j": j}) as span:
                        span.set_outputs({"j2": j * 2})
            run_ids.append(run.run_id)
        assert svc.flush(30)
        for n, run_id in zip(sizes, run_ids):
            stored = store.run(run_id)
            assert stored is not None and stored.span_count == n and stored.status == "ok"
            assert stored.inputs == {"n": n} and stored.end_ns is not None
            spans = store.spans(run_id)
            assert len(spans) == n
            assert sorted(s.outputs["j2"] for s in spans if s.outputs) == [
                j * 2 for j in range(n - 1)
            ]


def test_values_and_logs_read_back_as_recorded(service, store):
    """The store keeps the JSON captured on the caller's thread as it was (not decoded and
    encoded again): every value and log line reads back equal."""
    with service.trace_run("values", inputs={"q": 'héllo "quoted" \u2603', "n": [1, 2.5]}) as run:
        with run.span("Chat", kind="llm", inputs=[{"role": "user", "content": "hi"}]) as llm:
            llm.add_log("plain")
            llm.add_log("with fields: ünïcode", level="warning", attempt=2, tags=["a", None])
            llm.set_usage(model="gpt-4o-mini", input_tokens=3, output_tokens=4)
            llm.set_outputs({"answer": None, "nested": {"x": True}}, metadata={"m": 1})
    assert service.flush(10)
    (stored,) = store.runs()
    assert stored.inputs == {"q": 'héllo "quoted" \u2603', "n": [1, 2.5]}
    spans = {s.name: s for s in store.spans(stored.run_id)}
    chat = spans["Chat"]
    assert chat.inputs == [{"role": "user", "content": "hi"}]
    assert chat.outputs == {"answer": None, "nested": {"x": True}}
    assert chat.metadata == {"m": 1}
    assert chat.usage == {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}
    assert chat.model == "gpt-4o-mini"
    assert [(lg["level"], lg["message"], lg["fields"]) for lg in chat.logs] == [
        ("info", "plain", None),
        ("warning", "with fields: ünïcode", {"attempt": 2, "tags": ["a", None]}),
    ]
    assert all(isinstance(lg["time_ns"], int) for lg in chat.logs)
    assert spans["values"].logs == [] and spans["values"].parent_id is None


def test_a_long_write_gives_way_to_fork_and_is_done_again_after(tmp_path):
    """A fork() while another thread is inside a long write transaction does not wait for
    it (it could last seconds under busy threads) nor fork mid-transaction (the child could
    never write): the transaction is rolled back, the fork happens, the write is redone.
    """
    from tracemux import TracingService
    from tracemux.destinations import sqlite as sqlite_store

    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    writer = store.open()  # creates the schema
    started, attempts = threading.Event(), []

    def slow_write(conn):  # 20 statements, 0.1 s apart: 2 s inside the transaction
        attempts.append(1)
        started.set()
        for i in range(20):
            conn.execute(
                "INSERT INTO stats_models (grain, t, project, flow, model, n, input_tokens,"
                " output_tokens) VALUES ('h', ?, '', '', 'slow-model', 1, 2, 3)",
                (i,),
            )
            time.sleep(0.1)

    thread = threading.Thread(target=sqlite_store._write_in_turns, args=(writer.conn, slow_write))
    thread.start()
    started.wait(5)
    time.sleep(0.3)  # mid-transaction
    pid = os.fork()
    if pid == 0:  # the child writes to the same store at once
        code = 1
        try:
            svc = TracingService([SQLiteStore(path)])
            svc.trace_run("child").end()
            code = 0 if svc.flush(10) else 2
        finally:
            os._exit(code)
    forked_mid_write = thread.is_alive()
    _, status = os.waitpid(pid, 0)
    thread.join(20)
    writer.close()
    assert forked_mid_write  # fork() did not wait for the transaction to end
    assert os.waitstatus_to_exitcode(status) == 0  # the child's span is stored
    assert [r.name for r in store.runs()] == ["child"]
    assert len(attempts) == 2  # rolled back for the fork, then done again whole
    count = "SELECT COUNT(*) FROM stats_models WHERE model = 'slow-model'"
    rows = sqlite3.connect(path).execute(count).fetchone()[0]
    assert rows == 20


def test_forks_coming_faster_than_a_write_do_not_stall_it(tmp_path):
    """A write gives way to the first forks only: forks every 0.1 s against a 1 s write
    (a pre-fork pool replacing its workers) must not roll it back forever."""
    from tracemux.destinations import sqlite as sqlite_store

    writer = SQLiteStore(tmp_path / "t.db").open()
    attempts: list[int] = []

    def slow_write(conn):
        attempts.append(1)
        for i in range(20):
            conn.execute(
                "INSERT INTO stats_models (grain, t, project, flow, model, n, input_tokens,"
                " output_tokens) VALUES ('h', ?, '', '', 'slow-model', 1, 2, 3)",
                (i,),
            )
            time.sleep(0.05)

    thread = threading.Thread(target=sqlite_store._write_in_turns, args=(writer.conn, slow_write))
    thread.start()
    forks = 0
    deadline = time.monotonic() + 15
    while thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        forks += 1
    thread.join(5)
    writer.close()
    assert not thread.is_alive(), f"the write never finished: {len(attempts)} attempts"
    assert len(attempts) == 3 and forks >= 3  # gave way twice, then made the forks wait
