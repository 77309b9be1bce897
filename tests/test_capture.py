"""Snapshots cost what their length says: the memory bound counts ``len()``."""

from __future__ import annotations

import tracemalloc

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
