"""Per-service usage gauges, opt-in and capped (``daemon.metrics_services``).

A source can have thousands of services, and every label value is a time series Prometheus
keeps, so these series are off by default. With a cap of N, each source's N largest services
get a series of their own, and the rest are added up into one ``service="other"`` series per
product, usage type, unit and month status; ``reconciler_services_in_other`` counts the services
folded into it. A service's size is its largest share of any usage type's month to date
(units differ per usage type, so quantities of different usage types are not compared).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal, localcontext

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import EXACT_CONTEXT, Month, reporting_group_of
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.month_values import MonthLine
from reconciler.refresh import month_lines
from reconciler.settings import Settings
from reconciler.store.db import reader

OTHER = "other"
_SeriesKey = tuple[str, str, str, str]  # product, usage type, unit, month status


def largest_services(lines: Sequence[MonthLine], cap: int) -> list[str]:
    """The ``cap`` services of these (one source's) lines with the largest share of a usage
    type's month to date; ties go to the lower service id."""
    per_key: dict[_SeriesKey, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for line in _volume_by_service(lines):
        per_key[_series_key(line)][line.service] += line.quantity
    share: dict[str, Decimal] = defaultdict(Decimal)
    with localcontext(EXACT_CONTEXT):
        for services in per_key.values():
            total = sum(services.values(), Decimal(0))
            for service, quantity in services.items():
                part = quantity / total if total > 0 else Decimal(0)
                share[service] = max(share[service], part)
    return sorted(share, key=lambda service: (-share[service], service))[:cap]


def service_series(
    lines: Sequence[MonthLine], cap: int
) -> tuple[dict[tuple[str, ...], Decimal], int]:
    """Month-to-date volume per (service, product, usage type, unit, month status), the
    services past the cap added up as ``other``; and how many services went into ``other``."""
    kept = set(largest_services(lines, cap))
    totals: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    folded: set[str] = set()
    for line in _volume_by_service(lines):
        service = line.service if line.service in kept else OTHER
        if service == OTHER:
            folded.add(line.service)
        totals[(service, *_series_key(line))] += line.quantity
    return dict(totals), len(folded)


async def service_usage_families(
    engine: AsyncEngine, settings: Settings, month: Month, cap: int
) -> list[Metric]:
    usage = GaugeMetricFamily(
        "reconciler_service_usage_month_to_date",
        f"Month-to-date volume usage per service (the {cap} largest services of each source; "
        'the rest added up as service="other").',
        labels=["source", "service", "product", "usage_type", "unit", "month_status"],
    )
    folded = GaugeMetricFamily(
        "reconciler_services_in_other",
        'Services of each source past the cap, added up into service="other".',
        labels=["source"],
    )
    async with reader(engine).connect() as conn:
        for source in settings.sources:
            lines = await month_lines(conn, source.name, [month], services=True)
            totals, count = service_series(lines, cap)
            for (service, *rest), quantity in sorted(totals.items()):
                usage.add_metric([source.name, service, *rest], float(quantity))
            folded.add_metric([source.name], float(count))
    return [usage, folded]


def _volume_by_service(lines: Sequence[MonthLine]) -> list[MonthLine]:
    # A reporting group's line is a part of the product's usage, not a service of its own:
    # folded with the CP codes it would count that usage twice.
    return [
        line
        for line in lines
        if line.service
        and line.kind is MeasureKind.VOLUME
        and reporting_group_of(line.service) is None
    ]


def _series_key(line: MonthLine) -> _SeriesKey:
    return (line.product, line.usage_type, line.unit, line.status.value)
