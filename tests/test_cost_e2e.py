"""Money end to end: rate cards against the sandbox's Fastly invoices on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.metrics import DaemonMetrics
from reconciler.domain import Month, PlanItem
from reconciler.money import Money
from reconciler.providers.http import HttpClient
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.sandbox.catalog import FASTLY_USAGE_TYPES
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.review import build_plan

TODAY = date(2024, 7, 10)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


def contract(na_bandwidth: str = "0.12", **extra: Any) -> list[dict[str, Any]]:
    """The sandbox account's price list as a rate card (one price may be declared wrong)."""
    rates = []
    for kind in FASTLY_USAGE_TYPES:
        price = na_bandwidth if kind.name == "North America Bandwidth" else str(kind.rate_usd)
        rates.append(
            {
                "name": kind.name,
                "source": "fastly",
                "usage_type": kind.name,
                "currency": "USD",
                "unit_price": price,
                **extra,
            }
        )
    return rates


def settings_for(sandbox: SandboxServer, rates: list[dict[str, Any]], **more: Any) -> Any:
    return settings_from_mapping(
        {
            "sources": [
                {
                    "name": "fastly",
                    "provider": "fastly",
                    "base_url": sandbox.base_url,
                    "max_retries": 0,
                    "lookback_months": 3,
                }
            ],
            "rates": rates,
            **more,
        }
    )


async def pull(
    engine: AsyncEngine, settings: Any, sandbox: SandboxServer, today: date
) -> RunOutcome:
    sandbox.state.set_today(today)
    async with HttpClient() as http:
        outcome = await refresh_source(
            engine,
            settings,
            "fastly",
            http,
            today=today,
            environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
        )
    assert outcome.ok, outcome.error
    return outcome


async def open_items(engine: AsyncEngine) -> list[PlanItem]:
    async with engine.connect() as conn:
        plan = await build_plan(conn, datetime(2024, 7, 10, tzinfo=UTC))
    return list(plan.items)


def findings(items: list[PlanItem], *kinds: str) -> list[tuple[str, str, str]]:
    return sorted((i.kind, str(i.month), i.usage_type) for i in items if i.kind in kinds)


