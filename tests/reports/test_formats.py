"""Every format rendered from the seeded state (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from reconciler.reports.figures import build_figures
from reconciler.reports.html import render_html
from reconciler.reports.json_report import render_json
from reconciler.reports.markdown import render_markdown
from reconciler.reports.model import ReportData
from tests.reports.helpers import inline_svgs, parse_html, parse_svg, svg_elements, svg_text
from tests.reports.seed import FASTLY

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "main", "footer", "section",
    "div", "span", "h1", "h2", "h3", "p", "small", "strong", "br", "ul", "li", "table", "thead",
    "tbody", "tr", "th", "td", "figure", "figcaption",
    # inline SVG
    "svg", "defs", "pattern", "rect", "line", "text", "g", "path", "circle",
}  # fmt: skip


async def test_html_is_one_self_contained_document(report: ReportData) -> None:
    document = render_html(report)
    parsed = parse_html(document)
    assert parsed.names() <= ALLOWED_TAGS, parsed.names() - ALLOWED_TAGS
    for _name, attrs in parsed.tags:
        for attr, value in attrs.items():
            assert not attr.startswith("on")
            if attr in ("href", "src", "xlink:href"):
                raise AssertionError(f"a reference leaves the document: {attr}={value}")
    csp = next(a for n, a in parsed.tags if n == "meta" and a.get("http-equiv"))
    assert "default-src 'none'" in (csp["content"] or "")
    assert "@media print" in parsed.style and "@media (max-width" in parsed.style
    assert "url(" not in parsed.style and "@import" not in parsed.style
    text = parsed.all_text()
    for expected in (
        "CDN usage review",
        "2024-01 – 2024-06",
        "HTTP 429 after 5 retries",
        "64,501.607 GB",  # the projection
        "43,500 GB (finalized) → 44,800 GB (finalized)",  # a restated line's finding
        "expected 50,000 GB → observed 62,208.22 GB (collecting)",
        "+12,208.22",
        "+24.42%",
        "acknowledged by alice 2024-06-06 09:00 UTC: expected: launch traffic",
        "72.5 GB → 60 GB (-12.5, -17.24%)",
    ):
        assert expected in text, expected
    assert "2023-11" not in text  # a finding outside the months


async def test_html_charts(report: ReportData) -> None:
    figures = build_figures(report)
    document = render_html(report, figures)
    svgs = inline_svgs(document)
    assert len(svgs) == len(figures.all()) == 6 + 6 + 2
    ids = [parse_svg(svg).get("id") for svg in svgs]
    assert len(set(ids)) == len(ids)
    bandwidth = next(f for s, f in figures.monthly if s.usage_type == "North America Bandwidth")
    root = parse_svg(bandwidth.svg)
    rects = list(root.iter("{http://www.w3.org/2000/svg}rect"))
    classes = [r.get("class") or "" for r in rects]
    assert classes.count("bar finalized") == 5
    assert classes.count("bar collecting") == 1
    assert classes.count("band") == 1 and classes.count("projection") == 1
    collecting = next(r for r in rects if r.get("class") == "bar collecting")
    assert (collecting.get("fill") or "").startswith("url(#chart-usage-")
    titles = svg_text(root)
    assert "2024-01: 41,000.25 GB (finalized, 1 line)" in titles
    assert "projected to month end: 64,501.607 GB" in titles
    for legend in ("finalized", "collecting", "expected range", "projection"):
        assert legend in titles
    akamai = next(f for s, f in figures.monthly if s.usage_type == "Total MB")
    assert "declared invoice quantity: 331" in svg_text(parse_svg(akamai.svg))
    for _line, figure in figures.restated:
        assert "circle" in svg_elements(parse_svg(figure.svg))


async def test_markdown(report: ReportData) -> None:
    figures = build_figures(report)
    markdown = render_markdown(report, "reconciler-report-x", figures)
    text = markdown.text
    assert text.startswith("# CDN usage review\n")
    for heading in (
        "## Summary",
        "### Run health",
        "## New since the latest run of each source",
        "## Month-end projections",  # a table: the monthly charts show projections too
        "## Usage by month",
        "## Restated lines",
        "## Findings",
        "### Open (5)",
        "### Acknowledged (1)",
        "### Resolved (1)",
    ):
        assert f"\n{heading}\n" in text, heading
    assert "- **Open findings: 5** (2 critical, 2 warning, 1 info)" in text
    assert len(markdown.charts) == len(figures.monthly) + len(figures.restated)
    for name, svg in markdown.charts.items():
        assert name.startswith("reconciler-report-x-") and name.endswith(".svg")
        assert f"]({name})" in text
        parse_svg(svg)
    rows = [line for line in text.splitlines() if "62,208.22" in line]
    assert rows[0].startswith("| **warning** | projected overage (open) | fastly-prod |")
    row = rows[1]  # in the table of open findings
    assert row.startswith("| **warning** | projected overage | fastly-prod | cdn_usage / ")
    assert "expected 50,000 GB → observed 62,208.22 GB (collecting)" in row
    assert "| +12,208.22 | +24.42% |" in row


def _strings_only(value: Any, path: str = "") -> list[str]:
    """Paths of every number in ``value`` that is not an int, bool or a duration."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _strings_only(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _strings_only(item, f"{path}[{index}]")
    elif isinstance(value, Decimal) and not path.endswith("_duration_s"):
        found.append(path)
    return found


async def test_json(report: ReportData) -> None:
    data = json.loads(render_json(report), parse_float=Decimal)
    assert data["format_version"] == 1
    assert data["generated_at"] == "2024-06-15T12:00:00Z"
    assert data["months"] == {"first": "2024-01", "last": "2024-06"}
    assert _strings_only(data) == []  # quantities are decimal strings, never JSON numbers
    bandwidth = next(s for s in data["series"] if s["usage_type"] == "North America Bandwidth")
    assert bandwidth["months"][0] == {
        "month": "2024-01",
        "quantity": "41000.25",
        "status": "finalized",
        "lines": 1,
        "lower_bound": False,
    }
    assert (bandwidth["measure_kind"], bandwidth["region"]) == ("volume", "")
    assert bandwidth["months"][-1]["status"] == "collecting"
    assert bandwidth["expectation"] == {
        "low": "30000",
        "high": "50000",
        "expectations": ["NA bandwidth commitment"],
        "invoices": {},
    }
    assert bandwidth["projection"]["projected"] == "64501.607"
    assert bandwidth["projection"]["forecast"]["covered_through"] == "2024-06-14"
    assert bandwidth["projection"]["over"] is True
    summary = data["summary"]
    assert summary["open"] == 5
    assert summary["open_by_severity"] == {"info": 1, "warning": 2, "critical": 2}
    assert sorted(summary["changes"]["raised"]) == ["f-image", "f-projected"]
    items = {i["fingerprint"]: i for i in data["findings"]["open"]["items"]}
    restated = items["f-restated-fastly"]
    assert restated["before"] == {"quantity": "43500", "unit": "GB", "status": "finalized"}
    assert restated["after"]["quantity"] == "44800"
    assert (restated["delta"], restated["percent"]) == ("1300", "2.99")
    assert data["findings"]["acknowledged"]["items"][0]["acknowledged_by"] == "alice"
    health = {h["source"]: h for h in data["health"]}
    assert health[FASTLY]["last_success_at"] == "2024-06-15T06:00:42Z"
    versions = next(r for r in data["restated"] if r["source"] == FASTLY)["versions"]
    assert [v["quantity"] for v in versions] == ["43500", "44800"]
