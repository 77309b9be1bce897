"""Scenario 1, the hot path: what recording one span costs the caller.

Each case records spans in a loop: open, small inputs, outputs, close (a "span"), or an LLM
call with model and token usage (an "LLM span"). Every case in this process is measured in
the same rounds, interleaved (see :func:`~tracemux.bench.common.measure_round_robin`);
the export side of each is drained between repeats, outside the timing.

Cases: the bare floor (a dict with two ``time_ns()`` put on a ``queue.SimpleQueue``);
tracemux to :class:`~tracemux.destinations.Discard`; the OpenTelemetry SDK with a batch and
with a simple processor to a discarding exporter (attributes JSON-encoded in the loop, as
an instrumentation does); langfuse 5 span and generation (pointed at a closed loopback port,
tracing enabled); LangSmith ``RunTree`` create + end + post (closed port, background
batching). langfuse 2 runs in its side venv (another process): its figures are compared
through the floor measured in that process.

With ``--profile`` the tracemux loops also run under cProfile: ``hotpath.prof`` and the
top 20 functions in ``hotpath_profile.txt``.
"""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import queue
import time
from pathlib import Path
from typing import Any

from tracemux.bench.common import (
    INPUTS,
    MESSAGES,
    MODEL,
    NOT_INSTALLED,
    OUTPUTS,
    REPLY,
    USAGE_IN,
    USAGE_OUT,
    Case,
    Options,
    closed_url,
    dist_version,
    measure_round_robin,
    paired_ratios,
    quiet_loggers,
    run_child,
    run_langfuse2,
    span_loops,
    summarize,
)
from tracemux.bench.report import (
    Section,
    SummaryRow,
    bar_chart,
    fmt_range,
    fmt_ratio,
    md_table,
    verdict,
)

TITLE = "1. Hot path: µs per span"

#: targets from issue #6
TARGET_US = 3.0
TARGET_VS_OTEL_BATCH = 0.2
TARGET_VS_LANGFUSE5 = 0.05

#: case name -> label in the report
LABELS: dict[str, str] = {
    "floor": "bare floor (dict + 2 time_ns() on a SimpleQueue)",
    "tracemux.span": "tracemux span",
    "tracemux.llm": "tracemux LLM span (usage)",
    "otel_batch.span": "OpenTelemetry SDK + BatchSpanProcessor span",
    "otel_batch.llm": "OpenTelemetry SDK + BatchSpanProcessor LLM span",
    "otel_simple.span": "OpenTelemetry SDK + SimpleSpanProcessor span",
    "otel_simple.llm": "OpenTelemetry SDK + SimpleSpanProcessor LLM span",
    "langfuse5.span": "langfuse 5 span",
    "langfuse5.llm": "langfuse 5 generation",
    "langsmith.span": "LangSmith RunTree create + end + post",
    "langsmith.llm": "LangSmith RunTree (llm, usage) create + end + post",
    "langfuse2.floor": "bare floor, in the langfuse 2 process",
    "langfuse2.span": "langfuse 2 span",
    "langfuse2.llm": "langfuse 2 generation",
}


# -- cases -------------------------------------------------------------------------------------


def floor_cases() -> list[Case]:
    """The least any recorder can do: build a record, hand it to another thread's queue."""
    holder = [queue.SimpleQueue()]  # type: ignore[var-annotated]
    tn = time.time_ns

    def loop(n: int) -> None:
        put = holder[0].put
        for _ in range(n):
            put({"start": tn(), "end": tn()})

    def drain() -> None:
        holder[0] = queue.SimpleQueue()

    return [Case("floor", loop, drain, max_n=2_000_000)]


def tracemux_cases() -> list[Case]:
    from tracemux import TracingService
    from tracemux.destinations import Discard

    svc = TracingService([Discard("bench")])
    run = svc.trace_run("bench run")
    span_loop, llm_loop = span_loops(run)

    def drain() -> None:
        svc.flush(60)

    return [
        Case("tracemux.span", span_loop, drain, max_n=1_000_000),
        Case("tracemux.llm", llm_loop, drain, max_n=1_000_000),
    ]


