"""Slack puts the money impact first and orders by it (within severity)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from reconciler.alerts.slack import order_items, render_item
from reconciler.domain import ItemCategory, LineStatus, Month, Observation, PlanItem, Severity

ITEM = PlanItem(
    category=ItemCategory.DRIFT,
    kind="restated",
    severity=Severity.CRITICAL,
    fingerprint="f",
    source="akamai",
    provider="akamai",
    account="K-1",
    product="1-ABC012",
    usage_type="Total MB",
    region="GLOBAL",
    service="",
    month=Month(2024, 5),
    before=Observation(Decimal("1000"), "GB", LineStatus.FINALIZED),
    after=Observation(Decimal("1846"), "GB", LineStatus.FINALIZED),
    product_name="Web Application Accelerator",
)


def test_the_impact_comes_first() -> None:
    text = render_item(replace(ITEM, impact=Decimal("1234.555"), impact_currency="USD"))
    first = text.splitlines()[0]
    assert first == (
        ":red_circle: *+1,234.56 USD*: *Web Application Accelerator / Total MB [GLOBAL]* · 2024-05"
    )


def test_without_a_rate_there_is_no_amount() -> None:
    assert "USD" not in render_item(ITEM)


def test_items_are_ordered_by_impact_within_a_severity() -> None:
    small = replace(ITEM, fingerprint="s", impact=Decimal("-5"), impact_currency="USD")
    large = replace(ITEM, fingerprint="l", impact=Decimal("-500"), impact_currency="USD")
    warning = replace(ITEM, fingerprint="w", severity=Severity.WARNING, impact=Decimal("9999"))
    ordered = order_items([small, warning, ITEM, large])
    assert [i.fingerprint for i in ordered] == ["l", "s", "f", "w"]
