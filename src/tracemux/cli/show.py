"""``tracemux show RUN_ID``: one run's span tree with durations, status, usage and values."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.tree import Tree

from tracemux.cli.common import add_db_argument, console, fmt_ms, fmt_value, store_for
from tracemux.destinations.sqlite import StoredSpan

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


def _label(span: StoredSpan, width: int) -> str:
    style = KIND_STYLE.get(span.kind, "white")
    status = "[red]✗ error[/]" if span.status == "error" else "[green]✓[/]"
    parts = [
        f"[bold]{escape(span.name)}[/] [{style}]{span.kind}[/] {status} "
        f"[dim]{fmt_ms(span.duration_ms)}[/]"
    ]
    if span.model or span.usage:
        usage = span.usage or {}
        parts.append(
            f"  [magenta]{escape(span.model or '')}[/] tokens in {usage.get('input_tokens', '-')}"
            f" / out {usage.get('output_tokens', '-')}"
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


def run(args: argparse.Namespace) -> int:
    store = store_for(args)
    out = console()
    found = store.run(args.run_id)
    if found is None:
        out.print(
            f"[red]No run {escape(args.run_id)!r} in {store.path}[/] (or the prefix is ambiguous)."
        )
        return 1
    spans = store.spans(found.run_id)
    children: dict[str | None, list[StoredSpan]] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids else None
        children.setdefault(parent, []).append(s)
    header = (
        f"run [bold]{found.run_id}[/]  {escape(found.name or '')}  status {found.status}  "
        f"{fmt_ms(found.duration_ms)}  {found.span_count} spans"
    )
    if found.user_id or found.session_id:
        header += (
            f"  user {escape(found.user_id or '-')}  session {escape(found.session_id or '-')}"
        )
    tree = Tree(header)

    def add(node: Tree, parent: str | None) -> None:
        for s in children.get(parent, []):
            add(node.add(_label(s, args.width)), s.span_id)

    add(tree, None)
    out.print(tree)
    return 0
