"""Expected cost: the month lines of a source priced by its rate cards and commitments. Pure.

Each line is priced once: by the first commitment in quantity that matches it, else by the
first rate card that matches it (a card is the ``[[rates]]`` tables with the same matchers,
one per period of its terms). A month's volume lines of one card and unit are priced together
(graduated tiers apply to their total) and the cost is shared among the lines by quantity; a
percentile or peak line is priced on its own month value. A money commitment then lifts the
rated cost of what it matches to its commit. Lines no rate prices are listed with the reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, localcontext
from fnmatch import fnmatchcase

from reconciler.cost_settings import CommitmentSettings, CreditSettings, RateSettings
from reconciler.domain import EXACT_CONTEXT, LineStatus, Month, reporting_group_of
from reconciler.reconcile import commitments as commits
from reconciler.reconcile.commitments import CommitmentMonth
from reconciler.reconcile.measures import MeasureKind, PeriodValue, combine, month_value
from reconciler.reconcile.pricing import PricedMonth, RateVersion, Usage, price_value, price_volume

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class CostLine:
    """One tracked line, as pricing sees it."""

    source: str
    account: str
    product: str
    product_name: str
    usage_type: str
    region: str
    service: str
    month: Month
    period_start: date
    period_end: date
    quantity: Decimal
    unit: str
    status: LineStatus
    kind: MeasureKind = MeasureKind.VOLUME
    provider: str = ""
    billable: bool | None = None
    service_name: str = ""

    @property
    def additive(self) -> bool:
        """Whether the line is a flow, priced by the days its period covers."""
        return self.kind is MeasureKind.VOLUME

    @property
    def identity(self) -> tuple[str, ...]:
        return (self.source, self.account, self.product, self.usage_type, self.region, self.service)


@dataclass(frozen=True, slots=True)
class LineCost:
    """The expected cost of one line and how it was computed."""

    line: CostLine
    currency: str
    amount: Decimal
    priced_by: str
    basis: str
    prepaid: Decimal = ZERO  # the part of ``amount`` a commitment's purchase pays for
    # The part of a commitment's purchase this line uses up (FOCUS amortization): a monthly
    # commitment's purchase is used up by its month, a term's by what each month draws.
    amortized: Decimal = ZERO

    @property
    def effective(self) -> Decimal:
        """The line's cost with the purchase spread over what uses it: billed without its
        prepaid part, plus the part of a purchase it uses up."""
        with localcontext(EXACT_CONTEXT):
            return self.amount - self.prepaid + self.amortized


@dataclass(frozen=True, slots=True)
class Unpriced:
    line: CostLine
    reason: str


@dataclass(frozen=True, slots=True)
class AppliedCredit:
    """A contract credit subtracted from a source's month."""

    credit: str
    source: str
    month: Month
    currency: str
    amount: Decimal


@dataclass
class CostSheet:
    lines: list[LineCost]
    commitments: list[CommitmentMonth]
    unpriced: list[Unpriced]
    credits: list[AppliedCredit] = field(default_factory=list)

    def month_totals(self) -> dict[tuple[str, Month, str], Decimal]:
        """Expected cost by (source, month, currency), commitments' adjustments included."""
        totals: dict[tuple[str, Month, str], Decimal] = defaultdict(lambda: ZERO)
        with localcontext(EXACT_CONTEXT):
            for cost in self.lines:
                totals[(cost.line.source, cost.line.month, cost.currency)] += cost.amount
            for commitment in self.commitments:
                key = (commitment.source, commitment.month, commitment.currency)
                totals[key] += commitment.adjustment
            for credit in self.credits:
                totals[(credit.source, credit.month, credit.currency)] -= credit.amount
        return dict(totals)


def _matches(rule: RateSettings | CommitmentSettings | CreditSettings, line: CostLine) -> bool:
    if rule.per_service != bool(line.service):
        return False
    if reporting_group_of(line.service) is not None:
        # A reporting group's line is a part of its contract product's line, which is the
        # one billed (and carries isBillable): pricing the part too would bill it twice.
        return False
    return (
        fnmatchcase(line.source, rule.source)
        and (
            fnmatchcase(line.product, rule.product) or fnmatchcase(line.product_name, rule.product)
        )
        and fnmatchcase(line.usage_type, rule.usage_type)
        and fnmatchcase(line.region, rule.region)
        and fnmatchcase(line.service, rule.service)
    )


