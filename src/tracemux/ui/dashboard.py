"""The dashboard's figures: runs and error rate over time, latency percentiles per flow
and per component, tokens and cost by model, the slowest and most failing components.

Built from :meth:`SQLiteStore.dashboard_data` (runs counted from the runs themselves, the
rest from the hourly figures the export thread keeps). Percentiles come from latency
histograms whose buckets are 10% wide: a percentile is the middle of its bucket, within
5% of the exact value.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

from tracemux.cost import PriceTable
from tracemux.destinations.sqlite import SQLiteStore, bucket_ms

#: range name -> (length, step) in nanoseconds
HOUR = 3_600_000_000_000
DAY = 24 * HOUR
RANGES: dict[str, tuple[int, int]] = {
    "24h": (DAY, HOUR),
    "7d": (7 * DAY, 6 * HOUR),
    "30d": (30 * DAY, DAY),
    "90d": (90 * DAY, 3 * DAY),
}
DEFAULT_RANGE = "7d"
TOP = 15  # components listed per table


def percentile(histogram: dict[int, int], p: float) -> float | None:
    """The ``p`` (0..1) percentile of a histogram {bucket: count}, in milliseconds."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(p * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_ms(bucket)
    return None  # unreachable


def build(
    store: SQLiteStore,
    prices: PriceTable,
    range_name: str = DEFAULT_RANGE,
    *,
    project: str | None = None,
    flow: str | None = None,
    now_ns: int | None = None,
) -> dict[str, Any]:
    """The dashboard's JSON (see the module docstring). ``range_name`` is one of
    :data:`RANGES` (``ValueError`` otherwise)."""
    if range_name not in RANGES:
        raise ValueError(f"range must be one of {', '.join(RANGES)}")
    length, step = RANGES[range_name]
    now = time.time_ns() if now_ns is None else now_ns
    until = (now // step + 1) * step  # the end of the current step
    since = until - length
    data = store.dashboard_data(since, until, step, project=project, flow=flow)
    steps = length // step
    runs = [{"t": since + i * step, "runs": 0, "with_errors": 0} for i in range(steps)]
    for i, n, errors in data.runs:
        if 0 <= i < steps:
            runs[i]["runs"], runs[i]["with_errors"] = n, errors or 0
    histograms: dict[tuple[bool, str, str], dict[int, int]] = defaultdict(dict)
    for is_flow, name, kind, bucket, n in data.latency:
        histograms[(bool(is_flow), name, kind)][bucket] = n
    failed = {(bool(f[0]), f[1], f[2]): f[4] for f in data.failed}
    rows = [
        _latency_row(histograms[key], r, failed.get(key))
        for r in data.names
        for key in [(bool(r[0]), r[1], r[2])]
    ]
    flows = sorted((r for r in rows if r["is_flow"]), key=lambda r: -(r["p95"] or 0))
    components = [r for r in rows if not r["is_flow"]]
    models, over_time = _models(data.models, prices, since, step)
    total_runs = sum(r["runs"] for r in runs)
    with_errors = sum(r["with_errors"] for r in runs)
    cost = prices.total((m["model"], m["input_tokens"], m["output_tokens"]) for m in models)
    return {
        "range": range_name,
        "ranges": list(RANGES),
        "since_ns": since,
        "until_ns": until,
        "step_ns": step,
        "project": project,
        "flow": flow,
        "flows_available": store.flows(),
        "runs": runs,
        "totals": {
            "runs": total_runs,
            "with_errors": with_errors,
            "error_rate": with_errors / total_runs if total_runs else None,
            "tokens": sum(m["input_tokens"] + m["output_tokens"] for m in models),
            "cost": cost.to_dict(),
        },
        "flows": flows,
        "slowest": sorted(components, key=lambda r: -(r["p95"] or 0))[:TOP],
        "failing": sorted(
            (c for c in components if c["errors"]), key=lambda r: (-r["errors"], -r["n"])
        )[:TOP],
        "models": models,
        "models_over_time": over_time,
    }


def _latency_row(
    histogram: dict[int, int], row: tuple[Any, ...], failed_run: str | None
) -> dict[str, Any]:
    is_flow, name, kind, n, errors, max_ns, slowest_run = row
    return {
        "is_flow": bool(is_flow),
        "name": name,
        "kind": None if is_flow else kind,
        "n": n,
        "errors": errors,
        "error_rate": errors / n if n else 0.0,
        "p50": percentile(histogram, 0.50),
        "p95": percentile(histogram, 0.95),
        "p99": percentile(histogram, 0.99),
        "max_ms": max_ns / 1e6,
        "slowest_run": slowest_run,
        "failed_run": failed_run,
    }


def _models(
    rows: list[tuple[Any, ...]], prices: PriceTable, since: int, step: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    hours_per_step = max(1, step // HOUR)
    totals: dict[str, list[int]] = {}
    over_time = []
    for i, model, calls, input_tokens, output_tokens in rows:
        t = totals.setdefault(model, [0, 0, 0])
        t[0] += calls
        t[1] += input_tokens
        t[2] += output_tokens
        over_time.append(
            {
                "t": since + int(i) * hours_per_step * HOUR,
                "model": model,
                "tokens": input_tokens + output_tokens,
                "cost_usd": prices.cost(model, input_tokens, output_tokens),
            }
        )
    models = [
        {
            "model": model,
            "calls": calls,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": prices.cost(model, input_tokens, output_tokens),
        }
        for model, (calls, input_tokens, output_tokens) in totals.items()
    ]
    models.sort(key=lambda m: -(m["input_tokens"] + m["output_tokens"]))
    return models, over_time
