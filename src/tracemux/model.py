"""The span record: what one finished span (or one run start) looks like to the pipeline.

Records are plain slotted objects. The hot path fills them in; after a record is handed to
the pipeline, nothing changes it again, so the export thread reads it without locks.
Captured values (inputs, outputs, metadata, log fields) are already serialized JSON bytes:
a snapshot taken when the value was recorded.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import uuid
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from tracemux.destinations.base import Destination
    from tracemux.redact import Redactor

#: The span kinds tracemux knows; anything else is recorded as ``custom``.
SPAN_KINDS: frozenset[str] = frozenset(
    {
        "chain",
        "llm",
        "tool",
        "retriever",
        "embedding",
        "agent",
        "prompt",
        "parser",
        "guardrail",
        "evaluator",
        "custom",
    }
)

STATUS_UNSET = "unset"
STATUS_OK = "ok"
STATUS_ERROR = "error"

# A private generator: an application that calls random.seed() (evals often do) must not
# make span ids repeat. Seeded from os.urandom, and again in a forked child.
_rng = random.Random()
_getrandbits = _rng.getrandbits
#: ``span_id_bits(64) or 1`` is :func:`new_span_id` inline (the hot path saves the call)
span_id_bits = _getrandbits
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)


def new_span_id() -> int:
    """A random, non-zero 64-bit span id (maps 1:1 onto an OpenTelemetry span id)."""
    return _getrandbits(64) or 1


def new_run_id() -> str:
    """A new run id: a random (version 4) UUID in its canonical text form.

    Not ``uuid.uuid4()``: it reads ``os.urandom``, which gives the GIL away and takes it
    straight back. A thread doing that on every run resets the GIL's switch timer each time,
    and the export thread, waiting for the GIL, never asks for it: it starved for seconds
    (nothing exported while one thread recorded at full speed)."""
    return str(uuid.UUID(int=_getrandbits(128), version=4))


def trace_id_for(run_id: str) -> bytes:
    """The 16-byte trace id of a run, derived deterministically from its run id.

    A run id that is a UUID maps onto its own 16 bytes (so the trace id in a backend is
    the run id without dashes); any other string is hashed with BLAKE2b.
    """
    try:
        return uuid.UUID(run_id).bytes
    except (ValueError, AttributeError, TypeError):
        return hashlib.blake2b(str(run_id).encode("utf-8", "replace"), digest_size=16).digest()


def format_span_id(span_id: int) -> str:
    """A span id as 16 lowercase hex digits, as OpenTelemetry prints it."""
    return f"{span_id:016x}"


class LogEntry(NamedTuple):
    """One log line attached to a span."""

    time_ns: int
    level: str
    message: str
    fields: bytes | None  # JSON snapshot of extra fields, or None


class ErrorInfo(NamedTuple):
    """An exception recorded on a span (message and traceback already masked)."""

    type: str
    message: str
    traceback: str


class RunInfo:
    """What every span of one run shares: identity, tenant fields and destinations."""

    __slots__ = (
        "destinations",
        "metadata",
        "name",
        "nbytes",
        "project",
        "redacted",
        "redactor",
        "root_span_id",
        "run_id",
        "session_id",
        "start_destinations",
        "start_ns",
        "tags",
        "trace_id",
        "user_id",
    )

    def __init__(
        self,
        run_id: str,
        name: str,
        destinations: tuple[Destination, ...],
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        project: str | None = None,
        tags: tuple[str, ...] = (),
        metadata: bytes | None = None,
        root_span_id: int = 0,
        start_ns: int = 0,
        redactor: Redactor | None = None,
    ) -> None:
        self.run_id = run_id
        self.trace_id = trace_id_for(run_id)
        self.name = name
        self.destinations = destinations
        self.start_destinations = tuple(d for d in destinations if d.wants_run_starts)
        self.user_id = user_id
        self.session_id = session_id
        self.project = project
        self.tags = tags
        self.metadata = metadata
        self.root_span_id = root_span_id
        self.start_ns = start_ns
        self.redactor = redactor
        self.redacted = False
        #: what the run's shared fields cost in memory, charged to its run start and its
        #: root span against the pipeline's bound (the spans of a run all point here)
        self.nbytes = (
            _RUN_OVERHEAD
            + text_bytes(name)
            + text_bytes(run_id)
            + text_bytes(user_id)
            + text_bytes(session_id)
            + text_bytes(project)
            + sum([_TAG_OVERHEAD + text_bytes(t) for t in tags])
            + (len(metadata) if metadata is not None else 0)
        )


class RunStart:
    """Emitted when a run begins, so a local store can show runs still in progress."""

    __slots__ = ("nbytes", "refs", "run")

    is_span = False

    def __init__(self, run: RunInfo) -> None:
        self.run = run
        self.nbytes = 256 + run.nbytes
        self.refs = 0


_RUN_OVERHEAD = 400  # a RunInfo and its tuples, beyond the text it holds (estimate)
_TAG_OVERHEAD = 8  # a tuple slot


def text_bytes(s: str | None) -> int:
    """What a string held by a record costs in memory: its characters at the width Python
    stores them (1, 2 or 4 bytes each) plus the object header. 0 for None."""
    if s is None:
        return 0
    return sys.getsizeof(s) if type(s) is str else 64


class SpanRecord:
    """One finished span. The run's root span has ``parent_id`` None and ``is_root`` True."""

    __slots__ = (
        "end_ns",
        "error",
        "inputs",
        "is_root",
        "kind",
        "logs",
        "metadata",
        "model",
        "name",
        "nbytes",
        "outputs",
        "parent_id",
        "refs",
        "run",
        "span_id",
        "start_ns",
        "status",
        "usage",
    )

    is_span = True

    run: RunInfo
    span_id: int
    parent_id: int | None
    is_root: bool
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    inputs: bytes | None
    outputs: bytes | None
    metadata: bytes | None
    logs: list[LogEntry] | None
    usage: dict[str, int | float] | None
    model: str | None
    error: ErrorInfo | None
    # bookkeeping of the pipeline: the record's size against the memory bound, and how
    # many destination lanes still hold it
    nbytes: int
    refs: int


Record = SpanRecord | RunStart
