"""Re-entrant recording: from a signal handler, from a ``__repr__`` that records, a
shutdown or flush from a signal handler. Never a deadlock, never a lost count (issue 13.2).

A signal handler runs on the main thread between two bytecodes of whatever it interrupted,
possibly while that code holds one of tracemux's locks. Each case runs in a child process
(a deadlock would hang it: the timeout fails the test) where a 0.5 ms interval timer fires
a handler that records while the main thread records as fast as it can.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import run_python, write_script
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer"),
]

_SCRIPT = """
import json, signal, sys, time
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

svc = TracingService([SQLiteStore(sys.argv[1])])
mode = sys.argv[2]
handled = 0

def handler(signum, frame):
    global handled
    handled += 1
    if mode == "record":
        with svc.trace_run("from-handler") as run:
            run.span("child").end()
    elif mode == "shutdown" and handled % 50 == 0:
        svc.shutdown(1)
    elif mode == "flush" and handled % 50 == 0:
        svc.flush(1)

signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
main_runs = 0
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    with svc.trace_run("main", inputs={"i": main_runs}) as run:
        run.span("a").end()
    main_runs += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
ok = svc.flush(30)
s = svc.stats()
svc.shutdown(10)
print(json.dumps({"handled": handled, "main_runs": main_runs, "flushed": ok,
                  "recorded": s["recorded"], "exported": s["exported"],
                  "dropped": s["dropped"]}))
"""


@pytest.mark.parametrize("mode", ["record", "shutdown", "flush"])
def test_a_signal_handler_that_records_or_shuts_down_never_deadlocks(
    tmp_path: Path, mode: str
) -> None:
    script = write_script(tmp_path, "signals.py", _SCRIPT)
    db = tmp_path / "t.db"
    proc = run_python(script, str(db), mode, "2", timeout=90)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["handled"] > 100 and out["main_runs"] > 100
    assert out["flushed"] is True
    # every span recorded is exported or counted as dropped, with a reason
    assert out["recorded"] == out["exported"] + sum(out["dropped"].values())
    store = SQLiteStore(db)
    # a shutdown may give up on what it could not deliver in 1 s; a busy machine may fill
    # the queue, by count or by bytes (all counted); nothing else is lost
    assert set(out["dropped"]) <= {"shutdown", "queue_full", "queue_bytes"}
    if not out["dropped"]:
        handler_runs = out["handled"] if mode == "record" else 0
        assert store.count_runs() == out["main_runs"] + handler_runs


class _RecordsInRepr:
    """A value whose repr records a span with the same service (re-entrant capture)."""

    def __init__(self, svc: TracingService) -> None:
        self.svc = svc

    def __repr__(self) -> str:
        with self.svc.trace_run("inside-repr", inputs={"me": {1, 2}}) as run:
            run.span("nested").end()
        return "recorded-in-repr"


def test_a_repr_that_records_spans_is_captured_and_its_spans_delivered(
    make_service: Callable[..., TracingService], store: SQLiteStore
) -> None:
    svc = make_service([store])
    with svc.trace_run("outer", inputs={"v": _RecordsInRepr(svc)}) as run:
        run.span("s", inputs=[_RecordsInRepr(svc)]).end()
    assert svc.flush(10)
    names = sorted(r.name for r in store.runs(limit=10))
    assert names == ["inside-repr", "inside-repr", "outer"]
    (root,) = [s for s in store.spans(run.run_id) if s.name == "outer"]
    assert json.dumps(root.inputs) == '{"v": "recorded-in-repr"}'
