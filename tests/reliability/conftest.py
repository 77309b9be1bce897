"""Fixtures and helpers of the reliability suite.

Sizes are kept small enough for CI (the whole suite in a few minutes on 2 cores); set
``TRACEMUX_RELIABILITY_FULL=1`` for the full sizes the guarantees are stated with (one
million soak spans, a minute of flapping), or the per-test variables each module names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.faultserver import FaultServer

ROOT = Path(__file__).resolve().parents[2]
SRC = str(ROOT / "src")
FULL = os.environ.get("TRACEMUX_RELIABILITY_FULL", "").lower() in ("1", "true", "yes", "on")


def env_number(name: str, ci: float, full: float) -> float:
    """``$name`` if set, else the full size under TRACEMUX_RELIABILITY_FULL, else ``ci``."""
    raw = os.environ.get(name)
    if raw:
        return float(raw)
    return full if FULL else ci


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child Python: this checkout first on the path, no TRACEMUX_*
    settings inherited from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEMUX_")}
    env["PYTHONPATH"] = os.pathsep.join([SRC, str(ROOT)])
    env.update(extra)
    return env


def write_script(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def popen_python(
    script: Path, *args: str, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env or child_env(),
        text=True,
        **kwargs,
    )


def run_python(
    script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return proc


class StatsDelta:
    """``svc.stats()`` counters relative to the moment the object was made (the pipeline's
    counters are process-wide and accumulate across tests)."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.before = svc.stats()

    def now(self) -> dict[str, Any]:
        s = self.svc.stats()
        b = self.before
        dropped = {
            k: v - b["dropped"].get(k, 0)
            for k, v in s["dropped"].items()
            if v - b["dropped"].get(k, 0)
        }
        return {
            "recorded": s["recorded"] - b["recorded"],
            "exported": s["exported"] - b["exported"],
            "dropped": dropped,
            "dropped_total": s["dropped_total"] - b["dropped_total"],
            "destinations": s["destinations"],
        }


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()


def wait_until(predicate: Any, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
