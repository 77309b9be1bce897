"""Traceloop: tracemux's export carries what ``traceloop-sdk`` sends for the same tree.

The SDK runs in a side environment against a loopback capture server, with its
``@workflow`` / ``@task`` / ``@tool`` decorators and association properties for the run's
user, session and metadata. ``traceloop-sdk`` depends on some forty instrumentation
packages that pip cannot resolve together here; the side environment therefore holds the
SDK and exactly what its tracing path imports, pinned, installed without resolution.

Compared, by entity name: endpoint path, ``Authorization``, resource ``service.name``,
every attribute the SDK sets (JSON parsed), status and tree, except, said explicitly:
``traceloop.entity.path`` (the SDK's chain of enclosing task names: tracemux exports a
span before its parent, so the names above it are not known yet) and the span name (the
SDK's is ``<entity>.<kind>``, tracemux keeps the component's name; the UI shows the entity
name). The LLM span, which the SDK only produces through provider instrumentations, is
checked against the SDK's own attribute vocabulary (``opentelemetry-semantic-conventions-ai``
and the ``gen_ai`` semantic conventions installed with it).
"""

from __future__ import annotations

import json
import subprocess
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
from tests.destinations.conftest import CaptureServer, FlatSpan
from tracemux import TracingService
from tracemux.bench.sidevenv import side_venv
from tracemux.config import ConfigError
from tracemux.destinations import Traceloop
from tracemux.destinations.env import traceloop_from_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

API_KEY = "tl-0011223344556677889900aabbccddeeff"
APP = "support"
SDK_ONLY = {"traceloop.entity.path"}
REQUIREMENTS = [
    "--no-deps",
    *[
        "aiohappyeyeballs==2.7.1",
        "aiohttp==3.14.5",
        "aiosignal==1.4.0",
        "annotated-types==0.8.0",
        "anyio==4.16.0",
        "attrs==26.1.0",
        "certifi==2026.10.19.post1",
        "charset-normalizer==3.5.3",
        "colorama==0.4.6",
        "cuid==0.4",
        "Deprecated==1.3.1",
        "frozenlist==1.8.0",
        "googleapis-common-protos==1.76.0",
        "grpcio==1.85.3",
        "h11==0.16.0",
        "httpcore==1.0.9",
        "httpx==0.28.1",
        "idna==3.20",
        "importlib_metadata==10.2.0",
        "Jinja2==3.1.6",
        "MarkupSafe==3.0.4",
        "multidict==7.2.1",
        "opentelemetry-api==1.45.2",
        "opentelemetry-exporter-http-transport==0.66b2",
        "opentelemetry-exporter-otlp-common==0.66b2",
        "opentelemetry-exporter-otlp-proto-common==1.45.2",
        "opentelemetry-exporter-otlp-proto-grpc==1.45.2",
        "opentelemetry-exporter-otlp-proto-http==1.45.2",
        "opentelemetry-instrumentation==0.66b2",
        "opentelemetry-instrumentation-logging==0.66b2",
        "opentelemetry-instrumentation-threading==0.66b1",
        "opentelemetry-proto==1.45.2",
        "opentelemetry-sdk==1.45.2",
        "opentelemetry-semantic-conventions==0.66b2",
        "opentelemetry-semantic-conventions-ai==0.5.1",
        "packaging==26.4",
        "propcache==0.5.4",
        "protobuf==7.36.2",
        "pydantic==2.14.4",
        "pydantic_core==2.50.5",
        "requests==2.34.2",
        "sniffio==1.3.1",
        "tenacity==9.2.1",
        "traceloop-sdk==0.62.4",
        "typing-inspection==0.4.5",
        "typing_extensions==4.16.0",
        "urllib3==2.8.0",
        "wrapt==2.5.2",
        "yarl==1.25.1",
        "zipp==4.1.2",
    ],
]

SDK_SCRIPT = """
import sys

from opentelemetry import trace as otel
from traceloop.sdk import Traceloop
from traceloop.sdk.decorators import task, tool, workflow

url, key, app = sys.argv[1:4]
Traceloop.init(app_name=app, api_endpoint=url, api_key=key, disable_batch=True,
               telemetry_enabled=False, traceloop_sync_enabled=False)
Traceloop.set_association_properties(
    {"env": "staging", "user_id": "user-1", "session_id": "sess-1"}
)


@task(name="retrieve")
def retrieve(query):
    return {"documents": ["a", "b"]}


@tool(name="lookup")
def lookup(id):
    raise KeyError("id 7")


@task(name="Agent")
def agent(input_value):
    retrieve(query="hi")
    try:
        lookup(id=7)
    except KeyError:
        pass
    return {"response": "hello"}


@workflow(name="support-flow")
def flow(question):
    agent(input_value="hi?")
    return {"answer": "hello"}


flow(question="hi?")
otel.get_tracer_provider().force_flush()
otel.get_tracer_provider().shutdown()
"""

VOCABULARY_SCRIPT = """
import json
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as g
from opentelemetry.semconv_ai import SpanAttributes as S

names = {v for k, v in vars(S).items() if k.isupper() and isinstance(v, str)}
names |= {v for k, v in vars(g).items() if k.isupper() and isinstance(v, str)}
print(json.dumps(sorted(names)))
"""


