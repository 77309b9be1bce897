"""The langfuse 2 half of the benchmarks, run inside the ``langfuse2`` side venv.

    <side venv python> -m tracemux.bench.langfuse2_side TASK PARAMS_JSON RESULT_PATH

langfuse 2.x cannot share an environment with langfuse 5, so the scenarios run this module
with the side venv's interpreter (tracemux is installed there too) and read the JSON it
writes. Tasks:

- ``hotpath``: the bare floor, span create + end, generation create + end (usage), all
  interleaved in this process (compare with other processes through the floor);
- ``threads_per_run``: a new client per run, as the seed's tracing service did;
- ``threads_pooled``: one client per tenant behind :class:`tracemux.clients.SharedClients`;
- ``create``: what creating one client costs.

Every client points at a closed loopback port.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from tracemux.bench.common import (
    INPUTS,
    MESSAGES,
    MODEL,
    OUTPUTS,
    REPLY,
    USAGE_IN,
    USAGE_OUT,
    Case,
    closed_url,
    dist_version,
    measure_round_robin,
    quiet_loggers,
    summarize,
    write_result,
)


def _langfuse() -> Any:
    quiet_loggers("langfuse", "backoff", "httpx", "urllib3")
    from langfuse import Langfuse

    return Langfuse


def _creds(i: int, host: str) -> dict[str, str]:
    return {"public_key": f"pk-lf-tenant-{i}", "secret_key": f"sk-lf-tenant-{i}", "host": host}


def hotpath(params: dict[str, Any]) -> dict[str, Any]:
    """µs per span of the floor, a span and a generation, interleaved."""
    import queue

    Langfuse = _langfuse()
    lf = Langfuse(**_creds(0, closed_url()))
    holder = [queue.SimpleQueue()]  # type: ignore[var-annotated]
    tn = time.time_ns

    def floor(n: int) -> None:
        put = holder[0].put
        for _ in range(n):
            put({"start": tn(), "end": tn()})

    def floor_drain() -> None:
        holder[0] = queue.SimpleQueue()

    def span_loop(n: int) -> None:
        trace = lf.trace(name="bench run")
        for _ in range(n):
            s = trace.span(name="step", input=INPUTS)
            s.end(output=OUTPUTS)

    def llm_loop(n: int) -> None:
        trace = lf.trace(name="bench run")
        usage = {"input": USAGE_IN, "output": USAGE_OUT, "total": USAGE_IN + USAGE_OUT}
        for _ in range(n):
            g = trace.generation(name="chat", model=MODEL, input=MESSAGES)
            g.end(output=REPLY, usage=usage)

    cases = [
        Case("langfuse2.floor", floor, floor_drain, max_n=2_000_000),
        # the SDK's queue holds 100,000 events (2 per span): stay well below it
        Case("langfuse2.span", span_loop, max_n=5_000),
        Case("langfuse2.llm", llm_loop, max_n=5_000),
    ]
    measured = measure_round_robin(cases, int(params["repeats"]), float(params["target_s"]))
    return {"cases": measured}


def _threads(params: dict[str, Any], pooled: bool) -> dict[str, Any]:
    Langfuse = _langfuse()
    host = closed_url()
    checkpoints = set(params["checkpoints"])
    tenants = int(params.get("tenants", 20))
    base = threading.active_count()
    pool = None
    if pooled:
        from tracemux.clients import SharedClients

        pool = SharedClients(lambda cfg: Langfuse(**cfg), lambda c: c.shutdown(), max_size=tenants)
    clients = []  # the per-run clients stay referenced, as the leaked ones were
    runs, extra = [], []
    t0 = time.perf_counter()
    for i in range(1, max(checkpoints) + 1):
        if pool is not None:
            client = pool.get(_creds(i % tenants, host))
        else:
            client = Langfuse(**_creds(i % tenants, host))
            clients.append(client)
        trace = client.trace(name=f"flow-{i}")
        span = trace.span(name="step", input=INPUTS)
        span.end(output=OUTPUTS)
        if i in checkpoints:
            runs.append(i)
            extra.append(threading.active_count() - base)
    return {"runs": runs, "extra": extra, "seconds": time.perf_counter() - t0}


def create(params: dict[str, Any]) -> dict[str, Any]:
    """Seconds to create one client, each with new keys (the real CA bundle is loaded); the
    first of the process is reported apart."""
    Langfuse = _langfuse()
    host = closed_url()
    times = []
    for k in range(int(params["count"])):
        t0 = time.perf_counter()
        Langfuse(**_creds(1000 + k, host))
        times.append(time.perf_counter() - t0)
    return {"create_s": summarize(times[1:] or times), "first_s": times[0]}


TASKS = {
    "hotpath": hotpath,
    "threads_per_run": lambda p: _threads(p, pooled=False),
    "threads_pooled": lambda p: _threads(p, pooled=True),
    "create": create,
}


def main(argv: list[str]) -> None:
    task, params_json, result_path = argv
    try:
        result = TASKS[task](json.loads(params_json))
        result["langfuse2_version"] = dist_version("langfuse") or "?"
    except Exception:
        import traceback

        result = {"error": f"langfuse 2 task {task} failed", "stderr": traceback.format_exc()}
    write_result(result_path, result)


if __name__ == "__main__":
    main(sys.argv[1:])
