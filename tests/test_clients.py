"""SharedClients: keys, one creation per key, LRU and idle closing, closer thread, exit, fork.

The last test runs the real langfuse 2.x SDK in a side venv: a client per run grows by three
threads per run, the pool stays at ``max_size`` clients' worth of threads.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tracemux.bench.sidevenv import side_venv
from tracemux.clients import CLOSER_THREAD_NAME, SharedClients, config_key

SECRET = "sk-lf-very-secret-0123456789"
BASE: dict[str, Any] = {
    "public_key": "pk-lf-1",
    "secret_key": SECRET,
    "host": "http://127.0.0.1:9",
    "flush_interval": 0.5,
    "options": {"retries": 3, "tags": ["a", "b"], "ids": {1, 2}},
}


class FakeClient:
    """Stands in for an SDK client: remembers its config and how it was closed."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.closes = 0
        self.closed_on: str | None = None


class Recorder:
    """Factory and close function that record every call."""

    def __init__(self, delay: float = 0.0, close_delay: float = 0.0) -> None:
        self.delay = delay
        self.close_delay = close_delay
        self.created: list[FakeClient] = []
        self.closed: list[FakeClient] = []
        self.lock = threading.Lock()

    def factory(self, config: Mapping[str, Any]) -> FakeClient:
        if self.delay:
            time.sleep(self.delay)
        client = FakeClient(config)
        with self.lock:
            self.created.append(client)
        return client

    def close(self, client: FakeClient) -> None:
        if self.close_delay:
            time.sleep(self.close_delay)
        client.closes += 1
        client.closed_on = threading.current_thread().name
        with self.lock:
            self.closed.append(client)


def cfg(i: int, **extra: Any) -> dict[str, Any]:
    return {"public_key": f"pk-{i}", "secret_key": f"sk-{i}", "host": "http://127.0.0.1:9", **extra}


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def closer_alive() -> bool:
    return any(t.name == CLOSER_THREAD_NAME for t in threading.enumerate())


def make_pool(rec: Recorder, **kwargs: Any) -> SharedClients[FakeClient]:
    kwargs.setdefault("closer_idle", 0.05)
    return SharedClients(rec.factory, rec.close, **kwargs)


# -- keys ------------------------------------------------------------------------------------


def test_same_configuration_in_any_order_is_one_client() -> None:
    rec = Recorder()
    with make_pool(rec) as pool:
        a = pool.get(BASE)
        b = pool.get(dict(reversed(list(BASE.items()))))
        c = pool.get({**BASE, "options": {"ids": {2, 1}, "tags": ["a", "b"], "retries": 3}})
        assert a is b is c
        assert len(rec.created) == 1
        assert pool.stats().hits == 2


def _mutations() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("secret rotated", {**BASE, "secret_key": SECRET + "x"}),
        ("public key", {**BASE, "public_key": "pk-lf-2"}),
        ("host", {**BASE, "host": "http://127.0.0.1:10"}),
        ("field added", {**BASE, "release": "1"}),
        ("field removed", {k: v for k, v in BASE.items() if k != "host"}),
        ("field None", {**BASE, "host": None}),
        ("float", {**BASE, "flush_interval": 0.25}),
        ("int for float", {**BASE, "flush_interval": 1}),
        ("str for float", {**BASE, "flush_interval": "0.5"}),
        ("nested value", {**BASE, "options": {**BASE["options"], "retries": 4}}),
        ("nested list order", {**BASE, "options": {**BASE["options"], "tags": ["b", "a"]}}),
        ("nested set", {**BASE, "options": {**BASE["options"], "ids": {1, 3}}}),
        ("bool for int", {**BASE, "options": {**BASE["options"], "retries": True}}),
        ("bytes", {**BASE, "secret_key": SECRET.encode()}),
    ]


@pytest.mark.parametrize(("what", "changed"), _mutations(), ids=[m[0] for m in _mutations()])
def test_any_changed_field_is_a_different_client(what: str, changed: dict[str, Any]) -> None:
    salt = os.urandom(16)
    assert config_key(changed, salt)[0] != config_key(BASE, salt)[0], what
    rec = Recorder()
    with make_pool(rec) as pool:
        assert pool.get(BASE) is not pool.get(changed)
        assert len(rec.created) == 2


