"""Opik (Comet): its REST API, with the fields the official SDK (``opik``) writes.

Why REST and not Opik's OTLP endpoint. Opik's own SDK, and Langflow's Opik tracer, write
traces and spans through ``POST /v1/private/traces/batch`` and ``/v1/private/spans/batch``;
that is the API whose fields the Opik UI is built on: a trace's ``thread_id`` (the
conversation view), a span's ``type`` (``llm``/``tool``/``general``), ``model``,
``provider``, ``usage`` and ``error_info``. The OTLP endpoint has to guess those from
attribute names on the server. The REST fields also let the parity test compare us with
exactly what the SDK sends.

==================================  =========================================================
tracemux                            Opik
==================================  =========================================================
run (its root span)                 a trace: ``name``, ``input``, ``output``, ``metadata``
                                    (with ``user_id``), ``tags``, ``thread_id`` = session
                                    id, ``error_info``, ``project_name``
every other span                    a span of that trace; children of the root have no
                                    parent span (as in the SDK), deeper ones their parent's
span kind                           ``type``: llm/embedding -> ``llm``, tool -> ``tool``,
                                    guardrail -> ``guardrail``, others -> ``general``
inputs / outputs                    ``input`` / ``output`` (JSON objects; other values as
                                    ``{"input": v}`` / ``{"output": v}``)
model, usage                        ``model``, ``provider`` (from the model name when known),
                                    ``usage`` = ``prompt_tokens`` / ``completion_tokens`` /
                                    ``total_tokens``
error                               ``error_info`` = ``exception_type``, ``message``,
                                    ``traceback``
==================================  =========================================================

Ids: Opik wants UUID v7. A trace id is the run's trace id with its first 48 bits replaced
by the run's start time in milliseconds (and the version/variant bits set); a span id is
built the same way from the run's start time and the span's 64-bit id, so a child's
``parent_span_id`` is computed from its parent's id alone. Re-sending a batch (a retry)
writes the same ids with the same ``last_updated_at`` (the span's end): Opik keeps one
version of an id. ``source`` is ``sdk``, as the SDK writes it.

Authentication: ``Authorization: <api key>`` (no ``Bearer``) and ``Comet-Workspace``, as the
SDK sends them. Nothing else is contacted: the SDK's usage analytics and error reporting
(``stats.comet.com``, Sentry) have no counterpart here.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from tracemux.destinations.base import Destination
from tracemux.destinations.http import (
    DEFAULT_TIMEOUT,
    check_timeout,
    check_url,
    mask_secret,
    post,
    require_key,
    safe_url,
)
from tracemux.destinations.probe import Probe
from tracemux.destinations.spanmap import dumps, json_value
from tracemux.errors import ConfigError
from tracemux.model import Record, RunInfo, SpanRecord

DEFAULT_URL = "https://www.comet.com/opik/api"
DEFAULT_PROJECT = "Default Project"
DEFAULT_WORKSPACE = "default"
TRACES_PATH = "/v1/private/traces/batch"
SPANS_PATH = "/v1/private/spans/batch"

#: tracemux span kind -> Opik span type
SPAN_TYPES: dict[str, str] = {
    "llm": "llm",
    "embedding": "llm",
    "tool": "tool",
    "guardrail": "guardrail",
}

#: model name prefix -> Opik provider (the LlmProvider values of the SDK)
_PROVIDERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("gpt-", "o1", "o3", "o4", "text-embedding-", "chatgpt"), "openai"),
    (("claude",), "anthropic"),
    (("gemini",), "google_ai"),
    (("command",), "cohere"),
    (("mistral", "mixtral", "codestral"), "mistralai"),
)


def provider_for(model: str | None) -> str | None:
    """The Opik provider of a model name, when it is recognisable."""
    if not model:
        return None
    m = model.lower().rsplit("/", 1)[-1]
    for prefixes, provider in _PROVIDERS:
        if m.startswith(prefixes):
            return provider
    return None


def uuid7(ms: int, rand: int) -> str:
    """A UUID v7 text: ``ms`` as its timestamp, the low 74 bits of ``rand`` after it."""
    rand &= (1 << 74) - 1
    value = (
        ((ms & ((1 << 48) - 1)) << 80)
        | (0x7 << 76)
        | ((rand >> 62) << 64)
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def trace_uuid(run: RunInfo) -> str:
    """The Opik trace id of ``run``."""
    return uuid7(run.start_ns // 1_000_000, int.from_bytes(run.trace_id, "big"))


def span_uuid(run: RunInfo, span_id: int) -> str:
    """The Opik span id of span ``span_id`` of ``run`` (10 bits of the trace id, 64 of it)."""
    salt = int.from_bytes(run.trace_id[-2:], "big") & 0x3FF
    return uuid7(run.start_ns // 1_000_000, (salt << 64) | span_id)


def iso(ns: int) -> str:
    """An instant as Opik's ISO 8601 text (UTC, microseconds)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac // 1000:06d}Z"


