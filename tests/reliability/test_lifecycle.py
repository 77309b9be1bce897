"""Shutdown racing recording, and exporters that block: the pipeline never breaks for good.

- ``shutdown(1)`` every 0.2 s while four threads record (issue 13.3): never more than one
  export thread at a time; recording after a shutdown restarts the pipeline; at the end
  ``recorded == exported + dropped`` and the store holds exactly ``exported`` spans.
- A synchronous exporter that blocks for ever, shut down again and again (13.4): one
  abandoned thread in all (nothing more is sent to that destination while its export
  hangs: its spans wait in its bounded buffer), and each destination's counts add up to
  what was recorded.
- Fork while another thread shuts down: the child's spans are delivered.

Each case runs in a child process: the pipeline's counters are process-wide, and a thread
stuck for ever must not outlive the test.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.reliability.conftest import run_python, write_script

pytestmark = pytest.mark.reliability

_RACE = """
import json, sys, threading, time
from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.pipeline.worker import THREAD_NAME

svc = TracingService([SQLiteStore(sys.argv[1])])
seconds = float(sys.argv[2])
stop = threading.Event()
most_threads = 0

def sample():
    global most_threads
    while not stop.is_set():
        n = sum(1 for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive())
        most_threads = max(most_threads, n)
        time.sleep(0.001)

def record():
    while not stop.is_set():
        with svc.trace_run("r", inputs={"k": 1}) as run:
            run.span("a").end()
            run.span("b").end()

sampler = threading.Thread(target=sample)
sampler.start()
workers = [threading.Thread(target=record) for _ in range(4)]
for t in workers:
    t.start()
shutdowns = 0
end = time.monotonic() + seconds
while time.monotonic() < end or shutdowns < 4:  # a busy machine makes each one slower
    time.sleep(0.2)
    svc.shutdown(1)
    shutdowns += 1
stop.set()
for t in workers + [sampler]:
    t.join()
# after the storm (and its backlog: a full queue drops new spans, counted): a new span is
# exported, flush works
svc.flush(30)
with svc.trace_run("after") as run:
    pass
flushed = svc.flush(30)
s = svc.stats()
print(json.dumps({"most_threads": most_threads, "shutdowns": shutdowns, "flushed": flushed,
                  "running": svc._worker.running, "recorded": s["recorded"],
                  "exported": s["exported"], "dropped": s["dropped"],
                  "queue_size": s["queue_size"], "destinations": s["destinations"]}))
svc.shutdown(10)
"""


def _span_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])


def _run_names(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM runs")]


def test_shutdown_every_200ms_while_four_threads_record(tmp_path: Path) -> None:
    script = write_script(tmp_path, "race.py", _RACE)
    db = tmp_path / "t.db"
    proc = run_python(script, str(db), "3", timeout=120)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["most_threads"] == 1
    assert out["flushed"] is True and out["running"] is True
    assert out["queue_size"] == 0
    dropped = sum(out["dropped"].values())
    # counted drops only: what a shutdown could not deliver in its second, and what did
    # not fit in the bounded queue (by count or by bytes) while the store was busy
    assert set(out["dropped"]) <= {
        "shutdown",
        "queue_full",
        "queue_bytes",
        "destination_buffer_full",
    }
    assert out["recorded"] == out["exported"] + dropped
    (label,) = out["destinations"]
    per_dest = out["destinations"][label]
    assert per_dest["exported"] == out["exported"]
    assert sum(per_dest["dropped"].values()) == dropped  # queue-full drops included
    assert _span_rows(db) == out["exported"]
    assert "after" in _run_names(db)


_BLOCKING = """
import json, sys, threading, time
from dataclasses import dataclass
from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.destinations.base import Destination
from tracemux.pipeline.worker import THREAD_NAME

release = threading.Event()

class Blocking:
    def export(self, batch):
        release.wait()  # a synchronous exporter that never returns: blocks the export thread

    def close(self):
        pass

