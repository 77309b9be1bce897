"""Scenario 3, sustained throughput: spans recorded and delivered per second.

Producers (one, then four threads) record runs of ten spans (a root and nine children, small
inputs and outputs) as fast as they can. Sustained throughput is the number of spans
*delivered* divided by the time from the first span to the end of the final flush, so a
pipeline that records fast but cannot deliver, or drops, gets no credit for it.

Destinations, default settings: :class:`~tracemux.destinations.Discard`, the
:class:`~tracemux.destinations.SQLiteStore` (a temporary file), and
:class:`~tracemux.destinations.OTLP` to a loopback receiver in another process (reads and
discards each body, answers 200). Beside them, in the same process and the same rounds,
the OpenTelemetry SDK's ``BatchSpanProcessor`` (defaults) to a discarding exporter.

Drops are reported. A second pass paces the producers at each target rate (100,000 spans/s
to Discard, 50,000 to SQLite, 20,000 to OTLP) for a few seconds: no drops expected there.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracemux.bench.common import (
    INPUTS,
    NOT_INSTALLED,
    OUTPUTS,
    Options,
    Receiver,
    summarize,
)
from tracemux.bench.report import (
    Section,
    SummaryRow,
    bar_chart,
    fmt_int,
    fmt_range,
    md_table,
    verdict,
)

TITLE = "3. Sustained throughput"
SPANS_PER_RUN = 10

#: destination -> target spans/s (issue #6)
TARGETS = {"discard": 100_000, "sqlite": 50_000, "otlp": 20_000}
OTEL_ANCHOR = 26_000
LABELS = {
    "discard": "tracemux -> Discard",
    "sqlite": "tracemux -> SQLite store",
    "otlp": "tracemux -> OTLP (loopback receiver)",
    "otel": "OTel SDK BatchSpanProcessor -> discard",
}


def _pace(rate_per_producer: float | None) -> Callable[[float, int], None]:
    if not rate_per_producer:
        return lambda t0, done: None
    sleep, now = time.sleep, time.perf_counter

    def pace(t0: float, done: int) -> None:
        delay = t0 + done / rate_per_producer - now()
        if delay > 0:
            sleep(delay)

    return pace


def _produce(
    record_run: Callable[[], None], producers: int, spans: int, rate: float | None
) -> tuple[float, float]:
    """Run ``producers`` threads recording ``spans`` in all; returns (t0, recording end)."""
    runs_each = max(1, spans // SPANS_PER_RUN // producers)
    barrier = threading.Barrier(producers + 1)
    pace = _pace(rate / producers if rate else None)
    start = [0.0]

    def work() -> None:
        barrier.wait()
        t0 = start[0] or time.perf_counter()
        for i in range(runs_each):
            record_run()
            pace(t0, (i + 1) * SPANS_PER_RUN)

    threads = [threading.Thread(target=work, name=f"bench-producer-{k}") for k in range(producers)]
    for t in threads:
        t.start()
    start[0] = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    return start[0], time.perf_counter()


def _thread_cpu_s(native_id: int | None) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc (Linux)."""
    if native_id is None:
        return 0.0
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _export_thread_id() -> int | None:
    from tracemux.pipeline.worker import shared_worker

    thread = shared_worker()._thread
    return thread.native_id if thread is not None else None


def _tracemux_measure(svc: Any, producers: int, spans: int, rate: float | None) -> dict[str, Any]:
    def record_run() -> None:
        with svc.trace_run("flow", inputs=INPUTS) as run:
            span = run.span
            for _ in range(SPANS_PER_RUN - 1):
                with span("step", kind="tool", inputs=INPUTS) as s:
                    s.set_outputs(OUTPUTS)

    before = svc.stats()
    tid = _export_thread_id()
    cpu0, export0 = time.process_time(), _thread_cpu_s(tid)
    t0, t_rec = _produce(record_run, producers, spans, rate)
    flushed = svc.flush(300)
    t1 = time.perf_counter()
    cpu, export_cpu = time.process_time() - cpu0, _thread_cpu_s(tid) - export0
    after = svc.stats()
    delivered = after["exported"] - before["exported"]
    recorded = after["recorded"] - before["recorded"]
    dropped = {
        k: v - before["dropped"].get(k, 0)
        for k, v in after["dropped"].items()
        if v - before["dropped"].get(k, 0)
    }
    return {
        "recorded": recorded,
        "delivered": delivered,
        "dropped": sum(dropped.values()),
        "dropped_by_reason": dropped,
        "seconds": t1 - t0,
        "record_seconds": t_rec - t0,
        "throughput": delivered / (t1 - t0),
        "record_rate": recorded / (t_rec - t0),
        "flushed": flushed,
        "cpu_us_per_span": cpu / max(1, recorded) * 1e6,
        "export_cpu_us_per_span": export_cpu / max(1, recorded) * 1e6,
    }


