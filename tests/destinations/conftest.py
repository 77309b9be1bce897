"""Shared fixtures for destination tests: a loopback capture server that speaks just enough
HTTP to stand in for Langfuse, LangSmith, Phoenix or an OTLP collector.

``capture`` (function scope) yields a :class:`CaptureServer` listening on 127.0.0.1 with a
free port. It records every request (method, path, headers, body after gzip/zstd decoding,
and the decoded OTLP ``ExportTraceServiceRequest`` when the body is one) and answers with
``server.respond`` (a callable taking the :class:`Captured` request and returning a
:class:`Reply`), by default 200 with an empty OTLP response. ``server.refuse()`` closes the
listening socket so connections are refused; ``server.resume()`` listens on the same port
again. Its threads are named ``capture-server*`` so thread-count checks can exclude them.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

THREAD_PREFIX = "capture-server"


@dataclass
class Captured:
    """One request the capture server received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes  # after Content-Encoding was undone
    raw_size: int
    received: float = field(default_factory=time.monotonic)
    otlp: Any = None  # ExportTraceServiceRequest, when the body is one

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """What the capture server answers."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering (bounded by the server's stop)


def any_value(v: Any) -> Any:
    """An OTLP ``AnyValue`` as a Python value."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


def attributes(kvs: Any) -> dict[str, Any]:
    """OTLP key-value attributes as a dict."""
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class FlatSpan:
    """One span from a decoded OTLP request, flattened for assertions."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    scope: str
    request: Captured


class CaptureServer:
    """A tiny threaded HTTP server on 127.0.0.1 that records what it is sent."""

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        self.respond: Callable[[Captured], Reply] = self.default_reply
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CaptureServer:
        server = _Server(("127.0.0.1", self.port), _handler_for(self))
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=THREAD_PREFIX,
            daemon=True,
        )
        self._thread.start()
        return self

    def refuse(self) -> None:
        """Stop listening: new connections are refused until :meth:`resume`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def resume(self) -> None:
        """Listen again on the same port."""
        deadline = time.monotonic() + 5
        while True:
            try:
                self.start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self._stopping.set()
        self.refuse()

    def wait_stopping(self, seconds: float) -> None:
        """Sleep in a handler, waking early when the server stops."""
        self._stopping.wait(seconds)

    # -- recording ------------------------------------------------------------------------

    @staticmethod
    def default_reply(req: Captured) -> Reply:
        if req.path.endswith("/v1/traces"):
            return Reply(200, {"Content-Type": "application/x-protobuf"}, b"")
        return Reply(200, {"Content-Type": "application/json"}, b"{}")

    def record(self, req: Captured) -> None:
        with self._lock:
            self.requests.append(req)

    def snapshot(self) -> list[Captured]:
        with self._lock:
            return list(self.requests)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def trace_requests(self, status: int | None = 200) -> list[Captured]:
        """Requests that carried OTLP traces (and were answered with ``status``)."""
        return [
            r
            for r in self.snapshot()
            if r.otlp is not None and (status is None or getattr(r, "answered", 200) == status)
        ]

    def spans(self, status: int | None = 200) -> list[FlatSpan]:
        """Every span of every OTLP request answered with ``status`` (default: accepted)."""
        out = []
        for req in self.trace_requests(status):
            for rs in req.otlp.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(
                            FlatSpan(
                                name=s.name,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_span_id=s.parent_span_id.hex(),
                                kind=s.kind,
                                start_ns=s.start_time_unix_nano,
                                end_ns=s.end_time_unix_nano,
                                status_code=s.status.code,
                                status_message=s.status.message,
                                attributes=attributes(s.attributes),
                                events=[(e.name, attributes(e.attributes)) for e in s.events],
                                resource=resource,
                                scope=ss.scope.name,
                                request=req,
                            )
                        )
        return out

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{THREAD_PREFIX}-request",
            daemon=True,
        )
        t.start()

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()


def _decode_body(raw: bytes, encoding: str) -> bytes:
    encoding = encoding.lower().strip()
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return raw


def _handler_for(owner: CaptureServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return None

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = _decode_body(raw, headers.get("content-encoding", ""))
            req = Captured(self.command, path, query, headers, body, len(raw))
            if path.endswith("/v1/traces") and "protobuf" in headers.get("content-type", ""):
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceRequest,
                )

                msg = ExportTraceServiceRequest()
                msg.ParseFromString(body)
                req.otlp = msg
            try:
                reply = owner.respond(req)
            except Exception as exc:  # a bug in a test's responder: answer 500, say why
                reply = Reply(500, {}, repr(exc).encode())
            req.answered = reply.status  # type: ignore[attr-defined]
            owner.record(req)
            if reply.delay:
                owner.wait_stopping(reply.delay)
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.body:
                self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    """A loopback capture server (see the module docstring)."""
    server = CaptureServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_capture() -> Iterator[Callable[[], CaptureServer]]:
    """Start any number of capture servers; all are stopped after the test."""
    made: list[CaptureServer] = []

    def make() -> CaptureServer:
        s = CaptureServer().start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture(autouse=True)
def _leave_drop_counters_as_found() -> Iterator[None]:
    """These tests drop spans on purpose (401, 413, full buffers); the pipeline's drop
    counters are process-wide, so put them back afterwards: tests elsewhere that expect
    no drops are not charged with ours."""
    from tracemux.pipeline.worker import shared_worker

    worker = shared_worker()
    before = dict(worker.queue.dropped)
    yield
    queue = worker.queue  # after the test's services were shut down
    with queue._lock:
        queue._dropped.clear()
        queue._dropped.update(before)
