"""The Destination interface: where spans go, and the exporter that sends them there.

A :class:`Destination` is an immutable value: two destinations with the same configuration
(credentials included) are equal and hash alike, so the pipeline keeps one export state
(one :class:`Exporter`, one lane) per distinct destination however many runs name it.

The exporter is created on the export thread by :meth:`Destination.open` and only ever
used there. ``export`` and ``close`` may be plain functions or coroutines: the export
thread runs an asyncio loop, so a destination that waits on the network does not hold up
the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Protocol

from tracemux.model import Record

_TAG_KEY = os.urandom(16)  # keys identity_tag(): tags cannot be compared across processes


class ExportError(Exception):
    """Raised by an exporter when a batch could not be delivered.

    ``retryable``: try the same batch again later (connection errors, timeouts, 429, 5xx).
    ``retry_after``: seconds the destination asked us to wait, if it said.
    ``too_large``: the batch is over the destination's size limit; it is split and retried.
    ``reason``: a short label for the drop counter when the batch is given up.
    The message must not contain secrets.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        too_large: bool = False,
        reason: str = "export_failed",
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.too_large = too_large
        self.reason = reason
        self.status = status


class ExportContext:
    """What an export thread lends the exporters it runs: a place to register the cleanup
    of resources they share (one HTTP client for every remote destination), run when the
    thread's session ends, after every exporter is closed.

    The pipeline makes one per export thread and sets it current on that thread before any
    :meth:`Destination.open`; exporters reach it with :meth:`current`. So destinations
    depend on this interface, never on the pipeline (as sentry's transport owns its worker).
    """

    _local = threading.local()

    def __init__(self) -> None:
        self.exit_callbacks: list[Callable[[], Any]] = []

    def on_exit(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (a function or coroutine function) when the session ends."""
        self.exit_callbacks.append(callback)

    def make_current(self) -> None:
        """Make this the context of the calling (export) thread."""
        ExportContext._local.context = self

    @staticmethod
    def current() -> ExportContext | None:
        """The calling thread's export context; None off the export thread (tests,
        benchmarks calling an exporter on their own event loop)."""
        return getattr(ExportContext._local, "context", None)


class Exporter(Protocol):
    """Sends batches for one destination. Used only on the export thread."""

    def export(self, batch: Sequence[Record]) -> Awaitable[None] | None:
        """Deliver ``batch`` or raise :class:`ExportError`."""

    def close(self) -> Awaitable[None] | None:
        """Release what the exporter holds (connections, files)."""


class Destination(ABC):
    """Where a run's spans are sent. Subclasses are frozen dataclasses."""

    #: the most records handed to one ``export`` call
    max_batch: ClassVar[int] = 512
    #: whether the exporter also wants :class:`~tracemux.model.RunStart` records
    wants_run_starts: ClassVar[bool] = False

    @abstractmethod
    def open(self) -> Exporter:
        """Create the exporter. Called once per lane, on the export thread, where
        :meth:`ExportContext.current` is the thread's export context."""

    @abstractmethod
    def describe(self) -> str:
        """A short label for logs and stats, with any secret masked.

        Labels are unique per destination: two destinations that differ only in a
        credential (two tenants whose keys end alike) must not share one, so a
        destination holding credentials adds :meth:`identity_tag` to its label.
        """

    def identity_tag(self) -> str:
        """``#`` and 8 hex digits telling this destination apart from any other in this
        process: a keyed hash (the key is random per process) of its whole
        configuration, credentials included, so it reveals nothing about them."""
        if dataclasses.is_dataclass(self):
            fields = tuple(getattr(self, f.name) for f in dataclasses.fields(self))
        else:
            fields = (type(self).__qualname__, hash(self))
        text = f"{type(self).__qualname__}{fields!r}".encode("utf-8", "surrogatepass")
        return "#" + hashlib.blake2b(text, key=_TAG_KEY, digest_size=4).hexdigest()

    def __str__(self) -> str:
        return self.describe()
