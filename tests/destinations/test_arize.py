"""Arize AX: tracemux's export reaches Arize's collector as ``arize-otel`` sends it.

Transport: Langflow's tracer uses gRPC; Arize's collector also takes OTLP/HTTP protobuf at
``/v1/traces`` (``arize-otel``'s ``HTTPSpanExporter``), which tracemux uses (see
:mod:`tracemux.destinations.arize`). The official exporter runs in a side environment
against a loopback capture server; it decides the path, the headers and (as ``register``
builds it) the resource. The span attributes on the SDK side are OpenInference ones, set
with ``openinference-semantic-conventions`` constants the way Langflow's tracer and the
OpenInference LangChain instrumentation set them; tracemux must send the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.destinations.backend_flow import (
    PARENTS,
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
from tracemux.destinations import Arize
from tracemux.destinations.env import arize_from_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

API_KEY = "ak-0011223344556677889900aabbccddeeff"
SPACE = "U3BhY2U6MTIzNDU2"
REQUIREMENTS = ["arize-otel==0.14.1"]
AUTH_HEADERS = ("authorization", "api_key", "arize-space-id", "space_id", "arize-interface")

SDK_SCRIPT = """
import json
import sys

from arize.otel import HTTPSpanExporter
from openinference.semconv.resource import ResourceAttributes
from openinference.semconv.trace import OpenInferenceMimeTypeValues as M
from openinference.semconv.trace import SpanAttributes as A
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

url, key, space = sys.argv[1:4]
# what arize.otel.register(transport=Transport.HTTP) builds; register() itself fails on its
# banner with opentelemetry-exporter-otlp-proto-http 1.4x (the exporter has no _headers)
tp = TracerProvider(resource=Resource.create({ResourceAttributes.PROJECT_NAME: "support-flow"}))
tp.add_span_processor(
    SimpleSpanProcessor(HTTPSpanExporter(space_id=space, api_key=key, endpoint=url + "/v1/traces"))
)
tracer = tp.get_tracer("sdk")


def io(span, key, mime, value):
    if isinstance(value, str):
        span.set_attribute(key, value)
        span.set_attribute(mime, M.TEXT.value)
    else:
        span.set_attribute(key, json.dumps(value))
        span.set_attribute(mime, M.JSON.value)


def common(span, kind):
    span.set_attribute(A.OPENINFERENCE_SPAN_KIND, kind)
    span.set_attribute(A.USER_ID, "user-1")
    span.set_attribute(A.SESSION_ID, "sess-1")
    span.set_attribute(A.TAG_TAGS, ["prod", "v2"])
    span.set_attribute(A.METADATA, json.dumps({"env": "staging"}))


with tracer.start_as_current_span("support-flow") as root:
    common(root, "CHAIN")
    io(root, A.INPUT_VALUE, A.INPUT_MIME_TYPE, {"question": "hi?"})
    with tracer.start_as_current_span("Agent") as comp:
        common(comp, "CHAIN")
        io(comp, A.INPUT_VALUE, A.INPUT_MIME_TYPE, {"input_value": "hi?"})
        with tracer.start_as_current_span("retrieve") as r:
            common(r, "RETRIEVER")
            io(r, A.INPUT_VALUE, A.INPUT_MIME_TYPE, {"query": "hi"})
            io(r, A.OUTPUT_VALUE, A.OUTPUT_MIME_TYPE, {"documents": ["a", "b"]})
            r.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("ChatModel") as llm:
            common(llm, "LLM")
            io(llm, A.INPUT_VALUE, A.INPUT_MIME_TYPE, [{"role": "user", "content": "hi?"}])
            io(llm, A.OUTPUT_VALUE, A.OUTPUT_MIME_TYPE, "hello")
            llm.set_attribute(A.LLM_MODEL_NAME, "gpt-4o-mini")
            llm.set_attribute(A.LLM_TOKEN_COUNT_PROMPT, 12)
            llm.set_attribute(A.LLM_TOKEN_COUNT_COMPLETION, 5)
            llm.set_attribute(A.LLM_TOKEN_COUNT_TOTAL, 17)
            llm.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span(
            "lookup", record_exception=False, set_status_on_exception=False
        ) as tool:
            common(tool, "TOOL")
            tool.set_attribute(A.TOOL_NAME, "lookup")
            io(tool, A.INPUT_VALUE, A.INPUT_MIME_TYPE, {"id": 7})
            tool.record_exception(KeyError("id 7"))
            tool.set_status(Status(StatusCode.ERROR, "KeyError: 'id 7'"))
        io(comp, A.OUTPUT_VALUE, A.OUTPUT_MIME_TYPE, {"response": "hello"})
        comp.set_status(Status(StatusCode.OK))
    io(root, A.OUTPUT_VALUE, A.OUTPUT_MIME_TYPE, {"answer": "hello"})
    root.set_status(Status(StatusCode.OK))
