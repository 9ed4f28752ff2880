"""Fuzzing the provider clients and the engine with random and garbled provider answers.

A small aiohttp app on loopback plays both providers; hypothesis decides what each endpoint
answers: documents of the right shape whose fields are each either valid or any JSON value
(wrong types, NaN, huge numbers, control characters, very long strings), truncated or
corrupted bodies, HTML, other statuses. Whatever comes, a pull either succeeds with lines
that are all valid, or fails with a ReconcilerError (a ProviderError naming the source and
the endpoint): never a KeyError, TypeError, database or encoding error.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.errors import ProviderError, ReconcilerError
from reconciler.providers.base import open_provider
from reconciler.providers.http import HttpClient
from reconciler.refresh import refresh_source
from reconciler.settings import AkamaiSourceSettings, FastlySourceSettings, settings_from_mapping

TODAY = date(2024, 7, 10)
# Controls, lone surrogates and bidi overrides: never in a line read from a provider.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
MONTHS = ("2024-05", "2024-06", "2024-07")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# -- what the fake provider answers ---------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "So"]), max_size=10),
    st.sampled_from(["a" * 700, "\x00" * 3, "\ud800"]),  # too long for any column; unstorable
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=8,
)


hostile_text = st.one_of(
    st.sampled_from(["NUL\x00", "half \ud800", "\u202eevil", "\x1b[2J", "\n\t", "a" * 700]),
    st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Mn"]), min_size=1),
    st.text(st.characters(categories=["Cs", "L"]), min_size=1, max_size=5),  # lone surrogates
)
# Identity and name fields: strings that pass type checks but may be hostile.
TEXT_FIELDS = frozenset(
    {"usage_type", "name", "region", "unit", "product_id", "service_id", "service_name"}
    | {"customer_id", "currency_code", "product_name", "statType", "productName", "productId"}
)
months = st.sampled_from(MONTHS)
quantities = st.one_of(
    st.integers(min_value=0, max_value=10**12),
    st.floats(min_value=0, max_value=1e9),
    st.just(10**40),
)
names = st.sampled_from(["North America Bandwidth", "Europe Requests", "Total MB", "Hits"])


class Shapes:
    """Strategies for every document; ``garbage``: any field may be any JSON value, else only
    strings turn hostile (the shapes stay valid, so the data reaches the database)."""

    def __init__(self, garbage: bool) -> None:
        self.garbage = garbage

    def value(self, key: str, valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        options = [valid] * 4
        if key in TEXT_FIELDS:
            options.append(hostile_text)
        if self.garbage:
            options.append(json_values)
        return st.one_of(*options)

    def record(self, fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            out = {}
            for key, valid in fields.items():
                if self.garbage and draw(st.integers(0, 30)) == 0:
                    continue  # missing
                out[key] = draw(self.value(key, valid))
            return out

        return build()

    def records(self, fields: dict[str, st.SearchStrategy[Any]], most: int) -> Any:
        return st.lists(self.record(fields), min_size=0 if self.garbage else 1, max_size=most)

    def documents(self) -> dict[str, st.SearchStrategy[Any]]:
        meta = self.record(
            {
                "next_cursor": st.sampled_from(["", "", "b3BhcXVl"] if self.garbage else [""]),
                "total": st.integers(min_value=0, max_value=20) if self.garbage else st.none(),
                "limit": st.just(10000),
            }
        )
        usage = {
            "month": months,
            "usage_type": names,
            "name": names,
            "region": st.sampled_from(["North America", "Europe", ""]),
            "unit": st.sampled_from(["GB", "unit", "gb"]),
            "quantity": quantities,
            "raw_quantity": quantities,
            "product_id": st.sampled_from(["cdn_usage", "compute"]),
            "last_updated_at": st.sampled_from(["2024-06-02T04:11:00Z", "2024-07-01T00:00:00"]),
        }
        service_usage = {
            "customer_id": st.just("x4xCwxxJxGCx123Rx5xTx"),
            "service_id": st.sampled_from(["SU1Z0isxPaozGVKXdv0eY", "abc", "svc-2"]),
            "service_name": st.sampled_from(["www.example.com", ""]),
            "month": months,
            "product_id": st.sampled_from(["cdn_usage", "compute"]),
            "usage_type": names,
            "region": st.sampled_from(["North America", "Europe"]),
            "unit": st.sampled_from(["GB", "unit"]),
            "quantity": quantities,
            "raw_quantity": quantities,
        }
        item = {
            "units": quantities,
            "amount": st.floats(allow_nan=False, allow_infinity=False),
            "product_name": names,
            "region": st.sampled_from(["North America", "Europe"]),
            "usage_type": st.sampled_from(["bandwidth", "requests"]),
        }
        invoice = {
            "customer_id": st.just("x4xCwxxJxGCx123Rx5xTx"),
            "invoice_id": st.sampled_from(["123", "456"]),
            "billing_start_date": st.sampled_from(["2024-05-01T00:00:00Z", "2024-06-01"]),
            "billing_end_date": st.just("2024-06-30T23:59:59Z"),
            "currency_code": st.sampled_from(["USD", "EUR"]),
            "transaction_line_items": self.records(item, 3),
        }
        stat = {
            "statType": names,
            "unit": st.sampled_from(["GB", "Hits"]),
            "value": quantities,
            "isBillable": st.booleans(),
        }
        period = {
            "month": months,
            "dataStatus": st.sampled_from(["COLLECTING_DATA", "DATA_FINALIZED"]),
            "region": st.sampled_from(["GLOBAL", "EMEA"]),
            "start": st.sampled_from(["2024-05-01", "2024-06-01", "2024-06-16"]),
            "end": st.sampled_from(["2024-05-31", "2024-06-30"]),
            "stats": self.records(stat, 4),
        }
        product = {"productId": st.just("1-ABC012"), "productName": names}
        return {
            "/billing/v3/invoices": self.document(self.records(invoice, 2), meta),
            "/billing/v3/usage-metrics": self.document(self.records(usage, 6), meta),
            "/billing/v3/service-usage-metrics": st.one_of(
                self.document(self.records(service_usage, 6), meta),
                self.document(
                    st.fixed_dictionaries(
                        {"details": self.records(service_usage, 4)},
                        optional={"meta": meta, "usage_type": names},
                    ),
                    None,
                ),
            ),
            "products": st.fixed_dictionaries(
                {
                    "usagePeriods": self.records(
                        {"month": months, "usageProducts": self.records(product, 2)}, 2
                    )
                }
            ),
            "monthly-summary": self.record(
                {
                    "contractId": st.just("K-0N7RAK7"),
                    "productId": st.just("1-ABC012"),
                    "productName": names,
                    "usagePeriods": self.records(period, 3),
                }
            ),
            "identifiers": st.lists(self.value("id", st.just("K-0N7RAK7")), min_size=1, max_size=2),
        }

    def document(self, data: Any, meta: Any) -> Any:
        optional = {"meta": meta} if meta is not None else {}
        return st.fixed_dictionaries({"data": data}, optional=optional)


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes


def _encode(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


GARBLED, HOSTILE = Shapes(garbage=True).documents(), Shapes(garbage=False).documents()


@st.composite
def garbled(draw: st.DrawFn, kind: str) -> Answer:
    """One endpoint's answer: mostly a JSON document, sometimes garbled or not JSON at all."""
    body = _encode(draw(GARBLED[kind]))
    how = draw(st.sampled_from(["as is"] * 6 + ["truncated", "corrupted", "any json", "html"]))
    content_type = "application/json"
    if how == "truncated":
        body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    elif how == "corrupted":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    elif how == "any json":
        body = _encode(draw(json_values))
    elif how == "html":
        body, content_type = b"<html><title>Oops</title></html>", "text/html"
    status = draw(st.sampled_from([200] * 12 + [400, 401, 403, 404, 500, 202]))
    return Answer(status, content_type, body)


