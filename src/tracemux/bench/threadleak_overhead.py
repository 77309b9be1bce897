"""Cost of recording thread creation sites: thread start+join with and without a ledger.

Run: ``python -m tracemux.bench.threadleak_overhead [--threads N] [--repeat R]``

Measures, per thread, the median over R rounds of N sequential ``Thread.start()`` +
``join()``:

* ``plain``: no ledger (``Thread.start`` unpatched);
* ``ledger``: inside a ``ThreadLedger`` from a shallow stack;
* ``ledger, deep stack``: inside a ledger, started 60 frames deep (the capture walks up
  to 48 frames, as under pytest);
and the cost of the capture alone (the recording function called directly, no thread;
best of R rounds, as the machine may be shared).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

from tracemux.threadleak import ThreadLedger
from tracemux.threadleak import ledger as ledger_mod


def _noop() -> None:
    pass


def _start_join(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        t = threading.Thread(target=_noop)
        t.start()
        t.join()
    return (time.perf_counter() - t0) / n


def _deep(depth: int, fn: Callable[[], float]) -> float:
    if depth <= 0:
        return fn()
    return _deep(depth - 1, fn)


def _median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def _capture_only(n: int, depth: int) -> float:
    threads = [threading.Thread(target=_noop) for _ in range(n)]
    with ThreadLedger() as ledger:
        active = (ledger,)

        def run() -> float:
            t0 = time.perf_counter()
            for t in threads:
                ledger_mod._record_start(t, active)
            return (time.perf_counter() - t0) / n

        return _deep(depth, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n, r = args.threads, args.repeat

    _start_join(200)  # warm up
    plain = _median(lambda: _start_join(n), r)

    def in_ledger(depth: int) -> float:
        with ThreadLedger():
            return _deep(depth, lambda: _start_join(n))

    shallow = _median(lambda: in_ledger(0), r)
    deep = _median(lambda: in_ledger(60), r)
    cap_shallow = min(_capture_only(n, 0) for _ in range(r))  # min: least disturbed run
    cap_deep = min(_capture_only(n, 60) for _ in range(r))

    us = 1e6
    print(f"thread start+join, median of {r} x {n} threads (µs per thread)")
    print(f"  plain                     {plain * us:8.1f}")
    print(f"  ledger                    {shallow * us:8.1f}  ({(shallow - plain) * us:+.1f})")
    print(f"  ledger, deep stack (60)   {deep * us:8.1f}  ({(deep - plain) * us:+.1f})")
    print(f"creation-site capture alone (µs per start, best of {r})")
    print(f"  shallow stack             {cap_shallow * us:8.2f}")
    print(f"  deep stack (48 frames)    {cap_deep * us:8.2f}")


if __name__ == "__main__":
    main()
