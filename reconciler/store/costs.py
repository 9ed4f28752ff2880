"""Money in a run's review: lines and invoices read for pricing, expected costs kept.

Called inside a run's reconcile transaction: reads the source's tracked lines and stored
invoice amounts, prices them with the pure core (:mod:`reconciler.reconcile.costing`,
``audit``, ``spend``), and keeps each month's expected cost so that a finalized month
re-priced by a changed rate card raises a ``repriced`` finding. The amount of a finalized
month is kept as first priced: the finding stays until the rates price it so again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.domain import (
    EXACT_CONTEXT,
    LineStatus,
    Month,
    PlanItem,
    line_digest,
    reporting_group_of,
)
from reconciler.reconcile.allocation import allocate
from reconciler.reconcile.audit import InvoiceAmount, audit_invoices
from reconciler.reconcile.costing import CostLine, CostSheet, price_lines
from reconciler.reconcile.expectations import Evaluated
from reconciler.reconcile.history import ForecastInputs
from reconciler.reconcile.measures import classify
from reconciler.reconcile.spend import (
    ImpactPricer,
    ProjectedInvoice,
    budget_findings,
    last_invoice_rates,
    projected_sheet,
    repriced_findings,
)
from reconciler.reconcile.spend import projected_invoices as spend_projected
from reconciler.reconcile.team_budgets import (
    SourceShares,
    budget_home,
    is_team_budget,
    team_budget_findings,
)
from reconciler.settings import AkamaiSourceSettings, Settings
from reconciler.store.ingest import LineChange, lines_t
from reconciler.store.month_history import pull_instant, source_forecast_inputs
from reconciler.store.runs import SUCCEEDED, runs_t
from reconciler.store.tables import ExpectedCostRow, InvoiceLineRow

invoices_t = InvoiceLineRow.__table__  # type: ignore[attr-defined]
expected_t = ExpectedCostRow.__table__  # type: ignore[attr-defined]


@dataclass
class CostContext:
    """A source's priced months: what its rates say, and what its invoices say."""

    settings: Settings
    lines: list[CostLine]
    invoices: list[InvoiceAmount]
    sheet: CostSheet

    @property
    def rates(self) -> list:  # type: ignore[type-arg]
        return list(self.settings.rates) or last_invoice_rates(self.invoices, self.lines)

    @property
    def priced(self) -> bool:
        return bool(self.sheet.lines)


def prices_anything(settings: Settings) -> bool:
    return bool(settings.rates or settings.commitments) or any(
        e.monthly_budget is not None for e in settings.expectations
    )


async def cost_lines(
    conn: AsyncConnection, settings: Settings, source: str, months: Sequence[Month]
) -> list[CostLine]:
    """The source's present lines of ``months`` with their measure kinds (a reporting
    group's lines only while the source still lists the group: they are no longer pulled
    otherwise, and a stale share must not take cost from the contract's line)."""
    groups = next(
        (
            set(s.reporting_groups)
            for s in settings.sources
            if s.name == source and isinstance(s, AkamaiSourceSettings)
        ),
        set(),
    )
    c = lines_t.c
    names = (
        "source provider account product product_name usage_type region service month "
        "period_start period_end quantity unit status billable service_name"
    )
    query = select(*(c[name] for name in names.split())).where(
        c.source == source, c.month.in_([str(m) for m in months]), c.present.is_(True)
    )
    lines = []
    for r in (await conn.execute(query)).all():
        group = reporting_group_of(r.service)
        if group is not None and group not in groups:
            continue
        kind = classify(
            r.provider,
            r.usage_type,
            r.unit,
            product=r.product,
            product_name=r.product_name,
            overrides=settings.measures,
        ).kind
        lines.append(
            CostLine(
                r.source,
                r.account,
                r.product,
                r.product_name,
                r.usage_type,
                r.region,
                r.service,
                Month.parse(r.month),
                r.period_start,
                r.period_end,
                r.quantity,
                r.unit,
                LineStatus(r.status),
                kind,
                r.provider,
                r.billable,
                r.service_name,
            )
        )
    return lines


