"""TracingService and its handles: the tree that is recorded, nesting, errors, values."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime
import math
import threading
import uuid
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracemux
from tests.conftest import Recorder
from tracemux.destinations import Discard, SQLiteStore
from tracemux.model import trace_id_for
from tracemux.service import NOOP_SPAN


def by_name(store: SQLiteStore, run_id: str) -> dict[str, object]:
    return {s.name: s for s in store.spans(run_id)}


def test_sync_tree_is_recorded_with_parents_kinds_usage_and_logs(service, store):
    with service.trace_run(
        "RAG flow", user_id="u1", session_id="s1", project="p", inputs={"q": "hi"}, tags=["a"]
    ) as run:
        with run.span("Retriever", kind="retriever", inputs={"query": "hi"}) as span:
            span.add_log("found 3 documents", level="info", count=3)
            span.set_outputs({"docs": [1, 2, 3]})
        with run.span("ChatModel", kind="llm", inputs={"messages": []}) as llm:
            llm.set_usage(model="gpt-4o", input_tokens=120, output_tokens=40)
            llm.set_outputs({"text": "hello"})
            with run.span("inner-tool", kind="tool") as tool:  # nests under the current span
                tool.set_outputs("ok")
        run.set_outputs({"answer": "hello"})
    assert service.flush(10)

    [stored_run] = store.runs()
    assert (stored_run.name, stored_run.user_id, stored_run.session_id) == ("RAG flow", "u1", "s1")
    assert stored_run.project == "p" and stored_run.tags == ["a"]
    assert stored_run.status == "ok" and stored_run.span_count == 4
    assert (stored_run.input_tokens, stored_run.output_tokens) == (120, 40)
    assert stored_run.outputs == {"answer": "hello"}

    spans = by_name(store, run.run_id)
    root = spans["RAG flow"]
    assert root.parent_id is None and root.inputs == {"q": "hi"}
    assert spans["Retriever"].parent_id == root.span_id
    assert spans["Retriever"].kind == "retriever"
    assert spans["Retriever"].logs[0]["message"] == "found 3 documents"
    assert spans["Retriever"].logs[0]["fields"] == {"count": 3}
    assert spans["ChatModel"].usage == {
        "input_tokens": 120,
        "output_tokens": 40,
        "total_tokens": 160,
    }
    assert spans["ChatModel"].model == "gpt-4o"
    assert spans["inner-tool"].parent_id == spans["ChatModel"].span_id
    assert all(s.end_ns >= s.start_ns for s in spans.values())


async def test_async_nesting_across_gather_and_tasks(service, store):
    async def component(name: str) -> None:
        async with service.span(name, kind="tool") as span:
            await asyncio.sleep(0.001)
            async with service.span(f"{name}.inner", kind="parser"):
                await asyncio.sleep(0)
            span.set_outputs(name)

    async with service.trace_run("async flow") as run, run.span("fan-out", kind="chain"):
        await asyncio.gather(component("a"), component("b"), component("c"))
        await asyncio.create_task(component("d"))
    assert await service.aflush(10)

    spans = by_name(store, run.run_id)
    fan = spans["fan-out"]
    assert fan.parent_id == spans["async flow"].span_id
    for name in "abcd":
        assert spans[name].parent_id == fan.span_id
        assert spans[f"{name}.inner"].parent_id == spans[name].span_id
    assert len(spans) == 10


def test_thread_with_copied_context_nests(service, store):
    with service.trace_run("threaded") as run, run.span("parent") as parent:
        ctx = contextvars.copy_context()

        def work() -> None:
            with service.span("in-thread", kind="tool"):
                pass

        t = threading.Thread(target=ctx.run, args=(work,))
        t.start()
        t.join()
    assert service.flush(10)
    spans = by_name(store, run.run_id)
    assert spans["in-thread"].parent_id == spans["parent"].span_id == f"{parent.span_id:016x}"


def test_span_without_a_current_span_starts_a_run(service, store):
    with service.span("standalone", kind="agent") as run:
        pass
    assert service.flush(10)
    [stored] = store.runs()
    assert stored.run_id == run.run_id and stored.name == "standalone"
    assert store.spans(run.run_id)[0].kind == "agent"


def test_exception_is_recorded_and_reraised_unchanged(service, store):
    class Boom(Exception):
        pass

    error = Boom("kaput")
    with pytest.raises(Boom) as caught, service.trace_run("failing") as run:
        with run.span("ok step"):
            pass
        with run.span("bad step", kind="tool"):
            raise error
    assert caught.value is error
    assert service.flush(10)
    spans = by_name(store, run.run_id)
    bad = spans["bad step"]
    assert bad.status == "error"
    assert bad.error["type"] == "test_exception_is_recorded_and_reraised_unchanged.<locals>.Boom"
    assert bad.error["message"] == "kaput"
    assert "raise error" in bad.error["traceback"]
    assert spans["ok step"].status == "ok"
    assert store.run(run.run_id).status == "error"


def test_run_id_gives_deterministic_trace_id_and_otel_sized_ids(service):
    rid = str(uuid.uuid4())
    with service.trace_run("a", run_id=rid) as run, run.span("s") as span:
        pass
    assert run.run.trace_id == trace_id_for(rid) == uuid.UUID(rid).bytes
    assert len(run.run.trace_id) == 16
    assert trace_id_for("not-a-uuid") == trace_id_for("not-a-uuid")
    assert len(trace_id_for("not-a-uuid")) == 16
    assert 0 < span.span_id < 2**64 and span.parent_id == run.span_id


def test_values_are_snapshots(service, store):
    inputs = {"items": [1, 2]}
    outputs = {"answer": "first"}
    with service.trace_run("snap") as run:
        with run.span("s", inputs=inputs) as span:
            inputs["items"].append(3)
            span.set_outputs(outputs)
            outputs["answer"] = "changed after set_outputs"
        inputs["items"].append(4)
    assert service.flush(10)
    s = by_name(store, run.run_id)["s"]
    assert s.inputs == {"items": [1, 2]}
    assert s.outputs == {"answer": "first"}


class Hostile:
    """Raises from everything a serializer might touch."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __getattr__(self, name: str) -> object:
        raise RuntimeError("getattr")


