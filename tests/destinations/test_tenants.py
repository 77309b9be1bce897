"""Per-tenant destinations: isolation, bounded state, one thread for everything."""

from __future__ import annotations

import asyncio
import base64
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.destinations.conftest import THREAD_PREFIX, CaptureServer
from tracemux import TracingService
from tracemux.destinations import OTLP, Destination, Langfuse, LangSmith, Phoenix
from tracemux.pipeline.worker import THREAD_NAME, shared_worker


def tenant_keys(i: int) -> tuple[str, str]:
    return f"pk-lf-tenant-{i:04d}", f"sk-lf-secret-{i:04d}-{random.random()}"


def credentials(req: Any) -> str:
    """The public key a request was authenticated with (from its Basic auth header)."""
    scheme, _, token = req.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    public, _, _secret = base64.b64decode(token).decode().partition(":")
    return public


def test_fifty_tenants_each_span_once_under_its_own_keys(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    pipeline_settings(flush_interval=0.05)
    tenants = [tenant_keys(i) for i in range(50)]
    secrets = {pk: sk for pk, sk in tenants}
    dests = [Langfuse(public_key=pk, secret_key=sk, host=capture.url) for pk, sk in tenants]
    svc = make_service([])  # no default: every run names its tenant
    dropped_before = svc.stats()["dropped_total"]
    runs_per_tenant, spans_per_run = 6, 4
    expected: dict[tuple[str, str], str] = {}  # (trace id, span id) -> tenant public key
    lock = threading.Lock()

    def remember(span: Any, tenant: int) -> None:
        with lock:
            expected[(span.run.trace_id.hex(), f"{span.span_id:016x}")] = tenants[tenant][0]

    async def one_run(tenant: int, n: int) -> None:
        async with svc.trace_run(
            f"t{tenant}-run{n}", destinations=[dests[tenant]], user_id=f"user-{tenant}"
        ) as run:
            remember(run, tenant)
            for k in range(spans_per_run - 1):
                async with run.span(f"t{tenant}-step{k}", kind="tool") as s:
                    remember(s, tenant)
                    await asyncio.sleep(random.random() * 0.002)

    def worker(thread_no: int) -> None:
        jobs = [
            (t, n)
            for t in range(len(tenants))
            for n in range(runs_per_tenant)
            if (t * runs_per_tenant + n) % 8 == thread_no
        ]
        random.shuffle(jobs)

        async def main() -> None:  # tasks of several tenants interleave on each loop
            await asyncio.gather(*(one_run(t, n) for t, n in jobs))

        asyncio.run(main())

    threads = [threading.Thread(target=worker, args=(i,), name=f"rec-{i}") for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert svc.flush(30)
    total = len(tenants) * runs_per_tenant * spans_per_run
    assert len(expected) == total

    seen: Counter[tuple[str, str]] = Counter()
    for span in capture.spans():
        key = (span.trace_id, span.span_id)
        seen[key] += 1
        tenant_pk = credentials(span.request)
        assert expected[key] == tenant_pk, f"span {span.name} sent with another tenant's keys"
        assert span.name.startswith(f"t{int(tenant_pk.rsplit('-', 1)[1])}-")
        # the secret is the tenant's own, too
        token = span.request.headers["authorization"].split(" ", 1)[1]
        assert base64.b64decode(token).decode() == f"{tenant_pk}:{secrets[tenant_pk]}"
    assert set(seen) == set(expected)
    assert max(seen.values()) == 1, "a span arrived more than once"
    assert svc.stats()["dropped_total"] == dropped_before


def test_default_and_per_run_destinations_do_not_mix(
    make_capture: Callable[[], CaptureServer], make_service: Callable[..., TracingService]
) -> None:
    default_srv, tenant_srv = make_capture(), make_capture()
    svc = make_service([OTLP(endpoint=default_srv.url)])
    with svc.trace_run("default-run"):
        pass
    tenant = Langfuse(public_key="pk-lf-tenant-a", secret_key="sk-lf-a", host=tenant_srv.url)
    with svc.trace_run("tenant-run", destinations=[tenant]) as run, run.span("inner"):
        pass
    assert svc.flush(10)
    assert {s.name for s in default_srv.spans()} == {"default-run"}
    assert {s.name for s in tenant_srv.spans()} == {"tenant-run", "inner"}


def _thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith(THREAD_PREFIX))


def test_a_thousand_tenants_four_kinds_one_thread_bounded_state(
    make_capture: Callable[[], CaptureServer],
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable,
) -> None:
    pipeline_settings(flush_interval=0.05, max_destinations=64, idle_ttl=0.5)
    servers = [make_capture() for _ in range(4)]
    svc = make_service([])
    svc.shutdown(10)  # start from no export thread
    before = _thread_names()
    dropped_before = svc.stats()["dropped_total"]

    def tenant_destination(i: int) -> Destination:
        kind = i % 4
        url = servers[kind].url
        if kind == 0:
            return Langfuse(public_key=f"pk-lf-{i:05d}", secret_key=f"sk-lf-{i:05d}", host=url)
        if kind == 1:
            return LangSmith(api_key=f"lsv2_pt_{i:05d}", project=f"p{i}", endpoint=url)
        if kind == 2:
            return Phoenix(endpoint=url, project=f"p{i}", api_key=f"phx-{i:05d}")
        return OTLP(endpoint=url, headers={"x-tenant": f"t{i:05d}"})

    n_tenants = 1000
    for i in range(n_tenants):
        with svc.trace_run(f"tenant-{i}", destinations=[tenant_destination(i)]) as run:
            with run.span("step", kind="llm") as s:
                s.set_usage(model="m", input_tokens=1, output_tokens=1)
        if i % 100 == 0:
            assert _thread_names() == sorted([*before, THREAD_NAME])
    assert svc.flush(60)
    assert _thread_names() == sorted([*before, THREAD_NAME])
    assert sum(len(s.spans()) for s in servers) == 2 * n_tenants
    stats = svc.stats()
    assert stats["dropped_total"] == dropped_before
    assert stats["threads"] == 1

    # the cap holds once the burst has been flushed, and idle tenants are forgotten
    worker = shared_worker()
    session = worker._session
    assert session is not None
    deadline = time.monotonic() + 10
    while len(session.lanes) > 64:
        assert time.monotonic() < deadline, f"{len(session.lanes)} lanes still open"
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    while session.lanes:
        assert time.monotonic() < deadline, f"{len(session.lanes)} idle lanes not closed"
        time.sleep(0.05)
    assert not worker._live_lanes
    assert len(worker._closed_stats) <= 1000  # per-destination history is bounded too
    assert _thread_names() == sorted([*before, THREAD_NAME])

    svc.shutdown(10)
    assert _thread_names() == before


def test_eviction_never_loses_buffered_spans(
    capture: CaptureServer, make_service: Callable[..., TracingService], pipeline_settings: Callable
) -> None:
    pipeline_settings(flush_interval=5.0, max_destinations=4)  # spans wait in their lanes
    svc = make_service([])
    dests = [OTLP(endpoint=capture.url, headers={"x-tenant": f"t{i}"}) for i in range(40)]
    for i, dest in enumerate(dests):
        with svc.trace_run(f"run-{i}", destinations=[dest]):
            pass
    assert svc.flush(20)
    assert sorted(s.name for s in capture.spans()) == sorted(f"run-{i}" for i in range(40))
    tenants = {r.headers["x-tenant"] for r in capture.trace_requests()}
    assert tenants == {f"t{i}" for i in range(40)}
