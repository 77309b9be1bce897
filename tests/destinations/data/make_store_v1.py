"""Writes ``store_v1.db``: a store made by tracemux at schema 1, for the upgrade tests.

Run it with the code of schema 1 (commit 6fcedcb), not with today's::

    git archive 6fcedcb src | tar -x -C /tmp/v1
    PYTHONPATH=/tmp/v1/src .venv/bin/python tests/destinations/data/make_store_v1.py

Runs: "all-good" (ok), "went-on" (a tool failed and the run went on: schema 1 stored it as
"ok" with error_count 1; its chat model answered "hello" with gpt-4o-mini, 100/50 tokens)
and "failed" (the run raised).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import SCHEMA_VERSION

OUT = Path(__file__).with_name("store_v1.db")


def main() -> None:
    if SCHEMA_VERSION != 1:
        sys.exit(f"run this with the schema-1 code (this tracemux has schema {SCHEMA_VERSION})")
    OUT.unlink(missing_ok=True)
    svc = TracingService([SQLiteStore(OUT)])
    with svc.trace_run("all-good", inputs={"question": "hi"}):
        pass
    with svc.trace_run("went-on", inputs={"question": "greet me"}) as run:
        try:
            with run.span("Flaky", kind="tool"):
                raise TimeoutError("tool timed out")
        except TimeoutError:
            pass
        with run.span("ChatModel", kind="llm") as llm:
            llm.set_usage(model="gpt-4o-mini", input_tokens=100, output_tokens=50)
            llm.set_outputs({"answer": "hello"})
    try:
        with svc.trace_run("failed"):
            raise ValueError("boom")
    except ValueError:
        pass
    svc.shutdown(10)


if __name__ == "__main__":
    main()
