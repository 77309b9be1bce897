"""Langfuse: its OTLP endpoint, Basic auth, and the attributes the official SDK (5.x) sets.

The mapping mirrors ``langfuse._client.attributes`` and ``propagation`` of the Python SDK:

==========================================  ==================================================
tracemux                                    Langfuse attribute
==========================================  ==================================================
run name, user id, session id               ``langfuse.trace.name``, ``user.id``,
                                            ``session.id`` (on every span, as
                                            ``propagate_attributes`` does; dropped over 200
                                            characters, as the SDK drops them)
run tags                                    ``langfuse.trace.tags`` (list of strings)
run metadata ``{k: v}``                     ``langfuse.trace.metadata.<k>`` = JSON of ``v``
span kind                                   ``langfuse.observation.type`` (llm -> generation,
                                            embedding, tool, chain, retriever, agent,
                                            guardrail, evaluator; others -> span)
inputs / outputs                            ``langfuse.observation.input`` / ``.output``
                                            (JSON text; a string value as the bare string)
span metadata ``{k: v}``                    ``langfuse.observation.metadata.<k>`` = JSON of
                                            ``v`` (a non-object under
                                            ``langfuse.observation.metadata``)
model                                       ``langfuse.observation.model.name``
usage input/output/total_tokens             ``langfuse.observation.usage_details`` =
                                            ``{"input", "output", "total", ...}``
error                                       ``langfuse.observation.level`` = ``ERROR``,
                                            ``langfuse.observation.status_message``, status
                                            ERROR
root span                                   ``langfuse.internal.is_app_root`` = true
environment (optional)                      ``langfuse.environment``
==========================================  ==================================================

Endpoint: ``{host}/api/public/otel/v1/traces`` with ``Authorization: Basic
base64(public_key:secret_key)`` and the ``x-langfuse-public-key`` and
``x-langfuse-ingestion-version`` headers the SDK sends.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from tracemux.destinations.http import (
    DEFAULT_TIMEOUT,
    check_timeout,
    check_url,
    mask_secret,
    require_key,
    safe_url,
)
from tracemux.destinations.otlp import RemoteDestination, error_message
from tracemux.destinations.spanmap import STATUS_UNSET, Attrs, SpanMapper, dumps, json_value
from tracemux.errors import ConfigError
from tracemux.model import RunInfo, SpanRecord
from tracemux.version import __version__

DEFAULT_HOST = "https://cloud.langfuse.com"
TRACES_PATH = "/api/public/otel/v1/traces"
#: the ``x-langfuse-ingestion-version`` the 5.x SDK sends (its attribute semantics)
INGESTION_VERSION = "4"
#: the SDK drops propagated trace attributes longer than this
MAX_PROPAGATED_CHARS = 200

# attribute names, as in langfuse._client.attributes.LangfuseOtelSpanAttributes
TRACE_NAME = "langfuse.trace.name"
TRACE_USER_ID = "user.id"
TRACE_SESSION_ID = "session.id"
TRACE_TAGS = "langfuse.trace.tags"
TRACE_METADATA = "langfuse.trace.metadata"
OBSERVATION_TYPE = "langfuse.observation.type"
OBSERVATION_METADATA = "langfuse.observation.metadata"
OBSERVATION_LEVEL = "langfuse.observation.level"
OBSERVATION_STATUS_MESSAGE = "langfuse.observation.status_message"
OBSERVATION_INPUT = "langfuse.observation.input"
OBSERVATION_OUTPUT = "langfuse.observation.output"
OBSERVATION_MODEL = "langfuse.observation.model.name"
OBSERVATION_USAGE_DETAILS = "langfuse.observation.usage_details"
ENVIRONMENT = "langfuse.environment"
IS_APP_ROOT = "langfuse.internal.is_app_root"

#: tracemux span kind -> Langfuse observation type
OBSERVATION_TYPES: dict[str, str] = {
    "llm": "generation",
    "embedding": "embedding",
    "chain": "chain",
    "tool": "tool",
    "retriever": "retriever",
    "agent": "agent",
    "guardrail": "guardrail",
    "evaluator": "evaluator",
    "prompt": "span",
    "parser": "span",
    "custom": "span",
}

#: tracemux usage keys -> Langfuse usage_details keys
USAGE_KEYS: dict[str, str] = {
    "input_tokens": "input",
    "output_tokens": "output",
    "total_tokens": "total",
}

_ENVIRONMENT = re.compile(r"^(?!langfuse)[a-z0-9_-]{1,40}$")


def io_value(value: bytes | None) -> str | None:
    """An input or output as the SDK serializes it: JSON text, a string as itself."""
    if value is None:
        return None
    if value[:1] == b'"':
        parsed = json_value(value)
        if isinstance(parsed, str):
            return parsed
    return value.decode("utf-8", "replace")


def _short(value: str | None) -> str | None:
    if value is None or len(value) > MAX_PROPAGATED_CHARS:
        return None
    return value


_flat_cache: dict[tuple[str, bytes, bool], Attrs] = {}


def metadata_attributes(prefix: str, metadata: bytes | None, *, limit: bool) -> Attrs:
    """Metadata flattened as the SDK does: one attribute per key, values as JSON text.

    Small snapshots that repeat (a component's metadata on every span) are flattened once.
    """
    if metadata is None:
        return []
    if len(metadata) > 512:
        return _flatten(prefix, metadata, limit)
    key = (prefix, metadata, limit)
    found = _flat_cache.get(key)
    if found is None:
        if len(_flat_cache) >= 2048:
            _flat_cache.clear()
        found = _flat_cache[key] = _flatten(prefix, metadata, limit)
    return found


def _flatten(prefix: str, metadata: bytes, limit: bool) -> Attrs:
    value = json_value(metadata)
    if value is None:
        return []
    if not isinstance(value, dict):
        return [] if limit else [(prefix, dumps(value))]
    out: Attrs = []
    for k, v in value.items():
        if v is None:
            continue
        text = dumps(v)
        if limit and len(text) > MAX_PROPAGATED_CHARS:
            continue
        out.append((f"{prefix}.{k}", text))
    return out


def usage_details(usage: dict[str, int | float] | None) -> str | None:
    """``usage_details`` JSON: Langfuse's input/output/total, other keys unchanged."""
    if not usage:
        return None
    key = tuple(usage.items())
    text = _usage_cache.get(key)
    if text is None:
        if len(_usage_cache) >= 2048:
            _usage_cache.clear()
        text = _usage_cache[key] = dumps({USAGE_KEYS.get(k, k): v for k, v in usage.items()})
    return text


_usage_cache: dict[tuple[tuple[str, int | float], ...], str] = {}


class LangfuseMapper(SpanMapper):
    """Span -> Langfuse attributes (see the module docstring)."""

    ok_status = STATUS_UNSET  # the SDK leaves a successful span's status unset

    def __init__(self, environment: str | None = None) -> None:
        self.environment = environment

    def resource_attributes(self, project: str | None) -> Attrs:
        attrs: Attrs = [("service.name", "tracemux")]
        if self.environment:
            attrs.append((ENVIRONMENT, self.environment))
        return attrs

    def run_attributes(self, run: RunInfo) -> Attrs:
        attrs: Attrs = [
            (TRACE_NAME, _short(run.name)),
            (TRACE_USER_ID, _short(run.user_id)),
            (TRACE_SESSION_ID, _short(run.session_id)),
        ]
        tags = [t for t in run.tags if len(t) <= MAX_PROPAGATED_CHARS]
        if tags:
            attrs.append((TRACE_TAGS, list(dict.fromkeys(tags))))
        attrs.extend(metadata_attributes(TRACE_METADATA, run.metadata, limit=True))
        if self.environment:
            attrs.append((ENVIRONMENT, self.environment))
        return attrs

    def span_attributes(self, span: SpanRecord) -> Attrs:
        attrs: Attrs = [
            (OBSERVATION_TYPE, OBSERVATION_TYPES.get(span.kind, "span")),
            (OBSERVATION_INPUT, io_value(span.inputs)),
            (OBSERVATION_OUTPUT, io_value(span.outputs)),
        ]
        if span.model:
            attrs.append((OBSERVATION_MODEL, span.model))
        if span.usage:
            attrs.append((OBSERVATION_USAGE_DETAILS, usage_details(span.usage)))
        if span.status == "error" or span.error is not None:
            attrs.append((OBSERVATION_LEVEL, "ERROR"))
            attrs.append((OBSERVATION_STATUS_MESSAGE, error_message(span)))
        if span.metadata is not None:
            attrs += metadata_attributes(OBSERVATION_METADATA, span.metadata, limit=False)
        if span.is_root:
            attrs.append((IS_APP_ROOT, True))
        return attrs


@dataclass(frozen=True, repr=False)
class Langfuse(RemoteDestination):
    """Send runs to Langfuse (cloud or self-hosted) through its OTLP endpoint.

    ``public_key`` / ``secret_key``: the project's API keys (``pk-lf-...`` /
    ``sk-lf-...``). ``host``: the Langfuse base URL. ``environment``: an optional Langfuse
    environment name (lowercase letters, digits, ``-``, ``_``). ``timeout``: seconds per
    request. Invalid values raise :class:`~tracemux.config.ConfigError` naming the field.
    """

    public_key: str = ""
    secret_key: str = field(default="", repr=False)
    host: str = DEFAULT_HOST
    environment: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "Langfuse"
        require_key("public_key", self.public_key, owner=owner)
        require_key("secret_key", self.secret_key, owner=owner)
        object.__setattr__(self, "host", check_url("host", self.host, owner=owner))
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))
        if self.environment is not None and not (
            isinstance(self.environment, str) and _ENVIRONMENT.match(self.environment)
        ):
            raise ConfigError(
                "Langfuse: environment must be lowercase letters, digits, '-' or '_' "
                "(at most 40, not starting with 'langfuse')"
            )

    def traces_url(self) -> str:
        return self.host + TRACES_PATH

    def auth_header(self) -> str:
        """The ``Authorization`` header value (Basic auth with both keys)."""
        token = base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode("ascii")
        return f"Basic {token}"

    def request_headers(self) -> dict[str, str]:
        return {
            "Authorization": self.auth_header(),
            "x-langfuse-public-key": self.public_key,
            "x-langfuse-sdk-name": "tracemux",
            "x-langfuse-sdk-version": __version__,
            "x-langfuse-ingestion-version": INGESTION_VERSION,
        }

    def secrets(self) -> tuple[str, ...]:
        # the public key too: it is shown masked everywhere, an error text must not undo it
        return (self.secret_key, self.public_key, self.auth_header().split(" ", 1)[1])

    def mapper(self) -> LangfuseMapper:
        return LangfuseMapper(self.environment)

    def describe(self) -> str:
        return (
            f"langfuse:{safe_url(self.host)} ({mask_secret(self.public_key)} {self.identity_tag()})"
        )
