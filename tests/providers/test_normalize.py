"""Exact numbers: no quantity loses a digit between JSON text and a usage line."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.domain import LineStatus, Month
from reconciler.providers import normalize as n
from reconciler.providers.akamai_records import summary_lines
from reconciler.providers.fastly_records import FastlyLines

MONTH = Month(2024, 5)
# Every quantity a provider may send: at most 30 digits before the point and 30 after it
# (larger or finer ones are refused as bad data, see tests/security/test_poison_numbers.py).
quantities = (
    st.decimals(min_value=0, max_value=10**29, allow_nan=False, allow_infinity=False).filter(
        lambda d: -int(d.as_tuple().exponent) <= n.MAX_FRACTION_DIGITS
    )
    | st.builds(
        lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
        st.integers(min_value=0, max_value=10**30 - 1),
        st.integers(min_value=-30, max_value=0),
    )
    | st.builds(
        lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
        st.integers(min_value=0, max_value=10**15 - 1),
        st.integers(min_value=0, max_value=15),
    )
)
as_text = st.sampled_from([str, lambda d: format(d, "f"), lambda d: format(d, "e")])


def fastly_document(token: str) -> str:
    return (
        '{"data": [{"month": "2024-05", "usage_type": "North America Bandwidth", '
        '"region": "North America", "unit": "GB", "product_id": "cdn_usage", '
        f'"quantity": {token}, "raw_quantity": {token}}}], "meta": {{"total": 1}}}}'
    )


def akamai_document(token: str) -> str:
    return (
        '{"contractId": "K-1", "productId": "P-1", "usagePeriods": [{"dataStatus": '
        '"DATA_FINALIZED", "month": "2024-05", "region": "GLOBAL", "start": "2024-05-01", '
        '"end": "2024-05-31", "stats": [{"statType": "Total MB", "unit": "GB", '
        f'"value": {token}}}]}}]}}'
    )


@settings(max_examples=400, deadline=None)
@given(quantity=quantities, write=as_text)
def test_quantities_survive_json_and_normalization_exactly(
    quantity: Decimal, write: object
) -> None:
    token = write(quantity)  # type: ignore[operator]
    expected = Decimal(token)
    assert expected == quantity

    lines = FastlyLines("src", {MONTH: LineStatus.COLLECTING})
    record = n.loads_exact(fastly_document(token))["data"][0]
    line = lines.account_line(record)
    for value in (line.quantity, line.raw_quantity):
        assert isinstance(value, Decimal)
        assert value == quantity
        assert value.as_tuple() == expected.as_tuple()  # same digits, same exponent

    (stat,) = summary_lines(
        "src",
        "/x",
        n.loads_exact(akamai_document(token)),
        contract="K-1",
        product="P-1",
        product_name="",
        months=[MONTH],
    )
    assert stat.quantity == quantity and stat.quantity.as_tuple() == expected.as_tuple()
    assert stat.period_start == date(2024, 5, 1)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_tokens_are_never_numbers(token: str) -> None:
    record = n.loads_exact(fastly_document(token))["data"][0]
    assert isinstance(record["quantity"], n.NonFinite)
    with pytest.raises(n.BadRecord, match=f"quantity is not a finite number \\(got {token}\\)"):
        FastlyLines("src", {MONTH: LineStatus.COLLECTING}).account_line(record)


def test_integers_are_decimals_too() -> None:
    assert n.loads_exact(b'{"a": 12345678901234567890123, "b": 1.10}') == {
        "a": Decimal("12345678901234567890123"),
        "b": Decimal("1.10"),
    }
    assert str(n.loads_exact("1.10")) == "1.10"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": 1', "Expecting"),
        ("\xff", "not UTF-8"),
        ('{"a": "\x01"}', "Invalid control character"),
    ],
)
def test_malformed_json_raises_value_error(text: str, problem: str) -> None:
    data = text.encode("latin-1") if text == "\xff" else text
    with pytest.raises(ValueError, match=problem):
        n.loads_exact(data)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("quantity", '"12"', 'quantity is not a number (got "12")'),
        ("quantity", "true", "quantity is not a number (got true)"),
        ("quantity", "-0.5", "quantity is negative (got -0.5)"),
        ("quantity", "null", "quantity is missing"),
        ("month", '"2024-5"', 'month is not a month YYYY-MM (got "2024-5")'),
        ("month", '"2023-01"', "month 2023-01 was not asked for (2024-05..2024-05)"),
        ("usage_type", "7", "usage_type is not a non-empty string (got 7)"),
        ("product_id", '""', 'product_id is not a non-empty string (got "")'),
        ("unit", "null", "unit is missing"),
        ("region", "[]", "region is not a string (got [])"),
        ("last_updated_at", '"yesterday"', "last_updated_at is not an ISO 8601"),
    ],
)
def test_bad_fields_are_named(field: str, value: str, problem: str) -> None:
    record = n.loads_exact(fastly_document("1"))["data"][0]
    record[field] = n.loads_exact(value)
    with pytest.raises(n.BadRecord) as caught:
        FastlyLines("src", {MONTH: LineStatus.COLLECTING}).account_line(record)
    assert str(caught.value).startswith(problem)


field_values: st.SearchStrategy[object] = st.sampled_from(
    [
        None,
        "",
        "x",
        "2024-05",
        "2024-06",
        "2024-13",
        7,
        True,
        [],
        {},
        Decimal("1.5"),
        Decimal("-1"),
        Decimal("NaN"),
        n.NonFinite("NaN"),
        "2024-05-02T00:00:00Z",
    ]
)
SERVICE_FIELDS = (
    "month",
    "quantity",
    "raw_quantity",
    "customer_id",
    "service_id",
    "product_id",
    "usage_type",
    "unit",
    "region",
    "service_name",
    "last_updated_at",
)


@settings(max_examples=500, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from(SERVICE_FIELDS), field_values, max_size=4),
    dropped=st.sets(st.sampled_from(SERVICE_FIELDS), max_size=2),
)
def test_service_fast_path_agrees_with_the_checked_readers(
    changes: dict[str, object], dropped: set[str]
) -> None:
    record: dict[str, object] = {
        "customer_id": "C1",
        "service_id": "S1",
        "service_name": "www.example.com",
        "month": "2024-05",
        "product_id": "cdn_usage",
        "usage_type": "North America Bandwidth",
        "region": "North America",
        "unit": "GB",
        "quantity": Decimal("88.25"),
        "raw_quantity": Decimal("94758000000"),
    }
    record.update(changes)
    for name in dropped:
        record.pop(name, None)
    lines = FastlyLines("src", {MONTH: LineStatus.COLLECTING, Month(2024, 6): LineStatus.FINALIZED})
    try:
        expected = lines._checked_service_line(record)
    except n.BadRecord as e:
        with pytest.raises(n.BadRecord, match="^" + re.escape(str(e)) + "$"):
            lines.service_line(record)
    else:
        assert lines.service_line(record) == expected