def by_entity(spans: list[FlatSpan]) -> dict[str, FlatSpan]:
    return {s.attributes["traceloop.entity.name"]: s for s in spans}


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> CaptureServer:
    env = clean_env("TRACELOOP_")
    env["TRACELOOP_TELEMETRY"] = "false"
    return sdk_capture(
        Path(tmp_path_factory.mktemp("traceloop")),
        "traceloop",
        REQUIREMENTS,
        SDK_SCRIPT,
        ["URL", API_KEY, APP],
        env,
        done=lambda s: len(s.spans()) >= 4,
    )


def test_parity_with_the_official_sdk(
    sdk: CaptureServer, capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    svc = make_service([Traceloop(api_key=API_KEY, base_url=capture.url, app_name=APP)])
    record_flow(svc)
    assert svc.flush(10)
    all_ours = capture.spans()
    ours = by_entity([s for s in all_ours if "traceloop.entity.name" in s.attributes])
    theirs = by_entity(sdk.spans())
    assert set(ours) == set(theirs) == {"support-flow", "Agent", "retrieve", "lookup"}
    for name, sdk_span in theirs.items():
        expected = {k: v for k, v in sdk_span.attributes.items() if k not in SDK_ONLY}
        got = ours[name].attributes
        assert set(got) == set(expected), name
        for key, value in expected.items():
            assert loads_or_value(got[key]) == loads_or_value(value), (name, key)
        assert ours[name].status_code == sdk_span.status_code, name
        assert [e[0] for e in ours[name].events] == [e[0] for e in sdk_span.events], name
        assert ours[name].resource["service.name"] == sdk_span.resource["service.name"] == APP
    expected_tree = {k: v for k, v in PARENTS.items() if k != "ChatModel"}
    assert parents(ours) == parents(theirs) == expected_tree
    req, sdk_req = capture.trace_requests()[0], sdk.trace_requests()[0]
    assert req.path == sdk_req.path == "/v1/traces"
    assert req.headers["authorization"] == sdk_req.headers["authorization"] == f"Bearer {API_KEY}"


def test_llm_spans_use_the_sdks_vocabulary_and_stay_in_the_run(
    sdk: CaptureServer, capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    """More complete than Langflow's tracer, whose LangChain spans start separate traces:
    the LLM span is in the run, under its component, with the run's association
    properties, in attribute names the SDK's conventions define."""
    python = side_venv("traceloop", REQUIREMENTS, editable=())
    out = subprocess.run(
        [str(python), "-c", VOCABULARY_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    vocabulary = set(json.loads(out.stdout))
    svc = make_service([Traceloop(api_key=API_KEY, base_url=capture.url)])
    record_flow(svc)
    assert svc.flush(10)
    spans = by_name(capture.spans())
    llm = spans["ChatModel"]
    assert len({s.trace_id for s in spans.values()}) == 1
    assert parents(spans)["ChatModel"] == "Agent"
    own = {k for k in llm.attributes if not k.startswith("traceloop.association.properties.")}
    assert own <= vocabulary, own - vocabulary
    a = llm.attributes
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12, 5)
    assert a["llm.usage.total_tokens"] == 17
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi?"}]}
    ]
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"][0]["content"] == "hello"
    assert a["traceloop.association.properties.user_id"] == "user-1"
    assert a["traceloop.association.properties.session_id"] == "sess-1"


def test_from_env_follows_langflow() -> None:
    assert traceloop_from_env({}) is None
    assert traceloop_from_env({"TRACELOOP_API_KEY": "  "}) is None  # Langflow strips it
    dest = traceloop_from_env({"TRACELOOP_API_KEY": API_KEY})
    assert dest == Traceloop(api_key=API_KEY)
    assert dest.traces_url() == "https://api.traceloop.com/v1/traces"
    assert dest.request_headers() == {"Authorization": f"Bearer {API_KEY}"}
    # TRACELOOP_HEADERS replace the bearer token, as in the SDK
    custom = traceloop_from_env(
        {
            "TRACELOOP_API_KEY": API_KEY,
            "TRACELOOP_BASE_URL": "http://collector:4318/",
            "TRACELOOP_HEADERS": "x-instana-key=abc%3D,x-other=1",
        }
    )
    assert custom is not None and custom.traces_url() == "http://collector:4318/v1/traces"
    assert custom.request_headers() == {"x-instana-key": "abc=", "x-other": "1"}
    assert "abc=" not in custom.describe() and API_KEY not in custom.describe()
    with pytest.raises(ConfigError, match="TRACELOOP_BASE_URL") as exc:
        traceloop_from_env({"TRACELOOP_API_KEY": API_KEY, "TRACELOOP_BASE_URL": "no-scheme"})
    assert API_KEY not in str(exc.value)
    with pytest.raises(ConfigError, match="TRACELOOP_API_KEY is not"):
        traceloop_from_env({"TRACELOOP_BASE_URL": "https://api.traceloop.com"})


def test_run_ids_win_over_metadata_keys_of_the_same_name(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    svc = make_service([Traceloop(api_key=API_KEY, base_url=capture.url)])
    with svc.trace_run("flow", user_id="u-real", metadata={"user_id": "u-meta", "n": 3}):
        pass
    assert svc.flush(10)
    (req,) = capture.trace_requests()
    (span,) = req.otlp.resource_spans[0].scope_spans[0].spans
    keys = [kv.key for kv in span.attributes]
    assert len(keys) == len(set(keys))  # one value per key
    attrs = capture.spans()[0].attributes
    assert attrs["traceloop.association.properties.user_id"] == "u-real"
    assert attrs["traceloop.association.properties.n"] == "3"
