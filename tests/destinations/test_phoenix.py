"""Phoenix end to end: a real ``phoenix serve`` on 127.0.0.1, runs sent through tracemux,
read back through Phoenix's REST API.

Phoenix (``arize-phoenix``) lives in its own side environment (``tracemux.bench.sidevenv``)
because its pins may clash with the test suite's. The first install takes minutes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tracemux.bench.sidevenv import side_venv
from tracemux.destinations import Phoenix

# the first run installs arize-phoenix into its side environment (minutes on a fresh machine)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PHOENIX_REQUIREMENTS = ["arize-phoenix>=11"]
READY_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def phoenix_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Phoenix server on 127.0.0.1 with a free port and a temporary working directory."""
    import httpx

    python = side_venv("phoenix", PHOENIX_REQUIREMENTS, editable=())
    workdir: Path = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_", "LANG"))}
    env.update(
        PHOENIX_WORKING_DIR=str(workdir),
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_TELEMETRY_ENABLED="false",
        PYTHONUNBUFFERED="1",
    )
    log_path = workdir / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(python.parent / "phoenix"), "serve"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"phoenix exited ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"phoenix not ready in {READY_TIMEOUT}s:\n{log_path.read_text()[-4000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def read_spans(
    url: str, project: str, expected: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Every span of ``project``, once Phoenix has stored at least ``expected``."""
    import httpx

    deadline = time.monotonic() + timeout
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        spans, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            r = httpx.get(f"{url}/v1/projects/{project}/spans", params=params, timeout=10)
            if r.status_code == 404:  # the project appears with its first span
                break
            r.raise_for_status()
            body = r.json()
            spans.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                break
        if len(spans) >= expected:
            return spans
        time.sleep(0.5)
    return spans


def test_runs_arrive_in_phoenix(phoenix_url: str, make_service: Callable) -> None:
    dest = Phoenix(endpoint=phoenix_url, project="tracemux-e2e")
    svc = make_service([dest])
    run_ids = []
    for i in range(3):
        with svc.trace_run(
            f"support-flow-{i}",
            user_id=f"user-{i}",
            session_id="sess-1",
            tags=["e2e"],
            metadata={"attempt": i},
            inputs={"question": f"q{i}"},
        ) as run:
            run_ids.append(run.run_id)
            with run.span("retrieve", kind="retriever", inputs={"query": f"q{i}"}) as r:
                r.set_outputs([{"doc": "a"}])
                with r.span("embed", kind="embedding") as e:
                    e.set_usage(model="text-embedding-3-small", input_tokens=5)
            with run.span("ChatModel", kind="llm", inputs=[{"role": "user", "content": "hi"}]) as g:
                g.set_usage(model="gpt-4o-mini", input_tokens=12 + i, output_tokens=5)
                g.set_outputs({"role": "assistant", "content": f"answer {i}"})
            try:
                with run.span("lookup", kind="tool", inputs={"id": i}):
                    raise KeyError(f"id {i}")
            except KeyError:
                pass
            run.set_outputs(f"answer {i}")
    # a run of another tenant/project, on the same destination
    with svc.trace_run("other-project", project="tracemux-e2e-b"):
        pass
    assert svc.flush(30)
    per_dest = svc.stats()["destinations"][dest.describe()]
    assert per_dest["dropped"] == {} and per_dest["exported"] == 16

    spans = read_spans(phoenix_url, "tracemux-e2e", expected=15)
    assert len(spans) == 15
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_trace.setdefault(s["context"]["trace_id"], []).append(s)
    assert set(by_trace) == {rid.replace("-", "") for rid in run_ids}

    for trace_spans in by_trace.values():
        named = {s["name"]: s for s in trace_spans}
        root = next(s for s in trace_spans if s["parent_id"] is None)
        i = int(root["name"].rsplit("-", 1)[1])
        assert set(named) == {root["name"], "retrieve", "embed", "ChatModel", "lookup"}
        root_id = root["context"]["span_id"]
        # structure
        assert named["retrieve"]["parent_id"] == root_id
        assert named["ChatModel"]["parent_id"] == root_id
        assert named["lookup"]["parent_id"] == root_id
        assert named["embed"]["parent_id"] == named["retrieve"]["context"]["span_id"]
        # kinds
        kinds = {n: s["span_kind"] for n, s in named.items()}
        assert kinds == {
            root["name"]: "CHAIN",
            "retrieve": "RETRIEVER",
            "embed": "EMBEDDING",
            "ChatModel": "LLM",
            "lookup": "TOOL",
        }
        # inputs, outputs, tokens
        attrs = named["ChatModel"]["attributes"]
        assert json.loads(attrs["input.value"]) == [{"role": "user", "content": "hi"}]
        assert json.loads(attrs["output.value"]) == {"role": "assistant", "content": f"answer {i}"}
        assert attrs["llm.model_name"] == "gpt-4o-mini"
        assert attrs["llm.token_count.prompt"] == 12 + i
        assert attrs["llm.token_count.completion"] == 5
        assert attrs["llm.token_count.total"] == 17 + i
        assert named["embed"]["attributes"]["embedding.model_name"] == "text-embedding-3-small"
        assert json.loads(root["attributes"]["input.value"]) == {"question": f"q{i}"}
        assert root["attributes"]["output.value"] == f"answer {i}"
        assert root["attributes"]["user.id"] == f"user-{i}"
        assert root["attributes"]["session.id"] == "sess-1"
        # status and the exception
        assert root["status_code"] == "OK"
        assert named["lookup"]["status_code"] == "ERROR"
        assert "KeyError" in named["lookup"]["status_message"]
        assert [e["name"] for e in named["lookup"]["events"]] == ["exception"]

    other = read_spans(phoenix_url, "tracemux-e2e-b", expected=1)
    assert [s["name"] for s in other] == ["other-project"]
