"""Spend: the projected invoice, budgets and the money impact of a change. Pure.

The projected invoice of a collecting month prices its projected volume (only volumes are
projected) and its percentile and peak values to date with the rates and commitments. Where
no rate is declared for a line, the effective rate of the last invoice that billed it prices
it, and the rate says so ("at last month's rates"). ``monthly_budget`` on an expectation
compares the expected cost of the lines it matches with the budget: ``over_budget`` for what
is already spent, ``projected_over_budget`` for a collecting month's projection.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase

from reconciler.cost_settings import CommitmentSettings, CreditSettings, RateSettings
from reconciler.domain import (
    EXACT_CONTEXT,
    FindingKind,
    ItemCategory,
    LineStatus,
    Month,
    Observation,
    PlanItem,
    Severity,
    line_digest,
)
from reconciler.money import Money
from reconciler.reconcile.audit import InvoiceAmount, bills
from reconciler.reconcile.costing import (
    CardIndex,
    CostLine,
    CostSheet,
    price_lines,
    pricing_group,
    projected_lines,
)
from reconciler.reconcile.expectations import Evaluated, projected
from reconciler.reconcile.history import ForecastInputs, HistoryKey
from reconciler.reconcile.pricing import RateVersion, Usage, VolumeParts
from reconciler.settings import ExpectationSettings

ZERO = Decimal(0)
LAST_INVOICE = "at last month's rates"


def project_quantity(
    line: CostLine, today: date, forecasts: ForecastInputs | None = None
) -> Decimal:
    """A collecting volume line's month-end quantity (the one call to the projection): the
    forecast from the line's version history and its source's data lag when ``forecasts``
    has them, else the run rate through ``today``."""
    if forecasts is not None:
        return forecasts.forecast(line.month, line.quantity, [history_key(line)]).value
    value = projected(line.quantity, line.month, today)
    return line.quantity if value is None else value


def history_key(line: CostLine) -> HistoryKey:
    """The version-history key of a priced line (its split periods share one)."""
    return HistoryKey(
        line.source,
        line.account,
        line.product,
        line.usage_type,
        line.region,
        line.service,
        line.month,
        line.unit,
    )


def projected_sheet(
    rates: Sequence[RateSettings],
    commitments: Sequence[CommitmentSettings],
    lines: Sequence[CostLine],
    today: date,
    credits: Sequence[CreditSettings] = (),
    forecasts: ForecastInputs | None = None,
) -> CostSheet:
    """Expected cost with collecting volumes forecast to month end."""
    ahead = projected_lines(lines, lambda x: project_quantity(x, today, forecasts))
    return price_lines(rates, commitments, ahead, credits)


def last_invoice_rates(
    invoices: Sequence[InvoiceAmount], lines: Sequence[CostLine]
) -> list[RateSettings]:
    """A flat rate per invoiced usage line at the effective rate of its latest invoice."""
    latest: dict[tuple[str, str, str], InvoiceAmount] = {}
    for invoice in sorted(invoices, key=lambda i: i.month):
        if invoice.units > 0 and invoice.amount >= 0:
            latest[(invoice.source, invoice.product_name, invoice.region)] = invoice
    rates: list[RateSettings] = []
    seen: set[tuple[str, ...]] = set()
    for invoice in latest.values():
        for line in lines:
            key = (line.source, line.usage_type, line.region)
            if key in seen or not bills(replace(invoice, month=line.month), line):
                continue
            seen.add(key)
            with localcontext(EXACT_CONTEXT):
                price = invoice.amount / invoice.units
            rates.append(
                RateSettings(
                    name=f"{LAST_INVOICE} ({invoice.month} invoice)",
                    source=_literal(line.source),
                    usage_type=_literal(line.usage_type),
                    region=_literal(line.region),
                    currency=invoice.currency,
                    unit_price=price,
                )
            )
    return rates


def _literal(value: str) -> str:
    """A glob that matches exactly ``value``."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in value)


