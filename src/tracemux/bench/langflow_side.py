"""Real Langflow flows, run in a side environment (lfx 1.13, or langflow-base 1.13).

    <side venv python> -m tracemux.bench.langflow_side SCENARIO [options] [--result PATH]

Used by ``tests/integrations/test_langflow_real.py`` and by ``tracemux bench``'s
``langflow`` scenario, with the side environment's Python (tracemux is installed there,
editable). ``--register`` writes the ``lfx.toml`` of ``LANGFLOW_CONFIG_DIR`` the documented
way: ``tracemux`` (tracemux's service), ``stock`` (langflow-base's own ``TracingService``,
registered the same way, as the Langflow server does), ``none`` (no file: lfx alone has no
tracing service). The result is one JSON object: written to ``--result PATH``, else
printed on a line starting with ``RESULT``.

Scenarios (first argument):

``flows``     ChatInput -> ChatOutput, ChatInput -> a component running a LangChain chain
              with ``get_langchain_callbacks()`` -> ChatOutput, ChatInput -> a component that
              raises -> ChatOutput; each through ``Graph.arun`` and ``Graph.async_start``;
              then 20 chain flows at once. Runs go to the store in ``TRACEMUX_DB``.
``rotation``  N ChatInput -> ChatOutput runs, a new Langfuse key pair in ``os.environ``
              before each (``--rotate``; else one pair), Langfuse at ``LANGFUSE_BASE_URL``.
              Reports threads before and after, and ms per run.
``looplag``   N runs while a ticker measures how late the event loop wakes (loop lag).
``native``    (langflow-base) flows with Langflow's database initialised, so that its
              native tracer writes the ``trace`` and ``span`` rows of Langflow's trace view.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from lfx.components.input_output import ChatInput, ChatOutput
from lfx.custom.custom_component.component import Component
from lfx.graph.graph.base import Graph
from lfx.io import MessageTextInput, Output
from lfx.schema.message import Message
from lfx.services.deps import get_tracing_service


class ChainComponent(Component):
    """Runs a small LangChain chain (prompt | fake chat model | parser) with Langflow's
    callbacks, as LLM components do."""

    display_name = "Chain"
    inputs = [MessageTextInput(name="input_value", display_name="Input")]  # noqa: RUF012
    outputs = [Output(display_name="Text", name="text", method="run_chain")]  # noqa: RUF012

    def run_chain(self) -> Message:
        from langchain_core.language_models.fake_chat_models import FakeListChatModel
        from langchain_core.output_parsers import StrOutputParser
        from langchain_core.prompts import ChatPromptTemplate

        chain = (
            ChatPromptTemplate.from_template("Answer {question}")
            | FakeListChatModel(responses=["pong"])
            | StrOutputParser()
        )
        text = chain.invoke(
            {"question": self.input_value}, config={"callbacks": self.get_langchain_callbacks()}
        )
        return Message(text=text)


class BoomComponent(Component):
    """A component whose build raises."""

    display_name = "Boom"
    inputs = [MessageTextInput(name="input_value", display_name="Input")]  # noqa: RUF012
    outputs = [Output(display_name="Text", name="text", method="explode")]  # noqa: RUF012

    def explode(self) -> Message:
        raise RuntimeError("boom from the component")


def make_graph(kind: str, name: str) -> Graph:
    """A fresh graph (graphs are not shared between concurrent runs)."""
    chat_in = ChatInput(_id="chat_input")
    chat_out = ChatOutput(_id="chat_output")
    if kind == "chat":
        chat_out.set(input_value=chat_in.message_response)
    else:
        middle = ChainComponent(_id="chain") if kind == "chain" else BoomComponent(_id="boom")
        middle.set(input_value=chat_in.message_response)
        chat_out.set(input_value=middle.run_chain if kind == "chain" else middle.explode)
    return Graph(chat_in, chat_out, flow_id=str(uuid.uuid4()), flow_name=name)


async def run_arun(kind: str, name: str, text: str = "ping") -> str | None:
    """One run through ``Graph.arun``; the error text if it failed."""
    graph = make_graph(kind, name)
    try:
        await graph.arun(inputs=[{"input_value": text}], session_id=f"session-{name}")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def run_async_start(kind: str, name: str, text: str = "ping") -> str | None:
    """One run through ``Graph.async_start`` (the step-by-step API)."""
    graph = make_graph(kind, name)
    graph.session_id = f"session-{name}"
    try:
        async for _ in graph.async_start(inputs=[{"input_value": text}]):
            pass
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def settle() -> None:
    """Let the tasks lfx starts to end a run's traces (``end_tracers``) finish."""
    for _ in range(50):
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not others:
            return
        await asyncio.wait(others, timeout=0.1)


async def teardown() -> dict[str, Any]:
    """What the service manager does at shutdown; tracemux's stats after it."""
    await settle()
    svc = get_tracing_service()
    from lfx.services.tracing.base import BaseTracingService

    out: dict[str, Any] = {
        "service": f"{type(svc).__module__}.{type(svc).__qualname__}",
        "is_lfx_service": isinstance(svc, BaseTracingService),
    }
    if svc is not None:
        await svc.teardown()
        core = getattr(svc, "service", None)
        if core is not None and hasattr(core, "stats"):
            out["stats"] = core.stats()
    return out


async def scenario_flows(args: argparse.Namespace) -> dict[str, Any]:
    errors: dict[str, str | None] = {}
    for kind in ("chat", "chain", "boom"):
        errors[f"{kind}-arun"] = await run_arun(kind, f"{kind}-arun")
        errors[f"{kind}-start"] = await run_async_start(kind, f"{kind}-start")
    names = [f"conc-{i:02d}" for i in range(args.concurrent)]
    results = await asyncio.gather(
        *(run_arun("chain", name, f"question {i}") for i, name in enumerate(names))
    )
    errors.update(zip(names, results))
    return {"errors": errors, **(await teardown())}


