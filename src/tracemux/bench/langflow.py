"""Real Langflow flows, stock vs tracemux (langflow-base 1.13 in a side venv).

The same ChatInput -> ChatOutput flow, run through lfx's ``Graph.arun`` in the
``langflow113`` side venv (``tracemux.bench.sidevenv``, ``langflow-base==1.13.*``), with lfx's
tracing service registered through ``lfx.toml`` as either langflow-base's own
``TracingService`` (*stock*: a tracer per backend and run) or tracemux's. Langfuse is a
loopback stand-in (:mod:`tracemux.bench.receiver`). Measured, per side:

- live threads after N runs with one Langfuse key pair, and with a new pair per run
  (one project per tenant, set in ``os.environ`` before each run), and ms per run;
- event-loop lag (a 1 ms ticker) over M runs with the stand-in answering after 0.5 s,
  beside the same flows with no tracing service at all (lfx's own work on the loop).

``--quick`` skips this scenario (it takes minutes); the full run builds the side venv
(about 1.8 GB) if the tests have not.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tracemux.bench.common import Options, Receiver, bench_env, run_python
from tracemux.bench.report import Section, SummaryRow, md_table
from tracemux.bench.sidevenv import repo_root, side_venv

VENV = "langflow113"
SPEC = ("langflow-base==1.13.*",)
SLOW_BACKEND_S = 0.5


def side_python(build: bool) -> tuple[Path | None, str]:
    """The side venv's interpreter (built when ``build``), or None and why not."""
    root = repo_root()
    if root is None:
        return None, "needs a source checkout (side venvs install tracemux from it)"
    python = root / ".venvs" / VENV / "bin" / "python"
    if not build:
        if python.exists():
            return python, ""
        return None, f"side venv .venvs/{VENV} not built (the full run or the tests build it)"
    try:
        return Path(side_venv(VENV, list(SPEC), upgrade_pip=True)), ""
    except Exception as exc:
        return None, f"could not build the side venv: {str(exc)[:300]}"


