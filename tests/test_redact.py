"""Secrets never reach a destination: not in values, names, logs, errors or tracebacks."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tracemux.redact import MASK, Redactor

SECRET = "sk-lf-0123456789abcdefSECRET"


def db_bytes(path: Path) -> bytes:
    data = b""
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            data += p.read_bytes()
    return data


def test_secret_never_reaches_the_store_file(service, store):
    class LeakyError(Exception):
        pass

    with (
        pytest.raises(LeakyError),
        service.trace_run(
            f"run with {SECRET} in its name",
            inputs={"api_key": SECRET, "nested": [{"Authorization": f"Bearer {SECRET}"}]},
            metadata={"config": {"LANGFUSE_SECRET_KEY": SECRET}, "note": f"key is {SECRET}"},
        ) as run,
    ):
        with run.span(f"span {SECRET}", inputs={"prompt": f"use {SECRET} please"}) as span:
            span.add_log(f"calling with {SECRET}", token=SECRET)
            span.set_outputs({"echo": SECRET, "password": "hunter2-password"})
            span.set_metadata({"headers": {"x-api-key": SECRET}})
        with run.span("fails"):
            raise LeakyError(f"auth failed for {SECRET}")
    assert service.flush(10)
    raw = db_bytes(Path(store.path))
    assert SECRET.encode() not in raw
    assert b"hunter2-password" not in raw
    assert MASK.encode() in raw
    # what is kept around the secret is still useful
    spans = {s.name: s for s in store.spans(run.run_id)}
    assert "span [masked]" in spans
    assert spans["span [masked]"].inputs == {"prompt": "use [masked] please"}
    assert spans["fails"].error["message"] == "auth failed for [masked]"
    assert SECRET not in spans["fails"].error["traceback"]
    assert "LeakyError" in spans["fails"].error["traceback"]


def test_masking_can_be_turned_off_and_extended(make_service, store, tmp_path):
    from tracemux.destinations import SQLiteStore

    plain = make_service([store], mask_secrets=False)
    with plain.trace_run("r", inputs={"api_key": "visible-value"}):
        pass
    assert plain.flush(10)
    assert store.runs()[0].inputs == {"api_key": "visible-value"}

    other = SQLiteStore(tmp_path / "extended.db")
    extended = make_service(
        [other], extra_secret_keys=["internal_code"], extra_secret_values=[r"ACME-\d{6}"]
    )
    with extended.trace_run("r", inputs={"internal_code": 42, "text": "id ACME-123456 here"}):
        pass
    assert extended.flush(10)
    assert other.runs()[0].inputs == {"internal_code": MASK, "text": "id [masked] here"}


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "OPENAI_API_KEY",
        "apiKey",
        "secret",
        "client_secret",
        "password",
        "Password",
        "token",
        "access_token",
        "Authorization",
        "x-api-key",
        "private_key",
        "cookie",
        "credentials",
        "LANGFUSE_SECRET_KEY",
    ],
)
def test_secret_key_names_are_masked_at_any_depth(key):
    r = Redactor()
    data = orjson.dumps({"outer": [{"inner": {key: "value-1234"}}]})
    assert orjson.loads(r.json(data)) == {"outer": [{"inner": {key: MASK}}]}


@pytest.mark.parametrize(
    "key", ["max_tokens", "input_tokens", "keywords", "monkey", "tokenizer", "author", "key_id"]
)
def test_ordinary_keys_are_left_alone(key):
    r = Redactor()
    data = orjson.dumps({key: "value"})
    assert r.json(data) == data


@pytest.mark.parametrize(
    "value",
    [
        "sk-proj-abcdefgh12345678",
        "pk-lf-1234567890ab",
        "sk-lf-1234567890ab",
        "lsv2_pt_0123456789abcdef",
        "Bearer abc.def.ghi-jkl",
        "basic dXNlcjpwYXNzd29yZA==",
        "ghp_0123456789abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
        # tokens made only of letters (token_urlsafe can draw one): a case change or length
        "Bearer zNzSRRTrgjVLbgSoRbtLSUujAJpGhxjn",
        "Bearer ABCDEFGHIJKLMNOPQRSTUVWX",
        "Bearer abcdEfgHij",
        "Bearer abcdefghijklmnopqrsTuv",
    ],
)
def test_credential_shaped_values_are_masked_inside_text(value):
    r = Redactor()
    assert r.text(f"before {value} after") == f"before {MASK} after"


@pytest.mark.parametrize(
    "text",
    [
        "Basic Prompting",
        "the Basic Prompting flow.",
        "Bearer tokens are opaque strings",
        "basic arithmetic",
        "Bearer Authentication is described in RFC 6750",
        "the Bearer Authorization header",
        "Basic JavaScript tutorial",
        "a basic PowerPoint deck",
        "basic PostgreSQL setup",
        "Basic internationalization support",
        "basic electroencephalography",
        "Basic Internationalization",
    ],
)
def test_auth_scheme_words_in_prose_are_not_masked(text):
    assert Redactor().text(text) == text


def test_text_without_secrets_is_returned_as_is():
    r = Redactor()
    s = "an ordinary sentence - with dashes_and_underscores"
    assert r.text(s) is s


# -- one masking pass for many records (what the export thread does per drain) ------------


def _span(run, name="step", inputs=None, outputs=None, metadata=None, logs=None, error=None):
    from tracemux.model import SpanRecord

    span = object.__new__(SpanRecord)
    span.run, span.name, span.inputs, span.outputs, span.metadata = (
        run,
        name,
        inputs,
        outputs,
        metadata,
    )
    span.logs, span.error, span.nbytes, span.refs = logs, error, 100, 0
    return span


def _run(redactor, name="run", metadata=None):
    from tracemux.model import RunInfo

    return RunInfo("r1", name, (), metadata=metadata, redactor=redactor)


def test_one_pass_masks_exactly_the_fields_that_hold_secrets():
    from tracemux.model import ErrorInfo, LogEntry
    from tracemux.redact import MaskingPass

    r = Redactor()
    run = _run(r, name=f"run {SECRET}", metadata=b'{"note": "plain"}')
    clean_inputs = orjson.dumps({"question": "What is RAG?", "task-list": ["a", "b"]})
    spans = [_span(run, inputs=clean_inputs, outputs=b'{"answer": 42}') for _ in range(200)]
    spans[3].name = f"call {SECRET}"
    spans[7].outputs = orjson.dumps({"client_secret": "abc"})
    spans[11].logs = [
        LogEntry(1, "info", "all good", None),
        LogEntry(2, "info", f"used {SECRET}", None),
    ]
    spans[13].error = ErrorInfo("E", "boom", f'Traceback...\n  key = "{SECRET}"\nE: boom')
    spans[17].metadata = orjson.dumps({"deep": [{"password": "hunter2"}]})
    masking = MaskingPass()
    masking.add_run(run)
    for span in spans:
        masking.add_span(span)
    assert masking.run() == []

    assert run.name == f"run {MASK}"
    assert run.metadata == b'{"note": "plain"}'
    assert spans[3].name == f"call {MASK}"
    assert orjson.loads(spans[7].outputs) == {"client_secret": MASK}
    assert [e.message for e in spans[11].logs] == ["all good", f"used {MASK}"]
    assert SECRET not in spans[13].error.traceback and "E: boom" in spans[13].error.traceback
    assert orjson.loads(spans[17].metadata) == {"deep": [{"password": MASK}]}
    for i, span in enumerate(spans):  # everything else is the very same object, untouched
        if i not in (3, 7, 11, 13, 17):
            assert span.inputs is clean_inputs and span.name == "step", i


def test_a_hint_cannot_match_across_two_fields():
    from tracemux.redact import MaskingPass

    r = Redactor()
    run = _run(r)
    # "...s" + "k-..." would read "sk-..." if the fields were simply concatenated
    inputs = orjson.dumps("k-0123456789abcdef")
    span = _span(run, name="tasks", inputs=inputs)
    masking = MaskingPass()
    masking.add_span(span)
    masking.run()
    assert span.name == "tasks" and span.inputs is inputs


def test_custom_patterns_and_default_rules_in_one_pass():
    from tracemux.redact import MaskingPass

    custom = Redactor(extra_values=(r"ACME-\d{6}",))
    default = Redactor()
    off = Redactor(enabled=False)
    a = _span(_run(custom), name="order ACME-123456")
    b = _span(_run(default), name="order ACME-123456")
    c = _span(_run(off), name=f"left as is {SECRET}")
    masking = MaskingPass()
    for span in (a, b, c):
        masking.add_span(span)
    masking.run()
    assert a.name == f"order {MASK}"
    assert b.name == "order ACME-123456"
    assert c.name == f"left as is {SECRET}"


@pytest.fixture
def scans(monkeypatch):
    """Counts the hint scans (each one hands the GIL to other threads)."""
    import tracemux.redact as redact

    calls = []
    real = redact._JSON_HINTS

    class Counting:
        def find_matches_as_indexes(self, data):
            calls.append(len(data))
            return real.find_matches_as_indexes(data)

    monkeypatch.setattr(redact, "_JSON_HINTS", Counting())
    return calls


def _mask_pass(spans, runs=(), clean=None):
    from tracemux.redact import MaskingPass

    masking = MaskingPass(clean)
    for run in runs:
        masking.add_run(run)
    masking.add_spans(list(spans))
    return masking.run()


def test_a_pass_whose_values_are_all_known_clean_runs_no_scan(scans):
    from tracemux.redact import CleanValues

    clean = CleanValues()
    run = _run(Redactor(), name="flow", metadata=b'{"flow": "rag"}')
    make = lambda: [  # noqa: E731  new bytes objects each time, equal content
        _span(run, inputs=orjson.dumps({"q": "What is RAG?"}), outputs=orjson.dumps([1, 2]))
        for _ in range(100)
    ]
    assert _mask_pass(make(), [run], clean) == []
    assert len(scans) == 1
    assert _mask_pass(make(), [run], clean) == []
    assert len(scans) == 1  # the second pass had nothing new
    new = make()
    new[5].outputs = orjson.dumps({"new": "value"})
    assert _mask_pass(new, (), clean) == []
    assert len(scans) == 2 and scans[-1] < 40  # only the one new value was scanned


def test_a_secret_is_masked_every_time_it_comes_back_and_never_cached():
    from tracemux.redact import CleanValues

    clean = CleanValues()
    run = _run(Redactor())
    for _ in range(3):
        leaky = orjson.dumps({"api_key": "abc", "q": SECRET})
        spans = [_span(run, name=f"call {SECRET}", inputs=leaky) for _ in range(10)]
        spans.append(_span(run, inputs=b'{"q": "fine"}'))
        assert _mask_pass(spans, (), clean) == []
        for span in spans[:10]:  # every span holding the value, not only the first
            assert span.name == f"call {MASK}"
            assert orjson.loads(span.inputs) == {"api_key": MASK, "q": MASK}
        assert spans[10].inputs == b'{"q": "fine"}'
    assert not any(SECRET in n for n in clean.names)
    assert not any(SECRET.encode() in v for v in clean.values)


def test_a_value_known_clean_is_still_checked_by_custom_patterns():
    from tracemux.redact import CleanValues

    clean = CleanValues()
    order = orjson.dumps({"order": "ACME-123456"})
    default_run = _run(Redactor())
    custom_run = _run(Redactor(extra_values=(r"ACME-\d{6}",)))
    plain = _span(default_run, inputs=order)
    assert _mask_pass([plain], (), clean) == []
    assert plain.inputs is order and order in clean.values
    custom = _span(custom_run, inputs=orjson.dumps({"order": "ACME-123456"}))
    assert _mask_pass([custom], (), clean) == []
    assert orjson.loads(custom.inputs) == {"order": MASK}


def test_the_clean_cache_is_bounded():
    from tracemux.redact import CleanValues

    clean = CleanValues()
    for i in range(50):
        clean.add(
            [f"name-{i}-{j}" for j in range(100)],
            [b"v" * 900 + b"%d-%d" % (i, j) for j in range(100)],
        )
        assert len(clean) <= CleanValues.MAX_ENTRIES
        assert sum(map(len, clean.values)) + sum(map(len, clean.names)) <= CleanValues.MAX_BYTES
    clean.add([], [b"x" * (CleanValues.MAX_LENGTH + 1)])
    assert not any(len(v) > CleanValues.MAX_LENGTH for v in clean.values)


def test_spans_with_logs_errors_and_usage_in_a_pass_with_cached_values(scans):
    from tracemux.model import ErrorInfo, LogEntry
    from tracemux.redact import CleanValues

    clean = CleanValues()
    run = _run(Redactor())
    _mask_pass([_span(run, inputs=b'{"q": 1}')], (), clean)
    spans = [_span(run, inputs=b'{"q": 1}') for _ in range(3)]
    spans[0].logs = [LogEntry(1, "info", f"used {SECRET}", None)]
    spans[1].error = ErrorInfo("E", f"bad key {SECRET}", "")
    spans[2].usage = {f"{SECRET}": 1}
    assert _mask_pass(spans, (), clean) == []
    assert spans[0].logs[0].message == f"used {MASK}"
    assert spans[1].error.message == f"bad key {MASK}"
    assert list(spans[2].usage) == [MASK]


@pytest.fixture
def masking_bug(monkeypatch):
    """Masking a JSON value that holds "api_key" raises (a bug in a masking rule)."""
    real = Redactor.mask_json

    def failing(self, data):
        if b"api_key" in data:
            raise RuntimeError("masking bug")
        return real(self, data)

    monkeypatch.setattr(Redactor, "mask_json", failing)


def test_a_span_whose_masking_fails_is_reported_and_the_others_are_masked(masking_bug):
    from tracemux.redact import MaskingPass

    r = Redactor()
    run = _run(r)
    bad = _span(run, name=f"bad {SECRET}", inputs=b'{"api_key": "x"}')
    good = _span(run, name=f"good {SECRET}")
    masking = MaskingPass()
    masking.add_span(bad)
    masking.add_span(good)
    assert masking.run() == [bad]
    assert good.name == f"good {MASK}"


def test_masking_failure_drops_the_span_and_counts_it(make_service, received, masking_bug):
    from tests.conftest import Recorder

    svc = make_service([Recorder("mask")])
    with svc.trace_run("r") as run:
        run.span("bad", inputs={"api_key": "x"}).end()
        run.span("good", inputs={"q": SECRET}).end()
    assert svc.flush(10)
    names = sorted(s.name for s in received["mask"])
    assert names == ["good", "r"]
    assert svc.stats()["dropped"].get("mask_error") == 1
    good = next(s for s in received["mask"] if s.name == "good")
    assert SECRET.encode() not in good.inputs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://bob:pw-1234@db.example.com/x", "https://bob:[masked]@db.example.com/x"),
        ("mail bob@example.com or see https://example.com/a?page=2", None),
        ("GET /x?api_key=abc123&page=2&token=zz9", "GET /x?api_key=[masked]&page=2&token=[masked]"),
        ("max_tokens=100 temperature=0.2", None),
        ("bad {'password': 'hunter2', 'n': 3, 'x': None}",
         "bad {'password': '[masked]', 'n': 3, 'x': None}"),
        ('{"dbPassword": 1234, "user": "bob"}', '{"dbPassword": "[masked]", "user": "bob"}'),
        ("it's Bob's monkey's key", None),
        ("https://maps.example.com/x?key=AIzaSyA1234567890abcdefghijklmnopqrstuv&q=1",
         "https://maps.example.com/x?key=[masked]&q=1"),
    ],
)  # fmt: skip
def test_text_rules_for_urls_pairs_and_reprs(text: str, expected: str | None) -> None:
    assert Redactor().text(text) == (text if expected is None else expected)


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("userPassword", True), ("openaiApiKey", True), ("githubToken", True),
        ("dbPassword", True), ("api_key_1", True), ("api-keys", True), ("XApiKey", True),
        ("password2", True), ("OPENAI_API_KEY", True),
        ("max_tokens", False), ("input_tokens", False), ("monkey", False), ("keys", False),
        ("tokenizer", False), ("secretary", False), ("public_key", False),
    ],
)  # fmt: skip
def test_compound_key_names(key: str, secret: bool) -> None:
    masked = Redactor().json(orjson.dumps({key: "some-value-123"}))
    assert (b"[masked]" in masked) is secret