@dataclass(frozen=True)
class Stuck(Destination):
    def describe(self):
        return "stuck"

    def open(self):
        return Blocking()

store = SQLiteStore(sys.argv[1])
svc = TracingService([Stuck(), store])
per_round = 5_000
results = []
for round_ in range(4):
    for i in range(per_round // 2):
        with svc.trace_run("r"):
            pass
        svc.trace_run("r2").end()
    time.sleep(0.3)
    t0 = time.monotonic()
    results.append(svc.shutdown(1))
    assert time.monotonic() - t0 < 2.5, "shutdown overran its timeout"
# an export thread abandoned while merely slow (the store writing a big batch) ends soon
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    names = [t.name for t in threading.enumerate()]
    if names.count("tracemux-export-abandoned") <= 1:
        break
    time.sleep(0.05)
s = svc.stats()
print(json.dumps({"results": results, "names": names, "recorded": s["recorded"],
                  "exported": s["exported"], "dropped": s["dropped"],
                  "destinations": s["destinations"]}))
release.set()
"""


def test_a_blocking_exporter_strands_one_thread_in_all(tmp_path: Path) -> None:
    script = write_script(tmp_path, "blocking.py", _BLOCKING)
    db = tmp_path / "t.db"
    proc = run_python(script, str(db), timeout=120)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    names = out["names"]
    assert names.count("tracemux-export") + names.count("tracemux-export-abandoned") <= 1
    assert out["results"][0] is False  # the first shutdown had to give up on the thread
    recorded = out["recorded"]
    assert recorded == 20_000
    for label, d in out["destinations"].items():
        # each destination accounts for every span: delivered, dropped with a reason, or
        # (at most one batch) still inside the export that hangs
        in_export = d.get("abandoned_in_flight", 0)
        assert d["exported"] + sum(d["dropped"].values()) + in_export == recorded, (label, d)
        assert in_export <= 2000
    stuck = out["destinations"]["stuck"]
    assert stuck["exported"] == 0
    assert set(stuck["dropped"]) <= {"shutdown", "destination_buffer_full"}
    store_label = next(label for label in out["destinations"] if label.startswith("sqlite:"))
    assert _span_rows(db) == out["destinations"][store_label]["exported"]
    in_export = sum(d.get("abandoned_in_flight", 0) for d in out["destinations"].values())
    assert out["exported"] + sum(out["dropped"].values()) + in_export == 2 * recorded


_FORK = """
import json, os, sys, threading, time
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

svc = TracingService([SQLiteStore(sys.argv[1])])
stop = threading.Event()

def shut_down_again_and_again():
    while not stop.is_set():
        svc.shutdown(1)
        time.sleep(0.001)

def record():
    while not stop.is_set():
        svc.trace_run("parent").end()

threads = [threading.Thread(target=shut_down_again_and_again), threading.Thread(target=record)]
for t in threads:
    t.start()
children = []
for i in range(int(sys.argv[2])):
    time.sleep(0.02)
    pid = os.fork()
    if pid == 0:  # the child: record one run, leave through a normal exit (atexit)
        with svc.trace_run(f"child-{i}") as run:
            run.span("s").end()
        sys.exit(0)
    children.append(pid)
slow = []
for pid in children:
    t0 = time.monotonic()
    _, status = os.waitpid(pid, 0)
    slow.append((time.monotonic() - t0, os.waitstatus_to_exitcode(status)))
stop.set()
for t in threads:
    t.join()
print(json.dumps({"codes": [code for _, code in slow]}))
"""


def test_fork_while_another_thread_shuts_down(tmp_path: Path) -> None:
    script = write_script(tmp_path, "fork.py", _FORK)
    db = tmp_path / "t.db"
    forks = 20
    proc = run_python(script, str(db), str(forks), timeout=120)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["codes"] == [0] * forks
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name, span_count FROM runs WHERE name LIKE 'child-%'")
        children = dict(rows.fetchall())
    assert children == {f"child-{i}": 2 for i in range(forks)}, proc.stderr[-3000:]
