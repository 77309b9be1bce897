"""A loopback HTTP server for fault injection: it can refuse, reset, hang, trickle, answer
garbage or any status, per request, and flap between modes on a timer.

Written on raw sockets (not ``http.server``) so that every failure is exactly the one asked
for: a reset is a TCP RST half-way through a response, garbage is bytes that are not HTTP
at all. Every request is recorded with the OTLP span ids it carried (gzip undone, body
decoded with opentelemetry-proto) and whether the client got a complete 2xx answer
(``accepted``): what a client must not send twice is exactly what was accepted.

Threads are named ``fault-server*`` so thread-count checks can leave them out.
"""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

THREAD_PREFIX = "fault-server"


@dataclass
class Request:
    """One request the server read in full."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    raw: bytes  # the body as sent (gzip-compressed when the client compressed it)
    body: bytes  # the body with Content-Encoding undone
    span_ids: list[str]  # hex span ids, when the body is an OTLP trace export
    otlp: Any = None  # the decoded ExportTraceServiceRequest
    decode_error: str | None = None  # why the body did not decode, if it did not
    action: str = ""
    accepted: bool = False  # a complete 2xx answer was written back
    received: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/x-protobuf"),)
    delay: float = 0.0  # seconds before answering (cut short when the server stops)
    trickle: float = 0.0  # send the answer one byte every ``trickle`` seconds


@dataclass(frozen=True)
class Reset:
    """Write the start of a 200 answer, then reset the connection (TCP RST)."""

    partial: bool = True


@dataclass(frozen=True)
class Garbage:
    """Answer bytes that are not HTTP, then close."""

    data: bytes = b"\x00\xff garbage \x13\x37 not http at all\r\n\r\n"


Action = Reply | Reset | Garbage
Responder = Callable[[Request], Action]

OK = Reply()


def _decode(req: Request) -> None:
    enc = req.headers.get("content-encoding", "").lower()
    try:
        req.body = gzip.decompress(req.raw) if enc == "gzip" else req.raw
    except Exception as exc:
        req.decode_error = f"gzip: {exc}"
        return
    if "protobuf" not in req.headers.get("content-type", ""):
        return
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    msg = ExportTraceServiceRequest()
    try:
        msg.ParseFromString(req.body)
    except Exception as exc:
        req.decode_error = f"protobuf: {exc}"
        return
    req.otlp = msg
    req.span_ids = [
        s.span_id.hex() for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]


class FaultServer:
    """``respond`` decides each answer; ``refuse()``/``resume()`` close and reopen the port."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.respond: Responder = respond or (lambda req: OK)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self.port = 0
        self.connections = 0

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultServer:
        deadline = time.monotonic() + 5
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", self.port))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        sock.listen(128)
        sock.settimeout(0.05)
        self.port = sock.getsockname()[1]
        self._listener = sock
        t = threading.Thread(target=self._accept, args=(sock,), name=THREAD_PREFIX, daemon=True)
        self._accept_thread = t
        t.start()
        return self

    def refuse(self, drop_connections: bool = True) -> None:
        """Stop listening (connections are refused); optionally cut open connections."""
        sock, self._listener = self._listener, None
        if sock is not None:
            sock.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        if drop_connections:
            with self._lock:
                conns = list(self._conns)
            for c in conns:
                _rst(c)

    def resume(self) -> None:
        if self._listener is None:
            self.start()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def stop(self) -> None:
        self._stop.set()
        self.refuse()

    # -- results --------------------------------------------------------------------------

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def accepted_ids(self) -> Counter[str]:
        """Span ids of accepted requests, with how often each was accepted."""
        return Counter(i for r in self.snapshot() if r.accepted for i in r.span_ids)

    def seen_ids(self) -> set[str]:
        """Span ids of every request read in full (what a backend deduplicating by id keeps)."""
        return {i for r in self.snapshot() for i in r.span_ids}

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    # -- serving --------------------------------------------------------------------------

    def _accept(self, sock: socket.socket) -> None:
        while not self._stop.is_set() and self._listener is sock:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with self._lock:
                self._conns.add(conn)
            threading.Thread(
                target=self._serve, args=(conn,), name=f"{THREAD_PREFIX}-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            reader = conn.makefile("rb")
            while not self._stop.is_set():
                req = self._read(reader)
                if req is None:
                    return
                if not self._answer(conn, req):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _read(self, reader: Any) -> Request | None:
        line = reader.readline(65536)
        if not line:
            return None
        try:
            method, target, _ = line.decode("latin-1").split(" ", 2)
        except ValueError:
            return None
        headers: dict[str, str] = {}
        while True:
            h = reader.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        raw = reader.read(length) if length else b""
        req = Request(method, target.partition("?")[0], headers, raw, raw, [])
        _decode(req)
        return req

    def _answer(self, conn: socket.socket, req: Request) -> bool:
        try:
            action = self.respond(req)
        except Exception as exc:  # a bug in a test's responder: answer 500 and say why
            action = Reply(500, repr(exc).encode())
        req.action = type(action).__name__
        with self._lock:
            self.requests.append(req)
        if isinstance(action, Reset):
            if action.partial:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\x0a\x05")
            _rst(conn)
            return False
        if isinstance(action, Garbage):
            conn.sendall(action.data)
            conn.close()
            return False
        if action.delay and self._stop.wait(action.delay):
            return False
        req.action = f"{action.status}"
        head = [f"HTTP/1.1 {action.status} X"]
        head += [f"{k}: {v}" for k, v in action.headers]
        head.append(f"Content-Length: {len(action.body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + action.body
        ok = 200 <= action.status < 300
        try:
            if action.trickle:
                for i in range(len(data)):
                    if i == len(data) - 1:
                        req.accepted = ok  # before the client can have the whole answer
                    conn.sendall(data[i : i + 1])
                    if self._stop.wait(action.trickle):
                        return False
            else:
                req.accepted = ok  # set first: the client may act on the answer at once
                conn.sendall(data)
        except OSError:
            req.accepted = False
            raise
        return True


def _rst(conn: socket.socket) -> None:
    """Close with a TCP reset instead of an orderly FIN."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


class Flapper:
    """Flips the server between up and down every ``period`` seconds, cycling through
    down modes: refused port, 503 with Retry-After 0, reset mid-response, garbage."""

    DOWN_MODES = ("refused", "503", "reset", "garbage")

    def __init__(self, server: FaultServer, period: float = 1.0) -> None:
        self.server = server
        self.period = period
        self.mode = "up"
        self.flips = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}-flap", daemon=True)
        server.respond = self._respond

    def _respond(self, req: Request) -> Action:
        mode = self.mode
        if mode == "503":
            return Reply(503, b"busy", (("Retry-After", "0"),))
        if mode == "reset":
            return Reset()
        if mode == "garbage":
            return Garbage()
        return OK

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.period):
            if self.mode == "up":
                self.mode = self.DOWN_MODES[i % len(self.DOWN_MODES)]
                i += 1
                if self.mode == "refused":
                    self.server.refuse()
            else:
                if self.mode == "refused":
                    self.server.resume()
                self.mode = "up"
            self.flips += 1

    def start(self) -> Flapper:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop flapping and leave the server up."""
        self._stop.set()
        self._thread.join(5)
        self.mode = "up"
        self.server.resume()
