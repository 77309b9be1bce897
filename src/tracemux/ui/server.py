"""The viewer's web server: a JSON API over a :class:`~tracemux.destinations.SQLiteStore`
and one static page, read-only, bound to loopback by default.

Why the standard library's :class:`http.server.ThreadingHTTPServer`: the viewer serves one
person on one machine a handful of small JSON documents and three static files, so an
async framework or WSGI stack would add a runtime dependency (and its threads) for nothing.
What a production server would do that this one does by hand: JSON errors, security
headers on every response, a Host check against DNS rebinding, 405 for anything but GET,
and a clean shutdown that ends every thread it started.

Routes (GET, and one POST; anything else is answered 405):

* ``/``, ``/runs/<run_id>``: the page (``static/index.html``); the page routes itself.
* ``/static/app.js``, ``/static/app.css``: its script and style sheet. Nothing else is
  served from disk, and the page loads nothing from the internet.
* ``/api/runs?search=&status=&user=&session=&limit=&sort=&order=&after=&before=``: a
  page of runs (newest first by default), as ``{"runs": [...], "total": N, "limit": L,
  "sort": S, "order": O, "next": cursor, "prev": cursor}``: keyset pages (pass ``next``
  as ``after``, ``prev`` as ``before``), as fast at the millionth run as at the first.
  ``offset=`` instead gives the older offset pages (``"offset"`` in the answer). List
  items leave out the run's inputs, outputs, metadata and traceback (fetch the run for
  those) and add ``models`` and ``cost``.
* ``/api/runs/<run_id>``: one run (a unique prefix of its id is enough), or 404.
* ``/api/runs/<run_id>/spans``: ``{"run_id": ..., "start_ns": ..., "spans": [...]}`` in
  start order; each span also carries ``offset_ms``, its start relative to the run's.
* ``/api/sessions?user=&limit=&offset=``: sessions, most recently active first, each
  with its user, runs, first and last start, tokens, runs with errors and cost.
* ``/api/sessions/<session_id>``: the session's runs in the order they started, with
  their inputs and outputs (its conversation), or 404.
* ``/api/export?format=jsonl|otlp&run=<id>...`` (or the list's filters): a download of
  the selected or filtered runs (see :mod:`tracemux.transfer`), up to 10,000 runs.
* ``POST /api/runs/delete`` with ``{"run_ids": [...]}``: the one write. Refused (403)
  unless the server is bound to loopback and not read-only, the Host is loopback, the
  Origin is the page's own, the ``X-Tracemux-Token`` header carries the per-server token
  of ``/api/info`` (which another origin cannot read), and the body is JSON. The page
  asks for confirmation first.
* ``/api/dashboard?range=24h|7d|30d|90d&project=&flow=``: the dashboard's figures (see
  :mod:`tracemux.ui.dashboard`).
* ``/api/info``: the store's path, whether it exists yet, and the tracemux version.

Threads: tracemux records from one export thread, and this server is the deliberate
exception: ``tracemux-ui-server`` runs the accept loop and each request runs on its own
short-lived ``tracemux-ui-request-N`` thread (connections are closed after each response,
HTTP/1.0 style, so no thread idles on a kept-alive socket). :meth:`UIServer.stop` stops
the loop, closes in-flight connections and joins every one of them.

The store is only read: :class:`~tracemux.destinations.SQLiteStore`'s readers open their
own short-lived connections with ``PRAGMA query_only``, and never create the file.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import itertools
import logging
import re
import secrets
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from tracemux.cost import PriceTable
from tracemux.destinations.sqlite import RUN_STATUS_FILTERS, SQLiteStore, StoredRun
from tracemux.destinations.stores import store_exists
from tracemux.transfer import FORMATS, export_runs
from tracemux.ui import dashboard
from tracemux.version import __version__

log = logging.getLogger(__name__)

THREAD_PREFIX = "tracemux-ui"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 10**9
MAX_TEXT_PARAM = 1000  # characters of a user or session filter
MAX_EXPORT_RUNS = 10_000  # runs one download from the viewer holds
MAX_BODY = 65_536  # bytes of a delete request's body
MAX_SESSION_RUNS = 500  # runs a session page shows (the first ones)

#: Sent with every response, errors included.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)

_STATIC_FILES: dict[str, tuple[str, str]] = {
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
_PAGE_PATH = re.compile(
    r"^/(?:index\.html)?$|^/runs/[^/]+/?$|^/sessions(?:/[^/]+)?/?$|^/dashboard/?$"
)
_API_SESSION_PATH = re.compile(r"^/api/sessions/([^/]+)/?$")
_API_RUN_PATH = re.compile(r"^/api/runs/([^/]+)(/spans)?/?$")
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_LIST_OMIT = ("inputs", "outputs", "metadata")
_ERROR_MESSAGE_CHARS = 500


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _load_static() -> dict[str, bytes]:
    root = resources.files("tracemux.ui") / "static"
    return {name: (root / name).read_bytes() for name in ("index.html", "app.js", "app.css")}


class _BadRequest(ValueError):
    """A query parameter the API cannot use (answered 400)."""


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer whose request threads are named, tracked and joined on stop."""

    daemon_threads = True
    allow_reuse_address = True  # rebind right after a restart (TIME_WAIT)
    allow_reuse_port = False  # but never share a port with a running server
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], viewer: UIServer) -> None:
        self.viewer = viewer
        self._active: dict[threading.Thread, socket.socket] = {}
        self._active_lock = threading.Lock()
        self._counter = itertools.count(1)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._run_request,
            args=(request, client_address),
            name=f"{THREAD_PREFIX}-request-{next(self._counter)}",
            daemon=True,
        )
        with self._active_lock:
            self._active[thread] = request
        try:
            thread.start()
        except RuntimeError:  # can't start a thread: drop this connection, keep serving
            with self._active_lock:
                self._active.pop(thread, None)
            log.warning("tracemux ui: could not start a request thread", exc_info=True)
            self.shutdown_request(request)

    def _run_request(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("tracemux ui: connection from %s failed", client_address, exc_info=True)

    def close_requests(self, timeout: float) -> bool:
        """Close in-flight connections and join their threads; False if one outlived
        ``timeout``."""
        with self._active_lock:
            active = dict(self._active)
        for sock in active.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in active:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in active)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """One request: route, answer, close."""

    server: _HTTPServer
    server_version = "tracemux-ui"
    protocol_version = "HTTP/1.0"
    timeout = 15  # seconds a client may take to send its request

    # -- plumbing -------------------------------------------------------------------------

    def version_string(self) -> str:
        return self.server_version

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("tracemux ui: %s " + format, self.address_string(), *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        short = self.responses.get(code, ("error", ""))[0]
        self.close_connection = True
        self._send_json({"error": message or short, "status": code}, status=code)

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 405:
            self.send_header("Allow", "GET")
        self.end_headers()
        if self.command != "HEAD" and status >= 200 and status not in (204, 304):
            self.wfile.write(body)

    def _send_json(self, payload: Any, status: int = 200) -> None:
        self._send(orjson.dumps(payload), "application/json", status)

    def _host_allowed(self) -> bool:
        """Against DNS rebinding: on a loopback bind, the Host header must name loopback."""
        allowed = self.server.viewer.allowed_hosts
        if allowed is None:
            return True
        host = self.headers.get("Host")
        if not host:
            return True
        host = host.strip().lower()
        if host.startswith("["):
            name = host[1 : host.find("]")] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return name in allowed

    # -- methods --------------------------------------------------------------------------

    def _reject(self) -> None:
        self.close_connection = True
        self._send_json({"error": "method not allowed: the viewer is read-only"}, status=405)

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _reject
    do_TRACE = do_CONNECT = _reject

    def do_POST(self) -> None:
        """The one write: ``POST /api/runs/delete`` (see :meth:`_delete`)."""
        if urlsplit(self.path).path.rstrip("/") != "/api/runs/delete":
            self._reject()
            return
        self.close_connection = True
        try:
            refusal = self._write_refusal()
            if refusal is not None:
                self._send_json({"error": refusal}, status=403)
                return
            self._delete()
        except _BadRequest as exc:
            self._send_json({"error": str(exc)}, status=400)
        except sqlite3.Error as exc:
            log.warning("tracemux ui: deleting runs failed: %s", exc)
            self._send_json({"error": f"store busy or unreadable: {exc}"}, status=503)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _write_refusal(self) -> str | None:
        """Why a write request must be refused (None: it may proceed). Only the viewer's
        own page can delete: a loopback bind, a loopback Host, the page's own Origin, the
        per-server token the page read from /api/info (other origins cannot read it: no
        CORS), and a JSON body (a cross-site form cannot send one without a preflight,
        which is refused)."""
        viewer = self.server.viewer
        if viewer.read_only or viewer.allowed_hosts is None:
            return "this viewer is read-only"
        if not self._host_allowed():
            return "host not allowed"
        if not _same_origin(self.headers.get("Origin"), viewer.port, viewer.allowed_hosts):
            return "cross-origin request refused"
        token = self.headers.get("X-Tracemux-Token") or ""
        if not secrets.compare_digest(token.encode(), viewer.csrf_token.encode()):
            return "missing or wrong X-Tracemux-Token"
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return "the body must be application/json"
        return None

    def _delete(self) -> None:
        """Delete the runs named in the body ``{"run_ids": [...]}`` (full ids)."""
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise _BadRequest("Content-Length required")
        if not 0 < length <= MAX_BODY:
            raise _BadRequest(f"the body must be 1 to {MAX_BODY} bytes")
        try:
            body = orjson.loads(self.rfile.read(length))
        except orjson.JSONDecodeError:
            raise _BadRequest("the body is not JSON")
        ids = body.get("run_ids") if isinstance(body, dict) else None
        if (
            not isinstance(ids, list)
            or not 0 < len(ids) <= MAX_LIMIT
            or not all(isinstance(i, str) and 0 < len(i) <= MAX_TEXT_PARAM for i in ids)
        ):
            raise _BadRequest(f"run_ids must be a list of 1 to {MAX_LIMIT} run ids")
        deleted = self.server.viewer.store.delete_runs(ids)
        log.info("tracemux ui: deleted %d runs", deleted)
        self._send_json({"deleted": deleted})

    def do_GET(self) -> None:
        if not self._host_allowed():
            self._send_json({"error": "host not allowed"}, status=403)
            return
        url = urlsplit(self.path)
        path = url.path
        try:
            if path.startswith("/api/"):
                self._api(path, parse_qs(url.query))
            elif _PAGE_PATH.match(path):
                page = self.server.viewer.static["index.html"]
                self._send(page, "text/html; charset=utf-8")
            elif path in _STATIC_FILES:
                name, content_type = _STATIC_FILES[path]
                self._send(self.server.viewer.static[name], content_type)
            elif path == "/favicon.ico":
                self._send(b"", "image/x-icon", status=204)
            else:
                self.send_error(404, "not found")
        except _BadRequest as exc:
            self._send_json({"error": str(exc)}, status=400)
        except sqlite3.OperationalError as exc:
            log.warning("tracemux ui: reading the store failed: %s", exc)
            self._send_json({"error": f"store busy or unreadable: {exc}"}, status=503)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("tracemux ui: %s failed", path)
            with contextlib.suppress(OSError):
                self._send_json({"error": "internal error"}, status=500)

    def _export(self, store: SQLiteStore, query: dict[str, list[str]]) -> None:
        """The selected (``run=`` ids) or filtered runs as a download."""
        fmt = _param(query, "format") or "jsonl"
        if fmt not in FORMATS:
            raise _BadRequest(f"format must be one of {', '.join(FORMATS)}")
        ids = [i for i in query.get("run", []) if i][:MAX_LIMIT]
        if ids:
            runs = [r for r in (store.run(i) for i in ids) if r is not None]
        else:
            filters = _filters(query)
            try:
                total = store.count_runs(**filters)
                if total > MAX_EXPORT_RUNS:
                    raise _BadRequest(
                        f"{total} runs match: the viewer exports up to {MAX_EXPORT_RUNS};"
                        " narrow the filters, or use tracemux export"
                    )
                runs = store.runs(MAX_EXPORT_RUNS, **filters)
            except ValueError as exc:
                raise _BadRequest(str(exc))
        body = io.BytesIO()
        export_runs(store, runs, body, fmt)
        name = "tracemux-runs.jsonl" if fmt == "jsonl" else "tracemux-runs.otlp.jsonl"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Disposition", f'attachment; filename="{name}"')
        self.send_header("Content-Length", str(len(body.getvalue())))
        self.end_headers()
        self.wfile.write(body.getvalue())

    # -- API ------------------------------------------------------------------------------

    def _api(self, path: str, query: dict[str, list[str]]) -> None:
        viewer = self.server.viewer
        store = viewer.store
        if path.rstrip("/") == "/api/runs":
            self._send_json(_list_runs(store, query, viewer.prices))
            return
        if path.rstrip("/") == "/api/info":
            self._send_json(self.server.viewer.info())
            return
        if path.rstrip("/") == "/api/dashboard":
            self._send_json(_dashboard(store, query, viewer.prices))
            return
        if path.rstrip("/") == "/api/export":
            self._export(store, query)
            return
        if path.rstrip("/") == "/api/sessions":
            self._send_json(_list_sessions(store, query, viewer.prices))
            return
        m = _API_SESSION_PATH.match(path)
        if m is not None:
            session = _session_payload(store, unquote(m.group(1)), viewer.prices)
            if session is None:
                self._send_json({"error": "session not found"}, status=404)
            else:
                self._send_json(session)
            return
        m = _API_RUN_PATH.match(path)
        if m is None:
            self.send_error(404, "not found")
            return
        run = store.run(unquote(m.group(1)))
        if run is None:
            self._send_json({"error": "run not found"}, status=404)
        elif m.group(2):
            self._send_json(_spans_payload(store, run, viewer.prices))
        else:
            self._send_json(_run_payload(store, run, viewer.prices))


def _same_origin(origin: str | None, port: int, hosts: frozenset[str]) -> bool:
    """True when ``origin`` (an Origin header) is this server's own: http, a loopback
    name it answers to, its port."""
    if not origin:
        return False
    try:
        parts = urlsplit(origin)
        return parts.scheme == "http" and parts.port == port and (parts.hostname or "") in hosts
    except ValueError:
        return False


def _param(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    value = values[-1].strip()
    return value or None


def _int_param(
    query: dict[str, list[str]], name: str, default: int, lo: int, hi: int, clamp: bool = True
) -> int:
    """An integer parameter in [lo, hi]: above ``hi`` it is clamped, or refused when
    ``clamp`` is false."""
    raw = _param(query, name)
    if raw is None:
        return default
    if len(raw) > 20:
        raise _BadRequest(f"{name} must be an integer between {lo} and {hi}")
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer")
    if value < lo:
        raise _BadRequest(f"{name} must be at least {lo}")
    if value > hi and not clamp:
        raise _BadRequest(f"{name} must be at most {hi}")
    return min(value, hi)


def _with_cost(
    item: dict[str, Any], usage: list[tuple[str, int, int]], prices: PriceTable
) -> dict[str, Any]:
    """The run's dict with ``models`` (names, by tokens) and ``cost`` ({usd, unpriced})."""
    item["models"] = [m for m, _, _ in sorted(usage, key=lambda u: -(u[1] + u[2]))]
    item["cost"] = prices.total(usage).to_dict()
    return item


def _run_payload(store: SQLiteStore, run: StoredRun, prices: PriceTable) -> dict[str, Any]:
    return _with_cost(run.to_dict(), store.usage_by_run([run.run_id]).get(run.run_id, []), prices)


def _list_item(run: StoredRun) -> dict[str, Any]:
    item = run.to_dict()
    for key in _LIST_OMIT:
        item.pop(key, None)
    error = item.get("error")
    if isinstance(error, dict):
        item["error"] = {
            "type": error.get("type"),
            "message": str(error.get("message") or "")[:_ERROR_MESSAGE_CHARS],
        }
    return item


def _filters(query: dict[str, list[str]]) -> dict[str, Any]:
    """The run filters of a query (checked; the store checks the search)."""
    status = _param(query, "status")
    if status is not None and status not in RUN_STATUS_FILTERS:
        raise _BadRequest(f"status must be one of {', '.join(RUN_STATUS_FILTERS)}")
    for name in ("user", "session"):
        value = _param(query, name)
        if value is not None and len(value) > MAX_TEXT_PARAM:
            raise _BadRequest(f"{name} is longer than {MAX_TEXT_PARAM} characters")
    return {
        "search": _param(query, "search"),
        "status": status,
        "user_id": _param(query, "user"),
        "session_id": _param(query, "session"),
    }


def _list_runs(
    store: SQLiteStore, query: dict[str, list[str]], prices: PriceTable
) -> dict[str, Any]:
    filters = _filters(query)
    limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    try:
        if _param(query, "offset") is not None:
            offset = _int_param(query, "offset", 0, 0, MAX_OFFSET, clamp=False)
            page = store.runs(limit, offset, **filters)
            extra: dict[str, Any] = {"offset": offset}
        else:
            sort = _param(query, "sort") or "start"
            order = _param(query, "order") or "desc"
            if order not in ("asc", "desc"):
                raise _BadRequest("order must be asc or desc")
            keyset = store.runs_page(
                limit,
                sort=sort,
                descending=order == "desc",
                after=_param(query, "after"),
                before=_param(query, "before"),
                **filters,
            )
            page = keyset.runs
            extra = {"sort": sort, "order": order, "next": keyset.next, "prev": keyset.prev}
        total = store.count_runs(**filters)
    except ValueError as exc:  # a filter, sort or cursor the store cannot use
        raise _BadRequest(str(exc))
    if page:  # runs recorded between the two reads
        total = max(total, extra.get("offset", 0) + len(page))
    usage = store.usage_by_run([r.run_id for r in page])
    return {
        "runs": [_with_cost(_list_item(r), usage.get(r.run_id, []), prices) for r in page],
        "total": total,
        "limit": limit,
        **extra,
    }


def _dashboard(
    store: SQLiteStore, query: dict[str, list[str]], prices: PriceTable
) -> dict[str, Any]:
    texts = {name: _param(query, name) for name in ("project", "flow")}
    for name, value in texts.items():
        if value is not None and len(value) > MAX_TEXT_PARAM:
            raise _BadRequest(f"{name} is longer than {MAX_TEXT_PARAM} characters")
    try:
        return dashboard.build(
            store, prices, _param(query, "range") or dashboard.DEFAULT_RANGE, **texts
        )
    except ValueError as exc:
        raise _BadRequest(str(exc))


def _list_sessions(
    store: SQLiteStore, query: dict[str, list[str]], prices: PriceTable
) -> dict[str, Any]:
    user = _param(query, "user")
    if user is not None and len(user) > MAX_TEXT_PARAM:
        raise _BadRequest(f"user is longer than {MAX_TEXT_PARAM} characters")
    limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(query, "offset", 0, 0, MAX_OFFSET, clamp=False)
    sessions = store.sessions(limit, offset, user_id=user)
    usage = store.usage_by_session([s.session_id for s in sessions])
    items = []
    for session in sessions:
        item = session.to_dict()
        item["cost"] = prices.total(usage.get(session.session_id, [])).to_dict()
        items.append(item)
    return {
        "sessions": items,
        "total": store.count_sessions(user_id=user),
        "limit": limit,
        "offset": offset,
    }


def _session_payload(
    store: SQLiteStore, session_id: str, prices: PriceTable
) -> dict[str, Any] | None:
    """A session's runs in order, each with its inputs and outputs (the conversation)."""
    if len(session_id) > MAX_TEXT_PARAM:
        raise _BadRequest(f"session id is longer than {MAX_TEXT_PARAM} characters")
    runs = store.session_runs(session_id, MAX_SESSION_RUNS)
    if not runs:
        return None
    usage = store.usage_by_run([r.run_id for r in runs])
    items = []
    for run in runs:
        item = _with_cost(run.to_dict(), usage.get(run.run_id, []), prices)
        item.pop("metadata", None)
        items.append(item)
    total = prices.total(u for r in runs for u in usage.get(r.run_id, []))
    return {
        "session_id": session_id,
        "user_id": next((r.user_id for r in runs if r.user_id), None),
        "runs": items,
        "cost": total.to_dict(),
        "truncated": len(runs) >= MAX_SESSION_RUNS,
    }


def _spans_payload(store: SQLiteStore, run: StoredRun, prices: PriceTable) -> dict[str, Any]:
    spans = store.spans(run.run_id)
    start = min([run.start_ns, *(s.start_ns for s in spans)])
    out = []
    for span in spans:
        d = span.to_dict()
        d["offset_ms"] = (span.start_ns - start) / 1e6
        usage = span.usage or {}
        d["cost_usd"] = prices.cost(
            span.model, usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
        )
        out.append(d)
    return {"run_id": run.run_id, "start_ns": start, "spans": out}


class UIServer:
    """The viewer's HTTP server over ``store``, bound when constructed.

    ``port=0`` picks a free port (read it back from :attr:`port` or :attr:`url`). Use
    :meth:`start` to serve from a background thread and :meth:`stop` to end every thread
    the server started; or use it as a context manager (started on entry, stopped on
    exit). Binding to a loopback address (the default) also makes the server refuse
    requests whose Host header names anything but loopback or the bound host.
    """

    def __init__(
        self,
        store: SQLiteStore,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        prices: PriceTable | None = None,
        read_only: bool = False,
    ) -> None:
        self.store = store
        #: refuse every write (deleting runs); a non-loopback bind is always read-only
        self.read_only = read_only
        self.csrf_token = secrets.token_urlsafe(32)
        #: what costs are worked out with (default: ``TRACEMUX_PRICES``, then genai-prices)
        self.prices = prices if prices is not None else PriceTable.from_env()
        self.static = _load_static()
        self.allowed_hosts: frozenset[str] | None = (
            _LOOPBACK_NAMES | {host.strip("[]").lower()} if is_loopback(host) else None
        )
        cls = _HTTPServer6 if ":" in host else _HTTPServer
        self._httpd = cls((host.strip("[]"), port), self)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    # -- identity -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server is bound to."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The port the server is bound to (the one picked when constructed with 0)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The page's URL, e.g. ``http://127.0.0.1:8765/``."""
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        elif host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}/"

    def info(self) -> dict[str, Any]:
        """What ``/api/info`` answers: the store's path, whether it exists, the version."""
        return {
            "db": self.store.path,
            "exists": store_exists(self.store),
            "version": __version__,
            # the token a delete request must carry (same-origin pages only can read it)
            "token": None if self.read_only or self.allowed_hosts is None else self.csrf_token,
            "can_delete": not self.read_only and self.allowed_hosts is not None,
        }

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> UIServer:
        """Serve from a background thread (``tracemux-ui-server``). Returns self."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("UIServer was stopped; make a new one")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._httpd.serve_forever,
                    kwargs={"poll_interval": 0.2},
                    name=f"{THREAD_PREFIX}-server",
                    daemon=True,
                )
                self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """True while the accept loop runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout`` passes); True once stopped."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop accepting, close in-flight connections and join every thread the server
        started. Idempotent. False if a thread was still alive after ``timeout``."""
        with self._lock:
            already = self._stopped
            self._stopped = True
            thread = self._thread
        if already:
            return thread is None or not thread.is_alive()
        deadline = time.monotonic() + timeout
        if thread is not None:
            self._httpd.shutdown()
            thread.join(max(0.0, deadline - time.monotonic()))
        self._httpd.server_close()
        clean = self._httpd.close_requests(max(0.0, deadline - time.monotonic()))
        if thread is not None and thread.is_alive():
            clean = False
        if not clean:
            log.warning("tracemux ui: a server thread did not stop within %.1f s", timeout)
        return clean

    def __enter__(self) -> UIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
