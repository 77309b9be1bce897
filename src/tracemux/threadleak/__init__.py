"""Thread-leak detection: creation sites, a pytest plugin and a CLI.

Example::

    from tracemux.threadleak import ThreadLedger

    with ThreadLedger() as ledger:  # records where every thread started inside was created
        run_something()
    report = ledger.leaks(grace=1.0)  # still alive after the grace period
    for group in report.groups:  # grouped by creation site, biggest first
        print(group.count, group.site, group.first_party, group.target)
    report.assert_no_leaks()

The pytest plugin (``pytest --threadleak``) lives in :mod:`tracemux.threadleak.pytest_plugin`
and the command line in ``tracemux leakcheck``.
"""

from tracemux.threadleak.allow import AllowRule, compile_allow
from tracemux.threadleak.frames import StackFrame, default_first_party
from tracemux.threadleak.ledger import ThreadLedger
from tracemux.threadleak.report import LeakedThread, LeakGroup, LeakReport

__all__ = [
    "AllowRule",
    "LeakGroup",
    "LeakReport",
    "LeakedThread",
    "StackFrame",
    "ThreadLedger",
    "compile_allow",
    "default_first_party",
]
