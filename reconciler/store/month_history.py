"""Load the version history a forecast reads: one query per call, grouped in Python.

The differences between a line's consecutive versions are taken in SQL (``LAG`` over the
line's versions); they are summed in Python because SQLite keeps quantities as exact text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext

from sqlalchemy import Boolean, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.domain import EXACT_CONTEXT, Month
from reconciler.reconcile.forecast import Escalation, ForecastMethod, ForecastParams
from reconciler.reconcile.history import ForecastInputs, HistoryKey, KeyHistory
from reconciler.settings import ForecastSettings, Settings
from reconciler.store.tables import LineVersion, UsageLineRow
from reconciler.store.types import ExactDecimal

DEFAULT_DATA_LAG = timedelta(days=1)
lines_t = UsageLineRow.__table__  # type: ignore[attr-defined]
versions_t = LineVersion.__table__  # type: ignore[attr-defined]


def forecast_params(settings: ForecastSettings) -> ForecastParams:
    return ForecastParams(
        method=ForecastMethod(settings.method),
        window_days=settings.window_days,
        min_days=settings.min_days,
        band_z=settings.band_z,
        burst_factor=settings.burst_factor,
    )


async def key_histories(
    conn: AsyncConnection, sources: Sequence[str], month: Month, *, services: bool
) -> dict[HistoryKey, KeyHistory]:
    """The recorded changes of every line of ``month`` (of ``sources``; empty: all sources),
    grouped by :class:`HistoryKey`; account-level lines only unless ``services``."""
    line, version = lines_t.c, versions_t.c
    window = {"partition_by": version.line_id, "order_by": version.run_id}
    previous = func.lag(version.quantity, type_=ExactDecimal()).over(**window)
    previous_present = func.lag(version.present, type_=Boolean()).over(**window)
    ordered = (
        select(
            version.line_id,
            version.recorded_at,
            version.quantity,
            version.present,
            previous.label("previous"),
            previous_present.label("previous_present"),
        )
        .join(lines_t, line.id == version.line_id)
        .where(
            line.month == str(month),
            line.source.in_(list(sources)) if sources else true(),
            true() if services else line.service == "",
        )
        .subquery()
    )
    query = select(
        ordered,
        line.source,
        line.account,
        line.product,
        line.usage_type,
        line.region,
        line.service,
        line.unit,
        line.provider_updated_at,
    ).join(lines_t, line.id == ordered.c.line_id)
    deltas: dict[HistoryKey, list[tuple[datetime, Decimal]]] = defaultdict(list)
    updated: dict[HistoryKey, datetime | None] = {}
    with localcontext(EXACT_CONTEXT):
        for row in (await conn.execute(query)).all():
            key = HistoryKey(
                row.source,
                row.account,
                row.product,
                row.usage_type,
                row.region,
                row.service,
                month,
                row.unit,
            )
            now = row.quantity if row.present else Decimal(0)
            before = row.previous if row.previous_present else Decimal(0)
            deltas[key].append((row.recorded_at, now - (before or Decimal(0))))
            updated[key] = _earliest(updated, key, row.provider_updated_at)
    return {key: KeyHistory(tuple(values), updated.get(key)) for key, values in deltas.items()}


def _earliest(
    seen: dict[HistoryKey, datetime | None], key: HistoryKey, stamp: datetime | None
) -> datetime | None:
    """The oldest provider update of a key's lines; None as soon as one line has none."""
    if key not in seen:
        return stamp
    current = seen[key]
    return None if current is None or stamp is None else min(current, stamp)


def pull_instant(today: date, now: datetime) -> datetime:
    """The moment a pull's data is taken as of: ``now``, on the day pulled (``today`` differs
    from the clock's date when a simulated day is followed)."""
    return now if now.date() == today else datetime.combine(today, now.timetz())


async def source_forecast_inputs(
    conn: AsyncConnection, settings: Settings, source: str, now: datetime, *, services: bool
) -> ForecastInputs:
    """The inputs for forecasting ``source``'s collecting months at ``now``: the month of
    ``now`` and, early in a month, the one its lagging data still covers."""
    lag = settings.sources[settings.source_index(source)].data_lag
    histories = {}
    for month in sorted({Month.of(now.date()), Month.of((now - lag).date())}):
        histories.update(await key_histories(conn, [source], month, services=services))
    forecast = settings.forecast
    return ForecastInputs(
        now,
        lag,
        forecast_params(forecast),
        histories,
        Escalation(
            forecast.escalation_percent, forecast.escalation_amount, forecast.escalation_money
        ),
    )