def _side(python: Path, register: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tracemux-bench-langflow-") as tmp:
        extra = {
            "LANGFLOW_CONFIG_DIR": tmp,
            "LANGFLOW_DATABASE_URL": f"sqlite:///{tmp}/langflow.db",
            "TRACEMUX_DB": f"{tmp}/traces.db",
            "DO_NOT_TRACK": "true",
            **env,
        }
        return run_python(
            python,
            ["-m", "tracemux.bench.langflow_side", *args, "--register", register, "--result"],
            timeout=1200,
            env=bench_env(extra),
        )


def run(part: str, opts: Options) -> dict[str, Any]:
    if part != "main":
        raise ValueError(f"unknown part {part!r}")
    if opts.quick:
        return {"status": "skipped", "note": "real Langflow flows take minutes: not in --quick"}
    python, note = side_python(opts.build_side_venv)
    if python is None:
        return {"status": "unavailable", "note": note}
    runs = 200
    lag_runs = {"tracemux": 100, "stock": 20}
    lag_runs["none"] = lag_runs["tracemux"]
    out: dict[str, Any] = {"runs": runs, "lag_runs": lag_runs}
    with Receiver() as fast:
        keys = {"LANGFUSE_PUBLIC_KEY": "pk-lf-bench", "LANGFUSE_SECRET_KEY": "sk-lf-bench"}
        for side in ("stock", "tracemux"):
            base = {"LANGFUSE_HOST": fast.url, "LANGFUSE_BASE_URL": fast.url}
            out[f"{side}.fixed"] = _side(
                python, side, ["rotation", "--runs", str(runs)], {**base, **keys}
            )
            out[f"{side}.rotating"] = _side(
                python, side, ["rotation", "--runs", str(runs), "--rotate"], base
            )
    with Receiver(delay=SLOW_BACKEND_S) as slow:
        env = {"LANGFUSE_HOST": slow.url, "LANGFUSE_BASE_URL": slow.url, **keys}
        for side in ("none", "stock", "tracemux"):
            out[f"{side}.lag"] = _side(
                python, side, ["looplag", "--runs", str(lag_runs[side])], env
            )
    return out


LABELS = {"stock": "stock Langflow (langflow-base 1.13)", "tracemux": "tracemux"}


def _cell(r: dict[str, Any], key: str, spec: str) -> str:
    if "error" in r:
        return "failed"
    value = r.get(key)
    return "-" if value is None else spec.format(value)


def render(result: dict[str, Any], out_dir: Path) -> Section:
    title = "Real Langflow flows, stock vs tracemux"
    if "runs" not in result:
        return Section(title, f"Not run: {result.get('note') or result.get('status')}")
    runs, lag_runs = result["runs"], result["lag_runs"]
    rows, notes = [], []
    for side, label in LABELS.items():
        fixed, rot = result.get(f"{side}.fixed", {}), result.get(f"{side}.rotating", {})
        lag = result.get(f"{side}.lag", {})
        for name, r in (("fixed keys", fixed), ("rotating keys", rot), ("slow backend", lag)):
            if "error" in r:
                notes.append(f"{label}, {name}: failed: {r['error']} {r.get('stderr', '')[-300:]}")
        rows.append(
            [
                label,
                _cell(fixed, "threads_after", "{:,}") + " / " + _cell(rot, "threads_after", "{:,}"),
                _cell(fixed, "ms_per_run", "{:.1f}") + " / " + _cell(rot, "ms_per_run", "{:.1f}"),
                _cell(lag, "ms_per_run", "{:.0f}"),
                _cell(lag, "lag_p99_ms", "{:.1f}") + " / " + _cell(lag, "lag_max_ms", "{:.0f}"),
                _cell(lag, "stalled_s", "{:.2f}") + " / " + _cell(lag, "elapsed_s", "{:.1f}"),
            ]
        )
    none = result.get("none.lag", {})
    rows.append(
        [
            "no tracing service (lfx's own work)",
            "-",
            "-",
            _cell(none, "ms_per_run", "{:.0f}"),
            _cell(none, "lag_p99_ms", "{:.1f}") + " / " + _cell(none, "lag_max_ms", "{:.0f}"),
            _cell(none, "stalled_s", "{:.2f}") + " / " + _cell(none, "elapsed_s", "{:.1f}"),
        ]
    )
    md = [
        f"ChatInput -> ChatOutput through `Graph.arun`, {runs} runs per cell, Langfuse a"
        " loopback stand-in. Threads: live threads of the process after the runs (one key"
        " pair / a new key pair per run). Slow backend: the stand-in answers after"
        f" {SLOW_BACKEND_S:g} s; {lag_runs['tracemux']} runs (stock: {lag_runs['stock']},"
        " each takes over half a second); lag = how late a 1 ms sleep wakes, over all runs;"
        " stalled = the sum of lags over 50 ms (a stall shows as one late tick, so tick"
        " percentiles understate it). The machine is shared and busy: ms per run and lag"
        " move by 2-4x between identical runs; the thread counts do not.",
        "",
        md_table(
            [
                "",
                f"threads after {runs} runs (fixed / rotating)",
                "ms per run (fixed / rotating)",
                "ms per run, slow backend",
                "loop lag p99 / max ms, slow backend",
                "loop stalled > 50 ms / wall, s",
            ],
            rows,
        ),
    ]
    if notes:
        md += ["", *[f"- {n}" for n in notes]]
    summary = []
    tm, st = result.get("tracemux.rotating", {}), result.get("stock.rotating", {})
    if "threads_after" in tm:
        anchor = f"{st['threads_after']:,} (stock)" if "threads_after" in st else "not measured"
        summary.append(
            SummaryRow(
                f"Langflow, threads after {runs} runs with a key pair per run",
                f"{tm['threads_after']:,}",
                anchor,
                "-",
                "flat (+1 thread)",
                "yes" if tm.get("threads_after", 0) - tm.get("threads_before", 0) <= 1 else "no",
            )
        )
    return Section(title, "\n".join(md), summary=summary)
