"""``tracemux doctor`` validates exactly what the service validates (issue 14, item 2).

Through the real entry point, in a subprocess, at 80 columns with its output piped: every
configuration problem ``TracingService.from_env()`` would raise is listed (all of them,
not the first), tracing being off is said, an unwritable store is a problem, and the exit
status is non-zero whenever there is one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracemux import ConfigError, TracingService

ROOT = Path(__file__).resolve().parents[2]


def doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEMUX_", "LANGFUSE_",
            "LANGSMITH_", "LANGCHAIN_", "PHOENIX_", "OTEL_"))}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "tracemux", "doctor", "--timeout", "2", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "80", **env},
    )


def joined(text: str) -> str:
    """The output with rich's line wrapping undone (at 80 columns long lines wrap)."""
    return " ".join(text.split())


@pytest.mark.parametrize(
    "env",
    [
        {"TRACEMUX_DISABLED": "maybe"},
        {"TRACEMUX_MAX_QUEUE_SPANS": "abc"},
        {"TRACEMUX_EXIT_TIMEOUT": "1e10"},
        {"TRACEMUX_BATCH_SIZE": "512 spans", "TRACEMUX_STORE_MAX_AGE_DAYS": "1000000"},
        {"LANGFUSE_PUBLIC_KEY": "pk-lf-0123456789", "OTEL_EXPORTER_OTLP_HEADERS": "a=b"},
    ],
    ids=["disabled-maybe", "queue-spans-abc", "exit-timeout", "two-tracemux", "two-backends"],
)
def test_doctor_reports_every_problem_the_service_raises(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env = {"TRACEMUX_DB": str(tmp_path / "t.db"), **env}
    with pytest.raises(ConfigError) as err:
        TracingService.from_env(env)
    proc = doctor(**env)
    out = joined(proc.stdout)
    assert proc.returncode == 2, proc.stdout
    assert f"Configuration: {len(err.value.problems)} problem" in out
    for problem in err.value.problems:
        assert joined(problem) in out
    assert "Every destination works" not in out
    assert "tracing OFF" in out


def test_doctor_says_when_tracing_is_off(tmp_path: Path) -> None:
    proc = doctor(TRACEMUX_DISABLED="1", TRACEMUX_DB=str(tmp_path / "t.db"))
    assert proc.returncode == 0
    assert "Tracing is OFF" in proc.stdout
    assert "Every destination works" not in proc.stdout


@pytest.mark.parametrize("how", ["env", "--db"])
def test_a_store_whose_parent_is_a_file_is_a_problem(tmp_path: Path, how: str) -> None:
    (tmp_path / "afile").write_text("not a directory")
    db = str(tmp_path / "afile" / "sub" / "traces.db")
    proc = doctor("--db", db) if how == "--db" else doctor(TRACEMUX_DB=db)
    out = joined(proc.stdout)
    assert proc.returncode == 1, proc.stdout
    assert "✗ sqlite:" in out and "afile is a file, not a directory" in out
    assert "Every destination works" not in out


def test_a_file_that_is_not_a_database_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    proc = doctor("--db", str(tmp_path / "notes.txt"))
    assert proc.returncode == 1
    assert "is not a SQLite database" in joined(proc.stdout)


def test_a_writable_store_passes_and_db_overrides_the_environment(tmp_path: Path) -> None:
    proc = doctor("--db", str(tmp_path / "good.db"), TRACEMUX_DB=str(tmp_path / "x" / "y.db"))
    out = joined(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    assert "good.db (writable)" in out and "y.db" not in out
    assert "Every destination works (1)" in out
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_a_misspelt_variable_is_pointed_out(tmp_path: Path) -> None:
    proc = doctor(TRACEMUX_DISABLE="1", TRACEMUX_DB=str(tmp_path / "t.db"))
    out = joined(proc.stdout)
    assert "TRACEMUX_DISABLE is not a tracemux variable: it is ignored (did you mean " \
        "TRACEMUX_DISABLED?)" in out  # fmt: skip
    assert "Tracing is OFF" not in out  # it really is ignored: tracing is on
