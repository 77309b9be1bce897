"""OTLP over HTTP: protobuf encoding shared by every remote destination, and the generic
:class:`OTLP` destination for any OpenTelemetry collector.

Encoding uses the official ``opentelemetry-proto`` messages (imported lazily, on the export
thread, so ``import tracemux`` stays cheap). A :class:`SpanMapper` decides what each backend
sees: resource and scope, the attributes of a run (computed once per run and batch) and of
each span, and the status code of a successful span. Requests are gzip-compressed and sent
with the one shared HTTP client (:mod:`tracemux.destinations.http`).

Mapping common to every backend: one OTLP span per tracemux span, trace id = the run's
trace id, span id and parent id as recorded, kind INTERNAL, start and end times in Unix
nanoseconds, an error as status ERROR plus an ``exception`` event (type, message,
stacktrace), each log line as an event named after its message (``log.level``,
``log.message``, ``log.fields``).
"""

from __future__ import annotations

import gzip
import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tracemux.destinations.base import Destination
from tracemux.destinations.http import (
    DEFAULT_TIMEOUT,
    check_headers,
    check_timeout,
    check_url,
    post,
    safe_url,
)
from tracemux.destinations.openinference import OpenInferenceMapper
from tracemux.destinations.spanmap import (
    STATUS_ERROR,
    Attrs,
    AttrValue,
    SpanMapper,
    json_text,
)
from tracemux.model import Record, RunInfo, SpanRecord
from tracemux.ratelimit import rate_limited
from tracemux.version import __version__

log = logging.getLogger(__name__)
_warn = rate_limited(log)

TRACES_PATH = "/v1/traces"
CONTENT_TYPE = "application/x-protobuf"

SPAN_KIND_INTERNAL = 1


# -- protobuf encoding -------------------------------------------------------------------------


