"""The SQLite store's write path alone: export-thread CPU per span, and where it goes.

    .venv/bin/python -m tracemux.bench.store_write [--spans 100000] [--repeats 3]
        [--shape bench|llm] [--profile] [--json]

Records ``--spans`` spans through the public service into a capturing destination (the
batches exactly as the pipeline hands them to a store: up to 2,000 records, run starts
included), then writes those batches into a fresh store with ``_SQLiteExporter.export``,
timing each call with ``time.thread_time`` (CPU of this thread only). Shapes: ``bench``,
the throughput scenario's runs (a root and nine tool spans with small inputs and
outputs); ``llm``, the same with one LLM span per run that names a model, has token usage
and a log line. ``--profile`` prints the top of a cProfile of one pass.

``--rows`` compares the two ways of writing the spans' rows (the bulk of a batch), on the
same rows: multi-row ``INSERT ... VALUES (...), (...)`` statements (what the store does)
and ``executemany`` over the pre-built tuples, each batch in its own transaction, with
``--busy-threads`` application threads running pure Python meanwhile (the sqlite3 module
gives the GIL away around every statement step: ``executemany`` takes it back once per
row, from a busy thread that keeps it up to the switch interval). Figures, not
assertions: the machine may be busy.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tracemux.bench.common import INPUTS, MESSAGES, MODEL, OUTPUTS, REPLY, USAGE_IN, USAGE_OUT
from tracemux.destinations.base import Destination
from tracemux.model import Record

SPANS_PER_RUN = 10


@dataclass(frozen=True)
class _Capture(Destination):
    """Keeps every batch it is given (as the store would get them)."""

    name: str = "capture"

    max_batch: ClassVar[int] = 2000
    wants_run_starts: ClassVar[bool] = True

    def describe(self) -> str:
        return f"capture:{self.name}"

    def open(self) -> _CaptureExporter:
        return _CaptureExporter()


class _CaptureExporter:
    batches: ClassVar[list[list[Record]]] = []

    def export(self, batch: Sequence[Record]) -> None:
        self.batches.append(list(batch))

    def close(self) -> None:
        return None


def capture_batches(spans: int, shape: str = "bench") -> list[list[Record]]:
    """Record ``spans`` spans (runs of 10) and return the batches a store would get."""
    from tracemux import TracingService

    _CaptureExporter.batches = []
    svc = TracingService([_Capture(f"{shape}-{spans}")])
    try:
        for i in range(max(1, spans // SPANS_PER_RUN)):
            with svc.trace_run("flow", inputs=INPUTS, user_id="u1", session_id=f"s{i % 50}") as run:
                children = SPANS_PER_RUN - 1
                if shape == "llm":
                    children -= 1
                    with run.span("chat", kind="llm", inputs=MESSAGES) as s:
                        s.set_usage(MODEL, USAGE_IN, USAGE_OUT)
                        s.add_log("called the model", attempt=1)
                        s.set_outputs(REPLY)
                for _ in range(children):
                    with run.span("step", kind="tool", inputs=INPUTS) as s:
                        s.set_outputs(OUTPUTS)
            if i % 500 == 499:
                svc.flush(60)  # keep the queue under its bound: nothing dropped
        assert svc.flush(120), "the capture did not finish"
        dropped = svc.stats()["dropped"]
        assert not dropped, dropped
    finally:
        svc.shutdown(30)
    return _CaptureExporter.batches


def time_export(batches: list[list[Record]], path: Path) -> dict[str, Any]:
    """Write the batches into a new store at ``path``; CPU and wall time of the exports."""
    from tracemux.destinations.sqlite import SQLiteStore

    exporter = SQLiteStore(path, prune_every=1e9).open()
    spans = sum(1 for b in batches for r in b if r.is_span)
    try:
        cpu = wall = 0.0
        for batch in batches:
            c0, w0 = time.thread_time(), time.perf_counter()
            exporter.export(batch)
            cpu += time.thread_time() - c0
            wall += time.perf_counter() - w0
    finally:
        exporter.close()
    return {
        "spans": spans,
        "batches": len(batches),
        "cpu_us_per_span": cpu / spans * 1e6,
        "wall_us_per_span": wall / spans * 1e6,
    }


def _busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(200))  # an application thread's pure-Python work


def compare_row_paths(
    batches: list[list[Record]], directory: Path, busy_threads: int, repeats: int
) -> dict[str, dict[str, float]]:
    """CPU and wall µs per span of writing the spans' rows, by each path (interleaved)."""
    import sqlite3

    from tracemux.destinations.sqlite import (
        SPANS_STATEMENT,
        SQLiteStore,
        executemany_rows,
        insert_rows,
        max_variables,
        store_rows,
    )

    rowsets = [store_rows(batch).spans for batch in batches]
    spans = sum(len(rows) for rows in rowsets)
    paths = {
        "multirow": lambda conn, rows: insert_rows(
            conn, SPANS_STATEMENT, rows, max_variables(conn)
        ),
        "executemany": lambda conn, rows: executemany_rows(conn, SPANS_STATEMENT, rows),
    }
    out: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in paths}
    stop = threading.Event()
    threads = [threading.Thread(target=_busy, args=(stop,)) for _ in range(busy_threads)]
    for t in threads:
        t.start()
    try:
        for k in range(repeats):
            for name, write in paths.items():
                path = directory / f"rows-{name}-{k}.db"
                SQLiteStore(path).open().close()  # today's schema
                conn = sqlite3.connect(path, isolation_level=None)
                cpu = wall = 0.0
                for rows in rowsets:
                    c0, w0 = time.thread_time(), time.perf_counter()
                    conn.execute("BEGIN IMMEDIATE")
                    write(conn, rows)
                    conn.execute("COMMIT")
                    cpu += time.thread_time() - c0
                    wall += time.perf_counter() - w0
                conn.close()
                out[name]["cpu"].append(cpu / spans * 1e6)
                out[name]["wall"].append(wall / spans * 1e6)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {
        name: {f"{key}_us_per_span": round(sorted(v)[len(v) // 2], 2) for key, v in m.items()}
        for name, m in out.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", choices=("bench", "llm"), default="bench")
    parser.add_argument("--profile", action="store_true", help="cProfile one more pass")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--rows", action="store_true", help="compare the row-writing paths")
    parser.add_argument("--busy-threads", type=int, default=1, help="with --rows (default 1)")
    args = parser.parse_args(argv)
    batches = capture_batches(args.spans, args.shape)
    if args.rows:
        with tempfile.TemporaryDirectory(prefix="tracemux-bench-sw-") as tmp:
            figures = compare_row_paths(batches, Path(tmp), args.busy_threads, args.repeats)
        summary = {"busy_threads": args.busy_threads, **figures}
        print(json.dumps(summary) if args.json else json.dumps(summary, indent=1))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="tracemux-bench-sw-") as tmp:
        for k in range(args.repeats):
            results.append(time_export(batches, Path(tmp) / f"run{k}.db"))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            time_export(batches, Path(tmp) / "profile.db")
            profiler.disable()
    cpu = sorted(r["cpu_us_per_span"] for r in results)
    summary = {
        "shape": args.shape,
        "spans": results[0]["spans"],
        "batches": results[0]["batches"],
        "cpu_us_per_span_median": round(cpu[len(cpu) // 2], 2),
        "cpu_us_per_span_min": round(cpu[0], 2),
        "wall_us_per_span_median": round(
            sorted(r["wall_us_per_span"] for r in results)[len(results) // 2], 2
        ),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:26} {value}")
    if args.profile:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