def tracing_threads() -> list[str]:
    """Threads that are not the event loop's executor (lfx's own work uses it)."""
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))


async def scenario_rotation(args: argparse.Namespace) -> dict[str, Any]:
    await run_arun("chat", "warm-up")  # imports and lfx's own services, not tracing
    await settle()
    before = tracing_threads()
    started = time.perf_counter()
    for i in range(args.runs):
        if args.rotate:
            os.environ["LANGFUSE_PUBLIC_KEY"] = f"pk-lf-{i:04d}"
            os.environ["LANGFUSE_SECRET_KEY"] = f"sk-lf-{i:04d}"
        error = await run_arun("chat", f"rot-{i:04d}")
        if error:
            return {"error": error}
    elapsed = time.perf_counter() - started
    await settle()
    after = tracing_threads()
    out = await teardown()
    return {
        "threads_before": len(before),
        "threads_after": len(after),
        "new_threads": sorted(set(after) - set(before)),
        "tracemux_threads": [name for name in after if name.startswith("tracemux")],
        "ms_per_run": elapsed * 1000 / args.runs,
        **out,
    }


async def scenario_looplag(args: argparse.Namespace) -> dict[str, Any]:
    await run_arun("chat", "warm-up")
    await settle()
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        interval = 0.001
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(interval)
            lags.append(max(0.0, time.perf_counter() - t0 - interval))

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    for i in range(args.runs):
        error = await run_arun("chat", f"lag-{i:04d}")
        if error:
            return {"error": error}
    elapsed = time.perf_counter() - started
    await settle()
    stop.set()
    await tick
    lags.sort()
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0.0
    return {
        "ms_per_run": elapsed * 1000 / args.runs,
        "lag_p99_ms": p99 * 1000,
        "lag_max_ms": (lags[-1] if lags else 0.0) * 1000,
        "lag_median_ms": statistics.median(lags) * 1000 if lags else 0.0,
        # a stalled loop records one late tick per stall: percentiles over ticks hide it
        "stalled_s": sum(lag for lag in lags if lag > 0.05),
        "elapsed_s": elapsed,
        "ticks": len(lags),
        **(await teardown()),
    }


async def init_langflow_database() -> None:
    """Langflow's database (tables included), as the server creates it at startup."""
    from langflow.services.deps import get_db_service
    from langflow.services.utils import initialize_services

    # a throw-away database: Langflow refuses to start without a superuser password
    os.environ.setdefault("LANGFLOW_SUPERUSER", "bench-admin")
    os.environ.setdefault("LANGFLOW_SUPERUSER_PASSWORD", uuid.uuid4().hex)
    await initialize_services()
    db = get_db_service()
    if hasattr(db, "create_db_and_tables"):
        result = db.create_db_and_tables()
        if asyncio.iscoroutine(result):
            await result


async def read_native_rows() -> dict[str, Any]:
    """The trace and span rows Langflow's trace view reads, by trace name."""
    from langflow.services.database.models.traces.model import SpanTable, TraceTable
    from lfx.services.deps import session_scope
    from sqlmodel import select

    out: dict[str, Any] = {}
    async with session_scope() as session:
        traces = (await session.exec(select(TraceTable))).all()
        for trace in traces:
            query = select(SpanTable).where(SpanTable.trace_id == trace.id)
            spans = (await session.exec(query)).all()
            names = {s.id: s.name for s in spans}
            out[str(trace.name).split(" - ")[0]] = {
                "status": str(getattr(trace.status, "value", trace.status)),
                "spans": sorted(
                    (
                        s.name,
                        str(getattr(s.status, "value", s.status)),
                        names.get(s.parent_span_id, ""),
                        bool(s.error),
                    )
                    for s in spans
                ),
            }
    return out


async def scenario_native(args: argparse.Namespace) -> dict[str, Any]:
    await init_langflow_database()
    errors = {
        "chat-arun": await run_arun("chat", "chat-arun"),
        "chain-arun": await run_arun("chain", "chain-arun"),
        "boom-arun": await run_arun("boom", "boom-arun"),
    }
    await settle()
    rows = await read_native_rows()
    return {"errors": errors, "native": rows, **(await teardown())}


SCENARIOS = {
    "flows": scenario_flows,
    "rotation": scenario_rotation,
    "looplag": scenario_looplag,
    "native": scenario_native,
}


REGISTRATIONS = {
    "tracemux": "tracemux.integrations.langflow:TracingService",
    "stock": "langflow.services.tracing.service:TracingService",
}


def register(which: str) -> None:
    """Write ``LANGFLOW_CONFIG_DIR/lfx.toml`` naming the tracing service (or none)."""
    path = Path(os.environ["LANGFLOW_CONFIG_DIR"]) / "lfx.toml"
    if which == "none":
        path.unlink(missing_ok=True)
        return
    path.write_text(f'[services]\ntracing_service = "{REGISTRATIONS[which]}"\n')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=20)
    parser.add_argument("--rotate", action="store_true")
    parser.add_argument("--register", choices=["tracemux", "stock", "none"], default="tracemux")
    parser.add_argument("--result", metavar="PATH")
    args = parser.parse_args(argv)
    register(args.register)
    result = asyncio.run(SCENARIOS[args.scenario](args))
    text = json.dumps(result, default=str)
    if args.result:
        Path(args.result).write_text(text)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip the SDKs' exit hooks (stock Langflow's clients flush at exit)
    sys.stdout.write("\nRESULT " + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
