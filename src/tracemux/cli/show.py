"""``tracemux show RUN_ID``: one run's span tree with durations, status, usage and values."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from tracemux.cli.common import add_db_argument, console, fmt_ms, fmt_value, store_for
from tracemux.cli.runs import local_time, status_text
from tracemux.cost import PriceFileError, PriceTable, fmt_usd
from tracemux.destinations.sqlite import SQLiteStore, StoredSpan

_MAX_MATCHES = 10

KIND_STYLE = {
    "llm": "magenta",
    "retriever": "cyan",
    "tool": "yellow",
    "prompt": "blue",
    "parser": "green",
    "agent": "bright_magenta",
    "embedding": "bright_cyan",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("show", help="print a run's span tree")
    add_db_argument(p)
    p.add_argument("run_id", help="the run id, or a unique prefix of it")
    p.add_argument("--width", type=int, default=100, help="abbreviate values to this width")
    p.set_defaults(func=run)


def _label(span: StoredSpan, width: int, prices: PriceTable) -> str:
    style = KIND_STYLE.get(span.kind, "white")
    status = "[red]✗ error[/]" if span.status == "error" else "[green]✓[/]"
    parts = [
        f"[bold]{escape(span.name)}[/] [{style}]{span.kind}[/] {status} "
        f"[dim]{fmt_ms(span.duration_ms)}[/]"
    ]
    if span.model or span.usage:
        usage = span.usage or {}
        cost = prices.cost(
            span.model, usage.get("input_tokens") or 0, usage.get("output_tokens") or 0
        )
        parts.append(
            f"  [magenta]{escape(span.model or '')}[/] tokens in {usage.get('input_tokens', '-')}"
            f" / out {usage.get('output_tokens', '-')}  cost {fmt_usd(cost)}"
        )
    if span.inputs is not None:
        parts.append(f"  [dim]in:[/]  {escape(fmt_value(span.inputs, width))}")
    if span.outputs is not None:
        parts.append(f"  [dim]out:[/] {escape(fmt_value(span.outputs, width))}")
    for entry in span.logs[:5]:
        parts.append(
            f"  [dim]log {entry.get('level')}:[/] {escape(fmt_value(entry.get('message'), width))}"
        )
    if span.error:
        parts.append(
            f"  [red]{escape(str(span.error.get('type')))}: "
            f"{escape(fmt_value(span.error.get('message'), width))}[/]"
        )
    return "\n".join(parts)


def _not_found(out: Console, store: SQLiteStore, prefix: str) -> None:
    """Say that no run has this id; for an ambiguous prefix, list the runs it matches."""
    matches = store.match_runs(prefix, _MAX_MATCHES + 1)
    if not matches:
        out.print(f"[red]No run {escape(prefix)!r} in {store.path}[/].", soft_wrap=True)
        return
    more = len(matches) > _MAX_MATCHES
    out.print(
        f"[red]{escape(prefix)!r} is the start of {'more than ' if more else ''}"
        f"{min(len(matches), _MAX_MATCHES)} run ids[/]; give more of the id:"
    )
    for r in matches[:_MAX_MATCHES]:
        out.print(
            f"  {r.run_id}  {escape(r.name or '')}  {status_text(r)}  {local_time(r.start_ns)}",
            soft_wrap=True,
        )


def run(args: argparse.Namespace) -> int:
    store = store_for(args)
    out = console()
    found = store.run(args.run_id)
    if found is None:
        _not_found(out, store, args.run_id)
        return 1
    try:
        prices = PriceTable.from_env()
    except PriceFileError as exc:
        console(stderr=True).print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
        return 2
    spans = store.spans(found.run_id)
    children: dict[str | None, list[StoredSpan]] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids else None
        children.setdefault(parent, []).append(s)
    header = (
        f"run [bold]{found.run_id}[/]  {escape(found.name or '')}  {status_text(found)}  "
        f"{fmt_ms(found.duration_ms)}  {found.span_count} spans"
    )
    if found.user_id or found.session_id:
        header += (
            f"  user {escape(found.user_id or '-')}  session {escape(found.session_id or '-')}"
        )
    tree = Tree(header)

    def add(node: Tree, parent: str | None) -> None:
        for s in children.get(parent, []):
            add(node.add(_label(s, args.width, prices)), s.span_id)

    add(tree, None)
    out.print(tree)
    return 0
