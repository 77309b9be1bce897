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
import operator
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
    # or punctuation in it, or two lower-to-upper case changes, or 20 letters with a
    # capital past the first ("Basic Prompting", "basic JavaScript" and "basic
    # internationalization" stay; "Basic dXNlcjpwYXNz4==" and "Bearer zNzSRRTrgjVL..." go)
    r"|\b(?i:bearer|basic)\s+"
    r"(?=[A-Za-z]*(?:[0-9+/=_~\-]|\.[A-Za-z0-9])|[A-Za-z]*[a-z][A-Z][A-Za-z]*[a-z][A-Z]"
    r"|(?=[A-Za-z]{20})[A-Za-z][a-z]*[A-Z])"
    r"[A-Za-z0-9._~+/\-]{8,}=*)"
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


class CleanValues:
    """Field values the hint scan found clean, so that the next pass skips them (bounded).

    Whether a value needs masking by the default rules depends on its content only (the
    hints and the URL-password check are the same for every redactor without custom
    patterns), so a value seen clean once is clean whenever it comes again: span names,
    and the inputs and outputs flows send over and over. Values longer than
    :data:`MAX_LENGTH` are not kept; past :data:`MAX_ENTRIES` entries or
    :data:`MAX_BYTES` in all, the cache starts over (a small constant of memory, outside
    the pipeline's byte bound). Used by one export thread only.
    """

    MAX_LENGTH = 4096
    MAX_ENTRIES = 4096
    MAX_BYTES = 1024 * 1024

    __slots__ = ("_bytes", "names", "values")

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.values: set[bytes] = set()
        self._bytes = 0

    def add(self, names: list[str], values: list[bytes]) -> None:
        """Remember ``names`` and ``values`` as clean (the long ones are left out)."""
        limit = self.MAX_LENGTH
        names = [n for n in names if len(n) <= limit]
        values = [v for v in values if len(v) <= limit]
        size = sum(map(len, names)) + sum(map(len, values))
        if (
            len(self.names) + len(self.values) + len(names) + len(values) > self.MAX_ENTRIES
            or self._bytes + size > self.MAX_BYTES
        ):
            self.names.clear()
            self.values.clear()
            self._bytes = 0
        self.names.update(names)
        self.values.update(values)
        self._bytes += size

    def __len__(self) -> int:
        return len(self.names) + len(self.values)


_RUN = operator.attrgetter("run")
_REDACTOR = operator.attrgetter("redactor")
_NAME = operator.attrgetter("name")
_INPUTS = operator.attrgetter("inputs")
_OUTPUTS = operator.attrgetter("outputs")
_METADATA = operator.attrgetter("metadata")
_EXTRAS = (operator.attrgetter("logs"), operator.attrgetter("error"), operator.attrgetter("usage"))


def _uses_hints(redactor: Redactor | None) -> bool:
    return redactor is not None and redactor.enabled and redactor._use_hints


