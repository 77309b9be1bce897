"""LangWatch, Opik, Traceloop, Arize and Openlayer under faults: 401, 429 with Retry-After,
5xx and a timeout are retried or counted, never raised into the run, and the credentials
never show in logs, stats or errors (even when a server echoes them back)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.destinations.conftest import Captured, CaptureServer, Reply
from tracemux import TracingService
from tracemux.destinations import Arize, LangWatch, Openlayer, Opik, Traceloop
from tracemux.destinations.base import Destination

pytestmark = pytest.mark.reliability

KEY = "sk-fault-0123456789abcdefWXYZ"

BACKENDS: dict[str, Callable[..., Destination]] = {
    "langwatch": lambda url, **kw: LangWatch(api_key=KEY, endpoint=url, **kw),
    "opik": lambda url, **kw: Opik(url=url + "/api", api_key=KEY, workspace="ws", **kw),
    "traceloop": lambda url, **kw: Traceloop(api_key=KEY, base_url=url, **kw),
    "arize": lambda url, **kw: Arize(api_key=KEY, space_id="space-1", endpoint=url, **kw),
    "openlayer": lambda url, **kw: Openlayer(
        api_key=KEY, pipeline_id="pipe-1", base_url=url + "/v1", **kw
    ),
}


def _walk(steps: list[dict[str, Any]]) -> list[str]:
    out = []
    for step in steps:
        out.append(step["name"])
        out += _walk(step["steps"])
    return out


def delivered(server: CaptureServer, status: int = 200) -> list[str]:
    """Names of the spans the server accepted (answered ``status``), whatever the API."""
    names: list[str] = []
    for req in server.snapshot():
        if getattr(req, "answered", 200) != status:
            continue
        if req.otlp is not None:
            names += [
                s.name for rs in req.otlp.resource_spans for ss in rs.scope_spans for s in ss.spans
            ]
        elif req.path.endswith("/spans/batch"):
            names += [s["name"] for s in req.json()["spans"]]
        elif req.path.endswith("/traces/batch"):
            names += [t["name"] for t in req.json()["traces"]]
        elif req.path.endswith("/data-stream"):
            names += [n for row in req.json()["rows"] for n in _walk(row["steps"])]
    return names


def record(svc: TracingService, runs: int = 2) -> set[str]:
    for i in range(runs):
        with svc.trace_run(f"run-{i}") as run, run.span(f"child-{i}"):
            pass
    return {f"run-{i}" for i in range(runs)} | {f"child-{i}" for i in range(runs)}


def dropped_since(svc: TracingService, before: dict[str, int]) -> dict[str, int]:
    now = svc.stats()["dropped"]
    return {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0)}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Callable[..., Destination]:
    return BACKENDS[request.param]


def test_401_is_counted_not_retried_and_the_key_is_not_echoed(
    backend: Callable[..., Destination],
    capture: CaptureServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline_settings(flush_interval=5.0)  # every span leaves in one batch, at flush
    # a hostile server that quotes the credentials back in its error
    capture.respond = lambda req: Reply(
        401, {"Content-Type": "application/json"}, f'{{"error":"bad key {KEY}"}}'.encode()
    )
    dest = backend(capture.url)
    svc = make_service([dest])
    before = dict(svc.stats()["dropped"])
    with caplog.at_level(logging.DEBUG, logger="tracemux"):
        names = record(svc)
        assert svc.flush(10)
        time.sleep(0.2)
    assert len(capture.snapshot()) == 1  # tried once (Opik's traces would follow its spans)
    assert delivered(capture, 401) and set(delivered(capture, 401)) <= names
    assert dropped_since(svc, before) == {"http_401": len(names)}
    stats = svc.stats()
    per_dest = stats["destinations"][dest.describe()]
    assert per_dest["retries"] == 0 and per_dest["dropped"] == {"http_401": len(names)}
    text = "\n".join(r.getMessage() for r in caplog.records) + repr(stats) + dest.describe()
    assert "401" in text
    assert KEY not in text and KEY not in repr(dest)


def test_429_waits_for_retry_after_then_delivers(
    backend: Callable[..., Destination],
    capture: CaptureServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable,
) -> None:
    pipeline_settings(flush_interval=5.0)
    calls: list[float] = []

    def respond(req: Captured) -> Reply:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return Reply(429, {"Retry-After": "1"}, b"slow down")
        return CaptureServer.default_reply(req)

    capture.respond = respond
    dest = backend(capture.url)
    svc = make_service([dest])
    before = dict(svc.stats()["dropped"])
    names = record(svc)
    assert svc.flush(20)
    assert calls[1] - calls[0] >= 0.95
    assert names <= set(delivered(capture))
    assert svc.stats()["destinations"][dest.describe()]["retries"] == 1
    assert dropped_since(svc, before) == {}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_then_delivered(
    backend: Callable[..., Destination],
    status: int,
    capture: CaptureServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable,
) -> None:
    pipeline_settings(flush_interval=5.0)
    calls: list[Captured] = []

    def respond(req: Captured) -> Reply:
        calls.append(req)
        if len(calls) == 1:
            return Reply(status, {}, b"oops")
        return CaptureServer.default_reply(req)

    capture.respond = respond
    dest = backend(capture.url)
    svc = make_service([dest])
    before = dict(svc.stats()["dropped"])
    names = record(svc)
    assert svc.flush(20)
    assert names <= set(delivered(capture))
    per_dest = svc.stats()["destinations"][dest.describe()]
    assert per_dest["failures"] == 1 and per_dest["retries"] == 1
    assert dropped_since(svc, before) == {}


def test_a_timeout_is_retried_then_delivered(
    backend: Callable[..., Destination],
    capture: CaptureServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable,
) -> None:
    pipeline_settings(flush_interval=5.0)
    calls: list[Captured] = []

    def respond(req: Captured) -> Reply:
        calls.append(req)
        if len(calls) == 1:
            return Reply(200, {}, b"", delay=5)  # longer than the destination's timeout
        return CaptureServer.default_reply(req)

    capture.respond = respond
    dest = backend(capture.url, timeout=0.5)
    svc = make_service([dest])
    before = dict(svc.stats()["dropped"])
    names = record(svc)
    assert svc.flush(20)
    assert names <= set(delivered(capture))
    per_dest = svc.stats()["destinations"][dest.describe()]
    assert per_dest["retries"] >= 1
    assert dropped_since(svc, before) == {}
