"""The set of charts one report shows, each with a stable file-friendly name."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.reports.charts import monthly_chart, projection_chart, restatement_chart
from reconciler.reports.cost_charts import cost_series
from reconciler.reports.model import ReportData, RestatedLine, Series


@dataclass(frozen=True, slots=True)
class Figure:
    """One chart: ``slug`` names its file beside a Markdown report; ``svg`` is the document."""

    slug: str
    title: str
    svg: str


@dataclass(frozen=True, slots=True)
class Figures:
    projections: tuple[tuple[Series, Figure], ...]
    monthly: tuple[tuple[Series, Figure], ...]
    restated: tuple[tuple[RestatedLine, Figure], ...]
    costs: tuple[tuple[Series, Figure], ...] = ()

    def all(self) -> list[Figure]:
        found = [figure for _, figure in self.costs]
        found += [figure for _, figure in self.projections]
        found += [figure for _, figure in self.monthly]
        found += [figure for _, figure in self.restated]
        return found


def build_figures(data: ReportData) -> Figures:
    months = data.months
    projections = []
    for index, series in enumerate(data.projections, start=1):
        slug = f"projection-{index:02d}"
        title = f"{series.source}: {series.label}: projection to month end"
        projections.append((series, Figure(slug, title, projection_chart(series, f"chart-{slug}"))))
    monthly = []
    for index, series in enumerate(data.series, start=1):
        slug = f"usage-{index:02d}"
        title = f"{series.source}: {series.label} ({series.unit})"
        monthly.append(
            (series, Figure(slug, title, monthly_chart(series, f"chart-{slug}", months)))
        )
    restated = []
    for index, line in enumerate(data.restated, start=1):
        slug = f"restated-{index:02d}"
        title = f"{line.source}: {line.label} {line.month}"
        restated.append((line, Figure(slug, title, restatement_chart(line, f"chart-{slug}"))))
    costs = []
    for index, series in enumerate(cost_series(data.costs), start=1):
        slug = f"cost-{index:02d}"
        title = f"{series.source}: expected cost per month ({series.unit})"
        svg = monthly_chart(series, f"chart-{slug}", months, title)
        costs.append((series, Figure(slug, title, svg)))
    return Figures(tuple(projections), tuple(monthly), tuple(restated), tuple(costs))
