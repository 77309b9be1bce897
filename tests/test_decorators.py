"""@tracemux.traced on functions, coroutines, generators and async generators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

import tracemux
from tracemux import TracingService, traced
from tracemux.decorators import MAX_YIELDED
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import StoredSpan


@pytest.fixture
def svc(make_service: Callable[..., TracingService], store: SQLiteStore) -> TracingService:
    """A service writing to the test's own store (shut down after the test)."""
    return make_service([store])


def _only_run(svc: TracingService, store: SQLiteStore) -> list[StoredSpan]:
    assert svc.flush(10.0)
    runs = store.runs()
    assert len(runs) == 1, [r.name for r in runs]
    return store.spans(runs[0].run_id)


def _by_name(spans: list[StoredSpan]) -> dict[str, StoredSpan]:
    return {s.name: s for s in spans}


def test_function_bare_and_called_nested(svc: TracingService, store: SQLiteStore) -> None:
    @traced(kind="tool", service=svc)
    def lookup(city: str, *, units: str = "metric") -> dict[str, object]:
        return {"city": city, "temp": 21, "units": units}

    @traced(service=svc)
    def plan(day: str) -> str:
        weather = lookup("Lyon", units="si")
        return f"{day}: {weather['temp']}"

    assert plan("monday") == "monday: 21"
    spans = _by_name(_only_run(svc, store))
    assert set(spans) == {plan.__qualname__, lookup.__qualname__}
    root, child = spans[plan.__qualname__], spans[lookup.__qualname__]
    assert root.parent_id is None and root.kind == "chain"
    assert root.inputs == {"day": "monday"} and root.outputs == "monday: 21"
    assert child.parent_id == root.span_id and child.kind == "tool"
    assert child.inputs == {"city": "Lyon", "units": "si"}
    assert child.outputs == {"city": "Lyon", "temp": 21, "units": "si"}
    assert plan.__name__ == "plan"  # functools.wraps


def test_bare_decorator_uses_default_service(
    monkeypatch: pytest.MonkeyPatch, svc: TracingService, store: SQLiteStore
) -> None:
    monkeypatch.setattr(tracemux.service, "_default_service", svc)

    @traced
    def add(a: int, b: int) -> int:
        return a + b

    @traced("named")
    def named() -> None:
        return None

    with svc.trace_run("outer"):
        assert add(1, 2) == 3
        named()
    spans = _by_name(_only_run(svc, store))
    assert spans[add.__qualname__].inputs == {"a": 1, "b": 2}
    assert spans[add.__qualname__].outputs == 3
    assert spans[add.__qualname__].parent_id == spans["outer"].span_id
    assert spans["named"].parent_id == spans["outer"].span_id


def test_method_skips_self_and_capture_flags(svc: TracingService, store: SQLiteStore) -> None:
    class Client:
        token = "not recorded"

        @traced(kind="llm", service=svc)
        def ask(self, prompt: str) -> str:
            return prompt.upper()

        @classmethod
        @traced(service=svc)
        def build(cls, n: int) -> int:
            return n

        @traced(service=svc, capture_inputs=False, capture_outputs=False)
        def quiet(self, secret_arg: str) -> str:
            return secret_arg

    with svc.trace_run("run"):
        assert Client().ask("hi") == "HI"
        assert Client.build(3) == 3
        assert Client().quiet("x") == "x"
    spans = {s.name.rsplit(".", 1)[-1]: s for s in _only_run(svc, store)}
    assert spans["ask"].inputs == {"prompt": "hi"} and spans["ask"].kind == "llm"
    assert spans["build"].inputs == {"n": 3}
    assert spans["quiet"].inputs is None and spans["quiet"].outputs is None


def test_function_exception_recorded_and_reraised(svc: TracingService, store: SQLiteStore) -> None:
    @traced(service=svc)
    def boom(x: int) -> int:
        raise ValueError(f"bad {x}")

    with pytest.raises(ValueError, match="bad 7"):
        boom(7)
    (span,) = _only_run(svc, store)
    assert span.status == "error" and span.parent_id is None
    assert span.error is not None and span.error["type"] == "ValueError"
    assert "bad 7" in span.error["message"]
    assert span.inputs == {"x": 7}


async def test_async_function_nested_and_failing(svc: TracingService, store: SQLiteStore) -> None:
    @traced(kind="retriever", service=svc)
    async def fetch(query: str) -> list[str]:
        await asyncio.sleep(0)
        return [query, query + "!"]

    @traced(service=svc)
    async def fails() -> None:
        await asyncio.sleep(0)
        raise KeyError("missing")

    @traced(kind="agent", service=svc)
    async def agent(q: str) -> list[str]:
        docs = await fetch(q)
        with pytest.raises(KeyError):
            await fails()
        return docs

    assert await agent("q") == ["q", "q!"]
    assert await svc.aflush(10.0)
    (run,) = store.runs()
    spans = _by_name(store.spans(run.run_id))
    root = spans[agent.__qualname__]
    assert root.kind == "agent" and root.parent_id is None and root.status == "ok"
    assert spans[fetch.__qualname__].parent_id == root.span_id
    assert spans[fetch.__qualname__].outputs == ["q", "q!"]
    failed = spans[fails.__qualname__]
    assert failed.parent_id == root.span_id and failed.status == "error"
    assert failed.error is not None and failed.error["type"] == "KeyError"


