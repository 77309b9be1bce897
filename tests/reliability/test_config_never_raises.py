"""A configuration error never fails a flow (issue 13, item 9).

``TracingService.from_env()`` raises ``ConfigError`` (it is the configuration step). The
process-wide default service, which ``@tracemux.traced`` and the integrations create on
their first call, inside a flow, does not: it logs one ERROR naming every problem and
runs with tracing off. Each case runs in a fresh interpreter, as a user's program would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.reliability.conftest import child_env

pytestmark = pytest.mark.reliability

PROGRAM = """
import asyncio, json, logging, sys
import tracemux

@tracemux.traced
def lookup(city):
    return f"sunny in {city}"

@tracemux.traced(kind="tool")
async def fetch(n):
    return n * 2

@tracemux.traced
def numbers(k):
    yield from range(k)

results = []
for _ in range(3):
    results.append(lookup("Paris"))
    results.append(asyncio.run(fetch(21)))
    results.append(list(numbers(3)))
    with tracemux.get_service().trace_run("direct") as run:
        run.span("child").end()
svc = tracemux.get_service()
print(json.dumps({"results": results, "disabled": svc.disabled,
                  "error": str(svc.config_error), "threads": svc.stats()["threads"]}))
"""


@pytest.mark.parametrize(
    ("env", "variables"),
    [
        ({"TRACEMUX_BATCH_SIZE": "512 spans"}, ["TRACEMUX_BATCH_SIZE"]),
        ({"TRACEMUX_EXIT_TIMEOUT": "1e10", "TRACEMUX_DISABLED": "maybe"},
         ["TRACEMUX_EXIT_TIMEOUT", "TRACEMUX_DISABLED"]),
        ({"LANGFUSE_PUBLIC_KEY": "pk-lf-0123456789abcdef"}, ["LANGFUSE_SECRET_KEY"]),
    ],
    ids=["typo", "two-problems", "half-a-backend"],
)  # fmt: skip
def test_traced_functions_run_and_the_error_is_logged_once(
    tmp_path: Path, env: dict[str, str], variables: list[str]
) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(PROGRAM))
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=child_env(TRACEMUX_DB=str(tmp_path / "t.db"), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["results"] == [ "sunny in Paris", 42, [0, 1, 2]] * 3  # fmt: skip
    assert out["disabled"] is True
    assert out["threads"] == 0  # tracing off: no export thread was started
    errors = [line for line in proc.stderr.splitlines() if "tracing is OFF" in line]
    assert len(errors) == 1, proc.stderr  # once, not per call
    for variable in variables:
        assert variable in errors[0] and variable in out["error"]
    assert "tracemux doctor" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "pk-lf-0123456789abcdef" not in proc.stderr
    assert not (tmp_path / "t.db").exists()  # off means off: nothing written


def test_a_valid_configuration_still_traces(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(PROGRAM))
    db = tmp_path / "t.db"
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=child_env(TRACEMUX_DB=str(db), TRACEMUX_BATCH_SIZE="64"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["disabled"] is False and out["error"] == "None"
    from tracemux.destinations import SQLiteStore

    assert len(SQLiteStore(db).runs(limit=100)) == 12
