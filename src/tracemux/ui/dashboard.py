"""The dashboard's figures: runs and error rate over time, latency percentiles per flow
and per component, tokens and cost by model, the slowest and most failing components.

Built from :meth:`SQLiteStore.dashboard_data` (runs counted from the runs themselves, the
rest from the figures the export thread keeps per hour, and per day for ranges of a week
or more: those cover whole days). Percentiles come from latency histograms whose buckets
are 10% wide: a percentile is the middle of its bucket, within 5% of the exact value.
Those figures are history: deleting runs does not take them out (pruning by age does);
the runs-over-time chart counts the runs the store holds.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any

import orjson

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
    rows = _latency_rows(data.figures)
    flows = sorted((r for r in rows if r["is_flow"]), key=lambda r: -(r["p95"] or 0))
    components = [r for r in rows if not r["is_flow"]]
    models, over_time = _models(data.models, prices, data.grain_ns, since, step)
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


def _latency_rows(figures: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """One row per flow and per component: the figures of every grain summed up."""
    merged: dict[tuple[bool, str, str], list[Any]] = {}
    for is_flow, name, kind, t, n, errors, max_ns, slowest, failed, hist in figures:
        key = (bool(is_flow), name, kind)
        m = merged.get(key)
        if m is None:
            m = merged[key] = [0, 0, -1, None, None, -1, defaultdict(int)]
        m[0] += n
        m[1] += errors
        if max_ns > m[2]:
            m[2], m[3] = max_ns, slowest
        if failed is not None and t > m[5]:
            m[4], m[5] = failed, t  # the latest failed run
        for bucket, count in orjson.loads(hist):
            m[6][bucket] += count
    return [
        {
            "is_flow": is_flow,
            "name": name,
            "kind": None if is_flow else kind,
            "n": n,
            "errors": errors,
            "error_rate": errors / n if n else 0.0,
            "p50": percentile(histogram, 0.50),
            "p95": percentile(histogram, 0.95),
            "p99": percentile(histogram, 0.99),
            "max_ms": max_ns / 1e6,
            "slowest_run": slowest,
            "failed_run": failed,
        }
        for (is_flow, name, kind), (n, errors, max_ns, slowest, failed, _, histogram) in (
            merged.items()
        )
    ]


def _models(
    rows: list[tuple[Any, ...]], prices: PriceTable, grain_ns: int, since: int, step: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    totals: dict[str, list[int]] = {}
    per_step: dict[tuple[int, str], list[int]] = {}
    for t, model, calls, input_tokens, output_tokens in rows:
        total = totals.setdefault(model, [0, 0, 0])
        total[0] += calls
        total[1] += input_tokens
        total[2] += output_tokens
        i = max(0, (t * grain_ns - since) // step)  # a day that began before the range: 0
        acc = per_step.setdefault((i, model), [0, 0])
        acc[0] += input_tokens
        acc[1] += output_tokens
    over_time = [
        {
            "t": since + i * step,
            "model": model,
            "tokens": input_tokens + output_tokens,
            "cost_usd": prices.cost(model, input_tokens, output_tokens),
        }
        for (i, model), (input_tokens, output_tokens) in sorted(per_step.items())
    ]
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
