"""Runs that are started and never ended (#12.5): ended as incomplete, exported, counted."""

from __future__ import annotations

import math
import threading

import pytest

from tracemux.reaper import OpenRuns, open_runs, parse_max_age


@pytest.fixture
def short_max_age():
    """Runs older than 0 s are reaped at the next check (restored after the test)."""
    before = open_runs.max_age
    open_runs.max_age = 0.0
    yield
    open_runs.max_age = before


def test_a_run_never_ended_is_ended_as_incomplete_when_the_next_run_starts(
    service, store, short_max_age
):
    before = service.stats()["incomplete_runs"]
    forgotten = service.trace_run("forgotten", run_id="forgotten")
    with forgotten.span("component"):
        pass
    with service.trace_run("next", run_id="next"):
        pass
    assert forgotten.ended
    assert service.flush(10)
    run = store.run("forgotten")
    assert run is not None and run.end_ns is not None
    assert run.status == "error"
    assert run.error["type"] == "IncompleteRun"
    assert run.error["message"].startswith("incomplete:")
    assert [s.name for s in store.spans("forgotten")] == ["forgotten", "component"]
    stats = service.stats()
    assert stats["incomplete_runs"] >= before + 1
    assert stats["open_runs"] == 0


def test_every_open_run_is_ended_at_shutdown(make_service, store):
    svc = make_service([store])
    before = svc.stats()["incomplete_runs"]
    open_ones = [svc.trace_run(f"open-{i}", run_id=f"open-{i}") for i in range(3)]
    with svc.trace_run("done", run_id="done"):
        pass
    assert svc.stats()["open_runs"] == 3
    assert svc.shutdown(10)
    assert all(r.ended for r in open_ones)
    for i in range(3):
        run = store.run(f"open-{i}")
        assert run is not None and run.status == "error", run
        assert "shutdown" in run.error["message"]
    assert store.run("done").status == "ok"
    assert svc.stats()["incomplete_runs"] == before + 3


def test_runs_ended_normally_are_not_touched(service, store, short_max_age):
    before = service.stats()["incomplete_runs"]
    for i in range(50):
        with service.trace_run(f"r{i}"):
            pass
    assert service.stats()["incomplete_runs"] == before
    assert service.stats()["open_runs"] == 0


def test_a_run_that_failed_keeps_its_own_error(service, store, short_max_age):
    run = service.trace_run("failed", run_id="failed")
    run.set_error(ValueError("boom"))
    open_runs.sweep()
    assert service.flush(10)
    assert store.run("failed").error["type"] == "ValueError"


def test_reaping_races_with_the_owner_ending_the_run_and_ends_it_once(service, store):
    """The owner's end() and the reaper's end_all() at the same time: each run exported once."""
    assert service.flush(10)
    before = service.stats()
    runs = [service.trace_run(f"race-{i}", run_id=f"race-{i}") for i in range(300)]
    go = threading.Event()

    def owner() -> None:
        go.wait()
        for run in runs:
            run.end()

    t = threading.Thread(target=owner)
    t.start()
    go.set()
    reaped = open_runs.end_all()
    t.join()
    assert service.flush(10)
    stats = service.stats()
    assert stats["recorded"] - before["recorded"] == 300
    assert stats["exported"] - before["exported"] == 300
    assert 0 <= reaped <= 300
    assert len(store.runs(limit=1000)) == 300


def test_parse_max_age():
    assert parse_max_age(None) == 3600.0
    assert parse_max_age(" 2.5 ") == 2.5
    assert parse_max_age("off") == math.inf
    assert parse_max_age("0") == math.inf
    for bad in ("-1", "nan", "soon", "inf"):
        with pytest.raises(ValueError):
            parse_max_age(bad)


def test_only_the_oldest_run_is_looked_at():
    """A sweep stops at the first run young enough: O(1) per started run."""
    reg = OpenRuns(max_age=1000.0)

    class Fake:
        error = None
        ended = False

        def set_error(self, e):  # pragma: no cover - must not be called
            raise AssertionError("a young run was reaped")

        def end(self):  # pragma: no cover
            raise AssertionError("a young run was ended")

    for _ in range(100):
        reg.add(Fake())
    assert reg.sweep() == 0 and len(reg) == 100


def test_runs_open_at_interpreter_exit_are_exported_as_incomplete(tmp_path):
    """A script that never ends its run (nor calls shutdown) still leaves it in the store."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    from tracemux.destinations import SQLiteStore

    db = tmp_path / "exit.db"
    code = textwrap.dedent(
        f"""
        from tracemux import TracingService
        from tracemux.destinations import SQLiteStore
        svc = TracingService([SQLiteStore({str(db)!r})])
        with svc.trace_run("done", run_id="done"):
            pass
        left = svc.trace_run("left-open", run_id="left-open")
        left.span("step").end()
        """
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={"PYTHONPATH": src})
    store = SQLiteStore(db)
    assert store.run("done").status == "ok"
    run = store.run("left-open")
    assert run is not None and run.status == "error"
    assert run.error["type"] == "IncompleteRun" and "exit" in run.error["message"]
    assert [s.name for s in store.spans("left-open")] == ["left-open", "step"]