async def invoice_amounts(
    conn: AsyncConnection, source: str, provider: str, months: Sequence[Month]
) -> list[InvoiceAmount]:
    """Stored invoice line items of ``months`` that carry an amount and a currency."""
    c = invoices_t.c
    query = select(invoices_t).where(
        c.source == source,
        c.month.in_([str(m) for m in months]),
        c.amount.is_not(None),
        c.currency.is_not(None),
    )
    return [
        InvoiceAmount(
            r.source,
            provider,
            Month.parse(r.month),
            r.usage_type,
            r.product_name,
            r.region,
            Decimal(0) if r.units is None else r.units,
            r.amount,
            r.currency,
        )
        for r in (await conn.execute(query)).all()
    ]


async def load_context(
    conn: AsyncConnection, settings: Settings, source: str, provider: str, months: Sequence[Month]
) -> CostContext:
    lines = await cost_lines(conn, settings, source, months)
    invoices = await invoice_amounts(conn, source, provider, months)
    rates = list(settings.rates) or last_invoice_rates(invoices, lines)
    sheet = price_lines(rates, settings.commitments, lines, settings.credits)
    return CostContext(settings, lines, invoices, sheet)


def with_impacts(
    context: CostContext, items: list[PlanItem], changes: Sequence[LineChange]
) -> list[PlanItem]:
    """Drift items with the money impact of their change, where a rate prices the line."""
    by_key = {(x.identity, x.month, x.period_start): x for x in context.lines}
    pricer = ImpactPricer(
        context.rates, context.settings.commitments, context.lines if items else []
    )
    out: list[PlanItem] = []
    for item, change in zip(items, changes, strict=True):
        key = change.key
        identity = (key.source, key.account, key.product, key.usage_type, key.region, key.service)
        line = by_key.get((identity, key.month, key.period_start))
        before = change.before.quantity if change.before is not None else Decimal(0)
        impact = None
        if line is not None and change.after is not None:
            impact = pricer.impact(line, before)
        if impact is None or impact.rounded() == 0:
            out.append(item)
        else:
            out.append(replace(item, impact=impact.amount, impact_currency=impact.currency))
    return out


def finding_impacts(context: CostContext, evaluated: list[Evaluated]) -> list[Evaluated]:
    """Expectation findings without an impact get the excess priced at the matched lines'
    effective rate (their expected cost over their quantity)."""
    out: list[Evaluated] = []
    for entry in evaluated:
        item = entry.item
        delta = item.delta
        if item.impact is not None or delta is None or item.before is None or item.after is None:
            out.append(entry)
            continue
        matched = [
            cost
            for cost in context.sheet.lines
            if cost.line.source == item.source
            and cost.line.month == item.month
            and cost.line.unit == item.after.unit
            and all(
                fnmatchcase(value, pattern or "*")
                for value, pattern in (
                    (cost.line.usage_type, item.usage_type),
                    (cost.line.region, item.region),
                    (cost.line.product, item.product),
                )
            )
        ]
        currencies = {c.currency for c in matched}
        with localcontext(EXACT_CONTEXT):
            quantity = sum((c.line.quantity for c in matched), Decimal(0))
            if len(currencies) != 1 or quantity == 0:
                out.append(entry)
                continue
            rate = sum((c.amount for c in matched), Decimal(0)) / quantity
            impact = delta * rate
        out.append(
            replace(entry, item=replace(item, impact=impact, impact_currency=currencies.pop()))
        )
    return out


