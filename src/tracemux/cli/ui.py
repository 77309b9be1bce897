"""``tracemux ui``: serve the local trace viewer over a store.

Usage::

    tracemux ui [--db PATH] [--host 127.0.0.1] [--port 8765] [--open]

The store is ``--db``, else ``TRACEMUX_DB``, else the default store in the user's data
directory. The server binds to loopback unless ``--host`` says otherwise, prints its URL
and the store's path, and runs until Ctrl+C. ``--port 0`` picks a free port.
"""

from __future__ import annotations

import argparse
import logging
import webbrowser
from typing import Any

from rich.console import Console

from tracemux.cli.common import add_db_argument, store_for
from tracemux.cost import PriceFileError
from tracemux.destinations.stores import store_exists
from tracemux.ui.server import DEFAULT_HOST, DEFAULT_PORT, UIServer, is_loopback

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``ui`` command to the ``tracemux`` parser."""
    parser = subparsers.add_parser(
        "ui",
        help="serve the local trace viewer (read-only web page over the store)",
        description=(
            "Serve a read-only web page over the local store: the runs, newest first, "
            "and each run's spans as a waterfall. Runs until Ctrl+C."
        ),
    )
    add_db_argument(parser)
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind, 0 for any free port (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--open", action="store_true", help="open the page in the default web browser"
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="refuse to delete runs (deleting also needs a loopback bind and the page's token)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``tracemux ui`` with parsed arguments; returns the exit code."""
    console = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    store = store_for(args)
    try:
        server = UIServer(
            store, host=args.host, port=args.port, read_only=getattr(args, "read_only", False)
        )
    except PriceFileError as exc:
        err.print(f"tracemux ui: {exc}", style="red", markup=False, highlight=False)
        return 2
    except OSError as exc:
        err.print(
            f"tracemux ui: cannot listen on {args.host}:{args.port}: {exc}",
            style="red",
            markup=False,
            highlight=False,
        )
        return 1
    server.start()
    try:
        url = server.url
        console.print(f"[bold]tracemux ui[/bold] serving [link={url}]{url}[/link]")
        console.print(f"store: {store.path}", markup=False, highlight=False)
        if not store_exists(store):
            console.print("the store does not exist yet: runs appear once recorded", style="yellow")
        if not is_loopback(args.host):
            err.print(
                f"warning: listening on {args.host}: anyone who can reach this address "
                "can read your traces",
                style="yellow",
                markup=False,
            )
        console.print("press Ctrl+C to stop", style="dim")
        if args.open:
            try:
                webbrowser.open(url)
            except Exception as exc:
                log.warning("tracemux ui: could not open a browser: %s", exc)
        while not server.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        clean = server.stop()
    console.print("tracemux ui: stopped")
    return 0 if clean else 1