@st.composite
def hostile(draw: st.DrawFn, kind: str) -> Answer:
    """A well-formed 200 answer whose strings may be hostile and numbers huge."""
    return Answer(200, "application/json", _encode(draw(HOSTILE[kind])))


@dataclass
class FakeProvider:
    """Answers each request with the answer drawn for its endpoint."""

    answers: dict[str, Answer] = field(default_factory=dict)

    def kind(self, path: str) -> str:
        return path if path.startswith("/billing/v3/") else path.rstrip("/").rsplit("/", 1)[-1]

    async def handle(self, request: web.Request) -> web.Response:
        answer = self.answers.get(self.kind(request.path))
        if answer is None:
            return web.json_response({"title": "Not Found"}, status=404)
        return web.Response(
            status=answer.status, body=answer.body, headers={"Content-Type": answer.content_type}
        )


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeProvider, str]]:
    provider = FakeProvider()
    app = web.Application()
    app.router.add_get("/{tail:.*}", provider.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield provider, str(server.make_url("")).rstrip("/")


@pytest.fixture
def edgerc(tmp_path: Path) -> Path:
    path = tmp_path / "edgerc"
    path.write_text(
        "[default]\nclient_secret = c2VjcmV0\nhost = 127.0.0.1\n"
        "access_token = akab-access-token\nclient_token = akab-client-token\n"
    )
    path.chmod(0o600)
    return path


def fastly_settings(base_url: str, invoices: bool) -> FastlySourceSettings:
    return FastlySourceSettings(
        name="fastly", provider="fastly", base_url=base_url, max_retries=0, invoices=invoices
    )


def akamai_settings(base_url: str, edgerc: Path, discover: bool) -> AkamaiSourceSettings:
    return AkamaiSourceSettings(
        name="akamai",
        provider="akamai",
        base_url=base_url,
        edgerc=edgerc,
        max_retries=0,
        contracts=[] if discover else ["K-0N7RAK7"],
    )


def assert_valid(lines: list[Any]) -> None:
    for line in lines:
        assert isinstance(line.quantity, Decimal)
        assert line.quantity.is_finite() and line.quantity >= 0
        assert str(line.month) in MONTHS
        for text in (line.product, line.usage_type, line.unit, line.region, line.product_name):
            assert not UNSAFE.search(text), repr(text)


def assert_clear(error: ReconcilerError, source: str) -> None:
    assert isinstance(error, ProviderError), repr(error)
    assert str(error).startswith(f"source '{source}': "), str(error)


FASTLY = ("/billing/v3/invoices", "/billing/v3/usage-metrics", "/billing/v3/service-usage-metrics")
AKAMAI = ("identifiers", "products", "monthly-summary")
fastly_answers = st.fixed_dictionaries({kind: garbled(kind) for kind in FASTLY})
akamai_answers = st.fixed_dictionaries({kind: garbled(kind) for kind in AKAMAI})
hostile_answers = st.fixed_dictionaries({kind: hostile(kind) for kind in FASTLY + AKAMAI})


@FUZZ
@given(replies=fastly_answers, invoices=st.booleans())
async def test_fastly_client_fails_only_with_a_clear_error(
    fake: tuple[FakeProvider, str], replies: dict[str, Answer], invoices: bool
) -> None:
    provider_app, base_url = fake
    provider_app.answers = replies
    async with HttpClient() as http:
        provider = open_provider(
            fastly_settings(base_url, invoices), 0, http, {"FASTLY_API_TOKEN": "k" * 10}
        )
        lines: list[Any] = []
        try:
            async for page in provider.pull(TODAY):
                lines.extend(page)
        except ReconcilerError as error:
            assert_clear(error, "fastly")
            return
    assert_valid(lines)


@FUZZ
@given(replies=akamai_answers, discover=st.booleans())
async def test_akamai_client_fails_only_with_a_clear_error(
    fake: tuple[FakeProvider, str], edgerc: Path, replies: dict[str, Answer], discover: bool
) -> None:
    provider_app, base_url = fake
    provider_app.answers = replies
    async with HttpClient() as http:
        provider = open_provider(akamai_settings(base_url, edgerc, discover), 0, http, {})
        lines: list[Any] = []
        try:
            async for page in provider.pull(TODAY):
                lines.extend(page)
        except ReconcilerError as error:
            assert_clear(error, "akamai")
            return
    assert_valid(lines)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(replies=hostile_answers)
async def test_the_engine_stores_or_refuses_whatever_the_providers_send(
    fake: tuple[FakeProvider, str], edgerc: Path, engine: AsyncEngine, replies: dict[str, Answer]
) -> None:
    """Well-formed answers with hostile strings and huge numbers, through staging and the
    apply transaction, on SQLite and PostgreSQL (one database for all examples)."""
    provider_app, base_url = fake
    provider_app.answers = replies
    settings_ = settings_from_mapping(
        {
            "sources": [
                fastly_settings(base_url, True).model_dump(),
                akamai_settings(base_url, edgerc, False).model_dump(),
            ],
        }
    )
    async with HttpClient() as http:
        for source in ("fastly", "akamai"):
            outcome = await refresh_source(
                engine, settings_, source, http, today=TODAY, environ={"FASTLY_API_TOKEN": "k" * 10}
            )  # anything but a ReconcilerError would be raised here
            if outcome.error is not None:
                assert outcome.error.startswith(f"source '{source}': "), outcome.error
            event(f"{source}: {'refused' if outcome.error else 'stored'}")
