"""Openlayer: tracemux streams the row Langflow's tracer streams with the official SDK.

The SDK side (a side environment) is Langflow's ``OpenlayerTracer.end`` in small: steps
made with ``openlayer.lib.tracing`` (``step_factory``, ``UserCallStep``), the row from
``tracer.post_process_trace`` plus the LLM totals Langflow adds, the config from
``ConfigLlmData``, sent with ``Openlayer().inference_pipelines.data.stream``. Compared:
path, ``Authorization``, the config, the row's columns and every step's fields, except
ids and clock readings.

Where tracemux differs on purpose, the test says so: the root's output is the run's
outputs (JSON text when they are not a string and have none of Langflow's
``message``/``response``/``result``/``output`` keys; Langflow writes "Flow completed"),
and LangChain's LLM/tool/retriever steps stay under the component that ran them (Langflow
moves them all under the first Agent or LLM component it finds).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.destinations.backend_flow import clean_env, record_flow, sdk_capture
from tests.destinations.conftest import CaptureServer
from tracemux import TracingService
from tracemux.config import ConfigError
from tracemux.destinations import Openlayer
from tracemux.destinations.env import openlayer_from_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

API_KEY = "ol-0011223344556677889900aabbccddeeff"
PIPELINE = "6b1e4c1a-0000-4f00-9000-000000000001"
#: the SDK and what its tracing path imports, pinned (its full dependencies add pandas and
#: pyarrow, ~300 MB, that this test never loads)
REQUIREMENTS = [
    "--no-deps",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "certifi==2026.10.19.post1",
    "distro==1.9.0",
    "h11==0.16.0",
    "httpcore==1.0.9",
    "httpx==0.28.1",
    "idna==3.20",
    "openlayer==0.36.0",
    "pydantic==2.14.4",
    "pydantic_core==2.50.5",
    "PyYAML==6.0.4",
    "sniffio==1.3.1",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
]
ROOT_OUTPUT = json.dumps({"answer": "hello"}, separators=(",", ":"))
#: row and step fields that are ids or clock readings
CLOCK = {"id", "inferenceId", "inferenceTimestamp", "latency", "startTime", "endTime"}

SDK_SCRIPT = """
import json
import sys
import time

from openlayer import Openlayer
from openlayer.lib.tracing import enums, steps, tracer, traces
from openlayer.lib.tracing.context import UserSessionContext

url, key, pipeline, root_output = sys.argv[1:5]
client = Openlayer(api_key=key, base_url=url + "/v1")
tracer._publish = False
UserSessionContext.set_user_id("user-1")
UserSessionContext.set_session_id("sess-1")
trace = traces.Trace()
tracer._current_trace.set(trace)
T = enums.StepType


def step(kind, name, inputs, output=None, metadata=None):
    s = steps.step_factory(step_type=kind, name=name, inputs=inputs, metadata=metadata or {})
    s.start_time = time.time()
    s.output = output
    s.end_time = time.time()
    s.latency = int((s.end_time - s.start_time) * 1000)
    return s


agent = step(T.USER_CALL, "Agent", {"input_value": "hi?"}, {"response": "hello"})
# the fields the SDK's LangChain handler fills on retriever and tool steps
retrieve = step(T.RETRIEVER, "retrieve", {"query": "hi"}, {"documents": ["a", "b"]})
retrieve.documents = ["a", "b"]
agent.add_nested_step(retrieve)
llm = step(T.CHAT_COMPLETION, "ChatModel", [{"role": "user", "content": "hi?"}], "hello")
llm.model, llm.prompt_tokens, llm.completion_tokens, llm.tokens = "gpt-4o-mini", 12, 5, 17
agent.add_nested_step(llm)
tool = step(T.TOOL, "lookup", {"id": 7}, None, {"error": "KeyError: 'id 7'"})
tool.function_name, tool.arguments = "lookup", {"id": 7}
agent.add_nested_step(tool)
root = steps.UserCallStep(
    name="support-flow", inputs={"question": "hi?"}, output=root_output,
    metadata={"flow_name": "support-flow", "env": "staging"},
)
root.start_time, root.end_time = agent.start_time, agent.end_time
root.latency = int((root.end_time - root.start_time) * 1000)
root.add_nested_step(agent)
trace.add_step(root)
row, input_names = tracer.post_process_trace(trace)
# Langflow's _aggregate_llm_data
row.update(tokens=17, promptTokens=12, completionTokens=5, model="gpt-4o-mini")
config = dict(tracer.ConfigLlmData(
    output_column_name="output", input_variable_names=input_names,
    latency_column_name="latency", cost_column_name="cost",
    timestamp_column_name="inferenceTimestamp", inference_id_column_name="inferenceId",
    num_of_token_column_name="tokens",
))
config["user_id_column_name"] = "user_id"
config["session_id_column_name"] = "session_id"
client.inference_pipelines.data.stream(inference_pipeline_id=pipeline, rows=[row], config=config)
"""


def stream_requests(server: CaptureServer) -> list[Any]:
    return [r for r in server.snapshot() if r.path.endswith("/data-stream")]


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> CaptureServer:
    return sdk_capture(
        Path(tmp_path_factory.mktemp("openlayer")),
        "openlayer",
        REQUIREMENTS,
        SDK_SCRIPT,
        ["URL", API_KEY, PIPELINE, ROOT_OUTPUT],
        clean_env("OPENLAYER_"),
        done=lambda s: bool(stream_requests(s)),
    )


def strip(value: Any) -> Any:
    """A row or step without ids and clock readings (steps recursively)."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in CLOCK}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def test_parity_with_the_official_sdk(
    sdk: CaptureServer, capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    dest = Openlayer(api_key=API_KEY, pipeline_id=PIPELINE, base_url=capture.url + "/v1")
    svc = make_service([dest])
    record_flow(svc)
    assert svc.flush(10)
    (ours,), (theirs,) = stream_requests(capture), stream_requests(sdk)
    assert ours.path == theirs.path == f"/v1/inference-pipelines/{PIPELINE}/data-stream"
    assert ours.headers["authorization"] == theirs.headers["authorization"] == f"Bearer {API_KEY}"
    body, sdk_body = ours.json(), theirs.json()
    assert body["config"] == sdk_body["config"]
    (row,), (sdk_row,) = body["rows"], sdk_body["rows"]
    assert strip(row) == strip(sdk_row)
    import uuid

    assert uuid.UUID(row["inferenceId"])  # the run id (the SDK's: its root step's id)
    assert isinstance(row["inferenceTimestamp"], float) and row["latency"] >= 0


