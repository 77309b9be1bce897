"""``tracemux doctor``: which destinations the environment configures, and whether each works.

For every destination it reads from the environment (secrets masked) it checks that the
backend can be reached and, where the backend has a cheap way to ask, that it accepts the
credentials:

- Langfuse: ``GET /api/public/projects`` with Basic auth;
- LangSmith: ``GET /info`` (reachable), then ``GET /sessions?limit=1`` with the API key;
- Phoenix: ``GET /healthz``, then ``GET /v1/projects?limit=1`` (with the API key if set);
- an OTLP collector: ``POST`` of an empty ``ExportTraceServiceRequest`` with the headers;
- the local store: the file, or the directory it would be created in, can be written.

The configuration is validated by the same function as ``TracingService.from_env()``
(:func:`tracemux.config.from_env`), so doctor passes exactly what the service accepts and
lists every problem it finds; it says when tracing is off. Each problem comes with what to
change. Exit status: 0 when everything works, 1 when a destination has a problem, 2 when
the configuration itself is invalid.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from tracemux.cli.common import add_db_argument, console, store_path_problem
from tracemux.config import TRACEMUX_VARIABLES, ConfigError, unknown_variables
from tracemux.config import from_env as config_from_env
from tracemux.destinations.base import Destination
from tracemux.destinations.env import SECRET_VARIABLES, VARIABLES
from tracemux.destinations.http import mask_secret, move_userinfo, safe_url
from tracemux.destinations.langfuse import Langfuse
from tracemux.destinations.langsmith import LangSmith
from tracemux.destinations.otlp import CONTENT_TYPE, OTLP, parse_otlp_headers, proto
from tracemux.destinations.phoenix import Phoenix
from tracemux.destinations.postgres import PostgresStore, mask_dsn
from tracemux.destinations.probe import run_probe
from tracemux.destinations.sqlite import SQLiteStore
from tracemux.redact import mask_for_log


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
        help="check the configuration and every destination it configures",
        description=(
            "Validate the environment exactly as TracingService.from_env() does, list every "
            "problem, and check that each destination answers and the local store can be "
            "written. Exit status: 0 when all is well, 1 when a destination has a problem, "
            "2 when the configuration is invalid."
        ),
    )
    add_db_argument(p)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.db:
        env["TRACEMUX_DB"] = args.db
    return doctor(env, timeout=args.timeout)


def doctor(env: Mapping[str, str], *, timeout: float = 5.0) -> int:
    """Print the report for ``env``; return the exit status."""
    out = console()
    _print_settings(out, env)
    for name, close in unknown_variables(env):
        hint = f" (did you mean {close}?)" if close else ""
        out.print(f"[yellow]![/yellow] {name} is not a tracemux variable: it is ignored{hint}")
    try:
        cfg = config_from_env(env)
    except ConfigError as exc:
        return _report_invalid(out, env, exc, timeout)
    out.print("[green]Configuration: valid[/green] (checked as TracingService.from_env() does)")
    if cfg.disabled:
        out.print(
            "[bold yellow]Tracing is OFF[/bold yellow] (TRACEMUX_DISABLED is set): nothing is "
            "recorded and no destination is used. Unset it to trace."
        )
        return 0
    destinations = cfg.destinations
    if all(isinstance(d, (SQLiteStore, PostgresStore)) for d in destinations):
        out.print(
            "No remote destination configured: runs go to the local store only. "
            "Set LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY, LANGSMITH_API_KEY, "
            "PHOENIX_COLLECTOR_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT to add one."
        )
    checks = _check_all(destinations, timeout)
    _print_checks(out, checks)
    problems = [c for c in checks if not c.ok]
    if problems:
        out.print(f"[bold red]{len(problems)} of {len(checks)} destinations have a problem.[/]")
        return 1
    out.print(f"[green]Every destination works ({len(checks)}).[/green]")
    return 0


def _print_settings(out: Any, env: Mapping[str, str]) -> None:
    """The table of the variables that are set (secrets masked, header values hidden)."""
    names = (*VARIABLES, *TRACEMUX_VARIABLES)
    settings = [name for name in dict.fromkeys(names) if env.get(name, "").strip()]
    if not settings:
        return
    table = Table(title="Environment", title_justify="left")
    table.add_column("variable", no_wrap=True)
    table.add_column("value")
    for name in settings:
        table.add_row(name, escape(_shown(name, env[name].strip())))
    out.print(table)


def _shown(name: str, value: str) -> str:
    if name.endswith("_HEADERS"):
        try:
            headers = parse_otlp_headers(value)
        except ValueError:
            return "(malformed; not shown)"
        return ", ".join(f"{k}=***" for k in headers) or "(empty)"
    if name in SECRET_VARIABLES:
        return mask_secret(value)
    if name == "TRACEMUX_DB":
        value = mask_dsn(value)  # a PostgreSQL DSN's password, in URL or key=value form
    if "://" in value:
        return safe_url(value)
    return value if len(value) <= 80 else value[:40] + f"... ({len(value)} characters)"


def _report_invalid(out: Any, env: Mapping[str, str], exc: ConfigError, timeout: float) -> int:
    """Every configuration problem, then the store check (it does not need the rest)."""
    count = len(exc.problems)
    out.print(f"[bold red]Configuration: {count} problem{'s' if count > 1 else ''}[/bold red]")
    for problem in exc.problems:
        out.print(f"[bold red]✗[/bold red] {escape(problem)}")
    out.print(
        "With this configuration [bold]TracingService.from_env()[/bold] raises ConfigError, "
        "and the default service (tracemux.get_service(), @tracemux.traced) runs with "
        "[bold]tracing OFF[/bold]. Fix the variables named above, then run "
        "[bold]tracemux doctor[/bold] again."
    )
    store = _store_or_none(env)
    if store is not None:
        _print_checks(out, _check_all((store,), timeout), "Local store")
    return 2


def _store_or_none(env: Mapping[str, str]) -> SQLiteStore | None:
    try:
        return SQLiteStore((env.get("TRACEMUX_DB") or "").strip() or None)
    except Exception:
        return None


def _check_all(destinations: Sequence[Destination], timeout: float) -> list[Check]:
    import httpx

    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        return [check_destination(client, dest) for dest in destinations]


def _print_checks(out: Any, checks: Sequence[Check], title: str = "Destinations") -> None:
    out.print(f"[bold]{title}[/bold]")
    for c in checks:
        mark = "[green]✓[/green]" if c.ok else "[bold red]✗[/bold red]"
        out.print(f"{mark} {escape(c.destination)}: {escape(c.detail)}")
        if c.fix:
            out.print(f"    [yellow]fix:[/yellow] {escape(c.fix)}")


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
        detail = mask_for_log(f"check failed: {type(exc).__name__}: {exc}")
        return Check(dest.describe(), False, detail)


def _get(client: Any, url: str, headers: Mapping[str, str]) -> tuple[int | None, str, Any]:
    """(status, error text, response) of a GET; status None when it could not connect."""
    import httpx

    url, moved = move_userinfo(url, headers)
    try:
        r = client.get(url, headers=moved)
    except httpx.TimeoutException:
        return None, "timed out", None
    except httpx.HTTPError as exc:
        return None, f"cannot connect ({type(exc).__name__})", None
    return r.status_code, "", r


def _unreachable(label: str, url: str, err: str, variable: str) -> Check:
    return Check(
        label, False, f"{safe_url(url)}: {err}", f"check {variable} and that the server is up"
    )


def _http_problem(label: str, url: str, status: int, auth_vars: str, url_var: str) -> Check:
    if status in (401, 403):
        return Check(
            label,
            False,
            f"{safe_url(url)}: HTTP {status}, credentials rejected",
            f"check {auth_vars} (and that they belong to this server)",
        )
    if status == 404:
        return Check(label, False, f"{safe_url(url)}: HTTP 404", f"check {url_var}: no such API")
    return Check(label, False, f"{safe_url(url)}: HTTP {status}", f"check {url_var}; try later")


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
    url, headers = move_userinfo(url, {**dest.request_headers(), "Content-Type": CONTENT_TYPE})
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
    label = dest.describe()
    path = Path(dest.path)
    problem = store_path_problem(path)
    if problem:
        return Check(label, False, problem, "set TRACEMUX_DB (or --db) to a writable path")
    return Check(label, True, f"local store at {path} (writable)")


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
