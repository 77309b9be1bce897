"""Masking secrets out of records, on the export thread, before any destination sees them.

Two rules, both on by default and both extensible:
- a key whose name says it holds a secret (``api_key``, ``password``, ``Authorization``,
  ``access_token``... any case, any depth) has its whole value replaced;
- a string that contains something shaped like a credential (``sk-...``, ``pk-lf-...``,
  ``lsv2_...``, ``Bearer ...``) has that part replaced, wherever the string appears:
  values, span names, log messages, exception messages and tracebacks.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import re
from collections.abc import Callable
from typing import Any

import ahocorasick_rs
import orjson

from tracemux.capture import exact_copy
from tracemux.model import ErrorInfo, LogEntry, RunInfo, SpanRecord

log = logging.getLogger("tracemux.redact")

MASK = "[masked]"

#: Key names whose values are secrets (matched case-insensitively, at the end of the key).
SECRET_KEY_PATTERN = (
    r"(?:^|[_\-. ])(?:api[_\-]?key|apikey|secret|secret[_\-]?key|client[_\-]?secret|password"
    r"|passwd|pwd|passphrase|token|access[_\-]?token|refresh[_\-]?token|auth[_\-]?token"
    r"|session[_\-]?token|id[_\-]?token|bearer|authorization|proxy[_\-]?authorization"
    r"|private[_\-]?key|access[_\-]?key|cookie|set[_\-]?cookie|credentials?)$"
)
#: Substrings shaped like credentials, masked inside any string.
SECRET_VALUE_PATTERN = (
    r"(?:\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"
    r"|\blsv2_[A-Za-z0-9_]{8,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{16,}"
    r"|\bxox[abprs]-[A-Za-z0-9\-]{8,}"
    r"|\bAKIA[0-9A-Z]{16}"
    # an auth scheme followed by a credential, not by a word: the credential has a digit
    # or punctuation in it ("Basic Prompting" stays, "Basic dXNlcjpwYXNz4==" goes)
    r"|\b(?i:bearer|basic)\s+(?=[A-Za-z]*(?:[0-9+/=_~\-]|\.[A-Za-z0-9]))[A-Za-z0-9._~+/\-]{8,}=*)"
)
# A cheap pre-check, run with one Aho-Corasick scan over the lower-cased text: every
# credential shape above contains one of these; every secret key name ends with one of the
# key words (followed by the closing quote of a JSON key). Text with none of them is
# returned untouched, without running the regular expressions (which cost microseconds:
# Python's ``re`` tries every alternative at every position).
_VALUE_HINTS = (
    "sk-",
    "pk-",
    "rk-",
    "lsv2_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "akia",
    "bearer",
    "basic",
)
_KEY_WORDS = (
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "token",
    "bearer",
    "authorization",
    "cookie",
    "credential",
    "credentials",
)
# Text can hold JSON too (tool-call arguments, a payload in a log line, a value truncated
# to text by capture): a key word before a quote sends it through the key-pair rule below.
# Inside a snapshot, such JSON-in-a-string has its quotes escaped (key\").
_TEXT_HINTS = ahocorasick_rs.AhoCorasick(list(_VALUE_HINTS) + [f'{w}"' for w in _KEY_WORDS])
_JSON_HINTS = ahocorasick_rs.BytesAhoCorasick(
    [h.encode() for h in _VALUE_HINTS]
    + [f'{w}"'.encode() for w in _KEY_WORDS]
    + [f'{w}\\"'.encode() for w in _KEY_WORDS]
)
#: a ``"key": "value"`` pair inside text; the value may be cut short (no closing quote)
_JSON_PAIR = re.compile(r'"((?:[^"\\\n]|\\.){1,100})"\s*:\s*"((?:[^"\\]|\\.)*)')


class Redactor:
    """Masks secrets in records. ``enabled=False`` turns masking off entirely.

    ``extra_keys`` and ``extra_values`` are regular expressions added to the built-in
    rules: extra key patterns match a whole key name, case-insensitively.
    """

    __slots__ = ("_key_cache", "_key_re", "_use_hints", "_value_re", "enabled")

    def __init__(
        self,
        *,
        enabled: bool = True,
        extra_keys: tuple[str, ...] = (),
        extra_values: tuple[str, ...] = (),
    ) -> None:
        key_pattern = SECRET_KEY_PATTERN
        if extra_keys:
            key_pattern = "|".join([f"(?:{key_pattern})", *(f"(?:^(?:{k})$)" for k in extra_keys)])
        value_pattern = SECRET_VALUE_PATTERN
        if extra_values:
            value_pattern = "|".join([value_pattern, *(f"(?:{v})" for v in extra_values)])
        self.enabled = enabled
        self._key_re = re.compile(key_pattern, re.IGNORECASE)
        self._value_re = re.compile(value_pattern)
        self._key_cache: dict[str, bool] = {}
        # custom patterns may match text with none of the hints: then check everything
        self._use_hints = not extra_values and not extra_keys

    # -- records ----------------------------------------------------------------------

    def record(self, span: SpanRecord) -> None:
        """Mask every user-provided field of a finished span, in place."""
        if not self.enabled:
            return
        span.name = self.text(span.name)
        if span.inputs is not None:
            span.inputs = self.json(span.inputs)
        if span.outputs is not None:
            span.outputs = self.json(span.outputs)
        if span.metadata is not None:
            span.metadata = self.json(span.metadata)
        if span.logs:
            span.logs = [
                LogEntry(
                    log.time_ns,
                    log.level,
                    self.text(log.message),
                    None if log.fields is None else self.json(log.fields),
                )
                for log in span.logs
            ]
        if span.error is not None:
            err = span.error
            span.error = ErrorInfo(err.type, self.text(err.message), self.text(err.traceback))

    # -- values -----------------------------------------------------------------------

    def text(self, s: str) -> str:
        """``s`` with credential-shaped parts masked, and the values of secret keys in any
        JSON it holds (``{"api_key": "..."}`` as a string)."""
        if self._use_hints and not _TEXT_HINTS.find_matches_as_indexes(s.lower()):
            return s
        return self.mask_text(s)

    def mask_text(self, s: str) -> str:
        """Like :meth:`text`, without the hint pre-check (the caller ran it)."""
        s = self._value_re.sub(MASK, s)
        if '"' in s:
            s = _JSON_PAIR.sub(self._mask_pair, s)
        return s

    def _mask_pair(self, m: re.Match[str]) -> str:
        if not self._is_secret_key(m.group(1)):
            return m.group(0)
        base = m.start(0)
        whole = m.group(0)
        return whole[: m.start(2) - base] + MASK + whole[m.end(2) - base :]

    def json(self, data: bytes) -> bytes:
        """A JSON snapshot with secret keys and credential-shaped strings masked."""
        if self._use_hints and not _JSON_HINTS.find_matches_as_indexes(data.lower()):
            return data
        return self.mask_json(data)

    def mask_json(self, data: bytes) -> bytes:
        """Like :meth:`json`, without the hint pre-check (the caller ran it)."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
        masked, changed = self._walk(obj)
        return exact_copy(orjson.dumps(masked)) if changed else data

    def _is_secret_key(self, key: str) -> bool:
        cache = self._key_cache
        hit = cache.get(key)
        if hit is None:
            hit = bool(self._key_re.search(key))
            if len(cache) < 10_000:
                cache[key] = hit
        return hit

    def _walk(self, obj: Any) -> tuple[Any, bool]:
        if isinstance(obj, str):
            if len(obj) < 8:
                return obj, False
            # short strings straight to the expressions: a hint scan would release the GIL
            masked = self.mask_text(obj) if len(obj) < 1024 else self.text(obj)
            return masked, masked is not obj
        if isinstance(obj, dict):
            changed = False
            out = {}
            for k, v in obj.items():
                if v is not None and self._is_secret_key(k):
                    out[k] = MASK
                    changed = True
                else:
                    out[k], c = self._walk(v)
                    changed = changed or c
            return out, changed
        if isinstance(obj, list):
            changed = False
            out_list = []
            for v in obj:
                m, c = self._walk(v)
                out_list.append(m)
                changed = changed or c
            return out_list, changed
        return obj, False


