"""Langfuse: tracemux's export carries the attributes the official SDK (5.x) sends.

The official SDK runs in a subprocess (it installs a global TracerProvider and background
threads) against the loopback capture server, for a trace equivalent to one recorded with
tracemux; both exports are decoded and compared key by key.
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

pytest.importorskip("langfuse", minversion="5")  # langfuse 5 needs Python 3.11+

from tests.destinations.conftest import CaptureServer, FlatSpan
from tracemux import TracingService
from tracemux.destinations import Langfuse

PUBLIC = "pk-lf-00000000-1111-2222-3333-444444444444"
SECRET = "sk-lf-99999999-8888-7777-6666-555555555555"
META = {"env": "staging", "count": 3, "nested": {"a": [1, 2]}}

SDK_SCRIPT = textwrap.dedent(
    """
    import sys
    from langfuse import Langfuse, propagate_attributes

    url, public, secret = sys.argv[1:4]
    meta = {"env": "staging", "count": 3, "nested": {"a": [1, 2]}}
    lf = Langfuse(public_key=public, secret_key=secret, base_url=url, flush_at=100)
    with lf.start_as_current_observation(
        name="support-flow", as_type="chain", input={"question": "hi?"}, metadata=meta
    ) as root:
        with propagate_attributes(
            user_id="user-1", session_id="sess-1", tags=["prod", "v2"],
            trace_name="support-flow", metadata=meta,
        ):
            with lf.start_as_current_observation(
                name="retrieve", as_type="retriever", input={"query": "hi"},
                metadata={"k": 4},
            ) as r:
                r.update(output=[{"doc": "a"}, {"doc": "b"}])
            with lf.start_as_current_observation(
                name="ChatModel", as_type="generation",
                input=[{"role": "user", "content": "hi?"}], model="gpt-4o-mini",
            ) as gen:
                gen.update(
                    output={"role": "assistant", "content": "hello"},
                    usage_details={"input": 12, "output": 5, "total": 17},
                )
            with lf.start_as_current_observation(
                name="lookup", as_type="tool", input={"id": 7}
            ) as tool:
                tool.update(output="not found", level="ERROR",
                            status_message="KeyError: 'id 7'")
        root.update(output="hello")
    lf.flush()
    lf.shutdown()
    """
)


def record_with_tracemux(svc: TracingService) -> None:
    with svc.trace_run(
        "support-flow",
        user_id="user-1",
        session_id="sess-1",
        tags=["prod", "v2"],
        metadata=META,
        inputs={"question": "hi?"},
    ) as run:
        with run.span("retrieve", kind="retriever", inputs={"query": "hi"}, metadata={"k": 4}) as r:
            r.set_outputs([{"doc": "a"}, {"doc": "b"}])
        with run.span("ChatModel", kind="llm", inputs=[{"role": "user", "content": "hi?"}]) as g:
            g.set_usage(model="gpt-4o-mini", input_tokens=12, output_tokens=5)
            g.set_outputs({"role": "assistant", "content": "hello"})
        try:
            with run.span("lookup", kind="tool", inputs={"id": 7}) as tool:
                tool.set_outputs("not found")
                raise KeyError("id 7")
        except KeyError:
            pass
        run.set_outputs("hello")


def value(v: Any) -> Any:
    """JSON text compared as data (the SDK writes ``", "`` separators, tracemux compact)."""
    if isinstance(v, str) and v[:1] in '{["0123456789-tfn':
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def by_name(spans: list[FlatSpan]) -> dict[str, FlatSpan]:
    out = {s.name: s for s in spans}
    assert len(out) == len(spans), "span names must be unique in this test"
    return out


@pytest.fixture(scope="module")
def sdk_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[FlatSpan], Any]:
    """What the official SDK sends for the equivalent trace."""
    server = CaptureServer().start()
    try:
        script = Path(tmp_path_factory.mktemp("langfuse_sdk")) / "sdk.py"
        script.write_text(SDK_SCRIPT)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
        proc = subprocess.run(
            [sys.executable, str(script), server.url, PUBLIC, SECRET],
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


def test_sdk_version_is_5() -> None:
    import langfuse

    assert langfuse.__version__.split(".")[0] == "5", langfuse.__version__


def test_attribute_parity_with_the_official_sdk(
    sdk_export: tuple[list[FlatSpan], Any], capture: CaptureServer, make_service: Callable
) -> None:
    sdk_spans, sdk_request = sdk_export
    svc = make_service([Langfuse(public_key=PUBLIC, secret_key=SECRET, host=capture.url)])
    record_with_tracemux(svc)
    assert svc.flush(10)
    ours = by_name(capture.spans())
    theirs = by_name(sdk_spans)
    assert set(ours) == set(theirs) == {"support-flow", "retrieve", "ChatModel", "lookup"}

    for name, sdk_span in theirs.items():
        span = ours[name]
        assert set(span.attributes) == set(sdk_span.attributes), name
        for key, sdk_value in sdk_span.attributes.items():
            assert value(span.attributes[key]) == value(sdk_value), (name, key)
        assert span.status_code == sdk_span.status_code, name
        assert span.status_message == sdk_span.status_message, name
        assert span.kind == sdk_span.kind, name

    # the same tree
    def parents(spans: dict[str, FlatSpan]) -> dict[str, str | None]:
        ids = {s.span_id: n for n, s in spans.items()}
        return {n: ids.get(s.parent_span_id) for n, s in spans.items()}

    assert parents(ours) == parents(theirs)
    assert len({s.trace_id for s in ours.values()}) == 1

    # the same endpoint and authentication
    (request,) = capture.trace_requests()
    assert request.path == sdk_request.path == "/api/public/otel/v1/traces"
    for header in ("authorization", "x-langfuse-public-key", "x-langfuse-ingestion-version"):
        assert request.headers[header] == sdk_request.headers[header], header
    assert request.headers["content-encoding"] == sdk_request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == sdk_request.headers["content-type"]
    assert set(sdk_request.headers) - set(request.headers) <= {"accept-encoding"}


def test_mapping_details(capture: CaptureServer, make_service: Callable) -> None:
    svc = make_service(
        [Langfuse(public_key=PUBLIC, secret_key=SECRET, host=capture.url, environment="prod")]
    )
    long_user = "u" * 201
    with svc.trace_run("flow", user_id=long_user, metadata={"big": "x" * 300, "ok": 1}) as run:
        for kind in ("embedding", "agent", "guardrail", "evaluator", "prompt", "parser", "custom"):
            with run.span(kind, kind=kind):
                pass
    assert svc.flush(10)
    spans = by_name(capture.spans())
    assert "user.id" not in spans["flow"].attributes  # over 200 characters: the SDK drops it
    assert "langfuse.trace.metadata.big" not in spans["flow"].attributes
    assert spans["flow"].attributes["langfuse.trace.metadata.ok"] == "1"
    assert spans["flow"].attributes["langfuse.observation.metadata.big"] == json.dumps("x" * 300)
    types = {n: s.attributes["langfuse.observation.type"] for n, s in spans.items()}
    assert types == {
        "flow": "chain",
        "embedding": "embedding",
        "agent": "agent",
        "guardrail": "guardrail",
        "evaluator": "evaluator",
        "prompt": "span",
        "parser": "span",
        "custom": "span",
    }
    assert all(s.attributes["langfuse.environment"] == "prod" for s in spans.values())
    assert spans["flow"].resource["langfuse.environment"] == "prod"
