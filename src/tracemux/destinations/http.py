"""HTTP plumbing shared by the remote destinations.

- :func:`shared_client`: the one ``httpx.AsyncClient`` (one connection pool, one SSL
  context) that every remote destination of the export thread uses. It is created lazily
  on the export thread and closed when that thread's session ends
  (:meth:`~tracemux.destinations.base.ExportContext.on_exit`).
- :func:`post`: send one request and turn every failure into an
  :class:`~tracemux.destinations.base.ExportError` the lane understands: connection errors,
  timeouts, 408, 429 and 5xx are retryable (``Retry-After`` honoured), 413 splits the
  batch, any other 4xx drops it with reason ``http_<status>``.
- :func:`mask_secret`, :func:`check_url`, :func:`require_key`: validation and masking used
  by the destinations' constructors, so a bad configuration fails at construction, never at
  export time, and no secret reaches a log line or a ``repr``.

``httpx`` is imported lazily: ``import tracemux`` does not pay for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import logging
import queue
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tracemux.destinations.base import ExportContext, ExportError
from tracemux.errors import ConfigError
from tracemux.redact import mask_for_log
from tracemux.version import __version__

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

#: seconds a request may take before it counts as a (retryable) timeout
DEFAULT_TIMEOUT = 10.0
#: the largest Retry-After honoured, in seconds
MAX_RETRY_AFTER = 300.0
#: statuses that are retried besides 5xx
RETRY_STATUSES = frozenset({408, 425, 429})
#: requests in flight to one origin (scheme, host, port) at most; more wait their turn
PER_ORIGIN = 16
#: connections of the shared client at most
MAX_CONNECTIONS = 256
#: seconds a request may wait for a free connection (beyond its own timeout)
POOL_TIMEOUT = 60.0

USER_AGENT = "tracemux"

_local = threading.local()

RESOLVER_THREAD_NAME = "tracemux-resolve"
#: seconds the resolver thread waits for more work before it exits
RESOLVER_IDLE = 2.0


class IdleThreadExecutor(concurrent.futures.ThreadPoolExecutor):
    """One short-lived worker thread: started on demand, gone after ``idle`` seconds.

    Installed as the export loop's default executor, where asyncio runs blocking
    ``getaddrinfo`` calls (host names of remote destinations). The stock executor keeps
    its threads until the loop ends; this one exits as soon as it has been idle, so the
    export thread stays the only long-lived thread. Lookups of IP literals never get here.
    """

    def __init__(self, name: str = RESOLVER_THREAD_NAME, idle: float = RESOLVER_IDLE) -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self._name = name
        self._idle = idle
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = False

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._guard:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._tasks.put((future, fn, args, kwargs))
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._worker.start()
        return future

    def _work(self) -> None:
        while True:
            try:
                item = self._tasks.get(timeout=self._idle)
            except queue.Empty:
                with self._guard:
                    if self._tasks.empty():
                        self._worker = None
                        return
                continue
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._guard:
            self._closed = True
            worker = self._worker
            self._worker = None
        if worker is not None:
            self._tasks.put(None)
            if wait:
                worker.join(1.0)  # a hung lookup must not hold up the export thread's exit


def _new_client() -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(
        timeout=httpx.Timeout(DEFAULT_TIMEOUT, connect=5.0, pool=POOL_TIMEOUT),
        # one request in flight per destination lane, PER_ORIGIN per origin (see post())
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=64, keepalive_expiry=15
        ),
        follow_redirects=False,
        headers={"User-Agent": f"{USER_AGENT}/{__version__}"},
    )


def shared_client() -> httpx.AsyncClient:
    """The HTTP client of the current export thread, created on first use.

    On the export thread it is closed automatically when the thread's session ends. Called
    on another event loop (tests, benchmarks), a client is kept per thread and loop; close
    it with :func:`close_shared_client`.
    """
    loop = asyncio.get_running_loop()
    client = getattr(_local, "client", None)
    if client is not None and getattr(_local, "loop", None) is loop and not client.is_closed:
        return client
    client = _new_client()
    _local.client = client
    _local.loop = loop
    _local.origins = OriginSlots(PER_ORIGIN)

    async def close() -> None:
        if getattr(_local, "client", None) is client:
            _local.client = None
            _local.loop = None
        await client.aclose()

    context = ExportContext.current()
    if context is None:  # not on the export thread: the caller closes it
        return client
    context.on_exit(close)
    try:  # host-name lookups on a short-lived thread, not on a lasting executor pool
        loop.set_default_executor(IdleThreadExecutor())
    except (RuntimeError, TypeError):  # pragma: no cover - a loop that refuses: keep its own
        pass
    return client


class OriginSlots:
    """At most ``limit`` requests in flight per origin; the rest wait (untimed) in turn.

    So many lanes to one host (a thousand tenants of one Langfuse) open a bounded number
    of connections, and a host that hangs holds at most ``limit`` of the shared pool.
    Entries exist only while a request to their origin is in flight or waiting.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, list[Any]] = {}  # origin -> [semaphore, users]

    async def acquire(self, origin: str) -> None:
        entry = self._slots.get(origin)
        if entry is None:
            entry = self._slots[origin] = [asyncio.Semaphore(self.limit), 0]
        entry[1] += 1
        try:
            await entry[0].acquire()
        except BaseException:
            self._leave(origin, entry)
            raise

    def release(self, origin: str) -> None:
        entry = self._slots[origin]
        entry[0].release()
        self._leave(origin, entry)

    def _leave(self, origin: str, entry: list[Any]) -> None:
        entry[1] -= 1
        if entry[1] <= 0:
            del self._slots[origin]

    def __len__(self) -> int:
        return len(self._slots)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def close_shared_client() -> None:
    """Close this thread's shared client (for use outside the export thread)."""
    client = getattr(_local, "client", None)
    _local.client = None
    _local.loop = None
    if client is not None:
        await client.aclose()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def _snippet(body: bytes, secrets: Iterable[str]) -> str:
    text = body[:300].decode("utf-8", "replace").strip().replace("\n", " ")
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, mask_secret(secret))
    return mask_for_log(text)