def otel_cases(kind: str) -> list[Case]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DiscardExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    processor = BatchSpanProcessor if kind == "batch" else SimpleSpanProcessor
    provider.add_span_processor(processor(DiscardExporter()))
    tracer = provider.get_tracer("bench")
    dumps = json.dumps
    inputs, outputs, messages, reply = INPUTS, OUTPUTS, MESSAGES, REPLY

    def span_loop(n: int) -> None:
        start = tracer.start_as_current_span
        with start("bench run"):
            for _ in range(n):
                with start("step") as s:
                    s.set_attribute("input.value", dumps(inputs))
                    s.set_attribute("output.value", dumps(outputs))

    def llm_loop(n: int) -> None:
        start = tracer.start_as_current_span
        with start("bench run"):
            for _ in range(n):
                with start("chat") as s:
                    s.set_attribute("gen_ai.request.model", MODEL)
                    s.set_attribute("input.value", dumps(messages))
                    s.set_attribute("output.value", dumps(reply))
                    s.set_attribute("gen_ai.usage.input_tokens", USAGE_IN)
                    s.set_attribute("gen_ai.usage.output_tokens", USAGE_OUT)

    def drain() -> None:
        provider.force_flush()

    name = f"otel_{kind}"
    return [
        Case(f"{name}.span", span_loop, drain, provider.shutdown),
        Case(f"{name}.llm", llm_loop, drain, provider.shutdown),
    ]


def langfuse5_cases() -> list[Case]:
    version = dist_version("langfuse") or ""
    if not version.startswith("5."):
        raise ImportError(f"langfuse 5 needed, found {version or 'none'}")
    quiet_loggers("langfuse", "opentelemetry")
    from langfuse import Langfuse

    lf = Langfuse(
        public_key="pk-lf-bench",
        secret_key="sk-lf-bench",
        host=closed_url(),
        tracing_enabled=True,
    )
    inputs, outputs, messages, reply = INPUTS, OUTPUTS, MESSAGES, REPLY

    def span_loop(n: int) -> None:
        root = lf.start_observation(name="bench run")
        start = root.start_observation
        for _ in range(n):
            s = start(name="step", as_type="span", input=inputs)
            s.update(output=outputs)
            s.end()
        root.end()

    def llm_loop(n: int) -> None:
        root = lf.start_observation(name="bench run")
        start = root.start_observation
        usage = {"input": USAGE_IN, "output": USAGE_OUT}
        for _ in range(n):
            g = start(name="chat", as_type="generation", input=messages, model=MODEL)
            g.update(output=reply, usage_details=usage)
            g.end()
        root.end()

    # No drain: the export target is a closed port, so the SDK's queue (2,048 spans)
    # fills and drops, as it would with the backend down; the caller's cost is measured.
    return [
        Case("langfuse5.span", span_loop, max_n=20_000),
        Case("langfuse5.llm", llm_loop, max_n=20_000),
    ]


def langsmith_cases() -> list[Case]:
    quiet_loggers("langsmith", "urllib3")
    from langsmith import Client
    from langsmith.run_trees import RunTree

    client = Client(api_url=closed_url(), api_key="lsv2-bench-key", auto_batch_tracing=True)
    inputs, outputs, messages, reply = INPUTS, OUTPUTS, MESSAGES, REPLY

    def span_loop(n: int) -> None:
        root = RunTree(name="bench run", run_type="chain", inputs={}, client=client)
        root.post()
        for _ in range(n):
            child = root.create_child(name="step", run_type="tool", inputs=inputs)
            child.end(outputs=outputs)
            child.post()
        root.end()

    def llm_loop(n: int) -> None:
        root = RunTree(name="bench run", run_type="chain", inputs={}, client=client)
        root.post()
        for _ in range(n):
            child = root.create_child(
                name="chat",
                run_type="llm",
                inputs={"messages": messages},
                extra={"metadata": {"ls_model_name": MODEL}},
            )
            child.end(
                outputs={
                    "message": reply,
                    "usage_metadata": {
                        "input_tokens": USAGE_IN,
                        "output_tokens": USAGE_OUT,
                        "total_tokens": USAGE_IN + USAGE_OUT,
                    },
                }
            )
            child.post()
        root.end()

    return [
        Case("langsmith.span", span_loop, max_n=20_000),
        Case("langsmith.llm", llm_loop, max_n=20_000),
    ]


# -- the child ---------------------------------------------------------------------------------


def _profile(opts: Options, n: int) -> dict[str, Any]:
    """cProfile the tracemux loops; writes hotpath.prof and hotpath_profile.txt."""
    cases = tracemux_cases()
    for case in cases:
        case.loop(1000)
        case.drain()
    prof = cProfile.Profile()
    for case in cases:
        prof.enable()
        case.loop(n)
        prof.disable()
        case.drain()
    out = Path(opts.out_dir)
    prof.dump_stats(str(out / "hotpath.prof"))
    text = io.StringIO()
    text.write(
        f"cProfile of the tracemux hot path: {n:,} spans + {n:,} LLM spans, recording"
        " thread only (cProfile's own overhead inflates every call; read the proportions).\n\n"
    )
    stats = pstats.Stats(prof, stream=text)
    stats.strip_dirs().sort_stats("tottime").print_stats(20)
    text.write("\n")
    stats.sort_stats("cumulative").print_stats(20)
    (out / "hotpath_profile.txt").write_text(text.getvalue())
    rows = []
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    ranked = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (filename, line, func), (_cc, ncalls, tottime, _ct, _callers) in ranked[:10]:
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}({func})",
                "calls": ncalls,
                "tottime_s": tottime,
                "share": tottime / total if total else 0.0,
            }
        )
    return {"spans": 2 * n, "top": rows, "total_s": total}