def _matched(exp: ExpectationSettings, line: CostLine) -> bool:
    if exp.per_service != bool(line.service) or exp.team is not None:
        return False
    return (
        fnmatchcase(line.source, exp.source)
        and (fnmatchcase(line.product, exp.product) or fnmatchcase(line.product_name, exp.product))
        and fnmatchcase(line.usage_type, exp.usage_type)
        and fnmatchcase(line.region, exp.region)
        and fnmatchcase(line.service, exp.service)
    )


def budget_findings(
    expectations: Sequence[ExpectationSettings], actual: CostSheet, forecast: CostSheet
) -> list[Evaluated]:
    """``over_budget`` / ``projected_over_budget`` for every expectation with a budget on
    the lines it matches, per source and month (a team's budget covers all its sources:
    :mod:`reconciler.reconcile.team_budgets`)."""
    found: list[Evaluated] = []
    for exp in expectations:
        budget = exp.monthly_budget
        if budget is None or exp.team is not None:
            continue
        spent = _spend(exp, actual, budget.currency)
        outlook = _spend(exp, forecast, budget.currency)
        for (source, month), (amount, status, provider) in sorted(spent.items()):
            if amount > budget.amount:
                found.append(
                    budget_finding(
                        exp, source, provider, month, amount, status, FindingKind.OVER_BUDGET
                    )
                )
            elif status is LineStatus.COLLECTING:
                ahead = outlook.get((source, month))
                if ahead is not None and ahead[0] > budget.amount:
                    found.append(
                        budget_finding(
                            exp, source, provider, month, ahead[0], status,
                            FindingKind.PROJECTED_OVER_BUDGET,
                        )
                    )  # fmt: skip
    return found


def _spend(
    exp: ExpectationSettings, sheet: CostSheet, currency: str
) -> dict[tuple[str, Month], tuple[Decimal, LineStatus, str]]:
    totals: dict[tuple[str, Month], Decimal] = defaultdict(lambda: ZERO)
    finalized: dict[tuple[str, Month], bool] = {}
    providers: dict[tuple[str, Month], str] = {}
    with localcontext(EXACT_CONTEXT):
        for cost in sheet.lines:
            line = cost.line
            if cost.currency != currency or not _matched(exp, line):
                continue
            key = (line.source, line.month)
            totals[key] += cost.amount
            finalized[key] = finalized.get(key, True) and line.status is LineStatus.FINALIZED
            providers[key] = line.provider
    return {
        key: (
            amount,
            LineStatus.FINALIZED if finalized[key] else LineStatus.COLLECTING,
            providers[key],
        )
        for key, amount in totals.items()
    }


def budget_finding(
    exp: ExpectationSettings,
    source: str,
    provider: str,
    month: Month,
    amount: Decimal,
    status: LineStatus,
    kind: FindingKind,
    parts: str = "",
) -> Evaluated:
    """One budget finding; ``parts`` says what the amount adds up (a team's sources)."""
    assert exp.monthly_budget is not None
    budget = exp.monthly_budget
    currency = budget.currency
    with localcontext(EXACT_CONTEXT):
        over = amount - budget.amount
    verb = "projects" if kind is FindingKind.PROJECTED_OVER_BUDGET else "costs"
    added = f" ({parts})" if parts else ""
    message = (
        f"{exp.label}: {month} {verb} {Money(amount, currency)}{added}, over the monthly "
        f"budget of {budget} by {Money(over, currency)}"
    )
    item = PlanItem(
        category=ItemCategory.FINDING,
        kind=kind.value,
        severity=exp.severity or Severity.WARNING,
        fingerprint=line_digest(("finding", kind.value, exp.label, source, str(month), "budget")),
        source=source,
        provider=provider,
        account="",
        product="" if exp.product == "*" else exp.product,
        usage_type="" if exp.usage_type == "*" else exp.usage_type,
        region="" if exp.region == "*" else exp.region,
        service="",
        month=month,
        before=Observation(budget.amount, currency, status),
        after=Observation(amount, currency, status),
        message=message,
        product_name=exp.label,
        impact=over,
        impact_currency=currency,
    )
    return Evaluated(item, line_digest((kind.value, str(budget.amount), currency)))


