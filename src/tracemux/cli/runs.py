"""``tracemux runs``: the newest runs in the store, as a table."""

from __future__ import annotations

import argparse
import datetime

from rich.table import Table

from tracemux.cli.common import add_db_argument, console, fmt_ms, store_for


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("runs", help="list the newest runs in the local store")
    add_db_argument(p)
    p.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    p.add_argument("--search", default=None, help="only runs whose name or id contains this")
    p.add_argument("--status", choices=["ok", "error", "running"], default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_for(args)
    out = console()
    runs = store.runs(limit=args.limit, search=args.search, status=args.status)
    if not runs:
        out.print(f"No runs in {store.path}. Record some with [bold]tracemux demo[/bold].")
        return 0
    table = Table(title=f"{store.count_runs()} runs in {store.path}", title_justify="left")
    for col, kw in (
        ("run id", {"no_wrap": True}),
        ("name", {}),
        ("status", {}),
        ("start", {"no_wrap": True}),
        ("duration", {"justify": "right"}),
        ("spans", {"justify": "right"}),
        ("tokens", {"justify": "right"}),
        ("user", {}),
        ("session", {}),
    ):
        table.add_column(col, **kw)  # type: ignore[arg-type]
    for r in runs:
        start = datetime.datetime.fromtimestamp(r.start_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
        status = {"ok": "[green]ok[/]", "error": "[red]error[/]"}.get(r.status, r.status)
        table.add_row(
            r.run_id[:8],
            r.name or "",
            status,
            start,
            fmt_ms(r.duration_ms),
            str(r.span_count),
            str(r.input_tokens + r.output_tokens or ""),
            r.user_id or "",
            r.session_id or "",
        )
    out.print(table)
    out.print("Show one with [bold]tracemux show RUN_ID[/bold] (a prefix of the id is enough).")
    return 0