class MaskingPass:
    """Masks many records with a single hint scan over all their fields.

    The Aho-Corasick scan releases the GIL on every call; one call per span would hand the
    GIL to the application's threads and wait to get it back, several times per span. One
    call for a whole drain pass costs that once. Only the fields the scan flags (and every
    field of a redactor with custom patterns, which hints cannot pre-check) go through the
    regular expressions.

    Fields are joined with NUL bytes, which no hint contains, so no hint can match across
    two fields. ASCII lower-casing of UTF-8 bytes keeps the hints' (ASCII) matches.
    """

    __slots__ = ("_apply", "_failed", "_parts")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        # one per part: a function that masks the field and stores the result, and the
        # span it belongs to (None for a run's fields)
        self._apply: list[tuple[Callable[[], None], SpanRecord | None]] = []
        self._failed: list[SpanRecord] = []

    def add_run(self, run: RunInfo) -> None:
        """Queue the run's name and metadata for masking."""
        redactor = run.redactor
        if redactor is None or not redactor.enabled:
            return

        def name() -> None:
            run.name = redactor.mask_text(run.name)

        self._add(redactor, run.name.encode("utf-8", "surrogatepass"), name, None)
        if run.metadata is not None:

            def metadata() -> None:
                run.metadata = redactor.mask_json(run.metadata)  # type: ignore[arg-type]

            self._add(redactor, run.metadata, metadata, None)

    def add_span(self, span: SpanRecord) -> None:
        """Queue every user-provided field of a finished span for masking."""
        redactor = span.run.redactor
        if redactor is None or not redactor.enabled:
            return
        try:
            self._add_span(redactor, span)
        except Exception:  # a field of an unexpected type: mask it field by field
            self._apply.append((lambda: redactor.record(span), span))
            self._parts.append(b"sk-")  # any hint: always applied

    def _add_span(self, redactor: Redactor, span: SpanRecord) -> None:
        add = self._add

        def name() -> None:
            span.name = redactor.mask_text(span.name)

        add(redactor, span.name.encode("utf-8", "surrogatepass"), name, span)
        if span.inputs is not None:

            def inputs() -> None:
                span.inputs = redactor.mask_json(span.inputs)  # type: ignore[arg-type]

            add(redactor, span.inputs, inputs, span)
        if span.outputs is not None:

            def outputs() -> None:
                span.outputs = redactor.mask_json(span.outputs)  # type: ignore[arg-type]

            add(redactor, span.outputs, outputs, span)
        if span.metadata is not None:

            def metadata() -> None:
                span.metadata = redactor.mask_json(span.metadata)  # type: ignore[arg-type]

            add(redactor, span.metadata, metadata, span)
        if span.logs:
            text = b"\0".join(
                part
                for entry in span.logs
                for part in (entry.message.encode("utf-8", "surrogatepass"), entry.fields or b"")
            )
            add(redactor, text, lambda: _mask_logs(redactor, span), span)
        if span.error is not None:
            err = span.error
            text = b"\0".join(
                (
                    err.message.encode("utf-8", "surrogatepass"),
                    err.traceback.encode("utf-8", "surrogatepass"),
                )
            )

            def error() -> None:
                e = span.error
                span.error = ErrorInfo(
                    e.type, redactor.mask_text(e.message), redactor.mask_text(e.traceback)
                )  # type: ignore[union-attr]

            add(redactor, text, error, span)

    def _add(
        self,
        redactor: Redactor,
        data: bytes,
        apply: Callable[[], None],
        span: SpanRecord | None,
    ) -> None:
        # a redactor with custom patterns cannot be pre-checked: a hint makes sure it runs
        self._parts.append(data if redactor._use_hints else b"sk-")
        self._apply.append((apply, span))

    def run(self) -> list[SpanRecord]:
        """Mask every flagged field in place. Returns the spans whose masking failed (to be
        dropped: a record is never exported unmasked)."""
        parts = self._parts
        if not parts:
            return []
        hits = _JSON_HINTS.find_matches_as_indexes(b"\0".join(parts).lower())
        if not hits:
            return []
        ends = list(itertools.accumulate(len(p) + 1 for p in parts))
        flagged = sorted({bisect.bisect_right(ends, start) for _, start, _ in hits})
        failed: dict[int, SpanRecord] = {}
        for i in flagged:
            apply, span = self._apply[i]
            if span is not None and id(span) in failed:
                continue
            try:
                apply()
            except Exception:
                if span is None:
                    log.exception("tracemux: masking run fields failed")
                else:
                    log.exception("tracemux: masking failed; record dropped")
                    failed[id(span)] = span
        return list(failed.values())


def _mask_logs(redactor: Redactor, span: SpanRecord) -> None:
    span.logs = [
        LogEntry(
            entry.time_ns,
            entry.level,
            redactor.mask_text(entry.message),
            None if entry.fields is None else redactor.mask_json(entry.fields),
        )
        for entry in span.logs or ()
    ]