def test_key_is_a_salted_digest_and_keeps_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tracemux.clients")
    key, pins = config_key(BASE, b"salt-one")
    assert isinstance(key, bytes) and len(key) == 16 and pins == ()
    assert key == config_key(dict(BASE), b"salt-one")[0]
    assert key != config_key(BASE, b"salt-two")[0]
    rec = Recorder()
    pool = make_pool(rec, max_size=1)
    pool.get(BASE)
    pool.get(cfg(1))  # evicts BASE: closed
    (stored_key,) = pool._entries  # only cfg(1) is live
    assert len(stored_key) == 16
    pool.close_all()
    assert SECRET not in repr(pool) and SECRET not in repr(pool.stats())
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert all(SECRET not in repr(v) for v in vars(pool).values())


def test_unknown_objects_are_keyed_by_identity() -> None:
    class HttpClient:
        pass

    shared, other = HttpClient(), HttpClient()
    rec = Recorder()
    with make_pool(rec) as pool:
        a = pool.get({**BASE, "httpx_client": shared})
        assert pool.get({**BASE, "httpx_client": shared}) is a
        assert pool.get({**BASE, "httpx_client": other}) is not a
        (entry, *_) = pool._entries.values()
        assert entry.pins == (shared,)  # kept alive while keyed, so its id stays unique


