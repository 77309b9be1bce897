"""Opik: tracemux writes through Opik's REST API what the official SDK (``opik``) writes.

The SDK runs in a side environment against a loopback capture server. Its script uses
``Opik.trace(...)`` / ``Opik.span(...)`` with every field given at once, as Langflow's
tracer calls them at the end of each component and run; both sides' batch requests are
compared field by field. Differences that are not about the run: ``last_updated_at`` (the
SDK's clock), the SDK's ``original_usage.*`` copies of the usage keys, ids and times.

The SDK's analytics address (``OPIK_ANALYTICS_URL``) is pointed at the capture server too:
the test shows the SDK reports product usage there by default, while tracemux sends
nothing but traces and spans.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.destinations.backend_flow import clean_env, record_flow, sdk_capture
from tests.destinations.conftest import CaptureServer
from tracemux import TracingService
from tracemux.config import ConfigError
from tracemux.destinations import Opik
from tracemux.destinations.env import opik_from_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

API_KEY = "opik-0011223344556677889900aabbccdd"
WORKSPACE = "team-ws"
PROJECT = "Langflow"
#: the SDK and what its tracing path imports, pinned (its full dependencies add litellm,
#: openai and botocore, ~400 MB, that this test never loads)
REQUIREMENTS = [
    "--no-deps",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "certifi==2026.10.19.post1",
    "h11==0.16.0",
    "httpcore==1.0.9",
    "httpx==0.28.1",
    "idna==3.20",
    "Jinja2==3.1.6",
    "MarkupSafe==3.0.4",
    "opik==2.2.122",
    "pydantic==2.14.4",
    "pydantic-settings==2.16.3",
    "pydantic_core==2.50.5",
    "python-dotenv==1.2.4",
    "rich==15.0.0",
    "sentry-sdk==2.75.0",
    "sniffio==1.3.1",
    "tenacity==9.2.1",
    "tqdm==4.70.1",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
    "uuid6==2025.0.1",
]
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
#: fields that describe the SDK's process or clock, not the run
SKIP = {"id", "trace_id", "parent_span_id", "start_time", "end_time", "last_updated_at"}

SDK_SCRIPT = """
import datetime as dt
import sys

import opik

url, key, workspace, project = sys.argv[1:5]
client = opik.Opik(project_name=project, host=url + "/api", api_key=key, workspace=workspace,
                   _show_misconfiguration_message=False)
client.auth_check()  # as Langflow's tracer does before it enables itself
now = dt.datetime.now(dt.timezone.utc)
trace = client.trace(
    name="support-flow", start_time=now, end_time=now, input={"question": "hi?"},
    output={"answer": "hello"}, metadata={"env": "staging", "user_id": "user-1"},
    tags=["prod", "v2"], thread_id="sess-1",
)
agent = client.span(trace_id=trace.id, name="Agent", type="general", start_time=now,
                    end_time=now, input={"input_value": "hi?"}, output={"response": "hello"})
