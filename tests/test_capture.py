"""Snapshots cost what their length says: the memory bound counts ``len()``."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracemux.capture import Capturer


def test_a_snapshot_holds_no_more_memory_than_its_length():
    cap = Capturer()
    values = [{"question": f"What is RAG? #{i}", "k": i} for i in range(5000)]
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        kept = [cap.value(v) for v in values]
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_value = (after - before) / len(kept)
    mean_len = sum(len(b) for b in kept) / len(kept)
    # a bytes object's header is ~33 bytes, the list slot 8: anything near 4 KiB means the
    # serializer's whole buffer is being kept alive by each snapshot
    assert per_value < mean_len + 100, (per_value, mean_len)


# -- the fast paths give the bytes the general path gives ------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too: orjson refuses them, the general path decides
    | st.floats()  # NaN and infinities included
    | st.text()  # lone surrogates included
)
_keys = st.text() | st.integers() | st.booleans() | st.none() | st.floats()
_flat_dicts = st.dictionaries(_keys, _scalars, max_size=6)
_values = (
    _scalars
    | _flat_dicts
    | st.lists(_scalars, max_size=6)
    | st.lists(_flat_dicts, max_size=4)
    | st.lists(st.lists(_scalars, max_size=3) | _flat_dicts | _scalars, max_size=4)
    | st.dictionaries(st.text(), _flat_dicts | st.lists(_scalars, max_size=3), max_size=3)
)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_the_fast_paths_capture_exactly_what_the_general_path_captures(value):
    cap = Capturer(max_value_bytes=256)  # small: some examples are truncated
    assert cap.value(value) == cap.general(value)


class _Str(str):
    def __str__(self) -> str:
        return "renamed"


class _Color(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        {_Str("k"): 1},  # a str subclass key: its own __str__ is the key
        {"k": _Str("v")},
        [{"role": "user", "content": _Color.RED}],  # an Enum inside a list of dicts
        [{"role": "user"}, {_Str("k"): 1}],
        [{"a": 1}, [1]],
        [{"a": [1, 2]}],  # a nested list: not flat, marshal copies it
        {"text": "\ud800 lone surrogate"},
        [{"n": 2**70}],
        {"x": float("nan"), "y": float("inf")},
        {True: 1, None: 2, 1.5: 3},
        "x" * 1000,  # over the budget: truncated
        [{"k": "v" * 100}] * 5,
    ],
    ids=repr,
)
def test_odd_values_of_the_fast_shapes_are_captured_as_the_general_path_does(value):
    cap = Capturer(max_value_bytes=256)
    got = cap.value(value)
    assert got == cap.general(value)
    json.loads(got)  # valid JSON, always
    assert len(got) <= 256


def test_a_list_of_dicts_is_a_snapshot_later_changes_do_not_reach():
    cap = Capturer()
    messages = [{"role": "user", "content": "hi"}]
    data = cap.value(messages)
    messages[0]["content"] = "changed"
    messages.append({"role": "assistant"})
    assert json.loads(data) == [{"role": "user", "content": "hi"}]


_MUTATED_WHILE_CAPTURED = """
import sys, threading, time
from tracemux.capture import Capturer

sys.setswitchinterval(1e-6)
cap = Capturer()
messages = [{"role": "user", "content": "x" * i} for i in range(50)]
stop = threading.Event()

def mutate():
    while not stop.is_set():
        for m in messages:
            m.clear()
            m.update({f"k{j}": j for j in range(20)})
        messages.clear()
        messages.extend({"role": "user", "content": str(i)} for i in range(50))

t = threading.Thread(target=mutate)
t.start()
end = time.monotonic() + 1.5
n = 0
while time.monotonic() < end:
    assert cap.value(messages) is not None
    n += 1
stop.set()
t.join()
print("ok", n)
"""


def test_a_list_of_dicts_rewritten_by_another_thread_never_crashes_the_capture(tmp_path):
    # the fast path for chat messages copies each dict with C calls only: another thread
    # rewriting the list and its dicts meanwhile must never crash the process
    script = tmp_path / "mutate.py"
    script.write_text(_MUTATED_WHILE_CAPTURED)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok")
