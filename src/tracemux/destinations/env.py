"""Remote destinations configured by the environment (used by ``config.destinations_from_env``).

==================================================  =========================================
variables                                           destination
==================================================  =========================================
``LANGFUSE_PUBLIC_KEY`` + ``LANGFUSE_SECRET_KEY``,   :class:`~tracemux.destinations.Langfuse`
``LANGFUSE_BASE_URL`` or ``LANGFUSE_HOST``
``LANGSMITH_API_KEY`` (or ``LANGCHAIN_API_KEY``),    :class:`~tracemux.destinations.LangSmith`
``LANGSMITH_PROJECT``, ``LANGSMITH_ENDPOINT``
``PHOENIX_COLLECTOR_ENDPOINT``,                      :class:`~tracemux.destinations.Phoenix`
``PHOENIX_PROJECT_NAME``, ``PHOENIX_API_KEY``
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (full URL)    :class:`~tracemux.destinations.OTLP`
or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (base URL),
``OTEL_EXPORTER_OTLP_HEADERS``
``LANGWATCH_API_KEY``, ``LANGWATCH_ENDPOINT``        :class:`~tracemux.destinations.LangWatch`
``OPIK_URL_OVERRIDE`` or ``OPIK_API_KEY``,           :class:`~tracemux.destinations.Opik`
``OPIK_WORKSPACE``, ``OPIK_PROJECT_NAME``
``TRACELOOP_API_KEY``, ``TRACELOOP_BASE_URL``,       :class:`~tracemux.destinations.Traceloop`
``TRACELOOP_HEADERS``
``ARIZE_API_KEY`` + ``ARIZE_SPACE_ID``,              :class:`~tracemux.destinations.Arize`
``ARIZE_COLLECTOR_ENDPOINT``
``OPENLAYER_API_KEY`` + a pipeline                   :class:`~tracemux.destinations.Openlayer`
(``OPENLAYER_PIPELINE_<FLOW>``,
``OPENLAYER_LANGFLOW_MAPPING`` or
``OPENLAYER_INFERENCE_PIPELINE_ID``),
``OPENLAYER_BASE_URL``
==================================================  =========================================

The LangWatch, Opik, Traceloop, Arize and Openlayer rows are enabled exactly when Langflow
1.13's own tracer for that backend would be (``langflow/services/tracing/*.py``), from the
same variables; a variable set to a blank value counts as unset (Langflow would start a
LangWatch tracer with an empty key, which the server then refuses). Where Langflow quietly
disables a half-configured tracer (an Arize key without a space id, an Openlayer key
without a pipeline, a malformed ``TRACELOOP_BASE_URL``), tracemux says so with a
``ConfigError`` instead.

Every configured backend is used (fan-out). A partial configuration (a public key without
its secret key, an API key for an endpoint that is not set, a malformed URL) is a
:class:`~tracemux.config.ConfigError` naming the variable; secret values are never echoed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from tracemux.destinations.arize import Arize
from tracemux.destinations.base import Destination
from tracemux.destinations.langfuse import Langfuse
from tracemux.destinations.langsmith import LangSmith
from tracemux.destinations.langwatch import LangWatch
from tracemux.destinations.openlayer import Openlayer
from tracemux.destinations.opik import Opik
from tracemux.destinations.otlp import OTLP, parse_otlp_headers
from tracemux.destinations.phoenix import PHOENIX_CLOUD, Phoenix
from tracemux.destinations.traceloop import Traceloop
from tracemux.errors import ConfigError

D = TypeVar("D", bound=Destination)

#: every variable read here (``tracemux doctor`` lists those that are set)
VARIABLES: tuple[str, ...] = (
    "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_SECRET_KEY",
    "LANGFUSE_BASE_URL",
    "LANGFUSE_HOST",
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGSMITH_PROJECT",
    "LANGCHAIN_PROJECT",
    "LANGSMITH_ENDPOINT",
    "LANGCHAIN_ENDPOINT",
    "PHOENIX_COLLECTOR_ENDPOINT",
    "PHOENIX_PROJECT_NAME",
    "PHOENIX_API_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "LANGWATCH_API_KEY",
    "LANGWATCH_ENDPOINT",
    "OPIK_URL_OVERRIDE",
    "OPIK_API_KEY",
    "OPIK_WORKSPACE",
    "OPIK_PROJECT_NAME",
    "TRACELOOP_API_KEY",
    "TRACELOOP_BASE_URL",
    "TRACELOOP_HEADERS",
    "ARIZE_API_KEY",
    "ARIZE_SPACE_ID",
    "ARIZE_COLLECTOR_ENDPOINT",
    "OPENLAYER_API_KEY",
    "OPENLAYER_INFERENCE_PIPELINE_ID",
    "OPENLAYER_LANGFLOW_MAPPING",
    "OPENLAYER_BASE_URL",
)

#: the variables whose values are secrets
SECRET_VARIABLES: frozenset[str] = frozenset(
    {
        "LANGFUSE_SECRET_KEY",
        "LANGFUSE_PUBLIC_KEY",
        "LANGSMITH_API_KEY",
        "LANGCHAIN_API_KEY",
        "PHOENIX_API_KEY",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "LANGWATCH_API_KEY",
        "OPIK_API_KEY",
        "TRACELOOP_API_KEY",
        "TRACELOOP_HEADERS",
        "ARIZE_API_KEY",
        "OPENLAYER_API_KEY",
    }
)


def _first(env: Mapping[str, str], *names: str) -> tuple[str | None, str | None]:
    """The first of ``names`` that is set to a non-blank value, and that value."""
    for name in names:
        value = env.get(name)
        if value is not None and value.strip():
            return name, value.strip()
    return None, None


def _build(factory: Callable[..., D], fields: dict[str, tuple[str | None, object]]) -> D:
    """Build a destination; a bad field becomes a ConfigError naming its variable."""
    kwargs = {key: value for key, (_, value) in fields.items() if value is not None}
    try:
        return factory(**kwargs)
    except (ConfigError, ValueError) as exc:
        text = str(exc)
        for key, (var, _) in fields.items():
            if var and (f" {key}" in text or f"{key}=" in text):
                raise ConfigError(f"{var}: {text}") from None
        raise ConfigError(text) from None


def langfuse_from_env(env: Mapping[str, str]) -> Langfuse | None:
    """Langfuse, if ``LANGFUSE_PUBLIC_KEY`` / ``LANGFUSE_SECRET_KEY`` are set."""
    pk = _first(env, "LANGFUSE_PUBLIC_KEY")[1]
    sk = _first(env, "LANGFUSE_SECRET_KEY")[1]
    host_var, host = _first(env, "LANGFUSE_BASE_URL", "LANGFUSE_HOST")
    if pk is None and sk is None:
        if host is not None:
            raise ConfigError(
                f"{host_var} is set but LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are not"
            )
        return None
    if pk is None:
        raise ConfigError("LANGFUSE_SECRET_KEY is set but LANGFUSE_PUBLIC_KEY is not")
    if sk is None:
        raise ConfigError("LANGFUSE_PUBLIC_KEY is set but LANGFUSE_SECRET_KEY is not")
    return _build(
        Langfuse,
        {
            "public_key": ("LANGFUSE_PUBLIC_KEY", pk),
            "secret_key": ("LANGFUSE_SECRET_KEY", sk),
            "host": (host_var, host),
        },
    )


def langsmith_from_env(env: Mapping[str, str]) -> LangSmith | None:
    """LangSmith, if ``LANGSMITH_API_KEY`` (or ``LANGCHAIN_API_KEY``) is set."""
    key_var, key = _first(env, "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")
    project_var, project = _first(env, "LANGSMITH_PROJECT", "LANGCHAIN_PROJECT")
    endpoint_var, endpoint = _first(env, "LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT")
    if key is None:
        if endpoint is not None:
            raise ConfigError(f"{endpoint_var} is set but LANGSMITH_API_KEY is not")
        return None
    return _build(
        LangSmith,
        {
            "api_key": (key_var, key),
            "project": (project_var, project),
            "endpoint": (endpoint_var, endpoint),
        },
    )


def phoenix_from_env(env: Mapping[str, str]) -> Phoenix | None:
    """Phoenix, if ``PHOENIX_COLLECTOR_ENDPOINT`` or ``PHOENIX_API_KEY`` is set.

    A key without an endpoint means Phoenix Cloud, as in Langflow's own Phoenix tracer."""
    endpoint_var, endpoint = _first(env, "PHOENIX_COLLECTOR_ENDPOINT")
    project_var, project = _first(env, "PHOENIX_PROJECT_NAME")
    key_var, key = _first(env, "PHOENIX_API_KEY")
    if endpoint is None and key is None:
        return None
    return _build(
        Phoenix,
        {
            "endpoint": (endpoint_var, endpoint if endpoint is not None else PHOENIX_CLOUD),
            "project": (project_var, project),
            "api_key": (key_var, key),
        },
    )


