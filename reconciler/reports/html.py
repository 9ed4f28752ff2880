"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no requests).

Rendered with Jinja2 and autoescaping on, so every provider and config string is escaped;
the only markup passed through unescaped is the charts, which escape their own text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from reconciler import __version__
from reconciler.domain import FindingState, Severity
from reconciler.reports import cost_render, fmt, showback_render
from reconciler.reports.figures import Figures, build_figures
from reconciler.reports.model import ReportData

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        quantity=fmt.quantity,
        signed=fmt.signed,
        when=fmt.when,
        duration=fmt.duration,
        kind=fmt.kind,
    )
    env.globals.update(
        fmt=fmt,
        FindingState=FindingState,
        Severity=Severity,
        money=cost_render.money,
        audit_status=cost_render.audit_status,
        team_cost_note=cost_render.team_cost_note,
        showback_note=showback_render.showback_note,
        share_text=showback_render.share_text,
    )
    return env


def render_html(data: ReportData, figures: Figures | None = None) -> str:
    """The whole report as one HTML document."""
    figures = figures or build_figures(data)
    svg = {figure.slug: Markup(figure.svg) for figure in figures.all()}
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            data=data,
            figures=figures,
            svg=svg,
            version=__version__,
            severities=[Severity.CRITICAL, Severity.WARNING, Severity.INFO],
            states=[FindingState.OPEN, FindingState.ACKNOWLEDGED, FindingState.RESOLVED],
        )
    )
