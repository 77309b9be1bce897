"""Remote destinations from the environment (``config.destinations_from_env``)."""

from __future__ import annotations

import pytest

from tracemux import ConfigError, TracingService
from tracemux.config import destinations_from_env, from_env
from tracemux.destinations import OTLP, Langfuse, LangSmith, Phoenix, SQLiteStore

LF = {"LANGFUSE_PUBLIC_KEY": "pk-lf-env-0000-abcd", "LANGFUSE_SECRET_KEY": "sk-lf-env-9999-wxyz"}


def test_nothing_configured_is_the_local_store() -> None:
    (dest,) = destinations_from_env({})
    assert isinstance(dest, SQLiteStore)


def test_langfuse_from_env() -> None:
    (dest,) = destinations_from_env(LF)
    assert dest == Langfuse(
        public_key="pk-lf-env-0000-abcd",
        secret_key="sk-lf-env-9999-wxyz",
        host="https://cloud.langfuse.com",
    )
    (dest,) = destinations_from_env({**LF, "LANGFUSE_HOST": "http://127.0.0.1:3000/"})
    assert isinstance(dest, Langfuse) and dest.host == "http://127.0.0.1:3000"
    # LANGFUSE_BASE_URL is the SDK's newer name and wins, as in the SDK
    (dest,) = destinations_from_env(
        {**LF, "LANGFUSE_HOST": "http://a.example", "LANGFUSE_BASE_URL": "http://b.example"}
    )
    assert isinstance(dest, Langfuse) and dest.host == "http://b.example"


def test_langsmith_from_env() -> None:
    (dest,) = destinations_from_env({"LANGSMITH_API_KEY": "lsv2_pt_env_key_000000"})
    assert dest == LangSmith(api_key="lsv2_pt_env_key_000000")
    (dest,) = destinations_from_env(
        {
            "LANGCHAIN_API_KEY": "lsv2_pt_legacy_000000",
            "LANGSMITH_PROJECT": "support",
            "LANGSMITH_ENDPOINT": "https://eu.api.smith.langchain.com",
        }
    )
    assert dest == LangSmith(
        api_key="lsv2_pt_legacy_000000",
        project="support",
        endpoint="https://eu.api.smith.langchain.com",
    )


def test_phoenix_from_env() -> None:
    (dest,) = destinations_from_env(
        {
            "PHOENIX_COLLECTOR_ENDPOINT": "http://127.0.0.1:6006",
            "PHOENIX_PROJECT_NAME": "agents",
            "PHOENIX_API_KEY": "phx-key-000000000",
        }
    )
    assert dest == Phoenix(
        endpoint="http://127.0.0.1:6006", project="agents", api_key="phx-key-000000000"
    )
    (dest,) = destinations_from_env({"PHOENIX_COLLECTOR_ENDPOINT": "http://h:6006/v1/traces"})
    assert isinstance(dest, Phoenix) and dest.traces_url() == "http://h:6006/v1/traces"


def test_a_phoenix_key_alone_means_phoenix_cloud_as_in_langflow() -> None:
    (dest,) = destinations_from_env({"PHOENIX_API_KEY": "phx-key-000000000"})
    assert isinstance(dest, Phoenix)
    assert dest.traces_url() == "https://app.phoenix.arize.com/v1/traces"
    # both headers Langflow's Phoenix tracer sends, so either kind of Phoenix Cloud space works
    assert dest.request_headers() == {
        "Authorization": "Bearer phx-key-000000000",
        "api_key": "phx-key-000000000",
    }


def test_otlp_from_env() -> None:
    (dest,) = destinations_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr%3Dt,x-team=ml",
        }
    )
    assert isinstance(dest, OTLP)
    assert dest.traces_url() == "http://collector:4318/v1/traces"
    assert dest.request_headers() == {"api-key": "s3cr=t", "x-team": "ml"}
    (dest,) = destinations_from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/custom",
        }
    )
    assert isinstance(dest, OTLP) and dest.traces_url() == "http://collector:4318/custom"


def test_several_fan_out_and_the_store_stays_with_tracemux_db(tmp_path: object) -> None:
    env = {
        **LF,
        "LANGSMITH_API_KEY": "lsv2_pt_env_key_000000",
        "PHOENIX_COLLECTOR_ENDPOINT": "http://127.0.0.1:6006",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    }
    kinds = [type(d) for d in destinations_from_env(env)]
    assert kinds == [Langfuse, LangSmith, Phoenix, OTLP]
    kinds = [type(d) for d in destinations_from_env({**env, "TRACEMUX_DB": f"{tmp_path}/t.db"})]
    assert kinds == [SQLiteStore, Langfuse, LangSmith, Phoenix, OTLP]
    cfg = from_env({**LF, "TRACEMUX_DISABLED": "1"})
    assert cfg.destinations == ()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LANGFUSE_PUBLIC_KEY": "pk-lf-x"}, "LANGFUSE_SECRET_KEY"),
        ({"LANGFUSE_SECRET_KEY": "sk-lf-x"}, "LANGFUSE_PUBLIC_KEY"),
        ({"LANGFUSE_HOST": "https://cloud.langfuse.com"}, "LANGFUSE_PUBLIC_KEY"),
        ({**LF, "LANGFUSE_HOST": "cloud.langfuse.com"}, "LANGFUSE_HOST"),
        ({**LF, "LANGFUSE_BASE_URL": "http://h:70000"}, "LANGFUSE_BASE_URL"),
        ({"LANGSMITH_ENDPOINT": "https://api.smith.langchain.com"}, "LANGSMITH_API_KEY"),
        ({"LANGSMITH_API_KEY": "k", "LANGSMITH_ENDPOINT": "htps:/x"}, "LANGSMITH_ENDPOINT"),
        ({"PHOENIX_COLLECTOR_ENDPOINT": "localhost:6006"}, "PHOENIX_COLLECTOR_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "a=b"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "not a url"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "junk"},
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
    ],
)
def test_partial_or_malformed_configuration_names_the_variable(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as info:
        destinations_from_env(env)
    assert variable in str(info.value)
    for value in env.values():
        if "sk-" in value or "lsv2" in value:
            assert value not in str(info.value)


def test_service_from_env_uses_remote_destinations(monkeypatch: pytest.MonkeyPatch) -> None:
    svc = TracingService.from_env({**LF, "LANGFUSE_HOST": "http://127.0.0.1:9"})
    assert [type(d) for d in svc.destinations] == [Langfuse]
    with pytest.raises(ConfigError):
        TracingService.from_env({"LANGFUSE_PUBLIC_KEY": "pk-lf-only"})
