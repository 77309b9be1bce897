"""``tracemux doctor`` against loopback stand-ins for each backend."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.destinations.conftest import Captured, CaptureServer, Reply
from tracemux.cli.main import main

PUBLIC = "pk-lf-doctor-0000-1111-abcd"
SECRET = "sk-lf-doctor-9999-8888-wxyz"
LS_KEY = "lsv2_pt_doctor0123456789abcdef_0123456789"
PHX_KEY = "phx-doctor-secret-key-0001"
OTLP_TOKEN = "otlp-doctor-token-00001"


@pytest.fixture
def backend() -> Iterator[CaptureServer]:
    """One loopback server answering like Langfuse, LangSmith, Phoenix and a collector."""
    server = CaptureServer().start()
    good_basic = "Basic " + base64.b64encode(f"{PUBLIC}:{SECRET}".encode()).decode()

    def respond(req: Captured) -> Reply:
        h = req.headers
        json_ok = Reply(200, {"Content-Type": "application/json"}, b"{}")
        denied = Reply(401, {"Content-Type": "application/json"}, b'{"error":"unauthorized"}')
        if req.path == "/api/public/projects":
            if h.get("authorization") != good_basic:
                return denied
            return Reply(200, {"Content-Type": "application/json"}, b'{"data":[{"name":"demo"}]}')
        if req.path == "/info":
            return json_ok
        if req.path == "/sessions":
            return json_ok if h.get("x-api-key") == LS_KEY else denied
        if req.path == "/healthz":
            return Reply(200, {}, b"OK")
        if req.path == "/v1/projects":
            return json_ok if h.get("authorization") == f"Bearer {PHX_KEY}" else denied
        if req.path == "/v1/traces":
            if h.get("authorization") != f"Bearer {OTLP_TOKEN}":
                return Reply(403, {}, b"")
            return Reply(200, {"Content-Type": "application/x-protobuf"}, b"")
        return Reply(404, {}, b"")

    server.respond = respond
    try:
        yield server
    finally:
        server.stop()


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    from tracemux.destinations.env import VARIABLES

    for name in (*VARIABLES, "TRACEMUX_DB"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")


def full_env(url: str, tmp: str) -> dict[str, str]:
    return {
        "LANGFUSE_PUBLIC_KEY": PUBLIC,
        "LANGFUSE_SECRET_KEY": SECRET,
        "LANGFUSE_HOST": url,
        "LANGSMITH_API_KEY": LS_KEY,
        "LANGSMITH_ENDPOINT": url,
        "LANGSMITH_PROJECT": "support",
        "PHOENIX_COLLECTOR_ENDPOINT": url,
        "PHOENIX_API_KEY": PHX_KEY,
        "OTEL_EXPORTER_OTLP_ENDPOINT": url,
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {OTLP_TOKEN}",
        "TRACEMUX_DB": f"{tmp}/traces.db",
    }


def test_everything_works(
    backend: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    set_env(monkeypatch, full_env(backend.url, str(tmp_path)))
    assert main(["doctor", "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    for label in ("langfuse:", "langsmith:", "phoenix:", "otlp:", "sqlite:"):
        assert label in out
    assert "project demo" in out
    assert "Every destination works (5)" in out
    for secret in (SECRET, LS_KEY, PHX_KEY, OTLP_TOKEN, PUBLIC):
        assert secret not in out
    assert "pk-lf-...abcd" in out
    paths = {r.path for r in backend.snapshot()}
    assert {"/api/public/projects", "/info", "/sessions", "/healthz", "/v1/projects"} <= paths
    assert "/v1/traces" in paths


def test_rejected_credentials_say_what_to_fix(
    backend: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    env = full_env(backend.url, str(tmp_path))
    env.update(
        LANGFUSE_SECRET_KEY="sk-lf-wrong-secret-000000",
        LANGSMITH_API_KEY="lsv2_pt_wrong_key_0000000000",
        OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer wrong-token-000000",
    )
    set_env(monkeypatch, env)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "credentials rejected" in out
    assert "check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY" in out
    assert "check LANGSMITH_API_KEY" in out
    assert "check OTEL_EXPORTER_OTLP_HEADERS" in out
    assert "3 of 5 destinations have a problem" in out
    assert "sk-lf-wrong-secret-000000" not in out


def test_unreachable_backend(
    backend: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = backend.url
    backend.refuse()
    set_env(monkeypatch, {"PHOENIX_COLLECTOR_ENDPOINT": url})
    assert main(["doctor", "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "cannot connect" in out
    assert "PHOENIX_COLLECTOR_ENDPOINT" in out


def test_configuration_error_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    set_env(monkeypatch, {"LANGFUSE_PUBLIC_KEY": PUBLIC})
    assert main(["doctor"]) == 2
    out = capsys.readouterr().out
    assert "LANGFUSE_SECRET_KEY" in out and "Configuration: 1 problem" in out
    assert PUBLIC not in out


def test_nothing_configured_means_the_local_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    set_env(monkeypatch, {"TRACEMUX_DB": f"{tmp_path}/t.db"})
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "sqlite:" in out
