"""What the parity tests of LangWatch, Opik, Traceloop, Arize and Openlayer share.

A Langflow-shaped run: the flow's root span, a component span (``Agent``) and, nested under
the component as Langflow's LangChain callbacks record them, a retriever, an LLM call with
token usage and a failing tool. Each backend's test records it with tracemux and has the
official SDK send the same tree (run in its own side environment, a subprocess) to a
loopback capture server, then compares what arrived.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.destinations.conftest import CaptureServer, FlatSpan
from tracemux import TracingService
from tracemux.bench.sidevenv import side_venv

RUN_NAME = "support-flow"
USER = "user-1"
SESSION = "sess-1"
TAGS = ["prod", "v2"]
META = {"env": "staging"}
NAMES = {RUN_NAME, "Agent", "retrieve", "ChatModel", "lookup"}
#: child -> parent of the tree every backend must get
PARENTS = {
    RUN_NAME: None,
    "Agent": RUN_NAME,
    "retrieve": "Agent",
    "ChatModel": "Agent",
    "lookup": "Agent",
}


def record_flow(svc: TracingService, name: str = RUN_NAME, **run_kw: Any) -> None:
    """The Langflow-shaped run (see the module docstring)."""
    with svc.trace_run(
        name,
        user_id=USER,
        session_id=SESSION,
        tags=TAGS,
        metadata=META,
        inputs={"question": "hi?"},
        **run_kw,
    ) as run:
        with run.span("Agent", kind="chain", inputs={"input_value": "hi?"}) as comp:
            with comp.span("retrieve", kind="retriever", inputs={"query": "hi"}) as r:
                r.set_outputs({"documents": ["a", "b"]})
            with comp.span(
                "ChatModel", kind="llm", inputs=[{"role": "user", "content": "hi?"}]
            ) as llm:
                llm.set_usage(model="gpt-4o-mini", input_tokens=12, output_tokens=5)
                llm.set_outputs("hello")
            try:
                with comp.span("lookup", kind="tool", inputs={"id": 7}):
                    raise KeyError("id 7")
            except KeyError:
                pass
            comp.set_outputs({"response": "hello"})
        run.set_outputs({"answer": "hello"})


def by_name(spans: Sequence[FlatSpan]) -> dict[str, FlatSpan]:
    return {s.name: s for s in spans}


def parents(spans: dict[str, FlatSpan]) -> dict[str, str | None]:
    """Each span's parent, by name (None for a root)."""
    ids = {s.span_id: n for n, s in spans.items()}
    return {n: ids.get(s.parent_span_id) for n, s in spans.items()}


def loads_or_value(value: Any) -> Any:
    """A JSON attribute parsed (SDKs differ from us in whitespace only), else the value."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def clean_env(*prefixes: str) -> dict[str, str]:
    """The environment without variables that would redirect an SDK (and no analytics)."""
    drop = ("OTEL_", "LANGSMITH_", "LANGCHAIN_", "LANGFUSE_", *prefixes)
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_sdk(
    venv: str,
    requirements: list[str],
    script: str,
    args: Sequence[str],
    env: dict[str, str],
    tmp: Path,
) -> None:
    """Run ``script`` with the Python of side environment ``venv`` (made once)."""
    python = side_venv(venv, requirements, editable=())
    path = tmp / f"{venv}_sdk.py"
    path.write_text(textwrap.dedent(script))
    proc = subprocess.run(
        [str(python), str(path), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def sdk_capture(
    tmp: Path,
    venv: str,
    requirements: list[str],
    script: str,
    args: Sequence[str],
    env: dict[str, str],
    *,
    done: Any,
) -> CaptureServer:
    """A (stopped) capture server holding what the SDK sent (``URL`` in ``args`` is its
    address); ``done(server)`` says when everything has arrived."""
    server = CaptureServer().start()
    try:
        run_sdk(venv, requirements, script, [a.replace("URL", server.url) for a in args], env, tmp)
        assert server.wait_for(lambda: done(server), 15), [r.path for r in server.snapshot()]
        return server
    finally:
        server.stop()
