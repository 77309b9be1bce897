"""``tracemux bench --quick`` end to end: it runs every scenario and writes the report.

The figures are not asserted (they depend on the machine); the shape of the output is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracemux.bench import SCENARIOS

SECTIONS = (
    "## Main results",
    "## Machine",
    "## 1. Hot path",
    "## 2. Threads against runs",
    "## 3. Sustained throughput",
    "## 4. Memory with the destination down",
    "## 5. Event-loop lag",
    "## 6. Cost of a new destination",
)
CHARTS = (
    "hotpath.png",
    "threads.png",
    "throughput.png",
    "memory.png",
    "looplag.png",
    "newdest.png",
)


@pytest.mark.slow
def test_bench_quick_writes_every_section_and_chart(tmp_path: Path) -> None:
    out = tmp_path / "bench-out"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tracemux", "bench", "--quick", "--profile", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        check=False,
    )
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = (out / "report.md").read_text()
    for heading in SECTIONS:
        assert heading in report, heading
    assert "This scenario failed" not in report, report
    assert "Rendering failed" not in report, report
    for chart in CHARTS:
        path = out / chart
        assert path.stat().st_size > 1000, chart
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
        assert f"]({chart})" in report, chart
    assert (out / "hotpath.prof").stat().st_size > 0
    assert "tottime" in (out / "hotpath_profile.txt").read_text()
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == set(SCENARIOS)
    print(f"\ntracemux bench --quick: {wall:.0f} s")
