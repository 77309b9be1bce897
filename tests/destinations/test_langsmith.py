"""LangSmith: tracemux's export carries what the official SDK sends to LangSmith's OTLP
endpoint (``tracing_mode="otel"``) for an equivalent run tree.

Why OTLP rather than the SDK's default ``/runs/multipart``: see the docstring of
:mod:`tracemux.destinations.langsmith` (the runs API needs every ancestor's start time in
each run's ``dotted_order``; finished-span export does not have it).

The SDK runs in a subprocess against the loopback capture server. Compared: every
attribute key and value the SDK sets, except those that describe the SDK's own process
rather than the run (``langsmith.metadata.LANGSMITH_*`` copied from the environment,
``revision_id``, ``gen_ai.serialized.name``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.destinations.conftest import CaptureServer, FlatSpan
from tracemux import TracingService
from tracemux.destinations import LangSmith

API_KEY = "lsv2_pt_00112233445566778899aabbccddeeff_0123456789"
PROJECT = "support-bot"

SDK_SCRIPT = textwrap.dedent(
    """
    import sys
    from langsmith import Client
    from langsmith.run_trees import RunTree

    url, key, project = sys.argv[1:4]
    client = Client(api_url=url, api_key=key, tracing_mode="otel")
    meta = {"env": "staging", "count": 3, "user_id": "user-1", "session_id": "sess-1"}
    root = RunTree(
        name="support-flow", run_type="chain", inputs={"question": "hi?"}, client=client,
        project_name=project, tags=["prod", "v2"], extra={"metadata": meta},
    )
    root.post()
    r = root.create_child(name="retrieve", run_type="retriever", inputs={"query": "hi"},
                          extra={"metadata": {"k": 4}})
    r.post(); r.end(outputs={"documents": ["a", "b"]}); r.patch()
    llm = root.create_child(
        name="ChatModel", run_type="llm",
        inputs={"messages": [{"role": "user", "content": "hi?"}]},
        extra={"metadata": {"ls_model_name": "gpt-4o-mini"}},
    )
    llm.post()
    llm.end(outputs={"content": "hello", "usage_metadata": {
        "input_tokens": 12, "output_tokens": 5, "total_tokens": 17}})
    llm.patch()
    tool = root.create_child(name="lookup", run_type="tool", inputs={"id": 7})
    tool.post(); tool.end(outputs={"partial": True}, error="KeyError: 'id 7'"); tool.patch()
    root.end(outputs={"answer": "hello"}); root.patch()
    client.flush()
    from opentelemetry import trace
    trace.get_tracer_provider().force_flush()
    trace.get_tracer_provider().shutdown()
    """
)

#: SDK attributes that describe its own process, not the run
SDK_ONLY_PREFIXES = ("langsmith.metadata.LANGSMITH_", "langsmith.metadata.LANGCHAIN_")
SDK_ONLY = {"langsmith.metadata.revision_id", "gen_ai.serialized.name"}


def record_with_tracemux(svc: TracingService) -> None:
    with svc.trace_run(
        "support-flow",
        user_id="user-1",
        session_id="sess-1",
        tags=["prod", "v2"],
        metadata={"env": "staging", "count": 3},
        inputs={"question": "hi?"},
    ) as run:
        with run.span("retrieve", kind="retriever", inputs={"query": "hi"}, metadata={"k": 4}) as r:
            r.set_outputs({"documents": ["a", "b"]})
        with run.span(
            "ChatModel", kind="llm", inputs={"messages": [{"role": "user", "content": "hi?"}]}
        ) as g:
            g.set_usage(model="gpt-4o-mini", input_tokens=12, output_tokens=5)
            g.set_outputs({"content": "hello"})
        try:
            with run.span("lookup", kind="tool", inputs={"id": 7}) as tool:
                tool.set_outputs({"partial": True})
                raise KeyError("id 7")
        except KeyError:
            pass
        run.set_outputs({"answer": "hello"})


def value(key: str, v: Any) -> Any:
    if key in ("gen_ai.prompt", "gen_ai.completion"):
        data = json.loads(v)
        if isinstance(data, dict):
            data.pop("usage_metadata", None)  # the SDK reads tokens from the outputs
        return data
    return v


def by_name(spans: list[FlatSpan]) -> dict[str, FlatSpan]:
    return {s.name: s for s in spans}


@pytest.fixture(scope="module")
def sdk_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[FlatSpan], Any]:
    server = CaptureServer().start()
    try:
        script = Path(tmp_path_factory.mktemp("langsmith_sdk")) / "sdk.py"
        script.write_text(SDK_SCRIPT)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "OTEL_"))
        }
        env.update(
            LANGSMITH_TRACING="true",
            LANGSMITH_ENDPOINT=server.url,
            LANGSMITH_API_KEY=API_KEY,
            LANGSMITH_PROJECT=PROJECT,
        )
        proc = subprocess.run(
            [sys.executable, str(script), server.url, API_KEY, PROJECT],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert server.wait_for(lambda: len(server.spans()) >= 4, 10)
        return server.spans(), server.trace_requests()[0]
    finally:
        server.stop()


def test_attribute_parity_with_the_official_sdk(
    sdk_export: tuple[list[FlatSpan], Any], capture: CaptureServer, make_service: Callable
) -> None:
    sdk_spans, sdk_request = sdk_export
    svc = make_service([LangSmith(api_key=API_KEY, project=PROJECT, endpoint=capture.url)])
    record_with_tracemux(svc)
    assert svc.flush(10)
    ours, theirs = by_name(capture.spans()), by_name(sdk_spans)
    assert set(ours) == set(theirs) == {"support-flow", "retrieve", "ChatModel", "lookup"}
    for name, sdk_span in theirs.items():
        span = ours[name]
        expected = {
            k: v
            for k, v in sdk_span.attributes.items()
            if k not in SDK_ONLY and not k.startswith(SDK_ONLY_PREFIXES)
        }
        assert set(span.attributes) == set(expected), name
        for key, sdk_value in expected.items():
            assert value(key, span.attributes[key]) == value(key, sdk_value), (name, key)
        assert span.status_code == sdk_span.status_code, name
        assert span.kind == sdk_span.kind
        assert [e[0] for e in span.events] == [e[0] for e in sdk_span.events], name

    def parents(spans: dict[str, FlatSpan]) -> dict[str, str | None]:
        ids = {s.span_id: n for n, s in spans.items()}
        return {n: ids.get(s.parent_span_id) for n, s in spans.items()}

    assert parents(ours) == parents(theirs)
    (request,) = capture.trace_requests()
    assert request.path == sdk_request.path == "/otel/v1/traces"
    assert request.headers["x-api-key"] == sdk_request.headers["x-api-key"] == API_KEY
    assert request.headers["langsmith-project"] == sdk_request.headers["langsmith-project"]


def test_run_project_and_kinds(capture: CaptureServer, make_service: Callable) -> None:
    svc = make_service([LangSmith(api_key=API_KEY, project="default", endpoint=capture.url)])
    with svc.trace_run("flow", project="tenant-a") as run:
        for kind in ("embedding", "prompt", "parser", "agent", "custom"):
            with run.span(kind, kind=kind, inputs="plain text"):
                pass
    assert svc.flush(10)
    spans = by_name(capture.spans())
    assert {s.attributes["langsmith.trace.session_name"] for s in spans.values()} == {"tenant-a"}
    kinds = {n: s.attributes["langsmith.span.kind"] for n, s in spans.items()}
    assert kinds == {
        "flow": "chain",
        "embedding": "embedding",
        "prompt": "prompt",
        "parser": "parser",
        "agent": "chain",
        "custom": "chain",
    }
    assert json.loads(spans["prompt"].attributes["gen_ai.prompt"]) == {"input": "plain text"}
