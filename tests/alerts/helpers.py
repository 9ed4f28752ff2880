"""Plan items, hostile strings and JSON walking shared by the alert tests."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from reconciler.domain import (
    ChangeKind,
    FindingKind,
    ItemCategory,
    LineStatus,
    Month,
    Observation,
    PlanItem,
    Severity,
)

HOSTILE = ("<!channel>", "<https://evil|click>", "&", "<script>", "<@U123>", "a & b > c")
HOSTILE_TEXT = " ".join(HOSTILE)
_ENTITIES = ("&amp;", "&lt;", "&gt;")
MAY_2024 = Month(2024, 5)


def make_item(
    *,
    severity: Severity = Severity.WARNING,
    before: str | None = "100",
    after: str | None = "150",
    unit: str = "GB",
    kind: str = ChangeKind.GREW,
    category: ItemCategory = ItemCategory.DRIFT,
    fingerprint: str = "f",
    text: str = "",
    before_status: LineStatus = LineStatus.COLLECTING,
    after_status: LineStatus = LineStatus.FINALIZED,
    month: Month = MAY_2024,
) -> PlanItem:
    """A plan item; ``text`` (when given) goes into every provider- or config-sourced field."""
    return PlanItem(
        category=category,
        kind=kind,
        severity=severity,
        fingerprint=fingerprint,
        source=text or "prod",
        provider="fastly",
        account=text or "acct-1",
        product=text or "cdn",
        usage_type=text or "bandwidth",
        region=text or "north-america",
        service=text or "svc-1",
        month=month,
        before=None if before is None else Observation(Decimal(before), unit, before_status),
        after=None if after is None else Observation(Decimal(after), unit, after_status),
        message=text or "usage grew",
        product_name=text or "Full-Site Delivery",
    )


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def unescaped(text: str) -> list[str]:
    """The problems in one string: any ``<``/``>`` or an ``&`` that starts no entity."""
    problems = [c for c in "<>" if c in text]
    for index, char in enumerate(text):
        if char == "&" and not text.startswith(_ENTITIES, index):
            problems.append(f"& at {index}")
    return problems


_any_text = st.text(
    alphabet=st.sampled_from("ab <>&|*_~`!@#:;\n\t\u00e9\u2192\U0001f600") | st.characters(),
    max_size=300,
)
_quantities = st.decimals(
    allow_nan=False, allow_infinity=False, min_value=-(10**15), max_value=10**15
)
_observations = st.none() | st.builds(
    Observation,
    quantity=_quantities,
    unit=st.sampled_from(["GB", "requests", "<b>", ""]) | _any_text,
    status=st.sampled_from(LineStatus),
)
_kinds = st.sampled_from([*ChangeKind, *FindingKind]).map(str) | _any_text

plan_items = st.builds(
    PlanItem,
    category=st.sampled_from(ItemCategory),
    kind=_kinds,
    severity=st.sampled_from(Severity),
    fingerprint=st.text(alphabet="0123456789abcdef", min_size=1, max_size=8),
    source=_any_text,
    provider=st.sampled_from(["fastly", "akamai"]),
    account=_any_text,
    product=_any_text,
    usage_type=_any_text,
    region=_any_text,
    service=_any_text,
    month=st.builds(Month, st.integers(2000, 2100), st.integers(1, 12)),
    before=_observations,
    after=_observations,
    message=_any_text,
    product_name=_any_text,
)
