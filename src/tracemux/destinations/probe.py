"""A cheap request that tells whether a backend is reachable and accepts a destination's
credentials, for ``tracemux doctor``.

A destination that has a ``probe()`` method returning a :class:`Probe` is checked by the
doctor without any code of its own there: :func:`run_probe` sends the request and turns
the answer into ``(ok, detail, fix)``, naming the variables to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracemux.destinations.otlp import CONTENT_TYPE, proto


@dataclass(frozen=True)
class Probe:
    """The request, and the variables a failure points at."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes | None = None
    #: what a 401/403 means should be checked (e.g. ``"LANGWATCH_API_KEY"``)
    auth_vars: str = ""
    #: what an unreachable server or a 404 means should be checked
    url_var: str = ""
    #: what a success means, e.g. ``"credentials accepted"``
    ok: str = "reachable, credentials accepted"


def otlp_probe(dest: Any, auth_vars: str, url_var: str) -> Probe:
    """POST an empty ``ExportTraceServiceRequest`` (no spans) to an OTLP destination."""
    return Probe(
        "POST",
        dest.traces_url(),
        {**dest.request_headers(), "Content-Type": CONTENT_TYPE},
        proto().Request().SerializeToString(),
        auth_vars=auth_vars,
        url_var=url_var,
        ok="accepts OTLP/HTTP protobuf with these credentials",
    )


def run_probe(client: Any, probe: Probe) -> tuple[bool, str, str]:
    """Send ``probe`` with the ``httpx.Client`` ``client``: ``(ok, detail, fix)``.

    The detail never quotes the response body or the headers (they may hold secrets).
    """
    import httpx

    try:
        r = client.request(probe.method, probe.url, headers=dict(probe.headers), content=probe.body)
    except httpx.TimeoutException:
        return False, f"{probe.url}: timed out", f"check {probe.url_var} and that the server is up"
    except httpx.HTTPError as exc:
        return (
            False,
            f"{probe.url}: cannot connect ({type(exc).__name__})",
            f"check {probe.url_var} and that the server is up",
        )
    status = r.status_code
    if 200 <= status < 300:
        return True, probe.ok, ""
    if status in (401, 403):
        return (
            False,
            f"{probe.url}: HTTP {status}, credentials rejected",
            f"check {probe.auth_vars} (and that they belong to this server)",
        )
    if status == 404:
        return False, f"{probe.url}: HTTP 404", f"check {probe.url_var}: no such API there"
    return False, f"{probe.url}: HTTP {status}", f"check {probe.url_var}; try again later"
