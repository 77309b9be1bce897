"""tracemux.integrations.langflow.TracingService, exercised the way Langflow tests its own."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import random
import statistics
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest

from tests.integrations.support import MemoryDestination, tree
from tracemux import TracingService as CoreService
from tracemux import current_span, traced
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import StoredSpan
from tracemux.integrations.langflow import TracingService


@pytest.fixture
def core(make_service: Callable[..., CoreService], store: SQLiteStore) -> CoreService:
    """The tracemux service behind the Langflow-shaped one (shut down after the test)."""
    return make_service([store])


@pytest.fixture
def tracing_service(core: CoreService) -> TracingService:
    return TracingService(core, deactivated=False)


@pytest.fixture
def mock_component() -> MagicMock:
    component = MagicMock()
    component._vertex = MagicMock()
    component._vertex.id = "test_vertex_id"
    component.trace_type = "chain"
    return component


class Component:
    """A duck-typed Langflow component: ``_vertex.id`` and ``trace_type``."""

    trace_type = "chain"

    def __init__(self, vertex_id: str) -> None:
        self._vertex = SimpleNamespace(id=vertex_id)


class ChatInput(Component):
    """A sync component: Langflow runs its build in a worker thread."""

    def build(self, text: str) -> str:
        return normalize(text)


@traced(kind="parser")
def normalize(text: str) -> str:
    return text.strip().lower()


class ModelComponent(Component):
    """An async component calling a LangChain chain with the service's callbacks."""

    trace_type = "llm"

    async def build(self, tracing: TracingService, text: str) -> str:
        from langchain_core.language_models.fake_chat_models import FakeListChatModel
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate

        chain = (
            ChatPromptTemplate.from_messages([("human", "Answer: {q}")])
            | FakeListChatModel(responses=[f"echo {text}"])
            | StrOutputParser()
        )
        return await chain.ainvoke(
            {"q": text}, config={"callbacks": tracing.get_langchain_callbacks()}
        )


class BrokenTool(Component):
    trace_type = "tool"

    async def build(self) -> None:
        await asyncio.sleep(0)
        raise ValueError("Test exception")


def by_name(store: SQLiteStore, run_id: str) -> dict[str, StoredSpan]:
    return {s.name: s for s in store.spans(run_id)}


async def test_start_end_tracers(tracing_service: TracingService, core: CoreService, store) -> None:
    run_id = uuid.uuid4()
    flow_id = uuid.uuid4()
    await tracing_service.start_tracers(
        run_id, "test_run", "test_user", "test_session", "test_project", flow_id=flow_id
    )
    assert tracing_service.project_name == "test_project"
    root = current_span()
    assert root is not None and root.run_id == str(run_id)
    await tracing_service.end_tracers({"output_key": "output_value"})
    assert current_span() is None and tracing_service.project_name is None
    assert await core.aflush(10)
    (run,) = store.runs()
    assert run.run_id == str(run_id) and run.name == "test_run"
    assert (run.user_id, run.session_id, run.project) == (
        "test_user",
        "test_session",
        "test_project",
    )
    assert run.metadata == {"flow_id": str(flow_id)}
    assert run.status == "ok" and run.end_ns is not None
    assert run.outputs == {"output_key": "output_value"}


