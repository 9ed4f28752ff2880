"""Text forms shared by the HTML and Markdown reports (plain text: escaping is the caller's)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from reconciler import display
from reconciler.domain import ItemCategory, Observation, PlanItem
from reconciler.reports.model import FindingEntry, Projection, RestatedLine, Series


def quantity(value: Decimal | None, unit: str = "") -> str:
    if value is None:
        return "—"
    return display.amount(value, unit)


def signed(value: Decimal | None) -> str:
    return "—" if value is None else display.signed(value)


def percent(item: PlanItem) -> str:
    try:
        value = item.percent
    except ArithmeticError:  # too many digits to quantize (a tiny "before")
        return "—"
    return "—" if value is None else display.percent(value)


def change_percent(before: Decimal, after: Decimal) -> str:
    if before == 0:
        return "—"
    try:
        value = ((after - before) * 100 / before).quantize(Decimal("0.01"))
    except ArithmeticError:
        return "—"
    return display.percent(value)


def observation(obs: Observation | None, with_status: bool = True) -> str:
    if obs is None:
        return "—"
    text = quantity(obs.quantity, obs.unit)
    return f"{text} ({obs.status.value})" if with_status else text


def before_after(item: PlanItem) -> tuple[str, str]:
    """The two sides of an item; for a finding, the expected and the observed value."""
    if item.category is ItemCategory.FINDING:
        return (
            f"expected {observation(item.before, with_status=False)}",
            f"observed {observation(item.after)}",
        )
    return observation(item.before), observation(item.after)


def delta(item: PlanItem) -> str:
    before, after = item.before, item.after
    if before is None or after is None:
        return "—"
    if before.unit != after.unit:
        return "unit changed"
    return signed(item.delta)


def kind(name: str) -> str:
    return name.replace("_", " ")


def line(item: PlanItem) -> str:
    return item.line_label or "all lines"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def projection(series: Series) -> str:
    p: Projection | None = series.projection
    if p is None:
        return ""
    f = p.forecast
    through = f.covered_through.isoformat() if f.covered_through else "-"
    text = (
        f"{p.month}: {quantity(p.to_date, series.unit)} with data through {through} "
        f"({p.covered_days} of {p.days} days), "
    )
    if p.too_early:
        return text + "too early to forecast"
    text += f"projected {quantity(p.projected, series.unit)} at month end"
    if f.low is not None and f.high is not None:
        text += f" ({quantity(f.low, series.unit)} to {quantity(f.high, series.unit)})"
    text += f" by {f.method.label}"
    if p.limit is not None:
        verdict = "above" if p.over else "within"
        text += f", {verdict} the maximum of {quantity(p.limit, series.unit)}"
    return text


def restatement(line: RestatedLine) -> str:
    unit = line.versions[-1].unit if line.versions else ""
    before, after = line.first_finalized, line.current
    return (
        f"{quantity(before, unit)} → {quantity(after, unit)} "
        f"({signed(after - before)}, {change_percent(before, after)})"
    )


def note(entry: FindingEntry) -> str:
    """What a reviewer said or what the finding says."""
    if entry.acknowledged_by:
        said = f"acknowledged by {entry.acknowledged_by} {when(entry.acknowledged_at)}"
        return f"{said}: {entry.ack_note}" if entry.ack_note else said
    return entry.item.message
