"""``python -m tracemux.bench.store_write``, briefly: every recorded span reaches the timed
exports, and both row-writing paths are measured on the same rows."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT_MODULE = "tracemux.bench.store_write"


def _run(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", SCRIPT_MODULE, "--spans", "2000", "--repeats", "1", "--json", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_export_figures_cover_every_recorded_span() -> None:
    for shape in ("bench", "llm"):
        report = _run("--shape", shape)
        assert report["shape"] == shape
        assert report["spans"] == 2000  # runs of 10: nothing dropped on the way
        assert report["batches"] >= 1
        assert report["cpu_us_per_span_median"] > 0


def test_both_row_paths_are_measured() -> None:
    report = _run("--rows", "--busy-threads", "1")
    assert report["busy_threads"] == 1
    for path in ("multirow", "executemany"):
        assert report[path]["cpu_us_per_span"] > 0 and report[path]["wall_us_per_span"] > 0