def test_llm_steps_stay_under_their_component(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    """More complete than Langflow's tracer, which moves every LangChain step under the
    first Agent/LLM component it finds: each step stays where it ran, errors included."""
    dest = Openlayer(api_key=API_KEY, pipeline_id=PIPELINE, base_url=capture.url + "/v1")
    svc = make_service([dest])
    record_flow(svc)
    with svc.trace_run("support-flow") as run:
        with run.span("Retriever", kind="chain") as comp, comp.span("search", kind="retriever"):
            pass
    assert svc.flush(10)
    rows = [row for r in stream_requests(capture) for row in r.json()["rows"]]
    assert len(rows) == 2
    (agent,) = rows[0]["steps"][0]["steps"]
    assert [s["name"] for s in agent["steps"]] == ["retrieve", "ChatModel", "lookup"]
    assert agent["steps"][2]["metadata"]["error"] == "KeyError: 'id 7'"
    (comp,) = rows[1]["steps"][0]["steps"]
    assert comp["name"] == "Retriever" and [s["name"] for s in comp["steps"]] == ["search"]
    assert rows[0]["user_id"] == "user-1" and rows[0]["session_id"] == "sess-1"


def test_pipeline_per_flow_as_langflow_chooses_it(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    dest = openlayer_from_env(
        {
            "OPENLAYER_API_KEY": API_KEY,
            "OPENLAYER_BASE_URL": capture.url + "/v1",
            "OPENLAYER_INFERENCE_PIPELINE_ID": "default-pipe",
            "OPENLAYER_LANGFLOW_MAPPING": json.dumps({"Mapped Flow": "mapped-pipe"}),
            "OPENLAYER_PIPELINE_MY_FLOW_2": "flow-pipe",
        }
    )
    assert dest is not None
    svc = make_service([dest])
    for name in ("My flow-2 - 0b5e", "Mapped Flow - 77aa", "Other - 1"):
        with svc.trace_run(name):
            pass
    assert svc.flush(10)
    got = {
        r.path.split("/")[-2]: r.json()["rows"][0]["flow_name"] for r in stream_requests(capture)
    }
    assert got == {"flow-pipe": "My flow-2", "mapped-pipe": "Mapped Flow", "default-pipe": "Other"}


def test_spans_wait_for_their_run_and_unfinished_runs_are_sent_at_shutdown(
    capture: CaptureServer,
    make_service: Callable[..., TracingService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    dest = Openlayer(api_key=API_KEY, pipeline_id=PIPELINE, base_url=capture.url + "/v1")
    svc = make_service([dest])
    run = svc.trace_run("long-run")
    with run.span("step-1"):
        pass
    assert svc.flush(10)
    assert stream_requests(capture) == []  # held until the run ends
    run.end()
    assert svc.flush(10)
    (req,) = stream_requests(capture)
    assert [s["name"] for s in req.json()["rows"][0]["steps"][0]["steps"]] == ["step-1"]
    svc.trace_run("never-ends").span("orphan").end()
    assert svc.flush(10)
    with caplog.at_level("WARNING", logger="tracemux"):
        svc.shutdown(10)
    # the run still open at shutdown is ended as incomplete (tracemux.reaper), so its row
    # is sent with its span instead of the span being held and reported as unfinished
    rows = [r.json()["rows"][0] for r in stream_requests(capture)]
    assert len(rows) == 2
    assert [s["name"] for s in rows[1]["steps"][0]["steps"]] == ["orphan"]
    assert not any("unfinished runs" in r.getMessage() for r in caplog.records)


def test_from_env_follows_langflow() -> None:
    assert openlayer_from_env({}) is None
    dest = openlayer_from_env(
        {"OPENLAYER_API_KEY": API_KEY, "OPENLAYER_INFERENCE_PIPELINE_ID": PIPELINE}
    )
    assert dest == Openlayer(api_key=API_KEY, pipeline_id=PIPELINE)
    assert API_KEY not in dest.describe() and API_KEY not in repr(dest)
    # Langflow quietly disables these; tracemux names what is missing or wrong
    with pytest.raises(ConfigError, match="no pipeline") as exc:
        openlayer_from_env({"OPENLAYER_API_KEY": API_KEY})
    assert API_KEY not in str(exc.value)
    with pytest.raises(ConfigError, match="OPENLAYER_API_KEY is not"):
        openlayer_from_env({"OPENLAYER_INFERENCE_PIPELINE_ID": PIPELINE})
    with pytest.raises(ConfigError, match="OPENLAYER_LANGFLOW_MAPPING is not valid JSON"):
        openlayer_from_env({"OPENLAYER_API_KEY": API_KEY, "OPENLAYER_LANGFLOW_MAPPING": "{"})
    with pytest.raises(ConfigError, match="pipeline id"):
        Openlayer(api_key=API_KEY, pipeline_id="../../admin")


def test_a_retry_does_not_resend_a_pipeline_already_streamed(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    from tests.destinations.conftest import Reply

    pipeline_settings(flush_interval=5.0)  # both runs leave in one batch
    calls: list[str] = []

    def respond(req: Any) -> Reply:
        calls.append(req.path)
        if "/pipe-b/" in req.path and calls.count(req.path) == 1:
            return Reply(503, {}, b"")
        return CaptureServer.default_reply(req)

    capture.respond = respond
    dest = Openlayer(
        api_key=API_KEY, pipelines={"A": "pipe-a", "B": "pipe-b"}, base_url=capture.url + "/v1"
    )
    svc = make_service([dest])
    for name in ("A - 1", "B - 2"):
        with svc.trace_run(name):
            pass
    assert svc.flush(20)
    assert sorted(calls) == sorted(
        [
            "/v1/inference-pipelines/pipe-a/data-stream",
            "/v1/inference-pipelines/pipe-b/data-stream",
            "/v1/inference-pipelines/pipe-b/data-stream",
        ]
    )


def test_a_refused_row_reports_the_spans_held_from_earlier_batches(
    capture: CaptureServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.destinations.conftest import Reply

    pipeline_settings(flush_interval=0.05)
    capture.respond = lambda req: Reply(403, {}, b"")
    svc = make_service(
        [Openlayer(api_key=API_KEY, pipeline_id=PIPELINE, base_url=capture.url + "/v1")]
    )
    before = dict(svc.stats()["dropped"])
    run = svc.trace_run("flow")
    for i in range(3):
        with run.span(f"step-{i}"):
            pass
    assert svc.flush(10)  # the steps are held: counted exported
    with caplog.at_level("WARNING", logger="tracemux"):
        run.end()
        assert svc.flush(10)
    now = svc.stats()["dropped"]
    assert now.get("http_403", 0) - before.get("http_403", 0) == 1  # the root's batch
    assert any("3 of their spans came in earlier batches" in r.getMessage() for r in caplog.records)


def test_a_row_over_the_size_limit_is_counted_too_large(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    from tests.destinations.conftest import Reply

    pipeline_settings(flush_interval=5.0)
    capture.respond = lambda req: (
        Reply(413, {}, b"") if b"huge" in req.body else CaptureServer.default_reply(req)
    )
    svc = make_service(
        [Openlayer(api_key=API_KEY, pipeline_id=PIPELINE, base_url=capture.url + "/v1")]
    )
    before = dict(svc.stats()["dropped"])
    with svc.trace_run("small") as run, run.span("s"):
        pass
    with svc.trace_run("big") as run, run.span("b", inputs="huge"):
        pass
    assert svc.flush(20)
    sent = [
        row["flow_name"]
        for r in stream_requests(capture)
        if r.answered == 200
        for row in r.json()["rows"]
    ]
    assert sent == ["small"]
    now = svc.stats()["dropped"]
    assert now.get("too_large", 0) - before.get("too_large", 0) == 1  # the big run's root