async def test_trace_component(
    tracing_service: TracingService, core, store, mock_component
) -> None:
    run_id = uuid.uuid4()
    await tracing_service.start_tracers(run_id, "test_run", "test_user", "test_session")
    trace_name = "test_component"
    inputs = {"input_key": "input_value", "api_key": "sk-abcdefghijklmnop"}
    metadata = {"metadata_key": "metadata_value"}
    async with tracing_service.trace_component(mock_component, trace_name, inputs, metadata) as ts:
        assert ts is tracing_service
        ts.add_log(trace_name, {"name": "test_log", "message": "test log", "type": "text"})
        ts.add_log(trace_name, {"name": "structured", "message": {"rows": 2}, "type": "object"})
        ts.set_outputs(trace_name, {"output_key": "output_value"})
        ts.set_outputs(
            trace_name,
            {"second_key": 2},
            {"output_metadata_key": "output_metadata_value"},
        )
    await tracing_service.end_tracers({"final_output": "test_final_output"})
    assert await core.aflush(10)
    spans = by_name(store, str(run_id))
    comp = spans[trace_name]
    assert comp.parent_id == spans["test_run"].span_id and comp.kind == "chain"
    assert comp.inputs == {"input_key": "input_value", "api_key": "[masked]"}
    assert comp.outputs == {"output_key": "output_value", "second_key": 2}
    assert comp.metadata == {
        "metadata_key": "metadata_value",
        "component_id": "test_vertex_id",
        "output_metadata_key": "output_metadata_value",
    }
    assert [(entry["message"], entry["level"]) for entry in comp.logs] == [
        ("test log", "info"),
        ("structured", "info"),
    ]
    assert comp.logs[0]["fields"] == {"name": "test_log", "type": "text"}
    assert comp.logs[1]["fields"]["value"] == {"rows": 2}


async def test_trace_component_with_exception(
    tracing_service: TracingService, core, store, mock_component
) -> None:
    run_id = uuid.uuid4()
    await tracing_service.start_tracers(run_id, "test_run", "test_user", "test_session")
    with pytest.raises(ValueError, match="Test exception"):
        async with tracing_service.trace_component(mock_component, "test_component", {}):
            raise ValueError("Test exception")
    await tracing_service.end_tracers({})
    assert await core.aflush(10)
    comp = by_name(store, str(run_id))["test_component"]
    assert comp.status == "error" and comp.error["type"] == "ValueError"


async def test_a_run_ended_without_its_error_fails_with_the_component_that_raised(
    tracing_service: TracingService, core: CoreService, store: SQLiteStore, caplog
) -> None:
    """langflow-base's build endpoint (the UI's) catches a component's exception, ends the
    run's traces with no error, then again from a background task with the error: the run
    fails with the component's error, and the second call is expected, not warned about."""
    run_id = uuid.uuid4()
    await tracing_service.start_tracers(run_id, "ui build", "user-1", "build-session")
    async with tracing_service.trace_component(Component("ChatInput-1"), "ChatInput-1", {}):
        pass
    failure: ValueError | None = None
    try:
        async with tracing_service.trace_component(BrokenTool("Tool-2"), "Tool-2", {}):
            await BrokenTool("Tool-2").build()
    except ValueError as exc:
        failure = exc
    assert failure is not None
    # the background task runs in a copy of the context taken before the first call
    later = contextvars.copy_context()
    with caplog.at_level("DEBUG", logger="tracemux"):
        await tracing_service.end_tracers({"flow_name": "ui build"})
        await later.run(
            asyncio.create_task,
            tracing_service.end_tracers({"flow_name": "ui build"}, error=failure),
        )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert await core.aflush(10)
    (run,) = store.runs()
    assert run.status == "error" and run.error is not None
    assert run.error["type"] == "ValueError" and run.error["message"] == str(failure)
    assert by_name(store, str(run_id))["Tool-2"].status == "error"


async def test_a_nested_component_error_its_parent_handled_does_not_fail_the_run(
    tracing_service: TracingService, core: CoreService, store: SQLiteStore
) -> None:
    """Only a component directly under the run stops it: one raising inside another
    component (a tool of an agent, say) that handles the error leaves the run going."""
    run_id = uuid.uuid4()
    await tracing_service.start_tracers(run_id, "agent flow", None, None)
    async with tracing_service.trace_component(Component("Agent-1"), "Agent-1", {}):
        with pytest.raises(ValueError):
            async with tracing_service.trace_component(BrokenTool("Tool-2"), "Tool-2", {}):
                await BrokenTool("Tool-2").build()
    await tracing_service.end_tracers({})
    assert await core.aflush(10)
    (run,) = store.runs()
    assert run.status == "partial" and run.error is None and run.error_count == 1


