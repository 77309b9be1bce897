"""``tracemux doctor`` shows and checks LangWatch, Opik, Traceloop, Arize and Openlayer
(through each destination's ``probe()``), against a loopback stand-in that checks the
credentials the way each backend is sent them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.destinations.conftest import Captured, CaptureServer, Reply
from tracemux.cli.main import main

LW = "sk-lw-doctor-0123456789abcd"
OPIK = "opik-doctor-0123456789abcd"
TL = "tl-doctor-0123456789abcdef"
ARIZE = "ak-doctor-0123456789abcdef"
OL = "ol-doctor-0123456789abcdef"
SECRETS = (LW, OPIK, TL, ARIZE, OL)


@pytest.fixture
def backend() -> Iterator[CaptureServer]:
    server = CaptureServer().start()

    def respond(req: Captured) -> Reply:
        h = req.headers
        auth = h.get("authorization")
        ok = {
            "/lw/api/otel/v1/traces": auth == f"Bearer {LW}",
            "/opik/api/v1/private/auth": auth == OPIK and h.get("comet-workspace") == "ws",
            "/tl/v1/traces": auth == f"Bearer {TL}",
            "/arize/v1/traces": auth == ARIZE and h.get("arize-space-id") == "space-1",
            "/ol/v1/inference-pipelines/pipe-1": auth == f"Bearer {OL}",
        }
        if req.path not in ok:
            return Reply(404, {}, b"")
        return Reply(200, {}, b"") if ok[req.path] else Reply(401, {}, b'{"error":"denied"}')

    server.respond = respond
    try:
        yield server
    finally:
        server.stop()


def env_for(url: str, tmp: str) -> dict[str, str]:
    return {
        "LANGWATCH_API_KEY": LW,
        "LANGWATCH_ENDPOINT": f"{url}/lw",
        "OPIK_URL_OVERRIDE": f"{url}/opik/api",
        "OPIK_API_KEY": OPIK,
        "OPIK_WORKSPACE": "ws",
        "TRACELOOP_API_KEY": TL,
        "TRACELOOP_BASE_URL": f"{url}/tl",
        "ARIZE_API_KEY": ARIZE,
        "ARIZE_SPACE_ID": "space-1",
        "ARIZE_COLLECTOR_ENDPOINT": f"{url}/arize",
        "OPENLAYER_API_KEY": OL,
        "OPENLAYER_INFERENCE_PIPELINE_ID": "pipe-1",
        "OPENLAYER_BASE_URL": f"{url}/ol/v1",
        "TRACEMUX_DB": f"{tmp}/traces.db",
    }


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    from tracemux.destinations.env import VARIABLES

    for name in (*VARIABLES, "TRACEMUX_DB"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "200")


def test_doctor_checks_every_new_backend(
    backend: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    set_env(monkeypatch, env_for(backend.url, str(tmp_path)))
    assert main(["doctor", "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    for label in ("langwatch:", "opik:", "traceloop:", "arize:", "openlayer:"):
        assert label in out
    assert "Every destination works (6)" in out  # five backends and the local store
    for name in ("LANGWATCH_API_KEY", "OPIK_WORKSPACE", "ARIZE_SPACE_ID", "OPENLAYER_API_KEY"):
        assert name in out  # the environment table
    for secret in SECRETS:
        assert secret not in out
    assert len(backend.snapshot()) == 5  # one probe each, nothing else


def test_doctor_names_the_variables_to_fix(
    backend: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: object,
) -> None:
    env = env_for(backend.url, str(tmp_path))
    env.update(
        LANGWATCH_API_KEY="sk-lw-wrong-000000000000",
        OPIK_WORKSPACE="other",
        ARIZE_SPACE_ID="space-2",
        OPENLAYER_INFERENCE_PIPELINE_ID="pipe-404",
        TRACELOOP_BASE_URL=f"{backend.url}/nowhere",
    )
    set_env(monkeypatch, env)
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "check LANGWATCH_API_KEY" in out
    assert "check OPIK_API_KEY and OPIK_WORKSPACE" in out
    assert "check ARIZE_API_KEY and ARIZE_SPACE_ID" in out
    assert "check OPENLAYER_BASE_URL and the pipeline id" in out
    assert "check TRACELOOP_BASE_URL" in out
    assert "5 of 6 destinations have a problem" in out
    assert "sk-lw-wrong-000000000000" not in out


def test_doctor_reports_a_half_configured_backend(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    set_env(monkeypatch, {"ARIZE_API_KEY": ARIZE, "TRACEMUX_DB": f"{tmp_path}/t.db"})
    assert main(["doctor"]) == 2
    out = capsys.readouterr().out
    assert "ARIZE_SPACE_ID" in out and ARIZE not in out
