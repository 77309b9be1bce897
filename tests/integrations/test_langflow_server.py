"""tracemux inside a real Langflow server: ``langflow run --backend-only`` (langflow-base 1.13).

The server runs in the ``langflow113`` side environment (built by
``tracemux.bench.sidevenv``, shared with ``test_langflow_real.py``), on 127.0.0.1, with
tracemux registered the documented way (``lfx.toml`` in ``LANGFLOW_CONFIG_DIR``), its own
SQLite database and no backend variable from the test machine; Langfuse is a loopback
stand-in. The flows are made by lfx itself (``Graph(...).dump()``, in
``langflow_flows.py``) and sent as a user would: ``POST /api/v1/flows/``, then
``POST /api/v1/run/{flow_id}`` with an API key and the UI's build endpoint.

One server per module (starting it takes 20-60 s on a busy machine): the module fixture
drives the whole scenario, stops the server with SIGTERM as a process manager would, and
hands what it saw to the tests, which read tracemux's store from this process.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.destinations.conftest import CaptureServer, Reply
from tests.integrations.support import LangflowServer, clean_environ, thread_count, tree
from tests.integrations.test_langflow_real import LANGFLOW_REQUIREMENTS
from tracemux.bench.sidevenv import side_venv
from tracemux.destinations import SQLiteStore
from tracemux.destinations.sqlite import StoredRun

# slow; the first run on a clean machine builds the side venv inside the fixture (minutes)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PUBLIC_KEY = "pk-lf-server"
SECRET_KEY = "sk-lf-server-0123456789"
FLOWS_SCRIPT = Path(__file__).with_name("langflow_flows.py")
RUNS_FOR_THREADS = 30
#: runs sent last, while Langfuse answers slowly: in flight when SIGTERM comes
RUNS_AT_SHUTDOWN = 5
STARTUP_DEADLINE_S = 300.0
STOP_DEADLINE_S = 120.0
WAIT_S = 60.0


@dataclass
class Served:
    """What the scenario did against the server, and what the server left behind."""

    workdir: Path
    langfuse: CaptureServer
    flow_ids: dict[str, str]
    run_replies: dict[str, httpx.Response] = field(default_factory=dict)
    build_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    threads: dict[str, int] = field(default_factory=dict)
    native_traces: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    left_running: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    log: str = ""

    @property
    def store(self) -> SQLiteStore:
        return SQLiteStore(self.workdir / "traces.db")

    def runs(self) -> dict[str, StoredRun]:
        """Stored runs by session id (each run of the scenario has its own)."""
        runs = self.store.runs(limit=1000)
        by_session = {run.session_id or "": run for run in runs}
        assert len(by_session) == len(runs), "two runs with one session id"
        return by_session


def _make_flows(python: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(FLOWS_SCRIPT)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    flows: dict[str, Any] = json.loads(proc.stdout)
    return flows


def _server_env(workdir: Path, langfuse: CaptureServer) -> dict[str, str]:
    tmp = workdir / "tmp"  # Langflow's temporary files (its telemetry outbox, adopted by any
    tmp.mkdir()  # Langflow started later on the machine) stay in the test's directory
    return {
        **clean_environ(),
        "TMPDIR": str(tmp),
        "LANGFLOW_CONFIG_DIR": str(workdir),
        "LANGFLOW_DATABASE_URL": f"sqlite:///{workdir / 'langflow.db'}",
        "LANGFLOW_AUTO_LOGIN": "true",
        "DO_NOT_TRACK": "true",
        "TRACEMUX_DB": str(workdir / "traces.db"),
        "LANGFUSE_PUBLIC_KEY": PUBLIC_KEY,
        "LANGFUSE_SECRET_KEY": SECRET_KEY,
        "LANGFUSE_BASE_URL": langfuse.url,
        "PYTHONUNBUFFERED": "1",
    }


def _api_client(url: str) -> httpx.Client:
    """A client authenticated with a new API key, made the way the UI makes one: a token
    from auto-login, then ``POST /api/v1/api_key/``."""
    login = httpx.get(f"{url}/api/v1/auto_login", timeout=WAIT_S)
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    created = httpx.post(
        f"{url}/api/v1/api_key/",
        json={"name": "tracemux-test"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=WAIT_S,
    )
    assert created.status_code == 200, created.text
    return httpx.Client(
        base_url=url, headers={"x-api-key": created.json()["api_key"]}, timeout=WAIT_S
    )


def _run(client: httpx.Client, flow_id: str, text: str, session_id: str | None) -> httpx.Response:
    body: dict[str, Any] = {"input_value": text}
    if session_id is not None:
        body["session_id"] = session_id
    return client.post(f"/api/v1/run/{flow_id}", json=body)


def _build(client: httpx.Client, flow_id: str, text: str, session_id: str) -> list[dict[str, Any]]:
    """A run through the UI's build endpoint, its events delivered in the response."""
    reply = client.post(
        f"/api/v1/build/{flow_id}/flow",
        params={"event_delivery": "direct"},
        json={"inputs": {"input_value": text, "session": session_id}},
    )
    assert reply.status_code == 200, reply.text
    return [json.loads(line) for line in reply.text.splitlines() if line.strip()]


