"""``tracemux doctor``: which destinations the environment configures, and whether each works.

For every destination it reads from the environment (secrets masked) it checks that the
backend can be reached and, where the backend has a cheap way to ask, that it accepts the
credentials:

- Langfuse: ``GET /api/public/projects`` with Basic auth;
- LangSmith: ``GET /info`` (reachable), then ``GET /sessions?limit=1`` with the API key;
- Phoenix: ``GET /healthz``, then ``GET /v1/projects?limit=1`` (with the API key if set);
- an OTLP collector: ``POST`` of an empty ``ExportTraceServiceRequest`` with the headers;
- the local store: its directory can be written.

Each problem comes with what to change. Exit status: 0 when everything works, 1 when a
destination has a problem, 2 when the configuration itself is invalid.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from tracemux.cli.common import console
from tracemux.config import ConfigError, destinations_from_env
from tracemux.destinations.base import Destination
from tracemux.destinations.env import SECRET_VARIABLES, VARIABLES
from tracemux.destinations.http import mask_secret
from tracemux.destinations.langfuse import Langfuse
from tracemux.destinations.langsmith import LangSmith
from tracemux.destinations.otlp import CONTENT_TYPE, OTLP, proto
from tracemux.destinations.phoenix import Phoenix
from tracemux.destinations.postgres import PostgresStore, mask_dsn
from tracemux.destinations.probe import run_probe
from tracemux.destinations.sqlite import SQLiteStore


@dataclass
class Check:
    """The outcome of checking one destination."""

    destination: str
    ok: bool
    detail: str
    fix: str = ""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="show the destinations the environment configures and check each one",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return doctor(os.environ, timeout=args.timeout)


def doctor(env: Mapping[str, str], *, timeout: float = 5.0) -> int:
    """Print the report for ``env``; return the exit status."""
    out = console()
    settings = [name for name in (*VARIABLES, "TRACEMUX_DB") if env.get(name, "").strip()]
    if settings:
        table = Table(title="Environment", title_justify="left")
        table.add_column("variable", no_wrap=True)
        table.add_column("value")
        for name in settings:
            value = mask_dsn(env[name].strip())
            table.add_row(name, mask_secret(value) if name in SECRET_VARIABLES else value)
        out.print(table)
    try:
        destinations = destinations_from_env(env)
    except ConfigError as exc:
        out.print(f"[bold red]Configuration error:[/bold red] {escape(str(exc))}")
        out.print("Fix the variable named above, then run [bold]tracemux doctor[/bold] again.")
        return 2
    if not settings or all(isinstance(d, SQLiteStore | PostgresStore) for d in destinations):
        out.print(
            "No remote destination configured: runs go to the local store only. "
            "Set LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY, LANGSMITH_API_KEY, "
            "PHOENIX_COLLECTOR_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT to add one."
        )
    import httpx

    checks: list[Check] = []
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        for dest in destinations:
            checks.append(check_destination(client, dest))
    out.print("[bold]Destinations[/bold]")
    for c in checks:
        mark = "[green]✓[/green]" if c.ok else "[bold red]✗[/bold red]"
        out.print(f"{mark} {escape(c.destination)}: {escape(c.detail)}")
        if c.fix:
            out.print(f"    [yellow]fix:[/yellow] {escape(c.fix)}")
    problems = [c for c in checks if not c.ok]
    if problems:
        out.print(f"[bold red]{len(problems)} of {len(checks)} destinations have a problem.[/]")
        return 1
    out.print(f"[green]Every destination works ({len(checks)}).[/green]")
    return 0


def check_destination(client: Any, dest: Destination) -> Check:
    """Check one destination (never raises)."""
    checker = _CHECKS.get(type(dest))
    probe = getattr(dest, "probe", None)  # destinations that say how to check themselves
    if checker is None and probe is None:
        return Check(dest.describe(), True, "no check for this kind of destination")
    try:
        if checker is None:
            return Check(dest.describe(), *run_probe(client, probe()))
        return checker(client, dest)
    except Exception as exc:  # a check must not crash the report
        return Check(dest.describe(), False, f"check failed: {type(exc).__name__}: {exc}")


def _get(client: Any, url: str, headers: Mapping[str, str]) -> tuple[int | None, str, Any]:
    """(status, error text, response) of a GET; status None when it could not connect."""
    import httpx

    try:
        r = client.get(url, headers=dict(headers))
    except httpx.TimeoutException:
        return None, "timed out", None
    except httpx.HTTPError as exc:
        return None, f"cannot connect ({type(exc).__name__})", None
    return r.status_code, "", r


def _unreachable(label: str, url: str, err: str, variable: str) -> Check:
    return Check(label, False, f"{url}: {err}", f"check {variable} and that the server is up")


def _http_problem(label: str, url: str, status: int, auth_vars: str, url_var: str) -> Check:
    if status in (401, 403):
        return Check(
            label,
            False,
            f"{url}: HTTP {status}, credentials rejected",
            f"check {auth_vars} (and that they belong to this server)",
        )
    if status == 404:
        return Check(label, False, f"{url}: HTTP 404", f"check {url_var}: no such API there")
    return Check(label, False, f"{url}: HTTP {status}", f"check {url_var}; try again later")


def check_langfuse(client: Any, dest: Langfuse) -> Check:
    label = dest.describe()
    url = f"{dest.host}/api/public/projects"
    status, err, r = _get(client, url, {"Authorization": dest.auth_header()})
    if status is None:
        return _unreachable(label, dest.host, err, "LANGFUSE_HOST / LANGFUSE_BASE_URL")
    if status != 200:
        return _http_problem(
            label,
            url,
            status,
            "LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY",
            "LANGFUSE_HOST / LANGFUSE_BASE_URL",
        )
    name = ""
    try:
        data = r.json().get("data") or []
        if data and isinstance(data[0], dict):
            name = str(data[0].get("name") or "")
    except Exception:
        pass
    return Check(label, True, f"credentials accepted{f' (project {name})' if name else ''}")


def check_langsmith(client: Any, dest: LangSmith) -> Check:
    label = dest.describe()
    status, err, _ = _get(client, f"{dest.endpoint}/info", {})
    if status is None:
        return _unreachable(label, dest.endpoint, err, "LANGSMITH_ENDPOINT")
    url = f"{dest.endpoint}/sessions?limit=1"
    status, err, _ = _get(client, url, {"x-api-key": dest.api_key})
    if status is None:
        return _unreachable(label, dest.endpoint, err, "LANGSMITH_ENDPOINT")
    if status != 200:
        return _http_problem(label, url, status, "LANGSMITH_API_KEY", "LANGSMITH_ENDPOINT")
    return Check(label, True, f"credentials accepted (project {dest.project})")


def check_phoenix(client: Any, dest: Phoenix) -> Check:
    label = dest.describe()
    base = dest.base_url
    status, err, _ = _get(client, f"{base}/healthz", {})
    if status is None:
        return _unreachable(label, base, err, "PHOENIX_COLLECTOR_ENDPOINT")
    if status != 200:
        return _http_problem(
            label, f"{base}/healthz", status, "PHOENIX_API_KEY", "PHOENIX_COLLECTOR_ENDPOINT"
        )
    url = f"{base}/v1/projects?limit=1"
    status, err, _ = _get(client, url, dest.request_headers())
    if status is None:
        return _unreachable(label, base, err, "PHOENIX_COLLECTOR_ENDPOINT")
    if status != 200:
        return _http_problem(label, url, status, "PHOENIX_API_KEY", "PHOENIX_COLLECTOR_ENDPOINT")
    return Check(label, True, "reachable" + (", API key accepted" if dest.api_key else ""))


def check_otlp(client: Any, dest: OTLP) -> Check:
    import httpx

    label = dest.describe()
    url = dest.traces_url()
    headers = {**dest.request_headers(), "Content-Type": CONTENT_TYPE}
    try:
        r = client.post(url, content=proto().Request().SerializeToString(), headers=headers)
    except httpx.TimeoutException:
        return _unreachable(label, url, "timed out", "OTEL_EXPORTER_OTLP_ENDPOINT")
    except httpx.HTTPError as exc:
        return _unreachable(
            label, url, f"cannot connect ({type(exc).__name__})", "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
    if 200 <= r.status_code < 300:
        return Check(label, True, "accepts OTLP/HTTP protobuf")
    return _http_problem(
        label,
        url,
        r.status_code,
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_ENDPOINT (the HTTP port, usually 4318)",
    )


def check_store(client: Any, dest: SQLiteStore) -> Check:
    path = Path(getattr(dest, "path", "") or "")
    label = dest.describe()
    directory = path.parent if str(path) else Path(".")
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        return Check(label, False, f"{probe} is not writable", "set TRACEMUX_DB to a writable path")
    return Check(label, True, f"local store at {path}")


def check_postgres(client: Any, dest: PostgresStore) -> Check:
    try:
        return Check(dest.describe(), True, dest.ping())
    except ConnectionError as exc:
        return Check(dest.describe(), False, str(exc), "check the DSN in TRACEMUX_DB")


_CHECKS: dict[type, Callable[[Any, Any], Check]] = {
    Langfuse: check_langfuse,
    LangSmith: check_langsmith,
    Phoenix: check_phoenix,
    OTLP: check_otlp,
    SQLiteStore: check_store,
    PostgresStore: check_postgres,
}
