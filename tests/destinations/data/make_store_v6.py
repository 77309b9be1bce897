"""Writes ``store_v6.db`` and ``store_v6_readers.json``: a store made by tracemux at schema 6
(the last one with a WITHOUT ROWID spans table), and what every reader returned from it
then, for the upgrade test (tests/destinations/test_sqlite_upgrade.py).

Run it with the code of schema 6 (commit 93670b2), not with today's::

    git archive 93670b2 src | tar -x -C /tmp/v6
    PYTHONPATH=/tmp/v6/src .venv/bin/python tests/destinations/data/make_store_v6.py

Runs (ids fixed): "all-good" (ok, session s1), "went-on" (a tool failed, the run went on:
partial; a chat model with usage and a log line; session s1), "failed" (the run raised),
and "still-running" (its root never ended: running, with a finished child).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import SCHEMA_VERSION
from tracemux.transfer import export_runs

OUT = Path(__file__).with_name("store_v6.db")
READERS = Path(__file__).with_name("store_v6_readers.json")
SEARCHES = ("timed", "hello", "greet", "boom", "rotat", "all-good", "nothing-matches")


def record(svc: TracingService) -> None:
    with svc.trace_run(
        "all-good", run_id="run-all-good", user_id="u1", session_id="s1", tags=["a", "b"],
        metadata={"flow_id": "f1"}, project="p1", inputs={"question": "hi"},
    ) as run:  # fmt: skip
        run.set_outputs({"answer": "rotated keys"})
    with svc.trace_run(
        "went-on", run_id="run-went-on", user_id="u1", session_id="s1", project="p1",
        inputs={"question": "greet me"},
    ) as run:  # fmt: skip
        try:
            with run.span("Flaky", kind="tool"):
                raise TimeoutError("tool timed out")
        except TimeoutError:
            pass
        with run.span("ChatModel", kind="llm", inputs=[{"role": "user", "content": "hi"}]) as llm:
            llm.set_usage(model="gpt-4o-mini", input_tokens=100, output_tokens=50)
            llm.add_log("called the model", attempt=1)
            llm.set_outputs({"answer": "hello"})
    try:
        with svc.trace_run("failed", run_id="run-failed", user_id="u2"):
            raise ValueError("boom")
    except ValueError:
        pass
    run = svc.trace_run("still-running", run_id="run-still-running", session_id="s2")
    run.span("Step", kind="tool", inputs={"x": 1}).end()
    assert svc.flush(10)


def readers(store: SQLiteStore) -> dict[str, Any]:
    """What every reader returns (as JSON)."""
    runs = store.runs(100)
    ids = [r.run_id for r in runs]
    start = min(r.start_ns for r in runs)
    out: dict[str, Any] = {
        "runs": [r.to_dict() for r in runs],
        "runs_error": [r.run_id for r in store.runs(100, status="error")],
        "runs_user": [r.run_id for r in store.runs(100, user_id="u1")],
        "count_runs": store.count_runs(),
        "pages": {
            f"{sort}/{desc}": [
                r.run_id for r in store.runs_page(100, sort=sort, descending=desc).runs
            ]
            for sort in ("start", "duration", "tokens", "spans")
            for desc in (True, False)
        },
        "search": {q: sorted(r.run_id for r in store.runs(100, search=q)) for q in SEARCHES},
        "spans": {i: [s.to_dict() for s in store.spans(i)] for i in ids},
        "match_runs": [r.run_id for r in store.match_runs("run-")],
        "usage_by_run": store.usage_by_run(ids),
        "sessions": [s.to_dict() for s in store.sessions()],
        "count_sessions": store.count_sessions(),
        "session_runs": [r.run_id for r in store.session_runs("s1")],
        "usage_by_session": store.usage_by_session(["s1", "s2"]),
        "flows": store.flows(),
    }
    for step, name in ((60_000_000_000, "hour"), (86_400_000_000_000, "day")):
        data = store.dashboard_data(start - 3_600_000_000_000, start + 3_600_000_000_000, step)
        out[f"dashboard_{name}"] = {
            "grain_ns": data.grain_ns,
            "runs": sorted(data.runs),
            "figures": sorted(data.figures, key=repr),
            "models": sorted(data.models, key=repr),
        }
    buf = io.BytesIO()
    export_runs(store, sorted(runs, key=lambda r: r.run_id), buf, "jsonl")
    out["export_jsonl"] = buf.getvalue().decode()
    return json.loads(json.dumps(out))  # tuples as lists, as the test compares them


def main() -> None:
    if SCHEMA_VERSION != 6:
        sys.exit(f"run this with the schema-6 code (this tracemux has schema {SCHEMA_VERSION})")
    OUT.unlink(missing_ok=True)
    svc = TracingService([SQLiteStore(OUT)])
    record(svc)
    svc.shutdown(10)
    READERS.write_text(json.dumps(readers(SQLiteStore(OUT)), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
