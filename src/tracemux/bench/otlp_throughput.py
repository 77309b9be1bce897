"""OTLP export throughput and the cost of a new destination, in one process.

    python -m tracemux.bench.otlp_throughput [--spans N] [--new-destinations K]

1. Exporter throughput: realistic spans (inputs, outputs, metadata; every third an LLM
   span with model and usage) encoded as OTLP protobuf with the Langfuse mapping, gzip'ed
   and POSTed with the one shared HTTP client to a loopback receiver, on one thread running
   one asyncio loop (as the export thread does): sequential batches of 512, and four
   destinations exporting concurrently. The receiver (:class:`~tracemux.bench.common.Receiver`)
   runs in another process, so it does not compete with the exporter for the GIL.
2. The whole pipeline: spans recorded through ``TracingService`` on the main thread while
   the export thread sends them; throughput from the first record to the end of ``flush``.
3. The first span to a new destination (a tenant with new keys) once the shared client
   exists: ``Destination.open()`` plus its first export, awaited on the loop; beside it the
   same export to a destination already open, and the construction of a new
   ``langfuse.Langfuse`` client with new keys (what a per-tenant SDK client costs).

Targets: >= 20,000 spans/s on one export thread; <= 1 ms for the first span to a new
destination.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from typing import Any

from tracemux.bench.common import Receiver


def make_spans(n: int) -> list[Any]:
    """``n`` finished span records, in runs of 10 (a root and 9 children)."""
    from tracemux.capture import Capturer
    from tracemux.model import RunInfo, SpanRecord, new_run_id, new_span_id

    cap = Capturer(64 * 1024)
    inputs = cap.value({"question": "How do I rotate my API keys?", "k": 4, "filters": ["docs"]})
    outputs = cap.value({"answer": "Open the settings page and ..." * 4, "sources": [1, 2, 3]})
    meta = cap.value({"component": "retriever", "version": "1.2.0"})
    spans = []
    run = None
    root_id = 0
    for i in range(n):
        if i % 10 == 0:
            run = RunInfo(
                new_run_id(),
                "support-flow",
                (),
                user_id="user-42",
                session_id="sess-7",
                tags=("prod",),
                metadata=cap.value({"tenant": "acme"}),
            )
            root_id = new_span_id()
        s = SpanRecord()
        s.run = run  # type: ignore[assignment]
        s.is_root = i % 10 == 9
        s.span_id = root_id if s.is_root else new_span_id()
        s.parent_id = None if s.is_root else root_id
        s.name = "support-flow" if s.is_root else f"step-{i % 10}"
        s.kind = "llm" if i % 3 == 0 else "chain"
        s.start_ns = time.time_ns()
        s.end_ns = s.start_ns + 1_000_000
        s.status = "ok"
        s.inputs, s.outputs, s.metadata = inputs, outputs, meta
        s.logs = None
        s.usage = {"input_tokens": 120, "output_tokens": 40, "total_tokens": 160}
        s.model = "gpt-4o-mini" if s.kind == "llm" else None
        s.error = None
        s.nbytes = 600
        s.refs = 0
        spans.append(s)
    return spans


def exporter_throughput(url: str, n: int) -> dict[str, float]:
    """Spans/s of encode + gzip + POST on one thread with one asyncio loop."""
    from tracemux.destinations import Langfuse
    from tracemux.destinations.http import close_shared_client

    spans = make_spans(n)
    batches = [spans[i : i + 512] for i in range(0, n, 512)]
    result: dict[str, float] = {}

    async def main() -> None:
        dests = [
            Langfuse(public_key=f"pk-lf-bench-{i}", secret_key=f"sk-lf-bench-{i}", host=url)
            for i in range(4)
        ]
        exporters = [d.open() for d in dests]
        await exporters[0].export(batches[0])  # warm up: client, connection
        t0 = time.perf_counter()
        for batch in batches:
            await exporters[0].export(batch)
        result["sequential"] = n / (time.perf_counter() - t0)

        async def lane(exporter: Any, part: list[list[Any]]) -> None:
            for batch in part:
                await exporter.export(batch)

        t0 = time.perf_counter()
        await asyncio.gather(*(lane(e, batches[i::4]) for i, e in enumerate(exporters)))
        result["four_destinations"] = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for batch in batches:
            exporters[0].encode(batch)
        result["encode_only"] = n / (time.perf_counter() - t0)
        await close_shared_client()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="bench-export")
    thread.start()
    thread.join()
    return result


def pipeline_throughput(url: str, n: int) -> dict[str, float]:
    from tracemux import TracingService
    from tracemux.destinations import Langfuse
    from tracemux.pipeline.worker import PipelineSettings

    svc = TracingService(
        [Langfuse(public_key="pk-lf-pipeline", secret_key="sk-lf-pipeline", host=url)],
        pipeline=PipelineSettings(max_queue_spans=2 * n, max_queue_bytes=1024**3),
    )
    inputs = {"question": "How do I rotate my API keys?", "k": 4}
    with svc.trace_run("warm-up"):
        pass
    svc.flush(10)
    before = svc.stats()
    exported_before = before["exported"]
    t0 = time.perf_counter()
    for _ in range(n // 10):
        with svc.trace_run("support-flow", user_id="user-42", inputs=inputs) as run:
            for k in range(9):
                with run.span(f"step-{k}", kind="llm" if k % 3 == 0 else "chain") as s:
                    s.set_outputs({"answer": "Open the settings page"})
    recorded = time.perf_counter() - t0
    assert svc.flush(120)
    total = time.perf_counter() - t0
    stats = svc.stats()
    exported = stats["exported"] - exported_before
    dropped = stats["dropped_total"] - before["dropped_total"]
    svc.shutdown(10)
    return {
        "spans": float(exported),
        "dropped": float(dropped),
        "record_s": recorded,
        "total_s": total,
        "throughput": exported / total,
    }


def first_span_cost(url: str, k: int) -> dict[str, float]:
    """Seconds for open() + first export to a new destination, once the client exists."""
    from tracemux.destinations import Langfuse
    from tracemux.destinations.http import close_shared_client

    span = make_spans(10)[-1:]
    out: dict[str, list[float]] = {
        "open": [],
        "first_export": [],
        "warm_export": [],
        "marginal": [],
        "first_cpu": [],
    }

    async def main() -> None:
        warm = Langfuse(public_key="pk-lf-warm", secret_key="sk-lf-warm", host=url).open()
        for _ in range(20):
            await warm.export(span)
        for i in range(k):
            dest = Langfuse(public_key=f"pk-lf-tenant-{i}", secret_key=f"sk-lf-{i}", host=url)
            c0 = time.thread_time()
            t0 = time.perf_counter()
            exporter = dest.open()
            t1 = time.perf_counter()
            await exporter.export(span)
            t2 = time.perf_counter()
            c1 = time.thread_time()
            await warm.export(span)
            t3 = time.perf_counter()
            out["open"].append(t1 - t0)
            out["first_export"].append(t2 - t0)
            out["warm_export"].append(t3 - t2)
            out["marginal"].append(max(0.0, (t2 - t0) - (t3 - t2)))
            out["first_cpu"].append(c1 - c0)
        await close_shared_client()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="bench-export")
    thread.start()
    thread.join()
    return {
        f"{name}_{stat}": fn(values)
        for name, values in out.items()
        for stat, fn in (
            ("median", statistics.median),
            ("p95", lambda v: sorted(v)[int(len(v) * 0.95)]),
        )
    }


def langfuse_client_cost(url: str, k: int) -> float | None:
    """Median seconds to construct a new ``langfuse.Langfuse`` client with new keys."""
    try:
        from langfuse import Langfuse as LangfuseClient
    except ImportError:
        return None
    times, clients = [], []
    for i in range(k):
        t0 = time.perf_counter()
        client = LangfuseClient(
            public_key=f"pk-lf-sdk-{i}-{os.getpid()}", secret_key=f"sk-lf-sdk-{i}", base_url=url
        )
        times.append(time.perf_counter() - t0)
        clients.append(client)
    for client in clients:
        client.shutdown()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--new-destinations", type=int, default=200)
    parser.add_argument("--langfuse-clients", type=int, default=5)
    args = parser.parse_args()
    receiver = Receiver().start()
    url = receiver.url
    try:
        ex = exporter_throughput(url, args.spans)
        pipe = pipeline_throughput(url, args.spans)
        first = first_span_cost(url, args.new_destinations)
        sdk = langfuse_client_cost(url, args.langfuse_clients)
    finally:
        receiver.stop()

    print(f"OTLP export to a loopback receiver, {args.spans:,} spans, one export thread")
    print(f"  encode (protobuf + gzip) only       {ex['encode_only']:>10,.0f} spans/s")
    print(f"  encode + POST, one destination      {ex['sequential']:>10,.0f} spans/s")
    print(f"  encode + POST, four destinations    {ex['four_destinations']:>10,.0f} spans/s")
    print(
        f"  whole pipeline (record + export)    {pipe['throughput']:>10,.0f} spans/s"
        f"  ({pipe['spans']:,.0f} exported, {pipe['dropped']:,.0f} dropped, "
        f"recording took {pipe['record_s']:.2f} s of {pipe['total_s']:.2f} s)"
    )
    target = "met" if min(ex["sequential"], pipe["throughput"]) >= 20_000 else "NOT met"
    print(f"  target >= 20,000 spans/s: {target}")
    print(f"First span to a new destination ({args.new_destinations} new tenants, warm client)")
    rows = [
        ("open() (the destination's setup)", "open"),
        ("marginal cost of the new destination", "marginal"),
        ("open() + first export, wall", "first_export"),
        ("open() + first export, thread CPU", "first_cpu"),
        ("an export to an open destination", "warm_export"),
    ]
    for title, key in rows:
        print(
            f"  {title:<40} {first[key + '_median'] * 1e3:>8.3f} ms median"
            f"  (p95 {first[key + '_p95'] * 1e3:.3f} ms)"
        )
    print(
        "  (the wall time of any export is the loopback HTTP round trip, mostly httpx's"
        " own CPU time per request)"
    )
    if sdk is not None:
        print(f"  new langfuse.Langfuse client             {sdk * 1e3:>8.1f} ms median")
        ratio_open = sdk / first["open_median"]
        ratio_first = sdk / first["first_export_median"]
        print(
            f"  SDK client / tracemux: {ratio_open:,.0f}x the setup, "
            f"{ratio_first:,.0f}x the first span's whole delivery"
        )
    else:
        print("  langfuse not installed: SDK client creation not measured")
    marginal = first["open_median"] + first["marginal_median"]
    print(
        f"  target <= 1 ms for a new destination: "
        f"{'met' if marginal <= 0.001 else 'NOT met'} ({marginal * 1e3:.3f} ms marginal); "
        f"whole first-span delivery {first['first_export_median'] * 1e3:.2f} ms "
        f"({'met' if first['first_export_median'] <= 0.001 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
