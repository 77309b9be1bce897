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
    ],
)
def test_auth_scheme_words_in_prose_are_not_masked(text):
    assert Redactor().text(text) == text


def test_text_without_secrets_is_returned_as_is():
    r = Redactor()
    s = "an ordinary sentence - with dashes_and_underscores"
    assert r.text(s) is s
