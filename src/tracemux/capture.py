"""Snapshots of user values: serialize and truncate, on the caller's thread.

Every value a caller hands to tracemux (inputs, outputs, metadata, log fields) is turned
into JSON bytes at once, so later mutation of the caller's objects cannot change what is
exported. The fast path copies the value with ``marshal`` (C code that accepts only exact
builtin types) and hands the copy to one ``orjson.dumps`` with no ``default`` hook: orjson
holds borrowed references into a list or dict while it serializes it, and Python code
running meanwhile (a ``default`` hook, a ``__repr__``, an Enum's ``.value``, or another
thread handed the GIL by any of them) could shrink the container under it and crash the
process (see docs/orjson-mutation-crash.md). The usual shapes (a string; a dict or list
of scalars; a list of such dicts, as chat messages are) skip ``marshal``: each container is
copied by one C call (``dict.copy``, atomic under the GIL), and only the copies are
checked to hold exact builtin scalars before orjson sees them; they give the same bytes.
Everything else (sets, pydantic models, arbitrary objects, cycles, huge ints, values too
big) takes the Python walk, which first copies the value into fresh plain containers that
no user code can reach, calling user code (``repr``, ``model_dump``...) at most once per
object, and only then hands the copy to orjson. Nothing here raises.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import itertools
import marshal
import math
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

TRUNCATED = "…[truncated by tracemux: {n} more bytes]"

_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
#: the fast path: types whose orjson serializer may run Python code (a dataclass's field
#: properties, a datetime's custom ``tzinfo``) are passed through, that is refused, and
#: take the Python walk instead
_FAST_OPTIONS = _DUMPS_OPTIONS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME

_marshal_dumps = marshal.dumps
_marshal_loads = marshal.loads
_dumps = orjson.dumps
_SCALARS = frozenset({str, int, float, bool, type(None)})
_is_flat = _SCALARS.issuperset  # an iterable of types: all exact builtin scalars?
_is_dicts = frozenset({dict}).issuperset  # an iterable of types: all exact dicts?
_dict_copy = dict.copy
_dict_values = dict.values
_chain = itertools.chain.from_iterable


def _flat_copy(value: Any, cls: type) -> Any:
    """The common shapes, copied with C calls only (each atomic under the GIL: no Python
    code runs, so no other thread can change what is being copied): a dict or list of
    scalars, and a list of such dicts (chat messages). None for any other shape.

    Every container in the result is a fresh copy that no other code can reach, and every
    leaf is an exact builtin scalar: orjson, given it and no ``default`` hook, runs no
    Python code. The checks look at the copies, never at the caller's containers again.
    (:meth:`Capturer.value` has the dict case inline.)"""
    if cls is dict:
        copy = value.copy()
        if _is_flat(map(type, copy.values())) and _is_flat(map(type, copy)):
            return copy
        return None
    if cls is list:
        copy = value.copy()
        types = set(map(type, copy))
        if _is_flat(types):
            return copy
        if types == _DICT_ONLY:  # a list of dicts: copy each, then check the copies
            copies = list(map(_dict_copy, copy))
            if _is_flat(map(type, _chain(map(_dict_values, copies)))) and _is_flat(
                map(type, _chain(copies))
            ):
                return copies
    return None


_DICT_ONLY = {dict}


def _plain_copy(value: Any) -> Any:
    """A copy of ``value`` in fresh containers that no other code can reach, made without
    running any Python code (so no other thread is handed the GIL meanwhile); raises
    ValueError unless ``value`` holds only exact builtin types (no Enum, no subclass, no
    object). orjson, given this copy and no ``default`` hook, runs no Python code either:
    nothing can change a container while orjson holds borrowed references into it."""
    if type(value) in _SCALARS:
        return value
    return _marshal_loads(_marshal_dumps(value, 3))  # 3+: shared and cyclic parts once


#: A copy of a bytes object that owns exactly its length. orjson (3.13) returns bytes that
#: keep its whole output buffer (about 4 KiB even for a 50-byte value); a snapshot waiting
#: in the queue must cost what its length says, or the memory bound would be 50x off.
exact_copy = b"%b".__mod__


class Capturer:
    """Turns user values into bounded JSON snapshots on the caller's thread.

    Masking secrets is not done here but by :mod:`tracemux.redact` on the export thread,
    before any destination sees a record: a regular-expression scan costs more than the
    whole hot-path budget, and the raw snapshot never leaves the in-memory queue.
    """

    __slots__ = ("max_value_bytes",)

    def __init__(self, max_value_bytes: int = 64 * 1024) -> None:
        if max_value_bytes < 256:
            raise ValueError("max_value_bytes must be at least 256")
        self.max_value_bytes = int(max_value_bytes)

    def value(self, value: Any) -> bytes | None:
        """Snapshot ``value`` as JSON bytes (None stays None). Never raises.

        User code reachable from ``value`` (``__repr__``, ``model_dump``, a mapping's
        ``items``...) is called at most once per object, and never while orjson is inside
        one of the caller's containers."""
        if value is None:
            return None
        cls = type(value)
        if cls is dict or cls is str or cls is list:  # the usual values: no marshal
            try:
                if cls is dict:  # _flat_copy's dict case, inline (a call less)
                    copy = value.copy()
                    if not (_is_flat(map(type, copy.values())) and _is_flat(map(type, copy))):
                        copy = None
                else:
                    copy = value if cls is str else _flat_copy(value, cls)
                if copy is not None:
                    data = _dumps(copy, option=_FAST_OPTIONS)
                    if len(data) <= self.max_value_bytes:
                        return exact_copy(data)
            except Exception:  # a lone surrogate, a huge int: the general path decides
                pass
        return self.general(value)

    def general(self, value: Any) -> bytes | None:
        """What :meth:`value` returns, by the general path alone: a ``marshal`` copy of
        builtin types, else the Python walk (:meth:`value` takes a faster path to the
        same bytes for a string, and a dict or list of scalars or of such dicts)."""
        if value is None:
            return None
        budget = self.max_value_bytes
        try:
            try:
                data = orjson.dumps(_plain_copy(value), option=_FAST_OPTIONS)
            except Exception:
                plain = _to_plain(value, 0, set(), budget)
                data = _dumps_plain(plain)
            else:
                if len(data) <= budget:
                    return exact_copy(data)
                plain = _to_plain(value, 0, set(), budget)  # native types only: no user code
            if len(data) > budget:
                data = self._truncate(plain)
            return exact_copy(data)
        except Exception as exc:  # a last resort: the caller's flow must go on
            return exact_copy(orjson.dumps(f"<not captured: {type(exc).__name__}>"))

    def text(self, value: Any, limit: int | None = None) -> str:
        """A bounded string for names, messages and tracebacks, valid UTF-8. Never raises."""
        try:
            s = value if type(value) is str else _safe_str(value)
            if type(s) is not str:  # a str subclass: its own methods could do anything
                s = str.__str__(s)
            limit = limit or self.max_value_bytes
            if len(s) > limit:
                s = s[:limit] + TRUNCATED.format(n=len(s) - limit)
            return clean_text(s)
        except Exception:
            return "<unprintable>"

    def _truncate(self, plain: Any) -> bytes:
        """``plain`` (already a copy made of plain data) cut down to the budget."""
        budget = self.max_value_bytes
        data = _dumps_plain(_to_plain(plain, 0, set(), max(64, budget // 4)))
        if len(data) <= budget:
            return data
        keep = budget - 80
        while True:
            text = data[:keep].decode("utf-8", "ignore")
            out = orjson.dumps(text + TRUNCATED.format(n=len(data) - keep))
            if len(out) <= budget or keep <= 16:
                return out
            keep -= len(out) - budget + 16


#: types orjson encodes without running Python code (a datetime only with a standard tzinfo)
_ORJSON_NATIVE = (datetime.date, datetime.time, uuid.UUID)
_PLAIN_TZ = (type(None), datetime.timezone)


def clean_text(s: str) -> str:
    """``s`` as valid UTF-8: lone surrogates (which no encoder, database or protobuf
    accepts) become ``?``. Plain ASCII, the usual case, is returned at once."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace").decode("utf-8")


def _dumps_plain(obj: Any) -> bytes:
    """Encode the output of :func:`_to_plain` (fresh containers no user code can reach)."""
    return orjson.dumps(obj, default=_type_name, option=_DUMPS_OPTIONS)


def _type_name(obj: Any) -> str:
    return f"<{type.__dict__['__name__'].__get__(type(obj))}>"  # no metaclass code


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<{type(value).__name__} object (str and repr failed)>"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__} object (repr failed)>"


def _bytes_value(value: bytes | bytearray | memoryview) -> str:
    raw = bytes(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")


def _exception_value(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__qualname__, "message": _safe_str(exc)}


def _default(obj: Any) -> Any:
    """orjson's hook for types it does not know. May raise: the caller falls back."""
    cls = type(obj)
    if cls in (set, frozenset):
        return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _bytes_value(obj)
    if isinstance(obj, BaseException):
        return _exception_value(obj)
    dump = getattr(cls, "model_dump", None)  # pydantic v2
    if dump is not None:
        return dump(obj, mode="json")
    as_dict = getattr(cls, "dict", None)  # pydantic v1 and look-alikes
    if as_dict is not None and getattr(cls, "__fields__", None) is not None:
        return as_dict(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (list, tuple)):
        return list(obj)
    return _safe_repr(obj)


def _to_plain(obj: Any, depth: int, seen: set[int], max_str: int) -> Any:
    """Convert anything to JSON-safe plain data, cutting cycles, depth and long strings."""
    if obj is None or obj is True or obj is False:
        return obj
    cls = type(obj)
    if cls is str or isinstance(obj, str):
        s = str.__str__(obj)
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            s = s.encode("utf-8", "replace").decode("utf-8")
        if len(s) > max_str:
            return s[:max_str] + TRUNCATED.format(n=len(s) - max_str)
        return s
    if cls is int or (isinstance(obj, int) and not isinstance(obj, bool)):
        n = int.__int__(obj)
        return n if -(2**63) <= n < 2**64 else str(n)
    if cls is float or isinstance(obj, float):
        f = float.__float__(obj)
        return f if math.isfinite(f) else str(f)
    if isinstance(obj, _ORJSON_NATIVE):
        if type(obj) in _ORJSON_EXACT and type(getattr(obj, "tzinfo", None)) in _PLAIN_TZ:
            return obj
        return _to_plain(_safe_str(obj), depth, seen, max_str)
    if isinstance(obj, enum.Enum):
        return _to_plain(_enum_value(obj), depth + 1, seen, max_str)
    if depth >= 32:
        return "<max depth>"
    oid = id(obj)
    if oid in seen:
        return "<cycle>"
    if isinstance(obj, (dict, Mapping)):
        seen.add(oid)
        try:
            out: dict[str, Any] = {}
            for i, (k, v) in enumerate(_safe_items(obj)):
                if i >= 1000:
                    out["…"] = f"<{len(obj) - i} more items>"
                    break
                key = k if type(k) is str else _safe_str(k)
                out[_to_plain(key, depth + 1, seen, max_str)] = _to_plain(
                    v, depth + 1, seen, max_str
                )
            return out
        finally:
            seen.discard(oid)
    if isinstance(obj, (list, tuple, set, frozenset)) or cls.__name__ == "deque":
        seen.add(oid)
        try:
            items = list(obj)
            out_list = [_to_plain(v, depth + 1, seen, max_str) for v in items[:1000]]
            if len(items) > 1000:
                out_list.append(f"<{len(items) - 1000} more items>")
            return out_list
        finally:
            seen.discard(oid)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _to_plain(_bytes_value(obj), depth, seen, max_str)
    if isinstance(obj, BaseException):
        return _to_plain(_exception_value(obj), depth, seen, max_str)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        seen.add(oid)
        try:
            return {
                f.name: _to_plain(getattr(obj, f.name, None), depth + 1, seen, max_str)
                for f in dataclasses.fields(obj)
            }
        except Exception:
            return _safe_repr(obj)
        finally:
            seen.discard(oid)
    try:
        converted = _default(obj)
    except Exception:
        return _safe_repr(obj)
    if isinstance(converted, str):
        return _to_plain(converted, depth, seen, max_str)
    seen.add(oid)
    try:
        return _to_plain(converted, depth + 1, seen, max_str)
    finally:
        seen.discard(oid)


_ORJSON_EXACT = frozenset({datetime.datetime, datetime.date, datetime.time, uuid.UUID})


def _enum_value(member: enum.Enum) -> Any:
    try:
        return object.__getattribute__(member, "_value_")
    except Exception:
        return _safe_repr(member)


def _safe_items(obj: Any) -> list[tuple[Any, Any]]:
    try:
        return list(obj.items())
    except Exception:
        return []


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def format_traceback(exc: BaseException, message: str | None = None) -> str:
    """The traceback of ``exc`` as text, chained exceptions and notes included; never raises.

    ``str()`` of each exception in the chain is called once at most, and not at all for
    ``exc`` itself when its ``message`` is given (a slow or blocking ``__str__`` is not
    paid twice)."""
    try:
        parts: list[str] = []
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen and len(seen) < 100:
            seen.add(id(current))
            text = message if current is exc and message is not None else _safe_str(current)
            parts.append(_format_one(current, text))
            cause = current.__cause__
            if cause is not None:
                current = cause
                parts.append(_CAUSE)
            elif current.__context__ is not None and not current.__suppress_context__:
                current = current.__context__
                parts.append(_CONTEXT)
            else:
                current = None
        if parts and parts[-1] in (_CAUSE, _CONTEXT):
            parts.pop()  # the chain was cut (a cycle, or 100 deep)
        return "".join(reversed(parts))
    except Exception:
        return f"{type(exc).__qualname__}: <traceback unavailable>"


def _format_one(exc: BaseException, message: str) -> str:
    tb = exc.__traceback__
    head = "Traceback (most recent call last):\n" + "".join(traceback.format_tb(tb)) if tb else ""
    cls = type(exc)
    module = cls.__module__
    name = cls.__qualname__
    if module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    line = f"{name}: {message}\n" if message else f"{name}\n"
    notes = exc.__dict__.get("__notes__") if hasattr(exc, "__dict__") else None
    if isinstance(notes, list):
        line += "".join(f"{note}\n" for note in notes if type(note) is str)
    return head + line
