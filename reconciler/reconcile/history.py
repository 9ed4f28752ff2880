"""A month total's past values, from the version history of the lines it sums. Pure.

Every pull stores a line's values when they change, so the month-to-date total of a set of
lines as of each pull is the running sum of their version-to-version differences. Each such
total covers the days through ``recorded_at - data_lag``: the snapshots a forecast reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction

from reconciler.domain import EXACT_CONTEXT, Month
from reconciler.reconcile.forecast import (
    Escalation,
    Forecast,
    ForecastParams,
    Snapshot,
    covered_through,
    forecast_month,
)
from reconciler.reconcile.group_shares import as_decimal


@dataclass(frozen=True, slots=True, order=True)
class HistoryKey:
    """What a month total groups lines by (Akamai's split periods share one key)."""

    source: str
    account: str
    product: str
    usage_type: str
    region: str
    service: str
    month: Month
    unit: str


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """The recorded changes of the lines of one key: ``(recorded_at, difference)`` pairs, and
    the latest moment the provider says it updated them (None: it does not say)."""

    deltas: tuple[tuple[datetime, Decimal], ...]
    provider_updated_at: datetime | None = None


@dataclass(frozen=True)
class ForecastInputs:
    """Everything a forecast of one source's month totals needs, loaded once per run."""

    now: datetime
    data_lag: timedelta
    params: ForecastParams
    histories: Mapping[HistoryKey, KeyHistory] = field(default_factory=dict)
    escalation: Escalation = field(default_factory=Escalation)

    def forecast(
        self,
        month: Month,
        to_date: Decimal,
        keys: Iterable[HistoryKey],
        parts: Mapping[HistoryKey, Fraction] | None = None,
    ) -> Forecast:
        """The forecast of the total ``to_date`` of the lines of ``keys`` in ``month``; a
        key of ``parts`` counts only that part of its lines (a team's share of them)."""
        parts = parts or {}
        chosen = {k: self.histories[k] for k in set(keys) if k in self.histories}
        updated = [h.provider_updated_at for h in chosen.values()]
        stated = [moment for moment in updated if moment is not None]
        provider_through = min(stated).date() if stated and len(stated) == len(chosen) else None
        through = covered_through(self.now, self.data_lag, provider_through)
        deltas = [_part_of(h.deltas, parts.get(k)) for k, h in chosen.items()]
        snapshots = total_snapshots(deltas, self.data_lag)
        return forecast_month(month, to_date, snapshots, through, self.params)


def _part_of(
    deltas: Sequence[tuple[datetime, Decimal]], part: Fraction | None
) -> Sequence[tuple[datetime, Decimal]]:
    if part is None or part == 1:
        return deltas
    return [(moment, as_decimal(Fraction(delta) * part)) for moment, delta in deltas]


def total_snapshots(
    deltas: Sequence[Sequence[tuple[datetime, Decimal]]], data_lag: timedelta
) -> list[Snapshot]:
    """The running total of several lines' differences as of each recorded moment."""
    merged = sorted((moment, delta) for line in deltas for moment, delta in line)
    snapshots: list[Snapshot] = []
    total = Decimal(0)
    with localcontext(EXACT_CONTEXT):
        for index, (moment, delta) in enumerate(merged):
            total += delta
            if index + 1 == len(merged) or merged[index + 1][0] != moment:
                snapshots.append(Snapshot(_through(moment, data_lag), total))
    return snapshots


def _through(moment: datetime, data_lag: timedelta) -> date:
    return covered_through(moment, data_lag, None)