_HINTS = {
    400: "the destination could not read the request",
    401: "check the credentials",
    403: "the credentials are not allowed to write here",
    404: "check the endpoint URL",
}


async def post(
    label: str,
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    secrets: Iterable[str] = (),
    what: str = "spans",
) -> httpx.Response:
    """POST ``content`` with the shared client; raise :class:`ExportError` on failure.

    ``label`` is the destination's masked description (the lane logs it beside the
    error); ``secrets`` are masked out of any response text quoted in the error.
    """
    import httpx

    if "@" in url:
        url, headers = move_userinfo(url, headers)
    client = shared_client()
    origins: OriginSlots = _local.origins
    origin = _origin(url)
    await origins.acquire(origin)
    try:
        # httpx's timeouts bound each read and write; a server that trickles its answer a
        # byte at a time would hold the lane for ever: ``timeout`` bounds the whole request
        response = await asyncio.wait_for(
            client.post(
                url,
                content=content,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=min(5.0, timeout), pool=POOL_TIMEOUT),
            ),
            timeout=timeout,
        )
    except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
        raise ExportError(
            f"timed out after {timeout:g}s ({type(exc).__name__})",
            retryable=True,
            reason="timeout",
        ) from None
    except (httpx.TransportError, OSError) as exc:
        raise ExportError(
            f"cannot connect ({type(exc).__name__}: {mask_for_log(str(exc))})",
            retryable=True,
            reason="connection_error",
        ) from None
    finally:
        origins.release(origin)
    if 200 <= response.status_code < 300:
        return response
    raise _status_error(label, response, secrets, what)


def _status_error(
    label: str, response: httpx.Response, secrets: Iterable[str], what: str
) -> ExportError:
    """The :class:`ExportError` for a non-2xx answer: 413 splits the batch; 5xx, 408 and
    429 are retried (``Retry-After`` honoured); any other status drops the batch."""
    status = response.status_code
    detail = _snippet(response.content, secrets)
    hint = _HINTS.get(status)
    message = f"HTTP {status} for {what}"
    if hint:
        message += f" ({hint})"
    if detail:
        message += f": {detail}"
    log.debug("tracemux: %s: %s", label, message)
    if status == 413:
        return ExportError(
            message, retryable=False, too_large=True, reason="http_413", status=status
        )
    if status >= 500 or status in RETRY_STATUSES:
        return ExportError(
            message,
            retryable=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            reason=f"http_{status}",
            status=status,
        )
    return ExportError(message, retryable=False, reason=f"http_{status}", status=status)


# -- validation and masking ------------------------------------------------------------------

