"""Hot-path cost of one span (open, small inputs, outputs, close): tracemux against the
OpenTelemetry SDK with a BatchSpanProcessor to a discarding exporter, in one process.

    .venv/bin/python bench/hotpath.py [--spans N] [--repeats R]

Prints the median, min and max microseconds per span of each, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def _measure(
    fn: Callable[[int], None], drain: Callable[[], None], n: int, repeats: int
) -> list[float]:
    """Time ``fn(n)`` only; the export side drains between repeats, outside the timing."""
    fn(min(n, 2000))  # warm up
    drain()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn(n)
        out.append((time.perf_counter_ns() - t0) / n / 1000)
        drain()
    return out


Case = tuple[Callable[[int], None], Callable[[], None], Callable[[], None]]


def tracemux_case() -> Case:
    from tracemux import TracingService
    from tracemux.destinations import Discard

    svc = TracingService([Discard("bench")])
    inputs = {"question": "What is RAG?", "k": 3}
    outputs = {"answer": "Retrieval augmented generation.", "docs": 3}
    run = svc.trace_run("bench run")

    def loop(n: int) -> None:
        span = run.span
        for _ in range(n):
            with span("step", kind="tool", inputs=inputs) as s:
                s.set_outputs(outputs)

    return loop, lambda: svc.flush(60), lambda: svc.shutdown(10)


def otel_case() -> Case:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DiscardExporter(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardExporter()))
    tracer = provider.get_tracer("bench")

    def loop(n: int) -> None:
        start = tracer.start_as_current_span
        for _ in range(n):
            with start("step") as s:
                s.set_attribute("input.value", '{"question": "What is RAG?", "k": 3}')
                s.set_attribute("output.value", '{"answer": "Retrieval augmented generation."}')

    return loop, provider.force_flush, provider.shutdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for name, make in (("tracemux", tracemux_case), ("otel-batch", otel_case)):
        loop, drain, close = make()
        results[name] = _measure(loop, drain, args.spans, args.repeats)
        close()
    for name, xs in results.items():
        print(f"{name:12s} median {statistics.median(xs):6.2f} µs/span "
              f"(min {min(xs):.2f}, max {max(xs):.2f}, {args.repeats} x {args.spans} spans)")
    ratio = statistics.median(results["tracemux"]) / statistics.median(results["otel-batch"])
    print(f"ratio tracemux / otel-batch: {ratio:.3f}")


if __name__ == "__main__":
    main()