@dataclasses.dataclass
class Point:
    x: int
    y: str


def test_any_python_object_is_accepted(service, store):
    class Model(pydantic.BaseModel):
        name: str
        when: datetime.datetime

    cyclic: dict[str, object] = {"a": 1}
    cyclic["self"] = cyclic
    uid = uuid.uuid4()
    value = {
        "model": Model(name="m", when=datetime.datetime(2024, 1, 2, 3, 4, 5)),
        "dc": Point(1, "p"),
        "bytes": b"\x00\xffraw",
        "text_bytes": b"hello",
        "when": datetime.datetime(2024, 1, 2),
        "uuid": uid,
        "exc": ValueError("bad"),
        "set": {3},
        "cycle": cyclic,
        "hostile": Hostile(),
        "nan": float("nan"),
        "big": 2**100,
        7: "int key",
    }
    with service.trace_run("objects") as run, run.span("s", inputs=value) as span:
        span.set_outputs(Hostile())
        span.set_metadata(cyclic)
        span.add_log(Hostile())
    assert service.flush(10)
    s = by_name(store, run.run_id)["s"]
    got = s.inputs
    assert got["model"] == {"name": "m", "when": "2024-01-02T03:04:05"}
    assert got["dc"] == {"x": 1, "y": "p"}
    assert got["text_bytes"] == "hello" and got["bytes"].startswith("base64:")
    assert got["uuid"] == str(uid)
    assert got["exc"] == {"type": "ValueError", "message": "bad"}
    assert got["set"] == [3]
    assert got["cycle"]["self"] == "<cycle>"
    assert "repr failed" in got["hostile"]
    assert got["big"] == str(2**100)
    assert got["7"] == "int key"
    assert "repr failed" in s.outputs
    assert s.metadata == {"a": 1, "self": "<cycle>"}
    assert len(s.logs) == 1