def test_bad_configurations_are_rejected() -> None:
    pool = make_pool(Recorder())
    with pytest.raises(TypeError, match="mapping"):
        pool.get([("public_key", "x")])  # type: ignore[arg-type]
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    with pytest.raises(TypeError, match="cycle"):
        pool.get(cyclic)
    for bad in ({"max_size": 0}, {"idle_ttl": 0}, {"max_closing": 0}, {"closer_idle": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SharedClients(Recorder().factory, Recorder().close, **bad)


# -- creation --------------------------------------------------------------------------------


def test_100_threads_create_one_client_per_key() -> None:
    rec = Recorder(delay=0.05)
    pool = make_pool(rec, max_size=8)
    barrier = threading.Barrier(100)
    got: list[tuple[int, FakeClient]] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        client = pool.get(cfg(i % 5))
        with lock:
            got.append((i % 5, client))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 100
    assert len(rec.created) == 5
    for k in range(5):
        assert len({id(c) for key, c in got if key == k}) == 1
    stats = pool.stats()
    assert (stats.created, stats.hits, stats.live, stats.creating) == (5, 95, 5, 0)
    pool.close_all()


def test_slow_factories_for_different_keys_run_in_parallel() -> None:
    inside = threading.Barrier(4, timeout=5)  # breaks unless all four factories overlap

    def factory(config: Mapping[str, Any]) -> FakeClient:
        inside.wait()
        return FakeClient(config)

    pool = SharedClients(factory, lambda c: None, closer_idle=0.05)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            pool.get(cfg(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert pool.stats().created == 4
    pool.close_all()


def test_factory_error_reaches_waiters_and_the_next_get_retries() -> None:
    release = threading.Event()
    calls = []

    def factory(config: Mapping[str, Any]) -> FakeClient:
        calls.append(1)
        if len(calls) == 1:
            release.wait(5)
            raise ConnectionError("boom")
        return FakeClient(config)

    pool = SharedClients(factory, lambda c: None, closer_idle=0.05)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            pool.get(cfg(1))
        except ConnectionError as exc:
            raised.append(exc)

    creator = threading.Thread(target=run)
    creator.start()
    assert wait_until(lambda: pool.stats().creating == 1)
    waiters = [threading.Thread(target=run) for _ in range(3)]
    for t in waiters:
        t.start()
    time.sleep(0.1)  # let them block on the pending creation
    release.set()
    for t in [creator, *waiters]:
        t.join(5)
    assert len(raised) == 4 and len({id(e) for e in raised}) == 1
    assert len(calls) == 1
    assert pool.stats().create_errors == 1 and pool.stats().creating == 0
    assert isinstance(pool.get(cfg(1)), FakeClient)  # a later get tries again
    assert len(calls) == 2
    pool.close_all()


# -- bounds and the closer -------------------------------------------------------------------


def test_lru_eviction_closes_with_the_close_function_on_the_closer_thread() -> None:
    rec = Recorder()
    pool = make_pool(rec, max_size=2)
    a, b = pool.get(cfg(1)), pool.get(cfg(2))
    assert pool.get(cfg(1)) is a  # touch: b is now least recently used
    c = pool.get(cfg(3))
    assert wait_until(lambda: pool.stats().closed == 1)
    assert rec.closed == [b] and b.closes == 1 and b.closed_on == CLOSER_THREAD_NAME
    assert pool.get(cfg(1)) is a and pool.get(cfg(3)) is c
    stats = pool.stats()
    assert (stats.live, stats.evicted, stats.created) == (2, 1, 3)
    assert pool.get(cfg(2)) is not b  # recreated
    pool.close_all()


def test_eviction_does_not_wait_for_a_slow_close() -> None:
    rec = Recorder(close_delay=0.5)
    pool = make_pool(rec, max_size=1)
    pool.get(cfg(1))
    t0 = time.monotonic()
    pool.get(cfg(2))  # evicts cfg(1): its 0.5 s close runs on the closer
    assert time.monotonic() - t0 < 0.25
    assert pool.stats().closing == 1
    assert pool.close_all(timeout=5) and len(rec.closed) == 2


def test_idle_clients_expire_on_get() -> None:
    rec = Recorder()
    pool = make_pool(rec, idle_ttl=0.05)
    a = pool.get(cfg(1))
    time.sleep(0.1)
    pool.get(cfg(2))
    assert wait_until(lambda: a.closes == 1)
    assert pool.stats().expired == 1 and pool.stats().live == 1
    assert pool.get(cfg(1)) is not a
    pool.close_all()


def test_idle_clients_expire_while_the_closer_runs() -> None:
    rec = Recorder()
    pool = make_pool(rec, max_size=1, idle_ttl=0.3, closer_idle=2.0)
    a = pool.get(cfg(1))
    b = pool.get(cfg(2))  # evicts a: the closer starts and lingers
    assert wait_until(lambda: a.closes == 1)
    assert wait_until(lambda: b.closes == 1, timeout=2.0)  # no get: the closer expired it
    assert pool.stats().expired == 1 and pool.stats().live == 0
    assert closer_alive()  # lingering (closer_idle=2.0) ...
    assert pool.close_all(timeout=5)
    assert not closer_alive()  # ... until close_all joins it


def test_closer_thread_starts_only_with_work_and_exits_when_idle() -> None:
    assert wait_until(lambda: not closer_alive())
    rec = Recorder()
    pool = make_pool(rec, max_size=2, closer_idle=0.05)
    for i in range(2):
        pool.get(cfg(i))
    pool.get(cfg(0))
    assert not closer_alive() and not pool.stats().closer_running
    pool.get(cfg(2))  # eviction: the closer starts
    assert wait_until(lambda: len(rec.closed) == 1)
    assert wait_until(lambda: not closer_alive(), timeout=2.0)
    assert not pool.stats().closer_running
    pool.get(cfg(3))  # and starts again for the next one
    assert wait_until(lambda: len(rec.closed) == 2)
    assert wait_until(lambda: not closer_alive(), timeout=2.0)
    assert [t.name for t in threading.enumerate()].count(CLOSER_THREAD_NAME) == 0
    pool.close_all()


def test_backpressure_bounds_clients_waiting_to_be_closed() -> None:
    rec = Recorder(close_delay=0.05)
    pool = make_pool(rec, max_size=1, max_closing=1)
    worst = 0
    for i in range(8):
        pool.get(cfg(i))
        worst = max(worst, pool.stats().closing)
    assert worst <= 1
    assert pool.close_all()
    assert len(rec.closed) == 8


def test_stuck_close_does_not_stall_get_forever(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    pool = SharedClients(
        FakeClient,
        lambda c: release.wait(10),
        max_size=1,
        max_closing=1,
        close_backlog_wait=0.1,
        closer_idle=0.05,
    )
    with caplog.at_level(logging.WARNING, logger="tracemux.clients"):
        t0 = time.monotonic()
        for i in range(4):
            pool.get(cfg(i))
        assert time.monotonic() - t0 < 2.0
    assert any("still waiting to be closed" in r.getMessage() for r in caplog.records)
    release.set()
    assert pool.close_all(timeout=5)


def test_close_all_closes_everything_and_the_pool_is_usable_again() -> None:
    rec = Recorder()
    pool = make_pool(rec, max_size=3, closer_idle=10.0)
    first = [pool.get(cfg(i)) for i in range(5)]  # two evicted, three live
    assert pool.close_all(timeout=5) is True
    assert sorted(id(c) for c in rec.closed) == sorted(id(c) for c in first)
    assert all(c.closes == 1 for c in first)
    stats = pool.stats()
    assert (stats.live, stats.closing, stats.closed, stats.created) == (0, 0, 5, 5)
    assert not closer_alive()  # joined, despite closer_idle=10
    again = pool.get(cfg(0))
    assert again not in first and pool.stats().live == 1
    assert pool.close_all() is True and again.closes == 1
    assert pool.close_all() is True  # nothing to do


def test_close_all_is_bounded_by_its_timeout() -> None:
    release = threading.Event()
    pool = SharedClients(FakeClient, lambda c: release.wait(10), closer_idle=0.05)
    pool.get(cfg(1))
    t0 = time.monotonic()
    assert pool.close_all(timeout=0.2) is False
    assert time.monotonic() - t0 < 1.0
    release.set()
    assert wait_until(lambda: pool.stats().closed == 1)


def test_close_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def close(client: FakeClient) -> None:
        raise RuntimeError("shutdown failed")

    pool = SharedClients(FakeClient, close, max_size=1, closer_idle=0.05)
    with caplog.at_level(logging.WARNING, logger="tracemux.clients"):
        pool.get(cfg(1))
        pool.get(cfg(2))  # eviction: its close raises on the closer thread
        assert wait_until(lambda: pool.stats().closed == 1)
        assert pool.close_all() is True  # and close_all does not raise either
    stats = pool.stats()
    assert (stats.closed, stats.close_errors, stats.live) == (2, 2, 0)
    failures = [r for r in caplog.records if "closing a shared client failed" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


def test_close_all_from_a_close_function_is_refused() -> None:
    holder: dict[str, SharedClients[FakeClient]] = {}
    seen: list[BaseException] = []

    def close(client: FakeClient) -> None:
        try:
            holder["pool"].close_all()
        except RuntimeError as exc:
            seen.append(exc)

    pool = holder["pool"] = SharedClients(FakeClient, close, max_size=1, closer_idle=0.05)
    pool.get(cfg(1))
    pool.get(cfg(2))
    assert wait_until(lambda: len(seen) == 1)
    pool.close_all()


# -- exit and fork ---------------------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent(
    """
    import logging, sys, time
    from tracemux.clients import SharedClients

    mode = sys.argv[1]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def close(client):
        if mode == "raise" and client == 1:
            raise RuntimeError("close failed at exit")
        if mode == "stuck":
            time.sleep(60)
        print(f"closed {client}", flush=True)

    pool = SharedClients(lambda cfg: cfg["n"], close, exit_timeout=0.5)
    for n in range(3):
        pool.get({"n": n, "secret_key": "sk"})
    print("exiting", flush=True)
    """
)


NO_THREADS_AT_EXIT = (3, 12, 0) <= sys.version_info[:3] < (3, 12, 2)


@pytest.mark.parametrize(
    "mode",
    [
        "ok",
        "raise",
        pytest.param(
            "stuck",
            marks=pytest.mark.skipif(
                NO_THREADS_AT_EXIT, reason="3.12.0/3.12.1 start no thread at exit: inline close"
            ),
        ),
    ],
)
def test_all_clients_are_closed_at_exit(tmp_path: Path, mode: str) -> None:
    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "exiting"
    if mode == "ok":
        assert sorted(lines[1:]) == ["closed 0", "closed 1", "closed 2"]
    elif mode == "raise":
        assert sorted(lines[1:]) == ["closed 0", "closed 2"]
        assert "closing a shared client failed" in proc.stderr
        assert "close failed at exit" in proc.stderr
    else:
        assert lines[1:] == []
        assert "not every client closed within 0.5s at exit" in proc.stderr
        assert elapsed < 20


def test_fork_child_starts_with_an_empty_pool() -> None:
    rec = Recorder()
    pool = make_pool(rec, max_size=2, closer_idle=5.0)
    parent_clients = [pool.get(cfg(i)) for i in range(3)]  # one evicted: the closer lingers
    assert wait_until(lambda: len(rec.closed) == 1)
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        code = 1
        try:
            os.close(read_fd)
            before = pool.stats()
            closed_before = len(rec.closed)
            mine = pool.get(cfg(1))
            pool.close_all(timeout=5)
            after = pool.stats()
            report = {
                "live_before": before.live,
                "created_before": before.created,
                "closer_before": before.closer_running,
                "new_client": all(mine is not c for c in parent_clients),
                "parent_closed_in_child": sum(
                    c.closes for c in parent_clients if c is not parent_clients[0]
                ),
                "closed_in_child": [c is mine for c in rec.closed[closed_before:]],
                "created_after": after.created,
                "live_after": after.live,
            }
            os.write(write_fd, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    report = json.loads(data)
    assert report == {
        "live_before": 0,
        "created_before": 0,
        "closer_before": False,
        "new_client": True,
        "parent_closed_in_child": 0,
        "closed_in_child": [True],
        "created_after": 1,
        "live_after": 0,
    }
    # The parent is untouched: its two live clients are still there and unclosed.
    assert pool.stats().live == 2
    assert pool.get(cfg(1)) is parent_clients[1] and parent_clients[1].closes == 0
    pool.close_all()


# -- the real langfuse 2.x SDK ---------------------------------------------------------------

# A throwaway self-signed CA (certificate only). httpx loads the CA bundle named by
# SSL_CERT_FILE for every client; a one-certificate bundle makes a langfuse 2 client cost
# ~17 ms instead of ~110 ms. The host is plain http on a closed loopback port anyway.
TINY_CA = """\
-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUED/fltgeVT5bDSJ17KaHG9U4//owCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQdHJhY2VtdXgtdGVzdC1jYTAgFw0yNjExMjgwMDI2NDFaGA8y
MTI2MTEwNDAwMjY0MVowGzEZMBcGA1UEAwwQdHJhY2VtdXgtdGVzdC1jYTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABIZq5AfvEzUWti+KrwMuzDO14ZRcUbzRDOr3
KaLifrzjuLSVVXfoUJ4wUYzfK3jzt55Cg2EKhQI9faiwrWyeNS2jUzBRMB0GA1Ud
DgQWBBTrEQSmQ0KppF/6lsc7ei1dZuN7GjAfBgNVHSMEGDAWgBTrEQSmQ0KppF/6
lsc7ei1dZuN7GjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFet
1TnqP9MNocbGtiPpoFFEfKbLtofPiZtoSvO0Ql3UAiEAuadruvKIGkuY7zXctHt/
a1Pni4J6w0Mz8XC6OlPY+gU=
-----END CERTIFICATE-----
"""

LANGFUSE2_POOL_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, threading, time
    from langfuse import Langfuse
    from tracemux.clients import CLOSER_THREAD_NAME, SharedClients

    host = sys.argv[1]
    # The wake-up below hands the media consumer a dummy job, which it logs as an error.
    logging.getLogger("langfuse._task_manager.media_manager").setLevel(logging.CRITICAL)

    def creds(i):
        return {"public_key": f"pk-lf-{i}", "secret_key": f"sk-lf-{i}", "host": host,
                "flush_interval": 0.01}  # the ingestion thread polls (and joins) this fast

    def shutdown(client):
        # langfuse 2.60's prompt-cache and media consumers poll their queues with a fixed
        # 1 s timeout, so shutdown() takes 1-2 s. Pause and wake them first; shutdown()
        # then flushes and joins every thread as usual, in milliseconds.
        prompt = client.prompt_cache._task_manager
        for consumer in prompt._consumers:
            consumer.pause()
            prompt._queue.put(lambda: None)
        tm = client.task_manager
        for consumer in tm._media_upload_consumers:
            consumer.pause()
            tm._media_upload_queue.put(None)
        client.shutdown()

    def extra():
        return threading.active_count() - base

    def workers():
        return sum(1 for t in threading.enumerate() if t.name != CLOSER_THREAD_NAME) - base

    base = threading.active_count()
    out = {}

    # One real shutdown(), to show what the closer is up against.
    t0 = time.perf_counter()
    client = Langfuse(**creds(0))
    out["create_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.shutdown()
    out["plain_shutdown_s"] = time.perf_counter() - t0

    # The naive pattern: a new client per run, as the incident describes.
    naive, growth = [], []
    for run in range(30):
        naive.append(Langfuse(**creds(run % 20)))
        growth.append(extra())
    out["naive_growth"] = growth
    for c in naive:
        shutdown(c)
    out["naive_after_shutdown"] = extra()

    def pooled(max_closing):
        # 1,000 runs rotating over 20 credential sets, max_size=4: every run is a miss.
        pool = SharedClients(lambda cfg: Langfuse(**cfg), shutdown, max_size=4,
                             idle_ttl=300.0, max_closing=max_closing)
        res, samples, worst_unclosed = {}, [], 0
        t0 = time.perf_counter()
        for run in range(1000):
            pool.get(creds(run % 20))
            s = pool.stats()
            worst_unclosed = max(worst_unclosed, s.live + s.closing)
            samples.append(extra())
        res["seconds"] = time.perf_counter() - t0
        res["peak"] = max(samples)
        res["mean"] = sum(samples) / len(samples)
        res["worst_unclosed"] = worst_unclosed
        deadline = time.monotonic() + 30
        while pool.stats().closing and time.monotonic() < deadline:
            time.sleep(0.01)
        res["settled_workers"] = workers()
        s = pool.stats()
        res["before_close_all"] = {"created": s.created, "closed": s.closed, "live": s.live}
        res["close_all"] = pool.close_all(timeout=30)
        s = pool.stats()
        res["after_close_all"] = {"created": s.created, "closed": s.closed, "live": s.live,
                                  "errors": s.close_errors}
        res["final_extra"] = extra()
        return res

    out["pooled"] = pooled(None)  # default max_closing = max_size
    out["pooled_max_closing_1"] = pooled(1)
    print(json.dumps(out), flush=True)
    """
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_langfuse2_pool_bounds_threads_where_a_client_per_run_leaks(tmp_path: Path) -> None:
    python = side_venv("langfuse2", ["langfuse>=2.60,<3"])  # same spec as the ledger tests
    script = tmp_path / "langfuse_pool.py"
    script.write_text(LANGFUSE2_POOL_SCRIPT)
    ca = tmp_path / "tiny-ca.pem"
    ca.write_text(TINY_CA)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANGFUSE_")}
    env["SSL_CERT_FILE"] = str(ca)
    proc = subprocess.run(
        [str(python), str(script), f"http://127.0.0.1:{_closed_port()}"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    per_client = 3
    # The bug: a client per run, three threads more after every run.
    assert out["naive_growth"] == [per_client * (run + 1) for run in range(30)], out
    assert out["naive_after_shutdown"] == 0
    # The fix: never more than max_size (4) live clients plus max_closing waiting for the
    # closer (backpressure paces creation to the closer), plus the closer itself ...
    for phase, max_closing in (("pooled", 4), ("pooled_max_closing_1", 1)):
        res = out[phase]
        assert res["worst_unclosed"] <= 4 + max_closing, res
        assert res["peak"] <= per_client * (4 + max_closing) + 1, res
        # ... and once the closer has caught up, exactly four clients' worth of threads.
        assert res["settled_workers"] == per_client * 4, res
        assert res["before_close_all"] == {"created": 1000, "closed": 996, "live": 4}, res
        assert res["close_all"] is True
        assert res["after_close_all"] == {"created": 1000, "closed": 1000, "live": 0, "errors": 0}
        assert res["final_extra"] == 0, res
