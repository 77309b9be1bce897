"""The store's disk fails: full, read-only, or over the process's file-size limit.

Root ignores permission bits, so the faults are made for real: a small tmpfs filled to the
last byte (ENOSPC), a tmpfs mounted read-only and then made writable, and, where mounting is
not allowed, ``RLIMIT_FSIZE`` in a child process (EFBIG, SIGXFSZ ignored). Each time: the
flow keeps running (no exception, no slowdown), the failures are counted in
``stats()["destinations"]``, the warning is logged once per interval (not once per retry),
and when space comes back every buffered span arrives.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import StatsDelta, run_python, wait_until, write_script
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

pytestmark = pytest.mark.reliability

RETRY_LOGGER = "tracemux.pipeline"


def record(svc: TracingService, runs: int, tag: str, pad: int = 2000) -> list[str]:
    ids = []
    for i in range(runs):
        with svc.trace_run(f"{tag}-{i}", run_id=f"{tag}-{i}") as run:
            for j in range(9):
                run.span(f"s{j}", inputs={"pad": "d" * pad, "j": j}).end()
        ids.append(run.run_id)
    return ids


def retry_warnings(records: list[logging.LogRecord], label: str) -> list[str]:
    return [
        r.getMessage()
        for r in records
        if r.name.startswith(RETRY_LOGGER)
        and r.levelno >= logging.WARNING
        and label in r.getMessage()
    ]


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join([f"size={size}", *options])
    if not _mount("-t", "tmpfs", "-o", opts, "tmpfs", str(path)):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = path / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        for size in (4096, 512, 1):  # the last few bytes too
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError:
                    break
    return filler


def store_counts(store: SQLiteStore, ids: list[str]) -> list[str]:
    """Runs of ``ids`` that are not in the store whole."""
    bad = []
    for run_id in ids:
        run = store.run(run_id)
        if run is None or run.span_count != 10 or run.status != "ok":
            bad.append(run_id)
    return bad


def lane(svc: TracingService, store: SQLiteStore) -> dict[str, Any]:
    """The store's counters ({"failures": 0} until its lane is opened)."""
    return svc.stats()["destinations"].get(store.describe(), {"failures": 0})


def test_disk_full_then_space_returns(
    tmp_path: Path,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tracemux")
    pipeline_settings(flush_interval=0.05)
    with tmpfs(tmp_path / "mnt", "16m") as mnt:
        store = SQLiteStore(mnt / "traces.db")
        svc = make_service([store])
        delta = StatsDelta(svc)
        before = record(svc, 20, "before")
        assert svc.flush(10)
        filler = fill(mnt)
        # the flow runs on at full speed while the disk is full
        t0 = time.monotonic()
        during = record(svc, 300, "during", pad=500)
        assert time.monotonic() - t0 < 5
        assert wait_until(lambda: lane(svc, store)["failures"] >= 3, 20)
        time.sleep(1)
        assert svc.stats()["dropped_total"] - delta.before["dropped_total"] == 0
        warned = retry_warnings(caplog.records, store.describe())
        assert len(warned) == 1, warned  # once per interval, not once per retry
        assert "full" in warned[0] or "disk" in warned[0], warned[0]
        filler.unlink()  # space comes back
        assert svc.flush(60)
        assert store_counts(store, before + during) == []
        stats = delta.now()
        assert stats["dropped_total"] == 0
        assert stats["exported"] == stats["recorded"] == 3200
        svc.shutdown(10)


def test_read_only_store_then_writable(
    tmp_path: Path,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tracemux")
    pipeline_settings(flush_interval=0.05)
    with tmpfs(tmp_path / "ro", "8m", "ro") as mnt:
        store = SQLiteStore(mnt / "traces.db")
        svc = make_service([store])
        delta = StatsDelta(svc)
        t0 = time.monotonic()
        ids = record(svc, 100, "ro")
        assert time.monotonic() - t0 < 5
        assert wait_until(lambda: lane(svc, store)["failures"] >= 3, 20)
        warned = retry_warnings(caplog.records, store.describe())
        assert len(warned) == 1, warned
        assert "cannot open" in warned[0]
        assert _mount("-o", "remount,rw", str(mnt))
        assert svc.flush(60)
        assert store_counts(store, ids) == []
        stats = delta.now()
        assert stats["dropped_total"] == 0 and stats["exported"] == stats["recorded"] == 1000
        svc.shutdown(10)


FSIZE_SCRIPT = """
import json, logging, os, resource, signal, sys, time
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit: EFBIG, not death
import tracemux
from tracemux.destinations import SQLiteStore
from tracemux.pipeline.worker import PipelineSettings

logs = []
class Keep(logging.Handler):
    def emit(self, record):
        logs.append([record.name, record.levelname, record.getMessage()])
logging.getLogger("tracemux").addHandler(Keep())
logging.getLogger("tracemux").setLevel(logging.DEBUG)

db = sys.argv[1]
store = SQLiteStore(db)
svc = tracemux.TracingService([store], pipeline=PipelineSettings(flush_interval=0.05))

def record(n, tag):
    for i in range(n):
        with svc.trace_run(f"{tag}-{i}", run_id=f"{tag}-{i}") as run:
            for j in range(9):
                run.span(f"s{j}", inputs={"pad": "f" * 2000, "j": j}).end()

def failures():
    return svc.stats()["destinations"][store.describe()]["failures"]

record(20, "before")
assert svc.flush(10)
sizes = {p: os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p)}
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (max(sizes.values()) + 4096, hard))
t0 = time.monotonic()
record(300, "during")
record_time = time.monotonic() - t0
deadline = time.monotonic() + 20
while failures() < 3 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(1)
during = {"failures": failures(), "logs": list(logs), "record_time": record_time,
          "dropped": svc.stats()["dropped_total"]}
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space comes back
flushed = svc.flush(60)
s = svc.stats()
print(json.dumps({"during": during, "flushed": flushed, "recorded": s["recorded"],
                  "exported": s["exported"], "dropped": s["dropped"], "sizes": sizes}))
"""


def test_file_size_limit_then_lifted(tmp_path: Path) -> None:
    db = tmp_path / "fsize.db"
    script = write_script(tmp_path, "fsize.py", FSIZE_SCRIPT)
    proc = run_python(script, str(db), timeout=120)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    during = report["during"]
    assert during["record_time"] < 5
    assert during["failures"] >= 3
    assert during["dropped"] == 0
    label = SQLiteStore(db).describe()
    warned = [
        m for name, level, m in during["logs"] if name.startswith(RETRY_LOGGER) and label in m
    ]
    assert len(warned) == 1, during["logs"]
    assert report["flushed"]
    assert report["dropped"] == {}
    assert report["exported"] == report["recorded"] == 3200
    store = SQLiteStore(db)
    assert store_counts(store, [f"before-{i}" for i in range(20)]) == []
    assert store_counts(store, [f"during-{i}" for i in range(300)]) == []
    assert os.path.getsize(db) > max(report["sizes"].values())
