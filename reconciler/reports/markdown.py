"""The Markdown report: the HTML report's content for a pull request, a ticket or an email.

Charts are separate SVG files beside the Markdown file, linked by relative name. Every
provider and config string goes through :func:`md`, which makes it inert text: HTML is
escaped, Markdown punctuation is backslash-escaped and newlines are folded, so a product
name can neither inject markup, links or images nor break a table row.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import quote

from reconciler import __version__
from reconciler.domain import FindingState, Severity
from reconciler.reports import fmt
from reconciler.reports.cost_render import cost_markdown
from reconciler.reports.figures import Figure, Figures, build_figures
from reconciler.reports.model import FindingEntry, ReportData
from reconciler.reports.showback_render import showback_markdown

# Inline syntax: escapes, code spans, emphasis, links and images (no link without "["),
# table cells and strikethrough. "_" only emphasises at a word boundary.
_INLINE = re.compile(r"[\\`*\[\]|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# Block syntax at the start of a line: headings, list items, rules and setext underlines.
_LEADING = re.compile(r"^(?:#|[+=-](?=[\s+=-]|$)|\d+[.)](?=\s|$))")
_SEVERITIES = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
_STATES = (FindingState.OPEN, FindingState.ACKNOWLEDGED, FindingState.RESOLVED)


def md(value: object) -> str:
    """Untrusted text as inert inline Markdown (safe in paragraphs, headings and table cells)."""
    line = " ".join(str(value).split())
    escaped = _INLINE.sub(r"\\\g<0>", html.escape(line, quote=False))
    return _LEADING.sub(lambda m: m.group(0)[:-1] + "\\" + m.group(0)[-1], escaped)


@dataclass(frozen=True, slots=True)
class MarkdownReport:
    """The Markdown text and the chart files it links to (file name → SVG document)."""

    text: str
    charts: dict[str, str]


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> list[str]:
    numeric = numeric or set()
    align = ["---:" if i in numeric else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _image(figure: Figure, prefix: str) -> tuple[str, str]:
    name = f"{prefix}-{figure.slug}.svg"
    return name, f"![{md(figure.title)}]({quote(name)})"


def _findings(entries: tuple[FindingEntry, ...], show_state: bool = False) -> list[str]:
    rows = []
    for entry in entries:
        item = entry.item
        before, after = fmt.before_after(item)
        kind = fmt.kind(item.kind) + (f" ({entry.state.value})" if show_state else "")
        notes = fmt.note(entry)
        dates = f"raised {fmt.when(entry.raised_at)}"
        if entry.resolved_at is not None:
            dates += f", resolved {fmt.when(entry.resolved_at)}"
        rows.append(
            [
                f"**{md(item.severity.value)}**",
                md(kind),
                md(item.source),
                md(fmt.line(item)),
                md(item.month),
                f"{md(before)} → {md(after)}",
                fmt.delta(item),  # numbers reconciler computed: nothing to escape
                fmt.percent(item),
                md(f"{notes} ({dates})" if notes else dates),
            ]
        )
    header = ["Severity", "Kind", "Source", "Line", "Month", "Before → after", "Δ", "%", "Notes"]
    return _table(header, rows, {6, 7})


def render_markdown(
    data: ReportData, chart_prefix: str, figures: Figures | None = None
) -> MarkdownReport:
    """The report as Markdown; chart files are named ``<chart_prefix>-<slug>.svg``."""
    figures = figures or build_figures(data)
    charts: dict[str, str] = {}
    period = str(data.first_month)
    if data.last_month != data.first_month:
        period += f" – {data.last_month}"
    out = [
        "# CDN usage review",
        "",
        f"{md(period)} · sources: {md(', '.join(data.sources) or 'none')} · "
        f"generated {md(fmt.when(data.generated_at))}",
        "",
        "## Summary",
        "",
    ]
    by_severity = ", ".join(f"{data.open_by_severity[s]} {s.value}" for s in _SEVERITIES)
    changes = data.changes
    out.append(f"- **Open findings: {data.findings[FindingState.OPEN].total}** ({by_severity})")
    if changes.since is not None:
        out.append(
            f"- **Since {md(changes.basis)}** ({md(fmt.when(changes.since))}): "
            f"{len(changes.raised)} new, {changes.resolved} resolved, "
            f"{changes.acknowledged} acknowledged"
        )
    out.append(
        f"- Acknowledged: {data.findings[FindingState.ACKNOWLEDGED].total} · "
        f"resolved in these months: {data.findings[FindingState.RESOLVED].total}"
    )
    out += ["", "### Run health", ""]
    rows = [
        [
            f"**{md(h.source)}**",
            md(h.provider),
            md(f"{h.last_status} {fmt.when(h.last_started_at)}" if h.last_status else "never"),
            md(fmt.when(h.last_success_at)),
            f"{h.failures_since_success} / {h.recent_failures}",
            md(fmt.duration(h.last_duration_s)),
            f"{h.last_api_calls} / {h.recent_api_calls}",
            str(h.recent_retries),
            md(h.last_error or ""),
        ]
        for h in data.health
    ]
    header = [
        "Source",
        "Provider",
        "Last run",
        "Last success",
        "Failures (since success / 7 days)",
        "Duration",
        "API calls (last / 7 days)",
        "Retries (7 days)",
        "Last error",
    ]
    out += _table(header, rows, {4, 5, 6, 7})
    if changes.raised:
        out += [f"## New since {md(changes.basis)}", ""]
        out += _findings(changes.raised, show_state=True)
    if data.projections:
        out += ["## Month-end projections", ""]
        rows = []
        for series in data.projections:
            p = series.projection
            assert p is not None
            verdict = "" if p.limit is None else ("**above**" if p.over else "within")
            f = p.forecast
            band = "—"
            if f.low is not None and f.high is not None and not p.too_early:
                band = md(
                    f"{fmt.quantity(f.low, series.unit)} to {fmt.quantity(f.high, series.unit)}"
                )
            through = f.covered_through.isoformat() if f.covered_through else "—"
            rows.append(
                [
                    f"{md(series.source)}: {md(series.label)}",
                    md(fmt.quantity(p.to_date, series.unit)),
                    f"{through} ({p.covered_days} of {p.days})",
                    "too early to forecast"
                    if p.too_early
                    else md(fmt.quantity(p.projected, series.unit)),
                    band,
                    md(f.method.label),
                    md(fmt.quantity(p.limit, series.unit)) if p.limit is not None else "—",
                    "" if p.too_early else verdict,
                ]
            )
        header = [
            "Series",
            "So far",
            "Data through",
            "Projected",
            "Band",
            "Method",
            "Expected max",
            "",
        ]
        out += _table(header, rows, {1, 3, 4, 6})
    out += cost_markdown(data.costs, md)
    for series, figure in figures.costs:
        name, image = _image(figure, chart_prefix)
        charts[name] = figure.svg
        out += [f"### {md(series.source)}: cost per month ({md(series.unit)})", "", image, ""]
    out += showback_markdown(data.costs.showback if data.costs else None, md)
    out += ["## Usage by month", ""]
    note = f"{data.usage_note} Hatched bars are still collecting."
    if data.series_omitted:
        note += (
            f" {len(data.series)} of {data.series_total} series shown; "
            f"{data.series_omitted} smaller series without findings left out."
        )
    out += [note, ""]
    for series, figure in figures.monthly:
        name, image = _image(figure, chart_prefix)
        charts[name] = figure.svg
        facts = [md(series.source), md(series.unit), md(series.values_name)]
        current = series.points[-1] if series.points else None
        if current is not None and series.lower_bound(current):
            facts.append(
                f"{current.month} so far: at least {md(fmt.quantity(current.quantity))} "
                "(can only go up; not projected)"
            )
        if series.findings:
            facts.append(f"{series.findings} finding{'s' if series.findings != 1 else ''}")
        out += [f"### {md(series.label)}", "", " · ".join(facts), "", image, ""]
        if series.band is not None:
            bounds = [
                f"{name} {fmt.quantity(value)}"
                for name, value in (("min", series.band.low), ("max", series.band.high))
                if value is not None
            ]
            expected = f"Expected: {md(', '.join(series.band.labels))}"
            out += [" · ".join([expected, *bounds]), ""]
        if series.projection is not None:
            out += [f"Projection: {md(fmt.projection(series))}", ""]
        for label in series.unmatched_expectations:
            out += [f"Not drawn, declared in another unit: {md(label)}", ""]
    if figures.restated:
        out += ["## Restated lines", ""]
        if data.restated_omitted:
            out += [f"{len(data.restated)} of {data.restated_total} shown.", ""]
        for line, figure in figures.restated:
            name, image = _image(figure, chart_prefix)
            charts[name] = figure.svg
            out += [
                f"### {md(line.label)}",
                "",
                f"{md(line.source)} · {md(line.account)} · {md(line.month)} · "
                f"{md(fmt.restatement(line))}",
                "",
                image,
                "",
            ]
    out += ["## Findings", ""]
    for state in _STATES:
        table = data.findings[state]
        out += [f"### {state.value.capitalize()} ({table.total})", ""]
        if table.entries:
            out += _findings(table.entries)
            if table.omitted:
                out += [f"{table.omitted} more not shown.", ""]
        else:
            out += ["None.", ""]
    out.append(f"reconciler {md(__version__)} · times in UTC")
    return MarkdownReport("\n".join(out) + "\n", charts)
