"""Allow-lists: which still-running threads are expected and must not be reported.

A rule is one of:

* a string ``"[name:|target:|site:][re:]PATTERN"``: an :mod:`fnmatch` glob (or, after
  ``re:``, a regular expression searched anywhere) matched against the thread name
  (the default), the qualified target name, or the creation site
  (``"path:LINE in function"``; the absolute file name form is tried too);
* a compiled :class:`re.Pattern`, searched in the thread name;
* a callable taking a :class:`~tracemux.threadleak.report.LeakedThread` and returning True
  for allowed threads.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable

from tracemux.threadleak.report import LeakedThread

AllowRule = str | re.Pattern[str] | Callable[[LeakedThread], bool]
"""One allow-list entry (see the module docstring)."""

AllowPredicate = Callable[[LeakedThread], bool]

_FIELDS = ("name", "target", "site")


def _field_values(thread: LeakedThread, field: str) -> list[str]:
    if field == "name":
        return [thread.name]
    if field == "target":
        return [thread.target]
    values = [thread.site]
    if thread.site_frame is not None:
        f = thread.site_frame
        values.append(f"{f.filename}:{f.lineno} in {f.function}")
    return values


def compile_rule(rule: AllowRule) -> AllowPredicate:
    """Turn one allow-list entry into a predicate."""
    if isinstance(rule, re.Pattern):
        pattern = rule
        return lambda t: pattern.search(t.name) is not None
    if callable(rule):
        return rule
    if not isinstance(rule, str):
        raise TypeError(f"unsupported allow rule: {rule!r}")
    field, sep, rest = rule.partition(":")
    if sep and field in _FIELDS:
        spec = rest
    else:
        field, spec = "name", rule
    if spec.startswith("re:"):
        regex = re.compile(spec[3:])

        def matches(value: str) -> bool:
            return regex.search(value) is not None
    else:
        glob = spec

        def matches(value: str) -> bool:
            return fnmatch.fnmatchcase(value, glob)

    fld = field
    return lambda t: any(matches(v) for v in _field_values(t, fld))


def compile_allow(rules: Iterable[AllowRule]) -> AllowPredicate:
    """Combine allow-list entries into one predicate (True = allowed, not a leak)."""
    predicates = [compile_rule(r) for r in rules]
    if not predicates:
        return lambda t: False
    return lambda t: any(p(t) for p in predicates)
