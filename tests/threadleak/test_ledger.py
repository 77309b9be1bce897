"""ThreadLedger: creation sites, grace period, allow-lists, nesting, real SDKs."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracemux.bench.sidevenv import side_venv
from tracemux.threadleak import ThreadLedger
from tracemux.threadleak.ledger import is_patched

HERE = Path(__file__).resolve()


def _line_of(marker: str, path: Path = HERE) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if marker in line and "_line_of" not in line:
            return i
    raise AssertionError(marker)


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _start_waiters(event: threading.Event, n: int) -> None:
    for i in range(n):
        threading.Thread(target=event.wait, name=f"waiter-{i}").start()  # WAITER-START


def _wait_for(event: threading.Event) -> None:
    event.wait()


def test_site_first_party_target_and_grouping(stop: threading.Event) -> None:
    with ThreadLedger() as ledger:
        _start_waiters(stop, 3)  # CALLER
        threading.Thread(target=stop.wait, name="solo", daemon=True).start()  # SOLO
    report = ledger.leaks(grace=0)
    assert report and report.count == 4 and len(report.groups) == 2
    big, small = report.groups
    assert big.count == 3 and big.names == ["waiter-0", "waiter-1", "waiter-2"]
    waiter_line = _line_of("# WAITER-START")
    assert big.site == f"tests/threadleak/test_ledger.py:{waiter_line} in _start_waiters"
    assert big.first_party == big.site  # the helper is first-party itself
    assert big.target == "threading.Event.wait"
    assert not big.daemon
    assert big.stack[-1].function == "_start_waiters"
    assert big.stack[-2].lineno == _line_of("# CALLER")
    assert small.daemon and small.names == ["solo"]
    solo_line = _line_of("# SOLO")
    assert small.site.endswith(f":{solo_line} in test_site_first_party_target_and_grouping")
    text = str(report)
    assert text.startswith("4 threads leaked from 2 creation sites")
    assert "waiter-0" in text and "_start_waiters" in text
    with pytest.raises(AssertionError, match="4 threads leaked"):
        report.assert_no_leaks()


def test_clean_block_and_preexisting_threads(stop: threading.Event) -> None:
    before = threading.Thread(target=stop.wait, name="before")
    before.start()
    with ThreadLedger() as ledger:
        t = threading.Thread(target=time.sleep, args=(0.01,))
        t.start()
        t.join()
    report = ledger.leaks(grace=0)
    assert not report and report.count == 0
    assert str(report) == "no threads leaked"
    report.assert_no_leaks()


def test_grace_period_waits_and_returns_early() -> None:
    with ThreadLedger() as ledger:
        threading.Thread(target=time.sleep, args=(0.3,), name="late").start()
    leaked_now = ledger.leaks(grace=0)
    assert [t.name for t in leaked_now.threads] == ["late"]
    t0 = time.monotonic()
    assert not ledger.leaks(grace=1.0)
    assert time.monotonic() - t0 < 0.9  # returned as soon as the thread ended


def test_grace_zero_reports_late_thread() -> None:
    with ThreadLedger() as ledger:
        threading.Thread(target=time.sleep, args=(0.3,), name="late").start()
    report = ledger.leaks(grace=0)
    assert report.count == 1 and report.groups[0].target == "time.sleep"


def test_grandchildren_count(stop: threading.Event) -> None:
    started = threading.Event()

    def parent() -> None:
        threading.Thread(target=stop.wait, name="grandchild").start()  # GRANDCHILD
        started.set()

    with ThreadLedger() as ledger:
        threading.Thread(target=parent, name="parent").start()
        assert started.wait(5)
    report = ledger.leaks(grace=0.5)
    assert [t.name for t in report.threads] == ["grandchild"]
    # Python 3.10 code objects have no co_qualname: plain function names there.
    func = "test_grandchildren_count.<locals>.parent" if sys.version_info >= (3, 11) else "parent"
    assert report.groups[0].site.endswith(f":{_line_of('# GRANDCHILD')} in {func}")


def test_other_threads_not_attributed_unless_all_threads(stop: threading.Event) -> None:
    go = threading.Event()
    done = threading.Event()

    def outsider() -> None:
        go.wait(5)
        threading.Thread(target=stop.wait, name="outsider-child").start()
        done.set()

    threading.Thread(target=outsider).start()
    with ThreadLedger() as mine, ThreadLedger(all_threads=True) as everything:
        go.set()
        assert done.wait(5)
    assert not mine.leaks(grace=0)
    assert [t.name for t in everything.leaks(grace=0).threads] == ["outsider-child"]


@pytest.mark.threadleak(enabled=False)  # checks the patch state: no outer ledger
def test_nested_ledgers_patch_once_and_restore(stop: threading.Event) -> None:
    original = threading.Thread.start
    with ThreadLedger() as outer:
        threading.Thread(target=stop.wait, name="a").start()
        patched = threading.Thread.start
        assert patched is not original and is_patched()
        with ThreadLedger() as inner:
            assert threading.Thread.start is patched
            threading.Thread(target=stop.wait, name="b").start()
        assert threading.Thread.start is patched
        threading.Thread(target=stop.wait, name="c").start()
    assert threading.Thread.start is original and not is_patched()
    assert [t.name for t in outer.leaks(grace=0).threads] == ["a", "b", "c"]
    assert [t.name for t in inner.leaks(grace=0).threads] == ["b"]


@pytest.mark.threadleak(enabled=False)  # checks the patch state: no outer ledger
def test_concurrent_ledgers_in_two_threads(stop: threading.Event) -> None:
    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(2)

    def worker(tag: str) -> None:
        with ThreadLedger() as ledger:
            barrier.wait(5)
            threading.Thread(target=stop.wait, name=f"{tag}-leak").start()
            barrier.wait(5)
        results[tag] = [t.name for t in ledger.leaks(grace=0).threads]

    workers = [threading.Thread(target=worker, args=(tag,)) for tag in ("x", "y")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert results == {"x": ["x-leak"], "y": ["y-leak"]}
    assert not is_patched()


def test_allow_lists(stop: threading.Event) -> None:
    with ThreadLedger(allow=["pool-*", re.compile(r"^rx-\d+$")]) as by_name:
        threading.Thread(target=stop.wait, name="pool-1").start()
        threading.Thread(target=stop.wait, name="rx-12").start()
        threading.Thread(target=stop.wait, name="kept").start()
    assert [t.name for t in by_name.leaks(grace=0).threads] == ["kept"]

    with ThreadLedger(allow=["target:threading.Event.wait"]) as by_target:
        threading.Thread(target=stop.wait, name="t1").start()
        threading.Thread(target=_wait_for, args=(stop,), name="t2", daemon=True).start()
    assert [t.name for t in by_target.leaks(grace=0).threads] == ["t2"]

    with ThreadLedger(allow=["site:*test_ledger.py:*", "name:re:^never$"]) as by_site:
        threading.Thread(target=stop.wait, name="s1").start()
    assert not by_site.leaks(grace=0)

    with ThreadLedger(allow=[lambda t: t.name == "pred"], include_daemon=False) as other:
        threading.Thread(target=stop.wait, name="pred").start()
        threading.Thread(target=stop.wait, name="daemonic", daemon=True).start()
    assert not other.leaks(grace=0)


def test_first_party_rule_is_configurable(stop: threading.Event) -> None:
    with ThreadLedger(first_party=lambda filename: False) as none_fp:
        _start_waiters(stop, 1)
    assert none_fp.leaks(grace=0).groups[0].first_party is None
    with ThreadLedger(first_party=["/nonexistent/prefix"]) as prefixed:
        _start_waiters(stop, 1)
    assert prefixed.leaks(grace=0).groups[0].first_party is None
    with ThreadLedger(first_party=[HERE.parent]) as here:
        _start_waiters(stop, 1)
    assert "_start_waiters" in str(here.leaks(grace=0).groups[0].first_party)


def test_opentelemetry_batch_span_processor_without_shutdown_is_caught() -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with ThreadLedger() as ledger:
        processor = BatchSpanProcessor(InMemorySpanExporter())  # OTEL-LEAK
    try:
        report = ledger.leaks(grace=0.5)
        assert report.count == 1
        group = report.groups[0]
        assert group.daemon
        assert group.site.startswith("opentelemetry/sdk/")
        assert group.first_party is not None
        assert group.first_party.endswith(
            f"test_ledger.py:{_line_of('# OTEL-LEAK')} in "
            "test_opentelemetry_batch_span_processor_without_"
            "shutdown_is_caught"
        )
    finally:
        processor.shutdown()


def test_opentelemetry_batch_span_processor_with_shutdown_is_clean() -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with ThreadLedger() as ledger:
        processor = BatchSpanProcessor(InMemorySpanExporter())
        processor.shutdown()
    ledger.leaks(grace=1.0).assert_no_leaks()


LANGFUSE2_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from tracemux.threadleak import ThreadLedger
    from langfuse import Langfuse

    host = sys.argv[1]
    clients = []
    with ThreadLedger() as ledger:
        for run in range(5):
            client = Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", host=host)  # CLIENT
            clients.append(client)
    report = ledger.leaks(grace=1.0)
    out = {
        "count": report.count,
        "text": str(report),
        "groups": [
            {"site": g.site, "first_party": g.first_party, "target": g.target,
             "count": g.count, "daemon": g.daemon}
            for g in report.groups
        ],
    }
    print(json.dumps(out), flush=True)
    os._exit(0)  # the clients' atexit flush would retry against the closed port
    """
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_langfuse2_client_per_run(tmp_path: Path) -> None:
    python = side_venv("langfuse2", ["langfuse>=2.60,<3"])
    script = tmp_path / "langfuse_per_run.py"
    script.write_text(LANGFUSE2_SCRIPT)
    proc = subprocess.run(
        [str(python), str(script), f"http://127.0.0.1:{_closed_port()}"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["count"] == 15, out["text"]
    groups = {g["site"].split(":")[0]: g for g in out["groups"]}
    sites = [g["site"] for g in out["groups"]]
    assert all(g["count"] == 5 and g["daemon"] for g in out["groups"]), out["text"]
    assert sum(1 for s in sites if s.startswith("langfuse/_task_manager/task_manager.py:")) == 2
    assert any(s.startswith("langfuse/prompt_cache.py:") for s in sites)
    assert all("TaskManager.init_resources" in s for s in sites if "task_manager" in s)
    assert "langfuse/prompt_cache.py" in groups
    line = _line_of("# CLIENT", script)
    for g in out["groups"]:
        assert g["first_party"] == f"langfuse_per_run.py:{line} in <module>", out["text"]
    assert out["text"].startswith("15 threads leaked from 3 creation sites")
    assert sys.executable != str(python)
