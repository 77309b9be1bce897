"""``tracemux leakcheck``: run a Python program and watch the threads it leaves running.

Usage::

    tracemux leakcheck [--every SECONDS] [--max-growth N] [--grace SECONDS] -- python app.py ARGS
    tracemux leakcheck -- python -m package.module ARGS
    tracemux leakcheck -- app.py ARGS

The program runs in this process (:mod:`runpy`, with its own ``sys.argv``) inside a
:class:`~tracemux.threadleak.ThreadLedger`, so every thread it starts has its creation site
recorded. One sampler thread (``tracemux-leakcheck-sampler``, a daemon, the only thread of
ours) samples the program's live threads every ``--every`` seconds and prints, on stderr,
how the count changed per creation site. When the program ends (or on Ctrl+C) a summary is
printed; the exit status is 3 when more than ``--max-growth`` of the program's threads are
still alive after the grace period, else the program's own exit status.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.text import Text

from tracemux.threadleak import LeakReport, ThreadLedger

SAMPLER_NAME = "tracemux-leakcheck-sampler"
EXIT_LEAKED = 3
_PYTHON_RE = re.compile(r"^python(\d+(\.\d+)?)?(\.exe)?$")


@dataclass
class Target:
    """What to run: a script path, a module (``-m``) or code (``-c``), with its argv."""

    kind: str  # "path" | "module" | "code"
    value: str
    argv: list[str] = field(default_factory=list)


def _is_python(word: str) -> bool:
    if _PYTHON_RE.match(os.path.basename(word)):
        return True
    try:
        return os.path.realpath(word) == os.path.realpath(sys.executable)
    except OSError:
        return False


def parse_command(command: Sequence[str]) -> Target:
    """Parse ``[python] script.py args`` / ``[python] -m module args`` / ``python -c code``."""
    cmd = list(command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise ValueError("nothing to run: give a command after --, e.g. -- python app.py")
    if _is_python(cmd[0]):
        cmd = cmd[1:]
        while cmd and cmd[0] in ("-u", "-B", "-s", "-E"):
            cmd = cmd[1:]  # harmless interpreter flags
        if not cmd:
            raise ValueError("no script or -m module given to python")
    first = cmd[0]
    if first in ("-m", "-c"):
        if len(cmd) < 2:
            raise ValueError(f"python {first} needs an argument")
        kind = "module" if first == "-m" else "code"
        argv0 = cmd[1] if kind == "module" else "-c"
        return Target(kind, cmd[1], [argv0, *cmd[2:]])
    if first.startswith("-"):
        raise ValueError(f"unsupported python option: {first}")
    return Target("path", first, [first, *cmd[1:]])


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``leakcheck`` command to the ``tracemux`` parser."""
    parser = subparsers.add_parser(
        "leakcheck",
        help="run a Python program and report the threads it leaks, by creation site",
        description=(
            "Run a Python program in-process, record where each of its threads was "
            "created, print thread growth by creation site as it runs and a summary at the "
            "end (also on Ctrl+C). Exit status 3 if more than --max-growth of its threads "
            "are still alive at the end."
        ),
        usage="%(prog)s [--every S] [--max-growth N] [--grace S] [--db PATH] "
        "-- python app.py [ARGS...]",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="the program's local store: sets TRACEMUX_DB for it",
    )
    parser.add_argument(
        "--every", type=float, default=2.0, metavar="SECONDS", help="sampling period (default 2.0)"
    )
    parser.add_argument(
        "--max-growth",
        type=int,
        default=0,
        metavar="N",
        help="threads allowed to remain alive at the end (default 0)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="wait this long for threads to end after the program (default 1.0)",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="RULE",
        help="allow-list rule: name glob, 'target:GLOB', 'site:GLOB', 're:REGEX'",
    )
    parser.add_argument("--stacks", action="store_true", help="show creation stacks in the summary")
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="the program: [python] script.py ARGS or [python] -m module ARGS",
    )
    parser.set_defaults(func=run)


def _site_counts(report: LeakReport) -> Counter[tuple[str, str | None]]:
    counts: Counter[tuple[str, str | None]] = Counter()
    for group in report.groups:
        counts[(group.site, group.first_party)] += group.count
    return counts


def _site_label(site: str, first_party: str | None) -> str:
    if first_party and first_party != site:
        return f"{site} (from {first_party})"
    return site


