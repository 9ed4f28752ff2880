"""The hot path of Fastly service usage: pages decoded straight to rows, exactly.

Whatever it accepts must give the very lines the careful path (``fastly_records``) gives;
whatever it does not plainly accept goes to the careful path, which says what is wrong.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain import LineStatus, Month
from reconciler.errors import BadProviderDataError
from reconciler.providers.fastly_pages import FastPage, ServiceRows, decode_service_page
from reconciler.providers.fastly_records import FastlyLines, convert, service_page
from reconciler.providers.rows import TEXT_LIMITS, LineRows, line_row, row_key, row_line

MONTHS = {Month(2024, 5): LineStatus.FINALIZED, Month(2024, 6): LineStatus.COLLECTING}
ENDPOINT = "/billing/v3/service-usage-metrics"


def record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "customer_id": "x4xCwxxJxGCx123Rx5xTx",
        "service_id": "SU1Z0isxPaozGVKXdv0eY",
        "service_name": "www.example.com",
        "month": "2024-05",
        "product_id": "cdn_usage",
        "usage_type": "North America Bandwidth",
        "region": "North America",
        "unit": "GB",
        "quantity": "88.25",
        "raw_quantity": "94758000000",
    }
    base.update(fields)
    return base


def page_bytes(*records: dict[str, Any], quantities_as_numbers: bool = True) -> bytes:
    """A page whose quantity fields (given as text) are written as bare JSON numbers."""
    text = json.dumps({"data": list(records), "meta": {"next_cursor": None}})
    if quantities_as_numbers:
        for r in records:
            for key in ("quantity", "raw_quantity"):
                if isinstance(r.get(key), str):
                    text = text.replace(f'"{key}": "{r[key]}"', f'"{key}": {r[key]}')
    return text.encode()


def careful(body: bytes) -> list[Any]:
    from reconciler.providers.normalize import loads_exact

    page = service_page("fastly", ENDPOINT, loads_exact(body), None)
    lines = FastlyLines("fastly", MONTHS)
    return convert("fastly", ENDPOINT, "page 1", page.records, lines.service_line)


def fast(body: bytes) -> list[Any] | None:
    decoded = decode_service_page(body)
    if not isinstance(decoded, FastPage):
        return None
    rows = ServiceRows.of("fastly", dict(MONTHS)).rows(decoded)
    return None if rows is None else list(LineRows(rows))


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"quantity": "0"},
        {"quantity": "88.2500", "raw_quantity": "0.000"},
        {"quantity": "123456789012345678901234567890.123456789012345678901234567890"},
        {"quantity": "1E+2"},
        {"quantity": "2.5e-3"},
        {"quantity": "-0"},
        {"quantity": "0.1000000000000000000000000000000000000000000"},
        {"raw_quantity": None},
        {"region": None, "service_name": None},
        {"service_name": "café.example", "region": "Europe"},
        {"month": "2024-06"},
    ],
)
def test_the_hot_path_gives_the_careful_paths_lines(fields: dict[str, Any]) -> None:
    body = page_bytes(record(**fields), record(service_id="SU2", **fields))
    lines = fast(body)
    assert lines is not None
    assert lines == careful(body)
    for line in lines:
        assert row_key(line_row(line)) == line.digest
        assert row_line(line_row(line)) == line


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"quantity": "1e99999999999999"}, "quantity has more digits than a usage quantity"),
        ({"quantity": "1e4300"}, "quantity has more digits"),
        ({"quantity": "-1.5"}, "quantity is negative"),
        ({"raw_quantity": "-2"}, "raw_quantity is negative"),
        ({"quantity": "0." + "1" * 31}, "quantity has more digits"),
        ({"month": "2023-01"}, "month 2023-01 was not asked for"),
        ({"unit": ""}, "unit is not a non-empty string"),
        ({"customer_id": None}, "customer_id is missing"),
    ],
)
def test_what_the_hot_path_refuses_fails_with_the_careful_paths_message(
    fields: dict[str, Any], error: str
) -> None:
    body = page_bytes(record(), record(service_id="SU2", **fields))
    assert fast(body) is None
    with pytest.raises(BadProviderDataError, match=error):
        careful(body)


def test_a_quantity_given_as_a_string_is_not_taken_for_a_number() -> None:
    body = page_bytes(record(quantity="12"), quantities_as_numbers=False)
    assert fast(body) is None
    with pytest.raises(BadProviderDataError, match="quantity is not a number"):
        careful(body)


def test_unprintable_text_is_left_to_the_careful_path_which_cleans_it() -> None:
    body = page_bytes(record(service_name="evil\u202ename\u0007"))
    assert b"\\" in body  # escaped: the page is not plain
    assert fast(body) is None
    (line,) = careful(body)
    assert line.service_name == "evil\ufffdname\ufffd"


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("customer_id", TEXT_LIMITS["account"]),
        ("service_id", TEXT_LIMITS["service"]),
        ("product_id", TEXT_LIMITS["product"]),
        ("usage_type", TEXT_LIMITS["usage_type"]),
        ("unit", TEXT_LIMITS["unit"]),
        ("region", TEXT_LIMITS["region"]),
        ("service_name", TEXT_LIMITS["service_name"]),
    ],
)
def test_text_the_state_can_keep_stays_on_the_hot_path_longer_text_leaves_it(
    field: str, limit: int
) -> None:
    fits = page_bytes(record(**{field: "x" * limit}))
    assert fast(fits) == careful(fits)
    too_long = page_bytes(record(**{field: "x" * (limit + 1)}))
    assert not isinstance(decode_service_page(too_long), FastPage)


def test_a_page_with_an_update_time_or_another_shape_takes_the_careful_path() -> None:
    updated = page_bytes(record(last_updated_at="2024-06-02T00:00:00Z"))
    assert fast(updated) is None
    (line,) = careful(updated)
    assert line.updated_at is not None
    nested = json.dumps({"data": {"details": []}}).encode()
    assert not isinstance(decode_service_page(nested), FastPage)


@given(
    quantity=st.decimals(allow_nan=False, allow_infinity=False, min_value=0, places=None).filter(
        lambda d: abs(d.adjusted()) < 40
    ),
    name=st.text(max_size=12),
)
def test_any_quantity_and_name_give_the_same_line_or_the_careful_path(
    quantity: Decimal, name: str
) -> None:
    body = page_bytes(record(quantity=str(quantity), service_name=name))
    try:
        expected: list[Any] | None = careful(body)
    except BadProviderDataError:
        expected = None
    lines = fast(body)
    if lines is not None:  # accepted: exactly what the careful path gives
        assert lines == expected
    assert expected is None or expected[0].quantity == quantity
    assert expected is None or expected[0].period_start == date(2024, 5, 1)


_QUANTITY_TEXT = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=0, places=None)
    .filter(lambda d: abs(d.adjusted()) < 40)
    .map(str),
    st.integers(min_value=0, max_value=10**31).map(str),
    st.sampled_from(["0", "0.0", "10", "1.50", "1e3", "-1", "0." + "1" * 30]),
)


@given(
    quantities=st.lists(st.tuples(_QUANTITY_TEXT, _QUANTITY_TEXT | st.none()), max_size=8),
    drop_raw=st.booleans(),
)
def test_a_page_of_many_quantities_gives_the_careful_paths_lines_or_goes_to_it(
    quantities: list[tuple[str, str | None]], drop_raw: bool
) -> None:
    """Whether the quantities are checked as one list (all canonical) or one by one, a
    page's lines are the careful path's, in order."""
    records = []
    for number, (quantity, raw) in enumerate(quantities):
        fields: dict[str, Any] = {"service_id": f"SU{number}", "quantity": quantity}
        fields["raw_quantity"] = raw
        records.append(record(**fields))
        if drop_raw and number % 2:
            del records[-1]["raw_quantity"]
    body = page_bytes(*records)
    try:
        expected: list[Any] | None = careful(body)
    except BadProviderDataError:
        expected = None
    decoded = decode_service_page(body)
    assert isinstance(decoded, FastPage)
    rows = ServiceRows.of("fastly", dict(MONTHS)).rows(decoded)
    if rows is not None:  # the very rows, text for text (a quantity's text is compared)
        assert expected is not None
        assert rows == [line_row(line) for line in expected]
    if expected is not None and all(q.isdigit() and q == str(int(q)) for q, _ in quantities):
        assert rows is not None  # plain numbers stay on the hot path
