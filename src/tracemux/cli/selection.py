"""Which runs a command acts on: run ids (unique prefixes) or filters, shared by
``tracemux export`` and ``tracemux delete``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from tracemux.destinations.sqlite import RUN_STATUS_FILTERS, SQLiteStore, StoredRun

_PAGE = 500


class SelectionError(ValueError):
    """Run ids or filters that select nothing usable (the message says why)."""


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    """``--search``, ``--status``, ``--user`` and ``--session``: the filters of every
    command that lists or selects runs."""
    p.add_argument(
        "--search",
        default=None,
        help="only runs whose id or name contains this, or one of whose spans has these "
        "words in its name, inputs, outputs, logs or error (full-text)",
    )
    p.add_argument(
        "--status",
        choices=RUN_STATUS_FILTERS,
        default=None,
        help="error: every run where something failed (the run, or one of its spans); "
        "failed: only runs that failed as a whole; partial: runs that went on although "
        "a span failed",
    )
    p.add_argument("--user", default=None, help="only this user's runs")
    p.add_argument("--session", default=None, help="only this session's runs")


def add_selection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs (a unique id prefix each)")
    add_filter_arguments(p)


def filters_of(args: argparse.Namespace) -> dict[str, str | None]:
    return {
        "search": args.search,
        "status": args.status,
        "user_id": args.user,
        "session_id": args.session,
    }


def resolve_ids(store: SQLiteStore, prefixes: list[str]) -> list[StoredRun]:
    """The runs named by id prefixes; raises :class:`SelectionError` naming each prefix
    that matches no run or several."""
    found, problems = [], []
    for prefix in prefixes:
        run = store.run(prefix)
        if run is not None:
            found.append(run)
            continue
        matches = store.match_runs(prefix, 4)
        if not matches:
            problems.append(f"no run {prefix!r}")
        else:
            listed = ", ".join(m.run_id for m in matches[:3])
            problems.append(
                f"{prefix!r} matches several runs ({listed}{', …' if len(matches) > 3 else ''})"
            )
    if problems:
        raise SelectionError("; ".join(problems))
    return list({r.run_id: r for r in found}.values())


def selected_runs(store: SQLiteStore, args: argparse.Namespace) -> Iterator[StoredRun]:
    """The runs the arguments name (ids), else every run matching the filters, newest
    first, read page by page."""
    if args.run_ids:
        yield from resolve_ids(store, args.run_ids)
        return
    after = None
    while True:
        page = store.runs_page(_PAGE, after=after, **filters_of(args))
        yield from page.runs
        if page.next is None:
            return
        after = page.next