def test_big_values_are_truncated_with_a_marker(make_service, store):
    svc = make_service([store], max_value_bytes=4096)
    huge = "x" * 1_000_000
    with svc.trace_run("big") as run, run.span("s", inputs={"doc": huge}) as span:
        span.set_outputs(["y" * 3000] * 100)
    assert svc.flush(10)
    s = by_name(store, run.run_id)["s"]
    assert "truncated by tracemux" in s.inputs["doc"]
    assert len(s.inputs["doc"]) < 4096
    import orjson

    assert len(orjson.dumps(s.outputs)) <= 4096
    assert "truncated by tracemux" in orjson.dumps(s.outputs).decode()


def test_unknown_kind_is_recorded_as_custom(service, store):
    with service.trace_run("k") as run, run.span("s", kind="not-a-kind"):
        pass
    assert service.flush(10)
    assert by_name(store, run.run_id)["s"].kind == "custom"


def test_bad_destinations_are_a_configuration_error():
    with pytest.raises(TypeError, match="destinations"):
        tracemux.TracingService(destinations=["sqlite://nope"])  # type: ignore[list-item]


def test_calls_after_end_are_ignored(service, store):
    with service.trace_run("r") as run:
        span = run.span("s")
        span.end()
        span.set_outputs("late")
        span.add_log("late")
        span.end()
    assert service.flush(10)
    s = by_name(store, run.run_id)["s"]
    assert s.outputs is None and s.logs == []


def test_stats_report_counts_and_threads(service):
    before = service.stats()
    with service.trace_run("r") as run:
        for i in range(9):
            with run.span(f"s{i}"):
                pass
    assert service.flush(10)
    after = service.stats()
    assert after["recorded"] - before["recorded"] == 10
    assert after["exported"] - before["exported"] == 10
    assert after["dropped_total"] == before["dropped_total"]
    assert after["threads"] == 1
    assert after["queue_size"] == 0 and after["queue_bytes"] == 0
    assert service.shutdown(5)
    assert service.stats()["threads"] == 0


def test_get_service_is_created_once(monkeypatch, tmp_path):
    monkeypatch.setenv("TRACEMUX_DB", str(tmp_path / "default.db"))
    monkeypatch.setattr(tracemux.service, "_default_service", None)
    a = tracemux.get_service()
    b = tracemux.get_service()
    assert a is b
    assert a.destinations == (SQLiteStore(tmp_path / "default.db"),)


def test_an_internal_failure_is_logged_never_raised(service, monkeypatch, caplog):
    def broken(record):
        raise RuntimeError("queue exploded")

    with caplog.at_level("ERROR", logger="tracemux"):
        monkeypatch.setattr(service._worker, "submit", broken)
        with service.trace_run("r") as run:  # cannot queue its start: a no-op run
            run.span("s").end()
        assert run is NOOP_SPAN
        monkeypatch.undo()
        with service.trace_run("r2") as run:
            monkeypatch.setattr(service._worker, "submit", broken)
            with run.span("s") as span:
                span.set_usage(model="m", input_tokens=1, output_tokens=2)
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not start a run" in m for m in messages)
    assert any("could not queue a span" in m for m in messages)


def test_internal_errors_are_swallowed_counted_and_logged_once_per_interval(service, caplog):
    """tracemux's own failures never reach the caller: each is counted in stats() and
    logged with its traceback, at most once per kind and interval."""
    import logging

    from tracemux.ratelimit import rate_limited

    warn = rate_limited(logging.getLogger("tracemux.test_internal"))
    before = service.stats()["internal_errors"]
    with caplog.at_level("ERROR", logger="tracemux"):
        for _ in range(3):
            with warn.capture("boom", "tracemux: the test's step failed"):
                raise RuntimeError("boom")
    assert service.stats()["internal_errors"] == before + 3
    logged = [r for r in caplog.records if r.name == "tracemux.test_internal"]
    assert len(logged) == 1 and logged[0].exc_info is not None


