"""The OTLP destination against a loopback server that fails in every way a network can:
refused connections, resets half-way through an answer, answers that never come (or come a
byte at a time), garbage, 413 for big batches, and a server flapping every second.

What must hold each time: every span recorded while the buffer had room arrives; none is
accepted twice (a span may reach the server twice only when the server never told the
client it had it: a backend deduplicates those by span id); and the counters are exact:
exported + dropped == recorded.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.conftest import StatsDelta, env_number
from tests.reliability.faultserver import (
    OK,
    Action,
    FaultServer,
    Flapper,
    Garbage,
    Reply,
    Request,
    Reset,
)
from tracemux import TracingService
from tracemux.destinations import OTLP

pytestmark = pytest.mark.reliability

FLAP_SECONDS = env_number("TRACEMUX_FLAP_SECONDS", 15, 60)


def record(svc: TracingService, runs: int, spans: int, pad: int = 0) -> list[str]:
    """Record ``runs`` runs of ``spans`` spans each (root included); their span ids."""
    ids = []
    for i in range(runs):
        with svc.trace_run(f"run-{i}", inputs={"i": i, "pad": "p" * pad}) as run:
            ids.append(run.span_id_hex)
            for j in range(spans - 1):
                with run.span(f"s{j}", kind="tool", inputs={"j": j}) as s:
                    ids.append(s.span_id_hex)
    return ids


def first_n(n: int, fault: Action) -> Callable[[Request], Action]:
    """Fail the first ``n`` requests with ``fault``, then answer 200."""
    count = Counter[str]()

    def respond(req: Request) -> Action:
        count["n"] += 1
        return fault if count["n"] <= n else OK

    return respond


def assert_delivered_once(server: FaultServer, ids: list[str], delta: StatsDelta) -> None:
    accepted = server.accepted_ids()
    missing = set(ids) - set(accepted)
    assert not missing, (
        f"{len(missing)} of {len(ids)} spans never accepted; stats {delta.now()}; "
        f"requests {[(r.action, len(r.span_ids)) for r in server.snapshot()]}"
    )
    twice = [i for i, n in accepted.items() if n > 1]
    assert not twice, f"{len(twice)} spans accepted more than once"
    assert set(accepted) == set(ids)
    assert server.seen_ids() == set(ids)  # what a backend keeps, deduplicated by span id
    assert all(r.decode_error is None for r in server.snapshot())
    stats = delta.now()
    assert stats["recorded"] == len(ids)
    assert stats["dropped_total"] == 0, stats["dropped"]
    assert stats["exported"] == len(ids)


@pytest.fixture
def fast(pipeline_settings: Callable[..., object]) -> None:
    pipeline_settings(flush_interval=0.05)


def otlp(server: FaultServer, timeout: float = 5.0) -> OTLP:
    return OTLP(endpoint=server.url, timeout=timeout)


def lane_stats(svc: TracingService, server: FaultServer) -> dict[str, Any]:
    # the service's own destination: labels tell apart destinations that differ in any
    # setting (the timeout too), so a new otlp(server) would name another lane
    (dest,) = svc.destinations
    return svc.stats()["destinations"].get(dest.describe(), {"failures": 0})


def test_refused_connections_then_the_port_opens(
    fault_server: FaultServer, make_service: Callable[..., TracingService], fast: None
) -> None:
    svc = make_service([otlp(fault_server)])
    delta = StatsDelta(svc)
    fault_server.refuse()
    ids = record(svc, 30, 10)
    assert svc.flush(1.5) is False  # nothing can be delivered yet; the caller is not held
    assert lane_stats(svc, fault_server)["failures"] >= 1
    fault_server.resume()
    assert svc.flush(30)
    assert_delivered_once(fault_server, ids, delta)


def test_reset_mid_response(
    fault_server: FaultServer, make_service: Callable[..., TracingService], fast: None
) -> None:
    fault_server.respond = first_n(4, Reset())
    svc = make_service([otlp(fault_server)])
    delta = StatsDelta(svc)
    ids = record(svc, 100, 10)
    assert svc.flush(30)
    # the server read the reset requests in full: it saw those spans twice, the client was
    # never told, and every span was accepted exactly once
    resets = [r for r in fault_server.snapshot() if r.action == "Reset"]
    assert len(resets) == 4
    assert lane_stats(svc, fault_server)["failures"] >= 4
    assert_delivered_once(fault_server, ids, delta)


def test_an_answer_after_30_seconds_is_cut_by_the_timeout(
    fault_server: FaultServer, make_service: Callable[..., TracingService], fast: None
) -> None:
    fault_server.respond = first_n(2, Reply(delay=30))
    svc = make_service([otlp(fault_server, timeout=0.5)])
    delta = StatsDelta(svc)
    t0 = time.monotonic()
    ids = record(svc, 20, 10)
    assert svc.flush(20)
    assert time.monotonic() - t0 < 10
    assert lane_stats(svc, fault_server)["failures"] >= 2
    assert_delivered_once(fault_server, ids, delta)


def test_an_answer_trickling_a_byte_at_a_time_is_cut_by_the_timeout(
    fault_server: FaultServer, make_service: Callable[..., TracingService], fast: None
) -> None:
    # each byte comes well within the timeout, the whole answer takes ~20 s: the timeout
    # bounds the request as a whole, not each read
    fault_server.respond = first_n(1, Reply(trickle=0.25))
    svc = make_service([otlp(fault_server, timeout=1.0)])
    delta = StatsDelta(svc)
    t0 = time.monotonic()
    ids = record(svc, 20, 10)
    assert svc.flush(20)
    assert time.monotonic() - t0 < 8
    assert lane_stats(svc, fault_server)["failures"] >= 1
    assert_delivered_once(fault_server, ids, delta)


@pytest.mark.parametrize(
    "fault",
    [
        Garbage(),
        Garbage(b"HTTP/1.1 2OO OK\r\nContent-Length: banana\r\n\r\n"),
        Reply(503, os.urandom(64), (("Content-Type", "application/x-protobuf"),)),
    ],
    ids=["not-http", "broken-status-line", "503-garbage-body"],
)
def test_garbage_answers_are_retried(
    fault_server: FaultServer,
    make_service: Callable[..., TracingService],
    fast: None,
    fault: Action,
) -> None:
    fault_server.respond = first_n(3, fault)
    svc = make_service([otlp(fault_server)])
    delta = StatsDelta(svc)
    ids = record(svc, 50, 10)
    assert svc.flush(30)
    assert lane_stats(svc, fault_server)["failures"] >= 3, delta.now()
    assert_delivered_once(fault_server, ids, delta)


def test_a_200_with_a_garbage_body_counts_as_delivered(
    fault_server: FaultServer, make_service: Callable[..., TracingService], fast: None
) -> None:
    junk = b"\xff\x00" + os.urandom(200)
    fault_server.respond = lambda req: Reply(200, junk)
    svc = make_service([otlp(fault_server)])
    delta = StatsDelta(svc)
    ids = record(svc, 50, 10)
    assert svc.flush(30)
    assert lane_stats(svc, fault_server)["failures"] == 0
    assert_delivered_once(fault_server, ids, delta)


def test_413_splits_big_batches_and_nothing_is_lost(
    fault_server: FaultServer, make_service: Callable[..., TracingService], fast: None
) -> None:
    limit = 60

    def respond(req: Request) -> Action:
        return Reply(413, b"too big") if len(req.span_ids) > limit else OK

    fault_server.respond = respond
    svc = make_service([otlp(fault_server)])
    delta = StatsDelta(svc)
    ids = record(svc, 300, 10)  # 3,000 spans: batches of up to 512 are cut to fit
    assert svc.flush(60)
    accepted = [r for r in fault_server.snapshot() if r.accepted]
    assert all(len(r.span_ids) <= limit for r in accepted)
    rejected = [r for r in fault_server.snapshot() if r.action == "413"]
    assert rejected and all(len(r.span_ids) > limit for r in rejected)
    assert_delivered_once(fault_server, ids, delta)


def test_413_for_a_single_span_drops_only_that_span_and_counts_it(
    fault_server: FaultServer, make_service: Callable[..., TracingService], fast: None
) -> None:
    fault_server.respond = lambda req: Reply(413) if len(req.raw) > 20_000 else OK
    svc = make_service([otlp(fault_server)])
    delta = StatsDelta(svc)
    ids = record(svc, 20, 10)
    with svc.trace_run("huge", inputs={"doc": os.urandom(30_000).hex()}) as run:
        huge = run.span_id_hex
    ids += record(svc, 20, 10)
    assert svc.flush(30)
    stats = delta.now()
    assert stats["recorded"] == len(ids) + 1
    assert stats["dropped"] == {"too_large": 1}
    assert stats["exported"] + stats["dropped_total"] == stats["recorded"]
    accepted = fault_server.accepted_ids()
    assert set(accepted) == set(ids) and huge not in accepted
    assert max(accepted.values()) == 1


def test_a_server_flapping_every_second(
    fault_server: FaultServer, make_service: Callable[..., TracingService], fast: None
) -> None:
    flapper = Flapper(fault_server, period=1.0).start()
    svc = make_service([otlp(fault_server, timeout=2.0)])
    delta = StatsDelta(svc)
    ids: list[str] = []
    deadline = time.monotonic() + FLAP_SECONDS
    try:
        while time.monotonic() < deadline:  # ~300 spans a second, through up and down
            ids += record(svc, 3, 10)
            time.sleep(0.1)
    finally:
        flapper.stop()
    assert flapper.flips >= FLAP_SECONDS - 2
    assert svc.flush(60)
    st = lane_stats(svc, fault_server)
    assert st["failures"] >= 4 and st["retries"] >= 4
    modes = Counter(r.action for r in fault_server.snapshot())
    assert modes["Reset"] and modes["Garbage"] and modes["503"], modes
    assert_delivered_once(fault_server, ids, delta)
