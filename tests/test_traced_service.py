"""``@traced`` records with the service you built (issue 14, item 3).

``@svc.traced`` and ``@traced(service=svc)`` start runs of ``svc``; a decorated function
called inside a run records into that run, whatever service it was decorated with, and
without creating the process-wide default service (its store would mix into stats()).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

import tracemux
from tracemux import TracingService
from tracemux.destinations import SQLiteStore


@pytest.fixture
def no_default_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the process-wide default service is looked up."""

    def forbidden() -> TracingService:
        raise AssertionError("the default service was used")

    monkeypatch.setattr("tracemux.decorators.default_service", forbidden)


def spans_by_run(store: SQLiteStore) -> dict[str, list[str]]:
    return {
        run.name or "": sorted(s.name.rpartition(".")[2] for s in store.spans(run.run_id))
        for run in store.runs(limit=100)
    }


def test_svc_traced_starts_runs_of_that_service(
    tmp_path: Path, make_service: Callable[..., TracingService], no_default_service: None
) -> None:
    store = SQLiteStore(tmp_path / "mine.db")
    svc = make_service([store])

    @svc.traced
    def plain(x: int) -> int:
        return x + 1

    @svc.traced("renamed", kind="tool")
    async def coro(x: int) -> int:
        return x * 2

    @tracemux.traced(service=svc)
    def gen(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    assert plain(1) == 2
    assert asyncio.run(coro(4)) == 8
    assert list(gen(2)) == [0, 1]
    assert svc.flush(10)
    runs = {r.name: r for r in store.runs(limit=10)}
    prefix = "test_svc_traced_starts_runs_of_that_service.<locals>."
    assert set(runs) == {f"{prefix}plain", "renamed", f"{prefix}gen"}
    (span,) = store.spans(runs["renamed"].run_id)
    assert span.kind == "tool" and span.inputs == {"x": 4} and span.outputs == 8


def test_a_plain_traced_function_inside_a_run_records_into_that_run(
    tmp_path: Path, make_service: Callable[..., TracingService], no_default_service: None
) -> None:
    store = SQLiteStore(tmp_path / "mine.db")
    svc = make_service([store])

    @tracemux.traced
    def retrieve(q: str) -> list[str]:
        return [q]

    @tracemux.traced(kind="llm")
    async def answer(q: str) -> str:
        return retrieve(q)[0].upper()

    with svc.trace_run("flow"):
        retrieve("a")

    async def main() -> None:
        async with svc.trace_run("async flow"):
            await answer("b")

    asyncio.run(main())
    assert svc.flush(10)
    assert spans_by_run(store) == {
        "flow": ["flow", "retrieve"],
        "async flow": ["answer", "async flow", "retrieve"],
    }