class _Proto:
    """The opentelemetry-proto message classes, imported on first use."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.resource.v1 import resource_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2

        self.Request = trace_service_pb2.ExportTraceServiceRequest
        self.Response = trace_service_pb2.ExportTraceServiceResponse
        self.AnyValue = common_pb2.AnyValue
        self.ArrayValue = common_pb2.ArrayValue
        self.KeyValue = common_pb2.KeyValue
        self.Scope = common_pb2.InstrumentationScope
        self.Resource = resource_pb2.Resource
        self.ResourceSpans = trace_pb2.ResourceSpans
        self.ScopeSpans = trace_pb2.ScopeSpans
        self.Span = trace_pb2.Span
        self.Event = trace_pb2.Span.Event
        self.Status = trace_pb2.Status


_proto: _Proto | None = None


def proto() -> _Proto:
    """The protobuf message classes (imported lazily, once)."""
    global _proto
    if _proto is None:
        _proto = _Proto()
    return _proto


def _set_value(p: _Proto, target: Any, value: AttrValue) -> None:
    """Fill the ``AnyValue`` ``target`` in place."""
    t = type(value)
    if t is str:
        target.string_value = value
    elif t is bool:
        target.bool_value = value
    elif t is int:
        if -(2**63) <= value < 2**63:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif t is float:
        target.double_value = value
    elif t is list or t is tuple:
        values = target.array_value.values
        for v in value:
            values.add().string_value = str(v)
    else:
        target.string_value = str(value)


class _AttrCache:
    """Serialized attributes (as the bytes of a ``Span`` holding only them), for values
    that repeat: merged into a span with one ``MergeFromString`` instead of built anew."""

    MAX_ENTRIES = 4096
    MAX_VALUE_CHARS = 128

    def __init__(self, p: _Proto) -> None:
        self.p = p
        self.entries: dict[tuple[str, type, Any], bytes] = {}

    def get(self, key: str, value: AttrValue) -> bytes:
        k = (key, type(value), value)  # the type too: True == 1 must not share an entry
        data = self.entries.get(k)
        if data is None:
            if len(self.entries) >= self.MAX_ENTRIES:
                self.entries.clear()
            data = self.entries[k] = self.serialize([(key, value)])
        return data

    def serialize(self, attrs: Attrs) -> bytes:
        msg = self.p.Span()
        add = msg.attributes.add
        for key, value in attrs:
            _set_value(self.p, add(key=key).value, value)
        return bytes(msg.SerializeToString())


_caches: dict[int, _AttrCache] = {}


def _add_events(p: _Proto, msg: Any, span: SpanRecord) -> None:
    if span.logs:
        for entry in span.logs:
            event = msg.events.add(time_unix_nano=entry.time_ns, name=entry.message[:256])
            add = event.attributes.add
            add(key="log.level").value.string_value = entry.level
            add(key="log.message").value.string_value = entry.message
            if entry.fields is not None:
                add(key="log.fields").value.string_value = json_text(entry.fields) or ""
    err = span.error
    if err is not None:
        event = msg.events.add(time_unix_nano=span.end_ns, name="exception")
        add = event.attributes.add
        add(key="exception.type").value.string_value = err.type
        add(key="exception.message").value.string_value = err.message
        if err.traceback:
            add(key="exception.stacktrace").value.string_value = err.traceback


def error_message(span: SpanRecord) -> str:
    """The one-line description of a failed span: ``Type: message``."""
    err = span.error
    if err is None:
        return "error"
    return f"{err.type}: {err.message}" if err.message else err.type


def _cache_for(mapper: SpanMapper, p: _Proto) -> _AttrCache:
    """The attribute cache of ``mapper`` (kept across batches)."""
    cache = _caches.get(id(mapper))
    if cache is None or cache.p is not p:
        if len(_caches) > 64:
            _caches.clear()
        cache = _caches[id(mapper)] = _AttrCache(p)
    return cache


def _run_entry(
    p: _Proto,
    request: Any,
    scopes: dict[str | None, Any],
    mapper: SpanMapper,
    run: RunInfo,
    cache: _AttrCache,
    scope_version: str,
) -> tuple[bytes, frozenset[str], Attrs, Any]:
    """What every span of ``run`` shares in one request: its attributes (serialized once,
    their keys, the pairs) and the scope its spans go under (one resource per project)."""
    pairs = [(k, v) for k, v in mapper.run_attributes(run) if v is not None]
    project = mapper.project(run)
    scope_spans = scopes.get(project)
    if scope_spans is None:
        rs = request.resource_spans.add()
        add_attr = rs.resource.attributes.add
        for key, value in mapper.resource_attributes(project):
            if value is not None:
                _set_value(p, add_attr(key=key).value, value)
        scope_spans = scopes[project] = rs.scope_spans.add()
        scope_spans.scope.name = mapper.scope_name
        scope_spans.scope.version = scope_version
    return cache.serialize(pairs), frozenset(k for k, _ in pairs), pairs, scope_spans.spans


def _own_attributes(p: _Proto, msg: Any, own: Attrs, parts: list[bytes], cache: _AttrCache) -> None:
    """A span's own attributes: short repeating values as cached serialized bytes appended
    to ``parts`` (merged in one go), the rest set on ``msg`` directly."""
    add_attr = msg.attributes.add
    cached, entries, max_chars = cache.get, cache.entries, cache.MAX_VALUE_CHARS
    for key, value in own:
        if value is None:
            continue
        t = type(value)
        if t is str:
            if len(value) > max_chars:
                add_attr(key=key).value.string_value = value
                continue
        elif t is not int and t is not bool:
            _set_value(p, add_attr(key=key).value, value)
            continue
        data = entries.get((key, t, value))
        parts.append(cached(key, value) if data is None else data)


def encode_request(
    batch: Sequence[Record], mapper: SpanMapper, scope_version: str = ""
) -> tuple[bytes, int]:
    """Encode the spans of ``batch`` as an ``ExportTraceServiceRequest``.

    Returns the serialized message and the number of spans in it (records that are not
    spans are skipped). Messages are built in place; attributes shared by a run, and
    short values that repeat, are serialized once and merged into each span.
    """
    p = proto()
    cache = _cache_for(mapper, p)
    request = p.Request()
    scopes: dict[str | None, Any] = {}
    run_attrs: dict[int, tuple[bytes, frozenset[str], Attrs, Any]] = {}
    n = 0
    ok_code = mapper.ok_status
    # the status of a successful span, merged like an attribute (setting it costs more)
    ok_bytes = p.Span(status=p.Status(code=ok_code)).SerializeToString() if ok_code else b""
    overlapping = mapper.overlapping
    for rec in batch:
        if not rec.is_span:
            continue
        span: SpanRecord = rec  # type: ignore[assignment]
        run = span.run
        common = run_attrs.get(id(run))
        if common is None:
            common = run_attrs[id(run)] = _run_entry(
                p, request, scopes, mapper, run, cache, scope_version
            )
        common_bytes, common_keys, common_pairs, spans = common
        msg = spans.add(
            trace_id=run.trace_id,
            span_id=span.span_id.to_bytes(8, "big"),
            name=span.name,
            kind=SPAN_KIND_INTERNAL,
            start_time_unix_nano=span.start_ns,
            end_time_unix_nano=max(span.end_ns, span.start_ns),
        )
        if span.parent_id is not None:
            msg.parent_span_id = span.parent_id.to_bytes(8, "big")
        own = mapper.span_attributes(span)
        parts = [ok_bytes]
        _own_attributes(p, msg, own, parts, cache)
        if not overlapping or common_keys.isdisjoint([k for k, v in own if v is not None]):
            parts.append(common_bytes)
        else:  # the span's own value wins; keys stay unique
            own_keys = {k for k, v in own if v is not None}
            parts.append(cache.serialize([kv for kv in common_pairs if kv[0] not in own_keys]))
        if span.status == "error" or span.error is not None:
            parts[0] = b""
            msg.status.code = STATUS_ERROR
            msg.status.message = error_message(span)
        msg.MergeFromString(b"".join(parts))
        if span.logs or span.error is not None:
            _add_events(p, msg, span)
        n += 1
    if not n:
        return b"", 0
    return request.SerializeToString(), n


# -- the exporter ------------------------------------------------------------------------------


class OTLPExporter:
    """Sends batches of one destination as gzip-compressed OTLP/HTTP protobuf requests."""

    def __init__(
        self,
        label: str,
        url: str,
        headers: Mapping[str, str],
        mapper: SpanMapper,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        secrets: Sequence[str] = (),
        compresslevel: int = 1,
    ) -> None:
        self.label = label
        self.url = url
        self.headers = {
            **headers,
            "Content-Type": CONTENT_TYPE,
            "Content-Encoding": "gzip",
        }
        self.mapper = mapper
        self.timeout = timeout
        self.secrets = tuple(s for s in secrets if s)
        self.compresslevel = compresslevel
        self.version = __version__

    def encode(self, batch: Sequence[Record]) -> tuple[bytes, int]:
        """The gzip-compressed request body for ``batch`` and its span count."""
        body, n = encode_request(batch, self.mapper, self.version)
        if not n:
            return b"", 0
        return gzip.compress(body, compresslevel=self.compresslevel, mtime=0), n

    async def export(self, batch: Sequence[Record]) -> None:
        """Deliver ``batch`` or raise :class:`~tracemux.destinations.base.ExportError`."""
        body, n = self.encode(batch)
        if not n:
            return
        response = await post(
            self.label,
            self.url,
            body,
            self.headers,
            timeout=self.timeout,
            secrets=self.secrets,
            what=f"{n} spans",
        )
        if response.content and "protobuf" in response.headers.get("content-type", ""):
            self._check_partial_success(response.content)

    def _check_partial_success(self, content: bytes) -> None:
        try:
            reply = proto().Response()
            reply.ParseFromString(content)
        except Exception:
            return
        partial = reply.partial_success
        if partial.rejected_spans or partial.error_message:
            _warn.warning(
                ("partial", self.label),
                "tracemux: %s rejected %d spans: %s",
                self.label,
                partial.rejected_spans,
                partial.error_message[:300],
            )

    def close(self) -> None:
        """Nothing to release: the HTTP client is shared and closed with the thread."""
        return None


# -- remote destinations -------------------------------------------------------------------


class RemoteDestination(Destination):
    """A destination reached over OTLP/HTTP. Subclasses are frozen dataclasses."""

    max_batch: ClassVar[int] = 512

    @abstractmethod
    def traces_url(self) -> str:
        """The full URL spans are POSTed to."""

    @abstractmethod
    def request_headers(self) -> dict[str, str]:
        """Headers of every request (authentication included)."""

    @abstractmethod
    def mapper(self) -> SpanMapper:
        """The attribute mapping of this backend."""

    def secrets(self) -> tuple[str, ...]:
        """Secret values, masked out of any error text."""
        return ()

    def open(self) -> OTLPExporter:
        return OTLPExporter(
            self.describe(),
            self.traces_url(),
            self.request_headers(),
            self.mapper(),
            timeout=getattr(self, "timeout", DEFAULT_TIMEOUT),
            secrets=self.secrets(),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def traces_url(endpoint: str, *, full: bool = False) -> str:
    """``endpoint`` + ``/v1/traces``, unless it is already a traces URL (or ``full``)."""
    if full or endpoint.endswith(TRACES_PATH):
        return endpoint
    return endpoint + TRACES_PATH


@dataclass(frozen=True, repr=False)
class OTLP(RemoteDestination):
    """Any OTLP/HTTP collector, with OpenInference attributes (as Phoenix reads them).

    ``endpoint``: the collector's base URL (``/v1/traces`` is appended unless the URL
    already ends with it); with ``full_url=True`` it is used exactly as given (as
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is). ``headers``: sent with every request
    (their values are treated as secrets). ``project``: the
    ``openinference.project.name`` resource attribute, if set (a run's own ``project``
    takes precedence). ``service_name``: the ``service.name`` resource attribute.
    """

    endpoint: str = "http://127.0.0.1:4318"
    headers: Mapping[str, str] | tuple[tuple[str, str], ...] = field(default=(), repr=False)
    project: str | None = None
    service_name: str = "tracemux"
    full_url: bool = False
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "OTLP"
        object.__setattr__(self, "endpoint", check_url("endpoint", self.endpoint, owner=owner))
        object.__setattr__(self, "headers", check_headers(self.headers, owner=owner))
        object.__setattr__(self, "timeout", check_timeout(self.timeout, owner=owner))

    def traces_url(self) -> str:
        return traces_url(self.endpoint, full=self.full_url)

    def request_headers(self) -> dict[str, str]:
        return dict(self.headers)  # type: ignore[arg-type]

    def secrets(self) -> tuple[str, ...]:
        return tuple(v for _, v in self.headers)  # type: ignore[misc]

    def mapper(self) -> SpanMapper:
        return OpenInferenceMapper(self.project, self.service_name)

    def describe(self) -> str:
        names = ", ".join(k for k, _ in self.headers)  # type: ignore[misc]
        headers = f"headers {names}, " if names else ""
        return f"otlp:{safe_url(self.traces_url())} ({headers}{self.identity_tag()})"


def parse_otlp_headers(raw: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` syntax: ``k1=v1,k2=v2`` with percent-encoded values."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for number, part in enumerate(raw.split(","), 1):
        if not part.strip():
            continue
        if "=" not in part:  # never echo the text: it may be "x-api-key: <the secret>"
            raise ValueError(f"header {number} has no '=' (write name=value, not name: value)")
        name, _, value = part.partition("=")
        name = unquote(name.strip())
        if not name:
            raise ValueError("a header has an empty name")
        out[name] = unquote(value.strip())
    return out