tp.force_flush()
tp.shutdown()
"""


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> CaptureServer:
    return sdk_capture(
        Path(tmp_path_factory.mktemp("arize")),
        "arize",
        REQUIREMENTS,
        SDK_SCRIPT,
        ["URL", API_KEY, SPACE],
        clean_env("ARIZE_", "PHOENIX_"),
        done=lambda s: len(s.spans()) >= 5,
    )


def test_parity_with_the_official_exporter(
    sdk: CaptureServer, capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    svc = make_service([Arize(api_key=API_KEY, space_id=SPACE, endpoint=capture.url)])
    record_flow(svc)
    assert svc.flush(10)
    ours, theirs = by_name(capture.spans()), by_name(sdk.spans())
    assert set(ours) == set(theirs) == set(PARENTS)
    for name, sdk_span in theirs.items():
        got = ours[name].attributes
        assert set(got) == set(sdk_span.attributes), name
        for key, value in sdk_span.attributes.items():
            assert loads_or_value(got[key]) == loads_or_value(value), (name, key)
        assert ours[name].status_code == sdk_span.status_code, name
        assert [e[0] for e in ours[name].events] == [e[0] for e in sdk_span.events], name
        project = "openinference.project.name"
        assert ours[name].resource[project] == sdk_span.resource[project] == "support-flow"
        # Langflow's tracer also sets model_id (Arize AX lists projects by it); register() not
        assert ours[name].resource["model_id"] == "support-flow"
    assert parents(ours) == parents(theirs) == PARENTS
    req, sdk_req = capture.trace_requests()[0], sdk.trace_requests()[0]
    assert req.path == sdk_req.path == "/v1/traces"
    for header in AUTH_HEADERS:
        assert req.headers[header] == sdk_req.headers[header], header
    assert req.headers["authorization"] == API_KEY and req.headers["arize-space-id"] == SPACE


def test_one_trace_with_llm_spans_under_their_component(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    """More complete than Langflow's tracer: there the LangChain instrumentation's LLM and
    tool spans start new traces; tracemux keeps them in the run, under their component."""
    svc = make_service([Arize(api_key=API_KEY, space_id=SPACE, endpoint=capture.url)])
    record_flow(svc)
    assert svc.flush(10)
    spans = by_name(capture.spans())
    assert len({s.trace_id for s in spans.values()}) == 1
    assert parents(spans)["ChatModel"] == parents(spans)["lookup"] == "Agent"


def test_project_per_flow_as_langflow_names_it(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    svc = make_service([Arize(api_key=API_KEY, space_id=SPACE, endpoint=capture.url)])
    record_flow(svc, name="My Flow - 0b5e", project="Langflow")
    record_flow(svc, name="None - 77aa", project="Langflow")
    fixed = make_service(
        [Arize(api_key=API_KEY, space_id=SPACE, endpoint=capture.url, project="support")]
    )
    record_flow(fixed, name="Other - 1")
    assert svc.flush(10) and fixed.flush(10)
    projects = {s.resource["openinference.project.name"] for s in capture.spans()}
    assert projects == {"My-Flow", "Langflow", "support"}


def test_from_env_follows_langflow() -> None:
    assert arize_from_env({}) is None
    dest = arize_from_env({"ARIZE_API_KEY": API_KEY, "ARIZE_SPACE_ID": SPACE})
    assert dest == Arize(api_key=API_KEY, space_id=SPACE)
    assert dest.traces_url() == "https://otlp.arize.com/v1/traces"
    # Langflow appends /v1 for its gRPC exporter; the same value works here
    eu = arize_from_env(
        {
            "ARIZE_API_KEY": API_KEY,
            "ARIZE_SPACE_ID": SPACE,
            "ARIZE_COLLECTOR_ENDPOINT": "https://otlp.eu-west-1a.arize.com/v1",
        }
    )
    assert eu is not None and eu.traces_url() == "https://otlp.eu-west-1a.arize.com/v1/traces"
    # Langflow silently disables a half-configured tracer; tracemux says what is missing
    with pytest.raises(ConfigError, match="ARIZE_SPACE_ID is not") as exc:
        arize_from_env({"ARIZE_API_KEY": API_KEY})
    assert API_KEY not in str(exc.value)
    with pytest.raises(ConfigError, match="ARIZE_API_KEY is not"):
        arize_from_env({"ARIZE_SPACE_ID": SPACE})
    assert API_KEY not in dest.describe() and API_KEY not in repr(dest)