def _otel() -> tuple[Callable[[int, int, float | None], dict[str, Any]], Callable[[], None]]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class CountingExporter(SpanExporter):
        def __init__(self) -> None:
            self.count = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.count += len(spans)
            return SpanExportResult.SUCCESS

    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    dumps = json.dumps
    recorded = [0]
    lock = threading.Lock()

    def record_run() -> None:
        start = tracer.start_as_current_span
        with start("flow") as root:
            root.set_attribute("input.value", dumps(INPUTS))
            for _ in range(SPANS_PER_RUN - 1):
                with start("step") as s:
                    s.set_attribute("input.value", dumps(INPUTS))
                    s.set_attribute("output.value", dumps(OUTPUTS))
        with lock:
            recorded[0] += SPANS_PER_RUN

    def measure(producers: int, spans: int, rate: float | None) -> dict[str, Any]:
        before_exp, before_rec = exporter.count, recorded[0]
        cpu0 = time.process_time()
        t0, t_rec = _produce(record_run, producers, spans, rate)
        flushed = provider.force_flush(300_000)
        t1 = time.perf_counter()
        cpu = time.process_time() - cpu0
        delivered = exporter.count - before_exp
        rec = recorded[0] - before_rec
        return {
            "recorded": rec,
            "delivered": delivered,
            "dropped": rec - delivered,
            "dropped_by_reason": {},
            "seconds": t1 - t0,
            "record_seconds": t_rec - t0,
            "throughput": delivered / (t1 - t0),
            "record_rate": rec / (t_rec - t0),
            "flushed": flushed,
            "cpu_us_per_span": cpu / max(1, rec) * 1e6,
            "export_cpu_us_per_span": None,
        }

    return measure, provider.shutdown


def run(part: str, opts: Options) -> dict[str, Any]:
    """``main``: every pipeline; ``discard``: tracemux -> Discard alone (the export
    thread's own work, free and paced), e.g. ``python -m tracemux.bench.runner throughput
    discard '{}' out.json``."""
    if part not in ("main", "discard"):
        raise ValueError(f"unknown part {part!r}")
    from tracemux import TracingService
    from tracemux.destinations import OTLP, Discard, SQLiteStore

    spans = int(opts.pick(100_000, 10_000))
    repeats = int(opts.pick(3, 1))
    paced_seconds = float(opts.pick(2.0, 0.5))
    producer_counts = (1, 4)
    out: dict[str, Any] = {"spans": spans, "repeats": repeats, "paced_seconds": paced_seconds}
    tmp = tempfile.TemporaryDirectory(prefix="tracemux-bench-tp-")
    receiver = Receiver().start()
    try:
        services = {
            "discard": TracingService([Discard("throughput")]),
            "sqlite": TracingService([SQLiteStore(Path(tmp.name) / "bench.db")]),
            "otlp": TracingService([OTLP(endpoint=receiver.url)]),
        }
        measures: dict[str, Callable[[int, int, float | None], dict[str, Any]]] = {
            name: (lambda p, n, r, svc=svc: _tracemux_measure(svc, p, n, r))
            for name, svc in services.items()
        }
        closers = []
        try:
            otel_measure, otel_close = _otel()
            measures["otel"] = otel_measure
            closers.append(otel_close)
        except ImportError as exc:
            out["otel_missing"] = f"{NOT_INSTALLED} (opentelemetry-sdk: {exc})"
        if part == "discard":
            measures = {"discard": measures["discard"]}
            out["otel_missing"] = "(not measured: discard only)"
        for measure in measures.values():  # warm up: open lanes, files, connections
            measure(1, 2_000, None)
        free: dict[str, list[dict[str, Any]]] = {
            f"{name}/{p}": [] for name in measures for p in producer_counts
        }
        keys = list(free)
        for r in range(repeats):
            k = r % len(keys)
            for key in keys[k:] + keys[:k]:
                name, p = key.split("/")
                free[key].append(measures[name](int(p), spans, None))
        out["free"] = free
        paced: dict[str, dict[str, Any]] = {}
        for name, rate in TARGETS.items():
            if name not in measures:
                continue
            for p in producer_counts:
                paced[f"{name}/{p}"] = measures[name](p, int(rate * paced_seconds), rate)
        out["paced"] = paced
        for svc in services.values():
            svc.shutdown(30)
        for close in closers:
            close()
    finally:
        out["receiver"] = receiver.stop()
        tmp.cleanup()
    return out