def rate_cards(rates: Sequence[RateSettings]) -> list[list[RateSettings]]:
    """Rates grouped into cards by their matchers, in the order first declared."""
    cards: dict[tuple[object, ...], list[RateSettings]] = {}
    for rate in rates:
        key = (
            rate.source,
            rate.product,
            rate.usage_type,
            rate.region,
            rate.service,
            rate.per_service,
        )
        cards.setdefault(key, []).append(rate)
    return list(cards.values())


class CardIndex:
    """The rate cards of a rate card list, found for a line without testing every card: the
    cards naming a usage type exactly are filed under it, so a line is tested only against
    its usage type's cards and those with a wildcard usage type, in declared order (the
    first that matches prices the line, as with a scan). What a line's fields matched is
    remembered: a line priced again (a change re-priced both ways) is not matched again."""

    def __init__(self, rates: Sequence[RateSettings]) -> None:
        self.cards = rate_cards(rates)
        self._by_usage_type: dict[tuple[str, bool], list[int]] = defaultdict(list)
        self._wildcard: list[int] = []
        for index, card in enumerate(self.cards):
            rule = card[0]
            if _is_pattern(rule.usage_type):
                self._wildcard.append(index)
            else:
                self._by_usage_type[(rule.usage_type, rule.per_service)].append(index)
        self._candidates: dict[tuple[str, bool], list[int]] = {}
        self._found: dict[tuple[str, ...], int | None] = {}

    def find(self, line: CostLine) -> int | None:
        """The index of the first card that matches ``line`` (None: no card does)."""
        fields = _match_fields(line)
        if fields in self._found:
            return self._found[fields]
        key = (line.usage_type, bool(line.service))
        candidates = self._candidates.get(key)
        if candidates is None:
            candidates = sorted([*self._by_usage_type.get(key, ()), *self._wildcard])
            self._candidates[key] = candidates
        found = next((i for i in candidates if _matches(self.cards[i][0], line)), None)
        self._found[fields] = found
        return found


def _match_fields(line: CostLine) -> tuple[str, ...]:
    """What a rule's matchers look at."""
    return (line.source, line.product, line.product_name, line.usage_type, line.region,
            line.service)  # fmt: skip


def _is_pattern(value: str) -> bool:
    return any(char in value for char in "*?[")


def price_lines(
    rates: Sequence[RateSettings],
    commitments: Sequence[CommitmentSettings],
    lines: Sequence[CostLine],
    credits: Sequence[CreditSettings] = (),
    index: CardIndex | None = None,
) -> CostSheet:
    """Every line's expected cost, the commitments' months, the credits applied and what
    could not be priced (``index``: the rates' :class:`CardIndex`, when the caller keeps
    one)."""
    sheet = CostSheet([], [], [])
    quantity_commits = [c for c in commitments if c.quantity is not None]
    money_commits = [c for c in commitments if c.amount is not None]
    found = index or CardIndex(rates)
    cards = found.cards
    by_commit: dict[int, list[CostLine]] = defaultdict(list)
    by_card: dict[tuple[int, str, Month, str], list[CostLine]] = defaultdict(list)
    for line in lines:
        currency = _currency_of(rates, line) if line.billable is False else None
        if currency:
            # The provider says the stat is not billed: it costs nothing, whatever matches it.
            sheet.lines.append(LineCost(line, currency, ZERO, "", "not billable"))
            continue
        commit = _first(quantity_commits, line)
        if commit is not None:
            by_commit[commit].append(line)
            continue
        card = found.find(line)
        if card is None:
            sheet.unpriced.append(Unpriced(line, "no rate matches"))
        elif cards[card][0].unit is not None and cards[card][0].unit != line.unit:
            sheet.unpriced.append(
                Unpriced(line, f"in '{line.unit}', the rate in '{cards[card][0].unit}'")
            )
        else:
            by_card[(card, line.source, line.month, line.unit)].append(line)
    for (card, _, month, _), group in by_card.items():
        versions = [RateVersion.of(r) for r in cards[card]]
        sheet.lines.extend(_rated(versions, month, group, sheet.unpriced))
    for number, group in by_commit.items():
        _commit_quantity(quantity_commits[number], group, sheet)
    for commitment in money_commits:
        _commit_money(commitment, sheet)
    sheet.credits = _credits(credits, lines)
    return sheet


