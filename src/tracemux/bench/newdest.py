"""Scenario 6, the cost of a new destination (a new tenant): tracemux against a new client.

tracemux: build a ``Langfuse(...)`` destination with keys never seen before, record a run
with one child span to it, and time (a) until the span is queued (the caller is free) and
(b) until a flush returns, that is until the loopback receiver has answered the export.
The very first destination of the process is reported apart: it also starts the export
thread and loads the protobuf and HTTP modules.

Anchors: creating a langfuse 5 client with new keys (then its first span and ``flush()``
to the same kind of receiver), and creating a langfuse 2 client (side venv). Both load
the system CA bundle, as they do in production.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tracemux.bench.common import (
    INPUTS,
    NOT_INSTALLED,
    OUTPUTS,
    Options,
    Receiver,
    dist_version,
    quiet_loggers,
    run_child,
    run_langfuse2,
    summarize,
)
from tracemux.bench.report import Section, SummaryRow, bar_chart, fmt_range, md_table, verdict

TITLE = "6. Cost of a new destination / tenant"
TARGET_MS = 1.0


def _tracemux(count: int) -> dict[str, Any]:
    from tracemux import TracingService
    from tracemux.destinations import Discard, Langfuse

    svc = TracingService([Discard()])
    queued, exported, delivered = [], [], []
    with Receiver() as receiver:
        for k in range(count + 1):
            before = svc.stats()["exported"]
            t0 = time.perf_counter()
            dest = Langfuse(
                public_key=f"pk-lf-new-{k}", secret_key=f"sk-lf-new-{k}", host=receiver.url
            )
            with svc.trace_run("first run", destinations=[dest]) as run:
                with run.span("step", kind="tool", inputs=INPUTS) as span:
                    span.set_outputs(OUTPUTS)
            t1 = time.perf_counter()
            ok = svc.flush(30)
            t2 = time.perf_counter()
            queued.append(t1 - t0)
            exported.append(t2 - t0)
            delivered.append(bool(ok) and svc.stats()["exported"] - before == 2)
        counts = receiver.stop()
    return {
        "cold_queued_s": queued[0],
        "cold_exported_s": exported[0],
        "queued_s": summarize(queued[1:]),
        "exported_s": summarize(exported[1:]),
        "all_delivered": all(delivered),
        "receiver": counts,
    }


def _langfuse5(count: int) -> dict[str, Any]:
    version = dist_version("langfuse") or ""
    if not version.startswith("5."):
        return {"status": NOT_INSTALLED, "note": f"langfuse 5 needed, found {version or 'none'}"}
    quiet_loggers("langfuse", "opentelemetry")
    from langfuse import Langfuse

    create, queued, exported = [], [], []
    with Receiver() as receiver:
        for k in range(count + 1):
            t0 = time.perf_counter()
            lf = Langfuse(
                public_key=f"pk-lf-new-{k}", secret_key=f"sk-lf-new-{k}", host=receiver.url
            )
            t1 = time.perf_counter()
            root = lf.start_observation(name="first run")
            step = root.start_observation(name="step", as_type="tool", input=INPUTS)
            step.update(output=OUTPUTS)
            step.end()
            root.end()
            t2 = time.perf_counter()
            lf.flush()
            t3 = time.perf_counter()
            create.append(t1 - t0)
            queued.append(t2 - t0)
            exported.append(t3 - t0)
        counts = receiver.stop()
    return {
        "cold_create_s": create[0],
        "create_s": summarize(create[1:]),
        "queued_s": summarize(queued[1:]),
        "exported_s": summarize(exported[1:]),
        "receiver": counts,
    }


def run(part: str, opts: Options) -> dict[str, Any]:
    if part == "tracemux":
        return _tracemux(int(opts.pick(30, 8)))
    if part == "langfuse5":
        try:
            return _langfuse5(int(opts.pick(8, 3)))
        except ImportError as exc:
            return {"status": NOT_INSTALLED, "note": str(exc)}
    if part != "main":
        raise ValueError(f"unknown part {part!r}")
    return {
        "tracemux": run_child("newdest", "tracemux", opts, timeout=300),
        "langfuse5": run_child("newdest", "langfuse5", opts, timeout=300),
        "langfuse2": run_langfuse2(
            "create", {"count": int(opts.pick(8, 3)) + 1}, opts, timeout=300
        ),
    }


def render(result: dict[str, Any], out_dir: Path) -> Section:
    tm = result.get("tracemux", {})
    lf5 = result.get("langfuse5", {})
    lf2 = result.get("langfuse2", {})
    rows, notes, labels, stats = [], [], [], []

    def ms(s: dict[str, Any] | None) -> str:
        return fmt_range(s, "{:.3f}", 1e3)

    if "queued_s" in tm:
        n = tm["queued_s"]["n"]
        rows.append(
            [
                "tracemux: new Langfuse destination, first span queued",
                ms(tm["queued_s"]),
                f"{tm['cold_queued_s'] * 1e3:.3f}",
                n,
            ]
        )
        rows.append(
            [
                "tracemux: ... and exported (flush returned, receiver answered)",
                ms(tm["exported_s"]),
                f"{tm['cold_exported_s'] * 1e3:.3f}",
                n,
            ]
        )
        labels += ["tracemux: first span queued", "tracemux: first span exported"]
        stats += [tm["queued_s"], tm["exported_s"]]
        if not tm.get("all_delivered"):
            notes.append("tracemux: not every first span was confirmed delivered")
    elif tm:
        notes.append(f"tracemux: {tm.get('error') or tm.get('note')}")
    if "create_s" in lf5:
        n = lf5["create_s"]["n"]
        rows.append(
            [
                "langfuse 5: create a client (new keys)",
                ms(lf5["create_s"]),
                f"{lf5['cold_create_s'] * 1e3:.3f}",
                n,
            ]
        )
        rows.append(["langfuse 5: ... and its first span queued", ms(lf5["queued_s"]), "-", n])
        rows.append(["langfuse 5: ... and flush() returned", ms(lf5["exported_s"]), "-", n])
        labels += ["langfuse 5: create client", "langfuse 5: + first span flushed"]
        stats += [lf5["create_s"], lf5["exported_s"]]
    elif lf5:
        notes.append(f"langfuse 5: {lf5.get('error') or lf5.get('note')}")
    if "create_s" in lf2:
        rows.append(
            [
                "langfuse 2: create a client (new keys)",
                ms(lf2["create_s"]),
                f"{lf2['first_s'] * 1e3:.3f}",
                lf2["create_s"]["n"],
            ]
        )
        labels.append("langfuse 2: create client")
        stats.append(lf2["create_s"])
    elif lf2:
        notes.append(f"langfuse 2: {lf2.get('error') or lf2.get('note')}")
    md = [
        "Each tracemux measurement uses a destination with keys never seen before (a new"
        " tenant); the time includes building the `Langfuse(...)` destination. *Exported* is"
        " until `flush()` returns, after the loopback receiver answered. The first"
        " destination of a process also starts the export thread and loads the protobuf and"
        " HTTP modules: it is the *first in process* column, left out of the median. The SDK"
        " clients load the system CA bundle, as in production.",
        "",
        md_table(["", "ms: median (min-max)", "first in process, ms", "samples"], rows),
    ]
    if notes:
        md += ["", *[f"- {n}" for n in notes]]
    chart = bar_chart(
        out_dir / "newdest.png",
        labels,
        stats,
        title="Cost of a new destination / tenant (ms, log scale)",
        xlabel="ms",
        log=True,
        scale=1e3,
        highlight=[x.startswith("tracemux") for x in labels],
    )
    summary = []
    if "queued_s" in tm:
        q = tm["queued_s"]["median"] * 1e3
        anchor, ratio = "not measured", "-"
        if "create_s" in lf5:
            c = lf5["create_s"]["median"] * 1e3
            anchor, ratio = f"{c:.1f} ms (create a langfuse 5 client)", f"{q / c:.4f}x"
        summary.append(
            SummaryRow(
                "New Langfuse destination: first span queued",
                f"{q:.3f} ms",
                anchor,
                ratio,
                f"<= {TARGET_MS:g} ms",
                verdict(q <= TARGET_MS),
            )
        )
        e = tm["exported_s"]["median"] * 1e3
        anchor = "not measured"
        if "exported_s" in lf5:
            anchor = f"{lf5['exported_s']['median'] * 1e3:.1f} ms (langfuse 5 client + flush)"
        summary.append(
            SummaryRow(
                "New Langfuse destination: first span exported (loopback)",
                f"{e:.2f} ms",
                anchor,
                "-",
                "-",
                "info",
            )
        )
    return Section(TITLE, "\n".join(md), [chart], summary)
