"""SIGKILL in the middle of SQLite writes: the store stays intact and keeps every batch that
was committed.

The writer records, on two threads, a stream of "background" runs (large values, so the
export thread is inside a transaction much of the time) and, on the main thread, numbered
"committed" runs: after ``flush()`` returns True for run k, it appends ``k`` to a side file.
The parent kills it at a random moment, 20 times over the same database, and checks after
each kill: ``PRAGMA integrity_check`` passes, and every run the side file lists is in the
store whole (every span row present, every value parses, counts match).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import env_number, popen_python, write_script

pytestmark = pytest.mark.reliability

KILLS = int(env_number("TRACEMUX_KILL_TIMES", 20, 50))
SPANS_PER_RUN = 12

WRITER = """
import itertools, os, sys, threading, time
import tracemux
from tracemux.destinations import SQLiteStore
from tracemux.pipeline.worker import PipelineSettings

db, side, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
svc = tracemux.TracingService(
    [SQLiteStore(db)], pipeline=PipelineSettings(flush_interval=0.05, batch_size=256)
)
SPANS = {spans}

def background():
    pad = "b" * 3000
    for i in itertools.count():
        with svc.trace_run(f"bg-{{os.getpid()}}-{{threading.get_ident()}}-{{i}}") as run:
            for j in range(40):
                run.span("bg", inputs={{"pad": pad, "j": j}}).end()
        time.sleep(0.004)  # keep the writer busy, short of an ever-growing backlog

threading.Thread(target=background, daemon=True).start()

with open(side, "a") as out:
    print("writing", flush=True)
    for k in itertools.count(start):
        with svc.trace_run(f"committed-{{k}}", run_id=f"committed-{{k}}") as run:
            for j in range(SPANS - 1):
                with run.span(f"s{{j}}", inputs={{"k": k, "j": j}}) as s:
                    s.set_outputs({{"k": k, "j": j, "text": "é" * 50}})
        if svc.flush(30):
            out.write(f"{{k}}\\n")
            out.flush()
"""


def committed_runs(side: Path) -> list[int]:
    """Run numbers the writer knew to be committed (a line cut by the kill is ignored)."""
    if not side.exists():
        return []
    text = side.read_text()
    lines = text.split("\n")
    return [int(x) for x in lines[:-1] if x]  # the last element is "" or a cut line


def check_store(db: Path, committed: list[int]) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # every committed batch is whole: a run's span count matches its span rows
        bad = conn.execute(
            "SELECT run_id, span_count, (SELECT COUNT(*) FROM spans s WHERE s.run_id = r.run_id)"
            " FROM runs r WHERE span_count != (SELECT COUNT(*) FROM spans s"
            " WHERE s.run_id = r.run_id)"
        ).fetchall()
        assert bad == [], bad[:5]
        # every run the writer saw committed is there, ended, with every span and value
        for k in committed:
            run_id = f"committed-{k}"
            row = conn.execute(
                "SELECT status, span_count, end_ns FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            assert row is not None, f"{run_id} was committed but is missing"
            assert row[0] == "ok" and row[1] == SPANS_PER_RUN and row[2] is not None, row
            spans = conn.execute(
                "SELECT name, inputs, outputs FROM spans WHERE run_id = ?", (run_id,)
            ).fetchall()
            assert len(spans) == SPANS_PER_RUN
            children = [(json.loads(i), json.loads(o)) for n, i, o in spans if n != run_id]
            assert sorted(c[0]["j"] for c in children) == list(range(SPANS_PER_RUN - 1))
            assert all(c[0]["k"] == k and c[1]["k"] == k for c in children)
            assert all(c[1]["text"] == "é" * 50 for c in children)
        return {
            "runs": conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
            "spans": conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0],
        }
    finally:
        conn.close()


def test_sigkill_mid_batch_keeps_every_committed_batch(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    side = tmp_path / "committed.txt"
    script = write_script(tmp_path, "writer.py", WRITER.format(spans=SPANS_PER_RUN))
    rng = random.Random(int(os.environ.get("TRACEMUX_KILL_SEED", "7")))
    totals: list[int] = []
    for attempt in range(KILLS):
        start = attempt * 1_000_000  # each writer numbers its runs apart: no id is reused
        proc = popen_python(script, str(db), str(side), str(start), stdout=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(rng.uniform(0.15, 1.2))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        proc.stdout.close()
        committed = committed_runs(side)
        counts = check_store(db, committed)
        totals.append(len(committed))
        assert counts["spans"] >= len(committed) * SPANS_PER_RUN
    # the writers did get work committed before they were killed
    print("committed runs after each kill:", totals)
    assert totals[-1] >= KILLS, totals