def test_generator_exhausted_closed_and_failing(svc: TracingService, store: SQLiteStore) -> None:
    @traced(kind="tool", service=svc)
    def inner(i: int) -> int:
        return i * 10

    @traced(service=svc)
    def count(n: int) -> Iterator[int]:
        for i in range(n):
            yield inner(i)  # runs with the generator's span current

    @traced(service=svc)
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    @traced(service=svc)
    def broken() -> Iterator[int]:
        yield 1
        raise RuntimeError("stream broke")

    with svc.trace_run("gen run") as run:
        assert list(count(3)) == [0, 10, 20]
        it = endless()
        assert tracemux.current_span() is run  # nothing opened before the first next()
        assert [next(it) for _ in range(MAX_YIELDED + 5)][-1] == MAX_YIELDED + 4
        assert tracemux.current_span() is run  # the consumer's context is untouched
        it.close()
        got = []
        with pytest.raises(RuntimeError, match="stream broke"):
            for x in broken():
                got.append(x)
        assert got == [1]

    spans = _only_run(svc, store)
    by_name = _by_name(spans)
    root = by_name["gen run"]
    gen_span = by_name[count.__qualname__]
    assert gen_span.parent_id == root.span_id and gen_span.outputs == [0, 10, 20]
    assert gen_span.inputs == {"n": 3}
    inner_spans = [s for s in spans if s.name == inner.__qualname__]
    assert len(inner_spans) == 3
    assert all(s.parent_id == gen_span.span_id for s in inner_spans)
    closed = by_name[endless.__qualname__]
    assert closed.status == "ok" and closed.outputs == list(range(MAX_YIELDED))
    assert any("first 100" in entry["message"] for entry in closed.logs)
    failed = by_name[broken.__qualname__]
    assert failed.status == "error" and failed.outputs is None
    assert failed.error is not None and failed.error["type"] == "RuntimeError"


def test_generator_send_throw_and_return_value(svc: TracingService, store: SQLiteStore) -> None:
    @traced(service=svc)
    def echo() -> Iterator[str]:
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = "recovered"

    @traced(service=svc)
    def with_return() -> Iterator[int]:
        yield 1
        return "done"

    with svc.trace_run("run"):
        g = echo()
        assert next(g) == "ready"
        assert g.send("a") == "got a"
        assert g.throw(KeyError("k")) == "got recovered"
        g.close()

        def consume() -> Iterator[object]:
            result = yield from with_return()
            yield result

        assert list(consume()) == [1, "done"]

    spans = _by_name(_only_run(svc, store))
    assert spans[echo.__qualname__].outputs == ["ready", "got a", "got recovered"]
    assert spans[echo.__qualname__].status == "ok"
    assert spans[with_return.__qualname__].outputs == {"yielded": [1], "returned": "done"}


async def test_async_generator_exhausted_closed_and_failing(
    svc: TracingService, store: SQLiteStore
) -> None:
    @traced(kind="llm", service=svc)
    async def stream(prompt: str) -> AsyncIterator[str]:
        for word in prompt.split():
            await asyncio.sleep(0)
            yield word

    @traced(service=svc)
    async def endless() -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    @traced(service=svc)
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("lost")

    async with svc.trace_run("agen run") as run:
        assert [w async for w in stream("a b c")] == ["a", "b", "c"]
        agen = endless()
        assert [await agen.__anext__() for _ in range(3)] == [0, 1, 2]
        assert tracemux.current_span() is run
        await agen.aclose()
        with pytest.raises(ConnectionError):
            async for _ in broken():
                pass

    assert await svc.aflush(10.0)
    (stored_run,) = store.runs()
    spans = _by_name(store.spans(stored_run.run_id))
    root = spans["agen run"]
    s = spans[stream.__qualname__]
    assert s.parent_id == root.span_id and s.kind == "llm" and s.outputs == ["a", "b", "c"]
    assert s.inputs == {"prompt": "a b c"}
    e = spans[endless.__qualname__]
    assert e.status == "ok" and e.outputs == [0, 1, 2]
    b = spans[broken.__qualname__]
    assert b.status == "error" and b.error is not None and b.error["type"] == "ConnectionError"


async def test_concurrent_async_calls_keep_their_own_parents(
    svc: TracingService, store: SQLiteStore
) -> None:
    @traced(kind="tool", service=svc)
    async def step(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 3))
        return i

    @traced(service=svc)
    async def flow(i: int) -> int:
        return await step(i)

    await asyncio.gather(*(flow(i) for i in range(20)))
    assert await svc.aflush(10.0)
    runs = store.runs(limit=100)
    assert len(runs) == 20
    for run in runs:
        spans = store.spans(run.run_id)
        assert len(spans) == 2
        root = next(s for s in spans if s.parent_id is None)
        child = next(s for s in spans if s.parent_id is not None)
        assert child.parent_id == root.span_id
        assert child.inputs == root.inputs and child.outputs == root.outputs


def test_disabled_service_calls_through(store: SQLiteStore) -> None:
    off = TracingService([store], disabled=True)

    @traced(service=off)
    def f(x: int) -> int:
        return x + 1

    @traced(service=off)
    def g() -> Iterator[int]:
        yield from (1, 2)

    @traced(service=off)
    async def ag() -> AsyncIterator[int]:
        yield 1

    async def collect() -> list[int]:
        return [x async for x in ag()]

    assert f(1) == 2 and list(g()) == [1, 2] and asyncio.run(collect()) == [1]
    assert store.runs() == []


def test_rejects_non_callables() -> None:
    with pytest.raises(TypeError):
        traced(kind="tool")(42)  # type: ignore[type-var]
