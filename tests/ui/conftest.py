"""Helpers for the viewer's tests: realistic recorded flows and a server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.ui import UIServer

# Debian's /usr/bin/chromium is a shell script whose checks print noise such as
# "[: 25276059648: unexpected operator" under dash: the binary it starts is launched directly.
CHROMIUM = next(
    (p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)),
    "/usr/bin/chromium",
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: the name of the span (and, in the run's name, the markup) that must show as text
XSS_SPAN = "<script>alert(1)</script>"
XSS_RUN = "<img src=x onerror=alert(3)> probe"
XSS_OUTPUT = "<img src=x onerror=alert(2)>"

LONG_ANSWER = (
    "To rotate an API key, create the new key first, deploy it next to the old one, "
    "switch every client over, watch the old key's traffic drop to zero, then revoke it. "
) * 8


class SearchTimeout(RuntimeError):
    """The simulated web search timed out."""


def record_agent_run(
    svc: TracingService, *, user: str = "alice", session: str = "s-1", pace: float = 0.0
) -> str:
    """Record one nested agent flow with a failing tool call; return its run id.

    ``pace`` > 0 makes the steps take time (about ``pace`` x 0.25 s in all), so that a
    waterfall of the run looks like a real one.

    support-agent (chain)
      Planner (agent)
        Retriever (retriever)      logs, outputs
          Embed query (embedding)  usage
        WebSearch (tool)           fails with SearchTimeout
      Prompt (prompt)
      ChatModel (llm)              usage, model, long output
      OutputParser (parser)
      Guardrail (guardrail)
    """
    question = "How are API keys rotated?"

    def work(ms: float) -> None:
        if pace > 0:
            time.sleep(ms / 1000 * pace)

    with svc.trace_run(
        "support-agent",
        user_id=user,
        session_id=session,
        project="helpdesk",
        tags=["rag", "prod"],
        inputs={"question": question},
        metadata={"flow_version": 4},
    ) as run:
        with run.span("Planner", kind="agent", inputs={"goal": question}) as planner:
            planner.add_log("planning with 2 tools", level="debug", tools=["search", "kb"])
            with planner.span("Retriever", kind="retriever", inputs={"query": question}) as ret:
                work(4)
                with ret.span("Embed query", kind="embedding", inputs={"text": question}) as emb:
                    work(14)
                    emb.set_usage(model="text-embedding-3-small", input_tokens=9)
                    emb.set_outputs({"dimensions": 1536})
                work(22)
                ret.add_log("found 3 documents", level="info", k=3)
                ret.set_outputs(
                    {
                        "documents": [
                            {"id": "kb-112", "score": 0.91, "title": "Key rotation runbook"},
                            {"id": "kb-087", "score": 0.84, "title": "Secrets management"},
                            {"id": "kb-301", "score": 0.62, "title": "Incident 2024-07"},
                        ]
                    }
                )
            try:
                with planner.span("WebSearch", kind="tool", inputs={"query": question}) as ws:
                    work(20)
                    ws.add_log("retrying once", level="warning", attempt=2)
                    work(30)
                    raise SearchTimeout("web search timed out after 2.0 s")
            except SearchTimeout:
                pass
            planner.set_outputs({"plan": ["retrieve", "answer"]})
        with run.span("Prompt", kind="prompt", inputs={"documents": 3}) as prompt:
            work(3)
            prompt.set_outputs({"prompt": f"Answer from the documents.\nQuestion: {question}"})
        with run.span(
            "ChatModel",
            kind="llm",
            inputs={"messages": [{"role": "user", "content": question}], "temperature": 0.2},
        ) as llm:
            work(130)
            llm.set_usage(model="gpt-4o-mini", input_tokens=412, output_tokens=188)
            llm.set_outputs({"role": "assistant", "content": LONG_ANSWER})
        with run.span("OutputParser", kind="parser", inputs={"text": "..."}) as parser:
            work(3)
            parser.set_outputs({"answer": LONG_ANSWER[:120]})
        with run.span("Guardrail", kind="guardrail") as guard:
            work(12)
            guard.set_outputs({"allowed": True, "checks": ["pii", "toxicity"]})
        run.set_outputs({"answer": LONG_ANSWER[:120]})
        return run.run_id


def record_xss_run(svc: TracingService) -> str:
    """Record a run whose names and values are markup; return its run id."""
    with svc.trace_run(XSS_RUN, user_id="mallory", session_id="s-x") as run:
        with run.span(XSS_SPAN, kind="tool", inputs={"html": XSS_OUTPUT}) as span:
            span.set_outputs(XSS_OUTPUT)
            span.add_log(XSS_SPAN, level="error")
        return run.run_id


def record_failed_run(svc: TracingService) -> str:
    """Record a run that fails as a whole (status error); return its run id."""
    run_id = ""
    try:
        with svc.trace_run("ingest-docs", user_id="carol", session_id="s-9") as run:
            run_id = run.run_id
            with run.span("Loader", kind="tool", inputs={"path": "docs/"}) as loader:
                loader.set_outputs({"files": 12})
            with run.span("Splitter", kind="parser"):
                raise ValueError("chunk size must be positive, got 0")
    except ValueError:
        pass
    return run_id


#: a word that appears only inside a tool's output in :func:`record_chat_session`
TOOL_ONLY_WORD = "zanzibarite"
CHAT_SESSION = "s-chat"
CHAT_QUESTIONS = ("What is the weather in Paris?", "And tomorrow?")


def record_chat_session(svc: TracingService) -> list[str]:
    """Record a two-turn conversation (session ``s-chat``, user erin) whose LLM calls
    use tools (OpenAI-style messages with tool calls); return the run ids in order."""
    ids = []
    history: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a weather assistant."},
    ]
    for turn, question in enumerate(CHAT_QUESTIONS):
        history.append({"role": "user", "content": question})
        with svc.trace_run(
            "weather-chat", user_id="erin", session_id=CHAT_SESSION, inputs={"question": question}
        ) as run:
            ids.append(run.run_id)
            call = {
                "id": f"call_{turn}",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
            with run.span("Planner LLM", kind="llm", inputs={"messages": list(history)}) as llm:
                llm.set_usage(model="gpt-4o-mini", input_tokens=40 + turn, output_tokens=12)
                llm.set_outputs({"role": "assistant", "content": None, "tool_calls": [call]})
            with run.span("get_weather", kind="tool", inputs={"city": "Paris"}) as tool:
                report = "sunny, 21 C" if turn == 0 else "rain, 14 C"
                # the station goes no further than this output (not to the model)
                station = f"{TOOL_ONLY_WORD}-{turn}" if turn == 0 else "orly-1"
                tool.set_outputs({"report": report, "station": station})
            history.append({"role": "assistant", "content": None, "tool_calls": [call]})
            history.append({"role": "tool", "tool_call_id": f"call_{turn}", "content": report})
            answer = f"Paris: {report}." if turn == 0 else f"Tomorrow in Paris: {report}."
            with run.span("Answer LLM", kind="llm", inputs={"messages": list(history)}) as llm:
                llm.set_usage(model="gpt-4o-mini", input_tokens=80 + turn, output_tokens=20)
                llm.set_outputs({"role": "assistant", "content": answer})
            history.append({"role": "assistant", "content": answer})
            run.set_outputs({"answer": answer})
    return ids


@dataclass
class Recorded:
    """What :func:`fill_store` recorded, oldest first."""

    agent_runs: list[str]
    failed_run: str
    xss_run: str

    @property
    def newest_first(self) -> list[str]:
        return [self.xss_run, self.failed_run, *reversed(self.agent_runs)]


def fill_store(svc: TracingService, agent_runs: int = 3, pace: float = 0.0) -> Recorded:
    """Record ``agent_runs`` agent flows (users alice and bob, alternating), one failed
    run and one markup run, and flush. ``pace``: see :func:`record_agent_run`."""
    ids = [
        record_agent_run(
            svc, user="alice" if i % 2 == 0 else "bob", session=f"s-{i % 2}", pace=pace
        )
        for i in range(agent_runs)
    ]
    failed = record_failed_run(svc)
    xss = record_xss_run(svc)
    assert svc.flush(10)
    return Recorded(ids, failed, xss)


def get(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """An HTTP request with urllib: (status, headers, body), errors included."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers.items()), exc.read()