def run(part: str, opts: Options) -> dict[str, Any]:
    """Measure every case available here; then langfuse 2 in its side venv."""
    if part == "main":
        local = run_child("hotpath", "local", opts, timeout=900)
        side = run_langfuse2(
            "hotpath",
            {"repeats": _repeats(opts), "target_s": _target(opts)},
            opts,
            timeout=600,
        )
        return {"local": local, "langfuse2": side}
    if part != "local":
        raise ValueError(f"unknown part {part!r}")
    makers = [
        ("floor", floor_cases, None),
        ("tracemux", tracemux_cases, None),
        ("otel_batch", lambda: otel_cases("batch"), "opentelemetry-sdk"),
        ("otel_simple", lambda: otel_cases("simple"), "opentelemetry-sdk"),
        ("langfuse5", langfuse5_cases, "langfuse"),
        ("langsmith", langsmith_cases, "langsmith"),
    ]
    cases: list[Case] = []
    missing: dict[str, str] = {}
    for name, make, package in makers:
        try:
            cases.extend(make())
        except ImportError as exc:
            missing[name] = f"{NOT_INSTALLED} ({package}: {exc})"
        except Exception as exc:  # an SDK that cannot even start is reported, not fatal
            missing[name] = f"could not be set up: {type(exc).__name__}: {exc}"
    measured = measure_round_robin(cases, _repeats(opts), _target(opts))
    for case in cases:
        try:
            case.close()
        except Exception:
            pass
    result: dict[str, Any] = {"cases": measured, "missing": missing}
    if opts.profile:
        result["profile"] = _profile(opts, opts.pick(200_000, 30_000))
    return result


def _repeats(opts: Options) -> int:
    return int(opts.pick(9, 3))


def _target(opts: Options) -> float:
    return float(opts.pick(0.25, 0.05))


# -- the report --------------------------------------------------------------------------------


