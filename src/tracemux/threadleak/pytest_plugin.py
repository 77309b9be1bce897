"""pytest plugin: fail tests that leave threads running, naming where they were created.

Off unless asked: ``pytest --threadleak`` or ``threadleak = true`` in the ini file (and
``--no-threadleak`` to turn it off again). Each test's setup, call and teardown run inside
one :class:`~tracemux.threadleak.ThreadLedger`; threads started there and still alive after
the grace period (``--threadleak-grace`` / ``threadleak_grace``, default 1.0 s) fail the
test with the leak report, creation sites included.

Per test, module (``pytestmark``) or class::

    @pytest.mark.threadleak(allow=["worker-*", "target:mylib.Pool._run"])
    @pytest.mark.threadleak(enabled=False)
    @pytest.mark.threadleak(grace=3.0)

A ``threadleak`` marker without ``enabled=`` turns the check on for that test even when it
is off globally. ``threadleak_allow`` (ini, one rule per line) and ``--threadleak-allow``
add allow-list rules for the whole run (syntax: :mod:`tracemux.threadleak.allow`).

What is not the test's:

* threads alive before the test (xdist/execnet's own threads, earlier fixtures' threads);
* threads started while setting up a fixture whose scope is wider than ``function``
  (they belong to that fixture, which outlives the test);
* worker threads of an asyncio event loop's default executor while that loop is still
  open after the test (a module/session-scoped loop of pytest-asyncio owns them; a
  function-scoped loop is closed and its executor shut down by then).

A leak turns a passing test into a failure (its call report); if the test already failed
the report is appended to that failure as a section; a skipped test with a leak errors in
teardown.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Generator
from dataclasses import dataclass, field

import pytest
from _pytest.runner import runtestprotocol

from tracemux.threadleak.allow import AllowRule
from tracemux.threadleak.ledger import ThreadLedger
from tracemux.threadleak.report import LeakedThread, LeakReport

DEFAULT_GRACE = 1.0

_CURRENT = pytest.StashKey["ThreadLedger | None"]()
_MARKER_KWARGS = frozenset({"enabled", "allow", "grace"})


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the command-line and ini options."""
    group = parser.getgroup("threadleak", "thread-leak detection (tracemux.threadleak)")
    group.addoption(
        "--threadleak",
        action="store_true",
        dest="threadleak",
        default=None,
        help="fail tests that leave threads running (names where they were created)",
    )
    group.addoption(
        "--no-threadleak",
        action="store_false",
        dest="threadleak",
        help="disable --threadleak / the threadleak ini option",
    )
    group.addoption(
        "--threadleak-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"wait this long for threads to end before reporting (default {DEFAULT_GRACE})",
    )
    group.addoption(
        "--threadleak-allow",
        action="append",
        default=[],
        metavar="RULE",
        help="allow-list rule: name glob, 'target:GLOB', 'site:GLOB', 're:REGEX' (repeatable)",
    )
    parser.addini("threadleak", "enable thread-leak detection", type="bool", default=False)
    parser.addini(
        "threadleak_grace",
        f"seconds to wait for threads to end (default {DEFAULT_GRACE})",
        default=str(DEFAULT_GRACE),
    )
    parser.addini("threadleak_allow", "allow-list rules, one per line", type="linelist", default=[])


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line(
        "markers",
        "threadleak(enabled=True, allow=[...], grace=None): thread-leak check for this "
        "test: turn it on/off, allow-list threads (name glob, 'target:...', 'site:...', "
        "'re:...'), change the grace period",
    )


@dataclass
class _Settings:
    grace: float
    allow: list[AllowRule] = field(default_factory=list)


def _settings_for(item: pytest.Item) -> _Settings | None:
    config = item.config
    enabled = config.getoption("threadleak")
    if enabled is None:
        enabled = bool(config.getini("threadleak"))
    grace_opt = config.getoption("threadleak_grace")
    grace = float(grace_opt if grace_opt is not None else config.getini("threadleak_grace"))
    allow: list[AllowRule] = [
        *config.getini("threadleak_allow"),
        *config.getoption("threadleak_allow"),
    ]
    enabled_set = grace_set = False
    for marker in item.iter_markers("threadleak"):  # closest first
        if marker.args:
            raise pytest.UsageError(f"threadleak marker takes keyword arguments only: {marker}")
        unknown = set(marker.kwargs) - _MARKER_KWARGS
        if unknown:
            raise pytest.UsageError(f"unknown threadleak marker arguments: {sorted(unknown)}")
        if not enabled_set:
            enabled = bool(marker.kwargs.get("enabled", True))
            enabled_set = True
        if "grace" in marker.kwargs and not grace_set:
            grace = float(marker.kwargs["grace"])
            grace_set = True
        extra = marker.kwargs.get("allow", ())
        if isinstance(extra, str):
            extra = [extra]
        allow.extend(extra)
    if not enabled:
        return None
    return _Settings(grace=grace, allow=allow)


def owned_by_open_event_loop(leaked: LeakedThread) -> bool:
    """True for a worker of an asyncio loop's default executor whose loop is still open.

    Such threads belong to the loop (e.g. a module-scoped pytest-asyncio loop), not to
    the test that first used ``run_in_executor``.
    """
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or not leaked.name.startswith("asyncio_"):
        return False
    args = getattr(leaked.thread, "_args", None) or ()
    if not args or not isinstance(args[0], weakref.ref):
        return False
    executor = args[0]()
    if executor is None:
        return False
    for ref in gc.get_referrers(executor):
        owners = gc.get_referrers(ref) if isinstance(ref, dict) else [ref]
        for owner in owners:
            if (
                isinstance(owner, asyncio.AbstractEventLoop)
                and getattr(owner, "_default_executor", None) is executor
            ):
                return not owner.is_closed()
    return False


def _leak_text(report: LeakReport) -> str:
    return f"Thread leak: {report.format(stacks=True)}"


def _attach(reports: list[pytest.TestReport], report: LeakReport) -> None:
    text = _leak_text(report)
    by_when = {r.when: r for r in reports}
    call = by_when.get("call")
    setup = by_when.get("setup")
    teardown = by_when.get("teardown")
    if call is not None and call.passed and not hasattr(call, "wasxfail"):
        call.outcome = "failed"
        call.longrepr = text
        return
    failed = next((r for r in (call, setup) if r is not None and r.failed), None)
    if failed is not None:
        failed.sections.append(("threadleak", text))
        return
    target = teardown or reports[-1]
    if target.passed:
        target.outcome = "failed"
        target.longrepr = text
    else:
        target.sections.append(("threadleak", text))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Run setup, call and teardown inside a ledger, then report leaks with the results."""
    settings = _settings_for(item)
    if settings is None:
        return None
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    ledger = ThreadLedger(allow=settings.allow)
    item.config.stash[_CURRENT] = ledger
    try:
        with ledger:
            reports = runtestprotocol(item, nextitem=nextitem, log=False)
    finally:
        item.config.stash[_CURRENT] = None
    leaks = ledger.leaks(grace=settings.grace, allow=owned_by_open_event_loop)
    if leaks and reports:
        _attach(reports, leaks)
    for rep in reports:
        ihook.pytest_runtest_logreport(report=rep)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Threads started by fixtures wider than a function belong to the fixture."""
    ledger = request.config.stash.get(_CURRENT, None)
    if ledger is None or fixturedef.scope == "function":
        return (yield)
    with ledger.paused():
        return (yield)