class ImpactPricer:
    """The money impact of single-line changes among a set of month lines: a change's month
    re-priced both ways (tiers and commitments included). Built once per run: each line's
    pricing group is found once (rate cards by :class:`CardIndex`), the lines priced together
    are filed by group once, and a group's current cost is computed once for all its
    changes; only the changed side is priced per change."""

    def __init__(
        self,
        rates: Sequence[RateSettings],
        commitments: Sequence[CommitmentSettings],
        lines: Sequence[CostLine],
    ) -> None:
        self.rates, self.commitments = rates, commitments
        self.index = CardIndex(rates)
        self.groups = {x: pricing_group(rates, commitments, x, self.index) for x in lines}
        self._month: dict[tuple[str, Month], list[CostLine]] = defaultdict(list)
        self._group: dict[_GroupKey, list[CostLine]] = defaultdict(list)
        # A money commitment lifts the rated cost of what it matches, and those lines share
        # tiers with others of their card: in its months, every change re-prices the month.
        self._whole_months: set[tuple[str, Month]] = set()
        for line in lines:
            self._month[(line.source, line.month)].append(line)
            group = self.groups[line]
            if group is not None and group[0] == "money":
                self._whole_months.add((line.source, line.month))
            elif group is not None:
                self._group[(line.source, line.month, line.unit, group)].append(line)
        self._now: dict[_GroupKey, CostSheet] = {}
        self._parts: dict[_GroupKey, VolumeParts] = {}

    def impact(self, changed: CostLine, before: Decimal) -> Money | None:
        """What the change of ``changed`` from ``before`` to its current quantity costs;
        None when no rate prices it."""
        group = self.groups.get(changed)
        if group is None:
            return None
        key: _GroupKey
        if (changed.source, changed.month) in self._whole_months:
            key = (changed.source, changed.month, "", ("month", 0))
            members = self._month[(changed.source, changed.month)]
        else:
            # Only the lines priced together with it (one card's tiers, one commitment) matter.
            key = (changed.source, changed.month, changed.unit, group)
            members = self._group[key]
        if key[3][0] == "rate" and changed.additive and changed.billable is not False:
            return self._volume_impact(key, group[1], members, changed, before)
        now = self._now.get(key)
        if now is None:
            now = self._now[key] = self._price(members)
        currency = next((c.currency for c in now.lines if c.line == changed), None)
        if currency is None:
            return None
        then = self._price([replace(x, quantity=before) if x == changed else x for x in members])
        month = (changed.source, changed.month, currency)
        with localcontext(EXACT_CONTEXT):
            amount = now.month_totals().get(month, ZERO) - then.month_totals().get(month, ZERO)
        return Money(amount, currency)

    def _price(self, lines: Sequence[CostLine]) -> CostSheet:
        return price_lines(self.rates, self.commitments, lines, index=self.index)

    def _volume_impact(
        self,
        key: _GroupKey,
        card: int,
        members: Sequence[CostLine],
        changed: CostLine,
        before: Decimal,
    ) -> Money | None:
        """A flow priced by a rate card: the card's month total (per version in force, kept
        per group) with the line's share swapped, through the tiers; the card's percentile
        and peak lines cost the same both ways."""
        rates = self.index.cards[card]
        if rates[0].unit is not None and rates[0].unit != changed.unit:
            return None  # the card is written in another unit: nothing is priced
        parts = self._parts.get(key)
        if parts is None:
            versions = [RateVersion.of(r) for r in rates]
            usage = [_usage(x) for x in members if x.additive and x.billable is not False]
            parts = self._parts[key] = VolumeParts.of(versions, changed.month, usage)
        if all(part is None for part in parts.parts):
            return None  # no version of the card is in force this month
        then = parts.replaced(_usage(changed), _usage(replace(changed, quantity=before)))
        with localcontext(EXACT_CONTEXT):
            return Money(parts.amount - then.amount, rates[0].currency)