for kw in (
    dict(name="retrieve", type="general", input={"query": "hi"},
         output={"documents": ["a", "b"]}),
    dict(name="ChatModel", type="llm", input={"input": [{"role": "user", "content": "hi?"}]},
         output={"output": "hello"}, model="gpt-4o-mini", provider="openai",
         usage={"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}),
    dict(name="lookup", type="tool", input={"id": 7},
         error_info={"exception_type": "KeyError", "message": "'id 7'", "traceback": "tb"}),
):
    client.span(trace_id=trace.id, parent_span_id=agent.id, start_time=now, end_time=now, **kw)
client.flush()
client.end()
"""


def records(server: CaptureServer, path_end: str, key: str) -> list[dict[str, Any]]:
    return [
        item
        for r in server.snapshot()
        if r.method == "POST" and r.path.endswith(path_end)
        for item in r.json()[key]
    ]


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> CaptureServer:
    env = clean_env("OPIK_")
    env["OPIK_SENTRY_ENABLE"] = "false"
    server_env = dict(env)

    def done(s: CaptureServer) -> bool:
        return len(records(s, "/spans/batch", "spans")) >= 4 and bool(
            records(s, "/traces/batch", "traces")
        )

    tmp = Path(tmp_path_factory.mktemp("opik"))
    # the analytics URL names the capture server, known once it runs: argv[5]
    return sdk_capture(
        tmp,
        "opik",
        REQUIREMENTS,
        "import os, sys\nos.environ['OPIK_ANALYTICS_URL'] = sys.argv[5]\n" + SDK_SCRIPT,
        ["URL", API_KEY, WORKSPACE, PROJECT, "URL/notify/event/"],
        server_env,
        done=done,
    )


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


def comparable(item: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in item.items() if k not in SKIP}
    if "usage" in out:
        out["usage"] = {k: v for k, v in out["usage"].items() if not k.startswith("original_")}
    if "error_info" in out:
        out["error_info"] = {k: v for k, v in out["error_info"].items() if k != "traceback"}
    return out


def test_parity_with_the_official_sdk(
    sdk: CaptureServer, capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    dest = Opik(url=capture.url + "/api", api_key=API_KEY, workspace=WORKSPACE, project=PROJECT)
    svc = make_service([dest])
    record_flow(svc)
    assert svc.flush(10)
    ours_spans = by_name(records(capture, "/spans/batch", "spans"))
    sdk_spans = by_name(records(sdk, "/spans/batch", "spans"))
    assert set(ours_spans) == set(sdk_spans) == {"Agent", "retrieve", "ChatModel", "lookup"}
    for name, theirs in sdk_spans.items():
        ours = comparable(ours_spans[name])
        expected = comparable(theirs)
        if name == "retrieve":  # the SDK copies the client's last provider onto it
            expected.pop("provider", None)
        assert ours == expected, name
    (ours_trace,) = records(capture, "/traces/batch", "traces")
    (sdk_trace,) = records(sdk, "/traces/batch", "traces")
    assert comparable(ours_trace) == comparable(sdk_trace)
    # ids: UUID v7, spans in their trace, the tree as the SDK's
    ids = {n: s["id"] for n, s in ours_spans.items()}
    assert all(UUID7.match(i) for i in [*ids.values(), ours_trace["id"]])
    assert {s["trace_id"] for s in ours_spans.values()} == {ours_trace["id"]}
    assert "parent_span_id" not in ours_spans["Agent"]
    for name in ("retrieve", "ChatModel", "lookup"):
        assert ours_spans[name]["parent_span_id"] == ids["Agent"]
    # the same endpoints and credentials
    ours_req = [r for r in capture.snapshot() if r.method == "POST"]
    sdk_req = [r for r in sdk.snapshot() if r.method == "POST" and "/batch" in r.path]
    assert (
        {r.path for r in ours_req}
        == {r.path for r in sdk_req}
        == {
            "/api/v1/private/spans/batch",
            "/api/v1/private/traces/batch",
        }
    )
    for r in (*ours_req, *sdk_req):
        assert r.headers["authorization"] == API_KEY  # no "Bearer", as the SDK sends it
        assert r.headers["comet-workspace"] == WORKSPACE


def test_nothing_goes_to_analytics(
    sdk: CaptureServer, capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    """The SDK reports usage analytics by default (its ``auth_check``, which Langflow's
    tracer calls, is an event; here caught by the capture server); tracemux sends only
    traces and spans."""
    assert any(r.path == "/notify/event/" for r in sdk.snapshot())
    svc = make_service([Opik(url=capture.url + "/api", api_key=API_KEY)])
    record_flow(svc)
    assert svc.flush(10)
    assert {r.path for r in capture.snapshot()} == {
        "/api/v1/private/spans/batch",
        "/api/v1/private/traces/batch",
    }


def test_component_spans_arrive(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    """More complete than Langflow's tracer: with this SDK its ``Opik.span(**span.__dict__)``
    raises (unexpected keyword ``source``), so no component span arrives and the LangChain
    LLM/tool spans are left without their parent. tracemux sends every span, nested."""
    svc = make_service([Opik(url=capture.url + "/api", api_key=API_KEY)])
    record_flow(svc)
    assert svc.flush(10)
    spans = by_name(records(capture, "/spans/batch", "spans"))
    assert spans["Agent"]["type"] == "general"
    assert spans["ChatModel"]["parent_span_id"] == spans["Agent"]["id"]
    assert spans["ChatModel"]["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 17,
    }
    assert spans["lookup"]["error_info"]["exception_type"] == "KeyError"
    assert "KeyError" in spans["lookup"]["error_info"]["traceback"]
    (trace,) = records(capture, "/traces/batch", "traces")
    assert trace["thread_id"] == "sess-1" and trace["metadata"]["user_id"] == "user-1"


def test_a_retried_batch_writes_the_same_ids(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    from tests.destinations.conftest import Reply

    pipeline_settings(flush_interval=5.0)
    calls: list[str] = []

    def respond(req: Any) -> Reply:
        calls.append(req.path)
        if req.path.endswith("/traces/batch") and calls.count(req.path) == 1:
            return Reply(503, {}, b"")  # spans accepted, traces refused: all sent again
        return CaptureServer.default_reply(req)

    capture.respond = respond
    svc = make_service([Opik(url=capture.url + "/api", api_key=API_KEY)])
    record_flow(svc)
    assert svc.flush(20)
    sent = [r.json()["spans"] for r in capture.snapshot() if r.path.endswith("/spans/batch")]
    assert len(sent) == 2
    assert [(s["id"], s["last_updated_at"]) for s in sent[0]] == [
        (s["id"], s["last_updated_at"]) for s in sent[1]
    ]


def test_from_env_follows_langflow() -> None:
    assert opik_from_env({}) is None
    assert opik_from_env({"OPIK_WORKSPACE": "w"}) is None  # Langflow needs a URL or a key
    local = opik_from_env({"OPIK_URL_OVERRIDE": "http://localhost:5173/api/"})
    assert local == Opik(url="http://localhost:5173/api", api_key=None)
    cloud = opik_from_env({"OPIK_API_KEY": API_KEY, "OPIK_WORKSPACE": WORKSPACE})
    assert cloud is not None and cloud.url == "https://www.comet.com/opik/api"
    assert cloud.workspace == WORKSPACE and API_KEY not in cloud.describe()
    # a key that carries its server (the SDK's "<key>*<base64 JSON>" form)
    import base64

    extra = base64.b64encode(json.dumps({"baseUrl": "https://opik.example.com/"}).encode())
    keyed = opik_from_env({"OPIK_API_KEY": f"{API_KEY}*{extra.decode()}"})
    assert keyed is not None and keyed.url == "https://opik.example.com/opik/api"
    with pytest.raises(ConfigError, match="OPIK_URL_OVERRIDE"):
        opik_from_env({"OPIK_URL_OVERRIDE": "not a url", "OPIK_API_KEY": API_KEY})
    with pytest.raises(ConfigError, match="api_key is required"):
        Opik()  # Comet's cloud without a key: the SDK calls this misconfigured too