def _credits(credits: Sequence[CreditSettings], lines: Sequence[CostLine]) -> list[AppliedCredit]:
    """Each credit once per source and month in its dates that has a line it matches."""
    applied: list[AppliedCredit] = []
    for credit in credits:
        months = sorted(
            {
                (x.source, x.month)
                for x in lines
                if _matches(credit, x) and commits.months_of(credit, x.month)
            }
        )
        applied.extend(
            AppliedCredit(credit.label, source, month, credit.amount.currency, credit.amount.amount)
            for source, month in months
        )
    return applied


def _currency_of(rates: Sequence[RateSettings], line: CostLine) -> str:
    """The currency of the rate matching a line, else of the first rate of its source."""
    matching = (r.currency for r in rates if _matches(r, line))
    of_source = (r.currency for r in rates if fnmatchcase(line.source, r.source))
    return next(matching, None) or next(of_source, "")


def pricing_group(
    rates: Sequence[RateSettings],
    commitments: Sequence[CommitmentSettings],
    line: CostLine,
    cards: CardIndex | None = None,
) -> tuple[str, int] | None:
    """What prices a line with others: ("commitment" or "money", index) or ("rate", card);
    lines of another group never change its cost. None: nothing prices it."""
    money = [c for c in commitments if c.amount is not None]
    for number, commitment in enumerate(money):
        if _matches(commitment, line) and commits.months_of(commitment, line.month):
            return ("money", number)
    quantity = _first([c for c in commitments if c.quantity is not None], line)
    if quantity is not None:
        return ("commitment", quantity)
    card = (cards or CardIndex(rates)).find(line)
    return None if card is None else ("rate", card)


def _first(commitments: Sequence[CommitmentSettings], line: CostLine) -> int | None:
    for index, commitment in enumerate(commitments):
        if _matches(commitment, line) and commits.months_of(commitment, line.month):
            return index
    return None


def _rated(
    versions: list[RateVersion], month: Month, group: list[CostLine], unpriced: list[Unpriced]
) -> list[LineCost]:
    costs: list[LineCost] = []
    volume = [line for line in group if line.additive]
    if volume:
        usage = [Usage(x.quantity, x.unit, x.period_start, x.period_end) for x in volume]
        priced = price_volume(versions, month, usage)
        costs.extend(_shared(priced, volume, versions, unpriced))
    by_identity: dict[tuple[str, ...], list[CostLine]] = defaultdict(list)
    for line in group:
        if not line.additive:
            by_identity[line.identity].append(line)
    for periods in by_identity.values():
        priced = price_value(versions, month, _line_value(periods))
        costs.extend(_shared(priced, periods, versions, unpriced))
    return costs


def _shared(
    priced: PricedMonth | None,
    lines: list[CostLine],
    versions: list[RateVersion],
    unpriced: list[Unpriced],
) -> list[LineCost]:
    """A group's cost shared among its lines by quantity (equally when all are zero)."""
    if priced is None:
        unpriced.extend(Unpriced(x, "no version of the rate is in force") for x in lines)
        return []
    unit = lines[0].unit
    basis = "; ".join(c.describe(unit, priced.currency) for c in priced.charges)
    # The versions that priced this month (a mid-month change names both).
    label = ", ".join(dict.fromkeys(c.rate for c in priced.charges)) or versions[0].label
    return [
        LineCost(line, priced.currency, amount, label, basis)
        for line, amount in zip(lines, _split(priced.amount, lines), strict=True)
    ]


def _split(amount: Decimal, lines: Sequence[CostLine]) -> list[Decimal]:
    with localcontext(EXACT_CONTEXT):
        total = sum((x.quantity for x in lines), ZERO)
        if total == 0:
            return [amount / len(lines) for _ in lines]
        return [amount * x.quantity / total for x in lines]


