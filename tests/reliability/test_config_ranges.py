"""Configuration that validates and then breaks (issue 13, item 8).

Every ``TRACEMUX_*`` value is range-checked when the service is configured: a value that
would overflow later (at exit, when pruning, when sizing the queue) is a ``ConfigError``
naming the variable then, with a short message, never an OverflowError or a bare
ValueError later. The largest accepted values work end to end.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.reliability.conftest import child_env
from tracemux import ConfigError, TracingService
from tracemux.config import from_env

pytestmark = pytest.mark.reliability

HOSTILE = {
    "TRACEMUX_EXIT_TIMEOUT": ["1e10", "1e400", "inf", "-inf", "nan", "-1", "9" * 5000],
    "TRACEMUX_STORE_MAX_AGE_DAYS": ["1000000", "1e308", "0", "nan", "9" * 5000],
    "TRACEMUX_MAX_QUEUE_BYTES": ["9" * 5000, "9" * 40 + "G", "1e9", "999999T", "0", "-5"],
    "TRACEMUX_MAX_QUEUE_SPANS": ["9" * 5000, "1" + "0" * 30, "0", "-1", "1.5", "abc"],
    "TRACEMUX_BATCH_SIZE": ["512 spans", "9" * 5000, "0", "10000000"],
    "TRACEMUX_FLUSH_INTERVAL": ["0", "1e10", "nan", "1" * 100],
    "TRACEMUX_MAX_VALUE_BYTES": ["9" * 5000, "100", "2G"],
    "TRACEMUX_STORE_MAX_RUNS": ["9" * 5000, "0", "1e3"],
    "TRACEMUX_MAX_DESTINATIONS": ["0", "9" * 25],
    "TRACEMUX_DESTINATION_IDLE_TTL": ["0", "1e12", "inf"],
    "TRACEMUX_DISABLED": ["maybe", "2"],
    "TRACEMUX_MASK_SECRETS": ["sometimes"],
}


@pytest.mark.parametrize(
    ("name", "raw"),
    [(name, raw) for name, values in HOSTILE.items() for raw in values],
    ids=lambda v: v if len(v) < 30 else f"{v[:8]}...({len(v)} chars)",
)
def test_a_hostile_value_is_a_config_error_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as err:
        TracingService.from_env({name: raw})
    message = str(err.value)
    assert message.startswith(name), message
    assert len(message) < 300, "the message quotes a huge value in full"


def test_every_numeric_variable_has_a_range_and_its_ends_are_accepted() -> None:
    from tracemux.config import RANGES, TRACEMUX_VARIABLES

    assert set(RANGES) <= set(TRACEMUX_VARIABLES)
    for name, (low, high) in RANGES.items():
        for value in (low, high):
            text = str(int(value)) if float(value).is_integer() else repr(value)
            from_env({name: text})  # no ConfigError
        past = high * 2 if high else 1
        with pytest.raises(ConfigError, match=name):
            from_env({name: str(int(past)) if float(past).is_integer() else repr(past)})


def test_every_problem_is_listed_in_one_error() -> None:
    env = {
        "TRACEMUX_EXIT_TIMEOUT": "1e10",
        "TRACEMUX_BATCH_SIZE": "512 spans",
        "TRACEMUX_MAX_QUEUE_BYTES": "9" * 5000,
        "LANGFUSE_PUBLIC_KEY": "pk-lf-only-the-public-key",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "not a url",
    }
    with pytest.raises(ConfigError) as err:
        from_env(env)
    problems = err.value.problems
    assert len(problems) == 5, problems
    for variable in ("TRACEMUX_EXIT_TIMEOUT", "TRACEMUX_BATCH_SIZE", "TRACEMUX_MAX_QUEUE_BYTES",
                     "LANGFUSE_SECRET_KEY", "OTEL_EXPORTER_OTLP_ENDPOINT"):  # fmt: skip
        assert sum(variable in p for p in problems) == 1, (variable, problems)


def test_the_largest_accepted_values_work_at_exit_and_when_pruning(tmp_path: Path) -> None:
    """The values at the top of each range run a whole process: four spans recorded, the
    store pruned (max age and runs at their maximum), delivered at exit."""
    db = tmp_path / "max.db"
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import tracemux
            svc = tracemux.TracingService.from_env()
            with svc.trace_run("biggest") as run:
                for i in range(3):
                    run.span(f"s{i}").end()
            """
        )
    )
    from tracemux.config import RANGES

    env = child_env(TRACEMUX_DB=str(db))
    for name, (_, high) in RANGES.items():
        env[name] = str(int(high)) if float(high).is_integer() else repr(high)
    env["TRACEMUX_FLUSH_INTERVAL"] = "0.05"  # the largest would only make the test slow
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Error" not in proc.stderr, proc.stderr
    from tracemux.destinations import SQLiteStore

    store = SQLiteStore(db)
    (run,) = store.runs()
    assert run.span_count == 4
    assert len(store.spans(run.run_id)) == 4
