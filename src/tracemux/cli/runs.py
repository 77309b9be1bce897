"""``tracemux runs``: the newest runs in the store, as a table."""

from __future__ import annotations

import argparse
import datetime

from rich.markup import escape
from rich.table import Table

from tracemux.cli.common import add_db_argument, console, fmt_ms, store_for
from tracemux.cli.selection import add_filter_arguments
from tracemux.cost import PriceFileError, PriceTable, fmt_usd
from tracemux.destinations.sqlite import StoredRun

STATUS_STYLE = {"ok": "green", "partial": "yellow", "error": "red", "running": "cyan"}

# (header, rich column options): every header shows in full at 80 columns; the free-text
# columns (name, user, session) give way first, by wrapping.
_COLUMNS: tuple[tuple[str, dict[str, object]], ...] = (
    ("run id", {"no_wrap": True}),
    ("name", {"overflow": "fold", "ratio": 3}),
    ("status", {"no_wrap": True}),
    ("started", {"no_wrap": True}),
    ("duration", {"justify": "right", "no_wrap": True}),
    ("spans", {"justify": "right", "no_wrap": True}),
    ("tokens", {"justify": "right", "no_wrap": True}),
    ("cost", {"justify": "right", "no_wrap": True}),
    ("user/session", {"overflow": "fold", "ratio": 2}),
)
#: below this many columns the user/session column is left out (and a line says so)
WIDE = 100


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("runs", help="list the newest runs in the local store")
    add_db_argument(p)
    p.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    add_filter_arguments(p)
    p.set_defaults(func=run)


def status_text(r: StoredRun) -> str:
    """The run's status, coloured, with its count of failed spans (``partial ✕2``)."""
    text = f"[{STATUS_STYLE.get(r.status, 'white')}]{escape(r.status)}[/]"
    return f"{text} ✕{r.error_count}" if r.error_count else text


def local_time(ns: int) -> str:
    """Date and time in the user's time zone."""
    return datetime.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M")


def _zone_name() -> str:
    now = datetime.datetime.now().astimezone()
    return now.tzname() or now.strftime("%z")


def run(args: argparse.Namespace) -> int:
    store = store_for(args)
    out = console()
    filters = {
        "search": args.search,
        "status": args.status,
        "user_id": args.user,
        "session_id": args.session,
    }
    try:
        runs = store.runs(limit=args.limit, **filters)
    except ValueError as exc:  # e.g. a search longer than the store takes
        console(stderr=True).print(f"[red]tracemux runs: {escape(str(exc))}[/]", soft_wrap=True)
        return 2
    if not runs:
        total = store.count_runs()
        if total and any(filters.values()):
            out.print(
                f"No runs match these filters ({total} runs in {store.path}).", soft_wrap=True
            )
        else:
            out.print(
                f"No runs in {store.path}. Record some with [bold]tracemux demo[/bold].",
                soft_wrap=True,
            )
        return 0
    try:
        prices = PriceTable.from_env()
    except PriceFileError as exc:
        console(stderr=True).print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        return 2
    usage = store.usage_by_run([r.run_id for r in runs])
    matching = store.count_runs(**filters)
    title = f"{matching} runs" + (" match" if any(filters.values()) else "")
    table = Table(
        title=f"{title} in {store.path} (times in {_zone_name()})",
        title_justify="left",
        box=None,
        header_style="bold underline",
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    wide = out.width >= WIDE
    columns = _COLUMNS if wide else _COLUMNS[:-1]
    for header, options in columns:
        table.add_column(header, min_width=len(header), **options)  # type: ignore[arg-type]
    for r in runs:
        cells = (
            r.run_id[:8],
            escape(r.name or ""),
            status_text(r),
            local_time(r.start_ns),
            fmt_ms(r.duration_ms),
            str(r.span_count),
            str(r.input_tokens + r.output_tokens or ""),
            fmt_usd(prices.total(usage.get(r.run_id, ()))),
            escape(" / ".join(x or "-" for x in (r.user_id, r.session_id)))
            if r.user_id or r.session_id
            else "",
        )
        table.add_row(*cells[: len(columns)])
    out.print(table)
    if not wide:
        out.print(f"(users and sessions show at {WIDE} columns or more)")
    out.print("Show one with [bold]tracemux show RUN_ID[/bold] (a prefix of the id is enough).")
    return 0
