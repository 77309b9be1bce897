"""100 forks while four threads record spans at full speed into the same SQLite store
(and a fifth reads it, as a viewer in the same process would).

Children leave three ways, in turn: ``flush()`` then ``os._exit`` (what a pre-fork server's
worker does), a normal interpreter exit (atexit delivers), and a ``multiprocessing`` fork
child (its finalizers deliver). No child may hang past its deadline, and each child's run
must be in the store whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.conftest import env_number, run_python, write_script
from tracemux.destinations import SQLiteStore

pytestmark = pytest.mark.reliability

FORKS = int(env_number("TRACEMUX_FORKS", 100, 300))
CHILD_SPANS = 20
DEADLINE = 20.0  # seconds a child may take, from fork to exit

SCRIPT = """
import json, multiprocessing, os, signal, sys, threading, time
import tracemux
from tracemux.destinations import SQLiteStore

import faulthandler
faulthandler.register(signal.SIGUSR1, all_threads=True)  # a hung child shows its stacks
db, forks, spans, deadline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
svc = tracemux.TracingService([SQLiteStore(db)])
stop = threading.Event()
recorded = [0] * 4

def busy(n):  # full speed: no pause between spans
    while not stop.is_set():
        with svc.trace_run("parent-bg") as run:
            for _ in range(9):
                run.span("s", inputs={"n": n}).end()
        recorded[n] += 10

def read():  # a viewer in the same process: SQLite's own mutexes are busy at fork time too
    store = SQLiteStore(db)
    while not stop.is_set():
        runs = store.runs(limit=500)  # big reads: hundreds of steps, each may lose the GIL
        for run in runs[:5]:
            store.spans(run.run_id)

threads = [threading.Thread(target=busy, args=(n,), daemon=True) for n in range(4)]
threads.append(threading.Thread(target=read, daemon=True))
for t in threads:
    t.start()
time.sleep(0.5)

def child_work(i):
    with svc.trace_run(f"child-{i}", run_id=f"child-{i}") as run:
        for j in range(spans - 1):
            with run.span(f"c{j}", inputs={"i": i, "j": j}):
                pass

def mp_child(i):
    child_work(i)  # multiprocessing's finalizers flush on the way out

ctx = multiprocessing.get_context("fork")
live = {}  # pid or Process -> (i, started)
results = {}

def reap(block):
    while live:
        for key, (i, started) in list(live.items()):
            if isinstance(key, int):
                pid, status = os.waitpid(key, os.WNOHANG)
                code = None if pid == 0 else os.waitstatus_to_exitcode(status)
            else:
                code = key.exitcode
            took = time.monotonic() - started
            if code is None and took > deadline:
                sys.stderr.write(f"child {i} hung; its threads:\\n")
                sys.stderr.flush()
                os.kill(key if isinstance(key, int) else key.pid, signal.SIGUSR1)
                time.sleep(1)
                os.kill(key if isinstance(key, int) else key.pid, signal.SIGKILL)
                code = "hung"
                if not isinstance(key, int):
                    key.join()
                else:
                    os.waitpid(key, 0)
            if code is not None:
                results[i] = (code, round(took, 3))
                del live[key]
        if not block or len(live) < 4:
            return
        time.sleep(0.005)

for i in range(forks):
    started = time.monotonic()
    how = i % 3
    if how == 2:
        p = ctx.Process(target=mp_child, args=(i,))
        p.start()
        live[p] = (i, started)
    else:
        pid = os.fork()
        if pid == 0:
            try:
                child_work(i)
                if how == 0:
                    if not svc.flush(deadline - 5):  # > the 10 s SQLite busy timeout
                        import faulthandler
                        sys.stderr.write(f"child {i}: flush timed out: {svc.stats()}\\n")
                        faulthandler.dump_traceback(all_threads=True)
                        sys.stderr.flush()
                        os._exit(3)
                    os._exit(0)
            except BaseException:
                os._exit(4)
            sys.exit(0)  # a normal exit: atexit delivers
        live[pid] = (i, started)
    reap(block=True)
while live:
    reap(block=False)
    time.sleep(0.005)

stop.set()
for t in threads:
    t.join()
ok = svc.flush(60)
print(json.dumps({"results": results, "flushed": ok, "bg": sum(recorded),
                  "stats": svc.stats()["dropped"]}))
"""


def test_100_forks_under_full_speed_recording(tmp_path: Path) -> None:
    db = tmp_path / "fork.db"
    script = write_script(tmp_path, "forks.py", SCRIPT)
    proc = run_python(
        script, str(db), str(FORKS), str(CHILD_SPANS), str(DEADLINE), timeout=FORKS * 5 + 120
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    results = {int(k): v for k, v in report["results"].items()}
    assert len(results) == FORKS
    hung = {i: r for i, r in results.items() if r[0] == "hung"}
    unguarded = proc.stderr.count("forking during a long SQLite call")
    stacks = proc.stderr[proc.stderr.find(" hung; its threads") :][:6000]
    assert not hung, f"children hung: {hung}; unguarded forks: {unguarded}\n{stacks}"
    failed = {i: r for i, r in results.items() if r[0] != 0}
    assert not failed, f"children failed: {failed}\n{proc.stderr[-6000:]}"
    assert report["flushed"]
    assert report["bg"] > 0
    store = SQLiteStore(db)
    missing = []
    for i in range(FORKS):
        run = store.run(f"child-{i}")
        if run is None or run.span_count != CHILD_SPANS or run.status != "ok":
            missing.append((i, None if run is None else run.span_count))
            continue
        spans = store.spans(f"child-{i}")
        assert len(spans) == CHILD_SPANS
        assert {s.inputs["j"] for s in spans if s.name != f"child-{i}"} == set(
            range(CHILD_SPANS - 1)
        )
    assert not missing, f"children whose spans did not all arrive: {missing}"
    slowest = max(r[1] for r in results.values())
    print(f"{FORKS} forks, slowest child {slowest:.2f}s, parent drops {report['stats']}")


_PARENT_CLOSES = """
import os, sys
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

svc = TracingService([SQLiteStore(sys.argv[1])])
svc.trace_run("parent").end()
assert svc.flush(10)  # the parent's export connection is open (WAL mode) at fork time
to_parent, to_child = os.pipe(), os.pipe()
pid = os.fork()
if pid == 0:
    svc.trace_run("child-before").end()
    ok = svc.flush(10)  # the child's own connection is open now
    os.write(to_parent[1], b"x")
    os.read(to_child[0], 1)  # ...while the parent closed its last connection
    svc.trace_run("child-after").end()
    ok = svc.flush(10) and ok
    os._exit(0 if ok else 1)
os.read(to_parent[0], 1)
svc.shutdown(10)  # closes the parent's connection: the last one, unless the child holds a lock
os.write(to_child[1], b"x")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_child_commits_survive_the_parent_closing_its_store(tmp_path: Path) -> None:
    # A child that kept the connection it inherited held no real lock on the file (SQLite
    # thought the inherited one covered it): the parent's closing connection checkpointed
    # and deleted the WAL, and the child's next commit went into the deleted file.
    db = tmp_path / "t.db"
    proc = run_python(write_script(tmp_path, "close.py", _PARENT_CLOSES), str(db), timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {run.name for run in SQLiteStore(str(db)).runs()}
    assert names == {"parent", "child-before", "child-after"}