def render(result: dict[str, Any], out_dir: Path) -> Section:
    free = result.get("free", {})
    rows, labels, stats, highlight = [], [], [], []
    figures: dict[str, dict[str, Any]] = {}
    for key, runs in free.items():
        name, p = key.split("/")
        tp = summarize([x["throughput"] for x in runs])
        rec = summarize([x["record_rate"] for x in runs])
        drops = summarize([x["dropped"] for x in runs])
        cpu = summarize([x["cpu_us_per_span"] for x in runs])
        export_cpu = [x["export_cpu_us_per_span"] for x in runs]
        exp = summarize(export_cpu) if None not in export_cpu else None
        figures[key] = tp
        reasons: dict[str, int] = {}
        for x in runs:
            for reason, n in x["dropped_by_reason"].items():
                reasons[reason] = reasons.get(reason, 0) + n
        target = TARGETS.get(name)
        rows.append(
            [
                LABELS[name],
                p,
                fmt_int(tp),
                fmt_int(rec),
                fmt_range(cpu, "{:.1f}"),
                fmt_range(exp, "{:.1f}") if exp else "-",
                fmt_int(drops) + (f" ({', '.join(sorted(reasons))})" if reasons else ""),
                f">= {target:,}" if target else f"anchor ~{OTEL_ANCHOR:,}",
                verdict(tp["median"] >= target) if target else "-",
            ]
        )
        labels.append(f"{LABELS[name]}, {p} producer{'s' if p != '1' else ''}")
        stats.append(tp)
        highlight.append(name != "otel")
    paced_rows = []
    for key, x in result.get("paced", {}).items():
        name, p = key.split("/")
        paced_rows.append(
            [
                LABELS[name],
                p,
                f"{TARGETS[name]:,}",
                f"{x['record_rate']:,.0f}",
                f"{x['throughput']:,.0f}",
                f"{x['dropped']:,}"
                + (
                    f" ({', '.join(sorted(x['dropped_by_reason']))})"
                    if x["dropped_by_reason"]
                    else ""
                ),
                verdict(x["dropped"] == 0),
            ]
        )
    md = [
        f"Runs of {SPANS_PER_RUN} spans recorded by 1 or 4 producer threads as fast as they go,"
        f" {result.get('spans', 0):,} spans per measurement, {result.get('repeats', 0)}"
        " repeats, interleaved. **Sustained throughput = spans delivered / (time from the"
        " first span to the end of the final flush).** The recording rate is spans recorded"
        " per second of producing alone. CPU µs per span: the whole process's CPU time"
        " (recording and export) and the export thread's alone (from /proc), per span"
        " recorded. Default pipeline settings (queue 100,000 spans / 64 MB; a destination"
        " buffers at most 3/4 of that).",
        "",
        md_table(
            [
                "pipeline",
                "producers",
                "sustained spans/s",
                "recording spans/s",
                "process CPU µs/span",
                "export thread CPU µs/span",
                "dropped",
                "target",
                "met",
            ],
            rows,
        ),
        "",
        f"Paced at the target rate for {result.get('paced_seconds', 0):g} s (one run each):"
        " drops at these rates with default settings.",
        "",
        md_table(
            [
                "pipeline",
                "producers",
                "target spans/s",
                "recorded spans/s",
                "sustained spans/s",
                "dropped",
                "no drops",
            ],
            paced_rows,
        ),
    ]
    if result.get("otel_missing"):
        md += ["", f"- OpenTelemetry SDK: {result['otel_missing']}"]
    rc = result.get("receiver")
    if rc:
        md += [
            "",
            f"The loopback receiver answered {rc.get('requests', 0):,} requests"
            f" ({rc.get('bytes', 0) / 1e6:,.1f} MB of gzip bodies).",
        ]
    chart = bar_chart(
        out_dir / "throughput.png",
        labels,
        stats,
        title="Sustained throughput: spans delivered per second (median, min-max)",
        xlabel="spans/s",
        highlight=highlight,
    )
    summary = []
    otel = figures.get("otel/1")
    for name, target in TARGETS.items():
        for p in ("1", "4"):
            tp = figures.get(f"{name}/{p}")
            if tp is None:
                continue
            anchor, ratio = "-", "-"
            if name == "discard" and otel is not None:
                o = figures.get(f"otel/{p}")
                if o:
                    anchor = f"OTel batch {o['median']:,.0f}/s"
                    ratio = f"{tp['median'] / o['median']:.1f}x"
            drops = sum(x["dropped"] for x in free[f"{name}/{p}"])
            summary.append(
                SummaryRow(
                    f"Sustained spans/s, {LABELS[name].split('-> ')[1]}, {p} producer"
                    + ("s" if p != "1" else ""),
                    f"{tp['median']:,.0f}" + (f" ({drops:,} dropped)" if drops else ""),
                    anchor,
                    ratio,
                    f">= {target:,}",
                    verdict(tp["median"] >= target),
                )
            )
    paced_drops = sum(x["dropped"] for x in result.get("paced", {}).values())
    if result.get("paced"):
        summary.append(
            SummaryRow(
                "Drops at the target rates (paced), default settings",
                f"{paced_drops:,}",
                "-",
                "-",
                "none",
                verdict(paced_drops == 0),
            )
        )
    return Section(TITLE, "\n".join(md), [chart], summary)