async def test_a_contract_that_matches_the_invoices_raises_no_cost_finding(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    await pull(engine, settings_for(sandbox, contract()), sandbox, TODAY)
    items = await open_items(engine)
    assert findings(items, "cost_mismatch", "rate_mismatch", "repriced") == []


async def test_a_wrong_rate_on_the_invoice_is_caught_per_line_and_in_total(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    # The contract says 0.11 USD/GB; the invoices bill 0.12.
    await pull(engine, settings_for(sandbox, contract("0.11")), sandbox, TODAY)
    items = await open_items(engine)
    # May and June are invoiced (finalized); July is collecting and not audited.
    assert findings(items, "cost_mismatch", "rate_mismatch") == [
        ("cost_mismatch", "2024-05", "North America Bandwidth"),
        ("cost_mismatch", "2024-05", "total"),
        ("cost_mismatch", "2024-06", "North America Bandwidth"),
        ("cost_mismatch", "2024-06", "total"),
        ("rate_mismatch", "2024-05", "North America Bandwidth"),
        ("rate_mismatch", "2024-06", "North America Bandwidth"),
    ]
    line = next(i for i in items if i.kind == "cost_mismatch" and i.usage_type != "total")
    assert line.severity.value == "critical"
    assert line.before is not None and line.after is not None and line.impact is not None
    # The invoice is 1/11 above the contract (0.12 vs 0.11), give or take its rounding.
    assert abs(line.impact - line.before.quantity / 11) < Decimal("0.01")
    assert "invoiced" in line.message and "expected" in line.message
    assert Money(line.impact, "USD").display(signed=True) in line.message


async def test_correcting_the_rate_card_re_prices_finalized_months_as_an_event(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    await pull(engine, settings_for(sandbox, contract("0.11")), sandbox, TODAY)
    await pull(engine, settings_for(sandbox, contract("0.12")), sandbox, date(2024, 7, 11))
    items = await open_items(engine)
    assert findings(items, "repriced") == [("repriced", "2024-05", ""), ("repriced", "2024-06", "")]
    assert findings(items, "cost_mismatch", "rate_mismatch") == []
    repriced = next(i for i in items if i.kind == "repriced")
    assert repriced.impact is not None and repriced.impact > 0


async def test_drift_carries_its_money_impact(engine: AsyncEngine, sandbox: SandboxServer) -> None:
    settings = settings_for(sandbox, contract())
    await pull(engine, settings, sandbox, TODAY)
    sandbox.state.add_events(
        [
            {
                "kind": "restate",
                "provider": "fastly",
                "day": "2024-07-11",
                "month": "2024-05",
                "usage_type": "North America Bandwidth",
                "factor": "1.1",
            }
        ]
    )
    await pull(engine, settings, sandbox, date(2024, 7, 11))
    items = await open_items(engine)
    restated = [i for i in items if i.kind == "restated" and not i.service]
    assert len(restated) == 1
    item = restated[0]
    assert item.delta is not None
    assert (item.impact, item.impact_currency) == (item.delta * Decimal("0.12"), "USD")
    # A restatement changes the expected cost through the usage: it is not a re-pricing.
    assert findings(items, "repriced") == []


async def test_budgets_on_the_projected_invoice(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    budget = {"name": "fastly", "source": "fastly", "monthly_budget": "1 USD"}
    settings = settings_for(sandbox, contract(), expectations=[budget])
    await pull(engine, settings, sandbox, TODAY)
    items = await open_items(engine)
    assert findings(items, "over_budget", "projected_over_budget") == [
        ("over_budget", "2024-05", ""),
        ("over_budget", "2024-06", ""),
        ("over_budget", "2024-07", ""),
    ]


async def test_metrics_carry_the_open_months_cost(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    outcome = await pull(engine, settings_for(sandbox, contract()), sandbox, TODAY)
    (gauge,) = outcome.costs
    assert gauge.currency == "USD" and 0 < gauge.to_date < gauge.projected
    metrics = DaemonMetrics()
    metrics.observe_run(outcome, 0.0)
    text = metrics.render()[0].decode()
    assert (
        f'reconciler_expected_cost{{currency="USD",source="fastly"}} {float(gauge.to_date)}' in text
    )
    assert 'reconciler_projected_invoice{currency="USD",source="fastly"}' in text


async def test_the_report_shows_the_audit_and_the_projected_invoice(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    from reconciler.reports.cost_render import cost_json
    from reconciler.reports.data import ReportRequest, gather_report
    from reconciler.reports.html import render_html
    from reconciler.reports.markdown import render_markdown

    settings = settings_for(sandbox, contract("0.11"))
    await pull(engine, settings, sandbox, TODAY)
    now = datetime(2024, 7, 10, 6, tzinfo=UTC)
    data = await gather_report(engine, settings, ReportRequest.last_months(3, now), now)
    assert data.costs is not None
    states = {(str(m.month), m.state) for m in data.costs.months}
    assert states == {
        ("2024-05", "finalized"),
        ("2024-06", "finalized"),
        ("2024-07", "collecting"),
        ("2024-07", "projected"),
    }
    mismatched = [(str(r.month), r.line) for r in data.costs.audit if r.matches is False]
    assert mismatched == [
        ("2024-05", "North America Bandwidth [North America]"),
        ("2024-06", "North America Bandwidth [North America]"),
    ]
    assert all(r.matches for r in data.costs.audit if "North America Bandwidth" not in r.line)
    markdown = render_markdown(data, "r")
    text = markdown.text
    assert "## Cost" in text and "MISMATCH" in text and "**Projected invoice:** fastly" in text
    # The cost per month as a chart too: May and June finalized, July to date and projected.
    assert "![fastly: expected cost per month (USD)](r-cost-01.svg)" in text
    chart = markdown.charts["r-cost-01.svg"]
    for month in data.costs.months:
        amount = Money(month.amount, "USD").display()
        shown = (
            f"projected to month end: {amount}"
            if month.state == "projected"
            else (f"{month.month}: {amount} ({month.state})")
        )
        assert shown in chart, shown
    assert 'id="chart-cost-01"' in render_html(data)
    exported = cost_json(data.costs)
    assert exported is not None
    assert {m["currency"] for m in exported["months"]} == {"USD"}


async def test_invoices_that_disagree_with_the_contract_are_caught(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    day = "2024-01-01"
    sandbox.state.add_events(
        [
            # May: billed for 10% more North America bandwidth than was used (an overcharge).
            {"kind": "invoice_overcharge", "provider": "fastly", "day": day, "month": "2024-05",
             "usage_type": "North America Bandwidth", "factor": "1.1"},
            # June: Europe bandwidth billed at 0.15 instead of 0.12 (a wrong rate).
            {"kind": "invoice_rate", "provider": "fastly", "day": day, "month": "2024-06",
             "usage_type": "Europe Bandwidth", "factor": "1.25"},
            # The contract's 25 USD credit is on May's invoice, missing from June's.
            {"kind": "invoice_credit", "provider": "fastly", "day": day, "month": "2024-05",
             "factor": "25"},
        ]
    )  # fmt: skip
    credit = {"name": "SLA credit", "source": "fastly", "amount": "25 USD"}
    settings = settings_for(sandbox, contract(), credits=[credit])
    await pull(engine, settings, sandbox, TODAY)
    items = await open_items(engine)
    assert findings(items, "cost_mismatch", "rate_mismatch", "invoice_mismatch") == [
        ("cost_mismatch", "2024-05", "North America Bandwidth"),
        ("cost_mismatch", "2024-05", "total"),
        ("cost_mismatch", "2024-06", "Europe Bandwidth"),
        ("cost_mismatch", "2024-06", "total"),
        ("invoice_mismatch", "2024-05", "North America Bandwidth"),
        ("rate_mismatch", "2024-06", "Europe Bandwidth"),
    ]
    june_total = next(
        i
        for i in items
        if i.kind == "cost_mismatch" and i.usage_type == "total" and i.month.month == 6
    )
    europe = next(
        i for i in items if i.kind == "cost_mismatch" and i.usage_type == "Europe Bandwidth"
    )
    assert june_total.impact is not None and europe.impact is not None
    # June's total is off by the wrong rate and by the missing 25 USD credit.
    assert abs(june_total.impact - europe.impact - Decimal(25)) <= Decimal("0.01")


def akamai_settings(sandbox: SandboxServer, tmp_path: Any, **more: Any) -> Any:
    from reconciler.demo_contract import demo_akamai_rates

    edgerc = tmp_path / "sandbox.edgerc"
    edgerc.write_text(sandbox.edgerc_text())
    edgerc.chmod(0o600)
    return settings_from_mapping(
        {
            "sources": [
                {
                    "name": "akamai",
                    "provider": "akamai",
                    "base_url": sandbox.base_url,
                    "edgerc": str(edgerc),
                    "contracts": sandbox.contracts,
                    "max_retries": 0,
                    "lookback_months": 3,
                    "invoices": True,
                }
            ],
            "rates": demo_akamai_rates(),
            **more,
        }
    )


async def pull_akamai(engine: AsyncEngine, settings: Any, sandbox: SandboxServer) -> None:
    sandbox.state.set_today(TODAY)
    async with HttpClient() as http:
        outcome = await refresh_source(engine, settings, "akamai", http, today=TODAY)
    assert outcome.ok, outcome.error


async def test_akamai_invoice_totals_are_audited(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Any
) -> None:
    settings = akamai_settings(sandbox, tmp_path)
    await pull_akamai(engine, settings, sandbox)
    assert findings(await open_items(engine), "cost_mismatch") == []
    # June's invoice bills 3% more than the contract's prices give.
    sandbox.state.add_events(
        [{"kind": "invoice_rate", "provider": "akamai", "day": "2024-01-01", "month": "2024-06",
          "factor": "1.03"}]
    )  # fmt: skip
    await pull_akamai(engine, settings, sandbox)
    items = await open_items(engine)
    assert findings(items, "cost_mismatch") == [("cost_mismatch", "2024-06", "total")]
    (total,) = [i for i in items if i.kind == "cost_mismatch"]
    assert total.before is not None and total.impact is not None
    assert abs(total.impact - total.before.quantity * Decimal("0.03")) <= Decimal("0.01")


async def test_focus_rows_add_up_to_the_expected_invoice(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    from reconciler.reports.focus import focus_rows
    from reconciler.store.costs import load_context

    commit = {"name": "NA bandwidth commit", "source": "fastly",
              "usage_type": "North America Bandwidth", "currency": "USD", "quantity": "5000",
              "unit": "GB", "commit_price": "0.10", "overage_price": "0.11"}  # fmt: skip
    credit = {"name": "SLA credit", "source": "fastly", "amount": "25 USD"}
    settings = settings_for(sandbox, contract(), commitments=[commit], credits=[credit])
    await pull(engine, settings, sandbox, TODAY)
    months = (Month(2024, 5), Month(2024, 7))
    rows = await focus_rows(engine, *months, (), settings)
    async with engine.connect() as conn:
        context = await load_context(
            conn, settings, "fastly", "fastly", months[0].range_to(months[1])
        )
    expected = context.sheet.month_totals()
    for month in months[0].range_to(months[1]):
        start = f"{month.first_day.isoformat()}T00:00:00Z"
        billed = sum(
            (
                Decimal(r["BilledCost"])
                for r in rows
                if r["BillingPeriodStart"] == start and r["BilledCost"]
            ),
            Decimal(0),
        )
        assert abs(billed - expected[("fastly", month, "USD")]) < Decimal("0.000001"), month
    purchases = [r for r in rows if r["ChargeCategory"] == "Purchase"]
    assert len(purchases) == 3
    assert {(r["BilledCost"], r["EffectiveCost"], r["ChargeFrequency"]) for r in purchases} == {
        ("500", "0", "Recurring")
    }
    credits = [r for r in rows if r["ChargeCategory"] == "Credit"]
    assert [r["BilledCost"] for r in credits] == ["-25", "-25", "-25"]


async def test_a_term_commitment_is_amortized_over_the_usage_that_draws_it_down(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    from reconciler.reports.focus import focus_rows

    price = Decimal("0.01")
    term = {"name": "NA term", "source": "fastly", "usage_type": "North America Bandwidth",
            "currency": "USD", "quantity": "1000000", "unit": "GB", "commit_price": str(price),
            "period": "term", "effective_from": "2024-05-01",
            "effective_to": "2024-06-30"}  # fmt: skip
    settings = settings_for(sandbox, contract(), commitments=[term])
    await pull(engine, settings, sandbox, TODAY)
    months = (Month(2024, 5), Month(2024, 6))
    rows = await focus_rows(engine, *months, (), settings)

    def month_of(row: Any) -> str:
        return str(row["BillingPeriodStart"])[:7]

    na = [r for r in rows if r["SkuMeter"] == "North America Bandwidth"]
    used = {m: sum((Decimal(r["ConsumedQuantity"]) for r in na if month_of(r) == m), Decimal(0))
            for m in ("2024-05", "2024-06")}  # fmt: skip
    assert all(quantity > 0 for quantity in used.values())
    for month, quantity in used.items():
        effective = sum(
            (Decimal(r["EffectiveCost"]) for r in na if month_of(r) == month), Decimal(0)
        )
        # Each month's usage bears what it draws of the purchase, and bills nothing more.
        assert abs(effective - quantity * price) < Decimal("0.000001"), month
        assert all(Decimal(r["BilledCost"]) == 0 for r in na if month_of(r) == month)
    (purchase,) = [r for r in rows if r["ChargeCategory"] == "Purchase"]
    assert (month_of(purchase), purchase["BilledCost"], purchase["EffectiveCost"]) == (
        "2024-05",
        "10000",
        "0",
    )
    assert (purchase["ChargeFrequency"], purchase["PricingUnit"]) == ("One-Time", "GB")
    (unused,) = [r for r in rows if "unused" in r["ChargeDescription"]]
    left = Decimal(1000000) - used["2024-05"] - used["2024-06"]
    assert month_of(unused) == "2024-06" and Decimal(unused["BilledCost"]) == 0
    assert Decimal(unused["EffectiveCost"]) == left * price
    # Over the term, the effective cost adds up to what the purchase billed.
    term_effective = sum((Decimal(r["EffectiveCost"]) for r in [*na, unused]), Decimal(0))
    assert abs(term_effective - Decimal(10000)) < Decimal("0.00001")


SLA_CREDIT = {"name": "SLA credit", "source": "akamai", "amount": "25 USD",
              "effective_from": "2024-06-01", "effective_to": "2024-06-30"}  # fmt: skip


@pytest.mark.parametrize(("memo", "raised"), [("25", False), ("20", True), (None, True)])
async def test_akamai_credit_memos_are_audited_against_the_declared_credits(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Any, memo: str | None, raised: bool
) -> None:
    settings = akamai_settings(sandbox, tmp_path, credits=[SLA_CREDIT])
    if memo is not None:
        sandbox.state.add_events(
            [{"kind": "invoice_credit", "provider": "akamai", "day": "2024-01-01",
              "month": "2024-06", "factor": memo}]
        )  # fmt: skip
    await pull_akamai(engine, settings, sandbox)
    items = await open_items(engine)
    credited = [i for i in items if i.kind == "cost_mismatch" and i.usage_type == "credit memos"]
    if not raised:
        assert findings(items, "cost_mismatch") == []
        return
    # June's credit memos come short of the 25 USD credit the contract grants for June.
    (item,) = credited
    memos = Decimal(memo or 0)
    assert (str(item.month), item.severity.value) == ("2024-06", "warning")
    assert item.impact == Decimal(25) - memos
    assert item.before is not None and item.before.quantity == Decimal(-25)
    assert item.after is not None and item.after.quantity == -memos
    assert "declared credits -25.00 USD (SLA credit)" in item.message
    # The total is off by as much, and says so on its own.
    (total,) = [i for i in items if i.kind == "cost_mismatch" and i.usage_type == "total"]
    assert total.impact is not None and abs(total.impact - item.impact) <= Decimal("0.01")
