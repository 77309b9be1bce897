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
==================================================  =========================================

Every configured backend is used (fan-out). A partial configuration (a public key without
its secret key, an API key for an endpoint that is not set, a malformed URL) is a
:class:`~tracemux.config.ConfigError` naming the variable; secret values are never echoed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from tracemux.config import ConfigError
from tracemux.destinations.base import Destination
from tracemux.destinations.langfuse import Langfuse
from tracemux.destinations.langsmith import LangSmith
from tracemux.destinations.otlp import OTLP, parse_otlp_headers
from tracemux.destinations.phoenix import Phoenix

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
    """Phoenix, if ``PHOENIX_COLLECTOR_ENDPOINT`` is set."""
    endpoint_var, endpoint = _first(env, "PHOENIX_COLLECTOR_ENDPOINT")
    project_var, project = _first(env, "PHOENIX_PROJECT_NAME")
    key_var, key = _first(env, "PHOENIX_API_KEY")
    if endpoint is None:
        if key is not None:
            raise ConfigError("PHOENIX_API_KEY is set but PHOENIX_COLLECTOR_ENDPOINT is not")
        return None
    return _build(
        Phoenix,
        {
            "endpoint": (endpoint_var, endpoint),
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


def remote_destinations_from_env(env: Mapping[str, str]) -> list[Destination]:
    """Every remote destination the environment configures, in a fixed order."""
    found: list[Destination] = []
    problems: list[str] = []
    for build in (langfuse_from_env, langsmith_from_env, phoenix_from_env, otlp_from_env):
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
