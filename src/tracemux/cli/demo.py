"""``tracemux demo``: a simulated LLM flow, many times over, into the local store.

Each run is a small RAG flow as a flow engine would trace it: a retriever, a prompt, a
chat model with token usage, an output parser, and a web-search tool that fails now and
then. Runs execute concurrently under asyncio. The summary shows what tracemux promises:
every span recorded is exported or counted as dropped, the process gains exactly one
thread while tracing and none after shutdown, and recording costs microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import threading
import time
from dataclasses import dataclass, field

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tracemux.cli.common import add_db_argument, console, store_for
from tracemux.service import Span, TracingService

QUESTIONS = [
    "How do I reset my password?",
    "What is retrieval augmented generation?",
    "Summarise the Q3 incident report",
    "Which regions does the service run in?",
    "How are API keys rotated?",
]
USERS = [f"user-{i}" for i in range(1, 9)]


class ToolTimeout(RuntimeError):
    """The simulated web-search tool timed out."""


@dataclass
class DemoStats:
    """What the demo measured about tracemux while running."""

    overhead_ns: list[int] = field(default_factory=list)  # per span: open + close cost
    peak_threads: int = 0


async def _timed_span(stats: DemoStats, parent: Span, name: str, kind: str, inputs: object) -> Span:
    t0 = time.perf_counter_ns()
    span = parent.span(name, kind, inputs=inputs)
    span.__enter__()
    stats.overhead_ns.append(time.perf_counter_ns() - t0)
    return span


def _close(stats: DemoStats, span: Span, exc: BaseException | None = None) -> None:
    t0 = time.perf_counter_ns()
    span.__exit__(type(exc) if exc else None, exc, None)
    stats.overhead_ns[-1] += time.perf_counter_ns() - t0


async def one_run(
    svc: TracingService, i: int, rng: random.Random, stats: DemoStats, fail_rate: float
) -> None:
    question = rng.choice(QUESTIONS)
    user = rng.choice(USERS)
    async with svc.trace_run(
        "RAG flow",
        user_id=user,
        session_id=f"{user}-session-{i % 3}",
        project="demo",
        inputs={"question": question},
        tags=["demo", "rag"],
        metadata={"flow_version": 3, "openai_api_key": "sk-demo-not-a-real-key-1234"},
    ) as run:
        # retriever
        span = await _timed_span(stats, run, "Retriever", "retriever", {"query": question, "k": 3})
        await asyncio.sleep(rng.uniform(0.001, 0.004))
        docs = [
            {"id": f"doc-{rng.randrange(1000)}", "score": round(rng.random(), 3)} for _ in range(3)
        ]
        span.add_log("found 3 documents", level="info")
        span.set_outputs({"documents": docs})
        _close(stats, span)
        # prompt
        span = await _timed_span(
            stats, run, "Prompt", "prompt", {"question": question, "documents": len(docs)}
        )
        prompt = f"Answer using the documents.\nQuestion: {question}"
        span.set_outputs({"prompt": prompt})
        _close(stats, span)
        # a tool that fails now and then; the flow carries on without it
        span = await _timed_span(stats, run, "WebSearch", "tool", {"query": question})
        await asyncio.sleep(rng.uniform(0.0005, 0.002))
        if rng.random() < fail_rate:
            try:
                raise ToolTimeout("web search timed out after 2.0 s")
            except ToolTimeout as exc:
                _close(stats, span, exc)
        else:
            span.set_outputs({"results": ["https://example.org/a", "https://example.org/b"]})
            _close(stats, span)
        # chat model
        span = await _timed_span(
            stats, run, "ChatModel", "llm", {"messages": [{"role": "user", "content": prompt}]}
        )
        await asyncio.sleep(rng.uniform(0.002, 0.008))
        answer = f"Here is what the documents say about: {question.lower()}"
        input_tokens = 80 + rng.randrange(200)
        output_tokens = 20 + rng.randrange(120)
        span.set_usage(model="gpt-4o-mini", input_tokens=input_tokens, output_tokens=output_tokens)
        span.set_outputs({"role": "assistant", "content": answer})
        _close(stats, span)
        # parser
        span = await _timed_span(stats, run, "OutputParser", "parser", {"text": answer})
        span.set_outputs({"answer": answer})
        _close(stats, span)
        run.set_outputs({"answer": answer})
    stats.peak_threads = max(stats.peak_threads, threading.active_count())


async def run_demo(
    svc: TracingService,
    runs: int,
    concurrency: int,
    seed: int,
    fail_rate: float,
    progress: Progress | None,
) -> DemoStats:
    stats = DemoStats()
    rng = random.Random(seed)
    sem = asyncio.Semaphore(concurrency)
    task = progress.add_task("runs", total=runs) if progress else None

    async def guarded(i: int) -> None:
        async with sem:
            await one_run(svc, i, rng, stats, fail_rate)
        if progress is not None and task is not None:
            progress.advance(task)

    await asyncio.gather(*(guarded(i) for i in range(runs)))
    return stats


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run a simulated LLM flow many times into the local store")
    add_db_argument(p)
    p.add_argument("--runs", type=int, default=1000, help="how many flow runs (default 1000)")
    p.add_argument("--concurrency", type=int, default=50, help="runs at once (default 50)")
    p.add_argument(
        "--fail-rate", type=float, default=0.1, help="share of tool calls that fail (default 0.1)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=7,
        help="seed of the random choices: questions, users, timings and which tool calls "
        "fail (default 7)",
    )
    p.set_defaults(func=run)


def _pct(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def run(args: argparse.Namespace) -> int:
    out = console()
    if args.runs < 1 or args.concurrency < 1:
        out.print("[red]--runs and --concurrency must be at least 1[/]")
        return 2
    store = store_for(args)
    svc = TracingService([store])
    threads_before = threading.active_count()
    out.print(
        f"Recording {args.runs} runs ({min(args.runs, args.concurrency)} at a time) into "
        f"[bold]{escape(store.path)}[/]",
        soft_wrap=True,
    )
    t0 = time.perf_counter()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=not out.is_terminal,
        disable=not out.is_terminal,
    ) as progress:
        stats = asyncio.run(
            run_demo(svc, args.runs, args.concurrency, args.seed, args.fail_rate, progress)
        )
    recorded_wall = time.perf_counter() - t0
    svc.flush(30)
    snapshot = svc.stats()
    svc.shutdown(10)
    wall = time.perf_counter() - t0
    threads_after = threading.active_count()

    table = Table(title="tracemux demo", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    spans = snapshot["recorded"]
    table.add_row("runs", f"{args.runs:,}")
    table.add_row("spans recorded", f"{spans:,}")
    table.add_row("spans exported", f"{snapshot['exported']:,}")
    dropped = snapshot["dropped"]
    table.add_row(
        "spans dropped", f"{snapshot['dropped_total']:,}" + (f" {dropped}" if dropped else "")
    )
    table.add_row(
        "threads before / peak / after shutdown",
        f"{threads_before} / {stats.peak_threads} / {threads_after}",
    )
    table.add_row(
        "hot path per span: p50 / p99",
        f"{_pct(stats.overhead_ns, 0.5):.1f} µs / {_pct(stats.overhead_ns, 0.99):.1f} µs",
    )
    if stats.overhead_ns:
        table.add_row(
            "hot path per span: mean", f"{statistics.fmean(stats.overhead_ns) / 1000:.1f} µs"
        )
    table.add_row(
        "wall time (recording / with final flush)", f"{recorded_wall:.2f} s / {wall:.2f} s"
    )
    out.print(table)
    if snapshot["exported"]:
        same_as_default = store.path == str(store_for(argparse.Namespace(db=None)).path)
        db = "" if same_as_default else f" --db {store.path}"
        out.print("Look at the runs:", soft_wrap=True)
        for command in ("runs", "show RUN_ID", "ui"):
            out.print(f"  [bold]tracemux {command}{escape(db)}[/bold]", soft_wrap=True)
    ok = snapshot["exported"] + snapshot["dropped_total"] == spans
    if not ok:
        out.print("[red]Some spans were neither exported nor counted as dropped.[/]")
    return 0 if ok else 1