def get_json(url: str) -> Any:
    status, _, body = get(url)
    assert status == 200, (status, body)
    return json.loads(body)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SQLiteStore:
    """The viewer's tests run against both stores: a SQLite file, and a PostgreSQL
    database of a throwaway cluster (tests/pgserver.py)."""
    if request.param == "postgres":
        from tracemux.destinations.postgres import PostgresStore

        return PostgresStore(request.getfixturevalue("pg_dsn"))  # type: ignore[return-value]
    return SQLiteStore(tmp_path / "traces.db")


@pytest.fixture
def ui_server(store: SQLiteStore) -> Iterator[UIServer]:
    """A viewer over the test's store on 127.0.0.1, a free port; stopped after the test."""
    server = UIServer(store, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        assert server.stop()


MINUTE_NS = 60_000_000_000
HOUR_NS = 60 * MINUTE_NS
MS = 1_000_000
TIMEOUT = {"type": "TimeoutError", "message": "slow", "traceback": ""}


@dataclass
class KnownRuns:
    """What :func:`import_known_runs` wrote: per flow, (start, duration ns, has errors) of
    each run; per component, (duration ns, failed) of each call."""

    runs: dict[str, list[tuple[int, int, bool]]]
    components: dict[str, list[tuple[int, bool]]]


def import_known_runs(store: SQLiteStore, now_ns: int, *, one_by_one: bool = False) -> KnownRuns:
    """Write runs of chosen times, durations, failures and tokens (imported, so that every
    number is known): flow "alpha", 20 runs 10 minutes apart, each a Fetch tool (failing
    in 2 runs) and an LLM call of 100 + 50 tokens; flow "beta", 5 runs 25 minutes apart
    with a slow step, the first failing as a whole. Project "known". ``one_by_one``: a
    write per run, as the export thread's batches would."""
    from tracemux.destinations.sqlite import StoredRun, StoredSpan

    runs: list[StoredRun] = []
    spans: list[StoredSpan] = []
    known = KnownRuns({"alpha": [], "beta": []}, {"Fetch": [], "LLM": [], "Slow step": []})

    def span(run_id: str, parent: str | None, name: str, kind: str, start: int, took: int,
             failed: bool) -> str:  # fmt: skip
        span_id = f"{len(spans) + 1:016x}"
        llm = kind == "llm"
        spans.append(
            StoredSpan(
                run_id, span_id, parent, name, kind, start, start + took,
                "error" if failed else "ok",
                usage={"input_tokens": 100, "output_tokens": 50} if llm else None,
                model="gpt-4o-mini" if llm else None,
                error=TIMEOUT if failed else None,
            )
        )  # fmt: skip
        return span_id

    def add(flow: str, k: int, start: int, took: int, children: list[Any], failed: bool) -> None:
        run_id = f"{flow}-{k:02d}"
        root = span(run_id, None, flow, "chain", start, took, failed)
        offset = start
        for name, kind, child_took, bad in children:
            span(run_id, root, name, kind, offset, child_took, bad)
            known.components[name].append((child_took, bad))
            offset += child_took
        errors = sum(c[3] for c in children) + failed
        calls = sum(c[1] == "llm" for c in children)
        runs.append(
            StoredRun(
                run_id=run_id, trace_id=run_id, name=flow, user_id="u", session_id=None,
                project="known", tags=[], metadata=None, start_ns=start, end_ns=start + took,
                status="error" if failed else ("partial" if errors else "ok"),
                span_count=1 + len(children), error_count=errors,
                input_tokens=100 * calls, output_tokens=50 * calls,
            )
        )  # fmt: skip
        known.runs[flow].append((start, took, bool(errors)))

    for k in range(20):
        fetch = ("Fetch", "tool", (k + 1) * 10 * MS, k in (3, 7))
        llm = ("LLM", "llm", 20 * MS, False)
        add("alpha", k, now_ns - (k + 1) * 10 * MINUTE_NS, (k + 1) * 50 * MS, [fetch, llm], False)
    for k in range(5):
        slow = ("Slow step", "tool", 1800 * MS, False)
        add("beta", k, now_ns - (k + 1) * 25 * MINUTE_NS, 2000 * MS, [slow], k == 0)
    if not one_by_one:
        store.import_runs(runs, spans)
        return known
    for run in runs:  # each in its own transaction: its figures merge into the stored ones
        store.import_runs([run], [s for s in spans if s.run_id == run.run_id])
    return known
