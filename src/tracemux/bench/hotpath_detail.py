"""The hot path in detail: what one span costs the caller, and what it costs the export side.

``python -m tracemux.bench.hotpath_detail [--repeats 9] [--target 0.25] [--profile N]``

The cases, interleaved round-robin in one process (order rotated every round, so a busy
machine slows each alike), each repeat timed with ``perf_counter`` (wall) and
``thread_time`` (the recording thread's own CPU):

- ``floor``: a dict with two ``time_ns()`` put on a ``queue.SimpleQueue`` (as in the suite);
- ``span.discard`` / ``llm.discard``: a span (open, small inputs, outputs, close) and an LLM
  span (same, plus model and token usage) into :class:`~tracemux.destinations.Discard`,
  the export thread running meanwhile (it wakes every 512 spans);
- ``span.sqlite`` / ``llm.sqlite``: the same into the default SQLite store (a temporary
  file), whose export thread works far more per span and so competes harder for the GIL;
- ``span.idle``: spans into a queue whose export thread is kept asleep for the repeat
  (huge batch size and flush interval): the caller alone, nothing competing for the GIL.

For each case it also reports the export thread's CPU per span (the delivery work the
span cost elsewhere, read from the thread's own CPU clock across the repeat and its
drain). With ``--profile N`` it prints the cProfile of N spans + N LLM spans instead.

It only uses what every version of tracemux has, so the same file can measure an older
checkout: ``PYTHONPATH=<checkout>/src python src/tracemux/bench/hotpath_detail.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracemux.bench.common import span_loops


def _export_cpu_ns() -> int:
    """CPU time of tracemux's export thread so far (0 when none runs)."""
    for t in threading.enumerate():
        if t.name.startswith("tracemux-export") and t.ident is not None:
            try:
                return time.clock_gettime_ns(time.pthread_getcpuclockid(t.ident))
            except (OSError, AttributeError):
                return 0
    return 0


class _Case:
    def __init__(
        self,
        name: str,
        loop: Callable[[int], None],
        drain: Callable[[], None] = lambda: None,
        before: Callable[[], None] = lambda: None,
        max_n: int = 1_000_000,
    ) -> None:
        self.name, self.loop, self.drain, self.before = name, loop, drain, before
        self.max_n = max_n
        self.n = 0
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.export_cpu: list[float] = []


def _floor() -> _Case:
    holder = [queue.SimpleQueue()]  # type: ignore[var-annotated]
    tn = time.time_ns

    def loop(n: int) -> None:
        put = holder[0].put
        for _ in range(n):
            put({"start": tn(), "end": tn()})

    def drain() -> None:
        holder[0] = queue.SimpleQueue()

    return _Case("floor", loop, drain)


def _cases(tmp: Path) -> list[_Case]:
    from tracemux import TracingService
    from tracemux.config import store_from_env
    from tracemux.destinations import Discard

    svc = TracingService([Discard("bench")])
    span_d, llm_d = span_loops(svc.trace_run("bench run"))
    sq = TracingService([store_from_env({}, path=str(tmp / "hotpath.db"))])
    span_s, llm_s = span_loops(sq.trace_run("bench run"))
    held: list[Any] = []

    def drain() -> None:
        svc.flush(120)

    def asleep() -> None:  # the export thread blocks on its first drain of the repeat
        session = svc._worker._session
        lock = getattr(session, "count_lock", None)
        if lock is not None and lock.acquire(timeout=5):
            held.append(lock)

    def awake() -> None:
        while held:
            held.pop().release()
        svc.flush(120)

    return [
        _floor(),
        _Case("span.discard", span_d, drain),
        _Case("llm.discard", llm_d, drain),
        _Case("span.sqlite", span_s, drain),
        _Case("llm.sqlite", llm_s, drain),
        _Case("span.idle", span_d, awake, asleep, max_n=80_000),
    ]


def measure(cases: list[_Case], repeats: int, target_s: float) -> None:
    for case in cases:  # warm up, then calibrate
        case.before()
        case.loop(500)
        case.drain()
        case.before()
        t0 = time.perf_counter()
        case.loop(2000)
        per = max(1e-8, (time.perf_counter() - t0) / 2000)
        case.drain()
        case.n = int(max(2000, min(case.max_n, target_s / per)))
    for r in range(repeats):
        k = r % len(cases)
        for case in cases[k:] + cases[:k]:
            case.before()
            gc.collect()
            e0 = _export_cpu_ns()
            c0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            case.loop(case.n)
            t1 = time.perf_counter_ns()
            c1 = time.thread_time_ns()
            case.drain()
            e1 = _export_cpu_ns()
            case.wall.append((t1 - t0) / case.n / 1000)
            case.cpu.append((c1 - c0) / case.n / 1000)
            case.export_cpu.append(max(0, e1 - e0) / case.n / 1000)


def report(cases: list[_Case]) -> str:
    floor = cases[0]
    lines = [
        "| case | wall µs/span median (min-max) | CPU µs/span | x floor (wall, per-round"
        " median) | export-thread CPU µs/span |",
        "|---|---|---|---|---|",
    ]
    for case in cases:
        ratios = [w / f for w, f in zip(case.wall, floor.wall)]
        lines.append(
            f"| {case.name} | {statistics.median(case.wall):.2f} ({min(case.wall):.2f}-"
            f"{max(case.wall):.2f}) | {statistics.median(case.cpu):.2f} | "
            f"{statistics.median(ratios):.2f}x | "
            f"{statistics.median(case.export_cpu):.2f} |"
        )
    lines.append(
        f"\n{len(floor.wall)} rounds; spans per repeat: "
        + ", ".join(f"{c.name} {c.n:,}" for c in cases)
    )
    return "\n".join(lines)


def profile(cases: list[_Case], n: int) -> str:
    import io

    prof = cProfile.Profile()
    for case in cases[1:3]:
        case.loop(1000)
        case.drain()
        prof.enable()
        case.loop(n)
        prof.disable()
        case.drain()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime").print_stats(18)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--target", type=float, default=0.25, help="seconds per repeat")
    p.add_argument("--profile", type=int, default=0, help="cProfile N spans + N LLM spans")
    args = p.parse_args(argv)
    import tracemux

    print(f"tracemux from {Path(tracemux.__file__).parent}, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(Path(tmp))
        if args.profile:
            print(profile(cases, args.profile))
        else:
            measure(cases, args.repeats, args.target)
            print(report(cases))
        cases[1].drain()
    return 0


if __name__ == "__main__":
    sys.exit(main())