async def test_flow_with_sync_async_and_failing_components(
    tracing_service: TracingService, core: CoreService, store: SQLiteStore
) -> None:
    """A whole flow as Langflow's graph drives it: the recorded tree, the error, the end."""
    run_id, flow_id = uuid.uuid4(), uuid.uuid4()
    await tracing_service.start_tracers(
        run_id, "Memory Chatbot", "user-1", "session-1", "Langflow", flow_id=flow_id
    )

    chat_input = ChatInput("ChatInput-a1")
    inputs = {"input_value": "  Hello World ", "openai_api_key": "sk-live-0123456789abcdef"}
    async with tracing_service.trace_component(chat_input, "ChatInput-a1", inputs) as ts:
        text = await asyncio.to_thread(chat_input.build, inputs["input_value"])
        ts.add_log("ChatInput-a1", {"name": "received", "message": text, "type": "text"})
        ts.set_outputs("ChatInput-a1", {"message": text})

    model = ModelComponent("OpenAIModel-b2")
    async with tracing_service.trace_component(
        model, "OpenAIModel-b2", {"input_value": text}, {"display_name": "OpenAI"}
    ) as ts:
        reply = await model.build(ts, text)
        ts.set_outputs("OpenAIModel-b2", {"text_output": reply}, {"model": "fake"})

    broken = BrokenTool("Tool-c3")
    failure: ValueError | None = None
    try:
        async with tracing_service.trace_component(broken, "Tool-c3", {"query": text}):
            await broken.build()
    except ValueError as exc:
        failure = exc
    assert failure is not None

    await tracing_service.end_tracers({"result": reply}, error=failure)
    assert reply == "echo hello world"
    assert await core.aflush(10)

    (run,) = store.runs()
    assert run.run_id == str(run_id) and run.status == "error" and run.end_ns is not None
    assert run.error["type"] == "ValueError" and run.outputs == {"result": reply}
    assert tree(store, run.run_id) == [
        (0, "chain", "Memory Chatbot"),
        (1, "chain", "ChatInput-a1"),
        (2, "parser", normalize.__qualname__),  # ran in a worker thread, context copied
        (1, "llm", "OpenAIModel-b2"),
        (2, "chain", "RunnableSequence"),
        (3, "prompt", "ChatPromptTemplate"),
        (3, "llm", "FakeListChatModel"),
        (3, "parser", "StrOutputParser"),
        (1, "tool", "Tool-c3"),
    ]
    spans = by_name(store, run.run_id)
    chat = spans["ChatInput-a1"]
    assert chat.inputs == {"input_value": "  Hello World ", "openai_api_key": "[masked]"}
    assert chat.outputs == {"message": "hello world"}
    assert chat.metadata == {"component_id": "ChatInput-a1"}
    assert chat.logs[0]["message"] == "hello world"
    llm = spans["OpenAIModel-b2"]
    assert llm.outputs == {"text_output": "echo hello world"}
    assert llm.metadata == {
        "display_name": "OpenAI",
        "component_id": "OpenAIModel-b2",
        "model": "fake",
    }
    assert spans["FakeListChatModel"].inputs == [{"role": "user", "content": "Answer: hello world"}]
    tool = spans["Tool-c3"]
    assert tool.status == "error" and tool.error["message"] == "Test exception"
    assert all(s.status == "ok" for n, s in spans.items() if n not in ("Tool-c3", "Memory Chatbot"))


async def test_get_langchain_callbacks(tracing_service: TracingService, mock_component) -> None:
    from tracemux.integrations.langchain import CallbackHandler

    assert tracing_service.get_langchain_callbacks() == []  # no run in context
    await tracing_service.start_tracers(uuid.uuid4(), "test_run", None, None)
    (outside,) = tracing_service.get_langchain_callbacks()
    assert isinstance(outside, CallbackHandler) and outside._parent is current_span()
    async with tracing_service.trace_component(mock_component, "comp", {}):
        (inside,) = tracing_service.get_langchain_callbacks()
        assert inside._parent is current_span() and inside._parent.name == "comp"
    await tracing_service.end_tracers({})