async def cost_findings(
    conn: AsyncConnection,
    context: CostContext,
    source: str,
    provider: str,
    months: Sequence[Month],
    today: date,
    run_id: int,
    now: datetime,
    forecasts: ForecastInputs | None = None,
) -> list[Evaluated]:
    """The invoice audit, budgets and re-pricings of a source's months (and keeps the
    expected costs); budgets are checked against the month-end ``forecasts``."""
    settings = context.settings
    found = audit_invoices(
        context.sheet,
        context.invoices if settings.rates else [],
        tolerance=settings.cost.invoice_tolerance,
        rate_tolerance=settings.cost.rate_tolerance,
    )
    expectations = [e for e in settings.expectations if fnmatchcase(source, e.source)]
    forecast = projected_sheet(
        context.rates, settings.commitments, context.lines, today, settings.credits, forecasts
    )
    found += budget_findings(expectations, context.sheet, forecast)
    found += await _team_budgets(conn, context, forecast, source, provider, months, today, now)
    current = {(m, cur): amount for (_, m, cur), amount in context.sheet.month_totals().items()}
    finalized = {
        m
        for m in months
        if all(x.status is LineStatus.FINALIZED for x in context.lines if x.month == m)
    }
    usage = usage_digests(context.lines)
    previous = await _stored(conn, source, months)
    # Only a month priced as finalized before, on the same usage, can be re-priced: a
    # collecting estimate cannot, and a restatement is a drift item of its own.
    stored = {
        key: row.amount
        for key, row in previous.items()
        if row.finalized and row.usage_digest == usage.get(key[0])
    }
    found += repriced_findings(source, provider, stored, current, finalized)
    await _keep(conn, source, current, finalized, usage, previous, run_id, now)
    return found


async def _team_budgets(
    conn: AsyncConnection,
    context: CostContext,
    forecast: CostSheet,
    source: str,
    provider: str,
    months: Sequence[Month],
    today: date,
    now: datetime,
) -> list[Evaluated]:
    """The team budgets whose home is ``source``, over the team's shares of every source it
    covers (the others priced from their stored lines, as the report prices them)."""
    settings = context.settings
    names = [s.name for s in settings.sources]
    budgets = [e for e in settings.expectations if is_team_budget(e)]
    if not any(budget_home(e, names) == source for e in budgets):
        return []
    covered = [s for s in settings.sources if any(fnmatchcase(s.name, e.source) for e in budgets)]
    shares: list[SourceShares] = []
    for other in covered:
        if other.name == source:
            shares.append(_source_shares(context, forecast, source))
            continue
        theirs = await load_context(conn, settings, other.name, other.provider, months)
        inputs = await source_forecast_inputs(
            conn, settings, other.name, pull_instant(today, now), services=True
        )
        ahead = projected_sheet(
            theirs.rates, settings.commitments, theirs.lines, today, settings.credits, inputs
        )
        shares.append(_source_shares(theirs, ahead, other.name))
    return team_budget_findings(budgets, shares, months, source, provider)


def _source_shares(context: CostContext, forecast: CostSheet, source: str) -> SourceShares:
    settings = context.settings
    statuses: dict[Month, LineStatus] = {}
    for x in context.lines:
        if x.status is LineStatus.COLLECTING or x.month not in statuses:
            statuses[x.month] = x.status
    return SourceShares(
        source,
        allocate(context.sheet, context.lines, settings.teams, settings.showback),
        allocate(forecast, context.lines, settings.teams, settings.showback),
        statuses,
    )


def usage_digests(lines: Sequence[CostLine]) -> dict[Month, str]:
    """A digest of each month's usage (every line's identity, period, quantity and unit)."""
    parts: dict[Month, list[str]] = {}
    for x in sorted(lines, key=lambda x: (x.month, x.identity, x.period_start)):
        parts.setdefault(x.month, []).append(
            "\x1e".join((*x.identity, str(x.period_start), str(x.quantity), x.unit))
        )
    return {month: line_digest(tuple(items)) for month, items in parts.items()}


