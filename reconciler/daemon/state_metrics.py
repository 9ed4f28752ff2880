"""Gauges of the state, read from the database when ``/metrics`` is scraped.

Labels stay bounded: sources, products, usage types, units, month statuses, expectation
labels, finding kinds and severities — never an account or a month, and a service only when
``daemon.metrics_services`` enables it (capped: see :mod:`reconciler.daemon.service_metrics`).
Quantities are exported in the provider's unit, named in the ``unit`` label (the units differ
per usage type: GB, requests, Mbps). The forecast is the one the plan and the findings use
(version history and data lag per source), with its band when there is one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.service_metrics import service_usage_families
from reconciler.domain import FindingState, Month
from reconciler.reconcile.expectations import history_keys
from reconciler.reconcile.forecast import Forecast
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.month_values import MonthLine, month_totals
from reconciler.refresh import expectations_for, month_lines
from reconciler.settings import ExpectationSettings, Settings
from reconciler.store.db import reader
from reconciler.store.items import findings_table as findings_t
from reconciler.store.month_history import source_forecast_inputs
from reconciler.store.runs import runs_t

PREFIX = "reconciler_"


class StateCollector(Collector):
    """The last snapshot of the state gauges; :meth:`refresh` takes a new one."""

    def __init__(self) -> None:
        self._families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self._families

    async def refresh(self, engine: AsyncEngine, settings: Settings, now: datetime) -> None:
        month = Month(now.year, now.month)
        families = [*await _usage_families(engine, settings, month, now)]
        if settings.daemon.metrics_services:
            families += await service_usage_families(
                engine, settings, month, settings.daemon.metrics_services
            )
        families += await _finding_families(engine)
        families.append(await _pull_age_family(engine, settings, now))
        self._families = families


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=labels)


async def _usage_families(
    engine: AsyncEngine, settings: Settings, month: Month, now: datetime
) -> list[Metric]:
    usage = _gauge(
        "usage_month_to_date",
        "Month-to-date quantity of volume usage (in the unit label) per source, product, "
        "usage type and month status; percentiles and peaks are not added up here.",
        ["source", "product", "usage_type", "unit", "month_status"],
    )
    mtd = _gauge(
        "expectation_month_to_date",
        "The current month's value of an expectation (its measure kind decides how lines "
        "combine), per expectation and usage type.",
        ["expectation", "source", "usage_type", "unit", "kind"],
    )
    forecast = _ForecastGauges()
    maximum = _gauge(
        "expectation_maximum",
        "The expectation's monthly maximum (a commitment or budget), per unit it applies to.",
        ["expectation", "unit"],
    )
    limits: dict[tuple[str, str], Decimal] = {}  # per expectation and the unit it met
    async with reader(engine).connect() as conn:
        for source in settings.sources:
            lines = await month_lines(conn, source.name, [month], services=False)
            _add_usage(usage, lines)
            inputs = await source_forecast_inputs(conn, settings, source.name, now, services=False)
            for exp in expectations_for(settings, source.name):
                if not _declares_quantity(exp):
                    continue  # a money budget: its figures are the cost gauges, not these
                for key, total in month_totals(exp, lines).items():
                    labels = [exp.label, key.source, key.usage_type, key.unit]
                    if exp.monthly_max is not None:
                        limits[(exp.label, key.unit)] = exp.monthly_max
                    mtd.add_metric([*labels, key.kind.value], float(total.quantity))
                    if key.kind is MeasureKind.VOLUME and not total.finalized:
                        keys = history_keys(exp, lines, key)
                        forecast.add(labels, inputs.forecast(key.month, total.quantity, keys))
    for (label, unit), limit in sorted(limits.items()):
        maximum.add_metric([label, unit], float(limit))
    return [usage, mtd, *forecast.families(), maximum]


class _ForecastGauges:
    """The month-end forecast of each volume expectation and the low and high ends of its
    band (absent while the history is too short for one, or nothing is covered yet)."""

    def __init__(self) -> None:
        labels = ["expectation", "source", "usage_type", "unit"]
        self.value = _gauge(
            "expectation_forecast",
            "Month-end forecast of a volume expectation's collecting month (the forecast the "
            "plan uses: trailing window or run rate over the days the data covers).",
            labels,
        )
        self.low = _gauge("expectation_forecast_low", "Low end of the forecast's band.", labels)
        self.high = _gauge("expectation_forecast_high", "High end of the forecast's band.", labels)

    def add(self, labels: list[str], forecast: Forecast) -> None:
        if forecast.covered_through is None:
            return  # nothing of the month covered yet: no forecast to show
        self.value.add_metric(labels, float(forecast.value))
        if forecast.low is not None and forecast.high is not None:
            self.low.add_metric(labels, float(forecast.low))
            self.high.add_metric(labels, float(forecast.high))

    def families(self) -> list[Metric]:
        return [self.value, self.low, self.high]


def _declares_quantity(exp: ExpectationSettings) -> bool:
    limits = (exp.monthly_max, exp.monthly_min, exp.monthly_quantity)
    return any(limit is not None for limit in limits)


def _add_usage(family: GaugeMetricFamily, lines: list[MonthLine]) -> None:
    totals: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    for line in lines:
        if line.kind is MeasureKind.VOLUME:
            key: tuple[str, ...] = (
                line.source,
                line.product,
                line.usage_type,
                line.unit,
                line.status.value,
            )
            totals[key] += line.quantity
    for key, quantity in sorted(totals.items()):
        family.add_metric(list(key), float(quantity))


async def _finding_families(engine: AsyncEngine) -> list[Metric]:
    family = _gauge(
        "open_findings", "Open review items by kind and severity.", ["kind", "severity"]
    )
    query = (
        select(findings_t.c.kind, findings_t.c.severity, func.count())
        .where(findings_t.c.state == FindingState.OPEN.value)
        .group_by(findings_t.c.kind, findings_t.c.severity)
    )
    async with reader(engine).connect() as conn:
        for kind, severity, count in (await conn.execute(query)).all():
            family.add_metric([kind, severity], float(count))
    return [family]


async def _pull_age_family(engine: AsyncEngine, settings: Settings, now: datetime) -> Metric:
    family = _gauge(
        "source_last_success_age_seconds",
        "Seconds since each source's last successful pull (absent: never pulled).",
        ["source"],
    )
    query = (
        select(runs_t.c.source, func.max(runs_t.c.finished_at))
        .where(runs_t.c.status == "succeeded")
        .group_by(runs_t.c.source)
    )
    async with reader(engine).connect() as conn:
        rows: dict[str, datetime | str | None] = dict((await conn.execute(query)).all())
    for source in settings.sources:
        finished = rows.get(source.name)
        if finished is not None:
            if isinstance(finished, str):
                finished = datetime.fromisoformat(finished)
            if finished.tzinfo is None:  # an aggregate comes back untyped on SQLite
                finished = finished.replace(tzinfo=UTC)
            family.add_metric([source.name], max(0.0, (now - finished).total_seconds()))
    return family
