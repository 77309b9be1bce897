"""Leak reports: leaked threads grouped by creation site, and their formatting."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from tracemux.threadleak.frames import StackFrame, format_stack


def target_name(thread: threading.Thread) -> str:
    """Qualified name (``module.Qualname``) of what a thread runs: its target or run method."""
    target = getattr(thread, "_target", None)
    if target is None:
        run = type(thread).run
        if run is threading.Thread.run:
            return "<no target>"
        obj: object = run
    else:
        obj = target
    while isinstance(obj, functools.partial):
        obj = obj.func
    func = getattr(obj, "__func__", obj)
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if qualname is None:
        qualname = type(func).__qualname__
        module = type(func).__module__
    return f"{module}.{qualname}" if module else str(qualname)


@dataclass(frozen=True)
class LeakedThread:
    """A thread started inside a ledger and still alive when the report was taken."""

    thread: threading.Thread
    """The thread itself."""
    name: str
    """Thread name."""
    daemon: bool
    """Whether it is a daemon thread."""
    target: str
    """Qualified name of its target (or run method)."""
    stack: tuple[StackFrame, ...]
    """Creation stack, outermost first, ending at the ``Thread.start()`` call."""
    site_frame: StackFrame | None
    """Frame that called ``Thread.start()`` (innermost frame outside threading.py)."""
    first_party_frame: StackFrame | None
    """Innermost frame of the user's own code on the creation stack."""
    first_party_flags: tuple[bool, ...] = ()
    """For each frame of ``stack``: is it the user's own code?"""

    @property
    def site(self) -> str:
        """``path:LINE in function`` of the ``Thread.start()`` call."""
        return self.site_frame.location if self.site_frame else "<unknown>"

    @property
    def first_party(self) -> str | None:
        """``path:LINE in function`` of the innermost first-party frame, if any."""
        return self.first_party_frame.location if self.first_party_frame else None


@dataclass(frozen=True)
class LeakGroup:
    """Leaked threads sharing a creation site, a target and a first-party caller."""

    site: str
    """``path:LINE in function`` of the ``Thread.start()`` call."""
    first_party: str | None
    """Innermost frame of the user's own code that led to the site, if any."""
    target: str
    """Qualified name of the threads' target / run method."""
    threads: tuple[LeakedThread, ...]
    """The leaked threads, in start order."""

    @property
    def count(self) -> int:
        """Number of leaked threads in the group."""
        return len(self.threads)

    @property
    def names(self) -> list[str]:
        """Thread names."""
        return [t.name for t in self.threads]

    @property
    def daemon(self) -> bool:
        """True if every thread of the group is a daemon thread."""
        return all(t.daemon for t in self.threads)

    @property
    def stack(self) -> tuple[StackFrame, ...]:
        """Creation stack of the first thread of the group (outermost first)."""
        return self.threads[0].stack

    def short_stack(self, max_frames: int = 16) -> tuple[StackFrame | None, ...]:
        """The part of the creation stack worth showing, outermost first.

        From the ``Thread.start()`` call outwards through the run of first-party frames
        that contains the innermost first-party one (so the test or app function that led
        there is shown, the runner above it is not); the whole stack when no frame is
        first-party. When longer than ``max_frames`` the middle is replaced by one ``None``.
        """
        first = self.threads[0]
        frames = first.stack
        flags = first.first_party_flags
        if len(flags) == len(frames) and any(flags):
            i = max(k for k, flag in enumerate(flags) if flag)
            while i > 0 and flags[i - 1]:
                i -= 1
            frames = frames[i:]
        if max_frames > 0 and len(frames) > max_frames:
            head = max(1, max_frames // 4)
            return (*frames[:head], None, *frames[len(frames) - (max_frames - head) :])
        return tuple(frames)

    def describe(self) -> str:
        """One-line summary of the group."""
        n = self.count
        kind = "daemon " if self.daemon else ""
        what = f"{n} {kind}thread{'s' if n != 1 else ''}"
        names = ", ".join(self.names[:4]) + (", ..." if n > 4 else "")
        text = f"{what} ({names}) started at {self.site}"
        if self.first_party and self.first_party != self.site:
            text += f", called from {self.first_party}"
        return f"{text}; target {self.target}"


def _format_excerpt(group: LeakGroup, max_frames: int) -> list[str]:
    frames = group.short_stack(max_frames)
    lines: list[str] = []
    if frames and frames[0] != group.stack[0]:
        lines.append("      ...")
    chunk: list[StackFrame] = []
    for frame in (*frames, None):
        if frame is not None:
            chunk.append(frame)
            continue
        if chunk:
            lines.append(format_stack(chunk, indent="      "))
            chunk = []
        lines.append("      ...")
    lines.pop()  # the sentinel's marker
    return lines


def _group(threads: Sequence[LeakedThread]) -> tuple[LeakGroup, ...]:
    buckets: dict[tuple[str, str | None, str], list[LeakedThread]] = {}
    for t in threads:
        buckets.setdefault((t.site, t.first_party, t.target), []).append(t)
    groups = [
        LeakGroup(site=k[0], first_party=k[1], target=k[2], threads=tuple(v))
        for k, v in buckets.items()
    ]
    groups.sort(key=lambda g: -g.count)  # stable: equal counts keep first-seen order
    return tuple(groups)


@dataclass(frozen=True)
class LeakReport:
    """Threads started inside a ledger and still alive after the grace period.

    Falsy when nothing leaked. ``str(report)`` is a concise human-readable summary;
    :meth:`format` can add the creation stacks.
    """

    threads: tuple[LeakedThread, ...] = ()
    """Every leaked thread, in start order."""
    grace: float = 0.0
    """Grace period that was waited (seconds)."""
    groups: tuple[LeakGroup, ...] = field(init=False)
    """Leaked threads grouped by creation site, biggest group first."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", _group(self.threads))

    @property
    def count(self) -> int:
        """Number of leaked threads."""
        return len(self.threads)

    def __bool__(self) -> bool:
        return bool(self.threads)

    def __len__(self) -> int:
        return len(self.threads)

    def headline(self) -> str:
        """First line of the report."""
        n = self.count
        if n == 0:
            return "no threads leaked"
        noun = f"{n} thread{'s' if n != 1 else ''} leaked"
        if len(self.groups) == 1:
            g = self.groups[0]
            text = f"{noun}, {'all ' if n > 1 else ''}started at {g.site}"
            if g.first_party and g.first_party != g.site:
                text += f", called from {g.first_party}"
            return text
        return f"{noun} from {len(self.groups)} creation sites"

    def format(self, *, stacks: bool = False, max_stack: int = 16) -> str:
        """Human-readable report.

        Args:
            stacks: also show the creation stack of each group (from its first thread),
                trimmed by :meth:`LeakGroup.short_stack`.
            max_stack: show at most this many frames per stack.
        """
        if not self:
            return self.headline()
        lines = [f"{self.headline()} (alive after {self.grace:g}s grace):"]
        for g in self.groups:
            lines.append(f"  - {g.describe()}")
            if stacks:
                lines.extend(_format_excerpt(g, max_stack))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    def assert_no_leaks(self, *, stacks: bool = True) -> None:
        """Raise AssertionError with the report text if any thread leaked."""
        if self:
            raise AssertionError(self.format(stacks=stacks))