def otlp_from_env(env: Mapping[str, str]) -> OTLP | None:
    """A generic OTLP collector, if ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` is set."""
    traces_var, traces = _first(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base_var, base = _first(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    headers_var, raw_headers = _first(
        env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"
    )
    if traces is None and base is None:
        if raw_headers is not None:
            raise ConfigError(f"{headers_var} is set but OTEL_EXPORTER_OTLP_ENDPOINT is not")
        return None
    protocol_var, protocol = _first(
        env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if protocol is not None and protocol.lower() != "http/protobuf":
        raise ConfigError(
            f"{protocol_var}={protocol!r}: tracemux sends OTLP as http/protobuf "
            "(point the endpoint at the collector's HTTP port, usually 4318)"
        )
    headers: dict[str, str] = {}
    if raw_headers is not None:
        try:
            headers = parse_otlp_headers(raw_headers)
        except ValueError as exc:
            raise ConfigError(f"{headers_var} is malformed ({exc}); expected k1=v1,k2=v2") from None
    endpoint_var, endpoint = (traces_var, traces) if traces is not None else (base_var, base)
    return _build(
        OTLP,
        {
            "endpoint": (endpoint_var, endpoint),
            "headers": (headers_var, headers),
            "full_url": (None, traces is not None),
        },
    )


def langwatch_from_env(env: Mapping[str, str]) -> LangWatch | None:
    """LangWatch, if ``LANGWATCH_API_KEY`` is set (Langflow: the variable is present)."""
    key_var, key = _first(env, "LANGWATCH_API_KEY")
    endpoint_var, endpoint = _first(env, "LANGWATCH_ENDPOINT")
    if key is None:
        if endpoint is not None:
            raise ConfigError(f"{endpoint_var} is set but LANGWATCH_API_KEY is not")
        return None
    return _build(LangWatch, {"api_key": (key_var, key), "endpoint": (endpoint_var, endpoint)})


def _opik_url_from_key(key: str) -> str | None:
    """The base URL an Opik API key may carry (``<key>*<base64 JSON {"baseUrl": ...}>``)."""
    import base64
    import binascii
    import json

    if "*" not in key:
        return None
    encoded = key.split("*", 1)[1]
    try:
        data = json.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    base = data.get("baseUrl") if isinstance(data, dict) else None
    if not isinstance(base, str) or not base:
        return None
    return base.rstrip("/") + "/opik/api"


def opik_from_env(env: Mapping[str, str]) -> Opik | None:
    """Opik, if ``OPIK_URL_OVERRIDE`` or ``OPIK_API_KEY`` is set (as Langflow decides)."""
    url_var, url = _first(env, "OPIK_URL_OVERRIDE")
    key_var, key = _first(env, "OPIK_API_KEY")
    if url is None and key is None:
        return None
    if url is None and key is not None:
        url_var, url = None, _opik_url_from_key(key)
    return _build(
        Opik,
        {
            "url": (url_var or "OPIK_URL_OVERRIDE", url),
            "api_key": (key_var, key),
            "workspace": _first(env, "OPIK_WORKSPACE"),
            "project": _first(env, "OPIK_PROJECT_NAME"),
        },
    )


def traceloop_from_env(env: Mapping[str, str]) -> Traceloop | None:
    """Traceloop, if ``TRACELOOP_API_KEY`` is set to a non-blank value."""
    key_var, key = _first(env, "TRACELOOP_API_KEY")
    base_var, base = _first(env, "TRACELOOP_BASE_URL")
    headers_var, raw_headers = _first(env, "TRACELOOP_HEADERS")
    if key is None:
        if base is not None or raw_headers is not None:
            raise ConfigError(f"{base_var or headers_var} is set but TRACELOOP_API_KEY is not")
        return None
    headers: dict[str, str] = {}
    if raw_headers is not None:
        try:
            headers = parse_otlp_headers(raw_headers)
        except ValueError as exc:
            raise ConfigError(f"{headers_var} is malformed ({exc}); expected k1=v1,k2=v2") from None
    return _build(
        Traceloop,
        {
            "api_key": (key_var, key),
            "base_url": (base_var, base),
            "headers": (headers_var, headers),
        },
    )


def arize_from_env(env: Mapping[str, str]) -> Arize | None:
    """Arize AX, if ``ARIZE_API_KEY`` and ``ARIZE_SPACE_ID`` are both set."""
    key_var, key = _first(env, "ARIZE_API_KEY")
    space_var, space = _first(env, "ARIZE_SPACE_ID")
    endpoint_var, endpoint = _first(env, "ARIZE_COLLECTOR_ENDPOINT")
    if key is None and space is None:
        if endpoint is not None:
            raise ConfigError(f"{endpoint_var} is set but ARIZE_API_KEY and ARIZE_SPACE_ID are not")
        return None
    if key is None:
        raise ConfigError("ARIZE_SPACE_ID is set but ARIZE_API_KEY is not")
    if space is None:
        raise ConfigError("ARIZE_API_KEY is set but ARIZE_SPACE_ID is not")
    return _build(
        Arize,
        {
            "api_key": (key_var, key),
            "space_id": (space_var, space),
            "endpoint": (endpoint_var, endpoint),
        },
    )


OPENLAYER_FLOW_PREFIX = "OPENLAYER_PIPELINE_"


def openlayer_from_env(env: Mapping[str, str]) -> Openlayer | None:
    """Openlayer, if ``OPENLAYER_API_KEY`` and at least one inference pipeline are set."""
    import json

    key_var, key = _first(env, "OPENLAYER_API_KEY")
    default_var, default = _first(env, "OPENLAYER_INFERENCE_PIPELINE_ID")
    mapping_var, raw_mapping = _first(env, "OPENLAYER_LANGFLOW_MAPPING")
    base_var, base = _first(env, "OPENLAYER_BASE_URL")
    flows = {
        name[len(OPENLAYER_FLOW_PREFIX) :]: value.strip()
        for name, value in env.items()
        if name.startswith(OPENLAYER_FLOW_PREFIX)
        and len(name) > len(OPENLAYER_FLOW_PREFIX)
        and value.strip()
    }
    if key is None:
        if default is not None or raw_mapping is not None or flows:
            raise ConfigError("an Openlayer pipeline is set but OPENLAYER_API_KEY is not")
        return None
    mapping: dict[str, str] = {}
    if raw_mapping is not None:
        try:
            mapping = json.loads(raw_mapping)
        except ValueError:
            raise ConfigError(f"{mapping_var} is not valid JSON") from None
        if not isinstance(mapping, dict):
            raise ConfigError(f"{mapping_var} must be a JSON object of flow name: pipeline id")
    if default is None and not mapping and not flows:
        raise ConfigError(
            "OPENLAYER_API_KEY is set but no pipeline is: set OPENLAYER_INFERENCE_PIPELINE_ID, "
            "OPENLAYER_LANGFLOW_MAPPING or OPENLAYER_PIPELINE_<FLOW>"
        )
    return _build(
        Openlayer,
        {
            "api_key": (key_var, key),
            "pipeline_id": (default_var, default),
            "pipelines": (mapping_var, mapping),
            "flow_pipelines": (f"{OPENLAYER_FLOW_PREFIX}<FLOW>", flows),
            "base_url": (base_var, base),
        },
    )


#: every builder, in the order their destinations are listed
BUILDERS = (
    langfuse_from_env,
    langsmith_from_env,
    phoenix_from_env,
    otlp_from_env,
    langwatch_from_env,
    opik_from_env,
    traceloop_from_env,
    arize_from_env,
    openlayer_from_env,
)


def remote_destinations_from_env(env: Mapping[str, str]) -> list[Destination]:
    """Every remote destination the environment configures, in a fixed order."""
    found: list[Destination] = []
    problems: list[str] = []
    for build in BUILDERS:
        try:
            dest = build(env)
        except ConfigError as exc:  # check every backend: one error lists every problem
            problems.extend(exc.problems)
            continue
        if dest is not None:
            found.append(dest)
    if problems:
        raise ConfigError.of(problems)
    return found
