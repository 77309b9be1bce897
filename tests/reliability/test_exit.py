"""Interpreter exit and broken stores: nothing lost silently (issue 13.5 and 13.10).

- Spans recorded by an atexit hook that runs after tracemux's own (registered before the
  first span), or by a thread such a hook starts, are delivered.
- At exit, when anything was dropped or is left undelivered, one WARNING line says how
  many, by destination and reason; when everything was delivered, nothing is said.
- A store that can never be written (its parent is a file) is detected on the first try:
  its spans are dropped at once, counted with a reason naming the path, and
  ``tracemux demo --runs 3`` against it ends promptly and says so.
- Recording from ``__del__`` during interpreter teardown, and from a daemon thread still
  recording when the main thread ends, neither hangs nor crashes the exit.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import child_env, run_python, write_script
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

pytestmark = pytest.mark.reliability

WARNING = "tracemux: at exit, spans not delivered:"

_ATEXIT = """
import atexit, sys, threading
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

svc = TracingService([SQLiteStore(sys.argv[1])])

def record(name):
    with svc.trace_run(name) as run:
        for i in range(3):
            run.span(f"{name}-{i}").end()

def hook_with_a_thread():
    t = threading.Thread(target=record, args=("from-exit-thread",))
    t.start()
    t.join()

# registered before the first span, so they run after tracemux's own exit hook
atexit.register(record, "from-atexit")
atexit.register(hook_with_a_thread)
record("from-main")
"""


def _runs(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT name, span_count FROM runs").fetchall())


def test_spans_recorded_in_atexit_hooks_and_exit_threads_are_delivered(tmp_path: Path) -> None:
    script = write_script(tmp_path, "atexit_spans.py", _ATEXIT)
    db = tmp_path / "t.db"
    proc = run_python(script, str(db), timeout=60)
    assert _runs(db) == {"from-main": 4, "from-atexit": 4, "from-exit-thread": 4}
    assert WARNING not in proc.stderr  # everything was delivered: nothing to say


_DOWN = """
import sys
from tracemux import TracingService
from tracemux.destinations import OTLP, SQLiteStore
from tracemux.pipeline.worker import PipelineSettings

down = OTLP(endpoint=sys.argv[2], timeout=0.5)  # a closed port: never answers
svc = TracingService([SQLiteStore(sys.argv[1]), down],
                     pipeline=PipelineSettings(exit_timeout=1.0))
for i in range(50):
    with svc.trace_run(f"r{i}") as run:
        run.span("s").end()
"""


def test_exit_says_in_one_warning_what_was_not_delivered(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    script = write_script(tmp_path, "down.py", _DOWN)
    db = tmp_path / "t.db"
    t0 = time.monotonic()
    proc = run_python(script, str(db), url, timeout=60)
    assert time.monotonic() - t0 < 20
    lines = [line for line in proc.stderr.splitlines() if WARNING in line]
    assert len(lines) == 1, proc.stderr
    (line,) = lines
    assert re.search(rf"otlp:{re.escape(url)}/v1/traces \(#[0-9a-f]+\): ", line)
    assert "shutdown 100" in line  # 50 runs of 2 spans, none delivered, all counted
    assert "sqlite:" not in line  # the store got everything
    assert sum(_runs(db).values()) == 100


def test_an_unusable_store_is_detected_at_once_and_counted(
    make_service: Callable[..., TracingService], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "traces.db"
    svc = make_service([SQLiteStore(path)])
    before = svc.stats()
    for i in range(20):
        with svc.trace_run(f"r{i}") as run:
            run.span("s").end()
    t0 = time.monotonic()
    assert svc.flush(10)
    assert time.monotonic() - t0 < 5  # no retrying for a store that can never open
    stats = svc.stats()
    reason = f"store_unusable:{path}"
    assert stats["dropped"].get(reason, 0) - before["dropped"].get(reason, 0) == 40
    assert stats["destinations"][f"sqlite:{path}"]["dropped"][reason] >= 40


def test_demo_with_an_unusable_store_ends_promptly_and_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = child_env(TRACEMUX_DB=str(blocker / "traces.db"))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tracemux", "demo", "--runs", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - t0 < 15
    out = proc.stdout + proc.stderr
    assert "store_unusable" in out
    assert WARNING in proc.stderr


_TEARDOWN = """
import sys, threading, time
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

svc = TracingService([SQLiteStore(sys.argv[1])])

class RecordsWhenCollected:
    def __del__(self):
        svc.trace_run("from-del").end()

def forever():
    while True:
        svc.trace_run("from-daemon").end()

threading.Thread(target=forever, daemon=True).start()
time.sleep(0.2)
keep = RecordsWhenCollected()  # collected while the interpreter tears the module down
svc.trace_run("from-main").end()
"""


def test_recording_during_interpreter_teardown_neither_hangs_nor_crashes(tmp_path: Path) -> None:
    script = write_script(tmp_path, "teardown.py", _TEARDOWN)
    db = tmp_path / "t.db"
    t0 = time.monotonic()
    run_python(script, str(db), timeout=60)  # exit code 0, no traceback required
    assert time.monotonic() - t0 < 20
    runs = _runs(db)
    assert "from-main" in runs
