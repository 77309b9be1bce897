"""Shutdown deadlines: with 100,000 spans queued behind a destination that hangs,
``shutdown(timeout=2)`` returns within 2.5 s and counts exactly what it did not deliver; at
interpreter exit ``TRACEMUX_EXIT_TIMEOUT`` holds the same way; no thread tracemux starts
can keep a process alive.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import StatsDelta, child_env, popen_python, write_script
from tracemux import TracingService
from tracemux.destinations.base import Destination
from tracemux.model import Record
from tracemux.pipeline.worker import THREAD_NAME

pytestmark = pytest.mark.reliability

SPANS = 100_000
_release = threading.Event()  # set after each test, so no stuck thread outlives it


@dataclass(frozen=True)
class Hang(Destination):
    """An exporter that never returns: ``blocking`` blocks the export thread itself, else
    it awaits for ever (the loop stays responsive)."""

    name: str
    blocking: bool = False

    def describe(self) -> str:
        return f"hang:{self.name}"

    def open(self) -> Any:
        return _BlockingHang() if self.blocking else _AsyncHang()


class _BlockingHang:
    def export(self, batch: Sequence[Record]) -> None:
        _release.wait()

    def close(self) -> None:
        pass


class _AsyncHang:
    async def export(self, batch: Sequence[Record]) -> None:
        while not _release.is_set():
            await asyncio.sleep(0.05)

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def release_hangs() -> Iterator[None]:
    _release.clear()
    yield
    _release.set()


@pytest.mark.parametrize("blocking", [False, True], ids=["awaiting", "blocking"])
def test_shutdown_with_100k_queued_behind_a_hanging_destination(
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable[..., Any],
    blocking: bool,
) -> None:
    # threads abandoned by earlier tests (a destination that blocks forever) are not ours
    earlier = {t for t in threading.enumerate() if t.name == THREAD_NAME}
    pipeline_settings(max_queue_spans=2 * SPANS, flush_interval=0.05)
    svc = make_service([Hang(f"h{blocking}", blocking=blocking)])
    delta = StatsDelta(svc)
    with svc.trace_run("big") as run:
        for _ in range(SPANS - 1):
            run.span("s").end()
    time.sleep(0.3)  # the first batch is in the exporter, stuck
    stats = delta.now()
    assert stats["recorded"] == SPANS and stats["dropped_total"] == 0
    t0 = time.monotonic()
    ok = svc.shutdown(timeout=2)
    elapsed = time.monotonic() - t0
    assert ok is False
    assert elapsed < 2.5, elapsed
    stats = delta.now()
    # a batch inside an exporter that blocks the thread is neither exported nor dropped
    # until that call returns (never, here); an awaiting exporter's is cancelled and counted
    in_export = stats["destinations"][f"hang:h{blocking}"].get("abandoned_in_flight", 0)
    assert in_export == (512 if blocking else 0)
    assert stats["dropped"] == {"shutdown": SPANS - in_export}
    assert stats["exported"] + stats["dropped_total"] + in_export == stats["recorded"] == SPANS
    assert svc._worker.last_shutdown_undelivered == SPANS
    # an abandoned (blocked) thread lingers, as a daemon, until its exporter returns
    live = [t for t in threading.enumerate() if t.name == THREAD_NAME and t not in earlier]
    assert len(live) <= int(blocking) and all(t.daemon for t in live)


def test_shutdown_delivers_what_a_slow_destination_can_take_in_time(
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable[..., Any],
    received: dict[str, list[Record]],
) -> None:
    from tests.conftest import Recorder

    pipeline_settings(max_queue_spans=2 * SPANS, flush_interval=0.05)
    svc = make_service([Recorder("slow", delay=0.2)])  # 512 spans per 0.2 s
    delta = StatsDelta(svc)
    with svc.trace_run("big") as run:
        for _ in range(20_000 - 1):
            run.span("s").end()
    t0 = time.monotonic()
    assert svc.shutdown(timeout=2) is False
    assert time.monotonic() - t0 < 2.5
    stats = delta.now()
    got = len(received["slow"])
    assert got > 0
    assert stats["exported"] == got
    assert stats["dropped"] == {"shutdown": 20_000 - got}


EXIT_SCRIPT = """
import atexit, json, os, sys, threading, time
report = {{}}

def last_words():  # registered first, so it runs after tracemux's own exit handler
    from tracemux.pipeline.worker import shared_worker
    w = shared_worker()
    s = w.stats()
    report.update(dropped=s["dropped"], exported=s["exported"], recorded=s["recorded"],
                  undelivered=w.last_shutdown_undelivered,
                  in_export=s["abandoned_in_flight"])
    sys.stdout.write("REPORT " + json.dumps(report) + "\\n")
    sys.stdout.flush()
atexit.register(last_words)

import tracemux
from tracemux.destinations import OTLP, SQLiteStore
from tracemux.destinations.base import Destination

