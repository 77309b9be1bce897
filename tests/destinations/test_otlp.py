"""OTLP encoding, the shared HTTP client, validation and masking of remote destinations."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.destinations.conftest import CaptureServer, Reply
from tracemux import ConfigError, TracingService
from tracemux.destinations import OTLP, ExportError, Langfuse, LangSmith, Phoenix
from tracemux.destinations.http import (
    IdleThreadExecutor,
    check_url,
    close_shared_client,
    mask_secret,
    parse_retry_after,
    post,
    shared_client,
)
from tracemux.destinations.otlp import encode_request, parse_otlp_headers, proto
from tracemux.model import ErrorInfo, LogEntry, RunInfo, SpanRecord
from tracemux.pipeline.worker import THREAD_NAME

SECRET = "sk-lf-0123456789abcdef-SECRET"


def make_span(run: RunInfo, span_id: int, parent: int | None, name: str, **kw: Any) -> SpanRecord:
    s = SpanRecord()
    s.run = run
    s.span_id = span_id
    s.parent_id = parent
    s.is_root = parent is None
    s.name = name
    s.kind = kw.get("kind", "chain")
    s.start_ns = kw.get("start_ns", 1_700_000_000_000_000_000)
    s.end_ns = kw.get("end_ns", s.start_ns + 5_000_000)
    s.status = kw.get("status", "ok")
    s.inputs = kw.get("inputs")
    s.outputs = kw.get("outputs")
    s.metadata = kw.get("metadata")
    s.logs = kw.get("logs")
    s.usage = kw.get("usage")
    s.model = kw.get("model")
    s.error = kw.get("error")
    s.nbytes = 100
    s.refs = 0
    return s


def test_encoding_is_the_official_protobuf_message() -> None:
    run = RunInfo("2b1c6a52-8d0b-4c39-9df6-3c7c1b5b0f11", "flow", (), user_id="u", tags=("a",))
    root = make_span(run, 0x1111, None, "flow", inputs=b'{"q":"hi"}', outputs=b'"ok"')
    child = make_span(
        run,
        0x2222,
        0x1111,
        "llm",
        kind="llm",
        model="gpt-4o",
        usage={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
        logs=[LogEntry(1_700_000_000_000_000_100, "warning", "slow", b'{"ms":5}')],
        status="error",
        error=ErrorInfo("ValueError", "boom", "Traceback ...\nValueError: boom"),
    )
    from tracemux.destinations.openinference import OpenInferenceMapper

    body, n = encode_request([child, root], OpenInferenceMapper("proj"), "1.0")
    assert n == 2
    msg = proto().Request()
    msg.ParseFromString(body)
    (rs,) = msg.resource_spans
    res = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
    assert res["openinference.project.name"] == "proj"
    spans = {s.name: s for s in rs.scope_spans[0].spans}
    assert rs.scope_spans[0].scope.name == "tracemux"
    assert spans["llm"].trace_id == run.trace_id
    assert run.trace_id == bytes.fromhex("2b1c6a528d0b4c399df63c7c1b5b0f11")
    assert spans["llm"].span_id == (0x2222).to_bytes(8, "big")
    assert spans["llm"].parent_span_id == (0x1111).to_bytes(8, "big")
    assert spans["flow"].parent_span_id == b""
    assert spans["llm"].status.code == 2 and spans["llm"].status.message == "ValueError: boom"
    assert spans["flow"].status.code == 1
    assert spans["llm"].kind == 1  # INTERNAL
    assert spans["llm"].start_time_unix_nano == 1_700_000_000_000_000_000
    events = {e.name: e for e in spans["llm"].events}
    assert {kv.key for kv in events["exception"].attributes} == {
        "exception.type",
        "exception.message",
        "exception.stacktrace",
    }
    assert events["slow"].time_unix_nano == 1_700_000_000_000_000_100
    attrs = {kv.key: kv.value for kv in spans["llm"].attributes}
    assert attrs["llm.token_count.total"].int_value == 7
    assert attrs["user.id"].string_value == "u"
    assert [v.string_value for v in attrs["tag.tags"].array_value.values] == ["a"]
    assert len(attrs) == len(spans["llm"].attributes)  # no duplicate keys


def test_records_that_are_not_spans_are_skipped() -> None:
    from tracemux.destinations.openinference import OpenInferenceMapper
    from tracemux.model import RunStart

    run = RunInfo("r", "flow", ())
    assert encode_request([RunStart(run)], OpenInferenceMapper(None)) == (b"", 0)


def test_span_metadata_key_overrides_run_attribute_without_duplicates() -> None:
    from tracemux.destinations.langsmith import LangSmithMapper

    run = RunInfo("r", "flow", (), metadata=b'{"k":"run"}', user_id="u")
    child = make_span(run, 2, 1, "c", metadata=b'{"k":"span","user_id":"other"}')
    body, _ = encode_request([child], LangSmithMapper("p"))
    msg = proto().Request()
    msg.ParseFromString(body)
    keys = [kv.key for kv in msg.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert len(keys) == len(set(keys))
    attrs = {
        kv.key: kv.value.string_value
        for kv in msg.resource_spans[0].scope_spans[0].spans[0].attributes
    }
    assert attrs["langsmith.metadata.k"] == "span"
    assert attrs["langsmith.metadata.user_id"] == "other"


def test_export_through_the_service(capture: CaptureServer, make_service: Callable) -> None:
    dest = OTLP(endpoint=capture.url, headers={"api-key": "abc-secret-value-123"})
    svc = make_service([dest])
    with svc.trace_run("flow", inputs={"q": 1}) as run, run.span("step", kind="tool") as s:
        s.set_outputs("done")
    assert svc.flush(10)
    (req,) = capture.trace_requests()
    assert req.path == "/v1/traces"
    assert req.headers["content-type"] == "application/x-protobuf"
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers["api-key"] == "abc-secret-value-123"
    assert req.headers["user-agent"].startswith("tracemux/")
    assert req.raw_size < len(req.body)  # gzip-compressed on the wire
    spans = {s.name: s for s in capture.spans()}
    assert spans["step"].parent_span_id == spans["flow"].span_id
    assert spans["step"].attributes["output.value"] == "done"
    assert svc.stats()["destinations"][dest.describe()]["exported"] == 2


def test_full_url_and_base_url(capture: CaptureServer, make_service: Callable) -> None:
    svc = make_service(
        [
            OTLP(endpoint=capture.url + "/custom/traces", full_url=True),
            OTLP(endpoint=capture.url + "/v1/traces"),
            OTLP(endpoint=capture.url + "/prefix"),
        ]
    )
    with svc.trace_run("flow"):
        pass
    assert svc.flush(10)
    assert sorted(r.path for r in capture.snapshot()) == [
        "/custom/traces",
        "/prefix/v1/traces",
        "/v1/traces",
    ]


# -- the shared client -----------------------------------------------------------------


def test_one_shared_client_for_every_destination(
    make_capture: Callable[[], CaptureServer], make_service: Callable
) -> None:
    servers = [make_capture() for _ in range(3)]
    import httpx

    created: list[Any] = []
    original = httpx.AsyncClient.__init__

    def counting(self: Any, *a: Any, **kw: Any) -> None:
        created.append(self)
        original(self, *a, **kw)

    httpx.AsyncClient.__init__ = counting  # type: ignore[method-assign]
    try:
        dests = [
            Langfuse(public_key="pk-lf-a", secret_key="sk-lf-a", host=servers[0].url),
            LangSmith(api_key="lsv2_a", endpoint=servers[1].url),
            Phoenix(endpoint=servers[2].url),
            OTLP(endpoint=servers[2].url),
        ]
        svc = make_service(dests)
        for _ in range(5):
            with svc.trace_run("flow"):
                pass
        assert svc.flush(10)
        svc.shutdown(10)
    finally:
        httpx.AsyncClient.__init__ = original  # type: ignore[method-assign]
    assert len(created) == 1
    assert created[0].is_closed  # closed when the export thread's session ended
    assert all(s.trace_requests() for s in servers)


async def test_shared_client_outside_the_export_thread(capture: CaptureServer) -> None:
    client = shared_client()
    assert shared_client() is client
    response = await post("test", capture.url + "/v1/traces", b"", {})
    assert response.status_code == 200
    await close_shared_client()
    assert client.is_closed


def test_resolver_thread_is_short_lived() -> None:
    ex = IdleThreadExecutor(idle=0.1)
    assert ex.submit(lambda: 41 + 1).result(5) == 42
    names = [t.name for t in threading.enumerate()]
    assert "tracemux-resolve" in names
    deadline = time.monotonic() + 5
    while any(t.name == "tracemux-resolve" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ex.submit(lambda: 7).result(5) == 7  # starts again on demand
    ex.shutdown()
    with pytest.raises(RuntimeError):
        ex.submit(lambda: 1)


def test_host_names_resolve_without_a_lasting_thread(
    capture: CaptureServer, make_service: Callable
) -> None:
    svc = make_service([OTLP(endpoint=f"http://localhost:{capture.port}")])
    with svc.trace_run("flow"):
        pass
    assert svc.flush(10)
    assert capture.spans()
    deadline = time.monotonic() + 10
    while any(t.name == "tracemux-resolve" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "resolver thread did not exit when idle"
        time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if t.name.startswith("tracemux")] == [THREAD_NAME]


# -- HTTP status handling ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "too_large", "reason", "retry_after"),
    [
        (400, {}, False, False, "http_400", None),
        (401, {}, False, False, "http_401", None),
        (403, {}, False, False, "http_403", None),
        (404, {}, False, False, "http_404", None),
        (413, {}, False, True, "http_413", None),
        (429, {"Retry-After": "7"}, True, False, "http_429", 7.0),
        (500, {}, True, False, "http_500", None),
        (502, {}, True, False, "http_502", None),
        (503, {"Retry-After": "2"}, True, False, "http_503", 2.0),
    ],
)
async def test_status_mapping(
    capture: CaptureServer,
    status: int,
    headers: dict[str, str],
    retryable: bool,
    too_large: bool,
    reason: str,
    retry_after: float | None,
) -> None:
    capture.respond = lambda req: Reply(status, headers, f"nope {SECRET}".encode())
    try:
        with pytest.raises(ExportError) as info:
            await post("dest", capture.url + "/v1/traces", b"x", {}, secrets=[SECRET])
    finally:
        await close_shared_client()
    err = info.value
    assert (err.retryable, err.too_large, err.reason, err.status) == (
        retryable,
        too_large,
        reason,
        status,
    )
    assert err.retry_after == retry_after
    assert SECRET not in str(err)
    assert f"HTTP {status}" in str(err)


async def test_connection_refused_and_timeout_are_retryable(capture: CaptureServer) -> None:
    capture.respond = lambda req: Reply(200, {}, b"", delay=5)
    try:
        with pytest.raises(ExportError) as info:
            await post("dest", capture.url + "/v1/traces", b"x", {}, timeout=0.3)
        assert info.value.retryable and info.value.reason == "timeout"
        capture.refuse()
        with pytest.raises(ExportError) as info:
            await post("dest", capture.url + "/v1/traces", b"x", {})
        assert info.value.retryable and info.value.reason == "connection_error"
    finally:
        await close_shared_client()


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("99999") == 300.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    when = time.time() + 30
    text = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))
    assert 25 <= parse_retry_after(text) <= 31  # type: ignore[operator]


def test_partial_success_is_logged(
    capture: CaptureServer, make_service: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    reply = proto().Response()
    reply.partial_success.rejected_spans = 1
    reply.partial_success.error_message = "span too old"
    capture.respond = lambda req: Reply(
        200, {"Content-Type": "application/x-protobuf"}, reply.SerializeToString()
    )
    svc = make_service([OTLP(endpoint=capture.url)])
    with caplog.at_level(logging.WARNING, logger="tracemux"):
        with svc.trace_run("flow"):
            pass
        assert svc.flush(10)
    assert any("span too old" in r.getMessage() for r in caplog.records)


# -- validation and masking ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: Langfuse(secret_key="sk-lf-x"), "public_key"),
        (lambda: Langfuse(public_key="pk-lf-x"), "secret_key"),
        (lambda: Langfuse(public_key="pk", secret_key="sk", host="cloud.langfuse.com"), "host"),
        (lambda: Langfuse(public_key="pk", secret_key="sk", host="http://h:99999"), "host"),
        (lambda: Langfuse(public_key="pk", secret_key="sk\n"), "secret_key"),
        (lambda: Langfuse(public_key="pk", secret_key="sk", environment="Prod!"), "environment"),
        (lambda: Langfuse(public_key="pk", secret_key="sk", timeout=0), "timeout"),
        (lambda: LangSmith(), "api_key"),
        (lambda: LangSmith(api_key="k", endpoint="ftp://x"), "endpoint"),
        (lambda: LangSmith(api_key="k", project=""), "project"),
        (lambda: Phoenix(endpoint="localhost:6006"), "endpoint"),
        (lambda: Phoenix(api_key=""), "api_key"),
        (lambda: OTLP(endpoint="http://"), "endpoint"),
        (lambda: OTLP(endpoint="http://x?y=1"), "endpoint"),
        (lambda: OTLP(headers={"bad name": "v"}), "header"),
        (lambda: OTLP(headers={"a": "multi\nline"}), "header"),
    ],
)
def test_bad_configuration_fails_at_construction(factory: Callable[[], Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        factory()
    assert isinstance(info.value, ValueError)
    assert field in str(info.value)
    assert "sk\n" not in str(info.value)


def test_secrets_are_masked_everywhere() -> None:
    lf = Langfuse(
        public_key="pk-lf-11111111-2222-3333-4444-55555555abcd",
        secret_key="sk-lf-99999999-8888-7777-6666-55555555wxyz",
    )
    ls = LangSmith(api_key="lsv2_pt_0123456789abcdef0123456789abcdef_0123456789")
    ph = Phoenix(api_key="phx-very-secret-api-key-000")
    ot = OTLP(headers={"Authorization": "Bearer otlp-secret-token-1234"})
    assert "pk-lf-...abcd" in lf.describe()
    for dest, secret in [
        (lf, lf.secret_key),
        (lf, "11111111-2222"),
        (ls, ls.api_key),
        (ph, "phx-very-secret-api-key-000"),
        (ot, "otlp-secret-token-1234"),
    ]:
        for text in (repr(dest), str(dest), dest.describe(), repr([dest])):
            assert secret not in text
    assert "lsv2_pt_...6789" in repr(ls)


def test_destinations_are_values() -> None:
    a = Langfuse(public_key="pk", secret_key="sk", host="https://h.example/")
    b = Langfuse(public_key="pk", secret_key="sk", host="https://h.example")
    c = Langfuse(public_key="pk", secret_key="other", host="https://h.example")
    assert a == b and hash(a) == hash(b)
    assert a != c  # credentials are part of the identity
    assert OTLP(headers={"a": "1", "b": "2"}) == OTLP(headers=[("b", "2"), ("a", "1")])
    with pytest.raises(AttributeError):
        a.secret_key = "x"  # type: ignore[misc]


def test_mask_secret() -> None:
    assert mask_secret("pk-lf-1234abcd") == "pk-lf-...abcd"
    assert mask_secret("short") == "***"
    assert mask_secret(None) == "<none>"
    assert mask_secret("abcdefghijklmnop") == "...mnop"


def test_check_url_and_headers_parsing() -> None:
    assert check_url("f", "https://x.example/base/", owner="T") == "https://x.example/base"
    assert parse_otlp_headers("a=1, b = two%20words,") == {"a": "1", "b": "two words"}
    with pytest.raises(ValueError):
        parse_otlp_headers("novalue")


def test_gzip_is_deterministic() -> None:
    run = RunInfo("r", "flow", ())
    exporter = OTLP(endpoint="http://127.0.0.1:9").open()
    body, n = exporter.encode([make_span(run, 1, None, "flow")])
    assert n == 1
    assert gzip.decompress(body)
    assert exporter.encode([make_span(run, 1, None, "flow")])[0] == body


def test_no_thread_per_destination(
    capture: CaptureServer, make_service: Callable[..., TracingService]
) -> None:
    svc = make_service([])
    for i in range(20):
        with svc.trace_run(
            "flow", destinations=[OTLP(endpoint=capture.url, headers={"tenant": f"t{i}"})]
        ):
            pass
    assert svc.flush(10)
    mine = [t for t in threading.enumerate() if not t.name.startswith("capture")]
    assert sum(1 for t in mine if t.name == THREAD_NAME) == 1
    assert len({r.headers["tenant"] for r in capture.trace_requests()}) == 20


async def test_export_does_not_block_the_callers_loop(
    capture: CaptureServer, make_service: Callable
) -> None:
    capture.respond = lambda req: Reply(200, {}, b"", delay=1.0)
    svc = make_service([OTLP(endpoint=capture.url)])
    async with svc.trace_run("flow"):
        pass
    t0 = time.monotonic()
    await asyncio.sleep(0.05)
    assert time.monotonic() - t0 < 0.5
    assert await svc.aflush(10)


def test_cached_values_keep_their_type() -> None:
    from tracemux.destinations.langsmith import LangSmithMapper

    run = RunInfo("r", "flow", ())
    a = make_span(run, 2, 1, "a", metadata=b'{"flag":true}')
    b = make_span(run, 3, 1, "b", metadata=b'{"flag":1}')
    body, _ = encode_request([a, b, a], LangSmithMapper("p"))
    msg = proto().Request()
    msg.ParseFromString(body)
    kinds = []
    for span in msg.resource_spans[0].scope_spans[0].spans:
        (value,) = [kv.value for kv in span.attributes if kv.key == "langsmith.metadata.flag"]
        kinds.append(value.WhichOneof("value"))
    assert kinds == ["bool_value", "int_value", "bool_value"]
