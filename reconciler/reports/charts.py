"""The report's charts as standalone SVG documents (valid inline in HTML and as files).

* :func:`monthly_chart`: a series' monthly totals as bars, finalized months filled and
  collecting months hatched, the expectation band, invoice markers and, for the current month,
  the run-rate projection to month end drawn as a dashed bar.
* :func:`restatement_chart`: one restated line's value run by run.
* :func:`projection_chart`: every projected series' month-to-date bar against its projection
  and limit, one row each.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from reconciler.alerts.slack import format_quantity
from reconciler.domain import LineStatus, Month
from reconciler.money import Money
from reconciler.reports.model import Band, MonthPoint, RestatedLine, Series
from reconciler.reports.svg import FONT, Scale, clip, compact, px, safe_id, text

CHART_WIDTH = 560
BULLET_WIDTH = 400
LEGEND_ROW = 18
BLUE = "#2563eb"
RED = "#dc2626"
GREEN = "#16a34a"
AMBER = "#d97706"
VIOLET = "#7c3aed"
GRID = "#e5e7eb"
INK = "#374151"
MUTED = "#6b7280"
_MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _open(chart_id: str, width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" class="chart" id="{chart_id}" role="img" '
        f'aria-labelledby="{chart_id}-title" font-family="{FONT}" font-size="13">',
        f'<title id="{chart_id}-title">{text(title, 300)}</title>',
    ]


def _hatch(pattern_id: str, color: str) -> str:
    return (
        f'<pattern id="{pattern_id}" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/>'
        f'<rect width="2.5" height="6" fill="{color}"/></pattern>'
    )


def _y_axis(scale: Scale, left: int, right: int) -> list[str]:
    parts = []
    for tick in scale.ticks:
        y = px(scale(tick))
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y}" y2="{y}" stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y}" dy="4" text-anchor="end" fill="{MUTED}" '
            f'font-size="12">{text(compact(tick))}</text>'
        )
    return parts


def _legend(
    items: Sequence[tuple[str, str]], left: int, right: int, y: int
) -> tuple[list[str], int]:
    """(swatch drawn in a 14x10 box, label) entries in rows from ``y``; returns the rows used."""
    parts = []
    x, rows = left, 1
    for swatch, label in items:
        width = 26 + 7 * len(label)
        if x > left and x + width > right:
            x, rows = left, rows + 1
        top = y + (rows - 1) * LEGEND_ROW
        parts.append(
            f'<g transform="translate({x},{top - 9})">{swatch}'
            f'<text x="19" y="9.5" fill="{INK}" font-size="12">{text(label)}</text></g>'
        )
        x += width + 10
    return parts, rows


def _month_label(point_month: str) -> str:
    year, month = point_month.split("-")
    return f"{_MONTH_NAMES[int(month) - 1]} {year[2:]}"


def _monthly_legend(series: Series, cid: str) -> list[tuple[str, str]]:
    band, projection = series.band, series.projection
    legend = [
        (f'<rect width="14" height="10" fill="{BLUE}"/>', "finalized"),
        (f'<rect width="14" height="10" fill="url(#{cid}-h)" stroke="{BLUE}"/>', "collecting"),
    ]
    if band is not None and any(band.flags(p) for p in series.points):
        legend.append((f'<rect width="14" height="10" fill="{RED}"/>', "outside expectation"))
    if band is not None and (band.low is not None or band.high is not None):
        legend.append(
            (
                f'<rect width="14" height="10" fill="{GREEN}" fill-opacity="0.2" '
                f'stroke="{GREEN}" stroke-dasharray="3 2"/>',
                "expected range",
            )
        )
    if projection is not None:
        color = RED if projection.over else AMBER
        legend.append(
            (
                f'<rect width="14" height="10" fill="none" stroke="{color}" '
                f'stroke-dasharray="3 2"/>',
                "projection",
            )
        )
    if band is not None and band.invoices:
        legend.append((f'<path d="M7 -1 l6 6 l-6 6 l-6 -6 z" fill="{VIOLET}"/>', "invoice"))
    return legend


def monthly_chart(
    series: Series, chart_id: str, months: Sequence[Month], title: str | None = None
) -> str:
    """Bars of a series' monthly totals across ``months`` (oldest first)."""
    cid = safe_id(chart_id)
    top, bottom, left, right = 30, 200, 52, CHART_WIDTH - 56
    legend, legend_rows = _legend(_monthly_legend(series, cid), left, CHART_WIDTH - 8, bottom + 42)
    height = bottom + 52 + (legend_rows - 1) * LEGEND_ROW
    band, projection = series.band, series.projection
    values = [p.quantity for p in series.points]
    if band is not None:
        values += [v for v in (band.low, band.high) if v is not None]
        values += list(band.invoices.values())
    if projection is not None:
        values.append(projection.projected)
    scale = Scale.nice(values, bottom, top)
    slot = Decimal(right - left) / max(len(months), 1)
    bar = slot * Decimal("0.62")
    title = title or f"{series.source}: {series.label} ({series.unit}), {series.values_name}"
    parts = _open(cid, CHART_WIDTH, height, title)
    parts.append(f"<defs>{_hatch(cid + '-h', BLUE)}{_hatch(cid + '-hr', RED)}</defs>")
    parts += _y_axis(scale, left, right)
    if series.unit:
        parts.append(
            f'<text x="{left - 6}" y="{top - 14}" text-anchor="end" fill="{MUTED}" '
            f'font-size="12">{text(series.unit, 10)}</text>'
        )
    if band is not None and (band.low is not None or band.high is not None):
        parts += _band(band, scale, left, right)
    every = max(1, -(-len(months) // 9))
    for index, month in enumerate(months):
        x0 = Decimal(left) + slot * index
        x = x0 + (slot - bar) / 2
        center = px(x0 + slot / 2)
        point = series.point(month)
        if projection is not None and projection.month == month:
            y = scale(projection.projected)
            color = RED if projection.over else AMBER
            parts.append(
                f'<rect class="projection" x="{px(x)}" y="{px(y)}" width="{px(bar)}" '
                f'height="{px(scale(Decimal(0)) - y)}" fill="none" stroke="{color}" '
                f'stroke-width="1.5" stroke-dasharray="4 3"><title>'
                f"projected to month end: {text(_value(series, projection.projected))} "
                f"{text(series.unit)}</title></rect>"
                f'<text x="{center}" y="{px(y)}" dy="-5" text-anchor="middle" fill="{color}" '
                f'font-size="12" font-weight="600">{text(compact(projection.projected))}</text>'
            )
        if point is not None:
            parts.append(_bar(point, series, scale, x, bar, cid))
        if band is not None and month in band.invoices:
            invoice_y = px(scale(band.invoices[month]))
            parts.append(
                f'<path class="invoice" d="M{center} {invoice_y} m-7 0 l7 -7 l7 7 l-7 7 z" '
                f'fill="{VIOLET}" stroke="#ffffff" stroke-width="1.5"><title>'
                f"declared invoice quantity: {text(format_quantity(band.invoices[month]))}"
                "</title></path>"
            )
        if index % every == 0:
            parts.append(
                f'<text x="{center}" y="{bottom + 18}" text-anchor="middle" fill="{INK}" '
                f'font-size="12">{text(_month_label(str(month)))}</text>'
            )
    parts.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="{MUTED}"/>')
    parts += legend
    parts.append("</svg>")
    return "".join(parts)


def _value(series: Series, value: Decimal) -> str:
    """A bar's value as its tooltip says it: money to the currency's minor unit."""
    if series.money:
        return Money(value, series.unit).display().removesuffix(f" {series.unit}")
    return format_quantity(value)


def _band(band: Band, scale: Scale, left: int, right: int) -> list[str]:
    """The expected range shaded, its bounds dashed and labelled in the right margin."""
    y_high = scale(band.high) if band.high is not None else scale(scale.high)
    y_low = scale(band.low) if band.low is not None else scale(scale.low)
    parts = [
        f'<rect class="band" x="{left}" y="{px(y_high)}" width="{right - left}" '
        f'height="{px(y_low - y_high)}" fill="{GREEN}" fill-opacity="0.1"/>'
    ]
    nudge = Decimal(0)
    if band.high is not None and band.low is not None:
        # Two labels of two lines each need 24px: push them apart around a narrow band.
        nudge = max(Decimal(24) - (scale(band.low) - scale(band.high)), Decimal(0)) / 2
    for bound, name, shift in ((band.high, "max", -nudge), (band.low, "min", nudge)):
        if bound is None:
            continue
        y = scale(bound)
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{px(y)}" y2="{px(y)}" stroke="{GREEN}" '
            f'stroke-width="1.5" stroke-dasharray="6 4"/>'
            f'<text x="{right + 5}" y="{px(y + shift - 2)}" fill="{GREEN}" font-size="11">'
            f"{name}</text>"
            f'<text x="{right + 5}" y="{px(y + shift + 10)}" fill="{GREEN}" font-size="11" '
            f'font-weight="600">{text(compact(bound))}</text>'
        )
    return parts


def _bar(
    point: MonthPoint, series: Series, scale: Scale, x: Decimal, width: Decimal, cid: str
) -> str:
    band = series.band
    bad = band is not None and band.flags(point)
    color = RED if bad else BLUE
    y = scale(max(point.quantity, Decimal(0)))
    base = scale(Decimal(0))
    status = point.status.value
    fill = color if point.status is LineStatus.FINALIZED else f"url(#{cid}-{'hr' if bad else 'h'})"
    at_least = "at least " if series.lower_bound(point) else ""
    lines = f", {point.lines} line{'s' if point.lines != 1 else ''}" if point.lines else ""
    label = (
        f"{point.month}: {at_least}{_value(series, point.quantity)} {series.unit} ({status}{lines})"
    )
    return (
        f'<rect class="bar {status}" x="{px(x)}" y="{px(y)}" width="{px(width)}" '
        f'height="{px(max(base - y, Decimal("0.5")))}" fill="{fill}" stroke="{color}" '
        f'stroke-width="1"><title>{text(label)}</title></rect>'
    )


def restatement_chart(line: RestatedLine, chart_id: str) -> str:
    """A restated line's value in each run that changed it: filled dots are finalized."""
    cid = safe_id(chart_id)
    top, bottom, left, right = 30, 170, 52, CHART_WIDTH - 28
    versions = line.versions
    unit = versions[-1].unit if versions else ""
    legend, rows = _legend(
        [
            (f'<circle cx="7" cy="5" r="4.5" fill="{BLUE}"/>', "finalized"),
            (
                f'<circle cx="7" cy="5" r="4" fill="#ffffff" stroke="{BLUE}" stroke-width="2"/>',
                "collecting",
            ),
        ],
        left,
        CHART_WIDTH - 8,
        bottom + 42,
    )
    height = bottom + 52 + (rows - 1) * LEGEND_ROW
    scale = Scale.nice([v.quantity for v in versions], bottom, top, zero=False)
    step = Decimal(right - left - 60) / max(len(versions) - 1, 1)
    title = f"{line.source}: {line.label} {line.month}, value run by run"
    parts = _open(cid, CHART_WIDTH, height, title)
    parts += _y_axis(scale, left, right)
    parts.append(
        f'<text x="{left - 6}" y="{top - 14}" text-anchor="end" fill="{MUTED}" font-size="12">'
        f"{text(unit, 10)}</text>"
    )
    points = [
        (
            Decimal(left + 30) + step * index if len(versions) > 1 else Decimal(left + right) / 2,
            scale(version.quantity),
        )
        for index, version in enumerate(versions)
    ]
    if points:
        # A step line: each value holds until the run that changed it.
        path = f"M{px(points[0][0])} {px(points[0][1])}" + "".join(
            f" H{px(x)} V{px(y)}" for x, y in points[1:]
        )
        parts.append(f'<path d="{path}" fill="none" stroke="{BLUE}" stroke-width="2"/>')
    every = max(1, -(-len(versions) // 6))
    for index, (version, (x, y)) in enumerate(zip(versions, points, strict=True)):
        final = version.status is LineStatus.FINALIZED
        label = (
            f"run {version.run_id}, {version.recorded_at:%Y-%m-%d %H:%M} UTC: "
            f"{format_quantity(version.quantity)} {version.unit} ({version.status.value})"
        )
        parts.append(
            f'<circle class="version" cx="{px(x)}" cy="{px(y)}" r="5" '
            f'fill="{BLUE if final else "#ffffff"}" stroke="{BLUE}" stroke-width="2">'
            f"<title>{text(label)}</title></circle>"
        )
        if index in (0, len(versions) - 1):
            parts.append(
                f'<text x="{px(x)}" y="{px(y)}" dy="-10" text-anchor="middle" fill="{INK}" '
                f'font-weight="600">{text(compact(version.quantity))}</text>'
            )
        if index % every == 0 or index == len(versions) - 1:
            parts.append(
                f'<text x="{px(x)}" y="{bottom + 18}" text-anchor="middle" fill="{INK}" '
                f'font-size="12">{version.recorded_at:%b %d}</text>'
            )
    parts.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="{MUTED}"/>')
    parts += legend
    parts.append("</svg>")
    return "".join(parts)


def projection_chart(series: Series, chart_id: str) -> str:
    """A bullet chart: month to date (solid), projected month end (dashed), the maximum (mark)."""
    projection = series.projection
    if projection is None:
        raise ValueError(f"series {series.label!r} has no projection")
    cid = safe_id(chart_id)
    left, right, height = 4, BULLET_WIDTH - 4, 82
    forecast = projection.forecast
    values = [projection.projected, projection.to_date]
    if forecast.high is not None:
        values.append(forecast.high)
    if projection.limit is not None:
        values.append(projection.limit)
    scale = Scale.nice(values, left, right)
    color = RED if projection.over else AMBER
    summary = f"{compact(projection.to_date)} so far → {compact(projection.projected)} projected"
    if projection.too_early:
        summary = f"{compact(projection.to_date)} so far · too early to forecast"
    elif forecast.low is not None and forecast.high is not None:
        summary += f" ({compact(forecast.low)}–{compact(forecast.high)})"
    if projection.limit is not None:
        summary += f" · max {compact(projection.limit)}"
    title = (
        f"{series.source}: {series.label}: {format_quantity(projection.to_date)} {series.unit} "
        f"so far, {format_quantity(projection.projected)} projected at month end"
    )
    parts = _open(cid, BULLET_WIDTH, height, title)
    parts.append(
        f'<text x="{left}" y="15" fill="{INK}" font-size="14" font-weight="600">'
        f"{text(clip(series.label, 46))}</text>"
        f'<rect x="{left}" y="44" width="{right - left}" height="14" rx="2" fill="#f3f4f6"/>'
        f'<rect class="projected" x="{left}" y="44" '
        f'width="{px(scale(projection.projected) - left)}" height="14" fill="none" '
        f'stroke="{color}" stroke-width="1.5" stroke-dasharray="4 3"/>'
        f'<rect class="to-date" x="{left}" y="44" '
        f'width="{px(scale(projection.to_date) - left)}" height="14" fill="{BLUE}"/>'
        f'<text x="{left}" y="35" fill="{color}" font-size="13" font-weight="600">'
        f"{text(summary)} {text(series.unit, 10)}</text>"
    )
    if forecast.low is not None and forecast.high is not None and not projection.too_early:
        low, high = px(scale(forecast.low)), px(scale(forecast.high))
        parts.append(
            f'<line class="band" x1="{low}" x2="{high}" y1="51" y2="51" stroke="{color}" '
            f'stroke-width="2"/><line x1="{low}" x2="{low}" y1="47" y2="55" stroke="{color}"/>'
            f'<line x1="{high}" x2="{high}" y1="47" y2="55" stroke="{color}"/>'
        )
    if projection.limit is not None:
        x = px(scale(projection.limit))
        parts.append(f'<line x1="{x}" x2="{x}" y1="39" y2="63" stroke="{GREEN}" stroke-width="3"/>')
    through = forecast.covered_through.isoformat() if forecast.covered_through else "-"
    parts.append(
        f'<text x="{left}" y="78" fill="{MUTED}" font-size="12">'
        f"{text(clip(series.source, 40))} · {projection.month}: data through {through}, "
        f"{projection.covered_days} of {projection.days} days · {forecast.method.label}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)
