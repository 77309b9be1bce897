"""Stack frames of a thread's creation site: cheap raw capture, formatting on demand.

Capturing keeps only ``(code object, instruction offset)`` pairs: no frame objects (which would
keep every local variable of the creating code alive) and no source lines. Turning them
into file names, qualified names and source text happens only when a leak is reported.
"""

from __future__ import annotations

import linecache
import os
import site
import sysconfig
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from types import CodeType
from typing import NamedTuple

RawFrames = tuple[tuple[CodeType, int], ...]
"""Innermost-first ``(code, f_lasti)`` pairs as captured at ``Thread.start()``."""

FirstPartyRule = Callable[[str], bool]
"""Predicate on an absolute file name: is this the user's own code?"""

_THREADING_FILE = os.path.normcase(os.path.abspath(threading.__file__))
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_LEAKCHECK_FILE = os.path.join(os.path.dirname(_PACKAGE_DIR), "cli", "leakcheck.py")


class StackFrame(NamedTuple):
    """One frame of a creation stack."""

    filename: str
    """Absolute file name as recorded by the code object."""
    lineno: int
    """Line being executed in that frame."""
    function: str
    """Qualified name of the function (plain name on Python 3.10)."""

    @property
    def location(self) -> str:
        """``short/path.py:LINE in function``."""
        return f"{display_path(self.filename)}:{self.lineno} in {self.function}"

    def source_line(self) -> str:
        """The stripped source line, or ``""`` when unavailable."""
        return linecache.getline(self.filename, self.lineno).strip()


def code_lineno(code: CodeType, lasti: int) -> int:
    """Line number of the instruction at byte offset ``lasti`` (what ``f_lineno`` gives)."""
    if lasti >= 0:
        for start, end, line in code.co_lines():
            if start <= lasti < end:
                return line if line is not None else code.co_firstlineno
    return code.co_firstlineno


def to_frames(raw: RawFrames) -> tuple[StackFrame, ...]:
    """Convert captured raw frames to :class:`StackFrame` s, outermost first."""
    return tuple(
        StackFrame(
            code.co_filename,
            code_lineno(code, lasti),
            getattr(code, "co_qualname", code.co_name),
        )
        for code, lasti in reversed(raw)
    )


def start_site(frames: Sequence[StackFrame]) -> StackFrame | None:
    """Return the frame that called ``Thread.start()``: the innermost one outside threading.py."""
    for frame in reversed(frames):
        if os.path.normcase(os.path.abspath(frame.filename)) != _THREADING_FILE:
            return frame
    return frames[-1] if frames else None


def _norm_dir(path: str) -> str:
    return os.path.join(os.path.normcase(os.path.realpath(path)), "")


@lru_cache(maxsize=1)
def _library_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (third-party dirs, stdlib dirs), normalised with a trailing separator."""
    third: set[str] = set()
    for key in ("purelib", "platlib"):
        third.add(sysconfig.get_paths()[key])
    try:
        third.update(site.getsitepackages())
    except AttributeError:  # pragma: no cover - old virtualenv's site.py
        pass
    user_site = getattr(site, "USER_SITE", None)
    if user_site:
        third.add(user_site)
    stdlib: set[str] = set()
    for key in ("stdlib", "platstdlib"):
        stdlib.add(sysconfig.get_paths()[key])
    stdlib.add(os.path.dirname(os.__file__))
    third_dirs = tuple(sorted({_norm_dir(p) for p in third}, key=len, reverse=True))
    std_dirs = tuple(sorted({_norm_dir(p) for p in stdlib}, key=len, reverse=True))
    return third_dirs, std_dirs


def _is_library(filename: str) -> bool:
    if filename.startswith("<"):
        return True
    parts = filename.replace("\\", "/").split("/")
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    path = os.path.normcase(os.path.realpath(filename))
    third, std = _library_dirs()
    return any(path.startswith(d) for d in third) or any(path.startswith(d) for d in std)


@lru_cache(maxsize=8192)
def default_first_party(filename: str) -> bool:
    """Default rule: code that is not the standard library, not installed third-party code
    (``site-packages``/``dist-packages``), not frozen or generated (``<...>``), and not
    tracemux's own leak detector."""
    if _is_library(filename):
        return False
    path = os.path.abspath(filename)
    return not (path.startswith(_PACKAGE_DIR + os.sep) or path == _LEAKCHECK_FILE)


def prefix_rule(prefixes: Iterable[str | os.PathLike[str]]) -> FirstPartyRule:
    """Return a first-party rule accepting files under any of ``prefixes``."""
    dirs = tuple(_norm_dir(os.fspath(p)) for p in prefixes)

    def rule(filename: str) -> bool:
        path = os.path.normcase(os.path.realpath(filename))
        return any(path.startswith(d) or path + os.sep == d for d in dirs)

    return rule


def make_first_party_rule(
    spec: FirstPartyRule | Iterable[str | os.PathLike[str]] | None,
) -> FirstPartyRule:
    """Normalise a ``first_party`` argument: a predicate, path prefixes, or None (default)."""
    if spec is None:
        return default_first_party
    if callable(spec):
        return spec
    return prefix_rule(spec)


def innermost_first_party(frames: Sequence[StackFrame], rule: FirstPartyRule) -> StackFrame | None:
    """Return the innermost frame for which ``rule`` holds, or None."""
    for frame in reversed(frames):
        if rule(frame.filename):
            return frame
    return None


@lru_cache(maxsize=8192)
def _display_path(filename: str, cwd: str) -> str:
    if filename.startswith("<"):
        return filename
    norm = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        idx = norm.rfind(marker)
        if idx >= 0:
            return norm[idx + len(marker) :]
    path = os.path.abspath(filename)
    _, std = _library_dirs()
    real = os.path.normcase(os.path.realpath(path))
    for d in std:
        if real.startswith(d):
            return real[len(d) :]
    cwd_dir = os.path.join(cwd, "")
    if path.startswith(cwd_dir):
        return path[len(cwd_dir) :]
    return path


def display_path(filename: str) -> str:
    """Short form of a file name: relative to site-packages, the stdlib or the cwd."""
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    return _display_path(filename, cwd)


def format_stack(frames: Sequence[StackFrame], *, indent: str = "  ") -> str:
    """Format frames (outermost first) like a traceback, with source lines."""
    lines: list[str] = []
    for frame in frames:
        lines.append(
            f'{indent}File "{display_path(frame.filename)}", line {frame.lineno}, '
            f"in {frame.function}"
        )
        src = frame.source_line()
        if src:
            lines.append(f"{indent}  {src}")
    return "\n".join(lines)
