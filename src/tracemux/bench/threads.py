"""Scenario 2, threads against runs: live threads a process gains as runs go by.

Each run records a root and one child span. Counted after runs 1, 2, 5, ... 1,000
(``threading.active_count()`` minus the count before the first run):

- tracemux: 20 tenants, each run names its tenant's own ``Langfuse(...)`` destination;
- langfuse 2, a new client per run (the seed's pattern), side venv;
- langfuse 2 behind :class:`tracemux.clients.SharedClients` (20 tenants, ``max_size=20``),
  side venv;
- langfuse 5, the client built with the run's tenant key (20 tenants).

Every client points at a closed loopback port. Client creation is not what is measured
here (scenario 6 is), so the SDK clients load a one-certificate CA bundle
(``SSL_CERT_FILE``) to keep 1,000 creations short; thread counts do not depend on it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tracemux.bench.common import (
    INPUTS,
    NOT_INSTALLED,
    OUTPUTS,
    Options,
    bench_env,
    closed_url,
    dist_version,
    quiet_loggers,
    run_child,
    run_langfuse2,
    tiny_ca,
)
from tracemux.bench.report import Section, SummaryRow, line_chart, md_table, verdict

TITLE = "2. Threads against runs"
TENANTS = 20

LABELS = {
    "tracemux": "tracemux (20 tenants, a Langfuse destination each)",
    "langfuse2_per_run": "langfuse 2, a client per run",
    "langfuse2_pooled": "langfuse 2 behind SharedClients (20 tenants)",
    "langfuse5": "langfuse 5, key per tenant (20 tenants)",
}


#: runs of the langfuse 2 client-per-run case at most: past a few hundred clients their
#: polling threads (two wake-ups per client per second) slow the whole machine for minutes,
#: and the count is exactly 3 threads per run anyway
PER_RUN_MAX = 200


def _checkpoints(opts: Options) -> list[int]:
    full = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    return [c for c in full if c <= opts.pick(1000, 100)]


def _tracemux(checkpoints: list[int]) -> dict[str, Any]:
    from tracemux import TracingService
    from tracemux.destinations import Discard, Langfuse

    host = closed_url()
    base = threading.active_count()
    svc = TracingService([Discard()])
    tenants = [
        Langfuse(public_key=f"pk-lf-tenant-{t}", secret_key=f"sk-lf-tenant-{t}", host=host)
        for t in range(TENANTS)
    ]
    wanted = set(checkpoints)
    runs, extra = [], []
    t0 = time.perf_counter()
    for i in range(1, max(checkpoints) + 1):
        with svc.trace_run(f"flow-{i}", destinations=[tenants[i % TENANTS]]) as run:
            with run.span("step", kind="tool", inputs=INPUTS) as span:
                span.set_outputs(OUTPUTS)
        if i in wanted:
            runs.append(i)
            extra.append(threading.active_count() - base)
    return {"runs": runs, "extra": extra, "seconds": time.perf_counter() - t0}


def _langfuse5(checkpoints: list[int]) -> dict[str, Any]:
    version = dist_version("langfuse") or ""
    if not version.startswith("5."):
        return {"status": NOT_INSTALLED, "note": f"langfuse 5 needed, found {version or 'none'}"}
    quiet_loggers("langfuse", "opentelemetry")
    from langfuse import Langfuse

    host = closed_url()
    base = threading.active_count()
    wanted = set(checkpoints)
    runs, extra = [], []
    t0 = time.perf_counter()
    for i in range(1, max(checkpoints) + 1):
        t = i % TENANTS
        lf = Langfuse(public_key=f"pk-lf-tenant-{t}", secret_key=f"sk-lf-tenant-{t}", host=host)
        root = lf.start_observation(name=f"flow-{i}")
        step = root.start_observation(name="step", as_type="tool", input=INPUTS)
        step.update(output=OUTPUTS)
        step.end()
        root.end()
        if i in wanted:
            runs.append(i)
            extra.append(threading.active_count() - base)
    return {"runs": runs, "extra": extra, "seconds": time.perf_counter() - t0}


def run(part: str, opts: Options) -> dict[str, Any]:
    checkpoints = _checkpoints(opts)
    if part == "tracemux":
        return _tracemux(checkpoints)
    if part == "langfuse5":
        try:
            return _langfuse5(checkpoints)
        except ImportError as exc:
            return {"status": NOT_INSTALLED, "note": str(exc)}
    if part != "main":
        raise ValueError(f"unknown part {part!r}")
    out: dict[str, Any] = {"checkpoints": checkpoints}
    with tiny_ca() as ca:
        env = bench_env({"SSL_CERT_FILE": ca})
        out["tracemux"] = run_child("threads", "tracemux", opts, timeout=300)
        out["langfuse5"] = run_child("threads", "langfuse5", opts, timeout=300, env=env)
        params = {"checkpoints": checkpoints, "tenants": TENANTS}
        extra = {"SSL_CERT_FILE": ca}
        per_run = {**params, "checkpoints": [c for c in checkpoints if c <= PER_RUN_MAX]}
        out["langfuse2_per_run"] = run_langfuse2(
            "threads_per_run", per_run, opts, timeout=600, env_extra=extra
        )
        out["langfuse2_pooled"] = run_langfuse2(
            "threads_pooled", params, opts, timeout=600, env_extra=extra
        )
    return out


def render(result: dict[str, Any], out_dir: Path) -> Section:
    checkpoints = result.get("checkpoints", [])
    rows, series, notes = [], {}, []
    for key, label in LABELS.items():
        r = result.get(key, {})
        if "error" in r:
            notes.append(f"{label}: failed: {r['error']}")
            continue
        if "extra" not in r:
            notes.append(f"{label}: {r.get('note') or r.get('status', 'not measured')}")
            continue
        by_run = dict(zip(r["runs"], r["extra"]))
        rows.append(
            [label]
            + [f"+{by_run[c]}" if c in by_run else "-" for c in checkpoints]
            + [f"{r['seconds']:.1f} s"]
        )
        series[label] = (r["runs"], r["extra"])
        if r["runs"] and checkpoints and r["runs"][-1] < checkpoints[-1] and r["runs"][-1]:
            per = r["extra"][-1] / r["runs"][-1]
            notes.append(
                f"{label}: measured up to {r['runs'][-1]:,} runs ({per:g} threads per run);"
                " past a few hundred clients their polling threads slow the whole machine for"
                " minutes. The chart extends it as a dashed line at the same rate."
            )
            series[f"{label}, extrapolated"] = (
                [r["runs"][-1], checkpoints[-1]],
                [r["extra"][-1], per * checkpoints[-1]],
            )
    md = [
        "Live threads gained (over the count before the first run) after N runs; each run"
        " records a root and one child span; every export target is a closed loopback"
        " port. SDK clients load a one-certificate CA bundle here to keep 1,000 creations"
        " short (creation cost is scenario 6); thread counts do not depend on it.",
        "",
        md_table(["after N runs"] + [f"{c:,}" for c in checkpoints] + ["time for all runs"], rows),
    ]
    if notes:
        md += ["", *[f"- {n}" for n in notes]]
    chart = line_chart(
        out_dir / "threads.png",
        series,
        title="Threads gained against runs",
        xlabel="runs",
        ylabel="threads gained (symlog)",
        logx=True,
        logy=True,
    )
    summary = []
    tm = result.get("tracemux", {})
    if "extra" in tm:
        last = tm["extra"][-1]
        flat = all(x == 1 for x in tm["extra"])
        anchor = result.get("langfuse2_per_run", {})
        anchor_text = (
            f"+{anchor['extra'][-1]:,} after {anchor['runs'][-1]:,} runs (langfuse 2, client"
            " per run)"
            if "extra" in anchor
            else "langfuse 2 not measured"
        )
        summary.append(
            SummaryRow(
                f"Threads after {tm['runs'][-1]:,} runs (20 tenants)",
                f"+{last}",
                anchor_text,
                "-",
                "flat at +1",
                verdict(flat),
            )
        )
        lf5 = result.get("langfuse5", {})
        if "extra" in lf5:
            summary.append(
                SummaryRow(
                    f"Threads after {lf5['runs'][-1]:,} runs, langfuse 5 key per tenant",
                    f"+{last}",
                    f"+{lf5['extra'][-1]:,}",
                    "-",
                    "-",
                    "info",
                )
            )
    return Section(TITLE, "\n".join(md), [chart], summary)
