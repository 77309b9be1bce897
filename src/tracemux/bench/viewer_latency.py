"""How fast the viewer answers on a big store: builds a store of 1,000,000 spans (by
default) and times the API requests behind each page.

    python -m tracemux.bench.viewer_latency [--spans 1000000] [--db PATH] [--reuse]

The store is written through the store's own write path (``SQLiteStore.import_runs``:
the same multi-row statements, full-text index and dashboard figures as the export
thread), 10 spans per run over 30 days: 20 flows, 2,000 sessions, an LLM call per run
with tokens, a tool that fails in 1 run of 25. Then a viewer on 127.0.0.1 answers each
request 7 times; the table shows the median and the slowest, in milliseconds. Figures,
not assertions: the machine may be busy.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import urllib.request
from pathlib import Path

from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import StoredRun, StoredSpan
from tracemux.ui import UIServer

SPANS_PER_RUN = 10
DAY_NS = 86_400 * 10**9
WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
]  # fmt: skip
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-latest")
TOOL_ERROR = {"type": "ToolError", "message": "tool failed", "traceback": ""}
RARE = "quasarite"  # in one tool output only


def build(path: Path, spans: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    store = SQLiteStore(path, max_runs=10**7, max_age_days=3650)
    runs_total = spans // SPANS_PER_RUN
    now = time.time_ns()
    started = time.perf_counter()
    batch_runs: list[StoredRun] = []
    batch_spans: list[StoredSpan] = []
    for k in range(runs_total):
        run_id = f"run-{k:08d}"
        start = now - int((runs_total - k) / runs_total * 30 * DAY_NS)
        flow = f"flow-{k % 20:02d}"
        failed_tool = k % 25 == 0
        text = " ".join(rnd.choices(WORDS, k=12))
        root = f"{k:08x}00000000"
        offset = start
        run_spans = [
            StoredSpan(run_id, root, None, flow, "chain", start, start, "ok",
                       inputs={"question": text}, outputs={"answer": text[::-1]})
        ]  # fmt: skip
        for i in range(1, SPANS_PER_RUN):
            took = rnd.randint(1, 400) * 1_000_000
            kind = ("retriever", "prompt", "llm", "tool", "parser")[i % 5]
            bad = failed_tool and kind == "tool"
            outputs = {"result": text if k != runs_total // 2 or kind != "tool" else RARE}
            llm = kind == "llm"
            run_spans.append(
                StoredSpan(
                    run_id, f"{k:08x}{i:08x}", root, f"{kind}-{i}", kind, offset, offset + took,
                    "error" if bad else "ok", inputs={"q": text}, outputs=outputs,
                    usage={"input_tokens": 300, "output_tokens": 120} if llm else None,
                    model=MODELS[k % 3] if llm else None, error=TOOL_ERROR if bad else None,
                )
            )  # fmt: skip
            offset += took
        end = offset
        run_spans[0] = StoredSpan(**{**run_spans[0].__dict__, "end_ns": end})
        llm_calls = sum(s.kind == "llm" for s in run_spans)
        batch_runs.append(
            StoredRun(
                run_id=run_id, trace_id=run_id, name=flow, user_id=f"user-{k % 300}",
                session_id=f"session-{k % 2000:04d}", project="bench", tags=["bench"],
                metadata=None, start_ns=start, end_ns=end,
                status="partial" if failed_tool else "ok", span_count=SPANS_PER_RUN,
                error_count=int(failed_tool) * sum(s.kind == "tool" for s in run_spans),
                input_tokens=300 * llm_calls, output_tokens=120 * llm_calls,
                inputs={"question": text}, outputs={"answer": text[::-1]},
            )
        )  # fmt: skip
        batch_spans += run_spans
        if len(batch_runs) == 200:  # 2,000 spans: the export thread's batch size
            store.import_runs(batch_runs, batch_spans)
            batch_runs, batch_spans = [], []
        if k % 10_000 == 0 and k:
            rate = k * SPANS_PER_RUN / (time.perf_counter() - started)
            print(f"  {k * SPANS_PER_RUN:,} spans written ({rate:,.0f} spans/s)", flush=True)
    if batch_runs:
        store.import_runs(batch_runs, batch_spans)
    took = time.perf_counter() - started
    total = runs_total * SPANS_PER_RUN
    size = path.stat().st_size / 2**20
    print(f"built {total:,} spans in {took:.0f} s ({total / took:,.0f} spans/s, {size:,.0f} MiB)")


def timed(url: str, repeat: int = 7) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(repeat):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as resp:
            size = len(resp.read())
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times), size


def measure(path: Path) -> None:
    store = SQLiteStore(path)
    newest = store.runs(1)[0]
    deep = store.runs_page(50, descending=False).runs[0]  # the oldest run
    deep_cursor = store.runs_page(50, descending=False).next
    with UIServer(store, port=0) as server:
        base = server.url + "api/"
        requests = {
            "list: first page": "runs?limit=50",
            "list: a page deep in the oldest runs": f"runs?limit=50&order=asc&after={deep_cursor}",
            "list: sorted by duration": "runs?limit=50&sort=duration",
            "list: has errors": "runs?limit=50&status=error",
            "search: a common word": "runs?limit=50&search=tango",
            f"search: a word in one tool output ({RARE})": f"runs?limit=50&search={RARE}",
            "run: spans (waterfall)": f"runs/{newest.run_id}/spans",
            "sessions list": "sessions?limit=100",
            "session page": f"sessions/{newest.session_id}",
            "dashboard: 24 hours": "dashboard?range=24h",
            "dashboard: 30 days": "dashboard?range=30d",
        }
        print(f"\n{'request':<48} {'median':>8} {'max':>8} {'bytes':>9}")
        for label, path_q in requests.items():
            median, worst, size = timed(base + path_q)
            print(f"{label:<48} {median:>7.1f}  {worst:>7.1f}  {size:>9,}")
    print(f"\n(oldest run {deep.run_id}; times in ms over 7 requests each)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spans", type=int, default=1_000_000)
    p.add_argument("--db", type=Path, default=Path("/tmp/tracemux-viewer-bench.db"))
    p.add_argument("--reuse", action="store_true", help="measure an existing store")
    args = p.parse_args()
    if not args.reuse:
        for suffix in ("", "-wal", "-shm"):
            Path(str(args.db) + suffix).unlink(missing_ok=True)
        build(args.db, args.spans)
    measure(args.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
