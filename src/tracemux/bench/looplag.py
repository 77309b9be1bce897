"""Scenario 5, event-loop lag: many concurrent async runs, a destination that takes 2 s.

The destination is a loopback HTTP server that sleeps 2 s before answering each request.
1,000 runs (a root and two child spans each, with short awaits) run concurrently on one
event loop while a ticker task sleeps 1 ms at a time and records how late it wakes up.

- tracemux: a ``Langfuse(...)`` destination pointed at the slow server; runs just end (the
  export thread delivers); one ``await svc.aflush()`` at the end, inside the window.
- langfuse 5: the client pointed at the same kind of server, and ``flush()`` at the end of
  each run, as Langflow's tracer does. Each flush blocks the loop for a whole request, so
  its window is cut off after a few seconds; the runs it completed are reported.

Each side runs in its own process; both freeze the heap that exists before the runs
(``gc.freeze()``) so a full collection of unrelated objects does not count as lag.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from pathlib import Path
from typing import Any

from tracemux.bench.common import (
    NOT_INSTALLED,
    Options,
    Receiver,
    dist_version,
    percentile,
    quiet_loggers,
    run_child,
)
from tracemux.bench.report import Section, SummaryRow, bar_chart, md_table, verdict

TITLE = "5. Event-loop lag against a slow destination"
DELAY = 2.0
TARGET_P99_MS = 5.0


class _Ticker:
    """Sleeps 1 ms at a time; each wake-up's lateness is one lag sample (until ``until``)."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.stop = asyncio.Event()
        self.until = float("inf")

    async def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            t1 = time.perf_counter()
            if t0 < self.until:
                self.lags.append(t1 - t0 - 0.001)

    def figures(self) -> dict[str, Any]:
        lags = sorted(self.lags)
        return {
            "ticks": len(lags),
            "p50_ms": percentile(lags, 0.5) * 1e3,
            "p99_ms": percentile(lags, 0.99) * 1e3,
            "max_ms": (lags[-1] if lags else float("nan")) * 1e3,
        }


async def _measure(flow: Any, runs: int, deadline: float | None, finish: Any) -> dict[str, Any]:
    """Run ``flow(i, until)`` for every run at once with the ticker going; ``until`` is the
    perf_counter time after which a flow should stop doing its blocking part (a flow
    returns True when it completed). Lag is sampled up to ``until``, or to the end."""
    ticker = _Ticker()
    gc.collect()
    gc.freeze()
    try:
        tick = asyncio.create_task(ticker.run())
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        until = t0 + deadline if deadline else float("inf")
        ticker.until = until
        outcomes = await asyncio.gather(*(flow(i, until) for i in range(runs)))
        t_runs = time.perf_counter() - t0
        finished = await finish()
        total = time.perf_counter() - t0
        ticker.stop.set()
        await tick
    finally:
        gc.unfreeze()
    return {
        **ticker.figures(),
        "runs": runs,
        "completed": sum(1 for ok in outcomes if ok),
        "runs_seconds": t_runs,
        "seconds": total,
        "finished": finished,
    }


def _tracemux(runs: int) -> dict[str, Any]:
    from tracemux import TracingService
    from tracemux.destinations import Langfuse

    with Receiver(delay=DELAY) as receiver:
        svc = TracingService(
            [Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=receiver.url)]
        )

        async def flow(i: int, until: float) -> bool:
            rng = random.Random(i)
            async with svc.trace_run(f"flow-{i}", inputs={"i": i}) as run:
                for j in range(2):
                    async with run.span(f"C-{j}", inputs={"i": i, "j": j}) as span:
                        await asyncio.sleep(rng.random() * 0.002)
                        span.set_outputs({"ok": True})
            return True

        async def finish() -> bool:
            return await svc.aflush(120)

        async def main() -> dict[str, Any]:
            async with svc.trace_run("warm-up"):
                pass
            await asyncio.sleep(1.2)  # the first export is under way: modules loaded
            before = svc.stats()["exported"]
            out = await _measure(flow, runs, None, finish)
            out["delivered"] = svc.stats()["exported"] - before
            return out

        result = asyncio.run(main())
        result["receiver"] = receiver.stop()
    return result