@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_deactivated_tracing(
    how: str, core: CoreService, store: SQLiteStore, mock_component, monkeypatch
) -> None:
    if how == "environment":
        monkeypatch.setenv("TRACEMUX_DISABLED", "1")
        tracing_service = TracingService(core)
    else:
        tracing_service = TracingService(core, deactivated=True)
    assert tracing_service.deactivated
    await tracing_service.start_tracers(uuid.uuid4(), "test_run", "u", "s")
    async with tracing_service.trace_component(mock_component, "comp", {"a": 1}) as ts:
        assert ts is tracing_service
        ts.add_log("comp", {"name": "n", "message": "m", "type": "text"})
        ts.set_outputs("comp", {"b": 2})
        assert ts.get_langchain_callbacks() == []
        assert current_span() is None
    await tracing_service.end_tracers({"final": 1})
    assert await core.aflush(10)
    assert store.runs() == []


async def test_misuse_is_ignored_not_raised(
    tracing_service: TracingService, core, store, mock_component
) -> None:
    await tracing_service.end_tracers({})  # no run
    tracing_service.set_outputs("nothing", {"a": 1})
    tracing_service.add_log("nothing", {"message": "m"})
    async with tracing_service.trace_component(mock_component, "orphan", {}) as ts:
        assert ts is tracing_service
    await tracing_service.start_tracers(uuid.uuid4(), "outer", None, None)
    tracing_service.set_outputs("not-open", {"a": 1})
    await tracing_service.end_tracers({"ok": True})
    await tracing_service.end_tracers({"twice": True})
    assert await core.aflush(10)
    (run,) = store.runs()
    assert run.name == "outer" and run.outputs == {"ok": True} and run.span_count == 1


async def test_sub_flow_restores_the_parent_run(
    tracing_service: TracingService, core: CoreService, store: SQLiteStore
) -> None:
    await tracing_service.start_tracers(uuid.uuid4(), "parent flow", None, None)
    async with tracing_service.trace_component(Component("RunFlow-1"), "RunFlow-1", {}):
        await tracing_service.start_tracers(uuid.uuid4(), "sub flow", None, None)
        async with tracing_service.trace_component(Component("Inner-1"), "Inner-1", {}):
            pass
        await tracing_service.end_tracers({"sub": 1})
        assert current_span() is not None and current_span().name == "RunFlow-1"
    async with tracing_service.trace_component(Component("After-1"), "After-1", {}):
        pass
    await tracing_service.end_tracers({"parent": 1})
    assert await core.aflush(10)
    runs = {r.name: r for r in store.runs()}
    assert [n for _, _, n in tree(store, runs["parent flow"].run_id)] == [
        "parent flow",
        "RunFlow-1",
        "After-1",
    ]
    assert [n for _, _, n in tree(store, runs["sub flow"].run_id)] == ["sub flow", "Inner-1"]


async def run_flow(tracing: TracingService, i: int, rng: random.Random) -> None:
    """One small flow: three components, with awaits that interleave with other flows."""
    await tracing.start_tracers(uuid.uuid4(), f"flow-{i}", f"user-{i}", f"session-{i}")
    for j in range(3):
        comp = Component(f"C-{i}-{j}")
        async with tracing.trace_component(comp, f"C-{i}-{j}", {"flow": i, "step": j}) as ts:
            await asyncio.sleep(rng.random() * 0.002)
            with current_span().span(f"inner-{i}-{j}", kind="tool"):  # type: ignore[union-attr]
                await asyncio.sleep(0)
            ts.set_outputs(f"C-{i}-{j}", {"flow": i})
    await tracing.end_tracers({"flow": i})


async def test_concurrent_flows_stay_separate(
    tracing_service: TracingService, core: CoreService, store: SQLiteStore
) -> None:
    rng = random.Random(5)
    await asyncio.gather(*(run_flow(tracing_service, i, rng) for i in range(200)))
    assert await core.aflush(20)
    runs = store.runs(limit=1000)
    assert len(runs) == 200
    for run in runs:
        i = run.name.split("-")[1]
        spans = store.spans(run.run_id)
        assert len(spans) == 7, run.name
        assert run.user_id == f"user-{i}" and run.status == "ok"
        foreign = [
            s.name
            for s in spans
            if (s.name != run.name and f"-{i}-" not in s.name)
            or (s.inputs is not None and s.inputs.get("flow") != int(i))
        ]
        assert not foreign, (run.name, foreign)
        shape = tree(store, run.run_id)
        assert [d for d, _, _ in shape] == [0, 1, 2, 1, 2, 1, 2]


