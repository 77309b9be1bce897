"""LangWatch: tracemux's export carries what the official SDK (``langwatch``) sends.

The SDK runs in a side environment (``tracemux.bench.sidevenv``) against a loopback capture
server, for the same Langflow-shaped tree (``backend_flow``); both OTLP exports are decoded
and compared span by span. Compared: endpoint path, ``Authorization``, every attribute
the SDK sets except ``langwatch.timestamps`` (the SDK's own clock readings, ``{}`` here),
JSON values parsed, span status and the tree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.destinations.backend_flow import (
    META,
    PARENTS,
    SESSION,
    TAGS,
    USER,
    by_name,
    clean_env,
    loads_or_value,
    parents,
    record_flow,
    sdk_capture,
)
from tests.destinations.conftest import CaptureServer
from tracemux import TracingService
from tracemux.config import ConfigError
from tracemux.destinations import LangWatch
from tracemux.destinations.env import langwatch_from_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

API_KEY = "sk-lw-0011223344556677889900aabbccddeeff"
REQUIREMENTS = ["langwatch==1.4.0"]
SDK_ONLY = {"langwatch.timestamps"}

SDK_SCRIPT = """
import sys
import langwatch
from opentelemetry import trace as otel

url, key = sys.argv[1:3]
langwatch.setup(api_key=key, endpoint_url=url)
meta = {"env": "staging", "thread_id": "sess-1", "user_id": "user-1", "labels": ["prod", "v2"]}
with langwatch.trace(name="support-flow", metadata=meta) as t:
    t.root_span.update(type="workflow", input={"question": "hi?"})
    # a flow's component, typed as Langflow's LangWatch tracer types it
    with langwatch.span(name="Agent", type="component", input={"input_value": "hi?"}) as comp:
        with langwatch.span(name="retrieve", type="rag", input={"query": "hi"}) as r:
            r.update(output={"documents": ["a", "b"]})
        with langwatch.span(
            name="ChatModel", type="llm", input=[{"role": "user", "content": "hi?"}],
            model="gpt-4o-mini",
        ) as llm:
            llm.update(output="hello", metrics={"prompt_tokens": 12, "completion_tokens": 5})
        try:
            with langwatch.span(name="lookup", type="tool", input={"id": 7}):
                raise KeyError("id 7")
        except KeyError:
            pass
        comp.update(output={"response": "hello"})
    t.root_span.update(output={"answer": "hello"})
otel.get_tracer_provider().force_flush()
otel.get_tracer_provider().shutdown()
"""


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> CaptureServer:
    return sdk_capture(
        Path(tmp_path_factory.mktemp("langwatch")),
        "langwatch",
        REQUIREMENTS,
        SDK_SCRIPT,
        ["URL", API_KEY],
        clean_env("LANGWATCH_"),
        done=lambda s: len(s.spans()) >= 5,
    )


def test_parity_with_the_official_sdk(
    sdk: CaptureServer, capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    svc = make_service([LangWatch(api_key=API_KEY, endpoint=capture.url)])
    record_flow(svc)
    assert svc.flush(10)
    ours, theirs = by_name(capture.spans()), by_name(sdk.spans())
    assert set(ours) == set(theirs) == set(PARENTS)
    for name, sdk_span in theirs.items():
        expected = {k: v for k, v in sdk_span.attributes.items() if k not in SDK_ONLY}
        got = ours[name].attributes
        assert set(got) == set(expected), name
        for key, value in expected.items():
            assert loads_or_value(got[key]) == loads_or_value(value), (name, key)
        assert ours[name].status_code == sdk_span.status_code, name
        assert ("exception" in [e[0] for e in ours[name].events]) == (
            "exception" in [e[0] for e in sdk_span.events]
        ), name
    assert parents(ours) == parents(theirs) == PARENTS
    (req,) = capture.trace_requests()
    (sdk_req,) = sdk.trace_requests()
    assert req.path == sdk_req.path == "/api/otel/v1/traces"
    assert req.headers["authorization"] == sdk_req.headers["authorization"] == f"Bearer {API_KEY}"


def test_thread_user_and_labels_ride_on_the_root(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    """Langflow's tracer puts the thread id in the trace metadata only when the session
    differs from the flow id and never sends the user id; tracemux always sends both."""
    svc = make_service([LangWatch(api_key=API_KEY, endpoint=capture.url)])
    record_flow(svc)
    assert svc.flush(10)
    spans = by_name(capture.spans())
    meta = json.loads(spans["support-flow"].attributes["metadata"])
    assert meta == {**META, "thread_id": SESSION, "user_id": USER, "labels": TAGS}
    assert all("metadata" not in s.attributes for n, s in spans.items() if n != "support-flow")


def test_llm_and_tool_spans_nest_under_their_component(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    """More complete than Langflow's tracer: its LangChain callback attaches LLM and tool
    spans to the trace's root; tracemux keeps them under the component that ran them."""
    svc = make_service([LangWatch(api_key=API_KEY, endpoint=capture.url)])
    record_flow(svc)
    assert svc.flush(10)
    tree = parents(by_name(capture.spans()))
    assert tree["ChatModel"] == tree["lookup"] == tree["retrieve"] == "Agent"


def test_from_env_follows_langflow() -> None:
    assert langwatch_from_env({}) is None
    dest = langwatch_from_env({"LANGWATCH_API_KEY": API_KEY})
    assert dest == LangWatch(api_key=API_KEY)
    assert dest.traces_url() == "https://app.langwatch.ai/api/otel/v1/traces"
    custom = langwatch_from_env(
        {"LANGWATCH_API_KEY": API_KEY, "LANGWATCH_ENDPOINT": "http://lw.local:5560/"}
    )
    assert custom is not None and custom.traces_url() == "http://lw.local:5560/api/otel/v1/traces"
    with pytest.raises(ConfigError, match="LANGWATCH_API_KEY is not") as exc:
        langwatch_from_env({"LANGWATCH_ENDPOINT": "http://lw.local"})
    with pytest.raises(ConfigError, match="LANGWATCH_ENDPOINT") as exc:
        langwatch_from_env({"LANGWATCH_API_KEY": API_KEY, "LANGWATCH_ENDPOINT": "ftp://x"})
    assert API_KEY not in str(exc.value)
    assert API_KEY not in dest.describe() and API_KEY not in repr(dest)