def _usage(line: CostLine) -> Usage:
    return Usage(line.quantity, line.unit, line.period_start, line.period_end)


_GroupKey = tuple[str, Month, str, tuple[str, int]]


def change_impact(
    rates: Sequence[RateSettings],
    commitments: Sequence[CommitmentSettings],
    lines: Sequence[CostLine],
    changed: CostLine,
    before: Decimal,
) -> Money | None:
    """The impact of one change (see :class:`ImpactPricer`, for several)."""
    return ImpactPricer(rates, commitments, lines).impact(changed, before)


def repriced_findings(
    source: str,
    provider: str,
    previous: dict[tuple[Month, str], Decimal],
    current: dict[tuple[Month, str], Decimal],
    finalized: set[Month],
) -> list[Evaluated]:
    """A finalized month whose expected cost changed since it was last priced (a rate card
    corrected retroactively): a ``repriced`` finding with both amounts, never silent."""
    found: list[Evaluated] = []
    for (month, currency), amount in sorted(current.items()):
        before = previous.get((month, currency))
        if month not in finalized or before is None or before == amount:
            continue
        with localcontext(EXACT_CONTEXT):
            change = amount - before
        item = PlanItem(
            category=ItemCategory.FINDING,
            kind=FindingKind.REPRICED.value,
            severity=Severity.WARNING,
            fingerprint=line_digest(("repriced", source, str(month), currency)),
            source=source,
            provider=provider,
            account="",
            product="",
            usage_type="",
            region="",
            service="",
            month=month,
            before=Observation(before, currency, LineStatus.FINALIZED),
            after=Observation(amount, currency, LineStatus.FINALIZED),
            message=(
                f"finalized {month} re-priced by a change of the rates: expected cost "
                f"{Money(before, currency)} -> {Money(amount, currency)} "
                f"({Money(change, currency).display(signed=True)})"
            ),
            product_name="rate card",
            impact=change,
            impact_currency=currency,
        )
        found.append(Evaluated(item, line_digest(("repriced", str(before), str(amount)))))
    return found


@dataclass(frozen=True, slots=True)
class ProjectedInvoice:
    """What a source's open month is expected to cost by its end, in one currency."""

    source: str
    month: Month
    as_of: date
    currency: str
    amount: Decimal
    at_last_rates: bool = False

    def describe(self) -> str:
        text = f"{self.source} {Money(self.amount, self.currency)}"
        return text + f" ({LAST_INVOICE})" if self.at_last_rates else text


def projected_invoices(
    source: str,
    rates: Sequence[RateSettings],
    commitments: Sequence[CommitmentSettings],
    credits: Sequence[CreditSettings],
    lines: Sequence[CostLine],
    today: date,
    *,
    at_last_rates: bool = False,
    forecasts: ForecastInputs | None = None,
) -> list[ProjectedInvoice]:
    """The open month's (``today``'s) projected invoice of one source, per currency."""
    month = Month.of(today)
    open_lines = [x for x in lines if x.month == month and x.source == source]
    if not open_lines:
        return []
    sheet = projected_sheet(rates, commitments, open_lines, today, credits, forecasts)
    return [
        ProjectedInvoice(source, month, today, currency, amount, at_last_rates)
        for (_, _, currency), amount in sorted(sheet.month_totals().items())
    ]


def below_min_impact(item: PlanItem, threshold: Money | None) -> bool:
    """Whether an item's money impact is smaller than ``threshold`` (in its currency). An
    item no rate prices, or priced in another currency, is never below: it cannot be told."""
    if threshold is None or item.impact is None or item.impact_currency != threshold.currency:
        return False
    return Money(abs(item.impact), item.impact_currency).rounded() < threshold.amount