def _langfuse5(runs: int, deadline: float) -> dict[str, Any]:
    version = dist_version("langfuse") or ""
    if not version.startswith("5."):
        return {"status": NOT_INSTALLED, "note": f"langfuse 5 needed, found {version or 'none'}"}
    quiet_loggers("langfuse", "opentelemetry")
    from langfuse import Langfuse

    with Receiver(delay=DELAY) as receiver:
        lf = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", host=receiver.url)

        async def flow(i: int, until: float) -> bool:
            rng = random.Random(i)
            with lf.start_as_current_observation(name=f"flow-{i}", input={"i": i}):
                for j in range(2):
                    with lf.start_as_current_observation(
                        name=f"C-{j}", as_type="chain", input={"i": i, "j": j}
                    ) as span:
                        await asyncio.sleep(rng.random() * 0.002)
                        span.update(output={"ok": True})
            if time.perf_counter() >= until:
                return False  # past the window: the rest would only repeat the same stall
            lf.flush()  # what Langflow's tracer does at the end of each run
            return True

        async def finish() -> bool:
            return True

        result = asyncio.run(_measure(flow, runs, deadline, finish))
        result["deadline_s"] = deadline
        result["receiver"] = receiver.stop()
    return result


def run(part: str, opts: Options) -> dict[str, Any]:
    runs = int(opts.pick(1000, 200))
    if part == "tracemux":
        return _tracemux(runs)
    if part == "langfuse5":
        try:
            return _langfuse5(runs, float(opts.pick(10.0, 4.5)))
        except ImportError as exc:
            return {"status": NOT_INSTALLED, "note": str(exc)}
    if part != "main":
        raise ValueError(f"unknown part {part!r}")
    return {
        "tracemux": run_child("looplag", "tracemux", opts, timeout=300),
        "langfuse5": run_child("looplag", "langfuse5", opts, timeout=300),
    }


LABELS = {
    "tracemux": "tracemux (runs end; one aflush at the end)",
    "langfuse5": "langfuse 5 (flush() at the end of each run)",
}


def render(result: dict[str, Any], out_dir: Path) -> Section:
    rows, notes, labels, stats = [], [], [], []
    for key, label in LABELS.items():
        r = result.get(key, {})
        if "error" in r:
            notes.append(f"{label}: failed: {r['error']}")
            continue
        if "p99_ms" not in r:
            notes.append(f"{label}: {r.get('note') or r.get('status')}")
            continue
        window = f"{r['seconds']:.1f} s"
        if r.get("deadline_s"):
            window += f" (no new flush after {r['deadline_s']:g} s)"
        rows.append(
            [
                label,
                f"{r['completed']:,} / {r['runs']:,}",
                window,
                f"{r['ticks']:,}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['max_ms']:.2f}",
                f"{r.get('delivered', '-'):,}" if "delivered" in r else "-",
            ]
        )
        labels += [f"{label}: p50", f"{label}: p99", f"{label}: max"]
        for k in ("p50_ms", "p99_ms", "max_ms"):
            stats.append({"median": r[k], "min": r[k], "max": r[k], "n": 1})
    md = [
        f"Concurrent async runs (a root and two child spans, short awaits) on one event loop;"
        f" the destination is a loopback server that answers each request after"
        f" {DELAY:g} s. Lag = how late a task sleeping 1 ms wakes up, sampled over the whole"
        " window (runs and, for tracemux, the final `aflush`, which waits for every slow"
        " export without blocking the loop). One run per side: these are percentiles over"
        " thousands of ticks, not medians over repeats.",
        "",
        md_table(
            [
                "",
                "runs completed",
                "window",
                "ticks",
                "lag p50 ms",
                "lag p99 ms",
                "lag max ms",
                "spans delivered",
            ],
            rows,
        ),
    ]
    if notes:
        md += ["", *[f"- {n}" for n in notes]]
    chart = bar_chart(
        out_dir / "looplag.png",
        labels,
        stats,
        title=f"Event-loop lag (ms, log scale), destination answering after {DELAY:g} s",
        xlabel="ms",
        log=True,
        highlight=[x.startswith("tracemux") for x in labels],
    )
    summary = []
    tm, lf = result.get("tracemux", {}), result.get("langfuse5", {})
    if "p99_ms" in tm:
        anchor, ratio = "not measured", "-"
        if "p99_ms" in lf:
            anchor = f"{lf['p99_ms']:.0f} ms (langfuse 5 + flush per run)"
            ratio = f"{tm['p99_ms'] / lf['p99_ms']:.4f}x" if lf["p99_ms"] else "-"
        summary.append(
            SummaryRow(
                f"Event-loop lag p99, {tm['runs']:,} concurrent runs, 2 s destination",
                f"{tm['p99_ms']:.2f} ms (max {tm['max_ms']:.1f})",
                anchor,
                ratio,
                f"< {TARGET_P99_MS:g} ms",
                verdict(tm["p99_ms"] < TARGET_P99_MS),
            )
        )
    return Section(TITLE, "\n".join(md), [chart], summary)
