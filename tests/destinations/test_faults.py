"""Remote destinations under faults: outages, hangs, and what each HTTP status means."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from tests.destinations.conftest import Captured, CaptureServer, Reply
from tracemux import TracingService
from tracemux.destinations import OTLP, Langfuse
from tracemux.pipeline.worker import shared_worker

pytestmark = pytest.mark.reliability

PUBLIC = "pk-lf-faults-0000-1111-2222-abcd"
SECRET = "sk-lf-faults-9999-8888-7777-wxyz"


def langfuse(server: CaptureServer, **kw: object) -> Langfuse:
    return Langfuse(public_key=PUBLIC, secret_key=SECRET, host=server.url, **kw)  # type: ignore[arg-type]


def span_count(req: Captured) -> int:
    return sum(len(ss.spans) for rs in req.otlp.resource_spans for ss in rs.scope_spans)


def dropped_since(svc: TracingService, before: dict[str, int]) -> dict[str, int]:
    """Drops counted by the (process-wide) pipeline since ``before`` (its earlier counts)."""
    now = svc.stats()["dropped"]
    out = {k: v - before.get(k, 0) for k, v in now.items()}
    return {k: v for k, v in out.items() if v}


def received_names(server: CaptureServer) -> list[str]:
    """Span names in the order they arrived (request order, then position)."""
    return [s.name for s in server.spans()]


def test_outage_then_recovery_delivers_everything_in_order(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    pipeline_settings(flush_interval=0.05, max_queue_spans=5000)
    svc = make_service([langfuse(capture)])
    before = dict(svc.stats()["dropped"])
    capture.refuse()
    runs, steps = 5, 40
    for r in range(runs):
        with svc.trace_run(f"run{r}") as run:
            for k in range(steps):
                with run.span(f"run{r}-{k:03d}"):
                    pass
    time.sleep(1.5)  # a few failed attempts while the destination is down
    dest_stats = svc.stats()["destinations"][langfuse(capture).describe()]
    assert dest_stats["failures"] >= 1 and dest_stats["exported"] == 0
    capture.resume()
    assert svc.flush(30)
    names = received_names(capture)
    assert len(names) == runs * (steps + 1) == len(set(names))
    for r in range(runs):
        mine = [n for n in names if n.startswith(f"run{r}-")]
        assert mine == sorted(mine), f"run{r} arrived out of order"
        assert names.index(f"run{r}") > names.index(f"run{r}-{steps - 1:03d}")  # root ends last
    assert dropped_since(svc, before) == {}


def test_beyond_the_buffer_the_drop_count_is_exact(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    pipeline_settings(flush_interval=0.05, max_queue_spans=100)
    dest = langfuse(capture)
    svc = make_service([dest])
    svc.shutdown(10)  # new lanes take the new limits
    recorded_before = svc.stats()["recorded"]
    before = dict(svc.stats()["dropped"])
    capture.refuse()
    n = 400
    for i in range(n):
        with svc.trace_run(f"run-{i:04d}"):
            pass
        if i % 50 == 0:
            time.sleep(0.02)  # let the export thread drain into the lane
    worker = shared_worker()
    deadline = time.monotonic() + 10
    while len(worker.queue):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert worker._session is not None
    (lane,) = [ln for ln in worker._session.lanes.values() if ln.destination == dest]
    lane_capacity = lane.pending
    assert lane_capacity == lane._max_spans < n  # the destination's buffer is full
    capture.resume()
    assert svc.flush(30)
    names = received_names(capture)
    stats = svc.stats()
    assert stats["recorded"] - recorded_before == n
    dropped = dropped_since(svc, before)
    assert len(names) == len(set(names)) == n - sum(dropped.values())
    # the destination's buffer kept the oldest spans; everything newer was counted
    assert names == [f"run-{i:04d}" for i in range(lane_capacity)]
    assert set(dropped) <= {"queue_full", "destination_buffer_full"}
    assert sum(dropped.values()) == n - lane_capacity
    per_dest = stats["destinations"][dest.describe()]
    assert per_dest["dropped"].get("destination_buffer_full", 0) == dropped.get(
        "destination_buffer_full", 0
    )


@pytest.mark.parametrize("same_host", [False, True])
def test_a_hanging_destination_does_not_delay_the_others(
    make_capture: Callable[[], CaptureServer],
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable,
    same_host: bool,
) -> None:
    pipeline_settings(flush_interval=0.05)
    hanging_srv = make_capture()
    healthy_srv = hanging_srv if same_host else make_capture()
    release = threading.Event()

    def respond(req: Captured) -> Reply:
        if req.headers.get("x-tenant") == "hang" and not release.is_set():
            return Reply(200, {}, b"", delay=30)
        return CaptureServer.default_reply(req)

    hanging_srv.respond = respond
    hanging = OTLP(endpoint=hanging_srv.url, headers={"x-tenant": "hang"}, timeout=1.5)
    healthy = OTLP(endpoint=healthy_srv.url, headers={"x-tenant": "ok"})
    svc = make_service([hanging, healthy])
    before = dict(svc.stats()["dropped"])
    t0 = time.monotonic()
    for i in range(20):
        with svc.trace_run(f"run-{i}"):
            pass
        time.sleep(0.01)

    def healthy_names() -> set[str]:
        return {s.name for s in healthy_srv.spans() if s.request.headers["x-tenant"] == "ok"}

    assert healthy_srv.wait_for(lambda: len(healthy_names()) == 20, timeout=5)
    assert time.monotonic() - t0 < 1.5, "the healthy destination waited for the hanging one"
    release.set()
    assert svc.flush(30)
    hung = [s.name for s in hanging_srv.spans() if s.request.headers["x-tenant"] == "hang"]
    assert sorted(set(hung)) == sorted(f"run-{i}" for i in range(20))
    assert dropped_since(svc, before) == {}


def test_401_drops_the_batch_counts_it_and_says_so_once(
    capture: CaptureServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline_settings(flush_interval=0.05)
    capture.respond = lambda req: Reply(
        401, {"Content-Type": "application/json"}, b'{"message":"Invalid credentials"}'
    )
    dest = langfuse(capture)
    svc = make_service([dest])
    before = dict(svc.stats()["dropped"])
    with caplog.at_level(logging.WARNING, logger="tracemux"):
        for i in range(3):
            with svc.trace_run(f"run-{i}") as run, run.span("child"):
                pass
        assert svc.flush(10)
        time.sleep(0.2)
    stats = svc.stats()
    assert dropped_since(svc, before) == {"http_401": 6}
    per_dest = stats["destinations"][dest.describe()]
    assert per_dest["dropped"] == {"http_401": 6}
    assert per_dest["retries"] == 0  # not retried
    assert sum(span_count(r) for r in capture.trace_requests(status=401)) == 6
    lines = [r.getMessage() for r in caplog.records if "401" in r.getMessage()]
    assert len(lines) == 1, lines
    (line,) = lines
    assert "pk-lf-...abcd" in line and "check the credentials" in line and "6 spans" in line
    assert "Invalid credentials" in line
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in everything and PUBLIC not in everything


def test_413_splits_the_batch_until_it_fits(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    pipeline_settings(flush_interval=5.0)  # all spans leave in one batch, at flush
    capture.respond = lambda req: (
        Reply(413, {}, b"too big") if span_count(req) > 3 else CaptureServer.default_reply(req)
    )
    svc = make_service([langfuse(capture)])
    before = dict(svc.stats()["dropped"])
    for i in range(10):
        with svc.trace_run(f"run-{i}"):
            pass
    assert svc.flush(20)
    accepted = capture.trace_requests(status=200)
    assert all(span_count(r) <= 3 for r in accepted)
    assert received_names(capture) == [f"run-{i}" for i in range(10)]
    assert capture.trace_requests(status=413)
    assert dropped_since(svc, before) == {}


def test_a_single_span_over_the_limit_is_dropped_as_too_large(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    pipeline_settings(flush_interval=5.0)
    capture.respond = lambda req: Reply(413, {}, b"")
    svc = make_service([langfuse(capture)])
    before = dict(svc.stats()["dropped"])
    for i in range(4):
        with svc.trace_run(f"run-{i}"):
            pass
    assert svc.flush(20)
    assert dropped_since(svc, before) == {"too_large": 4}


def test_429_waits_for_retry_after(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    pipeline_settings(flush_interval=0.05)
    calls: list[float] = []

    def respond(req: Captured) -> Reply:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return Reply(429, {"Retry-After": "1"}, b"slow down")
        return CaptureServer.default_reply(req)

    capture.respond = respond
    dest = langfuse(capture)
    svc = make_service([dest])
    with svc.trace_run("run") as run, run.span("child"):
        pass
    assert svc.flush(20)
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.95
    assert sorted(received_names(capture)) == ["child", "run"]
    per_dest = svc.stats()["destinations"][dest.describe()]
    assert per_dest["retries"] == 1 and per_dest["exported"] == 2


def test_500_then_success_delivers_once(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    pipeline_settings(flush_interval=0.05)
    calls = []

    def respond(req: Captured) -> Reply:
        calls.append(req)
        if len(calls) <= 2:
            return Reply(500 if len(calls) == 1 else 503, {}, b"oops")
        return CaptureServer.default_reply(req)

    capture.respond = respond
    dest = langfuse(capture)
    svc = make_service([dest])
    before = dict(svc.stats()["dropped"])
    for i in range(5):
        with svc.trace_run(f"run-{i}"):
            pass
    assert svc.flush(20)
    assert received_names(capture) == [f"run-{i}" for i in range(5)]
    per_dest = svc.stats()["destinations"][dest.describe()]
    assert per_dest["failures"] == 2 and per_dest["retries"] == 2
    assert per_dest["exported"] == 5
    assert dropped_since(svc, before) == {}