class MaskingPass:
    """Masks many records with a single hint scan over all their fields.

    The Aho-Corasick scan releases the GIL on every call; one call per field would hand
    the GIL to the application's threads and wait to get it back, several times per span.
    One call for a whole drain pass costs that once, and a pass whose every field is known
    clean (:class:`CleanValues`) costs no scan at all. Only the records the scan flags
    (and every record of a redactor with custom patterns, which hints cannot pre-check)
    go through the field-by-field path.

    Spans with only a name, inputs, outputs and metadata (most of them) are handled a
    pass at a time in C-level set and map operations: each distinct unknown value is
    scanned once, and only when a value is flagged are the spans holding it looked up.
    Spans with logs, an error or usage go field by field into the same scan.

    Fields are joined with NUL bytes, which no hint contains, so no hint can match across
    two fields. ASCII lower-casing of UTF-8 bytes keeps the hints' (ASCII) matches.
    """

    __slots__ = ("_always", "_clean", "_ends", "_owners", "_parts", "_runs", "_spans")

    def __init__(self, clean: CleanValues | None = None) -> None:
        self._clean = clean if clean is not None else CleanValues()
        self._spans: list[SpanRecord] = []
        self._runs: list[RunInfo] = []  # runs of redactors with the default rules only
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
        self._runs.append(run)

    def _add_run_fields(self, run: RunInfo) -> None:
        parts = self._parts
        mark = len(parts)
        try:
            parts.append(run.name.encode("utf-8", "surrogatepass"))
            if run.metadata is not None:
                parts.append(run.metadata)
        except Exception:  # a field of an unexpected type: the field-by-field path decides
            self._always.append(run)
            del parts[mark:]
            return
        self._owners.append(run)
        self._ends.append(len(parts))

    def add_span(self, span: SpanRecord) -> None:
        """Queue every user-provided field of a finished span for masking."""
        self._spans.append(span)

    def add_spans(self, spans: list[SpanRecord]) -> None:
        """Queue many spans (as :meth:`add_span` each)."""
        self._spans.extend(spans)

    def _add_fields(self, span: SpanRecord) -> None:
        """Queue a span's fields one by one (a span with logs, an error or usage)."""
        parts = self._parts
        mark = len(parts)
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
            del parts[mark:]
            return
        self._owners.append(span)
        self._ends.append(len(parts))

    def _split(self, spans: list[SpanRecord]) -> list[SpanRecord]:
        """Sort ``spans`` by the path they take; returns those for the set-based path."""
        try:
            redactors = set(map(_REDACTOR, set(map(_RUN, spans))))
            if all(map(_uses_hints, redactors)) and not any(
                any(map(get, spans)) for get in _EXTRAS
            ):
                return spans
        except Exception:  # a record missing a field: sorted one by one below
            pass
        simple = []
        for span in spans:
            redactor = span.run.redactor
            if redactor is None or not redactor.enabled:
                continue
            if not redactor._use_hints:
                self._always.append(span)
            elif span.logs or span.error is not None or getattr(span, "usage", None):
                self._add_fields(span)
            else:
                simple.append(span)
        return simple

    def _unknown(
        self, spans: list[SpanRecord], runs: list[RunInfo]
    ) -> tuple[list[str], list[bytes]]:
        """The distinct names and values of ``spans`` and ``runs`` not known to be clean."""
        clean = self._clean
        names = set(map(_NAME, spans))
        names.update(map(_NAME, runs))
        names -= clean.names
        values = set(map(_INPUTS, spans))
        values.update(map(_OUTPUTS, spans))
        values.update(map(_METADATA, spans))
        values.update(map(_METADATA, runs))
        values.discard(None)
        values -= clean.values
        return list(names), list(values)

    def run(self) -> list[SpanRecord]:
        """Mask the flagged records in place. Returns the spans whose masking failed (to be
        dropped: a record is never exported unmasked)."""
        simple = self._split(self._spans) if self._spans else []
        runs = self._runs
        names: list[str] = []
        values: list[bytes] = []
        keys: list[bytes] = []
        if simple or runs:
            try:
                names, values = self._unknown(simple, runs)
                keys = [n.encode("utf-8", "surrogatepass") for n in names]
                keys += values
                b"".join(keys)  # every key is bytes (a field of another type raises here)
            except Exception:  # a field of an unexpected type: field by field instead
                names, values, keys = [], [], []
                for span in simple:
                    self._add_fields(span)
                for run in runs:
                    self._add_run_fields(run)
                simple, runs = [], []
        flagged_keys, flagged = self._scan(keys)
        if simple or runs:
            every = [*names, *values]
            self._clean.add(
                [n for i, n in enumerate(names) if i not in flagged_keys],
                [v for i, v in enumerate(values, len(names)) if i not in flagged_keys],
            )
            if flagged_keys:
                hits = {every[i] for i in flagged_keys}
                flagged.extend(r for r in runs if r.name in hits or r.metadata in hits)
                flagged.extend(
                    s
                    for s in simple
                    if s.name in hits or s.inputs in hits or s.outputs in hits or s.metadata in hits
                )
        return self._mask_flagged([*self._always, *flagged])

    def _scan(self, keys: list[bytes]) -> tuple[set[int], list[Any]]:
        """One hint scan over ``keys`` and the queued fields: the indexes of the keys
        flagged, and the field-by-field owners flagged."""
        parts = keys + self._parts if keys else self._parts
        if not parts:
            return set(), []
        joined = b"\0".join(parts)
        starts = [start for _, start, _ in _JSON_HINTS.find_matches_as_indexes(joined.lower())]
        if b"@" in joined:
            starts.extend(m.start() for m in _URL_WITH_PASSWORD.finditer(joined))
        flagged_keys: set[int] = set()
        owners: list[Any] = []
        if starts:
            byte_ends = list(itertools.accumulate(len(p) + 1 for p in parts))
            n_keys = len(keys)
            seen: set[int] = set()
            for start in starts:
                index = bisect.bisect_right(byte_ends, start)
                if index < n_keys:
                    flagged_keys.add(index)
                    continue
                owner = bisect.bisect_right(self._ends, index - n_keys)
                if owner not in seen:
                    seen.add(owner)
                    owners.append(self._owners[owner])
        return flagged_keys, owners

    @staticmethod
    def _mask_flagged(flagged: list[Any]) -> list[SpanRecord]:
        failed = []
        for record in flagged:
            try:
                if type(record) is RunInfo:
                    _mask_run(record)
                else:
                    record.run.redactor.record(record)
            except Exception:
                if type(record) is RunInfo:
                    _warn.internal_error("mask_run", "tracemux: masking run fields failed")
                else:
                    _warn.internal_error("mask", "tracemux: masking failed; record dropped")
                    failed.append(record)
        return failed


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
