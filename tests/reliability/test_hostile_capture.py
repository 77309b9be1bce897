"""Capturing hostile values: never a crash, user code called once, every byte counted.

- A value whose ``__repr__`` mutates the container being recorded, or another thread
  mutating it meanwhile, crashed the process with SIGSEGV inside ``orjson.dumps`` (issue
  13.1). Each case runs in a child process, so a crash fails the test instead of the suite.
- A slow ``__repr__`` / ``__str__`` is called once per value, in capture and in
  ``set_error`` (13.11).
- The memory bound counts tags, usage keys, ids and every other captured string (13.6).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import run_python, write_script
from tracemux import TracingService
from tracemux.destinations import SQLiteStore
from tracemux.destinations.base import Destination
from tracemux.model import Record

pytestmark = pytest.mark.reliability

_PRELUDE = """
import enum, sys, threading, time
from tracemux import TracingService
from tracemux.destinations import SQLiteStore

svc = TracingService([SQLiteStore(sys.argv[1])])

def for_a_while(seconds, body):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        body()
        n += 1
    return n

def in_background(mutate):
    stop = threading.Event()
    def loop():
        while not stop.is_set():
            mutate()
    t = threading.Thread(target=loop)
    t.start()
    return stop, t
"""

_CASES = {
    # the reproduction of the issue: __repr__ refills the dict orjson is walking
    "repr_refills_the_dict": """
class Lazy:
    def __init__(s, c): s.c = c
    def __repr__(s):
        s.c.clear(); s.c.update({f"x{i}": [i] for i in range(1000)}); return "x"
c = {f"k{i}": [i] for i in range(200)}
c["k0"] = Lazy(c)
svc.trace_run("f", inputs={"c": c}).end()
""",
    # __repr__ shrinks the list orjson is walking: orjson reads past the freed items
    "repr_empties_the_list": """
class Shrink:
    def __init__(s, c): s.c = c
    def __repr__(s):
        s.c.append(list(range(100000))); s.c.clear(); return "x"
c = [[i] for i in range(200)]
c[0] = Shrink(c)
svc.trace_run("f", inputs={"c": c}).end()
""",
    # another thread rewrites a dict of sets while it is recorded (no hostile repr at all)
    "thread_rewrites_a_dict_of_sets": """
d = {f"k{i}": {i} for i in range(300)}
def mutate():
    d.clear(); d.update({f"k{j}": {j} for j in range(300)})
stop, t = in_background(mutate)
for_a_while(1.5, lambda: svc.trace_run("f", inputs=d).end())
stop.set(); t.join()
""",
    # another thread empties and refills a list of Enum members: orjson's Enum encoder runs
    # Python code (the ``.value`` getter), where the GIL can pass to the mutating thread
    "thread_empties_a_list_of_enums": """
sys.setswitchinterval(1e-6)
class E(enum.Enum):
    A = 1
items = [E.A] * 2000
def mutate():
    items.clear(); items.extend([E.A] * 2000)
stop, t = in_background(mutate)
for_a_while(1.5, lambda: svc.trace_run("f", inputs=items).end())
stop.set(); t.join()
""",
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_recording_a_value_mutated_while_captured_never_crashes(tmp_path: Path, case: str) -> None:
    code = _PRELUDE + _CASES[case] + "\nassert svc.flush(30)\nsvc.shutdown(10)\nprint('ok')\n"
    script = write_script(tmp_path, "mutate.py", code)
    db = tmp_path / "t.db"
    proc = run_python(script, str(db), timeout=120)  # asserts exit code 0 (SIGSEGV: -11)
    assert proc.stdout.strip().endswith("ok")
    store = SQLiteStore(db)
    runs = store.runs(limit=5)
    assert runs and all(r.name == "f" for r in runs)
    (root,) = store.spans(runs[0].run_id)
    assert root.inputs is not None


# -- user code called once -----------------------------------------------------------------


class _Slow:
    """A value whose repr and str are slow and count their calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __repr__(self) -> str:
        self.calls += 1
        time.sleep(0.05)
        return "slow" * 10_000  # big: the value must be truncated

    __str__ = __repr__


class _SlowError(Exception):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __str__(self) -> str:
        self.calls += 1
        time.sleep(0.05)
        return "it went wrong"


def test_a_slow_repr_is_called_once_per_value(
    make_service: Callable[..., TracingService], store: SQLiteStore
) -> None:
    svc = make_service([store], max_value_bytes=1024)
    slow_in, slow_meta, slow_out = _Slow(), _Slow(), _Slow()
    err = _SlowError()
    with svc.trace_run("r") as run:
        span = run.span("s", inputs={"v": slow_in, "pad": "p" * 5000}, metadata=[slow_meta])
        span.set_outputs(slow_out)
        try:
            raise err
        except _SlowError as exc:
            span.set_error(exc)
        span.end()
    assert svc.flush(10)
    assert (slow_in.calls, slow_meta.calls, slow_out.calls) == (1, 1, 1)
    assert err.calls == 1
    (child,) = [s for s in store.spans(run.run_id) if s.name == "s"]
    assert "truncated by tracemux" in json.dumps(child.inputs)
    assert child.error is not None and "it went wrong" in json.dumps(child.error)


# -- every byte counts against the memory bound -----------------------------------------------

_gate = threading.Event()


@dataclass(frozen=True)
class _Gated(Destination):
    """Holds every batch until the test opens the gate (the loop stays responsive)."""

    name: str

    def describe(self) -> str:
        return f"gated:{self.name}"

    def open(self) -> Any:
        return _GatedExporter()


class _GatedExporter:
    async def export(self, batch: Sequence[Record]) -> None:
        while not _gate.is_set():
            await asyncio.sleep(0.02)

    def close(self) -> None:
        pass


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    _gate.clear()
    yield _gate
    _gate.set()


BOUND = 2 * 1024 * 1024


@pytest.mark.parametrize("where", ["tags", "usage_keys"])
def test_the_memory_bound_counts_tags_and_usage_keys(
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable[..., Any],
    gate: threading.Event,
    where: str,
) -> None:
    pipeline_settings(max_queue_bytes=BOUND, max_queue_spans=100_000)
    svc = make_service([_Gated(where)])
    before = svc.stats()["dropped"].get("queue_bytes", 0)
    per_run = 100 * 1024
    for i in range(400):  # 40 MiB captured in all, against a 2 MiB bound
        if where == "tags":
            run = svc.trace_run("r", tags=[f"{i}-{t}-" + "t" * 1000 for t in range(100)])
        else:
            run = svc.trace_run("r")
            run.set_usage(**{f"k{i}_{n}_" + "k" * 1000: 1 for n in range(100)})
        run.end()
    stats = svc.stats()
    dropped = stats["dropped"].get("queue_bytes", 0) - before
    assert stats["queue_bytes"] <= BOUND
    assert dropped >= 300  # at most ~20 runs of 100 KB fit in 2 MiB
    held = stats["queue_size"]  # runs held (the destination wants no run-start records)
    assert held >= 1
    assert stats["queue_bytes"] >= held * per_run * 0.9  # what is held is what is counted
    gate.set()
    assert svc.flush(20)
