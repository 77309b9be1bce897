"""The public context API: tracemux.current_span / use_span / attach / detach."""

from __future__ import annotations

import asyncio
import contextvars

import tracemux
from tracemux.destinations import SQLiteStore


def parents(store: SQLiteStore, run_id: str) -> dict[str, str | None]:
    spans = store.spans(run_id)
    names = {s.span_id: s.name for s in spans}
    return {s.name: names.get(s.parent_id) for s in spans}


def test_use_span_makes_a_span_current_and_work_nests_under_it(service, store) -> None:
    assert tracemux.current_span() is None
    with service.trace_run("flow") as run:
        step = run.span("step")  # opened, not entered: not current
        assert tracemux.current_span() is run
        with tracemux.use_span(step) as used:
            assert used is step
            assert tracemux.current_span() is step
            with service.span("child"):
                pass
        assert tracemux.current_span() is run  # restored; step is still open
        assert not step.ended
        step.end()
    assert tracemux.current_span() is None
    assert service.flush(10)
    assert parents(store, run.run_id) == {"flow": None, "step": "flow", "child": "step"}


def test_attach_and_detach_carry_a_span_across_callbacks(service, store) -> None:
    with service.trace_run("flow") as run:
        token = tracemux.attach(None)  # no span current: a new run starts
        assert tracemux.current_span() is None
        tracemux.detach(token)
        assert tracemux.current_span() is run


def test_detach_never_raises(service) -> None:
    """A token detached in another context (a callback on another task) is ignored, and
    so is None: tracing never raises into the caller."""
    with service.trace_run("flow") as run:
        token = tracemux.attach(run)
        contextvars.copy_context().run(tracemux.detach, token)  # another context: ignored
        tracemux.detach(token)
        tracemux.detach(None)


def test_each_task_has_its_own_current_span(service) -> None:
    async def main() -> list[object]:
        with service.trace_run("flow") as run:

            async def child(name: str) -> object:
                with tracemux.use_span(run.span(name)) as span:
                    await asyncio.sleep(0)
                    seen = tracemux.current_span()
                    span.end()
                    return seen is span

            return await asyncio.gather(child("a"), child("b"))

    assert asyncio.run(main()) == [True, True]