_PREFIX = re.compile(r"^(?:[A-Za-z0-9]{1,6}[-_]){1,2}")


def mask_secret(value: str | None) -> str:
    """A secret shown safely: its vendor prefix and last 4 characters (``pk-lf-...abcd``).

    Short values are fully hidden.
    """
    if not value:
        return "<none>"
    if len(value) < 12:
        return "***"
    m = _PREFIX.match(value)
    prefix = m.group(0) if m else ""
    if len(value) - len(prefix) - 4 < 4:
        prefix = ""
    return f"{prefix}...{value[-4:]}"


def move_userinfo(url: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """``url`` without its ``user:password@`` part, and ``headers`` with that part as Basic
    authentication (unless they already authenticate): a URL is logged by HTTP clients
    (httpx logs every request at INFO), a header is not."""
    import base64
    from urllib.parse import unquote

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, dict(headers)
    userinfo, _, host = parts.netloc.rpartition("@")
    out = dict(headers)
    if not any(k.lower() == "authorization" for k in out):
        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
        out["Authorization"] = f"Basic {token}"
    return parts._replace(netloc=host).geturl(), out


def safe_url(url: object) -> str:
    """``url`` fit for a log line, a label or an error: the password of its userinfo and
    its query (which may carry ``?api_key=``) are hidden."""
    text = (url if isinstance(url, str) else repr(url)).strip()[:300]
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or not parts.netloc:  # not a URL: hide what may be
        return "<hidden: not a URL, and it has '@' or '?'>" if re.search(r"[@?]", text) else text
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, has_password, _ = user.partition(":")
        netloc = f"{name}:***@{host}" if has_password else f"{name}@{host}"
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def _config_error(message: str) -> Exception:
    return ConfigError(message)


def check_url(field: str, value: object, *, owner: str) -> str:
    """Validate an http(s) URL for ``owner.field``; returns it without a trailing slash."""
    if not isinstance(value, str) or not value.strip():
        raise _config_error(f"{owner}: {field} must be an http(s) URL, got {type(value).__name__}")
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise _config_error(
            f"{owner}: {field}={safe_url(value)!r} is not a valid URL ({exc})"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _config_error(
            f"{owner}: {field}={safe_url(value)!r} is not a valid URL (expected http(s)://host[:port])"
        )
    if parts.query or parts.fragment:
        raise _config_error(
            f"{owner}: {field}={safe_url(value)!r} must not have a query or fragment"
        )
    if port == 0:
        raise _config_error(f"{owner}: {field}={safe_url(value)!r} has port 0")
    if any(c.isspace() for c in url):
        raise _config_error(f"{owner}: {field}={safe_url(value)!r} contains whitespace")
    return url


def require_key(field: str, value: object, *, owner: str) -> str:
    """Validate a required credential for ``owner.field`` (never echoed in the error)."""
    if not isinstance(value, str) or not value.strip():
        raise _config_error(f"{owner}: {field} is required (a non-empty string)")
    if value != value.strip() or any(c in value for c in "\r\n\t "):
        raise _config_error(f"{owner}: {field} contains whitespace (check for a stray newline)")
    return value


def check_timeout(value: object, *, owner: str) -> float:
    """Validate a request timeout in seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
        raise _config_error(f"{owner}: timeout must be a number of seconds in (0, 600]")
    return float(value)


def check_headers(value: object, *, owner: str) -> tuple[tuple[str, str], ...]:
    """Headers as a sorted tuple of pairs (hashable); names and values must be strings."""
    if value is None:
        return ()
    items: Iterable[Any]
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (tuple, list)):
        items = value
    else:
        raise _config_error(f"{owner}: headers must be a mapping of names to values")
    out = []
    for item in items:
        try:
            name, val = item
        except (TypeError, ValueError):
            raise _config_error(f"{owner}: headers must be name/value pairs") from None
        if not isinstance(name, str) or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            shown = (
                re.match(r"[!#$%&'*+.^_`|~0-9A-Za-z-]*", name).group(0)[:40]
                if isinstance(name, str)
                else type(name).__name__
            )
            raise _config_error(
                f"{owner}: a header name is not valid (it starts {shown!r}); the value is not shown"
            )
        if not isinstance(val, str) or "\n" in val or "\r" in val:
            raise _config_error(f"{owner}: header {name} must have a single-line string value")
        out.append((name, val))
    return tuple(sorted(out))
