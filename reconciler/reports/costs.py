"""The report's money: cost per month, the projected invoice, the invoice audit, commitments.

Gathered from the state with the same pure core as the runs (rates, commitments, credits;
the last invoice's rates where none are declared). Amounts stay exact here and are grouped
by currency; the renderers round them to the currency's minor unit.

A team's report (``team``) shows the team's own cost: each source's month as the showback
apportions it (the team's lines and its share of shared cost, to the cent) and its share of
each projected invoice. The invoice audit and the commitments are the account's: they are on
the whole-account report only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, localcontext

from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.cost_settings import RateSettings
from reconciler.domain import EXACT_CONTEXT, LineStatus, Month
from reconciler.money import minor_unit
from reconciler.reconcile.allocation import Allocation, allocate
from reconciler.reconcile.audit import InvoiceAmount, bills
from reconciler.reconcile.commitments import CommitmentMonth
from reconciler.reconcile.costing import CostLine, CostSheet, price_lines
from reconciler.reconcile.history import ForecastInputs
from reconciler.reconcile.spend import (
    ProjectedInvoice,
    last_invoice_rates,
    projected_invoices,
    projected_sheet,
)
from reconciler.reports.showback import Showback, ShowbackParts, build_showback
from reconciler.settings import Settings
from reconciler.store.costs import cost_lines, invoice_amounts
from reconciler.store.month_history import source_forecast_inputs


@dataclass(frozen=True, slots=True)
class MonthCost:
    """A source's month in one currency: finalized, collecting (to date) or projected."""

    source: str
    month: Month
    currency: str
    amount: Decimal
    state: str  # finalized | collecting | projected
    at_last_rates: bool


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One invoice line item against the expected cost of the usage it bills."""

    source: str
    month: Month
    line: str
    currency: str
    invoiced: Decimal
    expected: Decimal | None

    @property
    def difference(self) -> Decimal | None:
        if self.expected is None:
            return None
        with localcontext(EXACT_CONTEXT):
            return self.invoiced - self.expected

    @property
    def matches(self) -> bool | None:
        difference = self.difference
        if difference is None:
            return None
        return abs(difference) <= minor_unit(self.currency) / 2


@dataclass(frozen=True, slots=True)
class CostReport:
    months: tuple[MonthCost, ...]
    invoices: tuple[ProjectedInvoice, ...]
    audit: tuple[AuditRow, ...]
    commitments: tuple[CommitmentMonth, ...]
    showback: Showback | None = None  # when teams are declared
    team: str | None = None  # the months and invoices are this team's share

    @property
    def empty(self) -> bool:
        return not (self.months or self.audit or self.commitments)


async def gather_costs(
    conn: AsyncConnection,
    settings: Settings,
    first: Month,
    last: Month,
    sources: tuple[str, ...],
    now: datetime,
    team: str | None = None,
) -> CostReport:
    months: list[MonthCost] = []
    parts = ShowbackParts()
    invoices: list[ProjectedInvoice] = []
    audit: list[AuditRow] = []
    commitments: list[CommitmentMonth] = []
    for source in settings.sources:
        if sources and source.name not in sources:
            continue
        lines = await cost_lines(conn, settings, source.name, first.range_to(last))
        amounts = await invoice_amounts(conn, source.name, source.provider, first.range_to(last))
        at_last = not settings.rates
        rates = list(settings.rates) or last_invoice_rates(amounts, lines)
        sheet = price_lines(rates, settings.commitments, lines, settings.credits)
        source_months = _months(sheet, lines, at_last)
        forecasts = await source_forecast_inputs(conn, settings, source.name, now, services=True)
        ahead = projected_invoices(
            source.name,
            rates,
            settings.commitments,
            settings.credits,
            lines,
            now.date(),
            at_last_rates=at_last,
            forecasts=forecasts,
        )
        if settings.teams:
            priced = allocate(sheet, lines, settings.teams, settings.showback)
            projected = _projected_shares(settings, rates, lines, now, forecasts) if ahead else None
            parts.add(priced, projected, lines)
            if team is not None:
                source_months = _team_months(team, priced, source_months)
                ahead = _team_invoices(team, projected, ahead)
        months += source_months
        invoices += ahead
        months += [
            MonthCost(i.source, i.month, i.currency, i.amount, "projected", at_last) for i in ahead
        ]
        if settings.rates and team is None:  # the last invoice's rates cannot audit it
            audit += _audit(sheet, amounts)
        if team is None:
            commitments += sheet.commitments
    months.sort(key=lambda m: (m.source, m.month, m.currency, m.state))
    showback = build_showback(settings, parts, team) if settings.teams else None
    return CostReport(
        tuple(months), tuple(invoices), tuple(audit), tuple(commitments), showback, team
    )


def _team_months(team: str, shares: Allocation, months: list[MonthCost]) -> list[MonthCost]:
    """The team's part of each of the source's months it owns any of."""
    amounts = _team_amounts(team, shares)
    return [
        replace(m, amount=amounts[(m.source, m.month, m.currency)])
        for m in months
        if (m.source, m.month, m.currency) in amounts
    ]


def _team_invoices(
    team: str, shares: Allocation | None, invoices: list[ProjectedInvoice]
) -> list[ProjectedInvoice]:
    """The team's share of each projected invoice it owns any of."""
    amounts = _team_amounts(team, shares) if shares is not None else {}
    return [
        replace(i, amount=amounts[(i.source, i.month, i.currency)])
        for i in invoices
        if (i.source, i.month, i.currency) in amounts
    ]


def _team_amounts(team: str, shares: Allocation) -> dict[tuple[str, Month, str], Decimal]:
    return {(c.source, c.month, c.currency): c.amount for c in shares.costs if c.team == team}


def _projected_shares(
    settings: Settings,
    rates: list[RateSettings],
    lines: list[CostLine],
    now: datetime,
    forecasts: ForecastInputs,
) -> Allocation:
    """The teams' shares of the projected invoice (the same forecast sheet it prices)."""
    month = Month.of(now.date())
    open_lines = [x for x in lines if x.month == month]
    sheet = projected_sheet(
        rates, settings.commitments, open_lines, now.date(), settings.credits, forecasts
    )
    return allocate(sheet, open_lines, settings.teams, settings.showback)


def _months(sheet: CostSheet, lines: list, at_last: bool) -> list[MonthCost]:  # type: ignore[type-arg]
    open_months = {x.month for x in lines if x.status is not LineStatus.FINALIZED}
    return [
        MonthCost(
            source,
            month,
            currency,
            amount,
            "collecting" if month in open_months else "finalized",
            at_last,
        )
        for (source, month, currency), amount in sorted(sheet.month_totals().items())
    ]


def _audit(sheet: CostSheet, amounts: list[InvoiceAmount]) -> list[AuditRow]:
    rows: list[AuditRow] = []
    for invoice in sorted(amounts, key=lambda i: (i.month, i.label)):
        matched = [
            c for c in sheet.lines if bills(invoice, c.line) and c.currency == invoice.currency
        ]
        expected = None
        if matched:
            with localcontext(EXACT_CONTEXT):
                expected = sum((c.amount for c in matched), Decimal(0))
        rows.append(
            AuditRow(
                invoice.source,
                invoice.month,
                invoice.label,
                invoice.currency,
                invoice.amount,
                expected,
            )
        )
    return rows