def _figures(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every measured case: µs summary, spans per repeat, ratio to its own process's floor."""
    out: dict[str, dict[str, Any]] = {}
    local = result.get("local", {}).get("cases", {})
    side = result.get("langfuse2", {}).get("cases", {})
    for source, floor_name in ((local, "floor"), (side, "langfuse2.floor")):
        floor = source.get(floor_name, {}).get("us")
        for name, data in source.items():
            us = data["us"]
            out[name] = {
                "us": summarize(us),
                "cpu": summarize(data.get("cpu_us", [])),
                "n": data["n"],
                "x_floor": paired_ratios(us, floor) if floor else None,
                "raw": us,
            }
    return out


def render(result: dict[str, Any], out_dir: Path) -> Section:
    """The hot-path table, the chart, the summary rows and the profile's top."""
    figs = _figures(result)
    local = result.get("local", {})
    side = result.get("langfuse2", {})
    notes: list[str] = []
    if "error" in local:
        notes.append(f"in-process cases failed: {local['error']}")
    for name, why in local.get("missing", {}).items():
        notes.append(f"{name}: {why}")
    if "error" in side:
        notes.append(f"langfuse 2: failed: {side['error']}")
    elif side.get("status") == "unavailable":
        notes.append(f"langfuse 2: {side['note']}")
    tm = figs.get("tracemux.span")

    def ratio_to(name: str) -> str:
        if tm is None or name not in figs:
            return "-"
        return fmt_ratio(paired_ratios(tm["raw"], figs[name]["raw"]))

    def llm_ratio_to(name: str) -> str:
        t = figs.get("tracemux.llm")
        if t is None or name not in figs:
            return "-"
        return fmt_ratio(paired_ratios(t["raw"], figs[name]["raw"]))

    rows = []
    for name, label in LABELS.items():
        f = figs.get(name)
        if f is None:
            continue
        versus = "-"
        if not name.startswith(("tracemux", "floor", "langfuse2")):
            versus = llm_ratio_to(name) if name.endswith(".llm") else ratio_to(name)
        elif name.startswith("langfuse2.") and name != "langfuse2.floor" and tm is not None:
            versus = _via_floor(figs, name)
        rows.append(
            [
                label,
                fmt_range(f["us"], "{:.2f}"),
                fmt_range(f["cpu"], "{:.2f}"),
                f"{f['n']:,} x {f['us']['n']}",
                fmt_ratio(f["x_floor"]) if f["x_floor"] else "-",
                versus,
            ]
        )
    table = md_table(
        [
            "case",
            "µs per span, wall: median (min-max)",
            "CPU µs of the recording thread",
            "spans x repeats",
            "x floor",
            "tracemux / it",
        ],
        rows,
    )
    charts = []
    if figs:
        names = [n for n in LABELS if n in figs and n != "langfuse2.floor"]
        charts.append(
            bar_chart(
                out_dir / "hotpath.png",
                [LABELS[n].replace("OpenTelemetry SDK", "OTel") for n in names],
                [figs[n]["us"] for n in names],
                title="Hot path: µs per span (median, min-max), log scale",
                xlabel="µs per span",
                log=True,
                highlight=[n.startswith("tracemux") for n in names],
            )
        )
    summary = []
    if tm is not None:
        med = tm["us"]["median"]
        floor = figs.get("floor")
        summary.append(
            SummaryRow(
                "Hot path, µs per span (wall; recording thread's CPU)",
                f"{med:.2f} µs ({tm['cpu']['median']:.2f} µs CPU)"
                if tm["cpu"]["n"]
                else f"{med:.2f} µs",
                f"bare floor {floor['us']['median']:.2f} µs" if floor else "-",
                fmt_ratio(tm["x_floor"]) if tm["x_floor"] else "-",
                f"<= {TARGET_US:g} µs",
                verdict(med <= TARGET_US),
            )
        )
        for anchor, target, label in (
            ("otel_batch.span", TARGET_VS_OTEL_BATCH, "OTel SDK + batch"),
            ("langfuse5.span", TARGET_VS_LANGFUSE5, "langfuse 5 span"),
        ):
            a = figs.get(anchor)
            if a is None:
                summary.append(
                    SummaryRow(
                        f"Hot path vs {label}",
                        f"{med:.2f} µs",
                        "not measured",
                        "-",
                        f"<= {target:g}x",
                        "n/a",
                    )
                )
                continue
            r = paired_ratios(tm["raw"], a["raw"])
            summary.append(
                SummaryRow(
                    f"Hot path vs {label}",
                    f"{med:.2f} µs",
                    f"{a['us']['median']:.2f} µs",
                    fmt_ratio(r),
                    f"<= {target:g}x",
                    verdict(r["median"] <= target),
                )
            )
        tl = figs.get("tracemux.llm")
        for anchor, label in (
            ("otel_batch.llm", "OTel SDK + batch LLM span"),
            ("langfuse5.llm", "langfuse 5 generation"),
        ):
            a = figs.get(anchor)
            if tl is None or a is None:
                continue
            summary.append(
                SummaryRow(
                    f"Hot path, LLM span with usage, vs {label}",
                    f"{tl['us']['median']:.2f} µs",
                    f"{a['us']['median']:.2f} µs",
                    fmt_ratio(paired_ratios(tl["raw"], a["raw"])),
                    "-",
                    "info",
                )
            )
        if "langfuse2.span" in figs:
            summary.append(
                SummaryRow(
                    "Hot path vs langfuse 2 span (via floors)",
                    f"{med:.2f} µs",
                    f"{figs['langfuse2.span']['us']['median']:.2f} µs",
                    _via_floor(figs, "langfuse2.span"),
                    "-",
                    "info",
                )
            )
    md = [
        "Cost to the caller of one span: open, small inputs, outputs, close; an LLM span also"
        " sets model and token usage. All in-process cases run interleaved in the same rounds"
        " (order rotated each round); `x floor` is each case over the bare floor of the same"
        " round; `tracemux / it` is the median of same-round ratios (min-max). langfuse 2 runs"
        " in another process (its side venv), so it is compared through the floor measured"
        " in that process: (tracemux / floor) / (langfuse 2 / its floor). The CPU column is"
        " the recording thread's own CPU time (`time.thread_time`): it leaves out the time"
        " the thread was descheduled or waiting for the GIL, which a shared machine adds to"
        " the wall time; ratios and targets use the wall time.",
        "",
        table,
    ]
    if notes:
        md += ["", *[f"- {n}" for n in notes]]
    prof = local.get("profile")
    if prof:
        md += [
            "",
            f"Where the time goes (cProfile, {prof['spans']:,} tracemux spans; own time per"
            " function, top 10; full listing in `hotpath_profile.txt`):",
            "",
            md_table(
                ["function", "calls", "own time share"],
                [[r["function"], f"{r['calls']:,}", f"{r['share']:.0%}"] for r in prof["top"]],
            ),
        ]
    return Section(TITLE, "\n".join(md), charts, summary)


def _via_floor(figs: dict[str, dict[str, Any]], name: str) -> str:
    tm, other = figs.get("tracemux.span"), figs.get(name)
    if name.endswith(".llm"):
        tm = figs.get("tracemux.llm")
    if tm is None or other is None or not tm["x_floor"] or not other["x_floor"]:
        return "-"
    a, b = tm["x_floor"], other["x_floor"]
    return f"{a['median'] / b['median']:.3f}x"
