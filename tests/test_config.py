"""Configuration from the environment: validated once, errors name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracemux import ConfigError, TracingService
from tracemux.config import from_env
from tracemux.destinations import SQLiteStore
from tracemux.service import NOOP_SPAN


def test_defaults_use_the_local_store_under_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    cfg = from_env({"XDG_DATA_HOME": str(tmp_path)})
    assert not cfg.disabled and cfg.mask_secrets
    [store] = cfg.destinations
    assert isinstance(store, SQLiteStore)
    assert store.path.endswith("traces.db")


def test_values_are_read(tmp_path):
    cfg = from_env(
        {
            "TRACEMUX_DB": str(tmp_path / "x.db"),
            "TRACEMUX_MAX_QUEUE_SPANS": "5000",
            "TRACEMUX_MAX_QUEUE_BYTES": "32M",
            "TRACEMUX_BATCH_SIZE": "100",
            "TRACEMUX_FLUSH_INTERVAL": "0.5",
            "TRACEMUX_EXIT_TIMEOUT": "2",
            "TRACEMUX_MAX_VALUE_BYTES": "8k",
            "TRACEMUX_MASK_SECRETS": "off",
            "TRACEMUX_STORE_MAX_RUNS": "10",
            "TRACEMUX_STORE_MAX_AGE_DAYS": "1.5",
        }
    )
    assert cfg.destinations == (SQLiteStore(tmp_path / "x.db", max_runs=10, max_age_days=1.5),)
    p = cfg.pipeline
    assert (p.max_queue_spans, p.max_queue_bytes, p.batch_size) == (5000, 32 * 1024**2, 100)
    assert (p.flush_interval, p.exit_timeout) == (0.5, 2.0)
    assert cfg.max_value_bytes == 8192 and cfg.mask_secrets is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRACEMUX_DISABLED", "maybe"),
        ("TRACEMUX_MAX_QUEUE_SPANS", "many"),
        ("TRACEMUX_MAX_QUEUE_SPANS", "0"),
        ("TRACEMUX_MAX_QUEUE_BYTES", "12 parsecs"),
        ("TRACEMUX_BATCH_SIZE", "-1"),
        ("TRACEMUX_FLUSH_INTERVAL", "soon"),
        ("TRACEMUX_FLUSH_INTERVAL", "nan"),
        ("TRACEMUX_EXIT_TIMEOUT", "-3"),
        ("TRACEMUX_MAX_VALUE_BYTES", "10"),
        ("TRACEMUX_STORE_MAX_RUNS", "0"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        from_env({name: value})
    with pytest.raises(ConfigError, match=name):
        TracingService.from_env({name: value})


def test_disabled_service_from_env():
    svc = TracingService.from_env({"TRACEMUX_DISABLED": "yes"})
    assert svc.disabled and svc.destinations == ()
    before = svc.stats()["recorded"]
    with svc.trace_run("r") as run, run.span("s") as span:
        span.set_outputs("ignored")
    assert run is NOOP_SPAN and span is NOOP_SPAN
    assert svc.stats()["recorded"] == before


def test_an_unknown_tracemux_variable_is_a_warning_not_an_error(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    cfg = from_env({"TRACEMUX_DISABLE": "1", "TRACEMUX_DB": str(tmp_path / "t.db")})
    assert cfg.disabled is False  # ignored, as the warning says
    (record,) = [r for r in caplog.records if "TRACEMUX_DISABLE " in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "did you mean TRACEMUX_DISABLED?" in record.getMessage()


# -- one configuration path ---------------------------------------------------------------


def test_the_constructors_default_store_honours_tracemux_db(monkeypatch, tmp_path, make_service):
    """``TracingService()`` without destinations stores where ``TRACEMUX_DB`` says, as
    ``from_env()`` does (it used to ignore the variable and write to the data directory)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TRACEMUX_DB", str(tmp_path / "chosen.db"))
    svc = make_service()
    with svc.trace_run("flow") as run:
        pass
    assert svc.flush(10)
    assert [s.name for s in SQLiteStore(tmp_path / "chosen.db").spans(run.run_id)] == ["flow"]
    assert not (tmp_path / "data").exists()


def test_the_constructors_default_store_rejects_bad_store_limits(monkeypatch):
    monkeypatch.setenv("TRACEMUX_STORE_MAX_RUNS", "lots")
    with pytest.raises(ConfigError, match="TRACEMUX_STORE_MAX_RUNS"):
        TracingService()


def test_a_second_live_service_cannot_change_the_shared_pipeline(make_service, store):
    from tracemux.pipeline.worker import PipelineSettings

    first = make_service([store], pipeline=PipelineSettings(batch_size=100))
    make_service([store], pipeline=PipelineSettings(batch_size=100))  # the same: accepted
    make_service([store])  # none: uses those in force
    with pytest.raises(ConfigError, match="process-wide"):
        make_service([store], pipeline=PipelineSettings(batch_size=7))
    assert first.stats() is not None
    first.shutdown(10)  # shut down: the next service may set its own
    make_service([store], pipeline=PipelineSettings(batch_size=7)).shutdown(10)
    make_service([store], pipeline=PipelineSettings())  # the defaults back for later tests


def test_langflow_and_the_service_read_tracemux_disabled_alike(monkeypatch):
    from tracemux.config import disabled_from_env

    assert disabled_from_env({"TRACEMUX_DISABLED": " yes "}) is True
    assert disabled_from_env({}) is False
    with pytest.raises(ConfigError, match="TRACEMUX_DISABLED"):
        disabled_from_env({"TRACEMUX_DISABLED": "maybe"})
    assert from_env({"TRACEMUX_DISABLED": "yes"}).disabled