async def measure_loop_lag(core: CoreService, slow: MemoryDestination) -> dict[str, float]:
    """End 1,000 runs (50 concurrent workers x 20 flows) and wait for their export, with a
    ticker task sleeping 1 ms and recording how late it wakes up. Returns lag figures (s)."""
    tracing = TracingService(core, deactivated=False)
    lags: list[float] = []
    end_calls: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t0 - 0.001)

    async def worker(w: int) -> None:
        rng = random.Random(w)
        for k in range(20):
            i = w * 20 + k
            await tracing.start_tracers(uuid.uuid4(), f"flow-{i}", None, None)
            async with tracing.trace_component(Component(f"A-{i}"), f"A-{i}", {"i": i}):
                await asyncio.sleep(rng.random() * 0.002)
            async with tracing.trace_component(Component(f"B-{i}"), f"B-{i}", {"i": i}) as ts:
                ts.set_outputs(f"B-{i}", {"i": i})
            t0 = time.perf_counter()
            await tracing.end_tracers({"i": i})
            end_calls.append(time.perf_counter() - t0)

    # A full collection of this test process's heap (langchain, pydantic...) pauses every
    # thread for 50-150 ms: that is the interpreter, not tracemux. Freeze what exists so
    # the measurement sees only the objects the runs themselves allocate.
    gc.collect()
    gc.freeze()
    try:
        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(50)))
        recorded = time.perf_counter() - t0
        assert await core.aflush(30)  # waits for the slow exports, without blocking the loop
        total = time.perf_counter() - t0
        stop.set()
        await tick
    finally:
        gc.unfreeze()

    assert len(end_calls) == 1000
    assert len(slow.spans) == 3000  # every span delivered, in requests of 2 s each
    assert total >= 2.0
    lags.sort()
    figures = {
        "ticks": len(lags),
        "total": total,
        "recorded": recorded,
        "p50": statistics.median(lags),
        "p99": lags[int(len(lags) * 0.99)],
        "max": lags[-1],
        "end_max": max(end_calls),
    }
    print(
        f"\nloop lag over {figures['ticks']} ticks ({total:.2f} s, runs recorded in"
        f" {recorded:.2f} s): p50 {figures['p50'] * 1e3:.2f} ms, p99 {figures['p99'] * 1e3:.2f}"
        f" ms, max {figures['max'] * 1e3:.2f} ms; end_tracers max"
        f" {figures['end_max'] * 1e3:.3f} ms"
    )
    return figures


@pytest.mark.slow
async def test_event_loop_lag_while_runs_end_against_a_slow_destination(
    make_service: Callable[..., CoreService],
) -> None:
    """1,000 runs end while the only destination takes 2 s per request: the loop never
    waits on it. Blocking on the destination would stall it for 2 s at least; the bounds
    are far below that and far above what a loaded machine does to the process (tens to
    hundreds of ms), so they test the behaviour, not the machine. One stall over the
    bound gets a second attempt (a real regression stalls every time)."""
    for _ in range(2):
        slow = MemoryDestination(delay=2.0)
        figures = await measure_loop_lag(make_service([slow]), slow)
        if figures["max"] < 1.0 and figures["end_max"] < 0.5:
            break
    assert figures["max"] < 1.0, f"the event loop stalled for {figures['max'] * 1e3:.0f} ms"
    assert figures["end_max"] < 0.5
    assert figures["p99"] < 0.25


# -- the lfx 1.13 interface: per-run environment, settings, the rest of the methods ----------