# -- set_usage: the fast path for plain counts and the general one agree ----------------------

_counts = (
    st.none()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.booleans()
    | st.floats()
    | st.just(2**53)
    | st.just(2**53 + 1)
)


def _expected_usage(
    base: dict[str, Any] | None, values: list[tuple[str, Any]], total: Any
) -> dict[str, Any] | None:
    """What set_usage promises: finite numbers within ±2**53 (not bools) are kept, on top
    of what was recorded before; the total is the sum when not given."""
    usage = dict(base or {})
    for key, value in values:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value) or not -(2**53) <= value <= 2**53:
            continue
        usage[key] = value
    if total is None and "input_tokens" in usage and "output_tokens" in usage:
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    return usage or None


def test_set_usage_keeps_valid_counts_and_sums_the_total(make_service):
    svc = make_service([Discard("usage-test")])

    @settings(max_examples=200, deadline=None)
    @given(_counts, _counts, _counts, st.booleans())
    def check(inp: Any, out: Any, total: Any, twice: bool) -> None:
        with svc.trace_run("r") as run, run.span("llm", kind="llm") as span:
            base = None
            if twice:  # a second call adds to the first (the general path)
                span.set_usage(input_tokens=5, output_tokens=6)
                base = {"input_tokens": 5, "output_tokens": 6, "total_tokens": 11}
            span.set_usage(model="gpt-4o", input_tokens=inp, output_tokens=out, total_tokens=total)
            values = [("input_tokens", inp), ("output_tokens", out), ("total_tokens", total)]
            expected = _expected_usage(base, values, total)
            assert span.usage == expected
            assert list(span.usage or {}) == list(expected or {})  # the same key order
            assert span.model == "gpt-4o"

    check()
    assert svc.flush(10)


def test_what_a_span_holds_counts_against_the_memory_bound(make_service, received):
    """A span's size against the bound counts its captured values, its usage and model,
    logs and error; a root span also carries the run's shared fields."""
    svc = make_service([Recorder("sizes")])
    with svc.trace_run("r", tags=["t" * 1000], metadata={"m": "x" * 500}) as run:
        with run.span("plain", inputs={"q": "x" * 300}) as plain:
            plain.set_outputs("y" * 400)
        with run.span("full", inputs={"q": "x" * 300}) as full:
            full.set_outputs("y" * 400)
            full.set_usage(model="m" * 200, input_tokens=1, output_tokens=2, cached_tokens=3)
            full.add_log("l" * 700, extra="z" * 100)
            full.set_error(ValueError("e" * 900))
    assert svc.flush(10)
    spans = {s.name: s for s in received["sizes"]}
    plain, full, root = spans["plain"], spans["full"], spans["r"]
    assert plain.nbytes >= len(plain.inputs) + len(plain.outputs) > 700
    extra = full.nbytes - plain.nbytes
    assert extra >= 200 + 4 * len("input_tokens") + 700 + 100 + 2 * 900
    assert root.nbytes >= 1000 + 500  # the tags and run metadata live as long as the root


def test_log_lines_past_the_limit_are_counted_in_one_closing_line(make_service, received):
    from tracemux.service import MAX_LOGS_PER_SPAN

    svc = make_service([Recorder("logs")])
    with svc.trace_run("r") as run, run.span("chatty") as span:
        for i in range(MAX_LOGS_PER_SPAN + 7):
            span.add_log(f"line {i}")
    assert svc.flush(10)
    (chatty,) = [s for s in received["logs"] if s.name == "chatty"]
    assert len(chatty.logs) == MAX_LOGS_PER_SPAN + 1
    assert chatty.logs[-2].message == f"line {MAX_LOGS_PER_SPAN - 1}"
    last = chatty.logs[-1]
    assert last.level == "warning" and "7 more log lines dropped" in last.message