class Stuck(Destination):
    def __eq__(self, other): return isinstance(other, Stuck)
    def __hash__(self): return 1
    def describe(self): return "stuck"
    def open(self): return self
    def export(self, batch): threading.Event().wait()   # blocks the export thread for good
    def close(self): pass

mode = sys.argv[1]
# configured from the environment (TRACEMUX_EXIT_TIMEOUT, TRACEMUX_DB, OTEL_EXPORTER_OTLP_*)
svc = tracemux.TracingService.from_env()
dests = {{
    "blocking": [Stuck()],
    # a port that accepts connections and never answers; a host name, so the resolver runs
    "blackhole": list(svc.destinations),  # with the local store (TRACEMUX_DB) beside it
    "both": [Stuck(), *svc.destinations],  # the OTLP blackhole and the local store
}}[mode]
with svc.trace_run("big", destinations=dests) as run:
    for _ in range({spans} - 1):
        run.span("s").end()
time.sleep(0.5)
report["threads"] = [(t.name, t.daemon) for t in threading.enumerate()]
print("RECORDED", flush=True)
"""


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A listening port that completes connections (the kernel's backlog) and never reads."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.mark.parametrize("mode", ["blocking", "blackhole", "both"])
def test_exit_deadline_holds_with_a_hanging_destination(
    tmp_path: Path, blackhole: int, mode: str
) -> None:
    exit_timeout = 2.0
    script = write_script(tmp_path, "exit.py", EXIT_SCRIPT.format(spans=SPANS))
    env = child_env(
        TRACEMUX_EXIT_TIMEOUT=str(exit_timeout),
        TRACEMUX_MAX_QUEUE_SPANS=str(2 * SPANS),
        TRACEMUX_DB=str(tmp_path / "exit.db"),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://localhost:{blackhole}",
    )
    proc = popen_python(
        script,
        mode,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "RECORDED", (line, proc.stderr.read() if proc.stderr else "")
    t0 = time.monotonic()  # the main thread is done: from here on it is interpreter exit
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the process did not exit")
    took = time.monotonic() - t0
    assert proc.returncode == 0, err
    assert took < exit_timeout + 1.0, f"exit took {took:.2f}s"
    report = json.loads(out.split("REPORT ", 1)[1])
    # every thread but the main one is a daemon: none can hold the process
    assert [name for name, daemon in report["threads"] if not daemon] == ["MainThread"]
    assert any(name == THREAD_NAME for name, _ in report["threads"])
    # every span is exported or counted, once per destination it was meant for
    lanes = {"blocking": 1, "blackhole": 2, "both": 3}[mode]  # with TRACEMUX_DB: the store
    assert report["recorded"] == SPANS
    assert report["undelivered"] >= SPANS, report
    # (a batch inside the exporter that blocks the thread: neither, until it returns)
    in_export = report["in_export"]
    assert in_export <= 2000  # one batch of the store (or of the blocking exporter)
    assert report["dropped"].get("shutdown", 0) >= SPANS - in_export
    total = report["exported"] + report["dropped"]["shutdown"] + in_export
    assert total == SPANS * lanes, report
    assert "Traceback" not in err


def test_a_non_daemon_thread_is_never_left_behind(tmp_path: Path, blackhole: int) -> None:
    """Every destination kind, a host name to resolve, fork, flush, shutdown, record again:
    at every step every thread tracemux has is a daemon, and at the end none is left."""
    code = f"""
    import os, threading, time, tracemux
    from tracemux.destinations import OTLP, Langfuse, LangSmith, Phoenix, SQLiteStore, Discard
    port = {blackhole}
    url = f"http://localhost:{{port}}"
    dests = [
        SQLiteStore({str(tmp_path / "t.db")!r}), Discard(),
        OTLP(endpoint=url, timeout=0.3),
        Langfuse(public_key="pk-lf-x1234567890", secret_key="sk-lf-y1234567890", host=url,
                 timeout=0.3),
        LangSmith(api_key="lsv2_pt_1234567890abcdef", endpoint=url, timeout=0.3),
        Phoenix(endpoint=url, timeout=0.3),
    ]
    svc = tracemux.TracingService(dests)
    def bad():
        return [t.name for t in threading.enumerate()
                if t is not threading.main_thread() and not t.daemon]
    for step in range(3):
        with svc.trace_run("r") as run:
            run.span("s").end()
        svc.flush(1)
        assert not bad(), bad()
        if step == 1:
            pid = os.fork()
            if pid == 0:
                with svc.trace_run("child"):
                    pass
                svc.flush(1)
                os._exit(0 if not bad() else 5)
            assert os.waitpid(pid, 0)[1] == 0
    svc.shutdown(2)
    time.sleep(3)  # the resolver thread leaves once idle
    left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    assert left == [], left
    print("ok")
    """
    script = write_script(tmp_path, "daemons.py", code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
