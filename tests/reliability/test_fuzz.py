"""Hypothesis throws hostile values at every recording call: deep nesting, huge strings,
invalid UTF-8 bytes, lone surrogates, NaN and infinity, cycles, objects that raise in
``__repr__``/``__str__``/``__eq__``/``__hash__``/``__getattr__``/``__iter__``, huge ints,
weird dict keys, as inputs, outputs, metadata, names, kinds, log messages and fields,
usage, tags and ids.

No exception may reach the caller, and every export must be valid: each SQLite value is
UTF-8 JSON (parsed strictly), and each OTLP request (OTLP, Langfuse, LangSmith, Phoenix)
decodes with opentelemetry-proto, with every span of every run in it.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import math
import sqlite3
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import StatsDelta, env_number
from tests.reliability.faultserver import FaultServer
from tracemux import TracingService
from tracemux.destinations import OTLP, LangSmith, Phoenix, SQLiteStore
from tracemux.destinations.langfuse import Langfuse

pytestmark = pytest.mark.reliability

EXAMPLES = int(env_number("TRACEMUX_FUZZ_EXAMPLES", 150, 1500))


class Boom(Exception):
    pass


def _raise(*args: Any, **kwargs: Any) -> Any:
    raise Boom("hostile")


class Hostile:
    """Raises in every dunder the capture code could touch."""

    __repr__ = __str__ = __format__ = _raise
    __eq__ = __lt__ = __bool__ = __len__ = __iter__ = _raise  # type: ignore[assignment]
    __hash__ = _raise  # type: ignore[assignment]
    __getattr__ = _raise

    def __reduce__(self) -> Any:
        raise Boom("no pickling either")


class HashableHostile:
    """Usable as a dict key (hash and identity equality), hostile otherwise."""

    def __hash__(self) -> int:
        return 7

    __eq__ = object.__eq__
    __repr__ = __str__ = __getattr__ = __lt__ = _raise  # type: ignore[assignment]


class GetattrHostile:
    def __getattribute__(self, name: str) -> Any:
        if name == "__class__":  # hypothesis itself needs this one
            return object.__getattribute__(self, name)
        raise Boom(name)


class BadMapping(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise Boom("items")

    def __iter__(self) -> Any:
        raise Boom("iter")


class BadList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        raise Boom("iter")


class StrSub(str):
    def __str__(self) -> str:
        raise Boom("str")


class Color(enum.Enum):
    RED = "r\ud800"


class FakePydantic:
    __fields__: ClassVar[dict[str, int]] = {"a": 1}

    def dict(self) -> Any:
        raise Boom("dict")

    def model_dump(self, **kw: Any) -> Any:
        raise Boom("model_dump")


class BadException(Exception):
    def __str__(self) -> str:
        raise Boom("exception str")

    __repr__ = __str__


def surrogate_text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec=None, categories=None), max_size=max_size) | st.text(
        st.sampled_from(["\ud800", "\udfff", "a", "\x00", "é", "\U0001f600", "\n", '"', "\\"]),
        max_size=max_size,
    )


huge_strings = st.builds(
    lambda s, n: (s or "x") * n, surrogate_text(4), st.integers(1_000, 300_000)
)
huge_ints = st.integers(min_value=-(2**300), max_value=2**300) | st.sampled_from(
    [2**63, -(2**63) - 1, 2**64, 10**400]
)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]
)
hostile = st.sampled_from(
    [
        Hostile,
        HashableHostile,
        GetattrHostile,
        lambda: BadMapping(a=1),
        lambda: BadList([1]),
        lambda: StrSub("sub"),
        lambda: Color.RED,
        FakePydantic,
        lambda: BadException("x"),
        lambda: decimal.Decimal("NaN"),
        lambda: complex(1, math.inf),
        lambda: uuid.uuid4(),
        lambda: datetime.datetime.now(datetime.timezone.utc),
        lambda: memoryview(b"\xff\xfe"),
        lambda: bytearray(b"\x80abc"),
        lambda: deque([1, "\ud800"]),
        lambda: frozenset({1, 2}),
        lambda: type("Meta", (), {}),
        lambda: lambda: 1,
        lambda: object(),
        lambda: Ellipsis,
        lambda: NotImplemented,
    ]
).map(lambda make: make())
leaves = (
    st.none()
    | st.booleans()
    | huge_ints
    | floats
    | surrogate_text()
    | st.binary(max_size=40)
    | huge_strings
    | hostile
)
keys = (
    surrogate_text(12)
    | huge_ints
    | floats
    | st.none()
    | st.booleans()
    | st.binary(max_size=8)
    | st.tuples(st.integers(), surrogate_text(3))
    | st.frozensets(st.integers(), max_size=3)
    | st.builds(HashableHostile)
    | st.sampled_from(["api_key", "password", "sk-0123456789abcdef", "", "\ud800"])
)


def _nest(value: Any, depth: int, as_dict: bool) -> Any:
    for _ in range(depth):
        value = {"d": value} if as_dict else [value]
    return value


values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(keys, children, max_size=5)
        | st.tuples(children, children)
        | st.sets(st.integers() | surrogate_text(5), max_size=4)
    ),
    max_leaves=20,
) | st.builds(_nest, leaves, st.integers(1, 3000), st.booleans())


@st.composite
def with_cycles(draw: Callable[..., Any]) -> Any:
    value = draw(values)
    if draw(st.booleans()):
        box: list[Any] = [value]
        box.append(box)
        d: dict[Any, Any] = {"self": None, "v": value}
        d["self"] = d
        value = draw(st.sampled_from([box, d, [box, d]]))
    return value


names = surrogate_text(30) | huge_strings | hostile | huge_ints | st.none() | floats
kinds = st.sampled_from(["llm", "tool", "nonsense", "\ud800", ""]) | hostile | st.builds(list)
levels = st.sampled_from(["info", "error", "LOUD", "\ud800"]) | hostile | st.builds(dict)
numbers = st.none() | huge_ints | floats | hostile | st.booleans() | surrogate_text(3)
field_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in {"message", "level"}
)


def exception_from(message: Any) -> BaseException:
    try:
        try:
            raise ValueError(message)
        except ValueError as inner:
            raise BadException(message) from inner
    except BadException as exc:
        return exc


def test_hostile_values_never_raise_and_every_export_is_valid(
    tmp_path: Path,
    fault_server: FaultServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable[..., Any],
) -> None:
    pipeline_settings(flush_interval=0.05, max_queue_spans=1_000_000, max_queue_bytes=2**30)
    url = fault_server.url
    store = SQLiteStore(tmp_path / "fuzz.db")
    remotes = [
        OTLP(endpoint=url),
        Langfuse(public_key="pk-lf-fuzz-1234567890", secret_key="sk-lf-fuzz-0987654321", host=url),
        LangSmith(api_key="lsv2_pt_fuzz_1234567890abcdef", endpoint=url),
        Phoenix(endpoint=url, api_key="phoenix-fuzz-key-123456"),
    ]
    svc = make_service([store, *remotes], max_value_bytes=16 * 1024)
    delta = StatsDelta(svc)
    span_ids: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        run_name=names,
        inputs=with_cycles(),
        outputs=with_cycles(),
        metadata=with_cycles(),
        run_metadata=with_cycles(),
        span_name=names,
        kind=kinds,
        message=names,
        level=levels,
        fields=st.dictionaries(field_names, values, max_size=3),
        model=names,
        usage=st.tuples(numbers, numbers, numbers),
        tags=st.lists(names, max_size=3),
        ident=names,
        error_message=names,
        status=st.sampled_from(["ok", "error", "bad"]) | hostile,
    )
    def one(**kw: Any) -> None:
        run = svc.trace_run(
            kw["run_name"],
            inputs=kw["inputs"],
            metadata=kw["run_metadata"],
            user_id=kw["ident"],
            session_id=kw["ident"],
            project=kw["ident"],
            tags=kw["tags"],
        )
        with run:
            span_ids.append(run.span_id_hex)
            with run.span(kw["span_name"], kind=kw["kind"], inputs=kw["inputs"]) as s:
                span_ids.append(s.span_id_hex)
                s.set_inputs(kw["inputs"])
                s.set_outputs(kw["outputs"], metadata=kw["metadata"])
                s.set_metadata(kw["metadata"])
                s.add_log(kw["message"], level=kw["level"], **kw["fields"])
                s.add_log(kw["message"])
                i, o, t = kw["usage"]
                s.set_usage(kw["model"], input_tokens=i, output_tokens=o, total_tokens=t)
                s.set_usage(input_tokens=i, output_tokens=o, other=t)
                s.set_status(kw["status"])
                s.set_error(exception_from(kw["error_message"]))
                with s.span(kw["span_name"], kind=kw["kind"]) as inner:
                    span_ids.append(inner.span_id_hex)
                    inner.set_error(kw["error_message"])
            with svc.span(kw["span_name"]) as other:
                span_ids.append(other.span_id_hex)
                other.set_outputs(kw["outputs"])

    one()
    assert svc.flush(120)
    stats = delta.now()
    assert stats["dropped_total"] == 0, stats["dropped"]
    assert stats["recorded"] == len(span_ids) == len(set(span_ids))
    assert stats["exported"] == len(span_ids) * (1 + len(remotes))
    check_store(store, set(span_ids))
    check_requests(fault_server, set(span_ids), len(remotes))


JSON_COLUMNS = ("inputs", "outputs", "metadata", "logs", "usage", "error")


def check_store(store: SQLiteStore, span_ids: set[str]) -> None:
    conn = sqlite3.connect(store.path)
    conn.text_factory = bytes  # read raw: each value must itself be valid UTF-8
    try:
        rows = conn.execute(
            f"SELECT span_id, run_id, name, kind, model, {', '.join(JSON_COLUMNS)} FROM spans"
        ).fetchall()
        seen = set()
        for row in rows:
            (
                span_id,
                *text,
            ) = row[:5]
            seen.add(span_id.decode())
            for value in text:
                if value is not None and not isinstance(value, int):
                    value.decode("utf-8")
            for value in row[5:]:
                if value is not None:
                    orjson.loads(value)  # strict: UTF-8, no NaN, no lone surrogates
        assert seen == span_ids
        for row in conn.execute("SELECT * FROM runs").fetchall():
            for value in row:
                if isinstance(value, bytes):
                    value.decode("utf-8")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == b"ok"
    finally:
        conn.close()


def check_requests(server: FaultServer, span_ids: set[str], remotes: int) -> None:
    requests = server.snapshot()
    assert requests
    for req in requests:
        assert req.decode_error is None, req.decode_error
        assert req.otlp is not None
        assert req.accepted
    by_dest: dict[str, list[str]] = {}
    for req in requests:
        h = req.headers
        dest = (
            "langfuse"
            if "x-langfuse-public-key" in h
            else "langsmith"
            if "x-api-key" in h
            else "phoenix"
            if "authorization" in h
            else "otlp"
        )
        by_dest.setdefault(dest, []).extend(req.span_ids)
    assert len(by_dest) == remotes
    for dest, ids in by_dest.items():
        assert len(ids) == len(set(ids)), f"{dest}: a span was sent twice"
        assert set(ids) == span_ids, dest