def _native_traces(client: httpx.Client, expected: int) -> list[dict[str, Any]]:
    """Langflow's trace view (``GET /api/v1/monitor/traces``), once it lists ``expected``
    traces (the native tracer writes them after the run's response)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        reply = client.get("/api/v1/monitor/traces", params={"size": 200})
        assert reply.status_code == 200, reply.text
        traces: list[dict[str, Any]] = reply.json()["traces"]
        if len(traces) >= expected or time.monotonic() > deadline:
            return traces
        time.sleep(0.5)


def _scenario(server: LangflowServer, served: Served, client: httpx.Client) -> None:
    chat, boom = served.flow_ids["chat"], served.flow_ids["boom"]
    replies = served.run_replies
    for i in range(2):  # warm-up: first imports, lfx's caches, the export thread
        replies[f"warm-{i}"] = _run(client, chat, f"warm {i}", f"warm-{i}")
    worker = server.worker_pid()
    served.threads["before"] = thread_count(worker)
    started = time.monotonic()
    for i in range(RUNS_FOR_THREADS):
        replies[f"chat-{i}"] = _run(client, chat, f"hello {i}", f"chat-{i}")
    served.timings["ms_per_run"] = (time.monotonic() - started) * 1000 / RUNS_FOR_THREADS
    served.threads["after"] = thread_count(worker)
    replies["no-session"] = _run(client, chat, "no session", None)
    replies["boom-run"] = _run(client, boom, "explode", "boom-run")
    served.build_events["build-chat"] = _build(client, chat, "from the UI", "build-chat")
    served.build_events["build-boom"] = _build(client, boom, "explode", "build-boom")
    served.native_traces = _native_traces(client, len(replies) + len(served.build_events))
    # Langfuse now answers slowly: these runs' spans are still being exported at SIGTERM
    served.langfuse.respond = lambda req: Reply(
        200, {"Content-Type": "application/x-protobuf"}, b"", delay=1.0
    )
    for i in range(RUNS_AT_SHUTDOWN):
        replies[f"last-{i}"] = _run(client, chat, f"last {i}", f"last-{i}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    python = side_venv("langflow113", LANGFLOW_REQUIREMENTS, upgrade_pip=True)
    workdir = tmp_path_factory.mktemp("langflow-server")
    (workdir / "lfx.toml").write_text(
        '[services]\ntracing_service = "tracemux.integrations.langflow:TracingService"\n'
    )
    langfuse = CaptureServer().start()
    server = LangflowServer(python.parent / "langflow", workdir, _server_env(workdir, langfuse))
    try:
        started = time.monotonic()
        server.start()
        flows = _make_flows(python)  # lfx's import takes a while: while the server starts
        startup = server.wait_healthy(STARTUP_DEADLINE_S - (time.monotonic() - started))
        with _api_client(server.url) as client:
            flow_ids = {}
            for kind, flow in flows.items():
                reply = client.post("/api/v1/flows/", json=flow)
                assert reply.status_code == 201, reply.text
                flow_ids[kind] = reply.json()["id"]
            served = Served(workdir, langfuse, flow_ids)
            served.timings["startup_s"] = time.monotonic() - started
            served.timings["health_wait_s"] = startup
            began = time.monotonic()
            _scenario(server, served, client)
            served.timings["scenario_s"] = time.monotonic() - began
        assert server.worker_pid() in server.group_members()  # what SIGTERM must end
        stopping = time.monotonic()
        served.exit_code = server.terminate(STOP_DEADLINE_S)
        served.left_running = server.group_members()
        served.timings["stop_s"] = time.monotonic() - stopping
        served.log = server.log_tail(200_000)
        sys.stderr.write(f"langflow server: {json.dumps(served.timings)} {served.threads}\n")
        yield served
    finally:
        server.kill()
        langfuse.stop()


# -- the runs, in tracemux's store ----------------------------------------------------------


def test_every_run_api_call_is_a_stored_run_with_its_session_and_component_spans(
    served: Served,
) -> None:
    runs = served.runs()
    chat_flow = served.flow_ids["chat"]
    sessions = [key for key, reply in served.run_replies.items() if key != "boom-run"]
    for key in sessions:
        reply = served.run_replies[key]
        assert reply.status_code == 200, (key, reply.text)
        # without a session id Langflow uses the flow's id
        session = chat_flow if key == "no-session" else key
        assert reply.json()["session_id"] == session
        run = runs[session]
        assert run.name == f"server-chat - {chat_flow}"
        assert run.status == "ok" and run.error is None
        assert run.project == "Langflow"
        assert run.metadata["flow_id"] == chat_flow
        assert tree(served.store, run.run_id) == [
            (0, "chain", run.name),
            (1, "chain", "Chat Input (chat_input)"),
            (1, "chain", "Chat Output (chat_output)"),
        ], key
        spans = {s.name: s for s in served.store.spans(run.run_id)}
        assert spans["Chat Output (chat_output)"].status == "ok"
        assert f'"{reply.json()["outputs"][0]["inputs"]["input_value"]}"' in json.dumps(
            spans["Chat Input (chat_input)"].inputs
        )


def test_a_failing_flow_is_stored_as_an_error_with_the_components_error(served: Served) -> None:
    reply = served.run_replies["boom-run"]
    assert reply.status_code == 500 and "boom from the component" in reply.text
    run = served.runs()["boom-run"]
    assert run.name == f"server-boom - {served.flow_ids['boom']}"
    assert run.status == "error"
    assert run.error is not None and "boom from the component" in run.error["message"]
    assert tree(served.store, run.run_id) == [
        (0, "chain", run.name),
        (1, "chain", "Chat Input (chat_input)"),
        (1, "chain", "Boom (boom)"),
    ]
    boom = next(s for s in served.store.spans(run.run_id) if s.name == "Boom (boom)")
    assert boom.status == "error" and boom.error is not None
    assert "RuntimeError: boom from the component" in boom.error["traceback"]


def test_runs_from_the_ui_build_endpoint_are_stored(served: Served) -> None:
    """The build endpoint reports a component's failure as an event and ends the run's traces
    twice, first without the error: the run is still stored as failed with the component's
    error, and nothing is logged about the second call."""
    chat_events = [e["event"] for e in served.build_events["build-chat"]]
    assert chat_events[-1] == "end" and "error" not in chat_events
    assert "error" in [e["event"] for e in served.build_events["build-boom"]]
    runs = served.runs()
    chat = runs["build-chat"]
    assert chat.status == "ok" and chat.name == f"server-chat - {served.flow_ids['chat']}"
    assert [name for _, _, name in tree(served.store, chat.run_id)] == [
        chat.name,
        "Chat Input (chat_input)",
        "Chat Output (chat_output)",
    ]
    boom = runs["build-boom"]
    assert boom.status == "error" and boom.error_count == 2  # the run and Boom
    assert boom.error is not None and "boom from the component" in boom.error["message"]
    spans = {s.name: s for s in served.store.spans(boom.run_id)}
    assert spans["Boom (boom)"].parent_id == spans[boom.name].span_id
    assert spans["Boom (boom)"].error is not None
    assert "boom from the component" in spans["Boom (boom)"].error["traceback"]


# -- shutdown -----------------------------------------------------------------------------


def test_sigterm_stops_the_server_with_every_span_exported(served: Served) -> None:
    """The last runs' spans were still on their way to a slow Langfuse at SIGTERM: Langflow's
    service teardown (tracemux's ``teardown``) delivered them before the process exited."""
    assert served.exit_code == 0, served.log[-4000:]
    assert served.left_running == []  # no gunicorn master or worker left behind
    runs = served.runs()
    assert len(runs) == len(served.run_replies) + len(served.build_events)
    assert all(run.status != "running" and run.span_count == 3 for run in runs.values())
    assert sum(len(served.store.spans(run.run_id)) for run in runs.values()) == 3 * len(runs)
    exported: dict[str, int] = {}
    for span in served.langfuse.spans():
        exported[span.trace_id] = exported.get(span.trace_id, 0) + 1
    assert exported == {run.trace_id: 3 for run in runs.values()}
    # tracemux logged no warning (its messages start with "tracemux:") in the whole scenario
    assert "tracemux:" not in served.log, served.log[served.log.index("tracemux:") - 2000 :]


# -- Langflow's own trace view ------------------------------------------------------------


def test_langflows_trace_view_still_lists_every_run(served: Served) -> None:
    native = {t["sessionId"]: t for t in served.native_traces}
    expected = [key for key in served.run_replies if not key.startswith("last-")]
    expected += list(served.build_events)
    chat_flow, boom_flow = served.flow_ids["chat"], served.flow_ids["boom"]
    sessions = {chat_flow if key == "no-session" else key for key in expected}
    assert set(native) == sessions
    for session, trace in native.items():
        failing = session.startswith(("boom-", "build-boom"))
        assert trace["flowId"] == (boom_flow if failing else chat_flow)
        assert trace["status"] == ("error" if failing else "ok"), trace
    # the run API's traces have the ids tracemux gave its runs
    runs = served.runs()
    assert native["chat-0"]["id"] == runs["chat-0"].run_id


# -- threads ----------------------------------------------------------------------------------


def test_the_servers_thread_count_stays_flat_over_runs(served: Served) -> None:
    before, after = served.threads["before"], served.threads["after"]
    assert after <= before + 2, served.threads


# -- Langfuse ---------------------------------------------------------------------------------


def test_runs_reach_langfuse_with_the_keys_basic_auth(served: Served) -> None:
    expected = "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()
    requests = served.langfuse.trace_requests()
    assert requests
    assert {r.headers["authorization"] for r in requests} == {expected}
    assert {r.path for r in requests} == {"/api/public/otel/v1/traces"}
    roots = {s.trace_id: s.name for s in served.langfuse.spans() if not s.parent_span_id}
    assert roots == {run.trace_id: run.name for run in served.runs().values()}


def test_the_secret_key_is_neither_logged_nor_stored(served: Served) -> None:
    assert SECRET_KEY not in served.log
    for path in served.workdir.glob("*.db*"):  # tracemux's store and Langflow's database
        assert SECRET_KEY.encode() not in path.read_bytes(), path.name
