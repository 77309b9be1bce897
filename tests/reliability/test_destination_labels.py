"""``stats()`` labels are unique per destination and hold no secret (issue 13, item 12).

Two tenants whose public keys end alike (``pk-lf-...abcd`` both) used to share one
``stats()["destinations"]`` entry: their counts were merged, and a failing tenant looked
healthy. Each destination now has its own label; equal configurations share one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.faultserver import FaultServer, Reply
from tracemux import TracingService
from tracemux.destinations import (
    OTLP,
    Arize,
    Langfuse,
    LangSmith,
    LangWatch,
    Openlayer,
    Opik,
    Phoenix,
    Traceloop,
)

pytestmark = pytest.mark.reliability


def tenants(url: str) -> list[Any]:
    """Pairs of destinations that differ only in a secret, or in a secret's hidden part."""
    return [
        Langfuse(public_key="pk-lf-tenant-one-abcd", secret_key="sk-lf-one-0000", host=url),
        Langfuse(public_key="pk-lf-tenant-two-abcd", secret_key="sk-lf-two-0000", host=url),
        Langfuse(public_key="pk-lf-tenant-two-abcd", secret_key="sk-lf-other-0000", host=url),
        LangSmith(api_key="lsv2_pt_first_key_0000_wxyz", endpoint=url),
        LangSmith(api_key="lsv2_pt_second_key_111_wxyz", endpoint=url),
        Phoenix(endpoint=url, api_key="phx-first-secret-key"),
        Phoenix(endpoint=url, api_key="phx-other-secret-key"),
        OTLP(endpoint=url, headers={"authorization": "Bearer one-token-zz"}),
        OTLP(endpoint=url, headers={"authorization": "Bearer two-token-zz"}),
        LangWatch(api_key="sk-lw-firstsecret00000wxyz", endpoint=url),
        LangWatch(api_key="sk-lw-othersecret00000wxyz", endpoint=url),
        Opik(url=url, api_key="opikfirstsecret00000wxyz"),
        Opik(url=url, api_key="opikothersecret00000wxyz"),
        Traceloop(api_key="tl-firstsecret000000wxyz", base_url=url),
        Traceloop(api_key="tl-othersecret000000wxyz", base_url=url),
        Arize(api_key="arizefirstsecret0000wxyz", space_id="s", endpoint=url),
        Arize(api_key="arizeothersecret0000wxyz", space_id="s", endpoint=url),
        Openlayer(api_key="olfirstsecret0000000wxyz", pipeline_id="p", base_url=url),
        Openlayer(api_key="olothersecret0000000wxyz", pipeline_id="p", base_url=url),
    ]


SECRETS = ("tenant-one", "tenant-two", "sk-lf-", "first_key", "second_key", "first-secret",
           "other-secret", "one-token", "two-token", "firstsecret", "othersecret")  # fmt: skip


def test_destinations_that_differ_only_in_a_secret_get_distinct_labels() -> None:
    dests = tenants("http://127.0.0.1:9")
    labels = [d.describe() for d in dests]
    assert len(set(labels)) == len(dests), labels
    again = [d.describe() for d in tenants("http://127.0.0.1:9")]
    assert again == labels  # equal configuration, same label (one lane, one entry)
    for label in labels:
        assert not [s for s in SECRETS if s in label], label


def test_each_tenant_has_its_own_stats_entry_with_its_own_counts(
    fault_server: FaultServer,
    make_service: Callable[..., TracingService],
    pipeline_settings: Callable[..., Any],
) -> None:
    pipeline_settings(flush_interval=0.05)
    good, bad = tenants(fault_server.url)[:2]
    bad_auth = bad.auth_header()
    fault_server.respond = lambda req: Reply(
        401 if req.headers.get("authorization") == bad_auth else 200, b"{}"
    )
    svc = make_service([])
    for _ in range(3):
        svc.trace_run("good tenant", destinations=[good]).end()
    for _ in range(2):
        svc.trace_run("bad tenant", destinations=[bad]).end()
    assert svc.flush(20)
    per_dest = svc.stats()["destinations"]
    assert per_dest[good.describe()]["exported"] == 3
    assert per_dest[good.describe()]["dropped"] == {}
    assert per_dest[bad.describe()]["exported"] == 0
    assert per_dest[bad.describe()]["dropped"] == {"http_401": 2}
    assert not [k for k in per_dest for s in SECRETS if s in k]
