"""Scenario 4, memory with the destination down: RSS must level off at the byte bound.

A child process is configured from the environment only, as a deployment would be:
``TRACEMUX_MAX_QUEUE_BYTES=32M`` and ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a closed
loopback port, so every export fails and is retried while new spans keep coming. It records
1,000,000 spans (runs of ten, about 1 KB of inputs each) and samples its resident set size
from ``/proc/self/statm`` as it goes. The queue and the destination's buffer hold at most
the configured bytes of records; past that, new spans are dropped and counted, so RSS must
flatten at the baseline plus the bound plus a small constant.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from tracemux.bench.common import (
    Options,
    bench_env,
    closed_url,
    rss_bytes,
    run_child,
)
from tracemux.bench.report import Section, SummaryRow, line_chart, md_table, verdict

TITLE = "4. Memory with the destination down"
BOUND = "32M"
BOUND_BYTES = 32 * 1024 * 1024
#: what "a small constant" above the bound may be: allocator slack (records freed while
#: others are held leave holes), a batch being encoded for a retry (protobuf, gzip), the
#: masking pass's cache of clean values (at most 1 MiB). The bound itself charges each
#: record what holding it really costs (``RECORD_HOLD_BYTES`` beyond its values).
SLACK_BYTES = 8 * 1024 * 1024
#: levelled off: the median RSS over the last quarter of the run exceeds the median over
#: the second quarter by less than this (a trend, not a transient: what is in flight
#: moves between the destination's buffer alone and that plus a queue backlog)
FLAT_BYTES = 2 * 1024 * 1024
SPANS_PER_RUN = 10
MB = 1024 * 1024


def _record(spans: int, every: int) -> dict[str, Any]:
    from tracemux import TracingService

    svc = TracingService.from_env()
    payload = {"document": "x" * 1000, "k": 3}
    outputs = {"answer": "Retrieval augmented generation.", "docs": 3}
    with svc.trace_run("warm-up") as run:
        with run.span("step", inputs=payload) as s:
            s.set_outputs(outputs)
    time.sleep(1.5)  # the first export attempt: the exporter's modules are loaded
    baseline = rss_bytes()
    samples: list[tuple[int, int]] = [(0, baseline)]
    done = 0
    t0 = time.perf_counter()
    while done < spans:
        with svc.trace_run("flow", inputs=payload) as run:
            for _ in range(SPANS_PER_RUN - 1):
                with run.span("step", kind="tool", inputs=payload) as s:
                    s.set_outputs(outputs)
        done += SPANS_PER_RUN
        if done % every == 0:
            samples.append((done, rss_bytes()))
    seconds = time.perf_counter() - t0
    stats = svc.stats()
    allocated = _allocated_per_value([payload, outputs])
    return {
        "allocated_per_value": allocated,
        "baseline": baseline,
        "samples": samples,
        "seconds": seconds,
        "recorded": stats["recorded"],
        "exported": stats["exported"],
        "dropped": stats["dropped"],
        "queue_bytes": stats["queue_bytes"],
        "queue_max_bytes": stats["queue_max_bytes"],
        "queue_size": stats["queue_size"],
    }


def _allocated_per_value(values: list[Any]) -> list[dict[str, int]]:
    """Bytes the allocator really holds for one captured value (tracemalloc), against its
    length, which is what the byte bound counts. Run after the RSS samples are taken."""
    import tracemalloc

    from tracemux.capture import Capturer

    capture = Capturer()
    out = []
    tracemalloc.start()
    try:
        for value in values:
            before = tracemalloc.get_traced_memory()[0]
            kept = [capture.value(value) for _ in range(1000)]
            held = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
            out.append({"length": len(kept[0] or b""), "allocated": int(held)})
            del kept
    finally:
        tracemalloc.stop()
    return out


def run(part: str, opts: Options) -> dict[str, Any]:
    spans = int(opts.pick(1_000_000, 200_000))
    every = int(opts.pick(10_000, 5_000))
    if part == "record":
        return _record(spans, every)
    if part != "main":
        raise ValueError(f"unknown part {part!r}")
    env = bench_env(
        {"TRACEMUX_MAX_QUEUE_BYTES": BOUND, "OTEL_EXPORTER_OTLP_ENDPOINT": closed_url()}
    )
    result = run_child("memory", "record", opts, timeout=600, env=env)
    result["bound"] = BOUND_BYTES
    return result


def _growth(samples: list[tuple[int, int]]) -> float:
    """Median RSS over the last quarter of the run minus the median over the second."""
    last = samples[-1][0]
    second = [r for s, r in samples if last / 4 <= s < last / 2]
    fourth = [r for s, r in samples if s >= last * 3 / 4]
    if not second or not fourth:
        return 0.0
    return float(statistics.median(fourth) - statistics.median(second))


def render(result: dict[str, Any], out_dir: Path) -> Section:
    samples = result["samples"]
    baseline = result["baseline"]
    xs = [s for s, _ in samples]
    ys = [(r - baseline) / MB for _, r in samples]
    peak = max(r for _, r in samples) - baseline
    growth_late = _growth(samples)
    end = samples[-1][1] - baseline
    level = peak <= BOUND_BYTES + SLACK_BYTES and growth_late <= FLAT_BYTES
    dropped = result.get("dropped", {})
    rows = [
        ["spans recorded", f"{xs[-1]:,} in {result['seconds']:.1f} s"],
        ["RSS before the first span (baseline)", f"{baseline / MB:.1f} MiB"],
        ["RSS above baseline: peak / at the end", f"{peak / MB:.1f} / {end / MB:.1f} MiB"],
        [
            "growth: median RSS, last quarter of the run minus second quarter",
            f"{growth_late / MB:.1f} MiB",
        ],
        ["configured bound (TRACEMUX_MAX_QUEUE_BYTES)", f"{BOUND_BYTES / MB:.0f} MiB"],
        [
            "bytes in flight at the end (tracemux's estimate)",
            f"{result['queue_bytes'] / MB:.1f} MiB ({result['queue_size']:,} records)",
        ],
        [
            "exported / dropped (by reason)",
            f"{result['exported']:,} / {sum(dropped.values()):,} {dropped}",
        ],
    ]
    for item in result.get("allocated_per_value", []):
        rows.append(
            [
                f"one captured value of {item['length']:,} bytes: allocated (tracemalloc)",
                f"{item['allocated']:,} bytes",
            ]
        )
    md = [
        f"One process configured only through the environment (`TRACEMUX_MAX_QUEUE_BYTES="
        f"{BOUND}`, `OTEL_EXPORTER_OTLP_ENDPOINT` = a closed loopback port) records runs of"
        f" {SPANS_PER_RUN} spans with ~1 KB of inputs each; every export fails and is"
        " retried. RSS from `/proc/self/statm` every few thousand spans. Levelled off means:"
        f" peak <= bound + {SLACK_BYTES // MB} MiB, and the median RSS of the last quarter of"
        f" the run is less than {FLAT_BYTES // MB} MiB above that of the second quarter.",
        "",
        md_table(["", ""], rows),
    ]
    chart = line_chart(
        out_dir / "memory.png",
        {"tracemux RSS above baseline": (xs, ys)},
        title=f"RSS against spans recorded, destination down, bound {BOUND}",
        xlabel="spans recorded",
        ylabel="MiB above baseline",
        hlines=[
            (BOUND_BYTES / MB, f"bound {BOUND}"),
            ((BOUND_BYTES + SLACK_BYTES) / MB, f"bound + {SLACK_BYTES // MB} MiB"),
        ],
    )
    summary = [
        SummaryRow(
            f"RSS over {xs[-1]:,} spans, destination down",
            f"peak +{peak / MB:.1f} MiB, {growth_late / MB:+.1f} MiB last vs 2nd quarter",
            "-",
            "-",
            f"levels off at {BOUND_BYTES // MB} MiB + small constant",
            verdict(level),
        )
    ]
    return Section(TITLE, "\n".join(md), [chart], summary)