def io_object(value: bytes | None, key: str) -> Any:
    """Inputs/outputs as a JSON object (other values wrapped under ``key``), embedded in
    the request as they were captured (valid JSON), without parsing them again."""
    if value is None:
        return None
    fragment = orjson.Fragment(value)
    return fragment if value[:1] == b"{" else {key: fragment}


def error_info(span: SpanRecord) -> dict[str, Any] | None:
    """``error_info`` of a failed span."""
    err = span.error
    if err is None:
        if span.status != "error":
            return None
        return {"exception_type": "Error", "message": "error", "traceback": ""}
    return {"exception_type": err.type, "message": err.message, "traceback": err.traceback or ""}


def usage(span: SpanRecord) -> dict[str, int] | None:
    """``usage`` in the OpenAI keys the Opik UI reads."""
    u = span.usage
    if not u:
        return None
    out = {}
    for key, name in (
        ("input_tokens", "prompt_tokens"),
        ("output_tokens", "completion_tokens"),
        ("total_tokens", "total_tokens"),
    ):
        if key in u:
            out[name] = int(u[key])
    return out or None


def _compact(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if v is not None}


class OpikExporter:
    """Sends spans as Opik traces (roots) and spans (the rest), on the export thread."""

    def __init__(self, dest: Opik) -> None:
        self.label = dest.describe()
        self.dest = dest
        self.headers = {
            **dest.request_headers(),
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        self.secrets = dest.secrets()

    def project(self, run: RunInfo) -> str:
        return run.project or self.dest.project

    def trace_json(self, span: SpanRecord) -> dict[str, Any]:
        run = span.run
        meta = json_value(run.metadata)
        metadata: dict[str, Any] = dict(meta) if isinstance(meta, dict) else {}
        if meta is not None and not isinstance(meta, dict):
            metadata["metadata"] = meta
        if run.user_id is not None:
            metadata["user_id"] = run.user_id
        end = iso(max(span.end_ns, span.start_ns))
        return _compact(
            {
                "id": trace_uuid(run),
                "project_name": self.project(run),
                "name": run.name,
                "start_time": iso(span.start_ns),
                "end_time": end,
                "input": io_object(span.inputs, "input"),
                "output": io_object(span.outputs, "output"),
                "metadata": metadata or None,
                "tags": list(run.tags) or None,
                "thread_id": run.session_id,
                "error_info": error_info(span),
                "last_updated_at": end,
                "source": "sdk",
            }
        )

    def span_json(self, span: SpanRecord) -> dict[str, Any]:
        run = span.run
        parent = span.parent_id
        meta = json_value(span.metadata)
        end = iso(max(span.end_ns, span.start_ns))
        return _compact(
            {
                "id": span_uuid(run, span.span_id),
                "project_name": self.project(run),
                "trace_id": trace_uuid(run),
                "parent_span_id": None
                if parent is None or parent == run.root_span_id
                else span_uuid(run, parent),
                "name": span.name,
                "type": SPAN_TYPES.get(span.kind, "general"),
                "start_time": iso(span.start_ns),
                "end_time": end,
                "input": io_object(span.inputs, "input"),
                "output": io_object(span.outputs, "output"),
                "metadata": meta if isinstance(meta, dict) or meta is None else {"metadata": meta},
                "model": span.model,
                "provider": provider_for(span.model),
                "usage": usage(span),
                "error_info": error_info(span),
                "last_updated_at": end,
                "source": "sdk",
            }
        )

    async def _post(self, path: str, payload: dict[str, Any], what: str) -> None:
        body = gzip.compress(dumps(payload).encode("utf-8"), compresslevel=1, mtime=0)
        await post(
            self.label,
            self.dest.url + path,
            body,
            self.headers,
            timeout=self.dest.timeout,
            secrets=self.secrets,
            what=what,
        )

    async def export(self, batch: Sequence[Record]) -> None:
        """Deliver ``batch`` (spans first, then the traces of runs that ended)."""
        spans: list[dict[str, Any]] = []
        traces: list[dict[str, Any]] = []
        for rec in batch:
            if not rec.is_span:
                continue
            span: SpanRecord = rec  # type: ignore[assignment]
            if span.is_root:
                traces.append(self.trace_json(span))
            else:
                spans.append(self.span_json(span))
        if spans:
            await self._post(SPANS_PATH, {"spans": spans}, f"{len(spans)} spans")
        if traces:
            await self._post(TRACES_PATH, {"traces": traces}, f"{len(traces)} traces")

    def close(self) -> None:
        """Nothing to release: the HTTP client is shared."""
        return None


@dataclass(frozen=True, repr=False)
class Opik(Destination):
    """Send runs to Opik (Comet cloud or self-hosted) through its REST API.

    ``url``: the API base URL (``OPIK_URL_OVERRIDE``; Comet cloud by default, a
    self-hosted server's is ``http://host:5173/api``). ``api_key``: ``OPIK_API_KEY``
    (required for Comet cloud). ``workspace``: ``OPIK_WORKSPACE``. ``project``: the Opik
    project (a run's own ``project`` takes precedence). ``timeout``: seconds per request.
    """

    max_batch: ClassVar[int] = 200

    url: str = DEFAULT_URL
    api_key: str | None = field(default=None, repr=False)
    workspace: str = DEFAULT_WORKSPACE
    project: str = DEFAULT_PROJECT
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "Opik"
        object.__setattr__(self, "url", check_url("url", self.url, owner=owner))
        if self.api_key is not None:
            require_key("api_key", self.api_key, owner=owner)
        for name in ("workspace", "project"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or "\n" in value:
                raise ConfigError(f"Opik: {name} must be a non-empty single-line string")
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))
        if self.api_key is None and self.is_cloud:
            raise ConfigError("Opik: api_key is required for Comet's cloud (www.comet.com)")

    @property
    def is_cloud(self) -> bool:
        """Whether the URL is Comet's cloud."""
        return "comet.com" in self.url.split("/")[2]

    def request_headers(self) -> dict[str, str]:
        """Authentication headers, as the SDK sends them."""
        headers = {"Comet-Workspace": self.workspace}
        if self.api_key:
            headers["Authorization"] = self.api_key
        return headers

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,) if self.api_key else ()

    def open(self) -> OpikExporter:
        return OpikExporter(self)

    def probe(self) -> Probe:
        """For ``tracemux doctor``: the SDK's ``auth_check`` (``POST /v1/private/auth``)."""
        return Probe(
            "POST",
            self.url + "/v1/private/auth",
            {**self.request_headers(), "Content-Type": "application/json"},
            b"{}",
            auth_vars="OPIK_API_KEY and OPIK_WORKSPACE",
            url_var="OPIK_URL_OVERRIDE",
            ok=f"credentials accepted (workspace {self.workspace})",
        )

    def describe(self) -> str:
        key = f"{mask_secret(self.api_key)} " if self.api_key else ""
        where = f"opik:{safe_url(self.url)} workspace={self.workspace} project={self.project}"
        return f"{where} ({key}{self.identity_tag()})"

    def __repr__(self) -> str:
        return f"Opik({self.describe()})"
