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
from typing import Any

import ahocorasick_rs
import orjson

from tracemux.capture import exact_copy
from tracemux.model import ErrorInfo, LogEntry, RunInfo, SpanRecord
from tracemux.ratelimit import rate_limited

log = logging.getLogger(__name__)
_warn = rate_limited(log)

MASK = "[masked]"

#: Key names whose values are secrets (matched case-insensitively, at the end of the key,
#: after camelCase is split: ``openaiApiKey`` is read as ``openai_Api_Key``). A plural
#: (``api-keys``) or a number (``api_key_1``, ``password2``) may follow; not for ``token``,
#: whose plural names counts (``max_tokens``).
SECRET_KEY_PATTERN = (
    r"(?:^|[_\-. ])(?:"
    r"(?:api[_\-]?key|apikey|secret|secret[_\-]?key|client[_\-]?secret|password|passwd|pwd"
    r"|passphrase|private[_\-]?key|access[_\-]?key|cookie|set[_\-]?cookie|credential)s?"
    r"|token|access[_\-]?token|refresh[_\-]?token|auth[_\-]?token|session[_\-]?token"
    r"|id[_\-]?token|bearer|authorization|proxy[_\-]?authorization"
    r")(?:[_\-. ]?\d{1,4})?$"
)
#: camelCase boundaries, where a separator is read into a key name before matching
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
#: Substrings shaped like credentials, masked inside any string.
SECRET_VALUE_PATTERN = (
    r"(?:\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{8,}"
    r"|\blsv2_[A-Za-z0-9_]{8,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{16,}"
    r"|\bxox[abprs]-[A-Za-z0-9\-]{8,}"
    r"|\bAKIA[0-9A-Z]{16}"
    r"|\bAIza[0-9A-Za-z_\-]{35}"  # a Google API key (often in a ?key= query)
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
    "aiza",
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
# to text by capture), a Python dict's repr (an exception message), ``key=value`` pairs
# (a URL's query, a log line) and URLs with a password: a key word (maybe plural or
# numbered) before a quote or an equals sign, or ``://``, sends the text through the
# rules below. Inside a snapshot, JSON-in-a-string has its quotes escaped (key\").
_KEY_CLOSES = ('"', "'", "=", '\\"')  # JSON, a repr, key=value, JSON inside a string
_KEY_HINTS = (
    *(f"{w}{end}{close}" for w in _KEY_WORDS for end in ("", "s") for close in _KEY_CLOSES),
    # a numbered key ("api_key_1"): the number is specific enough without what follows
    *(f"{w}{sep}{d}" for w in _KEY_WORDS for sep in ("", "_", "-") for d in "0123456789"),
)
# a DFA: with ~450 hints it scans about as fast as the default NFA did with 40
_DFA = ahocorasick_rs.Implementation.DFA
_TEXT_HINTS = ahocorasick_rs.AhoCorasick([*_VALUE_HINTS, *_KEY_HINTS], implementation=_DFA)
_JSON_HINTS = ahocorasick_rs.BytesAhoCorasick(
    [h.encode() for h in (*_VALUE_HINTS, *_KEY_HINTS)], implementation=_DFA
)
# URLs are common and rarely carry a password: rather than a hint, text with an "@" in it
# is searched for a URL with a password (``://user:password@``); a fast literal search
_URL_WITH_PASSWORD = re.compile(rb"://[^/\s@\"'\\\x00]{0,256}:[^/\s@\"'\\\x00]{1,256}@")


def _has_url_password(data: bytes | str) -> bool:
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    return b"@" in raw and _URL_WITH_PASSWORD.search(raw) is not None


#: a ``"key": value`` (JSON) or ``'key': value`` (Python repr) pair inside text; a quoted
#: value may be cut short (no closing quote)
_PAIR = re.compile(
    r"""(["'])((?:(?!\1)[^\\\n]|\\.){1,100})\1\s*:\s*"""
    r"""(?:"((?:[^"\\]|\\.)*)|'((?:[^'\\]|\\.)*)|([^\s,;)}\]"']+))"""
)
#: ``name=value`` where a query string or free text names a secret (``?api_key=...``)
_KEY_VALUE = re.compile(r"(?<![\w.\-])([A-Za-z][\w.\-]{0,63})=([^\s&#;,'\"<>]+)")
#: the password of a URL's userinfo (``https://user:PASSWORD@host``); every repetition is
#: bounded, so that no text can make the search quadratic
_URL_PASSWORD = re.compile(
    r"(\b[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s/?#@:\"']{0,256}:)([^\s/?#@\"']{1,256})(?=@)"
)
_LITERALS = frozenset({"null", "None", "true", "false", "True", "False"})


def _mask_url_password(m: re.Match[str]) -> str:
    return m.group(1) + MASK


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
        usage = getattr(span, "usage", None)
        if usage:
            span.usage = {self.text(k): v for k, v in usage.items()}

    # -- values -----------------------------------------------------------------------

    def text(self, s: str) -> str:
        """``s`` with credential-shaped parts masked, and the values of secret keys in any
        JSON it holds (``{"api_key": "..."}`` as a string)."""
        if (
            self._use_hints
            and not _TEXT_HINTS.find_matches_as_indexes(s.lower())
            and not _has_url_password(s)
        ):
            return s
        return self.mask_text(s)

    def mask_text(self, s: str) -> str:
        """Like :meth:`text`, without the hint pre-check (the caller ran it)."""
        s = self._value_re.sub(MASK, s)
        if '"' in s or "'" in s:
            s = _PAIR.sub(self._mask_pair, s)
        if "=" in s:
            s = _KEY_VALUE.sub(self._mask_key_value, s)
        if "://" in s:
            s = _URL_PASSWORD.sub(_mask_url_password, s)
        return s

    def _mask_pair(self, m: re.Match[str]) -> str:
        if not self._is_secret_key(m.group(2)):
            return m.group(0)
        group = next(g for g in (3, 4, 5) if m.group(g) is not None)
        if group == 5 and m.group(5) in _LITERALS:
            return m.group(0)
        mask = MASK if group != 5 else f"{m.group(1)}{MASK}{m.group(1)}"
        base = m.start(0)
        whole = m.group(0)
        return whole[: m.start(group) - base] + mask + whole[m.end(group) - base :]

    def _mask_key_value(self, m: re.Match[str]) -> str:
        if m.group(2) == MASK or not self._is_secret_key(m.group(1)):
            return m.group(0)
        return f"{m.group(1)}={MASK}"

    def json(self, data: bytes) -> bytes:
        """A JSON snapshot with secret keys and credential-shaped strings masked."""
        if (
            self._use_hints
            and not _JSON_HINTS.find_matches_as_indexes(data.lower())
            and not _has_url_password(data)
        ):
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
            hit = bool(self._key_re.search(key) or self._key_re.search(_CAMEL.sub("_", key)))
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

    The Aho-Corasick scan releases the GIL on every call; one call per field would hand
    the GIL to the application's threads and wait to get it back, several times per span.
    One call for a whole drain pass costs that once. Only the records the scan flags (and
    every record of a redactor with custom patterns, which hints cannot pre-check) go
    through the field-by-field path.

    Fields are joined with NUL bytes, which no hint contains, so no hint can match across
    two fields. ASCII lower-casing of UTF-8 bytes keeps the hints' (ASCII) matches.
    """

    __slots__ = ("_always", "_ends", "_owners", "_parts")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._owners: list[SpanRecord | RunInfo] = []
        self._ends: list[int] = []  # for each owner, the number of parts up to its last
        self._always: list[SpanRecord | RunInfo] = []  # custom patterns: no pre-check

    def add_run(self, run: RunInfo) -> None:
        """Queue the run's name and metadata for masking."""
        redactor = run.redactor
        if redactor is None or not redactor.enabled:
            return
        if not redactor._use_hints:
            self._always.append(run)
            return
        parts = self._parts
        parts.append(run.name.encode("utf-8", "surrogatepass"))
        if run.metadata is not None:
            parts.append(run.metadata)
        self._owners.append(run)
        self._ends.append(len(parts))

    def add_span(self, span: SpanRecord) -> None:
        """Queue every user-provided field of a finished span for masking."""
        redactor = span.run.redactor
        if redactor is None or not redactor.enabled:
            return
        if not redactor._use_hints:
            self._always.append(span)
            return
        parts = self._parts
        try:
            parts.append(span.name.encode("utf-8", "surrogatepass"))
            for value in (span.inputs, span.outputs, span.metadata):
                if value is not None:
                    parts.append(value)
            if span.logs:
                for entry in span.logs:
                    parts.append(entry.message.encode("utf-8", "surrogatepass"))
                    if entry.fields is not None:
                        parts.append(entry.fields)
            err = span.error
            if err is not None:
                parts.append(err.message.encode("utf-8", "surrogatepass"))
                parts.append(err.traceback.encode("utf-8", "surrogatepass"))
            usage = getattr(span, "usage", None)
            if usage:
                parts.extend(k.encode("utf-8", "surrogatepass") for k in usage)
        except Exception:  # a field of an unexpected type: the field-by-field path decides
            self._always.append(span)
            del parts[self._ends[-1] if self._ends else 0 :]
            return
        self._owners.append(span)
        self._ends.append(len(parts))

    def run(self) -> list[SpanRecord]:
        """Mask the flagged records in place. Returns the spans whose masking failed (to be
        dropped: a record is never exported unmasked)."""
        flagged = self._always
        parts = self._parts
        if parts:
            joined = b"\0".join(parts)
            starts = [start for _, start, _ in _JSON_HINTS.find_matches_as_indexes(joined.lower())]
            if b"@" in joined:
                starts.extend(m.start() for m in _URL_WITH_PASSWORD.finditer(joined))
            if starts:
                byte_ends = list(itertools.accumulate(len(p) + 1 for p in parts))
                ends, owners = self._ends, self._owners
                seen: set[int] = set()
                for start in starts:
                    owner = bisect.bisect_right(ends, bisect.bisect_right(byte_ends, start))
                    if owner not in seen:
                        seen.add(owner)
                        flagged.append(owners[owner])
        failed = []
        for record in flagged:
            try:
                if type(record) is RunInfo:
                    _mask_run(record)
                else:
                    record.run.redactor.record(record)  # type: ignore[union-attr]
            except Exception:
                if type(record) is RunInfo:
                    _warn.internal_error("mask_run", "tracemux: masking run fields failed")
                else:
                    _warn.internal_error("mask", "tracemux: masking failed; record dropped")
                    failed.append(record)
        return failed  # type: ignore[return-value]


def _mask_run(run: RunInfo) -> None:
    redactor = run.redactor
    assert redactor is not None
    run.name = redactor.text(run.name)
    if run.metadata is not None:
        run.metadata = redactor.json(run.metadata)


_LOG_REDACTOR = Redactor()


def mask_for_log(text: str) -> str:
    """``text`` with the default rules applied, for tracemux's own log messages (a span
    kind or a usage key a caller passed may be a credential)."""
    try:
        return _LOG_REDACTOR.text(text)
    except Exception:
        return MASK