class _Sampler:
    """The one sampler thread: prints growth of live threads by creation site."""

    def __init__(self, ledger: ThreadLedger, every: float, console: Console) -> None:
        self._ledger = ledger
        self._every = max(0.05, every)
        self._console = console
        self._stop = threading.Event()
        self._previous: Counter[tuple[str, str | None]] = Counter()
        self._started = time.monotonic()
        self.peak = 0
        self._thread = threading.Thread(target=self._loop, name=SAMPLER_NAME, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> None:
        report = self._ledger.leaks(grace=0)
        self.peak = max(self.peak, report.count)
        counts = _site_counts(report)
        changed = {k: counts[k] - self._previous[k] for k in counts | self._previous}
        changed = {k: v for k, v in changed.items() if v}
        if changed:
            total = report.count
            delta = total - sum(self._previous.values())
            elapsed = time.monotonic() - self._started
            line = Text(
                f"[leakcheck {elapsed:7.1f}s] {total} live thread(s) ({delta:+d})", style="bold"
            )
            self._console.print(line, highlight=False)
            for (site, fp), diff in sorted(changed.items(), key=lambda kv: -abs(kv[1])):
                style = "red" if diff > 0 else "green"
                self._console.print(
                    Text(
                        f"    {diff:+d} (now {counts[(site, fp)]}) {_site_label(site, fp)}",
                        style=style,
                    ),
                    highlight=False,
                )
        self._previous = counts

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.sample()
            except Exception:  # never let the sampler kill the program
                self._console.print_exception()


def _exit_status(exc: SystemExit, console: Console) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    console.print(str(code), markup=False, highlight=False)
    return 1


def _run_target(target: Target) -> None:
    if target.kind == "path":
        runpy.run_path(target.value, run_name="__main__")
    elif target.kind == "module":
        runpy.run_module(target.value, run_name="__main__", alter_sys=True)
    else:
        code = compile(target.value, "<string>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


def _run_under(ledger: ThreadLedger, target: Target, console: Console) -> tuple[int, bool]:
    """Run the program as ``python`` would (its argv, its folder first on sys.path) with
    the ledger recording; returns its exit status and whether it was interrupted."""
    saved_argv, saved_path = sys.argv, list(sys.path)
    status = 0
    interrupted = False
    with ledger:
        try:
            sys.argv = list(target.argv)
            path0 = (
                os.path.dirname(os.path.abspath(target.value))
                if target.kind == "path"
                else os.getcwd()
            )
            sys.path.insert(0, path0)
            _run_target(target)
        except SystemExit as exc:
            status = _exit_status(exc, console)
        except KeyboardInterrupt:
            interrupted = True
            status = 130
        except BaseException:
            traceback.print_exc()
            status = 1
        finally:
            sys.argv = saved_argv
            sys.path[:] = saved_path
    return status, interrupted


def _print_summary(
    console: Console,
    args: argparse.Namespace,
    report: LeakReport,
    peak: int,
    status: int,
    interrupted: bool,
    elapsed: float,
) -> None:
    leaked = report.count > args.max_growth
    how = "interrupted (Ctrl+C)" if interrupted else f"exited with status {status}"
    console.print(
        Text(
            f"tracemux leakcheck summary: program {how} after {elapsed:.1f}s; "
            f"peak {peak} live thread(s) it started, {report.count} still alive "
            f"(max growth {args.max_growth})",
            style="bold",
        ),
        highlight=False,
    )
    if report:
        console.print(
            Text(report.format(stacks=args.stacks), style="red" if leaked else ""), highlight=False
        )
        non_daemon = sum(1 for t in report.threads if not t.daemon)
        if interrupted and non_daemon:
            console.print(
                f"{non_daemon} non-daemon thread(s) still running: Python waits for "
                "them at exit (press Ctrl+C again to stop)",
                markup=False,
            )


def run(args: argparse.Namespace) -> int:
    """Run the program under a ledger; return its exit status, or 3 on thread growth."""
    console = Console(stderr=True, soft_wrap=True)
    try:
        target = parse_command(args.command)
    except ValueError as exc:
        console.print(f"tracemux leakcheck: {exc}", markup=False, highlight=False)
        return 2
    if target.kind == "path" and not os.path.exists(target.value):
        console.print(f"tracemux leakcheck: no such file: {target.value}", markup=False)
        return 2
    if args.db:
        os.environ["TRACEMUX_DB"] = args.db
    ledger = ThreadLedger(all_threads=True, allow=[SAMPLER_NAME, *args.allow])
    sampler = _Sampler(ledger, args.every, console)
    sampler.start()  # before the ledger: never part of the program's threads
    started = time.monotonic()
    status, interrupted = _run_under(ledger, target, console)
    elapsed = time.monotonic() - started
    try:
        sampler.stop()
        report = ledger.leaks(grace=0.0 if interrupted else args.grace)
    except KeyboardInterrupt:
        interrupted = True
        report = ledger.leaks(grace=0.0)
    sampler.peak = max(sampler.peak, report.count)
    leaked = report.count > args.max_growth
    _print_summary(console, args, report, sampler.peak, status, interrupted, elapsed)
    return EXIT_LEAKED if leaked else status


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m tracemux.cli.leakcheck [options] -- program``."""
    parser = argparse.ArgumentParser(prog="tracemux")
    register(parser.add_subparsers(dest="command_name"))
    args = parser.parse_args(["leakcheck", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
