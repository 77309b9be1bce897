"""``python -m tracemux.bench.postgres_writers``, briefly: 8 processes writing one
PostgreSQL store (and one SQLite store) at full speed, and 4 processes (as gunicorn workers)
writing one new SQLite store; every span is stored or counted dropped with its reason."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.pgserver import bin_dir

SCRIPT_MODULE = "tracemux.bench.postgres_writers"


@pytest.mark.slow
def test_eight_writers_every_span_stored_or_counted(pg_cluster) -> None:
    assert bin_dir() is not None
    done = subprocess.run(
        [sys.executable, "-m", SCRIPT_MODULE, "--processes", "8", "--seconds", "1", "--json",
         "--dsn", pg_cluster.new_database()],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("sqlite", "postgres"):
        figures = report[name]
        assert figures["accounted"], figures
        assert figures["recorded"] > 0 and figures["stored"] > 0
        assert figures["flushed"]


def test_four_sqlite_writers_every_span_stored_or_counted() -> None:
    done = subprocess.run(
        [sys.executable, "-m", SCRIPT_MODULE, "--stores", "sqlite", "--processes", "4",
         "--seconds", "1", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report) == {"processes", "sqlite"} and report["processes"] == 4
    figures = report["sqlite"]
    assert figures["flushed"] and figures["recorded"] > 0
    # every span is in the store or counted dropped, by reason
    assert figures["stored"] == figures["exported"]
    assert figures["stored"] + sum(figures["dropped"].values()) == figures["recorded"]
    assert figures["accounted"]
    # four workers opening one new store at once: none of their writes failed (each
    # process upgrades the schema only if no other one did it first)
    assert figures["failures"] == 0, done.stderr