async def test_each_run_goes_where_the_environment_said_when_it_started(
    core: CoreService, tmp_path, monkeypatch
) -> None:
    """Variables are read at every start_tracers: a change takes effect on the next run,
    and a run keeps the destinations it started with."""
    tracing = TracingService(core, destinations_from_env=True)
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    monkeypatch.setenv("TRACEMUX_DB", str(first))
    await tracing.start_tracers(uuid.uuid4(), "run-a", None, None)
    monkeypatch.setenv("TRACEMUX_DB", str(second))  # changed while run-a is open
    await tracing.end_tracers({})
    await tracing.start_tracers(uuid.uuid4(), "run-b", None, None)
    await tracing.end_tracers({})
    assert await core.aflush(10)
    assert [r.name for r in SQLiteStore(first).runs()] == ["run-a"]
    assert [r.name for r in SQLiteStore(second).runs()] == ["run-b"]


async def test_a_bad_environment_is_logged_and_the_run_still_recorded(
    core: CoreService, store: SQLiteStore, monkeypatch, caplog
) -> None:
    tracing = TracingService(core, destinations_from_env=True)
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-only-half")
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    with caplog.at_level("ERROR", logger="tracemux"):
        await tracing.start_tracers(uuid.uuid4(), "run", None, None)
        await tracing.end_tracers({})
    assert await core.aflush(10)
    assert [r.name for r in store.runs()] == ["run"]  # the service's own destinations
    assert "LANGFUSE_SECRET_KEY" in caplog.text and "pk-lf-only-half" not in caplog.text


async def test_project_defaults_and_tracing_user_id(
    tracing_service: TracingService, core: CoreService, store: SQLiteStore, monkeypatch
) -> None:
    monkeypatch.delenv("LANGCHAIN_PROJECT", raising=False)
    await tracing_service.start_tracers(
        uuid.uuid4(), "plain", "user", "session", flow_id="f-1", tracing_user_id="end-user-7"
    )
    assert tracing_service.project_name == "Langflow"
    await tracing_service.end_tracers({})
    monkeypatch.setenv("LANGCHAIN_PROJECT", "from-env")
    await tracing_service.start_tracers(uuid.uuid4(), "env", None, None)
    assert tracing_service.project_name == "from-env"
    await tracing_service.end_tracers({})
    await tracing_service.start_tracers(uuid.uuid4(), "given", None, None, project_name="mine")
    await tracing_service.end_tracers({})
    assert await core.aflush(10)
    runs = {r.name: r for r in store.runs()}
    assert runs["plain"].project == "Langflow" and runs["plain"].user_id == "user"
    assert runs["plain"].metadata == {"flow_id": "f-1", "tracing_user_id": "end-user-7"}
    assert runs["env"].project == "from-env" and runs["given"].project == "mine"


@pytest.mark.parametrize(
    ("settings_value", "env_value", "expected"),
    [(True, None, True), (False, "true", False), (None, "true", True), (None, None, False)],
)
def test_deactivate_tracing_follows_langflow_settings(
    core: CoreService, monkeypatch, settings_value, env_value, expected
) -> None:
    """Langflow's ``deactivate_tracing`` setting wins; without a settings service, its
    variable ``LANGFLOW_DEACTIVATE_TRACING``."""
    if env_value is None:
        monkeypatch.delenv("LANGFLOW_DEACTIVATE_TRACING", raising=False)
    else:
        monkeypatch.setenv("LANGFLOW_DEACTIVATE_TRACING", env_value)
    settings = (
        None
        if settings_value is None
        else SimpleNamespace(settings=SimpleNamespace(deactivate_tracing=settings_value))
    )
    assert TracingService(core, settings_service=settings).deactivated is expected


