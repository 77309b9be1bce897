"""The export pipeline: one thread, bounded memory, flush, shutdown, exit and fork."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Recorder
from tracemux.destinations import SQLiteStore
from tracemux.pipeline.worker import THREAD_NAME, PipelineSettings

SRC = str(Path(__file__).resolve().parents[2] / "src")


def export_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_10000_runs_sync_and_async_use_one_thread_and_land_with_right_parents(make_service, store):
    baseline = threading.active_count()
    svc = make_service([store])
    drops_before = svc.stats()["dropped_total"]
    peak = 0
    spans_per_run = 5

    def sync_run(i: int) -> None:
        nonlocal peak
        with svc.trace_run(f"sync-{i}", run_id=f"sync-{i}") as run:
            with run.span("a", kind="retriever"), run.span("a.1", kind="tool"):
                pass
            for name in ("b", "c", "d"):
                with run.span(name, kind="llm") as s:
                    s.set_usage(input_tokens=1, output_tokens=1)
        peak = max(peak, threading.active_count())

    async def async_run(i: int, sem: asyncio.Semaphore) -> None:
        nonlocal peak
        async with sem, svc.trace_run(f"async-{i}", run_id=f"async-{i}") as run:
            async with run.span("a", kind="retriever"):
                await asyncio.sleep(0)
                async with run.span("a.1", kind="tool"):
                    await asyncio.sleep(0)
            for name in ("b", "c", "d"):
                async with run.span(name, kind="llm"):
                    await asyncio.sleep(0)
        peak = max(peak, threading.active_count())

    async def main() -> None:
        sem = asyncio.Semaphore(100)
        tasks = []
        for i in range(5000):
            tasks.append(asyncio.create_task(async_run(i, sem)))
            sync_run(i)  # interleaved with the async runs on the same loop
            if i % 500 == 0:
                await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert svc.flush(120)
    assert peak == baseline + 1
    assert threading.active_count() == baseline + 1
    assert svc.stats()["dropped_total"] == drops_before
    assert store.count_runs() == 10_000
    for run_id in (
        "sync-0",
        "sync-4999",
        "async-0",
        "async-4999",
        f"async-{random.randrange(5000)}",
    ):
        spans = {s.name: s for s in store.spans(run_id)}
        assert len(spans) == spans_per_run + 1
        root = spans[run_id]
        assert root.parent_id is None
        assert spans["a"].parent_id == spans["b"].parent_id == spans["d"].parent_id == root.span_id
        assert spans["a.1"].parent_id == spans["a"].span_id
    assert sum(r.span_count for r in store.runs(limit=10_000)) == 60_000
    assert svc.shutdown(30)
    assert threading.active_count() == baseline
    assert not export_threads()


def test_no_thread_until_the_first_span_and_none_after_shutdown(make_service, store):
    svc = make_service([store])
    assert not export_threads()
    with svc.trace_run("r"):
        pass
    assert len(export_threads()) == 1
    assert export_threads()[0].daemon
    assert svc.shutdown(5)
    assert not export_threads()
    with svc.trace_run("again"):  # recording after shutdown starts a new thread
        pass
    assert svc.flush(5)
    assert len(export_threads()) == 1
    assert store.count_runs() == 2


def test_many_services_and_destinations_share_one_thread(make_service, tmp_path, received):
    services = [
        make_service([SQLiteStore(tmp_path / f"s{i}.db"), Recorder(f"r{i}")]) for i in range(20)
    ]
    for i, svc in enumerate(services):
        with svc.trace_run(f"run{i}", destinations=[Recorder(f"tenant{i}")]) as run:
            run.span("x").end()
    for svc in services:
        with svc.trace_run("default"):
            pass
    assert services[0].flush(10)
    assert len(export_threads()) == 1
    for i in range(20):
        assert len(received[f"tenant{i}"]) == 2  # the run and its span, nothing else
        assert len(received[f"r{i}"]) == 1
        assert SQLiteStore(tmp_path / f"s{i}.db").count_runs() == 1


def test_flush_waits_for_export(make_service, received):
    svc = make_service([Recorder("slow", delay=0.3)])
    with svc.trace_run("r") as run:
        for _ in range(10):
            run.span("s").end()
    assert svc.flush(10)
    assert len(received["slow"]) == 11


def test_flush_times_out_on_a_hanging_destination(make_service):
    svc = make_service([Recorder("hang", hang=True)])
    with svc.trace_run("r"):
        pass
    t0 = time.monotonic()
    assert svc.flush(0.5) is False
    assert time.monotonic() - t0 < 2


# A destination that blocks the export thread forever is abandoned by shutdown() (that is
# the behaviour under test), so the daemon thread it holds is expected to outlive the test.
@pytest.mark.threadleak(allow=["name:tracemux-export*"])
@pytest.mark.parametrize("use_async", [True, False], ids=["async-hang", "blocking-hang"])
def test_shutdown_returns_within_timeout_when_a_destination_hangs(make_service, use_async):
    svc = make_service([Recorder(f"hang-{use_async}", hang=True, use_async=use_async)])
    before = svc.stats()["dropped"].get("shutdown", 0)
    with svc.trace_run("r") as run:
        for _ in range(100):
            run.span("s").end()
    time.sleep(0.2)  # let the worker pick them up and get stuck
    t0 = time.monotonic()
    ok = svc.shutdown(timeout=1)
    elapsed = time.monotonic() - t0
    assert ok is False
    assert 0.5 <= elapsed < 1.6
    stats = svc.stats()
    if use_async:  # the export is cancelled: counted as dropped
        assert stats["dropped"]["shutdown"] - before == 101
    else:  # the thread is stuck inside the exporter: that batch's outcome is not known
        assert stats["dropped"].get("shutdown", 0) - before == 0
        assert stats["destinations"]["recorder:hang-False"]["abandoned_in_flight"] == 101
    assert svc._worker.last_shutdown_undelivered == 101


def test_a_hanging_destination_does_not_hold_up_the_others(make_service, store, received):
    svc = make_service([Recorder("stuck", hang=True), store])
    for i in range(50):
        with svc.trace_run(f"r{i}") as run:
            run.span("s").end()
    deadline = time.monotonic() + 10
    while store.count_runs() < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(r.span_count for r in store.runs(limit=100)) == 100


def test_memory_is_bounded_by_bytes_and_drops_are_counted(make_service):
    svc = make_service(
        [Recorder("down", hang=True)],
        pipeline=PipelineSettings(max_queue_bytes=8 * 1024 * 1024, max_queue_spans=100_000),
        max_value_bytes=2 * 1024 * 1024,
    )
    before = svc.stats()
    try:
        big = "x" * 1_000_000
        for _ in range(100):
            with svc.trace_run("big", inputs={"doc": big}):
                pass
        stats = svc.stats()
        assert stats["queue_bytes"] <= 8 * 1024 * 1024
        assert stats["dropped_total"] - before["dropped_total"] >= 90
        assert stats["recorded"] - before["recorded"] == 100
    finally:
        svc.shutdown(0.5)
        svc._worker.configure(PipelineSettings())


def test_span_count_bound_drops_exactly_what_did_not_fit(make_service):
    svc = make_service(
        [Recorder("down2", hang=True)], pipeline=PipelineSettings(max_queue_spans=1000)
    )
    before = svc.stats()
    try:
        with svc.trace_run("r") as run:
            for _ in range(4999):
                run.span("s").end()
        stats = svc.stats()
        assert stats["recorded"] - before["recorded"] == 5000
        lost = stats["dropped_total"] - before["dropped_total"]
        held = stats["queue_size"]
        assert held <= 1000
        assert lost + held == 5000
    finally:
        svc.shutdown(0.5)
        svc._worker.configure(PipelineSettings())


def test_a_script_that_just_ends_loses_nothing(tmp_path):
    db = tmp_path / "exit.db"
    run_python(
        f"""
        import tracemux
        from tracemux.destinations import SQLiteStore
        svc = tracemux.TracingService([SQLiteStore({str(db)!r})])
        with svc.trace_run("exit-run") as run:
            for i in range(4999):
                with run.span(f"s{{i}}"):
                    pass
        """
    )
    [run] = SQLiteStore(db).runs()
    assert run.span_count == 5000
    assert len(SQLiteStore(db).spans(run.run_id)) == 5000


def test_disabled_records_nothing_and_starts_no_thread(tmp_path):
    db = tmp_path / "disabled.db"
    out = run_python(
        """
        import threading, tracemux
        svc = tracemux.TracingService.from_env()
        before = threading.active_count()
        with svc.trace_run("r") as run:
            with run.span("s", inputs={"a": 1}) as s:
                s.set_outputs(1); s.add_log("x"); s.set_usage(input_tokens=1)
        print(threading.active_count() - before, svc.stats()["recorded"], svc.flush(1))
        """,
        env={"TRACEMUX_DISABLED": "1", "TRACEMUX_DB": str(db)},
    )
    assert out.split() == ["0", "0", "True"]
    assert not db.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_exports_its_own_spans_and_parent_is_unaffected(tmp_path):
    db = tmp_path / "fork.db"
    out = run_python(
        f"""
        import os, multiprocessing, threading
        import tracemux
        from tracemux.destinations import SQLiteStore
        store = SQLiteStore({str(db)!r})
        svc = tracemux.TracingService([store])
        stop = threading.Event()

        def busy():  # spans recorded at full speed while we fork
            while not stop.is_set():
                with svc.trace_run("parent-bg") as run:
                    run.span("s").end()
        workers = [threading.Thread(target=busy, daemon=True) for _ in range(2)]
        for w in workers: w.start()

        pid = os.fork()
        if pid == 0:
            with svc.trace_run("child-fork") as run:
                for i in range(99):
                    run.span("c").end()
            ok = svc.flush(20)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status

        def mp_child(n):
            with svc.trace_run("child-mp") as run:
                for i in range(n):
                    run.span("m").end()
        ctx = multiprocessing.get_context("fork")
        p = ctx.Process(target=mp_child, args=(49,))
        p.start(); p.join(30)
        assert p.exitcode == 0, p.exitcode
        stop.set()
        for w in workers: w.join()
        svc.flush(30)  # the backlog first: a full queue drops new spans (counted)
        with svc.trace_run("parent-after") as run:
            run.span("p").end()
        assert svc.flush(20)
        print("ok")
        """
    )
    assert out.strip() == "ok"
    store = SQLiteStore(db)
    counts = {r.name: r.span_count for r in store.runs(limit=100_000) if r.name != "parent-bg"}
    assert counts == {"child-fork": 100, "child-mp": 50, "parent-after": 2}
    bg = store.runs(limit=100_000, search="parent-bg")
    assert bg and all(r.span_count == 2 for r in bg)


def test_a_batch_delivered_after_shutdown_gave_up_is_not_counted_twice(make_service, received):
    """shutdown() gives up on a thread stuck in an export: that batch is neither exported
    nor dropped until the export returns; when it succeeds, it counts as exported, once."""
    svc = make_service([Recorder("late", delay=1.0, use_async=False)])
    with svc.trace_run("r") as run:
        for _ in range(99):
            run.span("s").end()
    time.sleep(0.3)  # the batch is inside the exporter, which takes a second
    assert svc.shutdown(timeout=0.3) is False
    time.sleep(2.5)  # the export has returned (successfully) on the abandoned thread
    assert len(received["late"]) == 100  # once: an abandoned lane does not export again
    late = svc.stats()["destinations"]["recorder:late"]  # (process-wide totals hold
    assert late["exported"] == 100  # earlier tests' counts too)
    assert late["dropped"] == {} and "abandoned_in_flight" not in late


def test_aflush_that_timed_out_on_a_closed_loop_is_silent(make_service, received, caplog):
    """#12.6: aflush() gives up, its event loop closes, then the export completes: the
    completion must not log "Event loop is closed", and the spans are still delivered."""
    svc = make_service([Recorder("slow", delay=0.5)])
    with svc.trace_run("r"):
        pass
    assert asyncio.run(svc.aflush(timeout=0.01)) is False  # the loop is closed after this
    with caplog.at_level("DEBUG", logger="tracemux"):
        assert svc.flush(10)
    assert [r.getMessage() for r in caplog.records if r.levelno >= 30] == []
    assert len(received["slow"]) == 1


def test_the_exported_total_never_goes_down_when_old_counters_are_let_go(make_service) -> None:
    """Counters of closed lanes are kept for 1,000 labels; the oldest are let go after that,
    but what they exported stays in stats()["exported"] (it went down, and a delta between
    two snapshots came out negative)."""
    from tracemux.pipeline.worker import PipelineSettings, shared_worker

    worker = shared_worker()
    before_settings = worker.settings
    worker.configure(PipelineSettings(max_destinations=4))
    try:
        svc = make_service([Recorder("evict-base")])
        before = svc.stats()["exported"]
        runs = 1_200
        for i in range(runs):
            with svc.trace_run("r", destinations=[Recorder(f"evict-{i}")]):
                pass
            if i % 50 == 49:
                assert svc.flush(30)
        assert svc.flush(30)
        assert svc.stats()["exported"] - before == runs
    finally:
        worker.configure(before_settings)


def test_the_store_gets_spans_while_a_thread_records_without_pause(make_service, store):
    """The export thread must get the GIL while the application records flat out. It did
    not: each run id read os.urandom, which gives the GIL away and takes it back at once,
    resetting the switch timer the export thread waits on; nothing was stored for as long
    as the thread recorded (seconds; the queue filled and every new span was dropped)."""
    svc = make_service([store])
    with svc.trace_run("warm-up") as run:
        run.span("step").end()
    assert svc.flush(30)
    before = svc.stats()["destinations"][store.describe()]["exported"]
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            with svc.trace_run("flow", inputs={"q": "question"}) as run:
                for _ in range(10):
                    with run.span("step", kind="tool", inputs={"q": "x"}) as s:
                        s.set_outputs({"a": "answer"})

    thread = threading.Thread(target=record)
    thread.start()
    try:
        time.sleep(3)
        during = svc.stats()["destinations"][store.describe()]["exported"] - before
    finally:
        stop.set()
        thread.join()
    assert during > 0