def _commit_quantity(
    commitment: CommitmentSettings, group: list[CostLine], sheet: CostSheet
) -> None:
    by_month: dict[tuple[str, Month], list[CostLine]] = defaultdict(list)
    for line in group:
        if commitment.unit is not None and line.unit != commitment.unit:
            sheet.unpriced.append(
                Unpriced(line, f"in '{line.unit}', the commitment in '{commitment.unit}'")
            )
        else:
            by_month[(line.source, line.month)].append(line)
    used: dict[str, dict[Month, Decimal]] = defaultdict(dict)
    for (source, month), lines in by_month.items():
        value = _month_value(lines)
        if value is None:
            sheet.unpriced.extend(
                Unpriced(x, f"{commitment.label} matches several percentile lines") for x in lines
            )
        else:
            used[source][month] = value
    months = [
        result
        for source, values in sorted(used.items())
        for result in _commit_months(commitment, source, values, money=False)
    ]
    sheet.commitments.extend(months)
    for result in months:
        lines = by_month[(result.source, result.month)]
        basis = result.describe(commitment.unit or "")
        # The purchase is billed on its own (a term's once, in its first month); a monthly
        # one is used up by its month, a term's by what each month draws from it.
        with localcontext(EXACT_CONTEXT):
            drawn = (result.used - result.overage_quantity) * (commitment.commit_price or ZERO)
        used_up = result.purchase if commitment.period == "month" else drawn
        sheet.lines.extend(
            LineCost(line, result.currency, amount, commitment.label, basis, share, part)
            for line, amount, share, part in zip(
                lines,
                _split(result.billed, lines),
                _split(result.purchase, lines),
                _split(used_up, lines),
                strict=True,
            )
        )


def _line_value(periods: Sequence[CostLine]) -> Decimal:
    """One line's month value from its periods, by its measure kind."""
    return month_value(periods[0].kind, (PeriodValue(x.period_start, x.quantity) for x in periods))


def _month_value(lines: list[CostLine]) -> Decimal | None:
    """What a commitment measures: the month value of its lines (None: they do not add up)."""
    kinds = {x.kind for x in lines}
    by_identity: dict[tuple[str, ...], list[CostLine]] = defaultdict(list)
    for line in lines:
        by_identity[line.identity].append(line)
    values = [_line_value(periods) for periods in by_identity.values()]
    if len(values) == 1:
        return values[0]
    if len(kinds) > 1 or not lines[0].kind.adds_up:
        return None
    return combine(lines[0].kind, values)


def _commit_money(commitment: CommitmentSettings, sheet: CostSheet) -> None:
    """Lift the rated cost of what a money commitment matches to its commit; the difference
    is a charge of the commitment itself (a line of no usage)."""
    cost: dict[str, dict[Month, Decimal]] = defaultdict(dict)
    with localcontext(EXACT_CONTEXT):
        for priced in sheet.lines:
            line = priced.line
            if (
                priced.currency == commitment.currency
                and _matches(commitment, line)
                and commits.months_of(commitment, line.month)
            ):
                months = cost[line.source]
                months[line.month] = months.get(line.month, ZERO) + priced.amount
    for source, values in sorted(cost.items()):
        sheet.commitments.extend(_commit_months(commitment, source, values, money=True))


def _commit_months(
    commitment: CommitmentSettings, source: str, values: dict[Month, Decimal], *, money: bool
) -> list[CommitmentMonth]:
    if commitment.period == "term":
        return commits.term_months(commitment, source, sorted(values.items()))
    month_of = commits.money_month if money else commits.quantity_month
    return [month_of(commitment, source, m, v) for m, v in sorted(values.items())]


def projected_lines(
    lines: Sequence[CostLine], project: Callable[[CostLine], Decimal]
) -> list[CostLine]:
    """Collecting volume lines at their projected month-end quantity; percentile and peak
    lines keep their value to date (they are not flows and are never projected)."""
    return [
        replace(x, quantity=project(x)) if x.additive and x.status is LineStatus.COLLECTING else x
        for x in lines
    ]