async def _stored(
    conn: AsyncConnection, source: str, months: Sequence[Month]
) -> dict[tuple[Month, str], Any]:
    query = select(expected_t).where(
        expected_t.c.source == source, expected_t.c.month.in_([str(m) for m in months])
    )
    return {(Month.parse(r.month), r.currency): r for r in (await conn.execute(query)).all()}


async def _keep(
    conn: AsyncConnection,
    source: str,
    current: dict[tuple[Month, str], Decimal],
    finalized: set[Month],
    usage: dict[Month, str],
    previous: dict[tuple[Month, str], Any],
    run_id: int,
    now: datetime,
) -> None:
    """Record new months; follow collecting ones and changed usage; keep a finalized month's
    amount as first priced while its usage stays the same."""
    for (month, currency), amount in sorted(current.items()):
        done = month in finalized
        digest = usage.get(month, "")
        values = {
            "amount": amount,
            "usage_digest": digest,
            "finalized": done,
            "run_id": run_id,
            "updated_at": now,
        }
        old = previous.get((month, currency))
        if old is None:
            await conn.execute(
                insert(expected_t).values(
                    source=source, month=str(month), currency=currency, **values
                )
            )
        elif not old.finalized or old.usage_digest != digest:
            await conn.execute(
                update(expected_t)
                .where(
                    expected_t.c.source == source,
                    expected_t.c.month == str(month),
                    expected_t.c.currency == currency,
                )
                .values(**values)
            )


async def projected_invoices(
    conn: AsyncConnection,
    settings: Settings,
    sources: Sequence[str] = (),
    as_of: date | None = None,
) -> list[ProjectedInvoice]:
    """Each source's open month priced to month end, as of its latest successful pull (or
    ``as_of``); sources without declared rates are priced at their last invoice's rates."""
    found: list[ProjectedInvoice] = []
    for source in settings.sources:
        if sources and source.name not in sources:
            continue
        last_pull = await _last_pull(conn, source.name)
        day = as_of or (last_pull.date() if last_pull else None)
        if day is None:
            continue
        instant = pull_instant(day, last_pull or datetime.combine(day, time(0), tzinfo=UTC))
        forecasts = await source_forecast_inputs(
            conn, settings, source.name, instant, services=True
        )
        month = Month.of(day)
        months = [month - 3, month - 2, month - 1, month]
        lines = await cost_lines(conn, settings, source.name, months)
        invoices = await invoice_amounts(conn, source.name, source.provider, months)
        rates = list(settings.rates) or last_invoice_rates(invoices, lines)
        found += spend_projected(
            source.name,
            rates,
            settings.commitments,
            settings.credits,
            lines,
            day,
            at_last_rates=not settings.rates,
            forecasts=forecasts,
        )
    return found


async def _last_pull(conn: AsyncConnection, source: str) -> datetime | None:
    query = select(func.max(runs_t.c.started_at)).where(
        runs_t.c.source == source, runs_t.c.status == SUCCEEDED
    )
    started: datetime | None = (await conn.execute(query)).scalar_one_or_none()
    return started


@dataclass(frozen=True, slots=True)
class CostGauge:
    """The open month of a source in one currency: expected cost to date and projected."""

    currency: str
    to_date: Decimal
    projected: Decimal


def open_month_gauges(context: CostContext, source: str, today: date) -> list[CostGauge]:
    """The expected and projected cost of ``today``'s month, per currency (for /metrics)."""
    month = Month.of(today)
    lines = [x for x in context.lines if x.month == month]
    settings = context.settings
    ahead = projected_sheet(context.rates, settings.commitments, lines, today, settings.credits)
    now = price_lines(context.rates, settings.commitments, lines, settings.credits)
    expected = {cur: amount for (_, _, cur), amount in now.month_totals().items()}
    projected = {cur: amount for (_, _, cur), amount in ahead.month_totals().items()}
    return [
        CostGauge(cur, expected.get(cur, Decimal(0)), projected.get(cur, Decimal(0)))
        for cur in sorted(set(expected) | set(projected))
    ]