async def test_get_tracer_record_event_span_ready_and_teardown(
    tracing_service: TracingService, core: CoreService, store: SQLiteStore, mock_component
) -> None:
    assert tracing_service.ready and tracing_service.name == "tracing_service"
    tracing_service.set_ready()
    assert tracing_service.get_tracer("langfuse") is None  # no run in context
    await tracing_service.start_tracers(uuid.uuid4(), "run", None, None)
    assert tracing_service.get_tracer("langfuse") is None  # the run does not go to Langfuse
    assert tracing_service.get_tracer("langsmith") is None
    async with tracing_service.trace_component(mock_component, "comp", {}):
        tracing_service.record_event_span(
            span_id="comp", name="cancelled", outputs={"reason": "user"}, span_type="tool"
        )
    tracing_service.record_event_span(span_id="other", name="event", outputs=None)
    # no end_tracers: teardown (Langflow shutting down) ends the run as incomplete
    await tracing_service.teardown()
    (run,) = store.runs()
    assert run.status == "error" and run.error["type"] == "IncompleteRun"
    names = {n: (kind, parent) for kind, parent, n in tree(store, run.run_id)}
    assert set(names) == {"run", "comp", "cancelled", "event"}
    spans = {s.name: s for s in store.spans(run.run_id)}
    assert spans["cancelled"].parent_id == spans["comp"].span_id
    assert spans["cancelled"].kind == "tool" and spans["cancelled"].outputs == {"reason": "user"}
    assert spans["event"].parent_id == spans["run"].span_id


async def test_langfuse_tracer_reference_carries_the_trace_id_langfuse_receives(
    core: CoreService, monkeypatch
) -> None:
    """lfx stores ``get_tracer("langfuse").langfuse_trace_id`` with each chat message: it
    must be the id of the trace Langfuse gets."""
    from tests.destinations.conftest import CaptureServer

    server = CaptureServer().start()
    try:
        monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-ref")
        monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-ref")
        monkeypatch.setenv("LANGFUSE_BASE_URL", server.url)
        monkeypatch.delenv("TRACEMUX_DB", raising=False)
        tracing = TracingService(core, destinations_from_env=True)
        await tracing.start_tracers(uuid.uuid4(), "to-langfuse", None, None)
        ref = tracing.get_tracer("langfuse")
        await tracing.end_tracers({})
        assert ref is not None
        assert await core.aflush(10)
        assert {s.trace_id for s in server.spans()} == {ref.langfuse_trace_id}
    finally:
        server.stop()


def test_is_an_lfx_service_only_when_lfx_is_installed() -> None:
    """tracemux does not require lfx (not installed in this environment)."""
    import importlib.util

    assert importlib.util.find_spec("lfx") is None
    assert TracingService.__mro__[1] is object


async def test_teardown_waits_at_most_its_deadline(make_service, received, caplog) -> None:
    """Langflow's shutdown must not hang on a slow backend: teardown gives up after its
    deadline (saying so) and leaves the export to finish on the export thread."""
    from tests.conftest import Recorder

    core = make_service([Recorder("slow-backend", delay=1.5)])
    tracing = TracingService(core, teardown_timeout=0.2, native=False)
    await tracing.start_tracers(uuid.uuid4(), "run", None, None)
    await tracing.end_tracers({})
    with caplog.at_level("WARNING", logger="tracemux"):
        await tracing.teardown()
    assert "export not finished" in caplog.text
    assert received["slow-backend"] == []  # still being exported: teardown did not wait
    assert await core.aflush(10)
    assert [s.name for s in received["slow-backend"]] == ["run"]


def test_the_environment_cache_sees_every_variable_that_decides_destinations(
    monkeypatch,
) -> None:
    """A change to any backend variable, including Openlayer's per-flow pipelines, gives
    new destinations; no change gives the same ones (cached)."""
    from tracemux.destinations.env import VARIABLES
    from tracemux.integrations.langflow import _DestinationsFromEnv

    for name in list(os.environ):
        if name in VARIABLES or name.startswith(("OPENLAYER_", "TRACEMUX_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRACEMUX_DB", "/tmp/tracemux-test-never-opened.db")
    cache = _DestinationsFromEnv()
    first = cache.get()
    assert cache.get() is first
    monkeypatch.setenv("OPENLAYER_API_KEY", "ol-key")
    monkeypatch.setenv("OPENLAYER_PIPELINE_MY_FLOW", "pipe-1")
    with_openlayer = cache.get()
    assert with_openlayer is not None and len(with_openlayer) == 2
    monkeypatch.setenv("OPENLAYER_PIPELINE_MY_FLOW", "pipe-2")
    changed = cache.get()
    assert dict(changed[1].flow_pipelines) == {"MY_FLOW": "pipe-2"}
    assert cache.get() is changed
