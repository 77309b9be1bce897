"""``tracemux delete``: delete runs (by id or by filter) from the store, after asking."""

from __future__ import annotations

import argparse
import sys

from tracemux.cli.common import add_db_argument, console, store_for
from tracemux.cli.selection import (
    SelectionError,
    add_selection_arguments,
    filters_of,
    selected_runs,
)

_SHOWN = 5


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("delete", help="delete runs (by id, or every run matching filters)")
    add_db_argument(p)
    add_selection_arguments(p)
    p.add_argument("--all", action="store_true", help="every run (when no id or filter)")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = store_for(args)
    out, err = console(), console(stderr=True)
    if not args.run_ids and not any(filters_of(args).values()) and not args.all:
        err.print("tracemux delete: name runs, give a filter, or pass --all", style="red")
        return 2
    try:
        runs = list(selected_runs(store, args))
    except (SelectionError, ValueError) as exc:
        err.print(f"tracemux delete: {exc}", markup=False, style="red", soft_wrap=True)
        return 2
    if not runs:
        out.print("No runs match: nothing deleted.")
        return 0
    spans = sum(r.span_count for r in runs)
    out.print(f"{len(runs)} runs ({spans} spans) in {store.path}:", markup=False, soft_wrap=True)
    for r in runs[:_SHOWN]:
        out.print(f"  {r.run_id}  {r.name or ''}", markup=False, soft_wrap=True)
    if len(runs) > _SHOWN:
        out.print(f"  … and {len(runs) - _SHOWN} more", markup=False)
    if not args.yes:
        if not sys.stdin.isatty():
            err.print("tracemux delete: not deleted; pass --yes to delete without asking")
            return 1
        answer = input(f"Delete these {len(runs)} runs? This cannot be undone. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            out.print("Nothing deleted.")
            return 1
    deleted = store.delete_runs([r.run_id for r in runs])
    out.print(f"deleted {deleted} runs from {store.path}", markup=False, soft_wrap=True)
    return 0
