"""What a backend sees of a span: the :class:`SpanMapper` interface and the JSON helpers
mappers share. Imports only the record model, so the OTLP encoder and every backend's
mapping (OpenInference, Langfuse, LangSmith...) can build on it without importing each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import orjson

from tracemux.model import RunInfo, SpanRecord

STATUS_UNSET = 0
STATUS_OK = 1
STATUS_ERROR = 2

#: an attribute value: str, bool, int, float or a list of str
AttrValue = Any
Attrs = list[tuple[str, AttrValue]]


def json_text(value: bytes | None) -> str | None:
    """A captured JSON snapshot as text."""
    if value is None:
        return None
    return value.decode("utf-8", "replace")


def json_value(value: bytes | None) -> Any:
    """A captured JSON snapshot parsed (None when absent or unreadable)."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", "replace")


class SpanMapper(ABC):
    """What one backend sees of a span. Subclasses live with their destination."""

    scope_name: ClassVar[str] = "tracemux"
    #: status code of a span that did not fail (some SDKs send UNSET, some OK)
    ok_status: ClassVar[int] = STATUS_UNSET
    #: whether a span's own attributes may repeat a key of its run's (checked if so)
    overlapping: ClassVar[bool] = False

    def project(self, run: RunInfo) -> str | None:
        """The key spans are grouped by into resources (a project name, or None)."""
        return None

    def resource_attributes(self, project: str | None) -> Attrs:
        """Attributes of the resource the spans of ``project`` are sent under."""
        return [("service.name", "tracemux")]

    @abstractmethod
    def run_attributes(self, run: RunInfo) -> Attrs:
        """Attributes every span of ``run`` carries (computed once per run and batch)."""

    @abstractmethod
    def span_attributes(self, span: SpanRecord) -> Attrs:
        """Attributes of one span."""


def dumps(value: Any) -> str:
    """Compact JSON text (what JavaScript's ``JSON.stringify`` would give)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
